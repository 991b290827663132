/**
 * Data-lane pacing for one relay connection (spec/relay_load.md §4 and its 2026-12-07 addendum).
 *
 * A c-toxcore 0.2.18 relay reads each client once per ~30 ms tick and only whole frames. If
 * more bytes land between two ticks than its receive window has room for, the kernel can close
 * the window on half a frame and the connection deadlocks for good. The window is not fixed:
 * Linux receive autotuning can grow the relay's buffer (spec/relay_load.md's addendum saw 1.1 MB
 * after 1 s with an independent client; DEFAULT_PACER says why ours does not on loopback). What
 * deadlocks is a burst larger than the free window (tokens piled up while our event loop was
 * busy, released at once) or a step in rate that outruns the buffer, not an absolute rate.
 *
 * So the rate starts where a fresh 128 KB buffer is safe (~1.5 MB/s, ≈ 45 KB per relay tick),
 * then grows **linearly in time** (never by doubling) while we are actually rate-limited and
 * the relay shows it keeps up (a recent PONG with an RTT near its floor: the PING queues
 * behind our data, so its RTT measures the backlog in front of the relay). A grown RTT backs
 * off multiplicatively; so does a socket that stops taking our bytes. The bucket holds at
 * most `burstMs` of the current rate, so a pause of the event loop never releases more than
 * that at once: the largest burst is a configured window, not the length of the pause.
 */

export interface PacerConfig {
  /** Rate at start and after a reset, bytes/s: what a fresh relay-side buffer takes safely. */
  readonly initialRate: number;
  /** Never paced faster than this, bytes/s: a safety ceiling, not the expected rate. */
  readonly maxRate: number;
  /** Never slower than this, bytes/s (a floor so keep-alive traffic always moves). */
  readonly minRate: number;
  /** Bucket depth in time: the most that may leave at once, as milliseconds of the rate. */
  readonly burstMs: number;
  /** Linear growth while limited and healthy: bytes/s added per second. */
  readonly rampPerSec: number;
  /** RTT above floor + this is "the relay is queueing": back off. */
  readonly backoffRttMs: number;
  /** RTT within floor + this is "the relay keeps up": may grow. */
  readonly growRttMs: number;
  /** Growth needs a healthy RTT sample at most this old (ms). */
  readonly sampleMaxAgeMs: number;
  /** After a back-off, no growth for this long (ms): let the relay's queue drain first. */
  readonly holdAfterBackoffMs: number;
  /**
   * The relay may deadlock on a half frame (c-toxcore's: spec/relay_load.md §1): a PING that
   * gets no PONG within the stall timeout while data flows means it did. False for a relay that
   * reads partial frames (ours): there a PING may wait behind megabytes of unpaced data, and
   * only the ordinary ping timeout applies.
   */
  readonly relayMayDeadlock: boolean;
}

/**
 * maxRate is what the relay's *initial* buffer takes, because on loopback that buffer does not
 * grow for a paced client: measured with `ss -tmni` on tox-bootstrapd's side, our sender's socket
 * stays at rb 131072 for a whole 50,000-packet run. Linux grows a receive buffer by the bytes the
 * application copied per receive-RTT estimate, less what is still queued; that estimate comes
 * from timestamps on segments of at least the largest size seen, and our small, steady writes
 * keep it at ~1-2 ms, shorter than the relay's 30 ms read cycle, so each measurement sees no
 * growth. With the buffer at 128 KB about 100 KB may arrive per relay tick: 3 MB/s (≈ 110 KB
 * per 30 ms measured) ran 8/8 × 50,000 packets with no stall; 6-9 MB/s deadlocked within a
 * second every run. The ramp, the RTT gate and the bounded bucket are what would carry a higher
 * ceiling safely where the relay's buffer does grow (a real network's RTT, our own relay).
 */
export const DEFAULT_PACER: PacerConfig = {
  initialRate: 1_500_000,
  maxRate: 3_000_000,
  minRate: 64_000,
  burstMs: 4,
  rampPerSec: 8_000_000,
  backoffRttMs: 100,
  growRttMs: 40,
  sampleMaxAgeMs: 400,
  holdAfterBackoffMs: 500,
  relayMayDeadlock: true,
};

/** A send held back by the pace within this long (ms) still counts as "limited" for growth. */
const LIMITED_MEMORY_MS = 100;

/** The smallest bucket: one largest frame must always fit, with room for timer jitter. */
const MIN_BURST = 8192;
const MIN_WRITE = 4096;
/**
 * Each frame is charged at least this many bytes: the relay spends its time per packet (two
 * FIONREADs, two recvs, a decrypt, an encrypt, a send) and drops what the receiver's socket
 * cannot take at once, so tiny packets need a packet-rate bound as well as a byte-rate one.
 */
export const MIN_FRAME_CHARGE = 256;

/** What a frame of `frameBytes` costs in the bucket. */
export function frameCharge(frameBytes: number): number {
  return Math.max(frameBytes, MIN_FRAME_CHARGE);
}

export class Pacer {
  readonly config: PacerConfig;
  #rate: number;
  #tokens: number;
  #lastRefill: number;
  #minRtt = Infinity;
  /** Growth is allowed until then: the last RTT sample was near the floor. */
  #healthyUntil = -Infinity;
  /** No growth before then: a back-off happened. */
  #holdUntil = -Infinity;
  /**
   * When a send last found too few tokens. The pace may grow only while it is what holds the
   * sender back; "recently" rather than "right now", because traffic comes in bursts (a batch
   * of packets from the coordinator) that each wait on the pace and then drain the lane.
   */
  #limitedAt = -Infinity;

  constructor(now: number, config: PacerConfig = DEFAULT_PACER) {
    this.config = config;
    this.#rate = config.initialRate;
    this.#tokens = this.#burst();
    this.#lastRefill = now;
  }

  get rate(): number {
    return this.#rate;
  }

  get minRtt(): number {
    return this.#minRtt;
  }

  /** The most bytes the bucket may hold: what can leave at once after any pause. */
  get burst(): number {
    return this.#burst();
  }

  #burst(): number {
    return Math.max(MIN_BURST, (this.#rate * this.config.burstMs) / 1000);
  }

  #refill(now: number): void {
    const dt = now - this.#lastRefill;
    if (dt <= 0) return;
    // Grow for the time we were held back by the pace while the relay looked healthy. A gap
    // longer than one window is a pause of our own (the event loop was busy), not time spent
    // sending at this rate, so it counts as one window only; the bucket's cap below keeps the
    // pause from turning into a burst.
    const limited = now - this.#limitedAt <= LIMITED_MEMORY_MS;
    if (limited && now <= this.#healthyUntil && now >= this.#holdUntil) {
      const grownFor = Math.min(dt, this.config.burstMs);
      this.#rate = Math.min(
        this.config.maxRate,
        this.#rate + (this.config.rampPerSec * grownFor) / 1000,
      );
    }
    this.#tokens = Math.min(this.#burst(), this.#tokens + (this.#rate * dt) / 1000);
    this.#lastRefill = now;
  }

  /** Bytes that may be sent now. */
  available(now: number): number {
    this.#refill(now);
    return Math.max(0, Math.floor(this.#tokens));
  }

  /** Record bytes sent. May go negative by at most one frame (a frame is never split). */
  consume(bytes: number): void {
    this.#tokens -= bytes;
  }

  /** A send had to wait for tokens (at the time of the last refill). */
  markLimited(): void {
    this.#limitedAt = this.#lastRefill;
  }

  /**
   * How much data one write should carry: about a millisecond's worth, at least 4 KB. Many
   * one-frame writes become many small skbs on the relay side, each charged far more than its
   * payload against the relay's receive buffer; one large write becomes one large skb that,
   * cut inside a frame, pins its whole size. A millisecond's worth is between the two.
   */
  get writeQuantum(): number {
    return Math.max(MIN_WRITE, this.#rate / 1000);
  }

  /** Milliseconds until `bytes` tokens are available. */
  delayFor(bytes: number, now: number): number {
    this.#refill(now);
    const missing = Math.min(bytes, this.#burst()) - this.#tokens;
    return missing <= 0 ? 0 : Math.ceil((missing * 1000) / this.#rate);
  }

  /** A PONG came back after `rttMs` while data was flowing. */
  onRtt(rttMs: number, now: number): void {
    if (rttMs < this.#minRtt) this.#minRtt = rttMs;
    const excess = rttMs - this.#minRtt;
    if (excess > this.config.backoffRttMs) {
      this.#backOff(0.7, now);
    } else if (excess <= this.config.growRttMs) {
      this.#healthyUntil = now + this.config.sampleMaxAgeMs;
    }
  }

  /** The socket did not take our bytes for a while: the relay is not reading. Halve. */
  onWriteBlocked(now: number): void {
    this.#backOff(0.5, now);
    this.#tokens = Math.min(this.#tokens, 0);
  }

  #backOff(factor: number, now: number): void {
    this.#refill(now);
    this.#rate = Math.max(this.config.minRate, this.#rate * factor);
    this.#tokens = Math.min(this.#tokens, this.#burst());
    this.#healthyUntil = -Infinity;
    this.#holdUntil = now + this.config.holdAfterBackoffMs;
  }
}

/**
 * No pacing at all: a bottomless bucket that never shrinks. For relays that read partial
 * frames and never deadlock (our own, daemon/core/relay_server/), and for measuring the rest
 * of the data path without the pace.
 */
export const UNPACED: PacerConfig = {
  initialRate: 1e12,
  maxRate: 1e12,
  minRate: 1e12,
  burstMs: 1_000,
  rampPerSec: 0,
  backoffRttMs: 1e9,
  growRttMs: 0,
  sampleMaxAgeMs: 0,
  holdAfterBackoffMs: 0,
  relayMayDeadlock: false,
};

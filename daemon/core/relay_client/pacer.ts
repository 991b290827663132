/**
 * Data-lane pacing for one relay connection (spec/relay_load.md §4).
 *
 * A c-toxcore 0.2.18 relay reads each client once per ~30 ms tick and only whole frames; if
 * more than ~64 KB lands between two ticks the kernel can close its receive window on half a
 * frame and the connection deadlocks for good. So data leaves at a paced rate: a token
 * bucket that starts at ~1.5 MB/s (≈ 45 KB per relay tick, never seen to stall), grows only
 * while we are actually rate-limited and the relay's PONG RTT stays near its floor, and
 * backs off when the RTT grows (the PING queues behind our data in the relay's buffer, so
 * its RTT measures the backlog there).
 */

export interface PacerConfig {
  /** Rate at start and after a reset, bytes/s. */
  readonly initialRate: number;
  /** Never paced faster than this, bytes/s. */
  readonly maxRate: number;
  /** Never slower than this, bytes/s (a floor so keep-alive traffic always moves). */
  readonly minRate: number;
  /** Bucket depth in time: how much may leave at once after an idle moment. */
  readonly burstMs: number;
  /** Growth happens at most this often. */
  readonly growIntervalMs: number;
  /** RTT above floor + this is "the relay is queueing": back off. */
  readonly backoffRttMs: number;
  /** RTT within floor + this is "the relay keeps up": may grow. */
  readonly growRttMs: number;
}

/**
 * maxRate: on this project's machines (Linux 6.18) the relay's receive buffer stays at its
 * initial 128 KB (autotuning never grows it, see README "Relay load"), so about 64 KB can
 * reach the relay per ~30 ms tick. Measured with 1 KB DATA through tox-bootstrapd: a 3 MB/s
 * cap was clean in 4/4 runs of 20,000 packets, 4 MB/s deadlocked in 1 of 3, 6 MB/s in every
 * run. Raise it only for relays known to keep up (our own relay, a later issue).
 */
export const DEFAULT_PACER: PacerConfig = {
  initialRate: 1_500_000,
  maxRate: 3_000_000,
  minRate: 64_000,
  burstMs: 2,
  growIntervalMs: 450,
  backoffRttMs: 100,
  growRttMs: 40,
};

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
  #lastGrow: number;
  #minRtt = Infinity;
  /** Set when a send wanted more tokens than the bucket had since the last RTT sample. */
  #limited = false;

  constructor(now: number, config: PacerConfig = DEFAULT_PACER) {
    this.config = config;
    this.#rate = config.initialRate;
    this.#tokens = this.#burst();
    this.#lastRefill = now;
    this.#lastGrow = now;
  }

  get rate(): number {
    return this.#rate;
  }

  get minRtt(): number {
    return this.#minRtt;
  }

  #burst(): number {
    return Math.max(MIN_BURST, (this.#rate * this.config.burstMs) / 1000);
  }

  #refill(now: number): void {
    const dt = now - this.#lastRefill;
    if (dt > 0) {
      this.#tokens = Math.min(this.#burst(), this.#tokens + (this.#rate * dt) / 1000);
      this.#lastRefill = now;
    }
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

  /** A send of `bytes` had to wait for tokens. */
  markLimited(): void {
    this.#limited = true;
  }

  /**
   * How much data one write should carry: about a millisecond's worth, at least 4 KB.
   * Many one-frame writes become many small skbs on the relay side, each charged far more
   * than its payload against the relay's receive buffer, which closes its window sooner.
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
      this.#rate = Math.max(this.config.minRate, this.#rate * 0.7);
      this.#lastGrow = now;
    } else if (
      excess <= this.config.growRttMs && this.#limited &&
      now - this.#lastGrow >= this.config.growIntervalMs
    ) {
      this.#rate = Math.min(this.config.maxRate, this.#rate * 2);
      this.#lastGrow = now;
    }
    this.#limited = false;
  }

  /** The socket did not take our bytes for a while: the relay is not reading. Halve. */
  onWriteBlocked(now: number): void {
    this.#rate = Math.max(this.config.minRate, this.#rate / 2);
    this.#tokens = Math.min(this.#tokens, 0);
    this.#lastGrow = now;
  }
}

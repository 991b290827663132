/**
 * End-to-end congestion control for lossless net_crypto packets over TCP relays.
 *
 * A c-toxcore relay drops DATA it cannot hand to the receiver at once, with no signal to
 * anyone (spec/relay_load.md), so the only evidence of congestion is end to end: holes the
 * peer lists in its request packets, and acknowledgements (buffer_start) that stop coming.
 * This is a packet window (like TCP's cwnd): slow start, additive increase, multiplicative
 * decrease on loss at most once per round trip, collapse on a retransmission timeout.
 *
 * The relay worker beneath paces bytes onto the socket and its send window refuses what it
 * cannot take; that back-pressure is not loss and does not shrink this window.
 *
 * c-toxcore's own scheme (a send rate re-estimated every 50 ms) is tuning, not protocol:
 * any sender that resends what is requested interoperates (spec/net_crypto.md §8.4).
 */

export interface CongestionConfig {
  /** Packets in flight at the start (c-toxcore's CRYPTO_MIN_QUEUE_LENGTH is 64). */
  readonly initialWindow: number;
  readonly minWindow: number;
  /** Never more in flight than this, whatever the acknowledgements say. */
  readonly maxWindow: number;
  /** Window factor on a loss (0..1). */
  readonly lossFactor: number;
  /**
   * Queueing delay we accept (ms): when even the best round trip of the last epoch exceeds
   * the path's minimum by this much, packets are piling up in a relay or its socket — the
   * window shrinks before the relay starts dropping (spec/relay_load.md, rule 8).
   */
  readonly delayTargetMs: number;
  readonly delayEpochMs: number;
  /** Retransmission timeout bounds (ms). Acks from c-toxcore can lag ~1 s at low rates. */
  readonly minRtoMs: number;
  readonly maxRtoMs: number;
}

export const DEFAULT_CONGESTION_CONFIG: CongestionConfig = {
  initialWindow: 64,
  minWindow: 8,
  maxWindow: 4096,
  lossFactor: 0.7,
  delayTargetMs: 100,
  delayEpochMs: 500,
  minRtoMs: 1000,
  maxRtoMs: 4000,
};

export class CongestionControl {
  readonly config: CongestionConfig;
  #cwnd: number;
  #ssthresh = Infinity;
  #srtt: number | null = null;
  #rttvar = 0;
  #minRtt: number | null = null;
  #lastReduction = -Infinity;
  #epochStart = -Infinity;
  #epochMin = Infinity;
  delayReductions = 0;
  losses = 0;
  timeouts = 0;

  constructor(config: Partial<CongestionConfig> = {}) {
    this.config = { ...DEFAULT_CONGESTION_CONFIG, ...config };
    this.#cwnd = this.config.initialWindow;
  }

  get window(): number {
    return Math.floor(this.#cwnd);
  }

  get srtt(): number | null {
    return this.#srtt;
  }

  get minRtt(): number | null {
    return this.#minRtt;
  }

  /** A round-trip sample (ms) from a packet sent once (Karn: never from a resent one). */
  sample(rtt: number, now = 0): void {
    if (!(rtt >= 0)) return;
    // The best sample of an epoch is free of ack delay jitter: if even it shows queueing,
    // the queue is real.
    if (now - this.#epochStart >= this.config.delayEpochMs) {
      if (
        this.#minRtt !== null && this.#epochMin !== Infinity &&
        this.#epochMin - this.#minRtt > this.config.delayTargetMs
      ) {
        this.delayReductions++;
        this.#cwnd = Math.max(this.config.minWindow, this.#cwnd * 0.85);
        this.#ssthresh = this.#cwnd;
      }
      this.#epochStart = now;
      this.#epochMin = Infinity;
    }
    if (rtt < this.#epochMin) this.#epochMin = rtt;
    if (this.#minRtt === null || rtt < this.#minRtt) this.#minRtt = rtt;
    if (this.#srtt === null) {
      this.#srtt = rtt;
      this.#rttvar = rtt / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - rtt);
      this.#srtt = 0.875 * this.#srtt + 0.125 * rtt;
    }
  }

  /**
   * `n` packets acknowledged. `limited`: the window was not the limit (the sender had less to
   * send), in which case it does not grow — a window nobody used proves nothing.
   */
  acked(n: number, limited: boolean): void {
    if (n <= 0 || limited) return;
    if (this.#cwnd < this.#ssthresh) this.#cwnd += n;
    else this.#cwnd += n / this.#cwnd;
    if (this.#cwnd > this.config.maxWindow) this.#cwnd = this.config.maxWindow;
  }

  /** The peer reported packets missing: shrink once per round trip. */
  lost(now: number): void {
    const rtt = this.#srtt ?? 100;
    if (now - this.#lastReduction < rtt) return;
    this.losses++;
    this.#lastReduction = now;
    this.#cwnd = Math.max(this.config.minWindow, this.#cwnd * this.config.lossFactor);
    this.#ssthresh = this.#cwnd;
  }

  /** Nothing acknowledged for a whole RTO with packets in flight. */
  timedOut(now: number): void {
    this.timeouts++;
    this.#lastReduction = now;
    this.#ssthresh = Math.max(this.config.minWindow, this.#cwnd / 2);
    this.#cwnd = this.config.minWindow;
  }

  /** Retransmission timeout (ms). */
  rto(): number {
    const base = this.#srtt === null ? this.config.minRtoMs : this.#srtt + 4 * this.#rttvar;
    return Math.min(this.config.maxRtoMs, Math.max(this.config.minRtoMs, base));
  }

  /**
   * How long a requested packet must have been out before we believe it is lost rather than
   * still travelling (c-toxcore uses a fixed 500 ms over TCP; we know the path's RTT).
   */
  resendAfter(): number {
    const base = this.#minRtt === null ? 100 : this.#minRtt * 1.25;
    return Math.min(500, Math.max(10, base));
  }
}

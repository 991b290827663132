/**
 * The largest number of bytes handed to the socket within any window of one relay tick
 * (~30 ms): what decides whether a c-toxcore relay's receive window closes (spec/relay_load.md),
 * so it is measured on every connection rather than inferred from an average rate.
 */

/** tox-bootstrapd's main loop sleeps 30 ms between reads of each client. */
export const RELAY_TICK_MS = 30;

export class BurstMeter {
  readonly windowMs: number;
  /** Write completions inside the window, oldest first: times and byte counts. */
  #times: number[] = [];
  #bytes: number[] = [];
  #head = 0;
  #sum = 0;
  #max = 0;

  constructor(windowMs = RELAY_TICK_MS) {
    this.windowMs = windowMs;
  }

  /** The largest sum seen over any window. */
  get max(): number {
    return this.#max;
  }

  /** `n` bytes were handed to the socket at `now` (non-decreasing). */
  add(n: number, now: number): void {
    if (n <= 0) return;
    while (this.#head < this.#times.length && this.#times[this.#head] <= now - this.windowMs) {
      this.#sum -= this.#bytes[this.#head];
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#times.length) {
      this.#times = this.#times.slice(this.#head);
      this.#bytes = this.#bytes.slice(this.#head);
      this.#head = 0;
    }
    this.#times.push(now);
    this.#bytes.push(n);
    this.#sum += n;
    if (this.#sum > this.#max) this.#max = this.#sum;
  }
}

/**
 * The one timer an I/O shell keeps for its sans-I/O core: armed for the core's next
 * deadline, left alone when asked again for the same time, so a busy shell does not
 * clear and re-create a timer on every event.
 */
export class DeadlineTimer {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #at = Infinity;

  /** Run `fire` at `at` (on the clock that gave `now`); Infinity disarms. */
  arm(at: number, now: number, fire: () => void): void {
    if (at === this.#at && this.#timer !== undefined) return;
    this.disarm();
    if (at === Infinity) return;
    this.#at = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#at = Infinity;
      fire();
    }, Math.max(0, at - now));
  }

  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }
}

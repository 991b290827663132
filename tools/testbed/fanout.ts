/** Many subscribers to one worker's event batches (a test or bench watches from several places). */
export class Fanout<E> {
  readonly #subscribers = new Set<(events: readonly E[]) => void>();

  readonly emit = (events: readonly E[]): void => {
    for (const fn of this.#subscribers) fn(events);
  };

  /** Returns the unsubscribe function. */
  subscribe(fn: (events: readonly E[]) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }
}

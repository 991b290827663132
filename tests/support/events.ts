/** Collects relay worker events and lets a test wait for one, bounded in time. */
import type { RelayWorkerEvent } from "../../workers/messages.ts";

export class EventLog {
  readonly events: RelayWorkerEvent[] = [];
  #waiters: { pred: (e: RelayWorkerEvent) => boolean; resolve: (e: RelayWorkerEvent) => void }[] =
    [];

  readonly push = (batch: readonly RelayWorkerEvent[]): void => {
    for (const e of batch) {
      this.events.push(e);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(e)) return true;
        w.resolve(e);
        return false;
      });
    }
  };

  /** The first event (already seen, or still to come) matching `pred`, within `timeoutMs`. */
  waitFor<T extends RelayWorkerEvent["type"]>(
    type: T,
    timeoutMs = 5_000,
    pred: (e: Extract<RelayWorkerEvent, { type: T }>) => boolean = () => true,
    since = 0,
  ): Promise<Extract<RelayWorkerEvent, { type: T }>> {
    type E = Extract<RelayWorkerEvent, { type: T }>;
    const match = (e: RelayWorkerEvent): e is E => e.type === type && pred(e as E);
    const seen = this.events.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no "${type}" event within ${timeoutMs} ms; saw: ${this.summary()}`));
      }, timeoutMs);
      const done = (e: RelayWorkerEvent) => {
        clearTimeout(timer);
        resolve(e as E);
      };
      this.#waiters.push({ pred: match, resolve: done });
    });
  }

  count(type: RelayWorkerEvent["type"]): number {
    return this.events.filter((e) => e.type === type).length;
  }

  summary(): string {
    return this.events.slice(-12).map((e) =>
      e.type === "closed" ? `closed(${e.reason}: ${e.message})` : e.type
    ).join(", ");
  }
}

/** Collects worker events (relay or coordinator) and lets a test wait for one, bounded in time. */
import type { RelayLinkEvent } from "../../daemon/core/relay_client/relay_link.ts";

type Typed = { readonly type: string };

export class EventLog<E extends Typed = RelayLinkEvent> {
  readonly events: E[] = [];
  #waiters: { pred: (e: E) => boolean; resolve: (e: E) => void }[] = [];
  readonly #skip: ReadonlySet<string>;

  /** `skip`: types not kept (bulk data would pile up), though waiters still see them. */
  constructor(skip: readonly E["type"][] = []) {
    this.#skip = new Set(skip);
  }

  readonly push = (batch: readonly E[]): void => {
    for (const e of batch) {
      if (!this.#skip.has(e.type)) this.events.push(e);
      if (this.#waiters.length === 0) continue;
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(e)) return true;
        w.resolve(e);
        return false;
      });
    }
  };

  /** The first event (already seen, or still to come) matching `pred`, within `timeoutMs`. */
  waitFor<T extends E["type"]>(
    type: T,
    timeoutMs = 5_000,
    pred: (e: Extract<E, { type: T }>) => boolean = () => true,
    since = 0,
  ): Promise<Extract<E, { type: T }>> {
    type X = Extract<E, { type: T }>;
    const match = (e: E): e is X & E => e.type === type && pred(e as X);
    const seen = this.events.slice(since).find(match);
    if (seen) return Promise.resolve(seen as X);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no "${type}" event within ${timeoutMs} ms; saw: ${this.summary()}`));
      }, timeoutMs);
      const done = (e: E) => {
        clearTimeout(timer);
        resolve(e as X);
      };
      this.#waiters.push({ pred: match, resolve: done });
    });
  }

  count(type: E["type"]): number {
    return this.events.filter((e) => e.type === type).length;
  }

  summary(): string {
    return this.events.slice(-12).map((e) => {
      const x = e as Typed & { reason?: unknown; message?: unknown; state?: unknown };
      if (x.type === "closed") return `closed(${x.reason}: ${x.message})`;
      if (x.type === "relay_state") {
        return `relay_state(${x.state}${x.reason ? `: ${x.reason}` : ""})`;
      }
      return x.type;
    }).join(", ");
  }
}

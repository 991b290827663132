/**
 * The events of one daemon, kept from the moment we subscribed, each with the time it arrived,
 * so a step can wait for "the first X after index i" without racing the event stream. Every wait
 * is bounded and stops on an abort.
 */
import type { ControlClient, ControlEvent } from "../ctl.ts";
import { StepError, throwIfAborted } from "./failure.ts";

export interface Stamped {
  readonly at: number;
  readonly e: ControlEvent;
}

export class EventLog {
  readonly items: Stamped[] = [];
  #waiters = new Set<() => void>();
  #ended = false;
  readonly done: Promise<void>;

  constructor(readonly name: string, client: ControlClient, readonly clock: () => number) {
    this.done = (async () => {
      try {
        for await (const e of client.events()) {
          this.items.push({ at: clock(), e });
          this.#wake();
        }
      } catch {
        // the daemon sent garbage: the waits below time out with a clear message
      } finally {
        this.#ended = true;
        this.#wake();
      }
    })();
  }

  get length(): number {
    return this.items.length;
  }

  filter(pred: (e: ControlEvent) => boolean, from = 0): Stamped[] {
    return this.items.slice(from).filter((s) => pred(s.e));
  }

  /** The first event from index `from` on that `pred` accepts, within `ms`. */
  async waitFor(
    pred: (e: ControlEvent) => boolean,
    opts: { from?: number; ms: number; what: string; signal: AbortSignal },
  ): Promise<Stamped> {
    const end = performance.now() + opts.ms;
    let i = opts.from ?? 0;
    while (true) {
      for (; i < this.items.length; i++) if (pred(this.items[i].e)) return this.items[i];
      throwIfAborted(opts.signal);
      if (this.#ended) throw new StepError(`${opts.what}: ${this.name}'s event stream ended`);
      const left = end - performance.now();
      if (left <= 0) throw new StepError(`${opts.what}: not within ${opts.ms} ms`);
      await this.#next(left, opts.signal);
    }
  }

  /** Waits until `count(pred)` from `from` reaches `n`, within `ms`; returns them. */
  async waitForCount(
    pred: (e: ControlEvent) => boolean,
    n: number,
    opts: { from?: number; ms: number; what: string; signal: AbortSignal; soft?: boolean },
  ): Promise<Stamped[]> {
    const end = performance.now() + opts.ms;
    while (true) {
      const got = this.filter(pred, opts.from ?? 0);
      if (got.length >= n) return got;
      throwIfAborted(opts.signal);
      const left = end - performance.now();
      if (left <= 0 || this.#ended) {
        if (opts.soft) return got;
        throw new StepError(
          `${opts.what}: ${got.length} of ${n} ${
            this.#ended ? "before the event stream ended" : `within ${opts.ms} ms`
          }`,
        );
      }
      await this.#next(left, opts.signal);
    }
  }

  #next(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        signal.removeEventListener("abort", wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiters.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}

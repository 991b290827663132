/**
 * The owner's side of one relay Worker: typed commands down, batched events up, and a
 * close that waits for the worker to shut its socket before the Worker is terminated.
 */
import type { ProxyConfig } from "../daemon/tcp/proxy.ts";
import type { RelayClientConfig } from "../daemon/tcp/relay_client.ts";
import {
  type FromRelayWorker,
  type RelayAddress,
  type RelaySendItem,
  type RelayWorkerEvent,
  type ToRelayWorker,
  transferablesOf,
} from "./messages.ts";

export interface RelayConnectOptions {
  readonly relay: RelayAddress;
  readonly self: { readonly publicKey: Uint8Array; readonly secretKey: Uint8Array };
  readonly proxy?: ProxyConfig;
  readonly config?: Partial<RelayClientConfig>;
  readonly reconnectOnStall?: boolean;
}

const WORKER_URL = new URL("./relay_client.ts", import.meta.url);

export class RelayWorkerHandle {
  readonly #worker: Worker;
  #closed = false;
  #shutdown: (() => void) | null = null;

  constructor(opts: RelayConnectOptions, onEvents: (events: readonly RelayWorkerEvent[]) => void) {
    this.#worker = new Worker(WORKER_URL, { type: "module", name: `relay ${opts.relay.host}` });
    this.#worker.onmessage = (e: MessageEvent<FromRelayWorker>) => {
      const events = e.data.events;
      for (const ev of events) if (ev.type === "shutdown") this.#shutdown?.();
      onEvents(events);
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      onEvents([{ type: "crashed", message: e.message }]);
    };
    this.#post({ t: "connect", ...opts });
  }

  #post(msg: ToRelayWorker, transfer: ArrayBuffer[] = []): void {
    if (!this.#closed) this.#worker.postMessage(msg, transfer);
  }

  route(publicKey: Uint8Array): void {
    this.#post({ t: "route", publicKey });
  }

  unroute(publicKey: Uint8Array): void {
    this.#post({ t: "unroute", publicKey });
  }

  /** Send a batch; each item's buffer is moved to the worker when it is a whole buffer. */
  send(items: readonly RelaySendItem[]): void {
    this.#post({ t: "send", items }, transferablesOf(items));
  }

  requestStats(): void {
    this.#post({ t: "stats" });
  }

  /** Ask the worker to close its socket; terminate it if it has not done so in `graceMs`. */
  async close(graceMs = 2_000): Promise<void> {
    if (this.#closed) return;
    const done = new Promise<void>((resolve) => (this.#shutdown = resolve));
    this.#post({ t: "close" });
    this.#closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.#worker.terminate();
  }
}

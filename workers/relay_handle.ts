/**
 * The owner's side of one relay Worker: typed commands down, batched events up, and a
 * close that waits for the worker to shut its socket before the Worker is terminated.
 */
import type { ProxyConfig } from "../daemon/core/relay_client/proxy.ts";
import type { RelayClientConfig } from "../daemon/core/relay_client/relay_client.ts";
import { OwnedWorker, type WorkerChannel } from "./owned_worker.ts";
import {
  type FromRelayWorker,
  type RelayAddress,
  type RelayLinkEvent,
  type RelaySendItem,
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

export const RELAY_WORKER_URL = new URL("./relay_client.ts", import.meta.url);

/** Opens the channel to a relay Worker; by default the Worker is spawned here. */
export type RelayChannelFactory = (
  name: string,
  onMessage: (data: unknown) => void,
  onCrash: (message: string) => void,
) => WorkerChannel<ToRelayWorker>;

const spawnHere: RelayChannelFactory = (name, onMessage, onCrash) =>
  new OwnedWorker<ToRelayWorker>(RELAY_WORKER_URL, name, onMessage, onCrash);

export class RelayWorkerHandle {
  readonly #worker: WorkerChannel<ToRelayWorker>;

  constructor(
    opts: RelayConnectOptions,
    onEvents: (events: readonly RelayLinkEvent[]) => void,
    channel: RelayChannelFactory = spawnHere,
  ) {
    this.#worker = channel(
      `relay ${opts.relay.host}`,
      (data) => {
        const events = (data as FromRelayWorker).events;
        for (const ev of events) if (ev.type === "shutdown") this.#worker.shutdownSeen();
        onEvents(events);
      },
      (message) => onEvents([{ type: "crashed", message }]),
    );
    this.#post({ t: "connect", ...opts });
  }

  #post(msg: ToRelayWorker, transfer: ArrayBuffer[] = []): void {
    this.#worker.post(msg, transfer);
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

  /**
   * Ask the worker to close its socket (after writing what is queued for up to `lingerMs`);
   * terminate it if it has not done so `graceMs` later.
   */
  close(graceMs = 2_000, lingerMs = 0): Promise<void> {
    return this.#worker.close({ t: "close", lingerMs }, graceMs + lingerMs);
  }
}

/**
 * A Messenger endpoint (a coordinator Worker with a long-term key) and a custom-lossless
 * stream between friends: the same code drives the interop tests and `deno task bench`.
 *
 * Stream packets are [id][u32 BE sequence][filler], the layout tools/testbed/tox_peer.c
 * counts, so either end can be ours or c-toxcore.
 */
import { type KeyPair, newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import type { TcpConnectionsConfig } from "../../daemon/core/tcp_connections/config.ts";
import type { RelayClientConfig } from "../../daemon/core/relay_client/relay_client.ts";
import type { FriendConnectionConfig } from "../../daemon/core/friend_connection/friend_connection.ts";
import type { ProxyConfig } from "../../daemon/core/relay_client/proxy.ts";
import { CoordinatorHandle, type CoordinatorObserver } from "../../workers/coordinator_handle.ts";
import type { CoordinatorEvent, CoordinatorStatus } from "../../workers/messages.ts";
import { Fanout } from "./fanout.ts";
import { toxId } from "../../daemon/shell/identity.ts";
import type { OnionClientConfig } from "../../daemon/core/onion/config.ts";

export interface FriendEndpointOptions {
  readonly name?: string;
  readonly relays?: readonly RelayAddress[];
  readonly proxy?: ProxyConfig;
  readonly config?: Partial<TcpConnectionsConfig>;
  readonly relayConfig?: Partial<RelayClientConfig>;
  readonly friendConfig?: Partial<FriendConnectionConfig>;
  /** What the daemon's --capture / --keylog would record (daemon/shell/recorder.ts). */
  readonly observer?: CoordinatorObserver;
  /** Onion bootstrap nodes beyond the relays (which are tried as nodes at their TCP port). */
  readonly bootstrap?: readonly RelayAddress[];
  readonly onionConfig?: Partial<OnionClientConfig>;
}

/** One of our daemons' cores: keys, a coordinator Worker, and its events fanned out. */
export class FriendEndpoint {
  readonly real: KeyPair = newKeyPair();
  readonly dht: KeyPair = newKeyPair();
  readonly realHex = toHex(this.real.publicKey);
  readonly dhtHex = toHex(this.dht.publicKey);
  /** A fresh nospam: friend requests to `toxId` reach us. */
  readonly nospam: Uint8Array = crypto.getRandomValues(new Uint8Array(4));
  readonly toxId = toxId(this.real.publicKey, this.nospam);
  readonly handle: CoordinatorHandle;
  readonly startedAt = performance.now();
  readonly #events = new Fanout<CoordinatorEvent>();

  constructor(opts: FriendEndpointOptions = {}) {
    this.handle = new CoordinatorHandle(
      {
        self: this.dht,
        real: this.real,
        profile: { name: opts.name ?? "deno" },
        proxy: opts.proxy,
        config: opts.config,
        relayConfig: opts.relayConfig,
        friendConfig: opts.friendConfig,
        nospam: this.nospam,
        bootstrap: opts.bootstrap,
        onionConfig: opts.onionConfig,
      },
      this.#events.emit,
      opts.observer,
    );
    for (const r of opts.relays ?? []) this.handle.addRelay(r);
  }

  subscribe(fn: (events: readonly CoordinatorEvent[]) => void): () => void {
    return this.#events.subscribe(fn);
  }

  /** The first event (from now on) that matches, or a rejection after timeoutMs. */
  waitFor<E extends CoordinatorEvent>(
    what: string,
    pred: (e: CoordinatorEvent) => e is E,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<E>;
  waitFor(
    what: string,
    pred: (e: CoordinatorEvent) => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<CoordinatorEvent>;
  waitFor(
    what: string,
    pred: (e: CoordinatorEvent) => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<CoordinatorEvent> {
    return new Promise((resolve, reject) => {
      const done = (f: () => void) => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener("abort", onAbort);
        f();
      };
      const onAbort = () => done(() => reject(signal!.reason));
      const timer = setTimeout(
        () => done(() => reject(new Error(`${what}: not within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const unsubscribe = this.subscribe((events) => {
        const hit = events.find(pred);
        if (hit) done(() => resolve(hit));
      });
      signal?.addEventListener("abort", onAbort);
    });
  }

  status(): Promise<CoordinatorStatus> {
    return this.handle.status();
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export function streamPacket(id: number, seq: number, size: number): Uint8Array {
  const p = new Uint8Array(Math.max(5, size));
  p[0] = id;
  new DataView(p.buffer).setUint32(1, seq);
  for (let i = 5; i < p.length; i++) p[i] = (seq + i) & 0xff;
  return p;
}

export function streamSeq(p: Uint8Array): number {
  return p.length >= 5 ? new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(1) : -1;
}

/** Counts a custom-lossless stream as it arrives at an endpoint from one friend. */
export class StreamCounter {
  received = 0;
  inOrder = 0;
  outOfOrder = 0;
  firstAt: number | null = null;
  lastAt: number | null = null;
  #next = 0;
  readonly #unsubscribe: () => void;

  constructor(at: FriendEndpoint, from: string, readonly id = 160) {
    this.#unsubscribe = at.subscribe((events) => {
      for (const e of events) {
        if (e.type !== "friend_lossless" || e.friend !== from || e.data[0] !== this.id) continue;
        const now = performance.now();
        this.firstAt ??= now;
        this.lastAt = now;
        this.received++;
        if (streamSeq(e.data) === this.#next) this.inOrder++;
        else this.outOfOrder++;
        this.#next = streamSeq(e.data) + 1;
      }
    });
  }

  stop(): void {
    this.#unsubscribe();
  }
}

export interface StreamResult {
  readonly sent: number;
  readonly refusals: number;
  readonly ms: number;
  readonly timedOut: boolean;
}

/**
 * Send `count` stream packets to a friend as fast as its send queue takes them: a refused
 * batch is kept and resent after `friend_send_ready`. Resolves when `done()` says the far
 * end has everything, or at the timeout.
 */
export function sendStream(
  from: FriendEndpoint,
  to: Uint8Array,
  opts: {
    count: number;
    size: number;
    id?: number;
    batch?: number;
    timeoutMs: number;
    done: () => boolean;
    signal?: AbortSignal;
  },
): Promise<StreamResult> {
  const toHexKey = toHex(to);
  const id = opts.id ?? 160;
  const batch = opts.batch ?? 64;
  const started = performance.now();
  let next = 0;
  let held: Uint8Array[] = [];
  let waiting = false;
  let epoch = 0;
  let refusals = 0;
  return new Promise((resolve) => {
    let finished = false;
    const finish = (timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearInterval(poll);
      unsubscribe();
      resolve({ sent: next - held.length, refusals, ms: performance.now() - started, timedOut });
    };
    const pump = () => {
      if (finished || waiting) return;
      const out: Uint8Array[] = held;
      held = [];
      while (out.length < batch && next < opts.count) out.push(streamPacket(id, next++, opts.size));
      if (out.length > 0) from.handle.sendLossless(to, out, epoch);
    };
    const unsubscribe = from.subscribe((events) => {
      for (const e of events) {
        if (e.type === "friend_lossless_refused" && e.friend === toHexKey) {
          refusals++;
          epoch = Math.max(epoch, e.epoch);
          held = [...held, ...e.packets];
          waiting = e.reason === "send_queue_full";
          if (!waiting) setTimeout(pump, 50);
        } else if (e.type === "friend_send_ready" && e.friend === toHexKey) {
          waiting = false;
        }
      }
      if (opts.done()) finish(false);
      else pump();
    });
    // Also top up on a clock: acknowledgements arrive as events, but keep the queue fed.
    const poll = setInterval(() => {
      if (opts.done()) finish(false);
      else pump();
    }, 5);
    const timer = setTimeout(() => finish(true), opts.timeoutMs);
    opts.signal?.addEventListener("abort", () => finish(true));
    pump();
  });
}

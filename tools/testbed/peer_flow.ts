/**
 * Move numbered packets from one coordinator to a peer's coordinator and account for every
 * one: packets the coordinator hands back (send_refused) go again after `writable`, the
 * receiver checks order and notes when each packet arrived, so a failover shows up as a gap.
 * With `feedback` the sender tells its coordinator about deliveries (what net_crypto's
 * acknowledgements will do), which arms the detection of relays that drop data.
 * Used by the interop tests and the benchmark alike.
 */
import { type KeyPair, newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import type { TcpConnectionsConfig } from "../../daemon/core/tcp_connections/config.ts";
import type { RelayClientConfig } from "../../daemon/core/relay_client/relay_client.ts";
import type { ProxyConfig } from "../../daemon/core/relay_client/proxy.ts";
import { CoordinatorHandle } from "../../workers/coordinator_handle.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import { Fanout } from "./fanout.ts";

export interface PeerFlowOptions {
  readonly count: number;
  readonly size: number;
  readonly timeoutMs: number;
  /** Packets per send command. */
  readonly batch?: number;
  /** With a rate: one batch every intervalMs. Without: as fast as the window allows. */
  readonly intervalMs?: number;
  /** Packets posted and not yet seen by the receiver. */
  readonly window?: number;
  /** Report deliveries to the sender's coordinator. */
  readonly feedback?: boolean;
  /** Stop waiting once nothing has arrived for this long after the last send. */
  readonly quietMs?: number;
  readonly signal?: AbortSignal;
}

export interface PeerFlowResult {
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly outOfOrder: number;
  readonly refused: number;
  readonly ms: number;
  readonly timedOut: boolean;
  /** Arrival time of each received packet, ms since the flow started, in arrival order. */
  readonly arrivals: readonly number[];
  /** performance.now() when the flow started, to place outside events on its time line. */
  readonly startedAt: number;
}

/** Longest silence between arrivals after `from` (ms on the flow's time line). */
export function longestGapAfter(arrivals: readonly number[], from: number): number {
  let prev = from;
  let longest = 0;
  for (const t of arrivals) {
    if (t < from) continue;
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  return longest;
}

const seqOf = (d: Uint8Array) => new DataView(d.buffer, d.byteOffset).getUint32(0);

export function runPeerFlow(
  from: CoordinatorEndpoint,
  to: CoordinatorEndpoint,
  opts: PeerFlowOptions,
): Promise<PeerFlowResult> {
  const batch = opts.batch ?? 32;
  const window = opts.window ?? 512;
  const quietMs = opts.quietMs ?? 3_000;
  const size = Math.max(4, opts.size);
  const peerHex = to.publicKeyHex;
  let next = 0;
  let blocked = false;
  let epoch = 0;
  const retry: Uint8Array[] = [];
  let received = 0;
  let expected = 0;
  let outOfOrder = 0;
  let refused = 0;
  let lastFeedback = 0;
  const seen = new Uint8Array(opts.count);
  const arrivals: number[] = [];
  const t0 = performance.now();
  let lastArrival = t0;
  let lastProgress = t0;

  const packet = (seq: number): Uint8Array => {
    const data = new Uint8Array(size);
    new DataView(data.buffer).setUint32(0, seq);
    data.fill(seq & 0xff, 4);
    return data;
  };

  return new Promise((resolve) => {
    let done = false;
    // Packets lost with a dead relay never arrive: after a quiet spell, stop waiting for them.
    let inflightBase = 0;
    const inflight = () => next - retry.length - received - inflightBase;
    const pump = () => {
      if (done || blocked) return;
      const rounds = opts.intervalMs === undefined ? Infinity : 1;
      for (let i = 0; i < rounds; i++) {
        if (retry.length === 0 && next >= opts.count) return;
        if (inflight() + batch > window) return;
        const data: Uint8Array[] = retry.splice(0, batch);
        while (data.length < batch && next < opts.count) data.push(packet(next++));
        from.handle.send(data.map((d) => ({ publicKey: to.publicKey, data: d })), epoch);
      }
    };
    const offFrom = from.subscribe((events) => {
      for (const e of events) {
        if (e.type === "send_refused" && e.peer === peerHex) {
          refused += e.packets.length;
          epoch = Math.max(epoch, e.epoch);
          // Refusals of several batches can come back in one turn: keep sequence order.
          retry.push(...e.packets);
          retry.sort((x, y) => seqOf(x) - seqOf(y));
          blocked = true;
        } else if ((e.type === "writable" || e.type === "peer_online") && e.peer === peerHex) {
          blocked = false;
        }
      }
      if (opts.intervalMs === undefined) pump();
    });
    const offTo = to.subscribe((events) => {
      const now = performance.now();
      for (const e of events) {
        if (e.type !== "data" || e.peer !== from.publicKeyHex) continue;
        const seq = seqOf(e.data);
        if (seq >= opts.count || seen[seq]) continue;
        seen[seq] = 1;
        received++;
        if (seq !== expected) outOfOrder++;
        expected = seq + 1;
        arrivals.push(now - t0);
        lastArrival = lastProgress = now;
      }
      if (opts.feedback && now - lastFeedback >= 50 && lastArrival === now) {
        lastFeedback = now;
        from.handle.delivered(to.publicKey);
      }
      if (received === opts.count) finish(false);
      else if (opts.intervalMs === undefined) pump();
    });
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearInterval(watch);
      clearInterval(pacer);
      opts.signal?.removeEventListener("abort", onAbort);
      offFrom();
      offTo();
      resolve({
        sent: next,
        received,
        lost: next - retry.length - received,
        outOfOrder,
        refused,
        ms: lastArrival - t0,
        timedOut,
        arrivals,
        startedAt: t0,
      });
    };
    const watch = setInterval(() => {
      const now = performance.now();
      if (now - t0 > opts.timeoutMs) return finish(true);
      if (inflight() > 0 && now - lastProgress > 300) {
        inflightBase += inflight(); // written off: lost in flight
        lastProgress = now;
        pump();
      }
      if (next === opts.count && retry.length === 0 && now - lastArrival > quietMs) {
        finish(false); // everything left our side; what has not arrived by now was lost
      }
    }, 50);
    const pacer = opts.intervalMs === undefined ? undefined : setInterval(pump, opts.intervalMs);
    const onAbort = () => finish(false);
    opts.signal?.addEventListener("abort", onAbort);
    pump();
  });
}

export interface CoordinatorEndpointOptions {
  readonly self?: KeyPair;
  readonly relays?: readonly RelayAddress[];
  readonly proxy?: ProxyConfig;
  readonly config?: Partial<TcpConnectionsConfig>;
  readonly relayConfig?: Partial<RelayClientConfig>;
}

/** A coordinator Worker with its own key pair and a fan-out of its events. */
export class CoordinatorEndpoint {
  readonly keys: KeyPair;
  readonly handle: CoordinatorHandle;
  readonly publicKeyHex: string;
  readonly #events = new Fanout<CoordinatorEvent>();

  constructor(opts: CoordinatorEndpointOptions = {}) {
    this.keys = opts.self ?? newKeyPair();
    this.publicKeyHex = toHex(this.keys.publicKey);
    this.handle = new CoordinatorHandle(
      {
        self: this.keys,
        proxy: opts.proxy,
        config: opts.config,
        relayConfig: opts.relayConfig,
      },
      this.#events.emit,
    );
    for (const r of opts.relays ?? []) this.handle.addRelay(r);
  }

  get publicKey(): Uint8Array {
    return this.keys.publicKey;
  }

  subscribe(fn: (events: readonly CoordinatorEvent[]) => void): () => void {
    return this.#events.subscribe(fn);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

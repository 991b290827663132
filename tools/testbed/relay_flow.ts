/**
 * Move N numbered DATA packets from one relay worker to another and account for every one:
 * the sender keeps its unacknowledged items under a window using the worker's "sent" credit
 * and re-sends what the worker hands back as refused, so nothing is dropped on our side;
 * the receiver checks order. Used by the interop tests and the benchmark alike.
 */
import { type KeyPair, newKeyPair } from "../../daemon/core/common/crypto.ts";
import type { RelayLinkEvent, RelaySendItem } from "../../daemon/core/relay_client/relay_link.ts";
import { type RelayConnectOptions, RelayWorkerHandle } from "../../workers/relay_handle.ts";
import { Fanout } from "./fanout.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import type { RelayClientConfig } from "../../daemon/core/relay_client/relay_client.ts";

export interface FlowResult {
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly outOfOrder: number;
  readonly ms: number;
  readonly stalls: number;
  readonly reconnects: number;
  readonly timedOut: boolean;
}

/** An endpoint whose events the flow can watch (the test or bench fans events in). */
export interface FlowEndpoint {
  readonly handle: RelayWorkerHandle;
  readonly publicKey: Uint8Array;
  /** Subscribe to this endpoint's events; returns an unsubscribe function. */
  subscribe(fn: (events: readonly RelayLinkEvent[]) => void): () => void;
}

export interface FlowOptions {
  readonly count: number;
  readonly size: number;
  readonly timeoutMs: number;
  /** Bytes the sender may have queued in its worker at once. */
  readonly windowBytes?: number;
  /** Items per postMessage. */
  readonly batch?: number;
  /** Stop waiting once nothing has arrived for this long after the last send. */
  readonly quietMs?: number;
  /** End the flow early (a test that has seen what it needed). */
  readonly signal?: AbortSignal;
}

export function runFlow(
  from: FlowEndpoint,
  to: FlowEndpoint,
  opts: FlowOptions,
): Promise<FlowResult> {
  const windowBytes = opts.windowBytes ?? 192 * 1024;
  const batch = opts.batch ?? 64;
  const quietMs = opts.quietMs ?? 3_000;
  const size = Math.max(4, opts.size);
  let next = 0; // next sequence number never sent
  let routeDown = false; // refused as not_online: hold until the sender sees "online"
  const retry: RelaySendItem[] = []; // handed back, to go first
  let inWorker = 0; // items posted and neither credited nor refused
  let received = 0;
  let expected = 0;
  let outOfOrder = 0;
  let stalls = 0;
  let reconnects = 0;
  const seen = new Uint8Array(opts.count);
  const t0 = performance.now();
  let lastArrival = t0;

  const item = (seq: number): RelaySendItem => {
    const data = new Uint8Array(size);
    new DataView(data.buffer).setUint32(0, seq);
    data.fill(seq & 0xff, 4);
    return { kind: "data", publicKey: to.publicKey, data };
  };

  return new Promise((resolve) => {
    let done = false;
    const pump = () => {
      while (
        !done && !routeDown && (retry.length > 0 || next < opts.count) &&
        (inWorker + batch) * size <= windowBytes
      ) {
        const items: RelaySendItem[] = retry.splice(0, batch);
        while (items.length < batch && next < opts.count) items.push(item(next++));
        inWorker += items.length;
        from.handle.send(items);
      }
    };
    const offFrom = from.subscribe((events) => {
      for (const e of events) {
        if (e.type === "sent") inWorker -= e.packets;
        else if (e.type === "refused") {
          inWorker -= e.items.length;
          retry.push(...e.items);
          if (e.reason === "not_online" || e.reason === "not_confirmed") routeDown = true;
        } else if (e.type === "online") {
          routeDown = false;
        } else if (e.type === "closed") {
          if (e.reason === "stalled") stalls++;
          inWorker = 0; // the lane was emptied; what it held is lost on the wire
        } else if (e.type === "reconnecting") reconnects++;
      }
      pump();
    });
    const offTo = to.subscribe((events) => {
      for (const e of events) {
        if (e.type !== "data") continue;
        const seq = new DataView(e.data.buffer, e.data.byteOffset).getUint32(0);
        if (seq >= opts.count || seen[seq]) continue;
        seen[seq] = 1;
        received++;
        if (seq !== expected) outOfOrder++;
        expected = seq + 1;
        lastArrival = performance.now();
      }
      if (received === opts.count) finish(false);
    });
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearInterval(watch);
      opts.signal?.removeEventListener("abort", onAbort);
      offFrom();
      offTo();
      resolve({
        sent: next,
        received,
        lost: next - received,
        outOfOrder,
        ms: lastArrival - t0,
        stalls,
        reconnects,
        timedOut,
      });
    };
    const watch = setInterval(() => {
      const now = performance.now();
      if (now - t0 > opts.timeoutMs) finish(true);
      else if (
        next === opts.count && retry.length === 0 && inWorker <= 0 && now - lastArrival > quietMs
      ) {
        finish(false); // everything left our side; what has not arrived by now was lost
      }
    }, 50);
    const onAbort = () => finish(false);
    opts.signal?.addEventListener("abort", onAbort);
    pump();
  });
}

/** A relay worker with its own key pair and a fan-out of its events. */
export class RelayEndpoint implements FlowEndpoint {
  readonly keys: KeyPair;
  readonly handle: RelayWorkerHandle;
  readonly #events = new Fanout<RelayLinkEvent>();

  constructor(opts: Omit<RelayConnectOptions, "self"> & { self?: KeyPair }) {
    this.keys = opts.self ?? newKeyPair();
    this.handle = new RelayWorkerHandle({ ...opts, self: this.keys }, this.#events.emit);
  }

  get publicKey(): Uint8Array {
    return this.keys.publicKey;
  }

  subscribe(fn: (events: readonly RelayLinkEvent[]) => void): () => void {
    return this.#events.subscribe(fn);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Resolves at the endpoint's first event of `type`; rejects after `ms`. */
export function waitForEvent(
  ep: FlowEndpoint,
  type: RelayLinkEvent["type"],
  ms = 10_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} within ${ms} ms`));
    }, ms);
    const off = ep.subscribe((evs) => {
      if (evs.some((e) => e.type === type)) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

/**
 * Two raw endpoints on `relay`, routed to each other and online. A stall is detected (~2 s),
 * counted and recovered by reconnecting, as in the daemon.
 */
export async function routedPair(
  relay: RelayAddress,
  config?: Partial<RelayClientConfig>,
): Promise<[RelayEndpoint, RelayEndpoint]> {
  const a = new RelayEndpoint({ relay, config });
  const b = new RelayEndpoint({ relay, config });
  await Promise.all([waitForEvent(a, "confirmed"), waitForEvent(b, "confirmed")]);
  const online = Promise.all([waitForEvent(a, "online"), waitForEvent(b, "online")]);
  a.handle.route(b.publicKey);
  b.handle.route(a.publicKey);
  await online;
  return [a, b];
}

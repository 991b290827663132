/**
 * Per-relay bookkeeping: the record kept for each relay (state, back-off, bench, health
 * evidence, counters, the peers on it) and the rules that read a relay alone: can it take a
 * send, how healthy do its recent faults and dropped data say it is, how long until the next
 * reconnect, which relays to prefer. Nothing here emits events or touches peers, so the peer
 * side can weigh relays without an import cycle back to it.
 */
import type { RandomBytes } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { ProxyConfig } from "../relay_client/proxy.ts";
import type { RelayClientStats } from "../relay_client/relay_client.ts";
import type { TcpConnectionsConfig } from "./config.ts";
import type { RelayConnState } from "./types.ts";

export interface Relay {
  readonly hex: string;
  readonly publicKey: Uint8Array;
  readonly address: RelayAddress;
  readonly proxy: ProxyConfig | undefined;
  readonly order: number;
  global: boolean;
  state: RelayConnState;
  everConfirmed: boolean;
  confirmedAt: number;
  /** Consecutive failed sessions, for the back-off. */
  attempts: number;
  retryAt: number;
  benchedUntil: number;
  benchedReason: string | null;
  lastError: string | null;
  faults: number[];
  /** Proven drops: when, and whose data (one peer's evidence never benches a relay alone). */
  penalties: { at: number; peer: string }[];
  /** The last time any peer's traffic came through this relay. */
  provenAt: number;
  congested: boolean;
  inflight: number;
  rttMs: number | null;
  sessions: number;
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  packetsOut: number;
  sendFailures: number;
  worker: RelayClientStats | null;
  /** Peers (hex) holding a slot on this relay. */
  readonly peers: Set<string>;
}

/** A relay as first heard of: asleep, never worked, no history. */
export function newRelay(
  hex: string,
  publicKey: Uint8Array,
  address: RelayAddress,
  proxy: ProxyConfig | undefined,
  order: number,
): Relay {
  return {
    hex,
    publicKey,
    address,
    proxy,
    order,
    global: false,
    state: "sleeping",
    everConfirmed: false,
    confirmedAt: 0,
    attempts: 0,
    retryAt: 0,
    benchedUntil: 0,
    benchedReason: null,
    lastError: null,
    faults: [],
    penalties: [],
    provenAt: 0,
    congested: false,
    inflight: 0,
    rttMs: null,
    sessions: 0,
    bytesIn: 0,
    bytesOut: 0,
    packetsIn: 0,
    packetsOut: 0,
    sendFailures: 0,
    worker: null,
    peers: new Set(),
  };
}

export function hasWorker(relay: Relay): boolean {
  return relay.state === "connecting" || relay.state === "confirmed";
}

export function canSend(config: TcpConnectionsConfig, relay: Relay): boolean {
  return relay.state === "confirmed" && !relay.congested &&
    relay.inflight < config.sendWindowPackets;
}

export function recentFaults(config: TcpConnectionsConfig, relay: Relay, now: number): number {
  const since = now - config.failureWindowMs;
  while (relay.faults.length > 0 && relay.faults[0] < since) relay.faults.shift();
  while (relay.penalties.length > 0 && relay.penalties[0].at < since) relay.penalties.shift();
  return relay.faults.length;
}

/** 100 for a clean relay; recent faults and dropped data cost points. */
export function score(config: TcpConnectionsConfig, relay: Relay, now: number): number {
  const faults = recentFaults(config, relay, now);
  return Math.max(0, 100 - 20 * faults - 25 * relay.penalties.length);
}

/**
 * Distinct peers whose data this relay was proven to drop since it last carried anyone's
 * traffic: the evidence that the relay, not one peer's path through it, is at fault.
 */
export function droppedPeers(relay: Relay): number {
  const peers = new Set<string>();
  for (const p of relay.penalties) if (p.at >= relay.provenAt) peers.add(p.peer);
  return peers.size;
}

/** 0 for the first retry after a stable session (c-toxcore reconnects at once), then ×2. */
export function backoff(
  config: TcpConnectionsConfig,
  random: RandomBytes,
  attempts: number,
): number {
  if (attempts === 0) return Math.floor(jitter(random) * 250);
  const base = Math.min(
    config.reconnectMaxMs,
    config.reconnectMinMs * 2 ** (attempts - 1),
  );
  const j = config.reconnectJitter;
  return Math.round(base * (1 - j + 2 * j * jitter(random)));
}

function jitter(random: RandomBytes): number {
  const b = random(4);
  return (((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0) / 2 ** 32;
}

/** Relays in the order they are preferred for a new job. */
export function rankRelays(
  config: TcpConnectionsConfig,
  relays: ReadonlyMap<string, Relay>,
  now: number,
): Relay[] {
  // A sleeping relay whose reconnect back-off still runs ranks with the waiting ones (fix,
  // see reconcile in relay_lifecycle.ts).
  const rank = (r: Relay) =>
    r.state === "confirmed"
      ? 0
      : r.state === "connecting"
      ? 1
      : r.state === "sleeping" && now >= r.retryAt
      ? 2
      : 3;
  return [...relays.values()].filter((r) => r.state !== "benched").sort((a, b) =>
    rank(a) - rank(b) || score(config, b, now) - score(config, a, now) ||
    (a.rttMs ?? 1e6) - (b.rttMs ?? 1e6) || a.order - b.order
  );
}

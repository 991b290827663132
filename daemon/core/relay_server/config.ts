/**
 * What the relay's owner chooses: timers, ring sizes, the outbox bounds, the rate limits and
 * the forward hook, with the defaults and the reasons behind them. Kept apart from the
 * machinery so the numbers, and why they are what they are, can be read and tuned in one
 * place; a config is checked once, when the relay is made.
 */
import { MAX_FRAME_SIZE } from "../tcp_common/framing.ts";
import type { ConnectionNumber } from "./events.ts";
import type { RateLimit } from "./rate_limit.ts";

/** MAX_INCOMING_CONNECTIONS (TCP_server.h): size of each ring of not-yet-confirmed sockets. */
export const MAX_INCOMING_CONNECTIONS = 256;

export interface RelayServerConfig {
  /** TCP_PING_FREQUENCY: each confirmed client is pinged this long after the last ping. */
  readonly pingIntervalMs: number;
  /** TCP_PING_TIMEOUT: no matching PONG within this closes the client. */
  readonly pingTimeoutMs: number;
  /** Entries in each of the two rings of not-yet-confirmed sockets. */
  readonly maxIncoming: number;
  /** DATA and OOB_RECV for a client are dropped while its queue holds this many bytes. */
  readonly dataQueueMax: number;
  /** A control packet that would take a client's queue past this closes that client. */
  readonly queueMax: number;
  /** DATA and OOB_RECV for anyone are dropped while all clients together are owed this. */
  readonly totalQueueMax: number;
  /** Largest chunk handed to the socket in one write. */
  readonly maxWriteChunk: number;
  /** From accept to the first frame that opens; Infinity = only the rings evict (c-toxcore). */
  readonly handshakeTimeoutMs: number;
  /** OOB_SEND per client. */
  readonly oobLimit: RateLimit;
  /** PING per client (each one costs a queued PONG). */
  readonly pingLimit: RateLimit;
  /** ROUTING_REQUEST and DISCONNECT_NOTIFICATION per client (each may notify a peer). */
  readonly routingLimit: RateLimit;
}

export const DEFAULT_RELAY_SERVER_CONFIG: RelayServerConfig = {
  pingIntervalMs: 30_000,
  pingTimeoutMs: 10_000,
  maxIncoming: MAX_INCOMING_CONNECTIONS,
  // An unpaced 10 MB burst of 1 KB DATA (the one that wedges tox-bootstrapd) peaked at the
  // old 256 KiB bound and lost 1-4 packets in 7 of 17 runs; with 1 MiB it loses none.
  dataQueueMax: 1024 * 1024,
  // Room above the data bound for every control packet an honest client can be owed at once:
  // 240 routing responses and notifications are about 20 KB.
  queueMax: 1024 * 1024 + 64 * 1024,
  // 128 clients that stop reading fill it; past that the relay drops DATA for everyone, as
  // c-toxcore does for a single busy socket, rather than grow.
  totalQueueMax: 128 * 1024 * 1024,
  maxWriteChunk: 64 * 1024,
  // TCP_CONNECTION_TIMEOUT, the budget c-toxcore's client gives itself for the same steps.
  handshakeTimeoutMs: 10_000,
  // c-toxcore's net_crypto sends an OOB handshake or cookie packet about once a second per
  // friend it is reaching through this relay.
  oobLimit: { perSecond: 64, burst: 256, closeAfter: 1024 },
  // c-toxcore pings every 30 s, our client every 0.5 s while busy.
  pingLimit: { perSecond: 64, burst: 256, closeAfter: 1024 },
  // Room to route a full table of 240 keys twice over at once; then 32 changes a second.
  routingLimit: { perSecond: 32, burst: 512, closeAfter: 2048 },
};

/** Throws a RangeError for a config the relay cannot run with. */
export function checkRelayServerConfig(c: RelayServerConfig): void {
  if (c.dataQueueMax < 0 || c.queueMax < c.dataQueueMax) {
    throw new RangeError("relay server: need 0 <= dataQueueMax <= queueMax");
  }
  if (!Number.isInteger(c.maxIncoming) || c.maxIncoming < 1) {
    throw new RangeError("relay server: maxIncoming must be a positive integer");
  }
  if (c.maxWriteChunk < MAX_FRAME_SIZE) {
    throw new RangeError("relay server: maxWriteChunk must hold the largest frame");
  }
  // Zero would make a deadline that is due again the moment it is handled.
  if (!(c.pingIntervalMs > 0 && c.pingTimeoutMs > 0 && c.handshakeTimeoutMs > 0)) {
    throw new RangeError("relay server: ping and handshake timers must be positive");
  }
  if (!(c.totalQueueMax >= 0)) throw new RangeError("relay server: totalQueueMax >= 0");
  for (
    const [name, l] of [["oob", c.oobLimit], ["ping", c.pingLimit], [
      "routing",
      c.routingLimit,
    ]] as const
  ) {
    if (!(l.perSecond >= 0 && l.burst >= 1 && l.closeAfter >= 1)) {
      throw new RangeError(
        `relay server: ${name}Limit needs perSecond >= 0, burst and closeAfter >= 1`,
      );
    }
  }
}

/** A confirmed client as the forward policy sees it. */
export interface RelayClientInfo {
  readonly id: ConnectionNumber;
  readonly publicKey: Uint8Array;
}

/** What is about to be forwarded; `data` is a view valid only during the call. */
export type ForwardedPacket =
  /** DATA payload (after the connection id byte). */
  | { readonly kind: "data"; readonly data: Uint8Array }
  /** OOB payload (after the key). */
  | { readonly kind: "oob"; readonly data: Uint8Array };

/**
 * Policy hook, asked before each DATA or OOB packet is forwarded from one client to another:
 * false drops it silently, as a relay may (operators could use it for rate limiting or
 * accounting; tests use it for a relay that loses data). Control packets never pass here.
 */
export type ForwardPolicy = (
  from: RelayClientInfo,
  to: RelayClientInfo,
  packet: ForwardedPacket,
  now: number,
) => boolean;

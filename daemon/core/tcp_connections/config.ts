/**
 * TCP_connections settings and their defaults: c-toxcore's constants (TCP_connection.h) and
 * the knobs for what we do beyond it (back-off, benching, delivery evidence). Apart from the
 * coordinator so shells, tools and tests can name a config without importing the machinery.
 */

export interface TcpConnectionsConfig {
  /** RECOMMENDED_FRIEND_TCP_CONNECTIONS: relays a peer wants, and ONLINE ones that stop more. */
  readonly recommendedRelays: number;
  /** MAX_FRIEND_TCP_CONNECTIONS: relay slots a peer may hold. */
  readonly maxRelaysPerPeer: number;
  /**
   * NUM_CLIENT_CONNECTIONS: routes one relay session holds (connection ids 16..255). Asking
   * for more only earns refusals, and early extras would keep later peers off their own relay.
   */
  readonly routesPerRelay: number;
  /** Relays kept connected even when no peer needs them (c-toxcore keeps 3). */
  readonly keepConnected: number;
  /** TCP_CONNECTION_ANNOUNCE_TIMEOUT: an unneeded relay sleeps this long after it connected. */
  readonly idleSleepMs: number;
  /** Reconnect back-off: first retry of a relay that worked, growth cap, jitter fraction. */
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly reconnectJitter: number;
  /** A session confirmed this long resets the back-off. */
  readonly stableAfterMs: number;
  /** Data-lane items handed to one relay worker and not yet credited as written. */
  readonly sendWindowPackets: number;
  /**
   * The layer above reports deliveries (`delivered`) for every peer, so silence means loss
   * from the start. Off: detection arms per peer at its first `delivered` call.
   */
  readonly deliveryFeedback: boolean;
  /** Sent through the sending relay with no delivery progress this long: suspect it. */
  readonly deliveryTimeoutMs: number;
  /** A slot counts as proven this long after the peer's traffic came through it. */
  readonly provenForMs: number;
  /** An unconfirmed suspicion is forgotten after this long. */
  readonly suspectForMs: number;
  /** After a sender switch, deliveries this soon are not attributed to either relay. */
  readonly attributionMs: number;
  /** Closures that are the relay's fault (lost pongs, stalls, bad packets) in this window... */
  readonly failureWindowMs: number;
  /** ...this many times bench the relay. */
  readonly failuresToBench: number;
  /**
   * A relay proven to drop one peer's data loses that peer for `benchMs`. It is benched when
   * the peers that lost data on it with no peer's traffic through it since number at least
   * this many and at least half of those still ONLINE on it (a busy machine makes a few
   * peers look dropped on any relay; a relay that drops for everyone loses them all).
   */
  readonly dropsToBench: number;
  /** How long a benched relay stays out. */
  readonly benchMs: number;
  /** A peer with no ONLINE slot this long may use up to maxRelaysPerPeer relays. */
  readonly searchAfterMs: number;
  /** How often connected relay workers are asked for their stats. */
  readonly statsIntervalMs: number;
  /**
   * After a suspend this long, sessions from before it are reopened at once: a c-toxcore
   * relay drops a client silent for its ping period and timeout (30 s + 10 s), and our own
   * pings would take that long again to notice.
   */
  readonly wakeReopenAfterMs: number;
}

export const DEFAULT_TCP_CONNECTIONS_CONFIG: TcpConnectionsConfig = {
  recommendedRelays: 3,
  maxRelaysPerPeer: 6,
  routesPerRelay: 240,
  keepConnected: 3,
  idleSleepMs: 10_000,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 60_000,
  reconnectJitter: 0.3,
  stableAfterMs: 30_000,
  sendWindowPackets: 128,
  deliveryFeedback: false,
  deliveryTimeoutMs: 4_000,
  provenForMs: 30_000,
  suspectForMs: 60_000,
  attributionMs: 1_000,
  failureWindowMs: 10 * 60_000,
  failuresToBench: 3,
  dropsToBench: 1,
  benchMs: 10 * 60_000,
  searchAfterMs: 10_000,
  statsIntervalMs: 1_000,
  wakeReopenAfterMs: 30_000,
};

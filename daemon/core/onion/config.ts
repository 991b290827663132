/**
 * The onion client's schedule and sizes in one record, apart from the code that follows it, so
 * the daemon, the workers and the test rigs can name and override them without the state machine.
 */

/** The schedule and sizes, c-toxcore's unless said otherwise (the README lists where we differ). */
export interface OnionClientConfig {
  /** MAX_ONION_CLIENTS_ANNOUNCE: nodes we announce ourselves to. */
  readonly maxAnnounceNodes: number;
  /** MAX_ONION_CLIENTS: nodes kept per friend search. */
  readonly maxSearchNodes: number;
  /** NUMBER_ONION_PATHS, kept apart for announcing and for friends. */
  readonly pathsPerKind: number;
  /** MAX_PATH_NODES: nodes that answered through a path, to build paths from. */
  readonly maxPathNodes: number;
  /** ANNOUNCE_INTERVAL_NOT_ANNOUNCED / _ANNOUNCED / _STABLE, TIME_TO_STABLE. */
  readonly announceIntervalNotStoredMs: number;
  readonly announceIntervalStoredMs: number;
  readonly announceIntervalStableMs: number;
  readonly timeToStableMs: number;
  /** ONION_NODE_TIMEOUT and ONION_NODE_MAX_PINGS: unanswered pings that drop a node. */
  readonly nodeTimeoutMs: number;
  readonly nodeMaxPings: number;
  /** MIN_NODE_PING_TIME: a candidate node is not asked again sooner. */
  readonly minNodePingMs: number;
  /** ANNOUNCE_POPULATE_TIMEOUT: look for more nodes this often even with enough. */
  readonly populateEveryMs: number;
  /**
   * Search interval per node for a friend not yet found, for its first `searchNewRuns` runs;
   * then c-toxcore's 2^(run−2) s up to `searchMaxIntervalMs`. c-toxcore's new interval is
   * 3 s, but it also re-populates the list every second while it is short, so in a small
   * network it asks about once a second; we ask once a second by schedule instead.
   */
  readonly searchIntervalNewMs: number;
  readonly searchNewRuns: number;
  readonly searchMaxIntervalMs: number;
  /**
   * Search requests per second for all friends together (not c-toxcore's: it has no such
   * bound). Every request costs a box and two onion layers, and a daemon with a thousand
   * friends offline would otherwise spend whole cores on searching (measured: 5,000 requests
   * a second through 5 relays, 140 % CPU) and stop answering its control socket. Friends take
   * turns, so each is searched, more slowly; our own announce is never held back.
   */
  readonly searchRequestsPerSec: number;
  /** ONION_DHTPK_SEND_INTERVAL. */
  readonly dhtPkIntervalMs: number;
  /**
   * DHT-PK interval while our friend request to the friend is unanswered (not c-toxcore's):
   * a peer drops DHT-PK from strangers, so the one sent with the request is lost; once it
   * accepts, the next one reaches it within this time instead of up to 30 s.
   */
  readonly dhtPkRequestIntervalMs: number;
  /** ONION_PATH_FIRST_TIMEOUT / ONION_PATH_TIMEOUT / ONION_PATH_MAX_LIFETIME. */
  readonly pathFirstTimeoutMs: number;
  readonly pathTimeoutMs: number;
  readonly pathMaxLifetimeMs: number;
  readonly pathMaxNoResponseUses: number;
  /** ANNOUNCE_TIMEOUT (the ping array's entry lifetime) and ANNOUNCE_ARRAY_SIZE. */
  readonly sendbackTimeoutMs: number;
  readonly maxSendbacks: number;
  /** A tick this late means the event loop stalled or we slept: announce and search anew. */
  readonly wakeGapMs: number;
}

export const DEFAULT_ONION_CLIENT_CONFIG: OnionClientConfig = {
  maxAnnounceNodes: 12,
  maxSearchNodes: 8,
  pathsPerKind: 6,
  maxPathNodes: 32,
  announceIntervalNotStoredMs: 3_000,
  announceIntervalStoredMs: 15_000,
  announceIntervalStableMs: 120_000,
  timeToStableMs: 90_000,
  nodeTimeoutMs: 15_000,
  nodeMaxPings: 3,
  minNodePingMs: 10_000,
  populateEveryMs: 600_000,
  searchIntervalNewMs: 1_000,
  searchNewRuns: 5,
  searchMaxIntervalMs: 3_600_000,
  searchRequestsPerSec: 400,
  dhtPkIntervalMs: 30_000,
  dhtPkRequestIntervalMs: 2_000,
  pathFirstTimeoutMs: 4_000,
  pathTimeoutMs: 10_000,
  pathMaxLifetimeMs: 1_200_000,
  pathMaxNoResponseUses: 4,
  sendbackTimeoutMs: 10_000,
  maxSendbacks: 256,
  wakeGapMs: 30_000,
};

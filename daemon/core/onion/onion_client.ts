/**
 * onion_client (c-toxcore 0.2.18 onion_client.c) for a client whose only network is TCP
 * relays: announce ourselves, search for friends, exchange DHT keys (DHT-PK) and carry
 * friend requests as onion data. Sans-I/O: bytes, commands and `now` in; onion requests for
 * the relays and events out.
 */

import { bytesEqual, type KeyPair, newKeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import { formatRelayAddress } from "../common/relay_address.ts";
import { type PackedNode, packedNodeToRelay, relayToPackedNode } from "../common/packed_node.ts";
import { parseIpLiteral } from "../common/ip_text.ts";
import { precompute } from "../common/crypto.ts";
import {
  announceResponseSendback,
  createOnionPath,
  decodeDhtPk,
  decodeFriendRequest,
  encodeAnnounceRequest,
  encodeDataRequest,
  encodeDhtPk,
  encodeOnionRequestTcp,
  isIpLiteral,
  NET_PACKET_ANNOUNCE_RESPONSE,
  NET_PACKET_ONION_DATA_RESPONSE,
  ONION_ANNOUNCE_SENDBACK_DATA_LENGTH,
  ONION_DATA_DHTPK,
  ONION_DATA_FRIEND_REQ,
  type OnionNode,
  type OnionPath,
  openAnnounceResponse,
  openDataResponse,
} from "./packets.ts";

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

export interface OnionAnnounceNodeView {
  readonly publicKey: string;
  /** host:port (UDP) as our relays reach it. */
  readonly address: string;
  readonly stored: boolean;
  readonly lastResponseAgoMs: number | null;
  readonly pingsUnanswered: number;
}

export interface OnionPathView {
  readonly relay: string;
  /** The two UDP hops after the relay, then nothing: the destination varies per packet. */
  readonly nodes: readonly string[];
  readonly ageMs: number;
  readonly lastSuccessAgoMs: number | null;
}

export interface OnionView {
  /** Stored at one node at least and at half of the live announce nodes (onion_isconnected). */
  readonly announced: boolean;
  readonly announceNodes: readonly OnionAnnounceNodeView[];
  readonly paths: readonly OnionPathView[];
  readonly pathNodes: number;
  readonly bootstrapNodes: number;
  readonly lastResponseAgoMs: number | null;
  /** Announce and search requests sent and not yet answered (at most maxSendbacks). */
  readonly awaitingResponses: number;
  readonly requestsSent: number;
  readonly responses: number;
  readonly dataReceived: number;
  readonly dropped: number;
}

export interface OnionFriendView {
  /** Search nodes with a live answer. */
  readonly nodes: number;
  /** Of those, how many hold the friend's announcement (it is findable there). */
  readonly announcedAt: number;
  readonly lastSearchAgoMs: number | null;
  readonly dhtPkSentAgoMs: number | null;
  readonly dhtPkReceivedAgoMs: number | null;
}

export type OnionEvent =
  /** Whether friends can find us changed (see OnionView.announced). */
  | {
    readonly type: "onion_announced";
    readonly announced: boolean;
    readonly storedAt: number;
    readonly nodes: number;
    /** ms since a relay came up with none up before (the onion's "start"), when announced. */
    readonly sinceRelayUpMs: number | null;
  }
  /** A friend's announcement was found: we can send it onion data now. */
  | { readonly type: "onion_friend_found"; readonly friend: string; readonly nodes: number };

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

/** What the onion needs from TCP_connections. */
export interface OnionTransport {
  /** Relay packet 8 through that relay; false when it cannot take it now. */
  send(body: Uint8Array, relay: string): boolean;
  /** Relays with a confirmed session, by key (hex), host and port. */
  connectedRelays(): readonly RelayAddress[];
}

export type OnionClientEvent =
  | OnionEvent
  /** A friend told us its DHT key and the relays it uses (DHT-PK, 0x9c). */
  | {
    readonly type: "onion_dht_pk";
    readonly friend: string;
    readonly dhtPublicKey: Uint8Array;
    readonly relays: readonly RelayAddress[];
  }
  /** Onion data 0x20 from anybody: Messenger decides whether it is a request for us. */
  | {
    readonly type: "onion_friend_request";
    readonly sender: Uint8Array;
    readonly nospam: Uint8Array;
    readonly message: Uint8Array;
  };

export interface OnionClientOptions {
  readonly now: number;
  /** Unix time in ms at `now`: DHT-PK's no_replay counts wall-clock seconds, as c-toxcore. */
  readonly unixTimeMs: number;
  readonly random: RandomBytes;
  readonly realKeys: KeyPair;
  readonly dhtPublicKey: Uint8Array;
  readonly transport: OnionTransport;
  readonly bootstrap?: readonly RelayAddress[];
  readonly config?: Partial<OnionClientConfig>;
}

type Kind = "self" | "friends";

interface Path {
  readonly id: number;
  readonly kind: Kind;
  readonly relay: string;
  readonly onion: OnionPath;
  readonly createdAt: number;
  lastSuccess: number;
  lastUsed: number;
  usesWithoutResponse: number;
}

/** An entry of an announce list (ours) or a search list (a friend's). */
interface ListNode {
  readonly node: OnionNode;
  readonly hex: string;
  /** Our announce: the ping id to echo. Searches never send one (c-toxcore neither). */
  pingId: Uint8Array;
  /** Ours: stored there. A friend's: it holds the friend's announcement (dataKey). */
  stored: boolean;
  dataKey: Uint8Array | null;
  lastResponse: number;
  lastPinged: number;
  pings: number;
  readonly addedAt: number;
  pathId: number;
}

interface Friend {
  readonly realPublicKey: Uint8Array;
  readonly hex: string;
  /** The key pair searches are made with (friends_list[].temp_*_key). */
  readonly searchKeys: KeyPair;
  nodes: ListNode[];
  online: boolean;
  lastNoReplay: bigint;
  lastDhtPkSent: number;
  lastDhtPkRecv: number;
  lastSearch: number;
  searches: number;
  runCount: number;
  lastPopulated: number;
  found: boolean;
  /** Our friend request to it is unanswered: DHT-PK goes more often. */
  requested: boolean;
}

interface Sendback {
  readonly target: string | null; // null: our own announce; else the friend (hex)
  readonly node: OnionNode;
  readonly pathId: number;
  readonly sentAt: number;
  readonly pingId: Uint8Array;
}

const ZERO_KEY = new Uint8Array(32);

/**
 * c-toxcore ip_is_lan: loopback, the private, link-local and CGNAT IPv4 ranges, IPv6
 * link-local (fe80::/10) and ff00::1..ff02::1, and IPv4 inside IPv6.
 */
export function isLanAddress(host: string): boolean {
  const ip = parseIpLiteral(host);
  if (ip === null) return false;
  const b = ip.bytes;
  if (ip.family === 4) {
    return b[0] === 127 || b[0] === 10 || (b[0] === 172 && (b[1] & 0xf0) === 16) ||
      (b[0] === 192 && b[1] === 168) || (b[0] === 169 && b[1] === 254) ||
      (b[0] === 100 && (b[1] & 0xc0) === 64);
  }
  const v4mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (v4mapped) return isLanAddress(`${b[12]}.${b[13]}.${b[14]}.${b[15]}`);
  const loopback = b.subarray(0, 15).every((x) => x === 0) && b[15] === 1;
  const multicastAllNodes = b[0] === 0xff && b[1] < 3 && b[15] === 1;
  return loopback || multicastAllNodes || (b[0] === 0xfe && (b[1] & 0xc0) === 0x80);
}

/** id_closest: < 0 when `a` is closer to `ref` than `b` (XOR metric), 0 when equal. */
function compareDistance(ref: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const da = ref[i] ^ a[i];
    const db = ref[i] ^ b[i];
    if (da !== db) return da - db;
  }
  return 0;
}

function nodeOf(r: RelayAddress): OnionNode | null {
  if (!isIpLiteral(r.host)) return null;
  if (!/^[0-9a-fA-F]{64}$/.test(r.publicKey)) return null;
  const publicKey = new Uint8Array(32);
  for (let i = 0; i < 32; i++) publicKey[i] = parseInt(r.publicKey.slice(2 * i, 2 * i + 2), 16);
  return { host: r.host, port: r.port, publicKey };
}

function addressOf(n: { host: string; port: number }): string {
  return formatRelayAddress({ host: n.host, port: n.port, publicKey: "" });
}

export class OnionClient {
  readonly config: OnionClientConfig;
  readonly #random: RandomBytes;
  readonly #real: KeyPair;
  readonly #dhtPublicKey: Uint8Array;
  /** Our onion data key pair (temp_public_key): new every start, as c-toxcore's. */
  readonly #data: KeyPair;
  readonly #transport: OnionTransport;
  readonly #unixOffsetMs: number;
  readonly #bootstrap = new Map<string, OnionNode>();
  /** Nodes that answered, newest last (path_nodes). */
  #pathNodes: OnionNode[] = [];
  readonly #paths: Record<Kind, (Path | null)[]>;
  #nextPathId = 1;
  readonly #announce: ListNode[] = [];
  #lastPopulated = -Infinity;
  /** Candidates asked recently (good_to_ping), per list: "self" or a friend's hex. */
  readonly #asked = new Map<string, Map<string, number>>();
  readonly #friends = new Map<string, Friend>();
  readonly #sendbacks = new Map<string, Sendback>();
  /** Shared keys with nodes, per our key pair (real or a friend's search key). */
  readonly #shared = new Map<string, Uint8Array>();
  #events: OnionClientEvent[] = [];
  #announced = false;
  #lastResponse = -Infinity;
  #lastDhtPkNoReplay = 0n;
  #deadline = Infinity;
  #relaysCache: readonly RelayAddress[] | null = null;
  /** When a relay came up while none was; whether one was up at the last run. */
  #relayUpAt = NaN;
  #anyRelay = false;
  #relaysAt = NaN;
  #now: number;
  #counters = { requestsSent: 0, responses: 0, dataReceived: 0, dropped: 0 };

  constructor(opts: OnionClientOptions) {
    this.config = { ...DEFAULT_ONION_CLIENT_CONFIG, ...opts.config };
    this.#random = opts.random;
    this.#real = opts.realKeys;
    this.#dhtPublicKey = opts.dhtPublicKey.slice();
    this.#data = newKeyPair(opts.random);
    this.#transport = opts.transport;
    this.#unixOffsetMs = opts.unixTimeMs - opts.now;
    this.#now = opts.now;
    this.#paths = { self: [], friends: [] };
    for (const b of opts.bootstrap ?? []) this.addBootstrap(b);
  }

  /** Our onion data public key (what a search for us finds). */
  get dataPublicKey(): Uint8Array {
    return this.#data.publicKey;
  }

  get announced(): boolean {
    return this.#announced;
  }

  takeEvents(): OnionClientEvent[] {
    const e = this.#events;
    this.#events = [];
    return e;
  }

  /** onion_add_bs_path_node: a node to build paths from and announce to before we know any. */
  addBootstrap(r: RelayAddress): { ok: true } | { ok: false; message: string } {
    const node = nodeOf(r);
    if (node === null) {
      return {
        ok: false,
        message: `${formatRelayAddress(r)}: an onion node needs an IP address and a 64-hex key`,
      };
    }
    this.#bootstrap.set(toHex(node.publicKey), node);
    return { ok: true };
  }

  /** onion_addfriend: search for it from now on. */
  addFriend(realPublicKey: Uint8Array, now: number): void {
    const hex = toHex(realPublicKey);
    if (this.#friends.has(hex)) return;
    this.#friends.set(hex, {
      realPublicKey: realPublicKey.slice(),
      hex,
      searchKeys: newKeyPair(this.#random),
      nodes: [],
      online: false,
      lastNoReplay: 0n,
      lastDhtPkSent: -Infinity,
      lastDhtPkRecv: -Infinity,
      lastSearch: -Infinity,
      searches: 0,
      runCount: 0,
      lastPopulated: -Infinity,
      found: false,
      requested: false,
    });
    this.#run(now);
  }

  removeFriend(hex: string, now: number): void {
    this.#friends.delete(hex);
    this.#asked.delete(hex);
    this.#run(now);
  }

  /**
   * onion_set_friend_online: an online friend needs no search nor DHT-PK; going offline
   * starts both anew and forgets its no_replay (it may have restarted with a new clock).
   */
  setFriendOnline(hex: string, online: boolean, now: number): void {
    const f = this.#friends.get(hex);
    if (!f || f.online === online) return;
    f.online = online;
    if (!online) {
      f.lastNoReplay = 0n;
      f.runCount = 0;
      f.searches = 0;
      f.lastDhtPkSent = -Infinity;
      for (const n of f.nodes) n.lastPinged = -Infinity;
    }
    this.#run(now);
  }

  /** Whether our friend request to it awaits an answer (see dhtPkRequestIntervalMs). */
  setRequestPending(hex: string, pending: boolean, now: number): void {
    const f = this.#friends.get(hex);
    if (!f || f.requested === pending) return;
    f.requested = pending;
    this.#run(now);
  }

  /** A relay came up: build paths through it at once. */
  relayUp(now: number): void {
    this.#relaysCache = null;
    if (!this.#anyRelay) this.#relayUpAt = now;
    this.#run(now);
  }

  /**
   * send_onion_data: one copy through each search node that holds the friend's
   * announcement, if enough of them do; the number of copies sent (0: not found yet).
   */
  sendData(hex: string, payload: Uint8Array, now: number): number {
    this.#now = now;
    const f = this.#friends.get(hex);
    if (!f) return 0;
    const live = f.nodes.filter((n) => !this.#timedOut(n, now));
    const good = live.filter((n) => n.stored && n.dataKey !== null);
    if (good.length === 0 || good.length < Math.floor((live.length - 1) / 4) + 1) return 0;
    let sent = 0;
    for (const n of good) {
      const path = this.#pathFor("friends", null, now);
      if (path === null) break;
      const request = encodeDataRequest(
        f.realPublicKey,
        n.dataKey!,
        this.#real.publicKey,
        this.#real.secretKey,
        payload,
        this.#random,
        () => newKeyPair(this.#random),
      );
      if (this.#sendThrough(path, n.node, request, now)) sent++;
    }
    return sent;
  }

  /** Relay packet 9: an announce response (0x84) or onion data for us (0x86). */
  handleResponse(relay: string, body: Uint8Array, now: number): boolean {
    this.#now = now;
    let ok = false;
    if (body[0] === NET_PACKET_ANNOUNCE_RESPONSE) ok = this.#onAnnounceResponse(relay, body, now);
    else if (body[0] === NET_PACKET_ONION_DATA_RESPONSE) ok = this.#onDataResponse(body);
    if (!ok) this.#counters.dropped++;
    this.#run(now);
    return ok;
  }

  tick(now: number): void {
    // A long silence of our own timer: the machine slept. Nodes and paths may all be gone;
    // ask at once rather than on intervals measured from before the sleep.
    if (Number.isFinite(this.#deadline) && now - this.#deadline > this.config.wakeGapMs) {
      this.wake(now);
      return;
    }
    this.#run(now);
  }

  /** After a suspend or a network change: announce and search again now. */
  wake(now: number): void {
    for (const n of this.#announce) n.lastPinged = -Infinity;
    for (const f of this.#friends.values()) {
      f.runCount = 0;
      f.searches = 0;
      for (const n of f.nodes) n.lastPinged = -Infinity;
    }
    this.#lastPopulated = -Infinity;
    this.#asked.clear();
    this.#run(now);
  }

  nextDeadline(): number {
    return this.#deadline;
  }

  view(now: number = this.#now): OnionView {
    const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : null);
    const paths: OnionPathView[] = [];
    for (const kind of ["self", "friends"] as const) {
      for (const p of this.#paths[kind]) {
        if (p === null || this.#pathDead(p, now)) continue;
        paths.push({
          relay: p.relay,
          nodes: [addressOf(p.onion.n2), addressOf(p.onion.n3)],
          ageMs: Math.round(now - p.createdAt),
          lastSuccessAgoMs: p.lastSuccess > p.createdAt ? ago(p.lastSuccess) : null,
        });
      }
    }
    return {
      announced: this.#announced,
      announceNodes: this.#announce.map((n) => ({
        publicKey: n.hex,
        address: addressOf(n.node),
        stored: n.stored,
        lastResponseAgoMs: ago(n.lastResponse),
        pingsUnanswered: n.pings,
      })),
      paths,
      pathNodes: this.#pathNodes.length,
      bootstrapNodes: this.#bootstrapNodes().length,
      lastResponseAgoMs: ago(this.#lastResponse),
      awaitingResponses: this.#sendbacks.size,
      ...this.#counters,
    };
  }

  friendView(hex: string, now: number = this.#now): OnionFriendView | null {
    const f = this.#friends.get(hex);
    if (!f || f.online) return null;
    const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : null);
    const live = f.nodes.filter((n) => !this.#timedOut(n, now));
    return {
      nodes: live.length,
      announcedAt: live.filter((n) => n.stored).length,
      lastSearchAgoMs: ago(f.lastSearch),
      dhtPkSentAgoMs: ago(f.lastDhtPkSent),
      dhtPkReceivedAgoMs: ago(f.lastDhtPkRecv),
    };
  }

  // ---- the schedule -------------------------------------------------------------------------

  /** do_onion_client: send what is due, and work out when the next thing is. */
  #run(now: number): void {
    this.#now = now;
    this.#expireSendbacks(now);
    let next = Infinity;
    this.#anyRelay = this.#relays().length > 0;
    if (this.#anyRelay) {
      next = Math.min(next, this.#doAnnounce(now));
      for (const f of this.#friends.values()) {
        if (!f.online) next = Math.min(next, this.#doFriend(f, now));
      }
    }
    this.#updateAnnounced(now);
    // Sendbacks expire lazily; a node's timeout only matters at the next send.
    this.#deadline = next;
  }

  #doAnnounce(now: number): number {
    const cfg = this.config;
    let next = Infinity;
    this.#dropTimedOut(this.#announce, now);
    for (const n of this.#announce) {
      if (n.pings >= cfg.nodeMaxPings) {
        next = Math.min(next, n.lastPinged + cfg.nodeTimeoutMs);
        continue;
      }
      const due = n.lastPinged + this.#announceInterval(n, now);
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      // The last try for a node that has lived long goes by another path (c-toxcore).
      const lastChance = n.pings === cfg.nodeMaxPings - 1 &&
        now - n.addedAt >= cfg.timeToStableMs;
      if (this.#sendAnnounce(null, n.node, n.pingId, lastChance ? null : n.pathId, now)) {
        n.lastPinged = now;
        n.pings++;
        next = Math.min(next, now + this.#announceInterval(n, now));
      } else {
        next = Math.min(next, now + 1_000);
      }
    }
    if (
      this.#announce.length <= cfg.maxAnnounceNodes / 2 ||
      now - this.#lastPopulated >= cfg.populateEveryMs
    ) {
      next = Math.min(next, this.#populate(null, this.#announce, cfg.maxAnnounceNodes / 2, now));
    }
    return next;
  }

  #announceInterval(n: ListNode, now: number): number {
    const cfg = this.config;
    if (!n.stored) return cfg.announceIntervalNotStoredMs;
    const path = this.#pathById("self", n.pathId);
    if (path === null || this.#pathDead(path, now)) return cfg.announceIntervalNotStoredMs;
    const stable = now - n.addedAt >= cfg.timeToStableMs && n.pings === 0 &&
      now - path.createdAt >= cfg.timeToStableMs;
    return stable ? cfg.announceIntervalStableMs : cfg.announceIntervalStoredMs;
  }

  #doFriend(f: Friend, now: number): number {
    const cfg = this.config;
    let next = Infinity;
    this.#dropTimedOut(f.nodes, now);
    const found = f.nodes.some((n) => n.stored);
    if (found && !f.found) {
      this.#events.push({ type: "onion_friend_found", friend: f.hex, nodes: f.nodes.length });
    }
    f.found = found;
    if (found) {
      const every = f.requested ? cfg.dhtPkRequestIntervalMs : cfg.dhtPkIntervalMs;
      if (now - f.lastDhtPkSent >= every) {
        if (this.#sendDhtPk(f, now) > 0) f.lastDhtPkSent = now;
      }
      next = Math.min(next, Math.max(now + 1_000, f.lastDhtPkSent + every));
    }
    const interval = this.#searchInterval(f);
    for (const n of f.nodes) {
      if (n.pings >= cfg.nodeMaxPings) {
        next = Math.min(next, n.lastPinged + cfg.nodeTimeoutMs);
        continue;
      }
      const due = n.lastPinged + interval;
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      if (this.#sendAnnounce(f, n.node, ZERO_KEY, null, now)) {
        n.lastPinged = now;
        n.pings++;
        this.#searched(f, now);
        next = Math.min(next, now + interval);
      } else {
        next = Math.min(next, now + 1_000);
      }
    }
    if (
      f.nodes.length <= cfg.maxSearchNodes / 2 || now - f.lastPopulated >= cfg.populateEveryMs
    ) {
      next = Math.min(next, this.#populate(f, f.nodes, cfg.maxSearchNodes / 4, now));
    }
    return next;
  }

  #searched(f: Friend, now: number): void {
    f.lastSearch = now;
    // c-toxcore counts a run per MAX_ONION_CLIENTS / 2 searches.
    if (++f.searches % (this.config.maxSearchNodes / 2) === 0) f.runCount++;
  }

  #searchInterval(f: Friend): number {
    const cfg = this.config;
    if (f.runCount <= cfg.searchNewRuns) return cfg.searchIntervalNewMs;
    const seconds = 2 ** Math.min(12, f.runCount - 2);
    return Math.min(seconds * 1_000, cfg.searchMaxIntervalMs);
  }

  /**
   * Ask nodes not yet in the list (learnt path nodes, else the bootstrap nodes), each at
   * most once per minNodePingMs; returns when a candidate may be asked again.
   */
  #populate(f: Friend | null, list: ListNode[], max: number, now: number): number {
    const key = f?.hex ?? "self";
    let asked = this.#asked.get(key);
    if (!asked) this.#asked.set(key, asked = new Map());
    for (const [hex, at] of asked) if (now - at >= this.config.minNodePingMs) asked.delete(hex);
    const pool = this.#pathNodes.length > 0 ? this.#pathNodes : this.#bootstrapNodes();
    const inList = new Set(list.map((n) => n.hex));
    const candidates = pool.filter((n) => {
      const hex = toHex(n.publicKey);
      return !inList.has(hex) && !asked.has(hex);
    });
    this.#shuffle(candidates);
    let sent = 0;
    for (const node of candidates.slice(0, Math.max(1, max))) {
      if (this.#sendAnnounce(f, node, ZERO_KEY, null, now)) {
        asked.set(toHex(node.publicKey), now);
        sent++;
        if (f) this.#searched(f, now);
      }
    }
    if (sent > 0) {
      if (f) f.lastPopulated = now;
      else this.#lastPopulated = now;
    }
    // Only candidates still outside the list are worth waking up for.
    let next = Infinity;
    for (const [hex, at] of asked) {
      if (!inList.has(hex)) next = Math.min(next, at + this.config.minNodePingMs);
    }
    return next;
  }

  #updateAnnounced(now: number): void {
    const live = this.#announce.filter((n) => !this.#timedOut(n, now));
    const stored = live.filter((n) => n.stored).length;
    const announced = stored > 0 && stored >= Math.floor(live.length / 2);
    if (announced !== this.#announced) {
      this.#announced = announced;
      this.#events.push({
        type: "onion_announced",
        announced,
        storedAt: stored,
        nodes: live.length,
        sinceRelayUpMs: announced && Number.isFinite(this.#relayUpAt)
          ? Math.round(now - this.#relayUpAt)
          : null,
      });
      // Friends may have announced while we could not be found: look again now.
      if (announced) { for (const f of this.#friends.values()) this.#refreshSearch(f); }
    }
  }

  #refreshSearch(f: Friend): void {
    f.runCount = 0;
    f.searches = 0;
    for (const n of f.nodes) if (!n.stored) n.lastPinged = -Infinity;
  }

  // ---- sending -----------------------------------------------------------------------------

  /** client_send_announce_request: `friend` null announces us, else searches for it. */
  #sendAnnounce(
    friend: Friend | null,
    node: OnionNode,
    pingId: Uint8Array,
    pathId: number | null,
    now: number,
  ): boolean {
    const kind: Kind = friend ? "friends" : "self";
    const path = this.#pathFor(kind, pathId, now);
    if (path === null) return false;
    const sendback = this.#random(ONION_ANNOUNCE_SENDBACK_DATA_LENGTH);
    const keys = friend ? friend.searchKeys : this.#real;
    const request = encodeAnnounceRequest(
      {
        requesterPublicKey: keys.publicKey,
        pingId: friend ? ZERO_KEY : pingId,
        searchPublicKey: friend ? friend.realPublicKey : this.#real.publicKey,
        dataPublicKey: friend ? ZERO_KEY : this.#data.publicKey,
        sendback,
      },
      keys.secretKey,
      node.publicKey,
      this.#random,
    );
    if (!this.#sendThrough(path, node, request, now)) return false;
    while (this.#sendbacks.size >= this.config.maxSendbacks) {
      this.#sendbacks.delete(this.#sendbacks.keys().next().value!);
    }
    this.#sendbacks.set(toHex(sendback), {
      target: friend?.hex ?? null,
      node,
      pathId: path.id,
      sentAt: now,
      pingId: pingId.slice(),
    });
    return true;
  }

  #sendThrough(path: Path, dest: OnionNode, payload: Uint8Array, now: number): boolean {
    const body = encodeOnionRequestTcp(path.onion, dest, payload, this.#random);
    if (!this.#transport.send(body, path.relay)) return false;
    this.#counters.requestsSent++;
    if (path.usesWithoutResponse < this.config.pathMaxNoResponseUses) path.lastUsed = now;
    path.usesWithoutResponse++;
    return true;
  }

  #sendDhtPk(f: Friend, now: number): number {
    const unixSeconds = BigInt(Math.floor((now + this.#unixOffsetMs) / 1000));
    const noReplay = unixSeconds > this.#lastDhtPkNoReplay
      ? unixSeconds
      : this.#lastDhtPkNoReplay + 1n;
    const nodes: PackedNode[] = [];
    // copy_connected_tcp_relays: MAX_SENT_NODES / 2 relays; we have no DHT nodes to add.
    for (const r of this.#relays()) {
      const node = relayToPackedNode(r);
      if (node !== null) nodes.push(node);
      if (nodes.length >= 2) break;
    }
    const payload = encodeDhtPk({ noReplay, dhtPublicKey: this.#dhtPublicKey, nodes });
    const sent = this.sendData(f.hex, payload, now);
    if (sent > 0) this.#lastDhtPkNoReplay = noReplay;
    return sent;
  }

  // ---- paths -------------------------------------------------------------------------------

  #pathById(kind: Kind, id: number): Path | null {
    return this.#paths[kind].find((p) => p !== null && p.id === id) ?? null;
  }

  #pathDead(p: Path, now: number): boolean {
    const cfg = this.config;
    if (now - p.createdAt >= cfg.pathMaxLifetimeMs) return true;
    if (!this.#relays().some((r) => r.publicKey === p.relay)) return true;
    const timeout = p.lastSuccess === p.createdAt ? cfg.pathFirstTimeoutMs : cfg.pathTimeoutMs;
    return p.usesWithoutResponse >= cfg.pathMaxNoResponseUses && now - p.lastUsed >= timeout;
  }

  /** random_path: the asked-for path if it lives, else a random slot, rebuilt if dead. */
  #pathFor(kind: Kind, id: number | null, now: number): Path | null {
    const slots = this.#paths[kind];
    if (id !== null) {
      const p = this.#pathById(kind, id);
      if (p !== null && !this.#pathDead(p, now)) return p;
    }
    const n = this.config.pathsPerKind;
    while (slots.length < n) slots.push(null);
    const slot = this.#randomInt(n);
    const p = slots[slot];
    if (p !== null && !this.#pathDead(p, now)) return p;
    const made = this.#newPath(kind, now);
    slots[slot] = made;
    return made;
  }

  /** random_nodes_path_onion without UDP: a relay, then two nodes picked with replacement. */
  #newPath(kind: Kind, now: number): Path | null {
    const relays = this.#relays();
    if (relays.length === 0) return null;
    const pool = this.#pathNodes.length >= 2 ? this.#pathNodes : this.#bootstrapNodes();
    if (pool.length === 0) return null;
    const relay = relays[this.#randomInt(relays.length)];
    const n2 = pool[this.#randomInt(pool.length)];
    const n3 = pool[this.#randomInt(pool.length)];
    let onion: OnionPath;
    try {
      onion = createOnionPath(n2, n3, () => newKeyPair(this.#random));
    } catch {
      return null; // a node key of low order: nothing to build on it
    }
    return {
      id: this.#nextPathId++,
      kind,
      relay: relay.publicKey,
      onion,
      createdAt: now,
      lastSuccess: now,
      lastUsed: now,
      // A new path gets half its allowance of unanswered uses (c-toxcore).
      usesWithoutResponse: this.config.pathMaxNoResponseUses / 2,
    };
  }

  /** Explicit bootstrap nodes, then every connected relay at its TCP port as a node. */
  #bootstrapNodes(): OnionNode[] {
    const out = [...this.#bootstrap.values()];
    for (const r of this.#relays()) {
      if (this.#bootstrap.has(r.publicKey)) continue;
      const node = nodeOf(r);
      if (node !== null) out.push(node);
    }
    return out;
  }

  /** onion_add_path_node. */
  #addPathNode(node: OnionNode): void {
    if (this.#pathNodes.some((n) => bytesEqual(n.publicKey, node.publicKey))) return;
    this.#pathNodes.push(node);
    if (this.#pathNodes.length > this.config.maxPathNodes) this.#pathNodes.shift();
  }

  // ---- receiving ---------------------------------------------------------------------------

  #onAnnounceResponse(relay: string, body: Uint8Array, now: number): boolean {
    const sb = announceResponseSendback(body);
    if (!sb.ok) return false;
    const key = toHex(sb.value);
    const entry = this.#sendbacks.get(key);
    if (!entry) return false;
    const friend = entry.target === null ? null : this.#friends.get(entry.target) ?? null;
    if (entry.target !== null && !friend) return false;
    const keys = friend ? friend.searchKeys : this.#real;
    const shared = this.#sharedKey(keys, entry.node.publicKey);
    if (shared === null) return false;
    const r = openAnnounceResponse(body, shared);
    if (!r.ok) return false;
    // Only now is it ours: a forged sendback cannot consume a pending request.
    this.#sendbacks.delete(key);
    this.#counters.responses++;
    this.#lastResponse = now;
    const path = this.#pathById(friend ? "friends" : "self", entry.pathId);
    if (path !== null) {
      path.lastSuccess = now;
      path.usesWithoutResponse = 0;
      this.#addPathNode(path.onion.n2);
      this.#addPathNode(path.onion.n3);
    }
    this.#addPathNode(entry.node);
    const { isStored, pingIdOrKey, nodes } = r.value;
    if (friend) {
      if (isStored === 2) return false; // not an answer to a search
      this.#addToList(
        friend.nodes,
        friend.realPublicKey,
        this.config.maxSearchNodes,
        entry,
        now,
        (n) => {
          n.stored = isStored === 1;
          n.dataKey = isStored === 1 ? pingIdOrKey : null;
        },
      );
    } else {
      this.#addToList(
        this.#announce,
        this.#real.publicKey,
        this.config.maxAnnounceNodes,
        entry,
        now,
        (n) => {
          if (isStored === 1) {
            // Somebody announced our key: stored only if it is our own data key.
            n.stored = bytesEqual(pingIdOrKey, this.#data.publicKey);
            return;
          }
          n.stored = isStored === 2;
          n.pingId = pingIdOrKey;
          // A fresh ping id is answered at once: the second request is what stores us, and
          // c-toxcore's 3-s wait for it is most of its time to be findable.
          if (!bytesEqual(pingIdOrKey, entry.pingId)) n.lastPinged = -Infinity;
        },
      );
    }
    this.#pingListed(friend, nodes, relay, now);
    return true;
  }

  #sharedKey(keys: KeyPair, nodeKey: Uint8Array): Uint8Array | null {
    const k = toHex(keys.publicKey) + toHex(nodeKey);
    let s = this.#shared.get(k);
    if (s === undefined) {
      try {
        s = precompute(nodeKey, keys.secretKey);
      } catch {
        return null;
      }
      if (this.#shared.size >= 1024) this.#shared.clear();
      this.#shared.set(k, s);
    }
    return s;
  }

  /** client_add_to_list: keep the `max` nodes closest to `ref`, refresh a known one. */
  #addToList(
    list: ListNode[],
    ref: Uint8Array,
    max: number,
    entry: Sendback,
    now: number,
    update: (n: ListNode) => void,
  ): void {
    const hex = toHex(entry.node.publicKey);
    let n = list.find((x) => x.hex === hex);
    if (!n) {
      this.#dropTimedOut(list, now);
      if (list.length >= max) {
        list.sort((a, b) => compareDistance(ref, a.node.publicKey, b.node.publicKey));
        const farthest = list[list.length - 1];
        if (compareDistance(ref, entry.node.publicKey, farthest.node.publicKey) >= 0) return;
        list.pop();
      }
      n = {
        node: entry.node,
        hex,
        pingId: ZERO_KEY,
        stored: false,
        dataKey: null,
        lastResponse: now,
        lastPinged: entry.sentAt,
        pings: 0,
        addedAt: now,
        pathId: entry.pathId,
      };
      list.push(n);
    }
    n.lastResponse = now;
    n.pings = 0;
    n.pathId = entry.pathId;
    update(n);
  }

  /**
   * client_ping_nodes: nodes a response lists are asked once (announce or search) if they
   * would make the list. Private addresses are only taken from a relay on a private address
   * itself: from anywhere else they cannot mean what they say.
   */
  #pingListed(
    friend: Friend | null,
    nodes: readonly PackedNode[],
    relay: string,
    now: number,
  ): void {
    if (nodes.length === 0) return;
    const via = this.#relays().find((r) => r.publicKey === relay);
    const lanOk = via !== undefined && isLanAddress(via.host);
    const list = friend ? friend.nodes : this.#announce;
    const ref = friend ? friend.realPublicKey : this.#real.publicKey;
    const max = friend ? this.config.maxSearchNodes : this.config.maxAnnounceNodes;
    const key = friend?.hex ?? "self";
    let asked = this.#asked.get(key);
    if (!asked) this.#asked.set(key, asked = new Map());
    for (const p of nodes) {
      if (p.transport !== "udp") continue;
      if (!lanOk && isLanAddress(p.host)) continue;
      const hex = toHex(p.publicKey);
      if (list.some((n) => n.hex === hex)) continue;
      if (bytesEqual(p.publicKey, this.#real.publicKey)) continue;
      const sorted = [...list].sort((a, b) =>
        compareDistance(ref, a.node.publicKey, b.node.publicKey)
      );
      const worth = sorted.length < max ||
        compareDistance(ref, p.publicKey, sorted[sorted.length - 1].node.publicKey) < 0;
      if (!worth) continue;
      const seen = asked.get(hex);
      if (seen !== undefined && now - seen < this.config.minNodePingMs) continue;
      const node: OnionNode = { host: p.host, port: p.port, publicKey: p.publicKey };
      if (this.#sendAnnounce(friend, node, ZERO_KEY, null, now)) asked.set(hex, now);
    }
  }

  #onDataResponse(body: Uint8Array): boolean {
    const r = openDataResponse(body, this.#data.secretKey, this.#real.secretKey);
    if (!r.ok) return false;
    const { sender, payload } = r.value;
    this.#counters.dataReceived++;
    if (payload[0] === ONION_DATA_DHTPK) return this.#onDhtPk(sender, payload);
    if (payload[0] === ONION_DATA_FRIEND_REQ) {
      const fr = decodeFriendRequest(payload);
      if (!fr.ok) return false;
      this.#events.push({
        type: "onion_friend_request",
        sender,
        nospam: fr.value.nospam,
        message: fr.value.message,
      });
      return true;
    }
    return false;
  }

  /** handle_dhtpk_announce: a friend's, newer than the last one; its relays if they unpack. */
  #onDhtPk(sender: Uint8Array, payload: Uint8Array): boolean {
    const f = this.#friends.get(toHex(sender));
    if (!f) return false;
    const d = decodeDhtPk(payload);
    if (!d.ok) return false;
    if (d.value.noReplay <= f.lastNoReplay) return false;
    f.lastNoReplay = d.value.noReplay;
    f.lastDhtPkRecv = this.#now;
    // UDP nodes would seed a DHT lookup; without UDP only the relays are of use.
    const relays = d.value.nodes.filter((n) => n.transport === "tcp").map(packedNodeToRelay);
    this.#events.push({
      type: "onion_dht_pk",
      friend: f.hex,
      dhtPublicKey: d.value.dhtPublicKey,
      relays,
    });
    return true;
  }

  // ---- small things ------------------------------------------------------------------------

  /** The transport's connected relays, asked once per input (building them is not free). */
  #relays(): readonly RelayAddress[] {
    if (this.#relaysAt !== this.#now || this.#relaysCache === null) {
      this.#relaysCache = this.#transport.connectedRelays();
      this.#relaysAt = this.#now;
    }
    return this.#relaysCache;
  }

  #timedOut(n: ListNode, now: number): boolean {
    return n.pings >= this.config.nodeMaxPings && now - n.lastPinged >= this.config.nodeTimeoutMs;
  }

  #dropTimedOut(list: ListNode[], now: number): void {
    for (let i = list.length - 1; i >= 0; i--) if (this.#timedOut(list[i], now)) list.splice(i, 1);
  }

  #expireSendbacks(now: number): void {
    for (const [k, s] of this.#sendbacks) {
      if (now - s.sentAt < this.config.sendbackTimeoutMs) break; // insertion order = age
      this.#sendbacks.delete(k);
    }
  }

  #randomInt(n: number): number {
    const b = this.#random(4);
    return (((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0) % n;
  }

  #shuffle<T>(a: T[]): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.#randomInt(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
  }
}

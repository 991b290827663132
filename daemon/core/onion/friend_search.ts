/**
 * The friend side of onion_client.c: each friend searched for with its own key pair (do_friend,
 * the search half of handle_announce_response), onion data sent through the nodes that hold its
 * announcement (send_onion_data), our DHT key sent to it and its DHT key received with
 * no_replay (send_dhtpk_announce, handle_dhtpk_announce), and friend requests received as
 * onion data. Together because DHT-PK and onion data only go where a search found the friend.
 */

import { type KeyPair, newKeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import { type PackedNode, packedNodeToRelay, relayToPackedNode } from "../common/packed_node.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { OnionClientConfig } from "./config.ts";
import type { OnionClientEvent, OnionCounters, OnionFriendView } from "./views.ts";
import { addToList, dropTimedOut, type ListNode, timedOut, ZERO_KEY } from "./close_list.ts";
import type { Candidates } from "./candidates.ts";
import type { AnnounceRequests, Sendback } from "./announce_requests.ts";
import type { OnionPaths } from "./onion_path.ts";
import {
  type AnnounceResponse,
  decodeDhtPk,
  decodeFriendRequest,
  encodeDataRequest,
  encodeDhtPk,
  ONION_DATA_DHTPK,
  ONION_DATA_FRIEND_REQ,
  type OnionNode,
  openDataResponse,
} from "./packets.ts";

/** Out of search budget: look again this much later, when a batch's worth is back. */
const BUDGET_WAIT_MS = 100;

export interface Friend {
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
  /**
   * Not worth a look before then: what its last do_friend said, at most a second ahead
   * (anything that changes it, an answer, a status, a wake, sets it back to now). A run over
   * a thousand friends then costs a comparison each, not a walk of their lists.
   */
  dueAt: number;
}

/** What the friend side works with, shared with the rest of the client. */
export interface FriendSearchDeps {
  readonly config: OnionClientConfig;
  readonly random: RandomBytes;
  readonly paths: OnionPaths;
  readonly requests: AnnounceRequests;
  readonly candidates: Candidates;
  readonly realKeys: KeyPair;
  /** Our onion data key pair: onion data for us is sealed to it. */
  readonly dataKeys: KeyPair;
  readonly dhtPublicKey: Uint8Array;
  /** Unix time minus `now`: DHT-PK's no_replay counts wall-clock seconds, as c-toxcore. */
  readonly unixOffsetMs: number;
  readonly relays: () => readonly RelayAddress[];
  readonly counters: OnionCounters;
  readonly emit: (e: OnionClientEvent) => void;
}

export class FriendSearch {
  readonly #config: OnionClientConfig;
  readonly #random: RandomBytes;
  readonly #paths: OnionPaths;
  readonly #requests: AnnounceRequests;
  readonly #candidates: Candidates;
  readonly #real: KeyPair;
  readonly #data: KeyPair;
  readonly #dhtPublicKey: Uint8Array;
  readonly #unixOffsetMs: number;
  readonly #relays: () => readonly RelayAddress[];
  readonly #counters: OnionCounters;
  readonly #emit: (e: OnionClientEvent) => void;
  readonly #friends = new Map<string, Friend>();
  #lastDhtPkNoReplay = 0n;
  /** Search requests that may go now (searchRequestsPerSec, at most a second's worth). */
  #budget: number;
  #budgetAt = -Infinity;
  /** Where the next doFriends starts, so friends take turns when the budget runs out. */
  #cursor = 0;

  constructor(deps: FriendSearchDeps) {
    this.#config = deps.config;
    this.#random = deps.random;
    this.#paths = deps.paths;
    this.#requests = deps.requests;
    this.#candidates = deps.candidates;
    this.#real = deps.realKeys;
    this.#data = deps.dataKeys;
    this.#dhtPublicKey = deps.dhtPublicKey;
    this.#unixOffsetMs = deps.unixOffsetMs;
    this.#relays = deps.relays;
    this.#counters = deps.counters;
    this.#emit = deps.emit;
    this.#budget = deps.config.searchRequestsPerSec;
  }

  get(hex: string): Friend | undefined {
    return this.#friends.get(hex);
  }

  /** onion_addfriend: search for it from now on; false if it was searched for already. */
  add(realPublicKey: Uint8Array): boolean {
    const hex = toHex(realPublicKey);
    if (this.#friends.has(hex)) return false;
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
      dueAt: -Infinity,
      found: false,
      requested: false,
    });
    return true;
  }

  remove(hex: string): void {
    this.#friends.delete(hex);
    this.#candidates.forget(hex);
  }

  /**
   * onion_set_friend_online: an online friend needs no search nor DHT-PK; going offline
   * starts both anew and forgets its no_replay (it may have restarted with a new clock).
   * False when nothing changed.
   */
  setOnline(hex: string, online: boolean): boolean {
    const f = this.#friends.get(hex);
    if (!f || f.online === online) return false;
    f.online = online;
    f.dueAt = -Infinity;
    if (!online) {
      f.lastNoReplay = 0n;
      f.runCount = 0;
      f.searches = 0;
      f.lastDhtPkSent = -Infinity;
      for (const n of f.nodes) n.lastPinged = -Infinity;
    }
    return true;
  }

  /** Whether our friend request to it awaits an answer; false when nothing changed. */
  setRequestPending(hex: string, pending: boolean): boolean {
    const f = this.#friends.get(hex);
    if (!f || f.requested === pending) return false;
    f.requested = pending;
    f.dueAt = -Infinity;
    return true;
  }

  /**
   * send_onion_data: one copy through each search node that holds the friend's
   * announcement, if enough of them do; the number of copies sent (0: not found yet).
   */
  sendData(hex: string, payload: Uint8Array, now: number): number {
    const f = this.#friends.get(hex);
    if (!f) return 0;
    const live = f.nodes.filter((n) => !timedOut(this.#config, n, now));
    const good = live.filter((n) => n.stored && n.dataKey !== null);
    if (good.length === 0 || good.length < Math.floor((live.length - 1) / 4) + 1) return 0;
    let sent = 0;
    for (const n of good) {
      const path = this.#paths.pathFor("friends", null, now);
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
      if (this.#paths.sendThrough(path, n.node, request, now)) sent++;
    }
    return sent;
  }

  /** do_friend for every friend not online; when the earliest of them is due again. */
  doFriends(now: number): number {
    const rate = this.#config.searchRequestsPerSec;
    if (this.#budgetAt !== -Infinity) {
      this.#budget = Math.min(rate, this.#budget + ((now - this.#budgetAt) * rate) / 1000);
    }
    this.#budgetAt = now;
    let next = Infinity;
    const friends = [...this.#friends.values()];
    const n = friends.length;
    for (let k = 0; k < n; k++) {
      const i = (this.#cursor + k) % n;
      const f = friends[i];
      if (f.online) continue;
      if (f.dueAt > now) {
        next = Math.min(next, f.dueAt);
        continue;
      }
      if (this.#budget < 1) {
        // Out of budget: this friend goes first next time, when a request's worth is back.
        this.#cursor = i;
        return Math.min(next, now + BUDGET_WAIT_MS);
      }
      f.dueAt = Math.min(this.#doFriend(f, now), now + 1_000);
      next = Math.min(next, f.dueAt);
    }
    return next;
  }

  /** A search request to `node`, if the budget allows one. */
  #send(f: Friend, node: OnionNode, now: number): boolean {
    if (this.#budget < 1) return false;
    if (!this.#requests.send(f, node, ZERO_KEY, null, now)) return false;
    this.#budget--;
    return true;
  }

  /** #send, counted as a run of the friend's search (the back-off follows the runs). */
  #search(f: Friend, node: OnionNode, now: number): boolean {
    if (!this.#send(f, node, now)) return false;
    this.#searched(f, now);
    return true;
  }

  #doFriend(f: Friend, now: number): number {
    const cfg = this.#config;
    let next = Infinity;
    dropTimedOut(cfg, f.nodes, now);
    const found = f.nodes.some((n) => n.stored);
    if (found && !f.found) {
      this.#emit({ type: "onion_friend_found", friend: f.hex, nodes: f.nodes.length });
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
      if (this.#search(f, n.node, now)) {
        n.lastPinged = now;
        n.pings++;
        next = Math.min(next, now + interval);
      } else {
        next = Math.min(next, now + (this.#budget < 1 ? BUDGET_WAIT_MS : 1_000));
      }
    }
    if (
      f.nodes.length <= cfg.maxSearchNodes / 2 || now - f.lastPopulated >= cfg.populateEveryMs
    ) {
      const p = this.#candidates.populate(
        f.hex,
        f.nodes,
        cfg.maxSearchNodes / 4,
        now,
        (node) => this.#search(f, node, now),
      );
      if (p.sent > 0) f.lastPopulated = now;
      next = Math.min(next, p.next);
    }
    return next;
  }

  #searched(f: Friend, now: number): void {
    f.lastSearch = now;
    // c-toxcore counts a run per MAX_ONION_CLIENTS / 2 searches.
    if (++f.searches % (this.#config.maxSearchNodes / 2) === 0) f.runCount++;
  }

  #searchInterval(f: Friend): number {
    const cfg = this.#config;
    if (f.runCount <= cfg.searchNewRuns) return cfg.searchIntervalNewMs;
    const seconds = 2 ** Math.min(12, f.runCount - 2);
    return Math.min(seconds * 1_000, cfg.searchMaxIntervalMs);
  }

  /** We just became findable: friends may have announced meanwhile, so look again now. */
  refreshSearches(): void {
    for (const f of this.#friends.values()) this.#refreshSearch(f);
  }

  #refreshSearch(f: Friend): void {
    f.dueAt = -Infinity;
    f.runCount = 0;
    f.searches = 0;
    for (const n of f.nodes) if (!n.stored) n.lastPinged = -Infinity;
  }

  /** After a suspend or a network change: every search starts anew. */
  wake(): void {
    for (const f of this.#friends.values()) {
      f.dueAt = -Infinity;
      f.runCount = 0;
      f.searches = 0;
      for (const n of f.nodes) n.lastPinged = -Infinity;
    }
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

  /**
   * handle_announce_response for a search: the node joins or refreshes the friend's list, and
   * whether it holds the friend's announcement; false if it is not an answer to a search.
   */
  onAnnounceResponse(
    friend: Friend,
    entry: Sendback,
    response: AnnounceResponse,
    relay: string,
    now: number,
  ): boolean {
    const { isStored, pingIdOrKey, nodes } = response;
    if (isStored === 2) return false; // not an answer to a search
    friend.dueAt = -Infinity;
    addToList(
      this.#config,
      friend.nodes,
      friend.realPublicKey,
      this.#config.maxSearchNodes,
      entry,
      now,
      (n) => {
        n.stored = isStored === 1;
        n.dataKey = isStored === 1 ? pingIdOrKey : null;
      },
    );
    this.#candidates.pingListed(
      friend.hex,
      friend.nodes,
      friend.realPublicKey,
      this.#config.maxSearchNodes,
      nodes,
      relay,
      now,
      (node) => this.#send(friend, node, now),
    );
    return true;
  }

  /** handle_data_response: onion data 0x86 for us, a friend's DHT-PK or anybody's request. */
  onDataResponse(body: Uint8Array, now: number): boolean {
    const r = openDataResponse(body, this.#data.secretKey, this.#real.secretKey);
    if (!r.ok) return false;
    const { sender, payload } = r.value;
    this.#counters.dataReceived++;
    if (payload[0] === ONION_DATA_DHTPK) return this.#onDhtPk(sender, payload, now);
    if (payload[0] === ONION_DATA_FRIEND_REQ) {
      const fr = decodeFriendRequest(payload);
      if (!fr.ok) return false;
      this.#emit({
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
  #onDhtPk(sender: Uint8Array, payload: Uint8Array, now: number): boolean {
    const f = this.#friends.get(toHex(sender));
    if (!f) return false;
    const d = decodeDhtPk(payload);
    if (!d.ok) return false;
    if (d.value.noReplay <= f.lastNoReplay) return false;
    f.lastNoReplay = d.value.noReplay;
    f.lastDhtPkRecv = now;
    // UDP nodes would seed a DHT lookup; without UDP only the relays are of use.
    const relays = d.value.nodes.filter((n) => n.transport === "tcp").map(packedNodeToRelay);
    this.#emit({
      type: "onion_dht_pk",
      friend: f.hex,
      dhtPublicKey: d.value.dhtPublicKey,
      relays,
    });
    return true;
  }

  friendView(hex: string, now: number): OnionFriendView | null {
    const f = this.#friends.get(hex);
    if (!f || f.online) return null;
    const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : null);
    const live = f.nodes.filter((n) => !timedOut(this.#config, n, now));
    return {
      nodes: live.length,
      announcedAt: live.filter((n) => n.stored).length,
      lastSearchAgoMs: ago(f.lastSearch),
      dhtPkSentAgoMs: ago(f.lastDhtPkSent),
      dhtPkReceivedAgoMs: ago(f.lastDhtPkRecv),
    };
  }
}

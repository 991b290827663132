/**
 * onion_client (c-toxcore 0.2.18 onion_client.c) for a client whose only network is TCP
 * relays: announce ourselves, search for friends, exchange DHT keys (DHT-PK) and carry
 * friend requests as onion data. Sans-I/O: bytes, commands and `now` in; onion requests for
 * the relays and events out. This class is the API and the schedule (do_onion_client); the
 * parts it ties together each live in a file of their own (this folder's README lists them).
 */

import { type KeyPair, newKeyPair, type RandomBytes } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import { DEFAULT_ONION_CLIENT_CONFIG, type OnionClientConfig } from "./config.ts";
import type { OnionClientEvent, OnionCounters, OnionFriendView, OnionView } from "./views.ts";
import { OnionPaths, type OnionTransport } from "./onion_path.ts";
import { AnnounceRequests } from "./announce_requests.ts";
import { Candidates } from "./candidates.ts";
import { SelfAnnounce } from "./self_announce.ts";
import { FriendSearch } from "./friend_search.ts";
import { NET_PACKET_ANNOUNCE_RESPONSE, NET_PACKET_ONION_DATA_RESPONSE } from "./packets.ts";

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

export class OnionClient {
  readonly config: OnionClientConfig;
  /** Our onion data key pair (temp_public_key): new every start, as c-toxcore's. */
  readonly #data: KeyPair;
  readonly #transport: OnionTransport;
  readonly #paths: OnionPaths;
  readonly #requests: AnnounceRequests;
  readonly #candidates: Candidates;
  readonly #self: SelfAnnounce;
  readonly #friends: FriendSearch;
  #events: OnionClientEvent[] = [];
  #lastResponse = -Infinity;
  #deadline = Infinity;
  #relaysCache: readonly RelayAddress[] | null = null;
  /** When a relay came up while none was; whether one was up at the last run. */
  #relayUpAt = NaN;
  #anyRelay = false;
  #relaysAt = NaN;
  #now: number;
  readonly #counters: OnionCounters = {
    requestsSent: 0,
    responses: 0,
    dataReceived: 0,
    dropped: 0,
  };

  constructor(opts: OnionClientOptions) {
    this.config = { ...DEFAULT_ONION_CLIENT_CONFIG, ...opts.config };
    this.#data = newKeyPair(opts.random);
    this.#transport = opts.transport;
    this.#now = opts.now;
    const config = this.config;
    const random = opts.random;
    const relays = () => this.#relays();
    const emit = (e: OnionClientEvent) => this.#events.push(e);
    this.#paths = new OnionPaths(config, random, opts.transport, relays, this.#counters);
    this.#requests = new AnnounceRequests(config, random, this.#paths, opts.realKeys, this.#data);
    this.#candidates = new Candidates(config, random, this.#paths, relays, opts.realKeys.publicKey);
    this.#self = new SelfAnnounce(
      config,
      this.#paths,
      this.#requests,
      this.#candidates,
      opts.realKeys,
      this.#data,
      emit,
    );
    this.#friends = new FriendSearch({
      config,
      random,
      paths: this.#paths,
      requests: this.#requests,
      candidates: this.#candidates,
      realKeys: opts.realKeys,
      dataKeys: this.#data,
      dhtPublicKey: opts.dhtPublicKey.slice(),
      unixOffsetMs: opts.unixTimeMs - opts.now,
      relays,
      counters: this.#counters,
      emit,
    });
    for (const b of opts.bootstrap ?? []) this.addBootstrap(b);
  }

  /** Our onion data public key (what a search for us finds). */
  get dataPublicKey(): Uint8Array {
    return this.#data.publicKey;
  }

  get announced(): boolean {
    return this.#self.announced;
  }

  takeEvents(): OnionClientEvent[] {
    const e = this.#events;
    this.#events = [];
    return e;
  }

  /** onion_add_bs_path_node: a node to build paths from and announce to before we know any. */
  addBootstrap(r: RelayAddress): { ok: true } | { ok: false; message: string } {
    return this.#paths.addBootstrap(r);
  }

  /** onion_addfriend: search for it from now on. */
  addFriend(realPublicKey: Uint8Array, now: number): void {
    if (this.#friends.add(realPublicKey)) this.#soon(now);
  }

  removeFriend(hex: string, now: number): void {
    this.#friends.remove(hex);
    this.#soon(now);
  }

  /**
   * onion_set_friend_online: an online friend needs no search nor DHT-PK; going offline
   * starts both anew and forgets its no_replay (it may have restarted with a new clock).
   */
  setFriendOnline(hex: string, online: boolean, now: number): void {
    if (this.#friends.setOnline(hex, online)) this.#soon(now);
  }

  /** Whether our friend request to it awaits an answer (see dhtPkRequestIntervalMs). */
  setRequestPending(hex: string, pending: boolean, now: number): void {
    if (this.#friends.setRequestPending(hex, pending)) this.#soon(now);
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
    return this.#friends.sendData(hex, payload, now);
  }

  /** Relay packet 9: an announce response (0x84) or onion data for us (0x86). */
  handleResponse(relay: string, body: Uint8Array, now: number): boolean {
    this.#now = now;
    let ok = false;
    if (body[0] === NET_PACKET_ANNOUNCE_RESPONSE) ok = this.#onAnnounceResponse(relay, body, now);
    else if (body[0] === NET_PACKET_ONION_DATA_RESPONSE) {
      ok = this.#friends.onDataResponse(body, now);
    }
    if (!ok) this.#counters.dropped++;
    this.#soon(now);
    return ok;
  }

  /** Run now if something made us due (a batch of responses): once for the whole batch. */
  runIfDue(now: number): void {
    if (this.#deadline <= now) this.#run(now);
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
    this.#self.wake();
    this.#friends.wake();
    this.#candidates.clear();
    this.#run(now);
  }

  nextDeadline(): number {
    return this.#deadline;
  }

  view(now: number = this.#now): OnionView {
    const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : null);
    const paths = this.#paths.views(now);
    return {
      announced: this.#self.announced,
      announceNodes: this.#self.nodeViews(now),
      paths,
      pathNodes: this.#paths.pathNodes.length,
      bootstrapNodes: this.#paths.bootstrapNodes().length,
      lastResponseAgoMs: ago(this.#lastResponse),
      awaitingResponses: this.#requests.size,
      ...this.#counters,
    };
  }

  friendView(hex: string, now: number = this.#now): OnionFriendView | null {
    return this.#friends.friendView(hex, now);
  }

  /**
   * Something changed: run at the next tick (the owner's timer, armed at nextDeadline()), not
   * now. A run walks every friend, so running on every event costs O(friends) per response
   * or command; events that arrive together share one run.
   */
  #soon(now: number): void {
    this.#now = now;
    this.#deadline = Math.min(this.#deadline, now);
  }

  /** do_onion_client: send what is due, and work out when the next thing is. */
  #run(now: number): void {
    this.#now = now;
    this.#requests.expire(now);
    let next = Infinity;
    this.#anyRelay = this.#relays().length > 0;
    if (this.#anyRelay) {
      next = Math.min(next, this.#self.doAnnounce(now));
      next = Math.min(next, this.#friends.doFriends(now));
    }
    // Friends may have announced while we could not be found: look again now.
    if (this.#self.updateAnnounced(now, this.#relayUpAt)) this.#friends.refreshSearches();
    // Sendbacks expire lazily; a node's timeout only matters at the next send.
    this.#deadline = next;
  }

  /** handle_announce_response: a pending request's answer, for our announce or a search. */
  #onAnnounceResponse(relay: string, body: Uint8Array, now: number): boolean {
    const taken = this.#requests.take(body, (hex) => this.#friends.get(hex));
    if (taken === null) return false;
    const { entry, friend, response } = taken;
    this.#counters.responses++;
    this.#lastResponse = now;
    this.#paths.answered(friend ? "friends" : "self", entry.pathId, now);
    this.#paths.addPathNode(entry.node);
    if (friend) return this.#friends.onAnnounceResponse(friend, entry, response, relay, now);
    this.#self.onAnnounceResponse(entry, response, relay, now);
    return true;
  }

  /** The transport's connected relays, asked once per input (building them is not free). */
  #relays(): readonly RelayAddress[] {
    if (this.#relaysAt !== this.#now || this.#relaysCache === null) {
      this.#relaysCache = this.#transport.connectedRelays();
      this.#relaysAt = this.#now;
    }
    return this.#relaysCache;
  }
}

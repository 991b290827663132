/**
 * TCP_connections (c-toxcore 0.2.18 TCP_connection.c), sans-I/O: which relays carry which
 * peer, which one sends, what happens when one fails, sleeps or lies.
 *
 * Inputs are commands, relay-worker events and `now`; outputs are actions for the I/O shell
 * (open/close a relay worker, route, send) and events for the layer above. No sockets, no
 * timers: `nextDeadline()` says when `tick()` is due.
 *
 * Kept from c-toxcore: a peer (by DHT public key) holds at most 6 relay slots and stops
 * taking new relays once 3 are ONLINE; data goes through one ONLINE relay, the next one takes
 * over; with none ONLINE it goes as OOB through every relay where the peer is REGISTERED;
 * OOB from a peer that has a slot on that relay counts as data; relays nobody needs are
 * closed 10 s after they connect while at least 3 stay connected; a relay that once worked
 * is reconnected, a peer-learned one that never worked is dropped.
 *
 * Beyond c-toxcore: reconnects back off with jitter; a global relay (the user's) is never
 * forgotten, only put to sleep; the sending relay is sticky and chosen by evidence (the
 * relay the peer's traffic arrives on, health, RTT) rather than slot order; congestion and
 * a per-relay send window make `sendData` refuse instead of queueing, so no queue here
 * grows; relays that lose pongs repeatedly or drop a peer's data while another relay
 * delivers it are benched ("replaced") with the reason kept for status.
 */
import type { RandomBytes } from "../common/crypto.ts";
import { fromHex, toHex } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { ProxyConfig } from "../relay_client/proxy.ts";
import { MAX_DATA_PAYLOAD, MAX_OOB_DATA } from "../tcp_common/packets.ts";
import type { Fault } from "../common/codec.ts";
import type { RelayClientStats } from "../relay_client/relay_client.ts";
import type { RelayLinkEvent, RelaySendItem } from "../relay_client/relay_link.ts";

export interface TcpConnectionsConfig {
  /** RECOMMENDED_FRIEND_TCP_CONNECTIONS: relays a peer wants, and ONLINE ones that stop more. */
  readonly recommendedRelays: number;
  /** MAX_FRIEND_TCP_CONNECTIONS: relay slots a peer may hold. */
  readonly maxRelaysPerPeer: number;
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
  benchMs: 10 * 60_000,
  searchAfterMs: 10_000,
  statsIntervalMs: 1_000,
  wakeReopenAfterMs: 30_000,
};

/** sleeping: no worker, not needed · waiting: failed, back-off running · benched: replaced. */
export type RelayConnState = "sleeping" | "connecting" | "confirmed" | "waiting" | "benched";

/** TCP_CONNECTIONS_STATUS_NONE / REGISTERED / ONLINE. */
export type SlotStatus = "none" | "registered" | "online";

/** What the I/O shell must do. Relays are named by their public key in hex. */
export type RelayAction =
  | {
    readonly type: "open";
    readonly relay: string;
    readonly address: RelayAddress;
    readonly proxy?: ProxyConfig;
  }
  | { readonly type: "close"; readonly relay: string }
  | { readonly type: "route"; readonly relay: string; readonly publicKey: Uint8Array }
  | { readonly type: "unroute"; readonly relay: string; readonly publicKey: Uint8Array }
  | { readonly type: "send"; readonly relay: string; readonly items: RelaySendItem[] }
  | { readonly type: "stats"; readonly relay: string };

/** What the layer above hears. Peers and relays are named by public key in hex. */
export type TcpConnectionsEvent =
  | {
    readonly type: "relay_state";
    readonly relay: string;
    /** removed: by the user, or a learned relay that never connected (c-toxcore drops it). */
    readonly state: RelayConnState | "removed";
    /** Why it left `confirmed`, or why it was benched. */
    readonly reason?: string;
    readonly fault?: Fault;
    /** When a reconnect is scheduled. */
    readonly retryInMs?: number;
  }
  | { readonly type: "peer_online"; readonly peer: string; readonly relay: string }
  /**
   * A relay took our routing request for a peer that is online nowhere (status REGISTERED):
   * OOB to it can go that way now, so a handshake waiting for a path need not wait longer.
   */
  | { readonly type: "peer_registered"; readonly peer: string; readonly relay: string }
  | { readonly type: "peer_offline"; readonly peer: string }
  | {
    readonly type: "sender_changed";
    readonly peer: string;
    readonly from: string | null;
    readonly to: string | null;
    readonly reason: string;
  }
  | { readonly type: "data"; readonly peer: string; readonly relay: string; data: Uint8Array }
  /** OOB from a key that has no slot on that relay (c-toxcore's tcp_oob_callback). */
  | {
    readonly type: "oob";
    readonly from: Uint8Array;
    readonly relay: string;
    readonly data: Uint8Array;
  }
  | { readonly type: "onion"; readonly relay: string; readonly data: Uint8Array }
  /** A peer refused as congested may send again. */
  | { readonly type: "writable"; readonly peer: string }
  /** Items a relay worker handed back or lost in a close: best effort ends here. */
  | {
    readonly type: "send_failed";
    readonly relay: string;
    readonly packets: number;
    readonly reason: string;
  };

export type SendOutcome =
  | { readonly ok: true; readonly via: "data" | "onion"; readonly relay: string }
  | { readonly ok: true; readonly via: "oob"; readonly relays: readonly string[] }
  | {
    readonly ok: false;
    /** congested: every ONLINE relay is full, try again on `writable`. */
    readonly reason: "unknown_peer" | "invalid" | "congested" | "not_connected";
    readonly message: string;
  };

export interface SlotView {
  readonly relay: string;
  readonly status: SlotStatus;
  readonly connectionId: number | null;
  readonly sending: boolean;
  readonly proven: boolean;
  readonly suspect: string | null;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface PeerView {
  readonly publicKey: string;
  readonly online: boolean;
  readonly sender: string | null;
  readonly slots: readonly SlotView[];
  /** Relays learned for this peer (hints, shared relays), in the order learned. */
  readonly learned: readonly string[];
  readonly oobSent: number;
  readonly congestedRefusals: number;
}

export interface RelayView {
  readonly publicKey: string;
  readonly host: string;
  readonly port: number;
  readonly state: RelayConnState;
  readonly global: boolean;
  readonly everConfirmed: boolean;
  readonly rttMs: number | null;
  readonly score: number;
  readonly congested: boolean;
  readonly inflight: number;
  readonly peersRouted: number;
  readonly peersOnline: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly sendFailures: number;
  /** From the relay worker's last stats report. */
  readonly queueDepth: number;
  readonly queueBytes: number;
  readonly queueHighWater: number;
  readonly sessions: number;
  readonly lastError: string | null;
  readonly benchedReason: string | null;
  readonly retryInMs: number | null;
  readonly upForMs: number | null;
}

export type AddRelayResult =
  | { readonly ok: true; readonly relay: string; readonly added: boolean }
  | { readonly ok: false; readonly message: string };

interface Slot {
  readonly relay: string;
  status: SlotStatus;
  connectionId: number | null;
  /** The peer's traffic (or a delivery we could pin to this relay) came through it. */
  provenAt: number;
  /** First data sent through this slot since the last delivery progress. */
  unackedSince: number | null;
  suspectAt: number | null;
  suspectReason: string | null;
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
}

interface Peer {
  readonly publicKey: Uint8Array;
  readonly hex: string;
  readonly slots: Slot[];
  readonly learned: string[];
  /** Relays that refused to route this peer (full): not tried again for it. */
  readonly refusedBy: Set<string>;
  sender: string | null;
  senderSince: number;
  online: boolean;
  /** Since when the peer has had no ONLINE slot (added, or went offline). */
  offlineSince: number;
  /** The layer above reports delivery progress for this peer: detection of dropping is on. */
  feedback: boolean;
  blocked: boolean;
  oobSent: number;
  congestedRefusals: number;
}

interface Relay {
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
  penalties: number[];
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

export interface TcpConnectionsOptions {
  readonly now: number;
  readonly random: RandomBytes;
  /** With a proxy every relay is reached through it, never directly. */
  readonly proxy?: ProxyConfig;
  readonly config?: Partial<TcpConnectionsConfig>;
}

const shortKey = (hex: string) => hex.slice(0, 8);

export class TcpConnections {
  readonly config: TcpConnectionsConfig;
  readonly #random: RandomBytes;
  readonly #proxy: ProxyConfig | undefined;
  readonly #relays = new Map<string, Relay>();
  readonly #peers = new Map<string, Peer>();
  #actions: RelayAction[] = [];
  #sends = new Map<string, RelaySendItem[]>();
  #events: TcpConnectionsEvent[] = [];
  #order = 0;
  #now: number;
  #nextStatsAt: number;
  #onionTurn = 0;

  constructor(opts: TcpConnectionsOptions) {
    this.config = { ...DEFAULT_TCP_CONNECTIONS_CONFIG, ...opts.config };
    this.#random = opts.random;
    this.#proxy = opts.proxy;
    this.#now = opts.now;
    this.#nextStatsAt = opts.now + this.config.statsIntervalMs;
  }

  // ---- outputs -----------------------------------------------------------------------------

  /** Actions for the shell, in order; sends batched per relay after the rest. */
  takeActions(): RelayAction[] {
    const out = this.#actions;
    this.#actions = [];
    for (const [relay, items] of this.#sends) out.push({ type: "send", relay, items });
    this.#sends.clear();
    return out;
  }

  takeEvents(): TcpConnectionsEvent[] {
    const out = this.#events;
    this.#events = [];
    return out;
  }

  /** When `tick` must run next (ms, same clock as `now`). */
  nextDeadline(): number {
    let at = this.#nextStatsAt;
    // Idle-sleep and search times in the past have been acted on by the last reconcile (or
    // do not apply: a kept relay, a peer already searching); reporting them would make a
    // shell that ticks at nextDeadline() spin.
    const now = this.#now;
    for (const r of this.#relays.values()) {
      if (r.state === "waiting") at = Math.min(at, r.retryAt);
      if (r.state === "benched") at = Math.min(at, r.benchedUntil);
      if (r.state === "confirmed" && r.peers.size === 0) {
        const idleAt = r.confirmedAt + this.config.idleSleepMs;
        if (idleAt > now) at = Math.min(at, idleAt);
      }
    }
    for (const p of this.#peers.values()) {
      const searchAt = p.offlineSince + this.config.searchAfterMs;
      if (!p.online && searchAt > now) at = Math.min(at, searchAt);
      for (const s of p.slots) {
        if (s.unackedSince !== null && p.sender === s.relay) {
          // As #checkDelivery: the later of the first unacked send and the last proof.
          at = Math.min(at, Math.max(s.unackedSince, s.provenAt) + this.config.deliveryTimeoutMs);
        }
        if (s.suspectAt !== null) at = Math.min(at, s.suspectAt + this.config.suspectForMs);
      }
    }
    return at;
  }

  // ---- commands ----------------------------------------------------------------------------

  /**
   * add_tcp_relay_global: a relay of the user's, kept (asleep when unneeded) until removed.
   * `proxy` reaches this relay through another proxy than the default one; there is no way
   * to reach a relay directly when a default proxy is set.
   */
  addRelay(address: RelayAddress, now: number, proxy?: ProxyConfig): AddRelayResult {
    this.#now = now;
    const r = this.#ensureRelay(address, proxy);
    if (!r.ok) return r;
    const relay = this.#relays.get(r.relay)!;
    relay.global = true;
    this.#reconcile();
    return r;
  }

  removeRelay(relayHex: string, now: number): boolean {
    this.#now = now;
    const relay = this.#relays.get(relayHex.toLowerCase());
    if (!relay) return false;
    this.#detachRelay(relay, "relay removed");
    if (this.#hasWorker(relay)) this.#actions.push({ type: "close", relay: relay.hex });
    this.#forget(relay);
    this.#events.push({
      type: "relay_state",
      relay: relay.hex,
      state: "removed",
      reason: "removed",
    });
    this.#reconcile();
    return true;
  }

  /** new_tcp_connection_to: a peer by its DHT public key. */
  addPeer(publicKey: Uint8Array, now: number): boolean {
    this.#now = now;
    // A key of another length would reach relays in ROUTING requests.
    if (publicKey.length !== 32) return false;
    const hex = toHex(publicKey);
    if (this.#peers.has(hex)) return false;
    this.#peers.set(hex, {
      publicKey: publicKey.slice(),
      hex,
      slots: [],
      learned: [],
      refusedBy: new Set(),
      sender: null,
      senderSince: now,
      online: false,
      offlineSince: now,
      feedback: this.config.deliveryFeedback,
      blocked: false,
      oobSent: 0,
      congestedRefusals: 0,
    });
    this.#reconcile();
    return true;
  }

  /** kill_tcp_connection_to: unroute it everywhere it was routed. */
  removePeer(publicKey: Uint8Array | string, now: number): boolean {
    this.#now = now;
    const hex = typeof publicKey === "string" ? publicKey.toLowerCase() : toHex(publicKey);
    const peer = this.#peers.get(hex);
    if (!peer) return false;
    for (const s of [...peer.slots]) this.#dropSlot(peer, s, null);
    this.#peers.delete(hex);
    this.#reconcile();
    return true;
  }

  /**
   * add_tcp_relay_connection: the peer is reachable through this relay (a hint, a shared
   * relay). Learned relays are tried before global ones for this peer.
   */
  addPeerRelay(publicKey: Uint8Array, address: RelayAddress, now: number): AddRelayResult {
    this.#now = now;
    const peer = this.#peers.get(toHex(publicKey));
    if (!peer) return { ok: false, message: "unknown peer" };
    const r = this.#ensureRelay(address);
    if (!r.ok) return r;
    if (!peer.learned.includes(r.relay)) {
      peer.learned.push(r.relay);
      // FRIEND_MAX_STORED_TCP_RELAYS: remember the newest 24.
      if (peer.learned.length > 24) peer.learned.shift();
    }
    this.#reconcile();
    return r;
  }

  /**
   * The layer above saw the peer acknowledge what we sent (net_crypto's packet numbers
   * moved). This is the evidence that the sending relay delivers; from the first call on,
   * a sending relay that goes without it is suspected.
   */
  delivered(publicKey: Uint8Array | string, now: number): void {
    this.#now = now;
    const peer = this.#peers.get(
      typeof publicKey === "string" ? publicKey.toLowerCase() : toHex(publicKey),
    );
    if (!peer) return;
    peer.feedback = true;
    const attributable = now - peer.senderSince >= this.config.attributionMs;
    for (const s of peer.slots) {
      if (s.unackedSince !== null && s.relay === peer.sender && attributable) {
        this.#prove(peer, s, now);
      }
      s.unackedSince = null;
    }
    this.#reconcile();
  }

  /** send_packet_tcp_connection. Refuses rather than queues: see SendOutcome. */
  /**
   * `expectsAck`: the peer will acknowledge this packet (net_crypto lossless), so silence
   * after it is evidence against the relay; false for lossy packets.
   */
  sendData(
    publicKey: Uint8Array | string,
    data: Uint8Array,
    now: number,
    expectsAck = true,
  ): SendOutcome {
    this.#now = now;
    const hex = typeof publicKey === "string" ? publicKey.toLowerCase() : toHex(publicKey);
    const peer = this.#peers.get(hex);
    if (!peer) return { ok: false, reason: "unknown_peer", message: `no peer ${shortKey(hex)}` };
    if (data.length === 0 || data.length > MAX_DATA_PAYLOAD) {
      return {
        ok: false,
        reason: "invalid",
        message: `data of ${data.length} bytes (1..${MAX_DATA_PAYLOAD})`,
      };
    }
    const slot = this.#chooseSender(peer, now);
    if (slot !== null) {
      const relay = this.#relays.get(slot.relay)!;
      if (relay.inflight >= this.config.sendWindowPackets) {
        // A full window is the relay's socket being busy, not failing: hold, do not spread
        // one peer's packets over relays (that reorders them).
        peer.blocked = true;
        peer.congestedRefusals++;
        return { ok: false, reason: "congested", message: "send window of the sending relay full" };
      }
      this.#queueSend(relay, { kind: "data", publicKey: peer.publicKey, data });
      slot.packetsOut++;
      slot.bytesOut += data.length;
      if (peer.feedback && expectsAck && slot.unackedSince === null) slot.unackedSince = now;
      return { ok: true, via: "data", relay: relay.hex };
    }
    if (peer.slots.some((s) => s.status === "online")) {
      peer.blocked = true;
      peer.congestedRefusals++;
      return {
        ok: false,
        reason: "congested",
        message: "every relay the peer is online on is full",
      };
    }
    // No ONLINE slot: OOB through every relay where the peer is REGISTERED.
    const registered = peer.slots.filter((s) => s.status === "registered");
    if (registered.length > 0) {
      if (data.length > MAX_OOB_DATA) {
        return {
          ok: false,
          reason: "invalid",
          message: `peer not online on any relay yet and OOB carries at most ${MAX_OOB_DATA} bytes`,
        };
      }
      const used: string[] = [];
      for (const s of registered) {
        const relay = this.#relays.get(s.relay)!;
        if (!this.#canSend(relay)) continue;
        // Each relay Worker gets its own buffer: a buffer handed to one may be transferred.
        const copy = used.length === 0 ? data : data.slice();
        this.#queueSend(relay, { kind: "oob", publicKey: peer.publicKey, data: copy });
        s.packetsOut++;
        s.bytesOut += data.length;
        used.push(relay.hex);
      }
      if (used.length > 0) {
        peer.oobSent++;
        return { ok: true, via: "oob", relays: used };
      }
      peer.blocked = true;
      peer.congestedRefusals++;
      return {
        ok: false,
        reason: "congested",
        message: "every relay the peer is registered on is full",
      };
    }
    return {
      ok: false,
      reason: "not_connected",
      message: peer.slots.length === 0
        ? "no relay for this peer"
        : "the peer is not on any of its relays yet",
    };
  }

  /** tcp_send_oob_packet: OOB to any key through one confirmed relay. */
  sendOob(relayHex: string, publicKey: Uint8Array, data: Uint8Array, now: number): SendOutcome {
    this.#now = now;
    const relay = this.#relays.get(relayHex.toLowerCase());
    if (!relay || relay.state !== "confirmed") {
      return { ok: false, reason: "not_connected", message: "relay not connected" };
    }
    if (data.length === 0 || data.length > MAX_OOB_DATA || publicKey.length !== 32) {
      return { ok: false, reason: "invalid", message: `OOB of ${data.length} bytes` };
    }
    if (!this.#canSend(relay)) return { ok: false, reason: "congested", message: "relay full" };
    this.#queueSend(relay, { kind: "oob", publicKey: publicKey.slice(), data });
    return { ok: true, via: "oob", relays: [relay.hex] };
  }

  /** tcp_send_onion_request: through a connected relay (we have no UDP), in turn. */
  sendOnion(data: Uint8Array, now: number, relayHex?: string): SendOutcome {
    this.#now = now;
    const candidates = relayHex !== undefined
      ? [this.#relays.get(relayHex.toLowerCase())].filter((r): r is Relay => r !== undefined)
      : [...this.#relays.values()];
    const usable = candidates.filter((r) => r.state === "confirmed" && this.#canSend(r));
    if (usable.length === 0) {
      return { ok: false, reason: "not_connected", message: "no connected relay for onion" };
    }
    const relay = usable[this.#onionTurn++ % usable.length];
    this.#queueSend(relay, { kind: "onion", data });
    return { ok: true, via: "onion", relay: relay.hex };
  }

  // ---- inputs from relay workers -----------------------------------------------------------

  /** Events of one relay worker, in the order it sent them. */
  relayEvents(relayHex: string, events: readonly RelayLinkEvent[], now: number): void {
    this.#now = now;
    const relay = this.#relays.get(relayHex.toLowerCase());
    if (!relay) return;
    // A closing relay client reports every ONLINE route as offline before `closed`; the
    // close says why, so those offlines are left to it.
    const closing = events.some((e) => e.type === "closed" || e.type === "crashed");
    for (const e of events) {
      if (closing && e.type === "offline") continue;
      this.#onRelayEvent(relay, e, now);
    }
    this.#reconcile();
  }

  tick(now: number): void {
    this.#now = now;
    if (now >= this.#nextStatsAt) {
      this.#nextStatsAt = now + this.config.statsIntervalMs;
      for (const r of this.#relays.values()) {
        if (r.state === "confirmed") this.#actions.push({ type: "stats", relay: r.hex });
      }
    }
    for (const peer of this.#peers.values()) this.#checkDelivery(peer, now);
    this.#reconcile();
  }

  /**
   * The machine slept `sleptMs` (the owner saw the wall clock run ahead of the monotonic
   * one). Back-offs counted before the sleep are void: every relay that is wanted is tried
   * now, and after a long sleep the sessions from before it are reopened rather than found
   * dead by pings minutes later.
   */
  wake(now: number, sleptMs: number): void {
    this.#now = now;
    for (const r of this.#relays.values()) {
      if (r.state === "waiting" || r.state === "sleeping") {
        r.retryAt = now;
        r.attempts = 0;
      } else if (r.state === "confirmed" && sleptMs >= this.config.wakeReopenAfterMs) {
        this.#actions.push({ type: "close", relay: r.hex });
        this.#relayDown(r, `reopened after ${Math.round(sleptMs / 1000)} s asleep`, "network", now);
        r.retryAt = now;
        r.attempts = 0;
      }
    }
    this.#reconcile();
  }

  // ---- status ------------------------------------------------------------------------------

  relays(now: number = this.#now): RelayView[] {
    return [...this.#relays.values()].sort((a, b) => a.order - b.order).map((r) => {
      let routed = 0, online = 0;
      for (const hex of r.peers) {
        const s = this.#peers.get(hex)?.slots.find((s) => s.relay === r.hex);
        if (s?.status === "registered") routed++;
        if (s?.status === "online") (routed++, online++);
      }
      return {
        publicKey: r.hex,
        host: r.address.host,
        port: r.address.port,
        state: r.state,
        global: r.global,
        everConfirmed: r.everConfirmed,
        rttMs: r.rttMs,
        score: this.#score(r, now),
        congested: r.congested,
        inflight: r.inflight,
        peersRouted: routed,
        peersOnline: online,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        packetsIn: r.packetsIn,
        packetsOut: r.packetsOut,
        sendFailures: r.sendFailures,
        queueDepth: r.worker?.dataQueued ?? 0,
        queueBytes: r.worker?.dataQueuedBytes ?? 0,
        queueHighWater: r.worker?.dataQueuedHighWater ?? 0,
        sessions: r.sessions,
        lastError: r.lastError,
        benchedReason: r.state === "benched" ? r.benchedReason : null,
        retryInMs: r.state === "waiting"
          ? Math.max(0, r.retryAt - now)
          : r.state === "benched"
          ? Math.max(0, r.benchedUntil - now)
          : null,
        upForMs: r.state === "confirmed" ? now - r.confirmedAt : null,
      };
    });
  }

  peers(now: number = this.#now): PeerView[] {
    return [...this.#peers.values()].map((p) => ({
      publicKey: p.hex,
      online: p.online,
      sender: p.sender,
      slots: p.slots.map((s) => ({
        relay: s.relay,
        status: s.status,
        connectionId: s.connectionId,
        sending: s.relay === p.sender,
        proven: this.#isProven(s, now),
        suspect: s.suspectReason,
        packetsIn: s.packetsIn,
        packetsOut: s.packetsOut,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
      })),
      learned: [...p.learned],
      oobSent: p.oobSent,
      congestedRefusals: p.congestedRefusals,
    }));
  }

  // ---- internals: relay events -------------------------------------------------------------

  #onRelayEvent(relay: Relay, e: RelayLinkEvent, now: number): void {
    switch (e.type) {
      case "confirmed": {
        if (relay.state !== "connecting") return;
        relay.state = "confirmed";
        relay.everConfirmed = true;
        relay.confirmedAt = now;
        relay.inflight = 0;
        relay.congested = false;
        relay.sessions++;
        this.#events.push({ type: "relay_state", relay: relay.hex, state: "confirmed" });
        // A refusal (routing table full) belonged to the old session.
        for (const peer of this.#peers.values()) peer.refusedBy.delete(relay.hex);
        // tcp_relay_on_online: route every peer that has this relay in a slot.
        for (const hex of relay.peers) {
          const peer = this.#peers.get(hex);
          if (peer) {
            this.#actions.push({ type: "route", relay: relay.hex, publicKey: peer.publicKey });
          }
        }
        return;
      }
      case "routed":
      case "online":
      case "offline": {
        if (relay.state !== "confirmed") return;
        const peer = this.#peers.get(toHex(e.publicKey));
        const slot = peer?.slots.find((s) => s.relay === relay.hex);
        if (!peer || !slot) {
          // Routed for a peer removed meanwhile: let the relay forget it.
          if (e.type === "routed") {
            this.#actions.push({ type: "unroute", relay: relay.hex, publicKey: e.publicKey });
          }
          return;
        }
        slot.connectionId = e.connectionId;
        if (e.type === "online") this.#setSlotStatus(peer, slot, "online", now);
        else if (e.type === "offline" || slot.status === "none") {
          this.#setSlotStatus(peer, slot, "registered", now);
        }
        return;
      }
      case "route_refused": {
        const peer = this.#peers.get(toHex(e.publicKey));
        const slot = peer?.slots.find((s) => s.relay === relay.hex);
        if (peer && slot) {
          peer.refusedBy.add(relay.hex);
          this.#dropSlot(peer, slot, "relay refused to route", false);
        }
        return;
      }
      case "data": {
        if (relay.state !== "confirmed") return;
        this.#count(relay, e.data.length);
        const peer = this.#peers.get(toHex(e.publicKey));
        const slot = peer?.slots.find((s) => s.relay === relay.hex);
        if (!peer || !slot) return;
        this.#received(peer, slot, relay, e.data, now);
        return;
      }
      case "oob": {
        if (relay.state !== "confirmed") return;
        this.#count(relay, e.data.length);
        const peer = this.#peers.get(toHex(e.publicKey));
        const slot = peer?.slots.find((s) => s.relay === relay.hex);
        // tcp_conn_oob_callback: a known peer with a slot here is plain data.
        if (peer && slot) this.#received(peer, slot, relay, e.data, now);
        else this.#events.push({ type: "oob", from: e.publicKey, relay: relay.hex, data: e.data });
        return;
      }
      case "onion":
        if (relay.state !== "confirmed") return;
        this.#count(relay, e.data.length);
        this.#events.push({ type: "onion", relay: relay.hex, data: e.data });
        return;
      case "pong":
        relay.rttMs = e.rttMs;
        return;
      case "congested":
        relay.congested = true;
        return;
      case "drained":
        relay.congested = false;
        this.#wakeBlocked(relay);
        return;
      case "sent":
        relay.inflight = Math.max(0, relay.inflight - e.packets);
        if (relay.inflight <= this.config.sendWindowPackets / 2) this.#wakeBlocked(relay);
        return;
      case "refused": {
        relay.inflight = Math.max(0, relay.inflight - e.items.length);
        relay.sendFailures += e.items.length;
        this.#events.push({
          type: "send_failed",
          relay: relay.hex,
          packets: e.items.length,
          reason: `${e.reason}: ${e.message}`,
        });
        return;
      }
      case "stats":
        relay.worker = e.stats;
        return;
      case "closed": {
        if (!this.#hasWorker(relay)) return;
        if (e.unsent > 0) {
          relay.sendFailures += e.unsent;
          this.#events.push({
            type: "send_failed",
            relay: relay.hex,
            packets: e.unsent,
            reason: `relay closed: ${e.reason}`,
          });
        }
        this.#actions.push({ type: "close", relay: relay.hex });
        this.#relayDown(relay, `${e.reason}: ${e.message}`, e.fault, now);
        return;
      }
      case "crashed":
        // The Worker died without a close: same as a lost connection, our fault.
        if (!this.#hasWorker(relay)) return;
        this.#actions.push({ type: "close", relay: relay.hex });
        this.#relayDown(relay, `relay worker crashed: ${e.message}`, "local", now);
        return;
      case "bad_command":
        relay.lastError = e.message;
        return;
      default:
        // connecting, tcp_connected, forwarding, reconnecting, shutdown: nothing to decide.
        return;
    }
  }

  #count(relay: Relay, bytes: number): void {
    relay.packetsIn++;
    relay.bytesIn += bytes;
  }

  #received(peer: Peer, slot: Slot, relay: Relay, data: Uint8Array, now: number): void {
    slot.packetsIn++;
    slot.bytesIn += data.length;
    this.#prove(peer, slot, now);
    this.#events.push({ type: "data", peer: peer.hex, relay: relay.hex, data });
  }

  #relayDown(relay: Relay, reason: string, fault: Fault, now: number): void {
    const wasUp = relay.state === "confirmed";
    const upFor = wasUp ? now - relay.confirmedAt : 0;
    relay.lastError = reason;
    relay.congested = false;
    relay.inflight = 0;
    relay.worker = null;
    if (fault === "peer") relay.faults.push(now);
    for (const hex of relay.peers) {
      const peer = this.#peers.get(hex);
      const slot = peer?.slots.find((s) => s.relay === relay.hex);
      if (peer && slot) {
        slot.connectionId = null;
        this.#setSlotStatus(
          peer,
          slot,
          "none",
          now,
          `relay ${shortKey(relay.hex)} closed: ${reason}`,
        );
      }
    }
    if (this.#recentFaults(relay, now) >= this.config.failuresToBench) {
      // The caller has already asked the shell to close this worker.
      this.#bench(
        relay,
        `closed ${this.config.failuresToBench} times by its own fault ` +
          `within ${Math.round(this.config.failureWindowMs / 60_000)} min (last: ${reason})`,
        now,
        false,
      );
      return;
    }
    if (!relay.everConfirmed && !relay.global) {
      // c-toxcore kill_tcp_relay_connection: a learned relay that never worked is dropped.
      this.#events.push({ type: "relay_state", relay: relay.hex, state: "removed", reason, fault });
      this.#detachRelay(relay, `relay never connected: ${reason}`);
      this.#forget(relay);
      return;
    }
    relay.attempts = wasUp && upFor >= this.config.stableAfterMs ? 0 : relay.attempts + 1;
    const delay = this.#backoff(relay.attempts);
    relay.state = "waiting";
    relay.retryAt = now + delay;
    this.#events.push({
      type: "relay_state",
      relay: relay.hex,
      state: "waiting",
      reason,
      fault,
      retryInMs: delay,
    });
  }

  /** 0 for the first retry after a stable session (c-toxcore reconnects at once), then ×2. */
  #backoff(attempts: number): number {
    if (attempts === 0) return Math.floor(this.#jitter() * 250);
    const base = Math.min(
      this.config.reconnectMaxMs,
      this.config.reconnectMinMs * 2 ** (attempts - 1),
    );
    const j = this.config.reconnectJitter;
    return Math.round(base * (1 - j + 2 * j * this.#jitter()));
  }

  #jitter(): number {
    const b = this.#random(4);
    return (((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0) / 2 ** 32;
  }

  #bench(relay: Relay, reason: string, now: number, closeWorker = true): void {
    if (closeWorker && this.#hasWorker(relay)) {
      this.#actions.push({ type: "close", relay: relay.hex });
    }
    relay.state = "benched";
    relay.benchedReason = reason;
    relay.benchedUntil = now + this.config.benchMs;
    relay.congested = false;
    relay.inflight = 0;
    this.#events.push({ type: "relay_state", relay: relay.hex, state: "benched", reason });
    this.#detachRelay(relay, `relay ${shortKey(relay.hex)} benched: ${reason}`);
  }

  // ---- internals: slots, sender choice, delivery evidence ----------------------------------

  #setSlotStatus(peer: Peer, slot: Slot, status: SlotStatus, now: number, why?: string): void {
    const before = slot.status;
    slot.status = status;
    if (status !== "online") {
      slot.unackedSince = null;
      if (peer.sender === slot.relay) {
        // Fail over at once, so the next packet does not wait for a choice.
        const next = this.#bestSlot(peer, now);
        this.#setSender(
          peer,
          next?.relay ?? null,
          now,
          why ?? `peer went offline on ${shortKey(slot.relay)}`,
        );
      }
    }
    const online = peer.slots.some((s) => s.status === "online");
    if (online && !peer.online) {
      peer.online = true;
      this.#events.push({ type: "peer_online", peer: peer.hex, relay: slot.relay });
    } else if (!online && peer.online) {
      peer.online = false;
      peer.offlineSince = now;
      this.#events.push({ type: "peer_offline", peer: peer.hex });
    }
    if (status === "online" && before !== "online") {
      if (peer.sender === null) this.#chooseSender(peer, now);
      if (peer.blocked) this.#unblock(peer);
    }
    if (status === "registered" && before === "none" && !peer.online) {
      this.#events.push({ type: "peer_registered", peer: peer.hex, relay: slot.relay });
    }
  }

  #canSend(relay: Relay): boolean {
    return relay.state === "confirmed" && !relay.congested &&
      relay.inflight < this.config.sendWindowPackets;
  }

  #isProven(s: Slot, now: number): boolean {
    return s.provenAt > 0 && now - s.provenAt < this.config.provenForMs;
  }

  /** May send for this peer: ONLINE, not suspected, relay up and not backed up. */
  #eligible(s: Slot): boolean {
    if (s.status !== "online" || s.suspectAt !== null) return false;
    const relay = this.#relays.get(s.relay);
    return relay !== undefined && relay.state === "confirmed" && !relay.congested;
  }

  /**
   * The sending slot: the current one while it can send; otherwise the best eligible one.
   * A relay the peer's traffic proves working wins over one that does not.
   */
  #chooseSender(peer: Peer, now: number): Slot | null {
    const current = peer.sender === null
      ? undefined
      : peer.slots.find((s) => s.relay === peer.sender);
    // Per packet: the sticky sender stays unless another slot is proven and it is not, so
    // the full ranking runs only when that can change the answer.
    if (
      current && this.#eligible(current) &&
      (this.#isProven(current, now) || !peer.slots.some((s) => this.#isProven(s, now)))
    ) return current;
    const best = this.#bestSlot(peer, now);
    if (current && this.#eligible(current)) {
      if (best && best !== current && this.#isProven(best, now)) {
        this.#setSender(peer, best.relay, now, `peer's traffic arrives on ${shortKey(best.relay)}`);
        return best;
      }
      return current;
    }
    if (best === null) {
      if (current) this.#setSender(peer, null, now, this.#whyNot(current));
      return null;
    }
    this.#setSender(
      peer,
      best.relay,
      now,
      current ? this.#whyNot(current) : "first relay the peer is online on",
    );
    return best;
  }

  #bestSlot(peer: Peer, now: number): Slot | null {
    let best: Slot | null = null;
    let bestKey: number[] = [];
    peer.slots.forEach((s, i) => {
      if (!this.#eligible(s)) return;
      const r = this.#relays.get(s.relay)!;
      const key = [this.#isProven(s, now) ? 1 : 0, this.#score(r, now), -(r.rttMs ?? 1e6), -i];
      if (best === null || compareKeys(key, bestKey) > 0) (best = s, bestKey = key);
    });
    return best;
  }

  #whyNot(s: Slot): string {
    const relay = this.#relays.get(s.relay);
    const name = shortKey(s.relay);
    if (!relay) return `relay ${name} removed`;
    if (s.suspectReason) return `relay ${name} suspected: ${s.suspectReason}`;
    if (relay.state !== "confirmed") return `relay ${name} is ${relay.state}`;
    if (s.status !== "online") return `peer not online on ${name}`;
    return `relay ${name} congested`;
  }

  #setSender(peer: Peer, relay: string | null, now: number, reason: string): void {
    if (peer.sender === relay) return;
    const from = peer.sender;
    peer.sender = relay;
    peer.senderSince = now;
    this.#events.push({ type: "sender_changed", peer: peer.hex, from, to: relay, reason });
    if (relay !== null && peer.blocked) this.#unblock(peer);
  }

  #prove(peer: Peer, slot: Slot, now: number): void {
    slot.provenAt = now;
    if (slot.suspectAt !== null) {
      // The suspect carried the peer's traffic after all.
      slot.suspectAt = null;
      slot.suspectReason = null;
    }
    // Another relay works for this peer while a suspect still shows nothing: it drops.
    for (const s of peer.slots) {
      if (s === slot || s.suspectAt === null || s.provenAt >= s.suspectAt) continue;
      const relay = this.#relays.get(s.relay);
      if (!relay) continue;
      relay.penalties.push(now);
      this.#bench(
        relay,
        `dropped data for peer ${shortKey(peer.hex)}: ${s.suspectReason}, ` +
          `while relay ${shortKey(slot.relay)} delivered`,
        now,
      );
      return; // #bench detached the relay from every peer, including this loop's slots
    }
  }

  #checkDelivery(peer: Peer, now: number): void {
    for (const s of peer.slots) {
      if (s.suspectAt !== null && now - s.suspectAt >= this.config.suspectForMs) {
        s.suspectAt = null;
        s.suspectReason = null;
      }
    }
    if (!peer.feedback || peer.sender === null) return;
    const slot = peer.slots.find((s) => s.relay === peer.sender);
    if (!slot || slot.unackedSince === null) return;
    const waited = now - slot.unackedSince;
    if (waited < this.config.deliveryTimeoutMs) return;
    if (this.#isProven(slot, now) && now - slot.provenAt < this.config.deliveryTimeoutMs) return;
    // Suspect only when there is somewhere else to go: one relay alone cannot be compared.
    const others = peer.slots.filter((s) => s !== slot && this.#eligible(s));
    slot.unackedSince = null;
    if (others.length === 0) return;
    slot.suspectAt = now;
    slot.suspectReason = `nothing delivered in ${Math.round(waited)} ms`;
    this.#chooseSender(peer, now);
  }

  #wakeBlocked(relay: Relay): void {
    if (!this.#canSend(relay)) return;
    for (const hex of relay.peers) {
      const peer = this.#peers.get(hex);
      if (peer?.blocked) this.#unblock(peer);
    }
  }

  #unblock(peer: Peer): void {
    peer.blocked = false;
    this.#events.push({ type: "writable", peer: peer.hex });
  }

  #queueSend(relay: Relay, item: RelaySendItem): void {
    relay.inflight++;
    relay.packetsOut++;
    relay.bytesOut += item.data.length;
    let batch = this.#sends.get(relay.hex);
    if (!batch) this.#sends.set(relay.hex, batch = []);
    batch.push(item);
  }

  // ---- internals: relay set ----------------------------------------------------------------

  #ensureRelay(address: RelayAddress, proxy?: ProxyConfig): AddRelayResult {
    let pk: Uint8Array;
    try {
      pk = fromHex(address.publicKey, 32);
    } catch (e) {
      return { ok: false, message: `relay public key: ${(e as Error).message}` };
    }
    const hex = toHex(pk);
    if (this.#relays.has(hex)) return { ok: true, relay: hex, added: false };
    this.#relays.set(hex, {
      hex,
      publicKey: pk,
      address: { host: address.host, port: address.port, publicKey: hex },
      proxy: proxy ?? this.#proxy,
      order: this.#order++,
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
    });
    return { ok: true, relay: hex, added: true };
  }

  #hasWorker(relay: Relay): boolean {
    return relay.state === "connecting" || relay.state === "confirmed";
  }

  #recentFaults(relay: Relay, now: number): number {
    const since = now - this.config.failureWindowMs;
    while (relay.faults.length > 0 && relay.faults[0] < since) relay.faults.shift();
    while (relay.penalties.length > 0 && relay.penalties[0] < since) relay.penalties.shift();
    return relay.faults.length;
  }

  /** 100 for a clean relay; recent faults and dropped data cost points. */
  #score(relay: Relay, now: number): number {
    const faults = this.#recentFaults(relay, now);
    return Math.max(0, 100 - 20 * faults - 50 * relay.penalties.length);
  }

  #attach(peer: Peer, relay: Relay): void {
    const slot: Slot = {
      relay: relay.hex,
      status: "none",
      connectionId: null,
      provenAt: 0,
      unackedSince: null,
      suspectAt: null,
      suspectReason: null,
      packetsIn: 0,
      packetsOut: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
    peer.slots.push(slot);
    relay.peers.add(peer.hex);
    if (relay.state === "confirmed") {
      this.#actions.push({ type: "route", relay: relay.hex, publicKey: peer.publicKey });
    }
  }

  /** Remove a slot; `why` null when the peer itself goes away. */
  #dropSlot(peer: Peer, slot: Slot, why: string | null, unroute = true): void {
    const relay = this.#relays.get(slot.relay);
    if (unroute && relay && relay.state === "confirmed") {
      // The relay client sends DISCONNECT_NOTIFICATION only for an id it was given.
      this.#actions.push({ type: "unroute", relay: relay.hex, publicKey: peer.publicKey });
    }
    relay?.peers.delete(peer.hex);
    const i = peer.slots.indexOf(slot);
    if (i >= 0) peer.slots.splice(i, 1);
    if (why !== null) this.#setSlotStatus(peer, slot, "none", this.#now, why);
  }

  /** Gone from the set, and from every peer's learned relays. */
  #forget(relay: Relay): void {
    this.#relays.delete(relay.hex);
    for (const peer of this.#peers.values()) {
      const i = peer.learned.indexOf(relay.hex);
      if (i >= 0) peer.learned.splice(i, 1);
      peer.refusedBy.delete(relay.hex);
    }
  }

  #detachRelay(relay: Relay, why: string): void {
    for (const hex of [...relay.peers]) {
      const peer = this.#peers.get(hex);
      const slot = peer?.slots.find((s) => s.relay === relay.hex);
      if (peer && slot) {
        relay.peers.delete(hex);
        peer.slots.splice(peer.slots.indexOf(slot), 1);
        this.#setSlotStatus(peer, slot, "none", this.#now, why);
      }
    }
    relay.peers.clear();
  }

  /** Relays in the order they are preferred for a new job. */
  #ranked(now: number): Relay[] {
    // A sleeping relay whose reconnect back-off still runs ranks with the waiting ones (fix,
    // see #reconcile).
    const rank = (r: Relay) =>
      r.state === "confirmed"
        ? 0
        : r.state === "connecting"
        ? 1
        : r.state === "sleeping" && now >= r.retryAt
        ? 2
        : 3;
    return [...this.#relays.values()].filter((r) => r.state !== "benched").sort((a, b) =>
      rank(a) - rank(b) || this.#score(b, now) - this.#score(a, now) ||
      (a.rttMs ?? 1e6) - (b.rttMs ?? 1e6) || a.order - b.order
    );
  }

  /**
   * Bring the relay set in line with what peers need: fill peer slots, wake needed relays,
   * reconnect after back-off, put unneeded ones to sleep, return benched ones.
   */
  #reconcile(): void {
    const now = this.#now;
    const cfg = this.config;
    for (const r of this.#relays.values()) {
      if (r.state === "benched" && now >= r.benchedUntil) {
        r.state = "sleeping";
        r.attempts = 0;
        this.#events.push({ type: "relay_state", relay: r.hex, state: "sleeping" });
      }
    }
    const ranked = this.#ranked(now);
    for (const peer of this.#peers.values()) {
      const onlineCount = peer.slots.filter((s) => s.status === "online").length;
      if (onlineCount >= cfg.recommendedRelays) continue;
      const searching = !peer.online && now - peer.offlineSince >= cfg.searchAfterMs;
      const target = searching ? cfg.maxRelaysPerPeer : cfg.recommendedRelays;
      const has = (hex: string) => peer.slots.some((s) => s.relay === hex);
      for (const hex of peer.learned) {
        if (peer.slots.length >= cfg.maxRelaysPerPeer) break;
        const r = this.#relays.get(hex);
        if (r && r.state !== "benched" && !has(hex) && !peer.refusedBy.has(hex)) {
          this.#attach(peer, r);
        }
      }
      for (const r of ranked) {
        if (peer.slots.length >= target) break;
        if (r.global && !has(r.hex) && !peer.refusedBy.has(r.hex)) this.#attach(peer, r);
      }
    }
    // Keep `keepConnected` relays live (connecting or confirmed) whatever the peers need.
    // Waiting relays count (ranked last) and a sleeping one still in back-off is not opened
    // early: otherwise a dead kept relay would be replaced and retried at once, and several
    // dead relays would reopen each other in a loop.
    const keep = new Set<string>();
    for (const r of ranked) {
      if (keep.size >= cfg.keepConnected) break;
      keep.add(r.hex);
    }
    for (const r of this.#relays.values()) {
      const needed = r.peers.size > 0 || keep.has(r.hex);
      if (r.state === "sleeping" && needed) {
        if (now >= r.retryAt) this.#open(r);
        else {
          // Needed again before its back-off ran out: wait for it (nextDeadline has it).
          r.state = "waiting";
          this.#events.push({
            type: "relay_state",
            relay: r.hex,
            state: "waiting",
            retryInMs: r.retryAt - now,
          });
        }
      } else if (r.state === "waiting") {
        if (!needed) {
          r.state = "sleeping";
          this.#events.push({ type: "relay_state", relay: r.hex, state: "sleeping" });
        } else if (now >= r.retryAt) this.#open(r);
      } else if (
        r.state === "confirmed" && !needed && now - r.confirmedAt >= cfg.idleSleepMs
      ) {
        this.#actions.push({ type: "close", relay: r.hex });
        r.state = "sleeping";
        r.inflight = 0;
        r.congested = false;
        this.#events.push({
          type: "relay_state",
          relay: r.hex,
          state: "sleeping",
          reason: "not needed",
        });
      }
    }
  }

  #open(relay: Relay): void {
    relay.state = "connecting";
    relay.inflight = 0;
    relay.congested = false;
    this.#actions.push({
      type: "open",
      relay: relay.hex,
      address: relay.address,
      ...(relay.proxy ? { proxy: relay.proxy } : {}),
    });
    this.#events.push({ type: "relay_state", relay: relay.hex, state: "connecting" });
  }
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

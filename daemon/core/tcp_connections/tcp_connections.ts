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
 * grows; relays that lose pongs repeatedly are benched ("replaced") with the reason kept
 * for status; one that drops a peer's data while another relay delivers it loses that peer,
 * and is benched when it drops for most of the peers it serves; no relay is asked for more
 * routes than it holds.
 *
 * This class is the API and the order of things (apply an input, then reconcile the relay
 * set); the rules it applies live beside it by concern, as a reader of TCP_connection.c looks
 * for them: relays.ts (one relay: health, back-off, preference), peers.ts (one peer: slots
 * and the sending relay), relay_lifecycle.ts (the relay set: wake, sleep, reconnect, bench),
 * relay_events.ts (reactions to relay workers); config.ts and types.ts hold the shapes.
 */
import type { RandomBytes } from "../common/crypto.ts";
import { fromHex, toHex } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { ProxyConfig } from "../relay_client/proxy.ts";
import { MAX_DATA_PAYLOAD, MAX_OOB_DATA } from "../tcp_common/packets.ts";
import type { RelayLinkEvent, RelaySendItem } from "../relay_client/relay_link.ts";
import { DEFAULT_TCP_CONNECTIONS_CONFIG, type TcpConnectionsConfig } from "./config.ts";
import {
  type AddRelayResult,
  type PeerView,
  type RelayAction,
  type RelayView,
  type SendOutcome,
  shortKey,
  type TcpConnectionsEvent,
} from "./types.ts";
import { canSend, hasWorker, newRelay, type Relay, score } from "./relays.ts";
import { checkDelivery, chooseSender, isProven, newPeer } from "./peers.ts";
import type { TcpConnectionsState } from "./state.ts";
import {
  detachRelay,
  dropSlot,
  forget,
  prove,
  reconcile,
  relayDown,
  relayStateChanged,
  settleTimers,
} from "./relay_lifecycle.ts";
import { DeadlineHeap } from "../common/deadline_heap.ts";
import { onRelayEvent } from "./relay_events.ts";

export interface TcpConnectionsOptions {
  readonly now: number;
  readonly random: RandomBytes;
  /** With a proxy every relay is reached through it, never directly. */
  readonly proxy?: ProxyConfig;
  readonly config?: Partial<TcpConnectionsConfig>;
}

export class TcpConnections {
  readonly config: TcpConnectionsConfig;
  readonly #proxy: ProxyConfig | undefined;
  readonly #state: TcpConnectionsState;
  #sends = new Map<string, RelaySendItem[]>();
  #order = 0;
  #nextStatsAt: number;
  #onionTurn = 0;

  constructor(opts: TcpConnectionsOptions) {
    this.config = { ...DEFAULT_TCP_CONNECTIONS_CONFIG, ...opts.config };
    this.#proxy = opts.proxy;
    this.#state = {
      config: this.config,
      random: opts.random,
      relays: new Map(),
      peers: new Map(),
      actions: [],
      events: [],
      now: opts.now,
      dirty: new Set(),
      allDirty: false,
      retime: new Set(),
      timers: new DeadlineHeap(),
    };
    this.#nextStatsAt = opts.now + this.config.statsIntervalMs;
  }

  // ---- outputs -----------------------------------------------------------------------------

  /** Actions for the shell, in order; sends batched per relay after the rest. */
  takeActions(): RelayAction[] {
    const out = this.#state.actions;
    this.#state.actions = [];
    for (const [relay, items] of this.#sends) out.push({ type: "send", relay, items });
    this.#sends.clear();
    return out;
  }

  takeEvents(): TcpConnectionsEvent[] {
    const out = this.#state.events;
    this.#state.events = [];
    return out;
  }

  /** When `tick` must run next (ms, same clock as `now`). */
  nextDeadline(): number {
    let at = this.#nextStatsAt;
    // Idle-sleep and search times in the past have been acted on by the last reconcile (or
    // do not apply: a kept relay, a peer already searching); reporting them would make a
    // shell that ticks at nextDeadline() spin.
    const now = this.#state.now;
    for (const r of this.#state.relays.values()) {
      if (r.state === "waiting") at = Math.min(at, r.retryAt);
      if (r.state === "benched") at = Math.min(at, r.benchedUntil);
      if (r.state === "confirmed" && r.peers.size === 0) {
        const idleAt = r.confirmedAt + this.config.idleSleepMs;
        if (idleAt > now) at = Math.min(at, idleAt);
      }
    }
    // Peers from their heap (peerDeadline), not a walk of every peer.
    settleTimers(this.#state);
    return Math.min(at, this.#state.timers.peek()?.deadline ?? Infinity);
  }

  // ---- commands ----------------------------------------------------------------------------

  /**
   * add_tcp_relay_global: a relay of the user's, kept (asleep when unneeded) until removed.
   * `proxy` reaches this relay through another proxy than the default one; there is no way
   * to reach a relay directly when a default proxy is set.
   */
  addRelay(address: RelayAddress, now: number, proxy?: ProxyConfig): AddRelayResult {
    this.#state.now = now;
    const r = this.#ensureRelay(address, proxy);
    if (!r.ok) return r;
    const relay = this.#state.relays.get(r.relay)!;
    relay.global = true;
    this.#state.allDirty = true;
    reconcile(this.#state);
    return r;
  }

  removeRelay(relayHex: string, now: number): boolean {
    this.#state.now = now;
    const relay = this.#state.relays.get(relayHex.toLowerCase());
    if (!relay) return false;
    detachRelay(this.#state, relay, "relay removed");
    if (hasWorker(relay)) this.#state.actions.push({ type: "close", relay: relay.hex });
    forget(this.#state, relay);
    relayStateChanged(this.#state, {
      relay: relay.hex,
      state: "removed",
      reason: "removed",
    });
    reconcile(this.#state);
    return true;
  }

  /** new_tcp_connection_to: a peer by its DHT public key. */
  addPeer(publicKey: Uint8Array, now: number): boolean {
    this.#state.now = now;
    // A key of another length would reach relays in ROUTING requests.
    if (publicKey.length !== 32) return false;
    const hex = toHex(publicKey);
    if (this.#state.peers.has(hex)) return false;
    const peer = newPeer(publicKey, hex, now, this.config.deliveryFeedback);
    this.#state.peers.set(hex, peer);
    this.#state.dirty.add(peer);
    reconcile(this.#state);
    return true;
  }

  /** kill_tcp_connection_to: unroute it everywhere it was routed. */
  removePeer(publicKey: Uint8Array | string, now: number): boolean {
    this.#state.now = now;
    const hex = typeof publicKey === "string" ? publicKey.toLowerCase() : toHex(publicKey);
    const peer = this.#state.peers.get(hex);
    if (!peer) return false;
    for (const s of [...peer.slots]) dropSlot(this.#state, peer, s, null);
    this.#state.peers.delete(hex);
    this.#state.dirty.delete(peer);
    this.#state.retime.add(peer);
    reconcile(this.#state);
    return true;
  }

  /**
   * add_tcp_relay_connection: the peer is reachable through this relay (a hint, a shared
   * relay). Learned relays are tried before global ones for this peer.
   */
  addPeerRelay(publicKey: Uint8Array, address: RelayAddress, now: number): AddRelayResult {
    this.#state.now = now;
    const peer = this.#state.peers.get(toHex(publicKey));
    if (!peer) return { ok: false, message: "unknown peer" };
    const r = this.#ensureRelay(address);
    if (!r.ok) return r;
    if (!peer.learned.includes(r.relay)) {
      peer.learned.push(r.relay);
      // FRIEND_MAX_STORED_TCP_RELAYS: remember the newest 24.
      if (peer.learned.length > 24) peer.learned.shift();
    }
    this.#state.dirty.add(peer);
    reconcile(this.#state);
    return r;
  }

  /**
   * The layer above saw the peer acknowledge what we sent (net_crypto's packet numbers
   * moved). This is the evidence that the sending relay delivers; from the first call on,
   * a sending relay that goes without it is suspected.
   */
  delivered(publicKey: Uint8Array | string, now: number): void {
    this.#state.now = now;
    const peer = this.#state.peers.get(
      typeof publicKey === "string" ? publicKey.toLowerCase() : toHex(publicKey),
    );
    if (!peer) return;
    peer.feedback = true;
    const attributable = now - peer.senderSince >= this.config.attributionMs;
    for (const s of peer.slots) {
      if (s.unackedSince !== null && s.relay === peer.sender && attributable) {
        prove(this.#state, peer, s, now);
      }
      s.unackedSince = null;
    }
    this.#state.dirty.add(peer);
    reconcile(this.#state);
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
    this.#state.now = now;
    const hex = typeof publicKey === "string" ? publicKey.toLowerCase() : toHex(publicKey);
    const peer = this.#state.peers.get(hex);
    if (!peer) return { ok: false, reason: "unknown_peer", message: `no peer ${shortKey(hex)}` };
    if (data.length === 0 || data.length > MAX_DATA_PAYLOAD) {
      return {
        ok: false,
        reason: "invalid",
        message: `data of ${data.length} bytes (1..${MAX_DATA_PAYLOAD})`,
      };
    }
    const slot = chooseSender(this.#state, peer, now);
    if (slot !== null) {
      const relay = this.#state.relays.get(slot.relay)!;
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
      if (peer.feedback && expectsAck && slot.unackedSince === null) {
        slot.unackedSince = now;
        this.#state.retime.add(peer);
      }
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
        const relay = this.#state.relays.get(s.relay)!;
        if (!canSend(this.config, relay)) continue;
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
    this.#state.now = now;
    const relay = this.#state.relays.get(relayHex.toLowerCase());
    if (!relay || relay.state !== "confirmed") {
      return { ok: false, reason: "not_connected", message: "relay not connected" };
    }
    if (data.length === 0 || data.length > MAX_OOB_DATA || publicKey.length !== 32) {
      return { ok: false, reason: "invalid", message: `OOB of ${data.length} bytes` };
    }
    if (!canSend(this.config, relay)) {
      return { ok: false, reason: "congested", message: "relay full" };
    }
    this.#queueSend(relay, { kind: "oob", publicKey: publicKey.slice(), data });
    return { ok: true, via: "oob", relays: [relay.hex] };
  }

  /** Whether sendOnion(…, relayHex) would be taken now. */
  canSendOnion(relayHex: string): boolean {
    const relay = this.#state.relays.get(relayHex.toLowerCase());
    return relay !== undefined && canSend(this.config, relay);
  }

  /** tcp_send_onion_request: through a connected relay (we have no UDP), in turn. */
  sendOnion(data: Uint8Array, now: number, relayHex?: string): SendOutcome {
    this.#state.now = now;
    const candidates = relayHex !== undefined
      ? [this.#state.relays.get(relayHex.toLowerCase())].filter((r): r is Relay => r !== undefined)
      : [...this.#state.relays.values()];
    const usable = candidates.filter((r) => r.state === "confirmed" && canSend(this.config, r));
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
    this.#state.now = now;
    const relay = this.#state.relays.get(relayHex.toLowerCase());
    if (!relay) return;
    // A closing relay client reports every ONLINE route as offline before `closed`; the
    // close says why, so those offlines are left to it.
    const closing = events.some((e) => e.type === "closed" || e.type === "crashed");
    for (const e of events) {
      if (closing && e.type === "offline") continue;
      onRelayEvent(this.#state, relay, e, now);
    }
    reconcile(this.#state);
  }

  tick(now: number): void {
    this.#state.now = now;
    if (now >= this.#nextStatsAt) {
      this.#nextStatsAt = now + this.config.statsIntervalMs;
      for (const r of this.#state.relays.values()) {
        if (r.state === "confirmed") this.#state.actions.push({ type: "stats", relay: r.hex });
      }
    }
    const timers = this.#state.timers;
    settleTimers(this.#state);
    for (let p = timers.peek(); p !== undefined && p.deadline <= now; p = timers.peek()) {
      timers.set(p, Infinity); // back at its new deadline when settled
      checkDelivery(this.#state, p, now);
      this.#state.dirty.add(p);
      this.#state.retime.add(p); // even if reconcile's rounds end before it is looked at
    }
    reconcile(this.#state);
  }

  /**
   * The machine slept `sleptMs` (the owner saw the wall clock run ahead of the monotonic
   * one). Back-offs counted before the sleep are void: every relay that is wanted is tried
   * now, and after a long sleep the sessions from before it are reopened rather than found
   * dead by pings minutes later.
   */
  wake(now: number, sleptMs: number): void {
    this.#state.now = now;
    for (const r of this.#state.relays.values()) {
      if (r.state === "waiting" || r.state === "sleeping") {
        r.retryAt = now;
        r.attempts = 0;
      } else if (r.state === "confirmed" && sleptMs >= this.config.wakeReopenAfterMs) {
        this.#state.actions.push({ type: "close", relay: r.hex });
        relayDown(
          this.#state,
          r,
          `reopened after ${Math.round(sleptMs / 1000)} s asleep`,
          "network",
          now,
        );
        r.retryAt = now;
        r.attempts = 0;
      }
    }
    reconcile(this.#state);
  }

  // ---- status ------------------------------------------------------------------------------

  relays(now: number = this.#state.now): RelayView[] {
    return [...this.#state.relays.values()].sort((a, b) => a.order - b.order).map((r) => {
      let routed = 0, online = 0;
      for (const hex of r.peers) {
        const s = this.#state.peers.get(hex)?.slots.find((s) => s.relay === r.hex);
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
        score: score(this.config, r, now),
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

  peers(now: number = this.#state.now): PeerView[] {
    return [...this.#state.peers.values()].map((p) => ({
      publicKey: p.hex,
      online: p.online,
      sender: p.sender,
      slots: p.slots.map((s) => ({
        relay: s.relay,
        status: s.status,
        connectionId: s.connectionId,
        sending: s.relay === p.sender,
        proven: isProven(this.config, s, now),
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

  // ---- internals ---------------------------------------------------------------------------

  #queueSend(relay: Relay, item: RelaySendItem): void {
    relay.inflight++;
    relay.packetsOut++;
    relay.bytesOut += item.data.length;
    let batch = this.#sends.get(relay.hex);
    if (!batch) this.#sends.set(relay.hex, batch = []);
    batch.push(item);
  }

  #ensureRelay(address: RelayAddress, proxy?: ProxyConfig): AddRelayResult {
    let pk: Uint8Array;
    try {
      pk = fromHex(address.publicKey, 32);
    } catch (e) {
      return { ok: false, message: `relay public key: ${(e as Error).message}` };
    }
    const hex = toHex(pk);
    if (this.#state.relays.has(hex)) return { ok: true, relay: hex, added: false };
    this.#state.relays.set(
      hex,
      newRelay(
        hex,
        pk,
        { host: address.host, port: address.port, publicKey: hex },
        proxy ?? this.#proxy,
        this.#order++,
      ),
    );
    return { ok: true, relay: hex, added: true };
  }
}

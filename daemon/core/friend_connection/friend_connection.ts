/**
 * friend_connection (c-toxcore 0.2.18 friend_connection.c), sans-I/O: one record per friend
 * (by real public key) that keeps a net_crypto session to it alive over TCP_connections.
 *
 * - A DHT key (from the onion, a handshake or a hint) and relays make a session: dial,
 *   and re-dial whenever it dies while the key is fresh.
 * - ALIVE (16) goes out at once when the session is up and every 8 s after; 32 s without one
 *   from the friend kills the session. Only ALIVE refreshes that timer, as in c-toxcore.
 * - SHARE_RELAYS (17): up to 3 of our connected relays, right after coming up and every
 *   120 s (0.2.18; older documents say 5 min). Relays the friend shares are used for it.
 * - A DHT key learned from the network (the onion's DHT-PK, a handshake) is forgotten 122 s
 *   after it was last confirmed while the friend is not connected; the onion keeps telling
 *   us the current one. A key the user gave as a hint is kept; a DHT-PK or a handshake under
 *   another key replaces it (the friend restarted: c-toxcore makes a DHT key per start).
 * - Progress per friend names the stage it is stuck in, so "why offline" has an answer.
 */
import type { NetCryptoKeys } from "../net_crypto/connection.ts";
import { bytesEqual, toHex } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { TcpConnections } from "../tcp_connections/tcp_connections.ts";
import type { PeerView } from "../tcp_connections/types.ts";
import {
  NetCrypto,
  type NetCryptoEvent,
  type NetCryptoStats,
  type PacketSource,
} from "../net_crypto/net_crypto.ts";
import type {
  CryptoConnectionConfig,
  CryptoConnectionView,
  KillCause,
  LosslessResult,
} from "../net_crypto/connection.ts";
import type { KeyPair, RandomBytes } from "../common/crypto.ts";
import { packedNodeToRelay, relayToPackedNode } from "../common/packed_node.ts";
import {
  decodeFriendPacket,
  encodeFriendPacket,
  MAX_SHARED_RELAYS,
  PACKET_ID_SHARE_RELAYS,
} from "./friend_packets.ts";

// The ids live in the one codec (friend_packets.ts); importers of them from here keep working.
export {
  PACKET_ID_ALIVE,
  PACKET_ID_FRIEND_REQUESTS,
  PACKET_ID_SHARE_RELAYS,
} from "./friend_packets.ts";

export interface FriendConnectionConfig {
  /** FRIEND_PING_INTERVAL. */
  readonly pingIntervalMs: number;
  /** FRIEND_CONNECTION_TIMEOUT. */
  readonly connectionTimeoutMs: number;
  /** SHARE_RELAYS_INTERVAL (0.2.18: 120 s). */
  readonly shareRelaysIntervalMs: number;
  /** FRIEND_DHT_TIMEOUT (BAD_NODE_TIMEOUT). */
  readonly dhtTimeoutMs: number;
  /** MAX_SHARED_RELAYS. */
  readonly maxSharedRelays: number;
  /** FRIEND_MAX_STORED_TCP_RELAYS. */
  readonly maxStoredRelays: number;
  /** Pause before dialling again after a session died. */
  readonly redialMs: number;
  readonly crypto: Partial<CryptoConnectionConfig>;
}

export const DEFAULT_FRIEND_CONNECTION_CONFIG: FriendConnectionConfig = {
  pingIntervalMs: 8_000,
  connectionTimeoutMs: 32_000,
  shareRelaysIntervalMs: 120_000,
  dhtTimeoutMs: 122_000,
  maxSharedRelays: MAX_SHARED_RELAYS,
  maxStoredRelays: 24,
  redialMs: 1_000,
  crypto: {},
};

/** The connection stages (seed ToxProgress names; AcquiringIPAddress is UDP-only). */
export type FriendProgress =
  | "awaiting_dht_key"
  | "acquiring_cookie"
  | "awaiting_handshake"
  | "awaiting_session_packet"
  | "connected";

export type DhtKeySource = "hint" | "handshake" | "onion";

export type FriendConnectionEvent =
  | {
    readonly type: "friend_progress";
    readonly friend: string;
    readonly progress: FriendProgress;
  }
  | { readonly type: "friend_connected"; readonly friend: string }
  | {
    readonly type: "friend_disconnected";
    readonly friend: string;
    readonly cause: KillCause;
    readonly reason: string;
  }
  /** A packet friend_connection does not handle itself (Messenger's). */
  | {
    readonly type: "friend_packet";
    readonly friend: string;
    readonly payload: Uint8Array;
    readonly lossy: boolean;
  }
  | { readonly type: "friend_acked"; readonly friend: string; readonly bufferStart: number }
  | { readonly type: "friend_send_ready"; readonly friend: string }
  | {
    readonly type: "friend_dht_key";
    readonly friend: string;
    readonly dhtPublicKey: string | null;
    readonly source: DhtKeySource | "expired";
  }
  | { readonly type: "friend_relays"; readonly friend: string; readonly relays: string[] }
  | { readonly type: "handshake_refused"; readonly peer: string; readonly reason: string };

export interface FriendView {
  readonly publicKey: string;
  readonly progress: FriendProgress;
  readonly connected: boolean;
  readonly dhtPublicKey: string | null;
  readonly dhtKeySource: DhtKeySource | null;
  readonly relays: readonly string[];
  readonly crypto: CryptoConnectionView | null;
  /** The TCP path: relays, route status and the sending relay for the friend's DHT key. */
  readonly path: PeerView | null;
  readonly lastAliveAgoMs: number | null;
  readonly connectedForMs: number | null;
  readonly sessions: number;
  readonly lastDisconnect: string | null;
}

interface Friend {
  readonly publicKey: Uint8Array;
  readonly hex: string;
  dhtPublicKey: Uint8Array | null;
  dhtSource: DhtKeySource | null;
  dhtLastRecv: number;
  relays: RelayAddress[];
  connected: boolean;
  connectedAt: number;
  progress: FriendProgress;
  pingLastSent: number;
  pingLastRecv: number;
  shareLastSent: number;
  redialAt: number;
  sessions: number;
  lastDisconnect: string | null;
}

export interface FriendConnectionsOptions {
  readonly now: number;
  readonly random: RandomBytes;
  readonly realKeys: KeyPair;
  readonly dhtKeys: KeyPair;
  readonly tcp: TcpConnections;
  readonly config?: Partial<FriendConnectionConfig>;
  /** The opt-in key log (NetCryptoOptions.keylog). */
  readonly keylog?: (keys: NetCryptoKeys) => void;
}

export type FriendResult = { readonly ok: true } | {
  readonly ok: false;
  readonly message: string;
};

export class FriendConnections {
  readonly config: FriendConnectionConfig;
  readonly #tcp: TcpConnections;
  readonly #crypto: NetCrypto;
  readonly #friends = new Map<string, Friend>();
  /** Which friend a DHT key (a TCP_connections peer) belongs to. */
  readonly #byDht = new Map<string, string>();
  #events: FriendConnectionEvent[] = [];
  #now: number;

  constructor(opts: FriendConnectionsOptions) {
    this.config = { ...DEFAULT_FRIEND_CONNECTION_CONFIG, ...opts.config };
    this.#tcp = opts.tcp;
    this.#now = opts.now;
    const tcp = opts.tcp;
    this.#crypto = new NetCrypto({
      realKeys: opts.realKeys,
      dhtKeys: opts.dhtKeys,
      random: opts.random,
      config: this.config.crypto,
      transport: {
        sendData: (pk, packet, expectsAck) => {
          const r = tcp.sendData(pk, packet, this.#now, expectsAck);
          if (r.ok) return "sent";
          return r.reason === "congested" ? "congested" : "unreachable";
        },
        sendOob: (relay, pk, packet) => tcp.sendOob(relay, pk, packet, this.#now).ok,
        delivered: (pk) => tcp.delivered(pk, this.#now),
      },
      accept: (peer, dhtPk, source) => this.#accept(peer, dhtPk, source),
      keylog: opts.keylog,
    }, opts.now);
  }

  takeEvents(): FriendConnectionEvent[] {
    this.#pump();
    const e = this.#events;
    this.#events = [];
    return e;
  }

  /** new_friend_connection. Without a DHT key the friend waits in awaiting_dht_key. */
  add(publicKey: Uint8Array, now: number): FriendResult {
    this.#now = now;
    if (publicKey.length !== 32) return { ok: false, message: "public key must be 32 bytes" };
    if (bytesEqual(publicKey, this.#crypto.realPublicKey)) {
      return { ok: false, message: "that is our own key" };
    }
    const hex = toHex(publicKey);
    if (this.#friends.has(hex)) return { ok: true };
    this.#friends.set(hex, {
      publicKey: publicKey.slice(),
      hex,
      dhtPublicKey: null,
      dhtSource: null,
      dhtLastRecv: now,
      relays: [],
      connected: false,
      connectedAt: 0,
      progress: "awaiting_dht_key",
      pingLastSent: -Infinity,
      pingLastRecv: now,
      shareLastSent: -Infinity,
      redialAt: now,
      sessions: 0,
      lastDisconnect: null,
    });
    this.#emit({ type: "friend_progress", friend: hex, progress: "awaiting_dht_key" });
    return { ok: true };
  }

  remove(friend: string, now: number): boolean {
    this.#now = now;
    const f = this.#friends.get(friend);
    if (!f) return false;
    this.#crypto.kill(friend, now, "local", "friend removed");
    this.#pump();
    this.#friends.delete(friend);
    this.#dropDht(f);
    return true;
  }

  /** kill_messenger: every session ends with a KILL packet, so friends see us go at once. */
  shutdown(now: number): void {
    this.#now = now;
    for (const hex of this.#friends.keys()) this.#crypto.kill(hex, now, "local", "shutting down");
    this.#pump();
  }

  /**
   * What the onion's DHT-PK announcement (or a hint) tells us: the friend's DHT key and
   * relays it uses.
   */
  learn(
    friend: string,
    dhtPublicKey: Uint8Array | null,
    relays: readonly RelayAddress[],
    source: DhtKeySource,
    now: number,
  ): FriendResult {
    this.#now = now;
    const f = this.#friends.get(friend);
    if (!f) return { ok: false, message: "not a friend" };
    if (dhtPublicKey !== null && dhtPublicKey.length !== 32) {
      return { ok: false, message: "DHT public key must be 32 bytes" };
    }
    for (const r of relays) this.#storeRelay(f, r);
    if (dhtPublicKey !== null) this.#setDhtKey(f, dhtPublicKey, source, now);
    for (const r of relays) this.#attachRelay(f, r);
    this.#pump();
    return { ok: true };
  }

  sendLossless(friend: string, payload: Uint8Array, now: number, urgent = false): LosslessResult {
    this.#now = now;
    const c = this.#crypto.connection(friend);
    const r = c
      ? c.sendLossless(payload, now, urgent)
      : { ok: false as const, reason: "not_established" as const, message: "no session" };
    this.#pump();
    return r;
  }

  sendLossy(friend: string, payload: Uint8Array, now: number): boolean {
    this.#now = now;
    const ok = this.#crypto.connection(friend)?.sendLossy(payload, now) ?? false;
    this.#pump();
    return ok;
  }

  /** Hold (or resume) lossless delivery on every session: see CryptoConnection.holdDelivery. */
  holdDelivery(held: boolean, now: number): void {
    this.#now = now;
    this.#crypto.holdDelivery(held, now);
    this.#pump();
  }

  /** Counters of net_crypto's stateless side (cookies, incoming handshakes, strays). */
  netCryptoStats(): NetCryptoStats {
    return this.#crypto.stats();
  }

  /** Relay-side input: a TCP_connections data/oob event. False when it is not ours. */
  packet(dhtHex: string, data: Uint8Array, source: PacketSource, now: number): boolean {
    this.#now = now;
    const handled = this.#crypto.handlePacket(dhtHex, data, source, now);
    this.#pump();
    return handled;
  }

  pathUp(dhtHex: string, now: number): void {
    this.#now = now;
    this.#crypto.pathUp(dhtHex, now);
    this.#pump();
  }

  writable(dhtHex: string, now: number): void {
    this.#now = now;
    this.#crypto.writable(dhtHex, now);
    this.#pump();
  }

  /** do_friend_connections. */
  tick(now: number): void {
    this.#now = now;
    this.#crypto.tick(now);
    this.#pump();
    const cfg = this.config;
    for (const f of [...this.#friends.values()]) {
      if (f.connected) {
        if (now - f.pingLastRecv > cfg.connectionTimeoutMs) {
          this.#crypto.kill(
            f.hex,
            now,
            "alive_timeout",
            `no ALIVE for ${Math.round((now - f.pingLastRecv) / 1000)} s`,
          );
          this.#pump();
          continue;
        }
        if (now - f.pingLastSent >= cfg.pingIntervalMs) this.#sendAlive(f, now);
        if (now - f.shareLastSent >= cfg.shareRelaysIntervalMs) this.#shareRelays(f, now);
        continue;
      }
      if (
        f.dhtPublicKey !== null && f.dhtSource !== "hint" &&
        now - f.dhtLastRecv > cfg.dhtTimeoutMs && !this.#crypto.connection(f.hex)
      ) {
        this.#dropDht(f);
        f.dhtPublicKey = null;
        f.dhtSource = null;
        this.#emit({
          type: "friend_dht_key",
          friend: f.hex,
          dhtPublicKey: null,
          source: "expired",
        });
        this.#setProgress(f, "awaiting_dht_key");
        continue;
      }
      if (f.dhtPublicKey !== null && !this.#crypto.connection(f.hex) && now >= f.redialAt) {
        this.#dial(f, now);
      }
    }
    this.#pump();
  }

  nextDeadline(): number {
    let d = this.#crypto.nextDeadline();
    const cfg = this.config;
    for (const f of this.#friends.values()) {
      if (f.connected) {
        d = Math.min(
          d,
          f.pingLastRecv + cfg.connectionTimeoutMs + 1,
          f.pingLastSent + cfg.pingIntervalMs,
          f.shareLastSent + cfg.shareRelaysIntervalMs,
        );
      } else if (f.dhtPublicKey !== null) {
        if (!this.#crypto.connection(f.hex)) d = Math.min(d, f.redialAt);
        if (f.dhtSource !== "hint") d = Math.min(d, f.dhtLastRecv + cfg.dhtTimeoutMs + 1);
      }
    }
    return d;
  }

  views(now: number = this.#now): FriendView[] {
    const paths = new Map(this.#tcp.peers(now).map((p) => [p.publicKey, p]));
    return [...this.#friends.values()].map((f) => {
      const c = this.#crypto.connection(f.hex);
      const dhtHex = f.dhtPublicKey ? toHex(f.dhtPublicKey) : null;
      return {
        publicKey: f.hex,
        progress: f.progress,
        connected: f.connected,
        dhtPublicKey: dhtHex,
        dhtKeySource: f.dhtSource,
        relays: f.relays.map((r) => r.publicKey),
        crypto: c ? c.view() : null,
        path: dhtHex ? paths.get(dhtHex) ?? null : null,
        lastAliveAgoMs: f.connected ? Math.round(now - f.pingLastRecv) : null,
        connectedForMs: f.connected ? Math.round(now - f.connectedAt) : null,
        sessions: f.sessions,
        lastDisconnect: f.lastDisconnect,
      };
    });
  }

  // ---- internals --------------------------------------------------------------------------

  #emit(e: FriendConnectionEvent): void {
    this.#events.push(e);
  }

  #setProgress(f: Friend, progress: FriendProgress): void {
    if (f.progress === progress) return;
    f.progress = progress;
    this.#emit({ type: "friend_progress", friend: f.hex, progress });
  }

  /** Turn net_crypto's events into friend_connection's. */
  #pump(): void {
    for (const e of this.#crypto.takeEvents()) this.#onCrypto(e);
  }

  #onCrypto(e: NetCryptoEvent): void {
    const f = "peer" in e ? this.#friends.get(e.peer) : undefined;
    if (e.type === "handshake_refused") {
      this.#emit(e);
      return;
    }
    if (!f) return;
    const now = this.#now;
    switch (e.type) {
      case "crypto_state":
        switch (e.state) {
          case "cookie_requesting":
            return this.#setProgress(f, "acquiring_cookie");
          case "handshake_sent":
            return this.#setProgress(f, "awaiting_handshake");
          case "not_confirmed":
            return this.#setProgress(f, "awaiting_session_packet");
          default:
            return;
        }
      case "established":
        // handle_status(true): the ALIVE clock starts now; ALIVE and relays go out at once.
        f.connected = true;
        f.connectedAt = now;
        f.sessions++;
        f.pingLastRecv = now;
        f.pingLastSent = -Infinity;
        f.shareLastSent = -Infinity;
        this.#setProgress(f, "connected");
        this.#emit({ type: "friend_connected", friend: f.hex });
        this.#sendAlive(f, now);
        this.#shareRelays(f, now);
        return;
      case "killed": {
        const was = f.connected;
        f.connected = false;
        f.lastDisconnect = `${e.cause}: ${e.reason}`;
        // A friend that was online gets a fresh 122 s to be found again.
        if (was) f.dhtLastRecv = now;
        f.redialAt = e.cause === "peer" || e.cause === "local" ? now : now + this.config.redialMs;
        this.#setProgress(f, f.dhtPublicKey ? "acquiring_cookie" : "awaiting_dht_key");
        if (was) {
          this.#emit({
            type: "friend_disconnected",
            friend: f.hex,
            cause: e.cause,
            reason: e.reason,
          });
        }
        return;
      }
      case "lossless":
        return this.#onLossless(f, e.payload, now);
      case "lossy":
        this.#emit({ type: "friend_packet", friend: f.hex, payload: e.payload, lossy: true });
        return;
      case "acked":
        this.#emit({ type: "friend_acked", friend: f.hex, bufferStart: e.bufferStart });
        return;
      case "send_ready":
        this.#emit({ type: "friend_send_ready", friend: f.hex });
        return;
      case "dht_key_seen":
        // The friend restarted (new DHT key): kill and dial anew (dht_pk_callback).
        this.#setDhtKey(f, e.dhtPublicKey, "handshake", now);
        return;
    }
  }

  #onLossless(f: Friend, payload: Uint8Array, now: number): void {
    const r = decodeFriendPacket(payload, { maxSharedRelays: this.config.maxSharedRelays });
    if (!r.ok) {
      // A SHARE_RELAYS whose nodes do not unpack is dropped; anything else the codec refuses
      // is Messenger's to judge (and to ignore).
      if (payload[0] === PACKET_ID_SHARE_RELAYS) return;
      this.#emit({ type: "friend_packet", friend: f.hex, payload, lossy: false });
      return;
    }
    const p = r.value;
    switch (p.kind) {
      case "alive":
        f.pingLastRecv = now;
        return;
      case "share_relays": {
        const learned: string[] = [];
        for (const node of p.nodes) {
          // friend_add_tcp_relay's local-address rule swaps a loopback relay run by the friend
          // itself for the friend's DHT address; a TCP-only client never learns that address,
          // so (as c-toxcore does when it has none) the relay is kept as given.
          const relay = packedNodeToRelay(node);
          this.#storeRelay(f, relay);
          this.#attachRelay(f, relay);
          learned.push(relay.publicKey);
        }
        if (learned.length > 0) {
          this.#emit({ type: "friend_relays", friend: f.hex, relays: learned });
        }
        return;
      }
      case "friend_requests":
        return; // a request from someone already a friend: nothing to do
      default:
        this.#emit({ type: "friend_packet", friend: f.hex, payload, lossy: false });
    }
  }

  #sendAlive(f: Friend, now: number): void {
    const r = this.#crypto.connection(f.hex)?.sendLossless(
      encodeFriendPacket({ kind: "alive" }),
      now,
      true,
    );
    // A full send array: try again shortly rather than at once (and never spin).
    f.pingLastSent = r?.ok ? now : now - this.config.pingIntervalMs + 100;
  }

  /** send_relays: up to 3 connected relays, made ours for this friend first. */
  #shareRelays(f: Friend, now: number): void {
    f.shareLastSent = now;
    const max = this.config.maxSharedRelays;
    const connected = this.#tcp.relays(now).filter((r) => r.state === "confirmed");
    const nodes = [];
    for (const r of connected) {
      const node = relayToPackedNode({ host: r.host, port: r.port, publicKey: r.publicKey });
      if (node === null) continue;
      nodes.push({ ...node, transport: "tcp" as const });
      this.#attachRelay(f, { host: r.host, port: r.port, publicKey: r.publicKey });
      if (nodes.length >= max) break;
    }
    if (nodes.length === 0) return;
    // The loop takes at least one relay and at most ⌈max⌉ (all of them for NaN), so this limit
    // is exactly max for any sane config and the codec never throws here.
    const payload = encodeFriendPacket(
      { kind: "share_relays", nodes },
      { maxSharedRelays: Math.max(1, Math.ceil(max)) },
    );
    this.#crypto.connection(f.hex)?.sendLossless(payload, now, true);
  }

  #storeRelay(f: Friend, r: RelayAddress): void {
    const i = f.relays.findIndex((x) => x.publicKey === r.publicKey);
    if (i >= 0) f.relays.splice(i, 1);
    f.relays.push(r);
    if (f.relays.length > this.config.maxStoredRelays) f.relays.shift();
  }

  /** add_tcp_relay_peer for the friend's current DHT key. */
  #attachRelay(f: Friend, r: RelayAddress): void {
    if (f.dhtPublicKey === null) return;
    this.#tcp.addPeerRelay(f.dhtPublicKey, r, this.#now);
  }

  /** change_dht_pk (+ the kill and re-dial of dht_pk_callback). */
  #setDhtKey(f: Friend, dhtPublicKey: Uint8Array, source: DhtKeySource, now: number): void {
    f.dhtLastRecv = now;
    if (f.dhtPublicKey !== null && bytesEqual(f.dhtPublicKey, dhtPublicKey)) {
      if (source === "hint") f.dhtSource = "hint";
      return;
    }
    const had = this.#crypto.connection(f.hex);
    if (had && !bytesEqual(had.dhtPublicKey, dhtPublicKey)) {
      this.#crypto.kill(f.hex, now, "local", "the friend's DHT key changed");
      this.#pump();
    }
    this.#adoptDhtKey(f, dhtPublicKey, source, now);
    if (!this.#crypto.connection(f.hex)) this.#dial(f, now);
  }

  /** The friend's TCP_connections peer moves to the new key, with its saved relays. */
  #adoptDhtKey(f: Friend, dhtPublicKey: Uint8Array, source: DhtKeySource, now: number): void {
    this.#dropDht(f);
    f.dhtPublicKey = dhtPublicKey.slice();
    f.dhtSource = source;
    const hex = toHex(dhtPublicKey);
    this.#byDht.set(hex, f.hex);
    this.#tcp.addPeer(f.dhtPublicKey, now);
    for (const r of f.relays.slice(-6)) this.#attachRelay(f, r);
    this.#emit({ type: "friend_dht_key", friend: f.hex, dhtPublicKey: hex, source });
  }

  #dropDht(f: Friend): void {
    if (f.dhtPublicKey === null) return;
    const hex = toHex(f.dhtPublicKey);
    if (this.#byDht.get(hex) === f.hex) {
      this.#byDht.delete(hex);
      this.#tcp.removePeer(hex, this.#now);
    }
  }

  #dial(f: Friend, now: number): void {
    if (f.dhtPublicKey === null) return;
    this.#crypto.connect(f.publicKey, f.dhtPublicKey, now);
    this.#setProgress(f, "acquiring_cookie");
    this.#pump();
  }

  /** handle_new_connections: friends only; their DHT key comes from the handshake. */
  #accept(peer: string, dhtPk: Uint8Array, source: PacketSource): boolean {
    const f = this.#friends.get(peer);
    if (!f || this.#crypto.connection(peer)) return false;
    const now = this.#now;
    if (f.dhtPublicKey === null || !bytesEqual(f.dhtPublicKey, dhtPk)) {
      this.#adoptDhtKey(f, dhtPk, "handshake", now);
    }
    f.dhtLastRecv = now;
    // crypto_connection_add_source: the relay the handshake came by serves this friend.
    const relay = this.#tcp.relays(now).find((r) => r.publicKey === source.relay);
    if (relay) {
      const address = { host: relay.host, port: relay.port, publicKey: relay.publicKey };
      this.#storeRelay(f, address);
      this.#attachRelay(f, address);
    }
    return true;
  }

  /** Friend (real key hex) for a TCP_connections peer (DHT key hex). */
  friendOfDht(dhtHex: string): string | undefined {
    return this.#byDht.get(dhtHex);
  }
}

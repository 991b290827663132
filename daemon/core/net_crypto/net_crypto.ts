/**
 * net_crypto's dispatcher (c-toxcore Net_Crypto), sans-I/O: every net_crypto packet that
 * comes off a relay (routed DATA or OOB, by the sender's DHT key) enters here.
 *
 * - Cookie requests are answered statelessly, through the path they came by. By OOB the key
 *   inside must be the key the relay names as sender (tcp_oob_handle_cookie_request).
 * - Cookie responses, handshakes and data go to the session with that DHT key, whichever
 *   way they came (c-toxcore's peers send all three by OOB until their route is up).
 * - A handshake with no session is a peer dialling us: it is opened without an expected key
 *   and offered to the layer above (friend_connection accepts friends only).
 */
import type { NetCryptoKeys } from "./connection.ts";
import { fromHex, type KeyPair, precompute, type RandomBytes, toHex } from "../common/crypto.ts";
import {
  CryptoConnection,
  type CryptoConnectionConfig,
  type CryptoEvent,
  type CryptoHost,
  type KillCause,
  type TransmitResult,
} from "./connection.ts";
import {
  cookieRequestSender,
  createCookie,
  encodeCookieResponse,
  MAX_CRYPTO_PACKET_SIZE,
  NET_PACKET_COOKIE_REQUEST,
  NET_PACKET_CRYPTO_HS,
  openCookieRequest,
  openHandshake,
} from "./packets.ts";
import { bytesEqual } from "../common/crypto.ts";
import { DeadlineHeap } from "../common/deadline_heap.ts";

/** How net_crypto reaches a DHT key: TCP_connections in the daemon, a wire in tests. */
export interface NetCryptoTransport {
  /** send_packet_tcp_connection: routed if the peer is online on a relay, else OOB. */
  sendData(dhtPublicKey: Uint8Array, packet: Uint8Array, expectsAck: boolean): TransmitResult;
  /** OOB through one relay (answers to OOB cookie requests; first contact). */
  sendOob(relay: string, dhtPublicKey: Uint8Array, packet: Uint8Array): boolean;
  /** The peer acknowledged new data. */
  delivered(dhtPublicKey: Uint8Array): void;
}

/** Where a packet came from. */
export interface PacketSource {
  readonly relay: string;
  readonly oob: boolean;
}

export type NetCryptoEvent =
  | CryptoEvent
  /** A handshake from someone we have no session with, refused by the layer above. */
  | { readonly type: "handshake_refused"; readonly peer: string; readonly reason: string };

export interface NetCryptoOptions {
  readonly realKeys: KeyPair;
  readonly dhtKeys: KeyPair;
  readonly random: RandomBytes;
  readonly transport: NetCryptoTransport;
  /**
   * A peer dials us (handle_new_connections). Return true to accept; the layer above must
   * make a path to `dhtPublicKey` (the relay it came by) before returning.
   */
  readonly accept: (peer: string, dhtPublicKey: Uint8Array, source: PacketSource) => boolean;
  readonly config?: Partial<CryptoConnectionConfig>;
  /**
   * The opt-in key log: called with each new session key (never set unless the user asked
   * for `--keylog`).
   */
  readonly keylog?: (keys: NetCryptoKeys) => void;
  /** Cookie responses per second at most (each costs an X25519 for a new key). */
  readonly cookieRatePerSecond?: number;
}

export interface NetCryptoStats {
  readonly cookieRequestsAnswered: number;
  readonly cookieRequestsDropped: number;
  readonly handshakesAccepted: number;
  readonly handshakesRefused: number;
  readonly strayPackets: number;
}

/**
 * Keys kept per cache (~100 bytes each). A session is redialled after each timeout with a
 * fresh cookie request to the same DHT key, so the working set is one key per friend being
 * dialled: a cache smaller than the friend list recomputes an X25519 (~1 ms) on every redial.
 */
const SHARED_KEY_CACHE = 4_096;

/** A cache for precomputed keys: X25519 is the costly step, keys repeat a lot. */
class KeyCache {
  readonly #map = new Map<string, Uint8Array>();
  constructor(readonly secretKey: Uint8Array) {}
  get(publicKey: Uint8Array): Uint8Array {
    const hex = toHex(publicKey);
    let k = this.#map.get(hex);
    if (k === undefined) {
      k = precompute(publicKey, this.secretKey);
      if (this.#map.size >= SHARED_KEY_CACHE) {
        this.#map.delete(this.#map.keys().next().value!);
      }
      this.#map.set(hex, k);
    }
    return k;
  }
}

/** A session's place in the deadline heap. */
interface SessionTimer {
  readonly connection: CryptoConnection;
  deadline: number;
  heapIndex: number;
}

export class NetCrypto {
  readonly #opts: NetCryptoOptions;
  readonly #host: CryptoHost;
  readonly #byPeer = new Map<string, CryptoConnection>();
  readonly #byDht = new Map<string, CryptoConnection>();
  /** Relay an OOB packet from a DHT key last came by: a way back before any route exists. */
  readonly #oobRelay = new Map<string, string>();
  readonly #dhtKeys: KeyCache;
  readonly #realKeys: KeyCache;
  readonly #cookieKey: Uint8Array;
  #events: NetCryptoEvent[] = [];
  #now: number;
  #cookieWindowStart = -Infinity;
  #cookiesInWindow = 0;
  #answered = 0;
  #dropped = 0;
  #accepted = 0;
  #refused = 0;
  #stray = 0;
  #deliveryHeld = false;
  /** Sessions by next deadline; those touched since are re-read before it is used. */
  readonly #timers = new DeadlineHeap<SessionTimer>();
  readonly #timerOf = new Map<CryptoConnection, SessionTimer>();
  readonly #touched = new Set<CryptoConnection>();

  constructor(opts: NetCryptoOptions, now: number) {
    this.#opts = opts;
    this.#now = now;
    this.#cookieKey = opts.random(32);
    this.#dhtKeys = new KeyCache(opts.dhtKeys.secretKey);
    this.#realKeys = new KeyCache(opts.realKeys.secretKey);
    this.#host = {
      realKeys: opts.realKeys,
      dhtPublicKey: opts.dhtKeys.publicKey,
      cookieKey: this.#cookieKey,
      random: opts.random,
      dhtSharedKey: (pk) => this.#dhtKeys.get(pk),
      realSharedKey: (pk) => this.#realKeys.get(pk),
      transmit: (dhtPk, packet, expectsAck) => this.#transmit(dhtPk, packet, expectsAck),
      delivered: (pk) => opts.transport.delivered(pk),
      emit: (e) => this.#onEvent(e),
      touched: (c) => this.#touched.add(c),
      keylog: opts.keylog,
    };
  }

  get dhtPublicKey(): Uint8Array {
    return this.#opts.dhtKeys.publicKey;
  }

  get realPublicKey(): Uint8Array {
    return this.#opts.realKeys.publicKey;
  }

  takeEvents(): NetCryptoEvent[] {
    const e = this.#events;
    this.#events = [];
    return e;
  }

  connection(peer: string): CryptoConnection | undefined {
    return this.#byPeer.get(peer);
  }

  /** new_crypto_connection. An existing session with the peer is killed first. */
  connect(peerRealPublicKey: Uint8Array, dhtPublicKey: Uint8Array, now: number): CryptoConnection {
    this.#now = now;
    const peer = toHex(peerRealPublicKey);
    this.kill(peer, now, "local", "replaced by a new connection");
    const c = CryptoConnection.dial(
      this.#host,
      peerRealPublicKey,
      dhtPublicKey,
      now,
      this.#opts.config,
    );
    this.#add(c);
    return c;
  }

  kill(peer: string, now: number, cause: KillCause, reason: string): boolean {
    this.#now = now;
    const c = this.#byPeer.get(peer);
    if (!c) return false;
    c.kill(now, cause, reason); // its "killed" event removes it
    return true;
  }

  /**
   * One packet from a DHT key (hex: TCP_connections names peers so, and a session is found
   * by it without decoding the key on every data packet). False when it is not net_crypto's.
   */
  handlePacket(
    dhtHex: string,
    packet: Uint8Array,
    source: PacketSource,
    now: number,
  ): boolean {
    this.#now = now;
    if (packet.length === 0 || packet[0] < 0x18 || packet[0] > 0x1b) return false;
    if (packet.length > MAX_CRYPTO_PACKET_SIZE) {
      this.#stray++;
      return true;
    }
    if (source.oob) this.#oobRelay.set(dhtHex, source.relay);
    if (packet[0] === NET_PACKET_COOKIE_REQUEST) {
      this.#answerCookieRequest(fromHex(dhtHex, 32), packet, source, now);
      return true;
    }
    const c = this.#byDht.get(dhtHex);
    if (c) {
      c.handle(packet, now);
      return true;
    }
    if (packet[0] === NET_PACKET_CRYPTO_HS) {
      this.#newConnection(fromHex(dhtHex, 32), packet, source, now);
    } else this.#stray++;
    return true;
  }

  /**
   * Hold every session's lossless delivery (the daemon's program stopped reading), or resume
   * it; sessions made while held start held.
   */
  holdDelivery(held: boolean, now: number): void {
    this.#now = now;
    this.#deliveryHeld = held;
    for (const c of [...this.#byPeer.values()]) c.holdDelivery(held, now);
  }

  /** The path to a DHT key came up (route online): retry at once what found none. */
  pathUp(dhtHex: string, now: number): void {
    this.#now = now;
    this.#byDht.get(dhtHex)?.pathUp(now);
  }

  writable(dhtHex: string, now: number): void {
    this.#now = now;
    this.#byDht.get(dhtHex)?.writable(now);
  }

  /** Ticks only the sessions that are due (a heap, not a walk of every session). */
  tick(now: number): void {
    this.#now = now;
    this.#settleTimers();
    for (
      let t = this.#timers.peek();
      t !== undefined && t.deadline <= now;
      t = this.#timers.peek()
    ) {
      // Out of the heap until settled again, so a session whose tick leaves it due cannot
      // spin this loop.
      this.#timers.set(t, Infinity);
      t.connection.tick(now);
      this.#touched.add(t.connection);
    }
    this.#settleTimers();
  }

  nextDeadline(): number {
    this.#settleTimers();
    return this.#timers.peek()?.deadline ?? Infinity;
  }

  stats(): NetCryptoStats {
    return {
      cookieRequestsAnswered: this.#answered,
      cookieRequestsDropped: this.#dropped,
      handshakesAccepted: this.#accepted,
      handshakesRefused: this.#refused,
      strayPackets: this.#stray,
    };
  }

  // ---- internals --------------------------------------------------------------------------

  #add(c: CryptoConnection): void {
    if (this.#deliveryHeld) c.holdDelivery(true, this.#now);
    this.#byPeer.set(c.peer, c);
    this.#byDht.set(toHex(c.dhtPublicKey), c);
    this.#timerOf.set(c, { connection: c, deadline: Infinity, heapIndex: -1 });
    this.#touched.add(c);
  }

  /** Re-read the deadline of every session touched since the last time; drop killed ones. */
  #settleTimers(): void {
    if (this.#touched.size === 0) return;
    for (const c of this.#touched) {
      const t = this.#timerOf.get(c);
      if (t === undefined) continue;
      if (c.state === "killed") {
        this.#timers.remove(t);
        this.#timerOf.delete(c);
      } else this.#timers.set(t, c.nextDeadline());
    }
    this.#touched.clear();
  }

  #onEvent(e: CryptoEvent): void {
    if (e.type === "killed") {
      const c = this.#byPeer.get(e.peer);
      if (c && c.state === "killed") {
        this.#byPeer.delete(e.peer);
        const dhtHex = toHex(c.dhtPublicKey);
        if (this.#byDht.get(dhtHex) === c) this.#byDht.delete(dhtHex);
      }
    }
    this.#events.push(e);
  }

  #transmit(dhtPk: Uint8Array, packet: Uint8Array, expectsAck: boolean): TransmitResult {
    const t = this.#opts.transport;
    const r = t.sendData(dhtPk, packet, expectsAck);
    if (r !== "unreachable") return r;
    // No route or registration yet, but the peer reached us by OOB: answer the same way.
    const relay = this.#oobRelay.get(toHex(dhtPk));
    if (relay !== undefined && packet.length <= 1024 && t.sendOob(relay, dhtPk, packet)) {
      return "sent";
    }
    return "unreachable";
  }

  #cookieBudget(now: number): boolean {
    const rate = this.#opts.cookieRatePerSecond ?? 200;
    if (now - this.#cookieWindowStart >= 1000) {
      this.#cookieWindowStart = now;
      this.#cookiesInWindow = 0;
    }
    return this.#cookiesInWindow++ < rate;
  }

  /** handle_cookie_request: stateless; the cookie carries everything we need later. */
  #answerCookieRequest(
    fromDht: Uint8Array,
    packet: Uint8Array,
    source: PacketSource,
    now: number,
  ): void {
    const sender = cookieRequestSender(packet);
    if (!sender.ok || (source.oob && !bytesEqual(sender.value, fromDht))) {
      this.#dropped++;
      return;
    }
    if (!this.#cookieBudget(now)) {
      this.#dropped++;
      return;
    }
    let kDht: Uint8Array;
    try {
      kDht = this.#dhtKeys.get(sender.value);
    } catch {
      this.#dropped++; // a low-order key: no shared secret
      return;
    }
    const req = openCookieRequest(packet, kDht);
    if (!req.ok) {
      this.#dropped++;
      return;
    }
    const random = this.#opts.random;
    const cookie = createCookie(this.#cookieKey, {
      time: Math.floor(now / 1000),
      realPublicKey: req.value.senderRealPublicKey,
      dhtPublicKey: req.value.senderDhtPublicKey,
    }, random(24));
    const response = encodeCookieResponse(kDht, { cookie, echoId: req.value.echoId }, random(24));
    const sent = source.oob
      ? this.#opts.transport.sendOob(source.relay, fromDht, response)
      : this.#opts.transport.sendData(fromDht, response, false) === "sent";
    if (sent) this.#answered++;
    else this.#dropped++;
  }

  /** handle_new_connection_handshake. */
  #newConnection(
    fromDht: Uint8Array,
    packet: Uint8Array,
    source: PacketSource,
    now: number,
  ): void {
    const hs = openHandshake(packet, {
      cookieKey: this.#cookieKey,
      nowSeconds: Math.floor(now / 1000),
      realSecretKey: this.#opts.realKeys.secretKey,
      sharedKey: (pk) => this.#realKeys.get(pk),
    });
    if (!hs.ok) {
      this.#stray++;
      return;
    }
    const peer = toHex(hs.value.peerRealPublicKey);
    if (!bytesEqual(hs.value.peerDhtPublicKey, fromDht) && source.oob) {
      // The cookie names another DHT key than the relay does: not from whom it claims.
      this.#stray++;
      return;
    }
    const existing = this.#byPeer.get(peer);
    if (existing) {
      if (!bytesEqual(existing.dhtPublicKey, hs.value.peerDhtPublicKey)) {
        this.#events.push({
          type: "dht_key_seen",
          peer,
          dhtPublicKey: hs.value.peerDhtPublicKey,
        });
        existing.kill(now, "local", "the peer came back under a new DHT key");
      } else {
        if (!existing.adopt(hs.value, now)) this.#stray++;
        return;
      }
    }
    if (!this.#opts.accept(peer, hs.value.peerDhtPublicKey, source)) {
      this.#refused++;
      this.#events.push({ type: "handshake_refused", peer, reason: "not a friend" });
      return;
    }
    this.#accepted++;
    const c = CryptoConnection.accept(this.#host, hs.value, now, this.#opts.config);
    this.#add(c);
  }
}

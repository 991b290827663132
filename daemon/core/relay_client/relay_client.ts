/**
 * The TCP relay client of one relay connection, sans-I/O (TCP_client.c of c-toxcore 0.2.18;
 * spec/tcp.md §6-§10, spec/relay_load.md §4).
 *
 * The shell feeds it socket events (connected, bytes read, bytes written, closed) and `now`;
 * it hands back bytes to write (pollTransmit), events (takeEvents) and when to call tick()
 * again (nextDeadline). It never touches a socket or a timer.
 *
 * States follow TCP_Client_Status: connecting → (proxy) → unconfirmed → confirmed →
 * disconnected. disconnected is terminal: a new connection is a new RelayClient.
 *
 * Sending: frames are sealed when they are handed to the socket, not when queued, so a
 * priority packet (routing request, disconnect, ping, pong) queued behind data still goes
 * first, and frames always reach the socket in nonce order. Only the chunk already handed
 * to the socket (possibly half written) is ahead of it.
 */
import { concatBytes, type Fault } from "../common/codec.ts";
import { bytesEqual, type KeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import {
  completeClientHandshake,
  createClientHandshake,
  type PendingClientHandshake,
  type SecureSession,
  SERVER_HANDSHAKE_SIZE,
} from "../tcp_common/handshake.ts";
import {
  FrameReader,
  frameSize,
  newFrameScratch,
  openFrame,
  sealFrameInto,
} from "../tcp_common/framing.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  isConnectionId,
  MAX_DATA_PAYLOAD,
  MAX_OOB_DATA,
  MIN_ONION_REQUEST_PAYLOAD,
  NUM_CLIENT_CONNECTIONS,
  NUM_RESERVED_PORTS,
  PacketId,
  type RelayPacket,
} from "../tcp_common/packets.ts";
import { BurstMeter } from "./burst_meter.ts";
import { DEFAULT_PACER, frameCharge, Pacer, type PacerConfig } from "./pacer.ts";
import { type ProxyKind, ProxyNegotiation, type ProxyTarget } from "./proxy.ts";
import type { TcpSessionKeys } from "../tcp_common/handshake.ts";

export type RelayState = "connecting" | "proxy" | "unconfirmed" | "confirmed" | "disconnected";

/** Whose fault a closed connection is. */
export type CloseReason =
  | "closed_by_owner"
  | "connect_timeout"
  | "proxy_failed"
  | "handshake_failed"
  | "bad_frame"
  | "bad_mac"
  | "bad_packet"
  | "unsolicited_routing_response"
  | "ping_timeout"
  | "stalled"
  | "socket_closed"
  | "socket_error";

const FAULT_OF: Record<CloseReason, Fault> = {
  closed_by_owner: "local",
  connect_timeout: "network",
  proxy_failed: "network",
  handshake_failed: "peer",
  bad_frame: "peer",
  bad_mac: "peer",
  bad_packet: "peer",
  unsolicited_routing_response: "peer",
  ping_timeout: "peer",
  stalled: "peer",
  socket_closed: "network",
  socket_error: "network",
};

export type RelayEvent =
  | { readonly type: "confirmed"; readonly handshakeMs: number }
  | { readonly type: "routed"; readonly publicKey: Uint8Array; readonly connectionId: number }
  | { readonly type: "route_refused"; readonly publicKey: Uint8Array }
  | { readonly type: "online"; readonly publicKey: Uint8Array; readonly connectionId: number }
  | { readonly type: "offline"; readonly publicKey: Uint8Array; readonly connectionId: number }
  | {
    readonly type: "data";
    readonly publicKey: Uint8Array;
    readonly connectionId: number;
    readonly data: Uint8Array;
  }
  | { readonly type: "oob"; readonly publicKey: Uint8Array; readonly data: Uint8Array }
  | { readonly type: "onion"; readonly data: Uint8Array }
  | { readonly type: "forwarding"; readonly data: Uint8Array }
  | { readonly type: "pong"; readonly rttMs: number }
  | { readonly type: "congested"; readonly queuedBytes: number }
  | { readonly type: "drained"; readonly queuedBytes: number }
  | {
    readonly type: "closed";
    readonly reason: CloseReason;
    readonly fault: Fault;
    readonly message: string;
    /** Data-lane packets (DATA, OOB, onion) queued but never written. */
    readonly unsent: number;
  };

export type SendRefusal = "not_confirmed" | "not_online" | "queue_full" | "invalid" | "closed";
export type SendResult = { readonly ok: true } | {
  readonly ok: false;
  readonly reason: SendRefusal;
  readonly message: string;
};

export interface RelayClientConfig {
  /** TCP_CONNECTION_TIMEOUT: connect + proxy + handshake. */
  readonly connectTimeoutMs: number;
  /** TCP_PING_FREQUENCY while idle. */
  readonly pingIntervalMs: number;
  /** TCP_PING_TIMEOUT while idle. */
  readonly pingTimeoutMs: number;
  /** While data flows, probe the relay this often. */
  readonly busyPingIntervalMs: number;
  /** While data flows, no PONG (or no write progress) for this long = stalled. */
  readonly stallTimeoutMs: number;
  /** Data counts as flowing for this long after the last data frame was written. */
  readonly busyWindowMs: number;
  /** A socket write pending this long means the relay is not reading: slow down. */
  readonly writeBlockedMs: number;
  /** Data-lane bounds in bytes: congested above high, drained below low, refused above max. */
  readonly dataQueueHigh: number;
  readonly dataQueueLow: number;
  readonly dataQueueMax: number;
  /** Largest chunk handed to the socket in one write. */
  readonly maxWriteChunk: number;
  readonly pacer: PacerConfig;
}

export const DEFAULT_RELAY_CLIENT_CONFIG: RelayClientConfig = {
  connectTimeoutMs: 10_000,
  pingIntervalMs: 30_000,
  pingTimeoutMs: 10_000,
  busyPingIntervalMs: 100,
  stallTimeoutMs: 400,
  busyWindowMs: 1_000,
  writeBlockedMs: 250,
  dataQueueHigh: 256 * 1024,
  dataQueueLow: 64 * 1024,
  dataQueueMax: 1024 * 1024,
  maxWriteChunk: 64 * 1024,
  pacer: DEFAULT_PACER,
};

export interface RelayClientOptions {
  /** Our DHT key pair: a relay authenticates clients by it (spec/tcp.md §1). */
  readonly self: KeyPair;
  readonly relayPublicKey: Uint8Array;
  readonly random: RandomBytes;
  readonly now: number;
  /** When set the socket goes to the proxy, which is asked to connect to `target`. */
  readonly proxy?: { readonly kind: ProxyKind; readonly target: ProxyTarget };
  readonly config?: Partial<RelayClientConfig>;
}

export interface RelayClientStats {
  readonly state: RelayState;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly dataQueued: number;
  readonly dataQueuedBytes: number;
  readonly dataQueuedHighWater: number;
  readonly priorityQueued: number;
  readonly rttMs: number | null;
  readonly paceRate: number;
  /** The most bytes handed to the socket within any 30 ms (one relay tick). */
  readonly maxBytesPer30ms: number;
  readonly routes: number;
  readonly online: number;
  readonly droppedUnroutedData: number;
  readonly refusedSends: number;
}

interface Slot {
  readonly publicKey: Uint8Array;
  readonly hex: string;
  online: boolean;
}

/** A FIFO of plaintexts with a byte count; O(1) push and shift. */
export class PlainQueue {
  #items: (Uint8Array | undefined)[] = [];
  #head = 0;
  bytes = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(p: Uint8Array): void {
    this.#items.push(p);
    this.bytes += p.length;
  }
  peek(): Uint8Array | undefined {
    return this.#items[this.#head];
  }
  at(i: number): Uint8Array | undefined {
    return this.#items[this.#head + i];
  }
  shift(): Uint8Array | undefined {
    const p = this.#items[this.#head];
    if (p === undefined) return undefined;
    this.#items[this.#head++] = undefined;
    this.bytes -= p.length;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return p;
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

function refuse(reason: SendRefusal, message: string): SendResult {
  return { ok: false, reason, message };
}

const OK: SendResult = { ok: true };

export class RelayClient {
  readonly config: RelayClientConfig;
  readonly relayPublicKey: Uint8Array;
  readonly self: KeyPair;
  readonly #random: RandomBytes;

  #state: RelayState = "connecting";
  #createdAt: number;
  #connectedAt = 0;
  #proxy: ProxyNegotiation | null = null;
  #pendingHandshake: PendingClientHandshake | null = null;
  #session: SecureSession | null = null;
  #handshakeNonce: Uint8Array | null = null;
  #sessionKeys: TcpSessionKeys | null = null;
  #reader = new FrameReader();
  #scratchIn = newFrameScratch();
  #scratchOut = newFrameScratch();

  #events: RelayEvent[] = [];

  // Output: the chunk handed to the socket and how much of it is written.
  #out: Uint8Array | null = null;
  #outOff = 0;
  #writeStartedAt = 0;
  #writeBlockedReported = false;
  /** Raw bytes before the encrypted stream (proxy request, handshake). */
  #rawOut: Uint8Array[] = [];
  #priority = new PlainQueue();
  #data = new PlainQueue();
  #congested = false;
  #dataHighWater = 0;

  // Ping state. Only one ping is outstanding at a time, as in c-toxcore.
  #pingId = 0n;
  #pingSentAt = -Infinity;
  /** The outstanding PING went out while data flowed: it doubles as the stall probe. */
  #pingBusy = false;

  /** A late PONG is a stall: data was flowing and the relay is one that can deadlock. */
  get #pongStall(): boolean {
    return this.#pingBusy && this.config.pacer.relayMayDeadlock;
  }
  #lastPinged = -Infinity;
  /** The PONG waiting in the priority lane, if any: a new PING rewrites it (one owed). */
  #queuedPong: Uint8Array | null = null;
  #lastDataWritten = -Infinity;
  #rtt: number | null = null;
  #pacer: Pacer;
  readonly #burstMeter = new BurstMeter();

  // Routing.
  #slots: (Slot | undefined)[] = new Array(NUM_CLIENT_CONNECTIONS);
  #byKey = new Map<string, number>();
  /** Keys we sent a ROUTING_REQUEST for and have no answer yet (cancelled: unrouted since). */
  #requested = new Map<string, { publicKey: Uint8Array; cancelled: boolean }>();

  // Counters.
  #bytesIn = 0;
  #bytesOut = 0;
  #packetsIn = 0;
  #packetsOut = 0;
  #droppedUnrouted = 0;
  #dataPacketsSent = 0;
  #refusedSends = 0;

  constructor(opts: RelayClientOptions) {
    this.config = { ...DEFAULT_RELAY_CLIENT_CONFIG, ...opts.config };
    this.relayPublicKey = opts.relayPublicKey;
    this.self = opts.self;
    this.#random = opts.random;
    this.#createdAt = opts.now;
    this.#pacer = new Pacer(opts.now, this.config.pacer);
    if (opts.proxy) this.#proxy = new ProxyNegotiation(opts.proxy.kind, opts.proxy.target);
  }

  get state(): RelayState {
    return this.#state;
  }

  get isConfirmed(): boolean {
    return this.#state === "confirmed";
  }

  /**
   * What decrypts this session in a capture, copied at the handshake before any nonce moved:
   * for the opt-in key log only (nothing else reads it).
   */
  sessionKeys(): TcpSessionKeys | null {
    return this.#sessionKeys;
  }

  // ---- socket events ------------------------------------------------------------------

  /** The TCP connection (to the proxy, or to the relay) is up. */
  transportConnected(now: number): void {
    if (this.#state !== "connecting" || this.#connectedAt !== 0) return;
    this.#connectedAt = now;
    if (this.#proxy) {
      this.#state = "proxy";
      this.#rawOut.push(this.#proxy.start());
    } else {
      this.#startHandshake();
    }
  }

  /** The socket reached EOF or failed. */
  transportClosed(error?: string): void {
    if (this.#state === "disconnected") return;
    if (this.#state === "unconfirmed" && this.#rawOut.length === 0 && this.#out === null) {
      // A relay that cannot open our handshake closes without a word (TCP_server.c).
      this.#close(
        "handshake_failed",
        "the relay closed the connection in answer to our handshake: wrong relay public key?",
      );
      return;
    }
    this.#close(
      error ? "socket_error" : "socket_closed",
      error ?? "the relay closed the connection",
    );
  }

  /** Bytes read from the socket; any split, down to one byte. */
  receive(bytes: Uint8Array, now: number): void {
    if (this.#state === "disconnected" || bytes.length === 0) return;
    this.#bytesIn += bytes.length;
    if (this.#state === "proxy") {
      const progress = this.#proxy!.receive(bytes);
      switch (progress.kind) {
        case "need_more":
          return;
        case "write":
          this.#rawOut.push(progress.bytes);
          return;
        case "failed":
          this.#close("proxy_failed", `proxy: ${progress.reason}`);
          return;
        case "done":
          this.#startHandshake();
          bytes = progress.leftover;
          if (bytes.length === 0) return;
      }
    }
    if (this.#state === "connecting") {
      // Nothing may arrive before we have spoken; a relay never does this.
      this.#close("bad_frame", "bytes arrived before the handshake was sent");
      return;
    }
    this.#reader.push(bytes);
    if (this.#state === "unconfirmed") {
      const reply = this.#reader.takeRaw(SERVER_HANDSHAKE_SIZE);
      if (reply === null) return;
      const session = completeClientHandshake(this.#pendingHandshake!, reply);
      this.#pendingHandshake = null;
      if (session === null) {
        this.#close(
          "handshake_failed",
          "the relay's handshake reply did not decrypt: wrong relay public key, or not a Tox relay",
        );
        return;
      }
      this.#session = session;
      this.#sessionKeys = {
        kind: "tcp_session",
        handshakeNonce: this.#handshakeNonce!,
        relayPublicKey: this.relayPublicKey.slice(),
        sessionKey: session.sharedKey.slice(),
        clientNonce: session.sendNonce.slice(),
        relayNonce: session.recvNonce.slice(),
      };
      this.#state = "confirmed";
      this.#emit({ type: "confirmed", handshakeMs: now - this.#connectedAt });
      // A relay confirms a client on its first valid frame; c-toxcore sends a PING at once,
      // which also gives the first RTT. Routes asked for while connecting follow it.
      this.#sendPing(now);
      for (const [hex, r] of this.#requested) {
        if (r.cancelled) this.#requested.delete(hex);
        else {this.#priority.push(
            encodeRelayPacket({ kind: "routing_request", publicKey: r.publicKey }),
          );}
      }
    }
    this.#readFrames(now);
  }

  /** `n` bytes of the chunk from pollTransmit() were written. */
  written(n: number, now: number): void {
    if (this.#out === null) return;
    this.#outOff += n;
    this.#bytesOut += n;
    this.#burstMeter.add(n, now);
    if (this.#outOff >= this.#out.length) {
      this.#out = null;
      this.#outOff = 0;
      this.#writeBlockedReported = false;
    } else {
      this.#writeStartedAt = now;
    }
  }

  // ---- timers -------------------------------------------------------------------------

  tick(now: number): void {
    switch (this.#state) {
      case "disconnected":
        return;
      case "connecting":
      case "proxy":
      case "unconfirmed":
        if (now - this.#createdAt >= this.config.connectTimeoutMs) {
          this.#close(
            "connect_timeout",
            `no ${
              this.#state === "connecting"
                ? "TCP connection"
                : this.#state === "proxy"
                ? "proxy reply"
                : "handshake reply"
            } within ${this.config.connectTimeoutMs} ms`,
          );
        }
        return;
      case "confirmed":
        break;
    }
    const busy = this.#isBusy(now);
    if (this.#out !== null) {
      // A healthy relay empties its socket every ~30 ms tick and never pushes back (it drops
      // instead), so a write that cannot finish for this long means the relay stopped reading.
      const blockedFor = now - this.#writeStartedAt;
      if (blockedFor >= this.config.stallTimeoutMs) {
        this.#close("stalled", `the relay took none of our bytes for ${Math.round(blockedFor)} ms`);
        return;
      }
      if (blockedFor >= this.config.writeBlockedMs && !this.#writeBlockedReported) {
        this.#writeBlockedReported = true;
        this.#pacer.onWriteBlocked(now);
      }
    }
    if (this.#pingId !== 0n) {
      const waited = now - this.#pingSentAt;
      if (this.#pongStall && waited >= this.config.stallTimeoutMs) {
        this.#close("stalled", `no PONG for ${Math.round(waited)} ms while data was flowing`);
        return;
      }
      if (waited >= this.config.pingTimeoutMs) {
        this.#close("ping_timeout", `no PONG within ${this.config.pingTimeoutMs} ms`);
        return;
      }
    } else {
      const interval = busy ? this.config.busyPingIntervalMs : this.config.pingIntervalMs;
      if (now - this.#lastPinged >= interval) this.#sendPing(now);
    }
  }

  /** When tick() must run next (ms, same clock as `now`); Infinity when nothing is timed. */
  nextDeadline(now: number): number {
    switch (this.#state) {
      case "disconnected":
        return Infinity;
      case "connecting":
      case "proxy":
      case "unconfirmed":
        return this.#createdAt + this.config.connectTimeoutMs;
      case "confirmed":
        break;
    }
    const busy = this.#isBusy(now);
    let t: number;
    if (this.#pingId !== 0n) {
      t = this.#pingSentAt +
        (this.#pongStall ? this.config.stallTimeoutMs : this.config.pingTimeoutMs);
    } else {
      t = this.#lastPinged +
        (busy ? this.config.busyPingIntervalMs : this.config.pingIntervalMs);
    }
    if (this.#out !== null) {
      t = Math.min(
        t,
        this.#writeStartedAt +
          (this.#writeBlockedReported ? this.config.stallTimeoutMs : this.config.writeBlockedMs),
      );
    }
    if (busy) t = Math.min(t, this.#lastDataWritten + this.config.busyWindowMs);
    return t;
  }

  /** When pacing allows the next data frame out; Infinity if none waits or a write is pending. */
  nextTransmitTime(now: number): number {
    if (this.#state !== "confirmed" || this.#out !== null) return Infinity;
    if (this.#priority.length > 0) return now;
    if (this.#data.length === 0) return Infinity;
    // Wait for a write quantum's worth of tokens (or for all that is queued, if less).
    const framed = this.#data.bytes + this.#data.length * frameCharge(frameSize(0));
    return now + this.#pacer.delayFor(Math.min(framed, this.#pacer.writeQuantum), now);
  }

  // ---- output -------------------------------------------------------------------------

  /**
   * The next bytes to write, or null if nothing may be written now. Call written() with
   * what the socket took before asking again; an unfinished chunk is always returned first.
   */
  pollTransmit(now: number): Uint8Array | null {
    if (this.#out !== null) return this.#out.subarray(this.#outOff);
    if (this.#state === "disconnected") return null;
    if (this.#rawOut.length > 0) {
      const raw = this.#rawOut;
      this.#rawOut = [];
      return this.#startWrite(raw.length === 1 ? raw[0] : concatBytes(...raw), now);
    }
    if (this.#state !== "confirmed") return null;
    return this.#buildFrames(now);
  }

  #startWrite(chunk: Uint8Array, now: number): Uint8Array {
    this.#out = chunk;
    this.#outOff = 0;
    this.#writeStartedAt = now;
    return chunk;
  }

  #buildFrames(now: number): Uint8Array | null {
    const session = this.#session!;
    const max = this.config.maxWriteChunk;
    let budget = this.#data.length > 0 ? this.#pacer.available(now) : 0;
    // Size the chunk first so it is allocated once.
    let size = 0;
    let nPriority = 0;
    for (; nPriority < this.#priority.length; nPriority++) {
      const p = this.#priority.at(nPriority)!;
      if (size + frameSize(p.length) > max && size > 0) break;
      size += frameSize(p.length);
    }
    let nData = 0;
    let dataBytes = 0;
    if (nPriority === this.#priority.length) {
      for (let i = 0; i < this.#data.length; i++) {
        const f = frameSize(this.#data.at(i)!.length);
        const charge = frameCharge(f);
        if (size + f > max) break;
        if (charge > budget) {
          this.#pacer.markLimited();
          break;
        }
        budget -= charge;
        size += f;
        dataBytes += charge;
        nData++;
      }
    }
    if (size === 0) return null;
    const chunk = new Uint8Array(size);
    let o = 0;
    for (let i = 0; i < nPriority; i++) {
      const p = this.#priority.shift()!;
      if (p === this.#queuedPong) this.#queuedPong = null;
      o += sealFrameInto(session, p, chunk, o, this.#scratchOut);
    }
    for (let i = 0; i < nData; i++) {
      o += sealFrameInto(session, this.#data.shift()!, chunk, o, this.#scratchOut);
    }
    this.#packetsOut += nPriority + nData;
    this.#dataPacketsSent += nData;
    if (nData > 0) {
      this.#pacer.consume(dataBytes);
      this.#lastDataWritten = now;
      this.#checkDrained();
    }
    return this.#startWrite(chunk, now);
  }

  /** Events since the last call, oldest first. */
  takeEvents(): RelayEvent[] {
    const e = this.#events;
    this.#events = [];
    return e;
  }

  // ---- commands -----------------------------------------------------------------------

  /** Ask the relay for a connection to `publicKey` (ROUTING_REQUEST). Idempotent. */
  route(publicKey: Uint8Array): SendResult {
    if (publicKey.length !== 32) return this.#refused("invalid", "public key must be 32 bytes");
    if (this.#state === "disconnected") return this.#refused("closed", "connection is closed");
    if (bytesEqual(publicKey, this.self.publicKey)) {
      return this.#refused("invalid", "a relay refuses routing to our own key");
    }
    const hex = toHex(publicKey);
    if (this.#byKey.has(hex)) return OK;
    const pending = this.#requested.get(hex);
    if (pending) {
      pending.cancelled = false;
      return OK;
    }
    if (this.#byKey.size + this.#requested.size >= NUM_CLIENT_CONNECTIONS) {
      return this.#refused("queue_full", `all ${NUM_CLIENT_CONNECTIONS} routing slots are taken`);
    }
    this.#requested.set(hex, { publicKey: publicKey.slice(), cancelled: false });
    if (this.#state === "confirmed") {
      this.#priority.push(encodeRelayPacket({ kind: "routing_request", publicKey }));
    }
    return OK;
  }

  /** Drop our connection to `publicKey` (DISCONNECT_NOTIFICATION), or cancel its request. */
  unroute(publicKey: Uint8Array): SendResult {
    const hex = toHex(publicKey);
    const id = this.#byKey.get(hex);
    if (id !== undefined) {
      const slot = this.#slots[id - NUM_RESERVED_PORTS]!;
      this.#slots[id - NUM_RESERVED_PORTS] = undefined;
      this.#byKey.delete(hex);
      if (slot.online) this.#emit({ type: "offline", publicKey: slot.publicKey, connectionId: id });
      if (this.#state === "confirmed") {
        this.#priority.push(
          encodeRelayPacket({ kind: "disconnect_notification", connectionId: id }),
        );
      }
      return OK;
    }
    const pending = this.#requested.get(hex);
    if (pending) {
      pending.cancelled = true;
      return OK;
    }
    return this.#refused("invalid", "no route to that key on this relay");
  }

  /** DATA to a routed peer that the relay says is online. */
  sendData(publicKey: Uint8Array, data: Uint8Array): SendResult {
    const id = this.#byKey.get(toHex(publicKey));
    if (id === undefined) return this.#refused("not_online", "no route to that key");
    return this.sendDataOn(id, data);
  }

  sendDataOn(connectionId: number, data: Uint8Array): SendResult {
    if (this.#state !== "confirmed") return this.#notConfirmed();
    if (!isConnectionId(connectionId)) return this.#refused("invalid", "bad connection id");
    const slot = this.#slots[connectionId - NUM_RESERVED_PORTS];
    if (slot === undefined || !slot.online) {
      return this.#refused("not_online", `connection ${connectionId} is not online`);
    }
    if (data.length < 1 || data.length > MAX_DATA_PAYLOAD) {
      return this.#refused("invalid", `data must be 1..${MAX_DATA_PAYLOAD} bytes`);
    }
    const plain = new Uint8Array(1 + data.length);
    plain[0] = connectionId;
    plain.set(data, 1);
    return this.#enqueueData(plain);
  }

  /** OOB_SEND: up to 1024 bytes to any client of this relay by key; no delivery feedback. */
  sendOob(publicKey: Uint8Array, data: Uint8Array): SendResult {
    if (this.#state !== "confirmed") return this.#notConfirmed();
    if (publicKey.length !== 32) return this.#refused("invalid", "public key must be 32 bytes");
    if (data.length < 1 || data.length > MAX_OOB_DATA) {
      return this.#refused("invalid", `OOB data must be 1..${MAX_OOB_DATA} bytes`);
    }
    return this.#enqueueData(encodeRelayPacket({ kind: "oob_send", publicKey, data }));
  }

  /** ONION_REQUEST: the relay is the first onion hop. */
  sendOnion(data: Uint8Array): SendResult {
    if (this.#state !== "confirmed") return this.#notConfirmed();
    if (data.length < MIN_ONION_REQUEST_PAYLOAD || data.length > MAX_DATA_PAYLOAD) {
      return this.#refused(
        "invalid",
        `onion request must be ${MIN_ONION_REQUEST_PAYLOAD}..${MAX_DATA_PAYLOAD} bytes`,
      );
    }
    return this.#enqueueData(encodeRelayPacket({ kind: "onion_request", data }));
  }

  /** Close by our own choice. */
  close(message = "closed by its owner"): void {
    if (this.#state !== "disconnected") this.#close("closed_by_owner", message);
  }

  // ---- introspection ------------------------------------------------------------------

  /** Keys we asked a route for, routed or not: what a reconnect must ask again. */
  wantedRoutes(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const s of this.#slots) if (s) out.push(s.publicKey);
    for (const r of this.#requested.values()) if (!r.cancelled) out.push(r.publicKey);
    return out;
  }

  /** Bytes still to write: a half-written chunk or anything queued in either lane. */
  get hasPendingOutput(): boolean {
    return this.#out !== null || this.#data.length > 0 || this.#priority.length > 0;
  }

  /** Data-lane packets (DATA, OOB, onion) handed to the socket so far. */
  get dataPacketsSent(): number {
    return this.#dataPacketsSent;
  }

  connectionIdOf(publicKey: Uint8Array): number | undefined {
    return this.#byKey.get(toHex(publicKey));
  }

  isOnline(publicKey: Uint8Array): boolean {
    const id = this.#byKey.get(toHex(publicKey));
    return id !== undefined && this.#slots[id - NUM_RESERVED_PORTS]!.online;
  }

  stats(): RelayClientStats {
    let online = 0;
    for (const s of this.#slots) if (s?.online) online++;
    return {
      state: this.#state,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      packetsIn: this.#packetsIn,
      packetsOut: this.#packetsOut,
      dataQueued: this.#data.length,
      dataQueuedBytes: this.#data.bytes,
      dataQueuedHighWater: this.#dataHighWater,
      priorityQueued: this.#priority.length,
      rttMs: this.#rtt,
      paceRate: this.#pacer.rate,
      maxBytesPer30ms: this.#burstMeter.max,
      routes: this.#byKey.size,
      online,
      droppedUnroutedData: this.#droppedUnrouted,
      refusedSends: this.#refusedSends,
    };
  }

  // ---- internals ----------------------------------------------------------------------

  #emit(e: RelayEvent): void {
    this.#events.push(e);
  }

  #refused(reason: SendRefusal, message: string): SendResult {
    this.#refusedSends++;
    return refuse(reason, message);
  }

  #notConfirmed(): SendResult {
    return this.#state === "disconnected"
      ? this.#refused("closed", "connection is closed")
      : this.#refused("not_confirmed", `connection is ${this.#state}`);
  }

  #isBusy(now: number): boolean {
    return this.#data.length > 0 || now - this.#lastDataWritten < this.config.busyWindowMs;
  }

  #startHandshake(): void {
    let hs;
    try {
      hs = createClientHandshake(this.self, this.relayPublicKey, this.#random);
    } catch (e) {
      this.#close("handshake_failed", `relay public key unusable: ${(e as Error).message}`);
      return;
    }
    this.#pendingHandshake = hs.pending;
    this.#handshakeNonce = hs.packet.slice(32, 56);
    this.#rawOut.push(hs.packet);
    this.#state = "unconfirmed";
  }

  #enqueueData(plain: Uint8Array): SendResult {
    if (this.#data.bytes + plain.length > this.config.dataQueueMax) {
      return this.#refused(
        "queue_full",
        `data queue holds ${this.#data.bytes} bytes, limit ${this.config.dataQueueMax}`,
      );
    }
    this.#data.push(plain);
    if (this.#data.bytes > this.#dataHighWater) this.#dataHighWater = this.#data.bytes;
    if (!this.#congested && this.#data.bytes >= this.config.dataQueueHigh) {
      this.#congested = true;
      this.#emit({ type: "congested", queuedBytes: this.#data.bytes });
    }
    return OK;
  }

  #checkDrained(): void {
    if (this.#congested && this.#data.bytes <= this.config.dataQueueLow) {
      this.#congested = false;
      this.#emit({ type: "drained", queuedBytes: this.#data.bytes });
    }
  }

  #sendPing(now: number): void {
    let id = 0n;
    while (id === 0n) {
      id = new DataView(this.#random(8).buffer).getBigUint64(0);
    }
    this.#pingId = id;
    this.#pingBusy = this.#isBusy(now);
    this.#pingSentAt = now;
    this.#lastPinged = now;
    this.#priority.push(encodeRelayPacket({ kind: "ping", pingId: id }));
  }

  #readFrames(now: number): void {
    const session = this.#session!;
    while (this.#state === "confirmed") {
      const r = this.#reader.next();
      if (r.kind === "need_more") return;
      if (r.kind === "error") {
        this.#close("bad_frame", r.error.message);
        return;
      }
      const plain = openFrame(session, r.box, this.#scratchIn);
      if (plain === null) {
        this.#close("bad_mac", "a frame failed authentication (bad MAC or nonce out of step)");
        return;
      }
      this.#packetsIn++;
      this.#handlePacket(plain, now);
    }
  }

  #handlePacket(plain: Uint8Array, now: number): void {
    const d = decodeRelayPacket(plain);
    if (!d.ok) {
      this.#close("bad_packet", d.error.message);
      return;
    }
    const p: RelayPacket = d.value;
    switch (p.kind) {
      case "routing_response":
        return this.#onRoutingResponse(p.connectionId, p.publicKey);
      case "connection_notification": {
        const slot = this.#slots[p.connectionId - NUM_RESERVED_PORTS];
        // c-toxcore acts only on a registered, offline slot; anything else is stale.
        if (slot && !slot.online) {
          slot.online = true;
          this.#emit({ type: "online", publicKey: slot.publicKey, connectionId: p.connectionId });
        }
        return;
      }
      case "disconnect_notification": {
        const slot = this.#slots[p.connectionId - NUM_RESERVED_PORTS];
        if (slot && slot.online) {
          slot.online = false;
          this.#emit({ type: "offline", publicKey: slot.publicKey, connectionId: p.connectionId });
        }
        return;
      }
      case "ping":
        // Answered ahead of data. Only the latest ping is owed (as in c-toxcore), which
        // also bounds the lane against a relay that floods pings.
        if (this.#queuedPong !== null) {
          this.#queuedPong.set(plain.subarray(1, 9), 1);
        } else {
          this.#queuedPong = encodeRelayPacket({ kind: "pong", pingId: p.pingId });
          this.#priority.push(this.#queuedPong);
        }
        return;
      case "pong":
        if (p.pingId === this.#pingId) {
          const rtt = now - this.#pingSentAt;
          this.#pingId = 0n;
          this.#rtt = rtt;
          if (this.#isBusy(now)) this.#pacer.onRtt(rtt, now);
          this.#emit({ type: "pong", rttMs: rtt });
        }
        return;
      case "oob_recv":
        this.#emit({ type: "oob", publicKey: p.publicKey.slice(), data: p.data.slice() });
        return;
      case "onion_response":
        this.#emit({ type: "onion", data: p.data.slice() });
        return;
      case "forwarding":
        this.#emit({ type: "forwarding", data: p.data.slice() });
        return;
      case "data": {
        const slot = this.#slots[p.connectionId - NUM_RESERVED_PORTS];
        if (slot === undefined) {
          // Possible just after we dropped a route (the relay may have forwarded already).
          this.#droppedUnrouted++;
          return;
        }
        this.#emit({
          type: "data",
          publicKey: slot.publicKey,
          connectionId: p.connectionId,
          data: p.data.slice(),
        });
        return;
      }
      case "routing_request":
      case "oob_send":
      case "onion_request":
      case "forward_request":
        this.#close(
          "bad_packet",
          `the relay sent ${p.kind.toUpperCase()} (id ${
            PacketId[p.kind.toUpperCase() as keyof typeof PacketId]
          }), which only clients send`,
        );
        return;
    }
  }

  #onRoutingResponse(connectionId: number | null, publicKey: Uint8Array): void {
    const hex = toHex(publicKey);
    const existing = this.#byKey.get(hex);
    if (existing !== undefined) return; // c-toxcore ignores a response for a held key.
    const pending = this.#requested.get(hex);
    if (pending === undefined) {
      this.#close(
        "unsolicited_routing_response",
        `ROUTING_RESPONSE for ${hex.slice(0, 16)}…, a key we never asked for`,
      );
      return;
    }
    this.#requested.delete(hex);
    const cancelled = pending.cancelled;
    if (connectionId === null) {
      if (!cancelled) this.#emit({ type: "route_refused", publicKey: publicKey.slice() });
      return;
    }
    const index = connectionId - NUM_RESERVED_PORTS;
    if (this.#slots[index] !== undefined) {
      this.#close(
        "bad_packet",
        `ROUTING_RESPONSE reuses connection id ${connectionId}, which is held by another key`,
      );
      return;
    }
    if (cancelled) {
      this.#priority.push(encodeRelayPacket({ kind: "disconnect_notification", connectionId }));
      return;
    }
    const pk = publicKey.slice();
    this.#slots[index] = { publicKey: pk, hex, online: false };
    this.#byKey.set(hex, connectionId);
    this.#emit({ type: "routed", publicKey: pk, connectionId });
  }

  #close(reason: CloseReason, message: string): void {
    const unsent = this.#data.length;
    this.#state = "disconnected";
    this.#data.clear();
    this.#priority.clear();
    this.#rawOut = [];
    this.#queuedPong = null;
    this.#out = null;
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i];
      if (s?.online) {
        this.#emit({ type: "offline", publicKey: s.publicKey, connectionId: i + 16 });
      }
    }
    this.#pendingHandshake = null;
    this.#emit({ type: "closed", reason, fault: FAULT_OF[reason], message, unsent });
  }
}

/**
 * The relay (server) side of the Tox TCP relay protocol, sans-I/O, as c-toxcore 0.2.18's
 * TCP_server.c behaves (spec/tcp.md §3, §4, §8). No onion, no forwarding, no DHT: a routing
 * relay for clients that know each other's keys.
 *
 * The shell owns the listening socket and the client sockets. It calls accept() for each new
 * socket and gets back an opaque connection number; then it feeds bytes (receive), socket
 * ends (closed), write progress (written) and time (tick), and takes back bytes to write
 * (pollTransmit, for the ids takeWritable names), events (takeEvents) and the next deadline.
 * Nothing here touches a socket, a timer or the OS random source.
 *
 * Connection stages are TCP_server.c's: TCP_STATUS_CONNECTED (waiting for the 128-byte
 * handshake) → TCP_STATUS_UNCONFIRMED (answered with 96 bytes, no valid frame yet) →
 * TCP_STATUS_CONFIRMED (after the first frame that opens). As in c-toxcore, the first two
 * stages each live in a ring of MAX_INCOMING_CONNECTIONS entries and are evicted when the ring
 * wraps around onto them; unlike c-toxcore they also have a timer (below).
 *
 * Outbox: one FIFO per connection, sealed in order when handed to the socket. c-toxcore writes
 * each frame at once and lets the kernel's send buffer hold the backlog, so what a client
 * sees is frames in the order the relay produced them; a FIFO here keeps that order (a
 * DISCONNECT_NOTIFICATION never overtakes DATA forwarded before it). A client's queued bytes
 * are what the relay still owes it on the wire: every queued frame at its sealed size, plus
 * the unwritten part of the chunk handed to the socket. The bounds stand in for "the socket is
 * busy" (relay_load.md §1):
 * - DATA and OOB_RECV are dropped silently (counted) once the client is owed `dataQueueMax`
 *   bytes: c-toxcore drops non-priority packets when the receiver's socket is busy. They are
 *   also dropped (counted apart) while all clients together are owed `totalQueueMax`: a few
 *   hundred slow readers cannot make the relay grow without bound.
 * - Everything else (routing response, notifications, PING, PONG) is always queued, up to
 *   `queueMax`; past that the client is not reading what it asks for (a PING flood it never
 *   reads the PONGs of, say) and its connection is closed as its fault (`queue_overflow`).
 *   c-toxcore queues those without bound. Control packets ignore `totalQueueMax` (dropping
 *   one would break the protocol); `queueMax` per client bounds them.
 *
 * Where it differs from TCP_server.c on purpose:
 * - it reads partial frames, so a sender cannot wedge it with half a frame in a closed receive
 *   window (relay_load.md §1), and the 96-byte answer may go out in pieces (c-toxcore closes
 *   the socket when that one send() is short);
 * - the bounded outbox above;
 * - a socket that has not sent a frame that opens within `handshakeTimeoutMs` of its accept
 *   is closed (`handshake_timeout`): c-toxcore only evicts it when 256 newer sockets have
 *   wrapped its ring, so a slow trickle of idle sockets holds its slots for ever;
 * - rate limits per client (token buckets, `RateLimit`): OOB_SEND, PING, and route changes
 *   (ROUTING_REQUEST and DISCONNECT_NOTIFICATION). Packets past a limit are dropped silently
 *   and counted, as the relay drops DATA for a busy receiver: an honest client never comes
 *   near them (it pings every few seconds at most, routes at most 240 keys, sends OOB
 *   handshakes a few a second). Each refused packet also costs a token, so a client that
 *   keeps flooding sinks ever deeper below zero; at `closeAfter` below it is closed
 *   (`oob_flood`, `ping_flood`, `routing_flood`) rather than costing the relay a decryption
 *   per packet for ever. c-toxcore answers and forwards all of them;
 * - packets are checked by the shared decoder (packets.ts), so a PING with id 0 closes the
 *   client (c-toxcore answers PONG 0) and so does a DATA plaintext of one byte (c-toxcore
 *   forwards it and the receiving client drops itself). A frame length of 0 is skipped, as
 *   c-toxcore does (FrameReader): it costs two bytes of the sender's own stream, nothing else;
 * - ONION_REQUEST: too short closes (as tox-bootstrapd, whose onion module is on), anything
 *   else is ignored (as a relay without one). FORWARD_REQUEST closes (forwarding off).
 *
 * Scale: timers live in a binary min-heap keyed by each connection's next deadline (handshake
 * timeout, next PING, PONG due), so nextDeadline() is O(1) and tick() touches only the
 * connections that are due, O(log n) each. Nothing else walks all connections: accept, a
 * packet, a close cost O(1) (plus a walk over one client's 240 routing slots).
 */
import { bytesEqual, type KeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import {
  acceptClientHandshake,
  CLIENT_HANDSHAKE_SIZE,
  type SecureSession,
} from "../tcp_common/handshake.ts";
import {
  FrameReader,
  frameSize,
  MAX_FRAME_SIZE,
  newFrameScratch,
  openFrame,
  sealFrameInto,
} from "../tcp_common/framing.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  NUM_CLIENT_CONNECTIONS,
  NUM_RESERVED_PORTS,
  PacketId,
  packetName,
  type RelayPacket,
} from "../tcp_common/packets.ts";
import type { Fault } from "../common/codec.ts";

/** MAX_INCOMING_CONNECTIONS (TCP_server.h): size of each ring of not-yet-confirmed sockets. */
export const MAX_INCOMING_CONNECTIONS = 256;

/** Opaque number the relay gives each accepted socket; never reused by one RelayServer. */
export type ConnectionNumber = number;

/** TCP_STATUS_CONNECTED, TCP_STATUS_UNCONFIRMED, TCP_STATUS_CONFIRMED; then closed for good. */
export type RelayServerStatus = "connected" | "unconfirmed" | "confirmed" | "closed";

/**
 * Why the relay dropped a client. fault (as for the relay client): `peer` = the client broke
 * the protocol or stopped answering, `local` = the relay's own decision (owner, ring
 * eviction, the same key connected again), `network` = the socket ended.
 */
export type RelayServerCloseReason =
  | "closed_by_owner"
  | "evicted"
  | "replaced"
  | "handshake_failed"
  | "handshake_timeout"
  | "bad_frame"
  | "bad_mac"
  | "bad_packet"
  | "ping_timeout"
  | "queue_overflow"
  | "oob_flood"
  | "ping_flood"
  | "routing_flood"
  | "socket_closed"
  | "socket_error";

const FAULT_OF: Record<RelayServerCloseReason, Fault> = {
  closed_by_owner: "local",
  evicted: "local",
  replaced: "local",
  handshake_failed: "peer",
  handshake_timeout: "peer",
  bad_frame: "peer",
  bad_mac: "peer",
  bad_packet: "peer",
  ping_timeout: "peer",
  queue_overflow: "peer",
  oob_flood: "peer",
  ping_flood: "peer",
  routing_flood: "peer",
  socket_closed: "network",
  socket_error: "network",
};

/**
 * A token bucket: `burst` packets at once, refilled at `perSecond`. Each packet past it is
 * dropped and still costs a token; a client whose bucket sinks to `closeAfter` below zero is
 * closed. So a burst is forgiven, a client a little over the rate loses the excess, and only
 * one that keeps flooding (about closeAfter / (its rate − perSecond) seconds) is closed.
 */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
  readonly closeAfter: number;
}

/** No limit at all. */
export const UNLIMITED: RateLimit = { perSecond: Infinity, burst: Infinity, closeAfter: Infinity };

export interface RelayServerConfig {
  /** TCP_PING_FREQUENCY: each confirmed client is pinged this long after the last ping. */
  readonly pingIntervalMs: number;
  /** TCP_PING_TIMEOUT: no matching PONG within this closes the client. */
  readonly pingTimeoutMs: number;
  /** Entries in each of the two rings of not-yet-confirmed sockets. */
  readonly maxIncoming: number;
  /** DATA and OOB_RECV for a client are dropped while its queue holds this many bytes. */
  readonly dataQueueMax: number;
  /** A control packet that would take a client's queue past this closes that client. */
  readonly queueMax: number;
  /** DATA and OOB_RECV for anyone are dropped while all clients together are owed this. */
  readonly totalQueueMax: number;
  /** Largest chunk handed to the socket in one write. */
  readonly maxWriteChunk: number;
  /** From accept to the first frame that opens; Infinity = only the rings evict (c-toxcore). */
  readonly handshakeTimeoutMs: number;
  /** OOB_SEND per client. */
  readonly oobLimit: RateLimit;
  /** PING per client (each one costs a queued PONG). */
  readonly pingLimit: RateLimit;
  /** ROUTING_REQUEST and DISCONNECT_NOTIFICATION per client (each may notify a peer). */
  readonly routingLimit: RateLimit;
}

export const DEFAULT_RELAY_SERVER_CONFIG: RelayServerConfig = {
  pingIntervalMs: 30_000,
  pingTimeoutMs: 10_000,
  maxIncoming: MAX_INCOMING_CONNECTIONS,
  // An unpaced 10 MB burst of 1 KB DATA (the one that wedges tox-bootstrapd) peaked at the
  // old 256 KiB bound and lost 1-4 packets in 7 of 17 runs; with 1 MiB it loses none.
  dataQueueMax: 1024 * 1024,
  // Room above the data bound for every control packet an honest client can be owed at once:
  // 240 routing responses and notifications are about 20 KB.
  queueMax: 1024 * 1024 + 64 * 1024,
  // 128 clients that stop reading fill it; past that the relay drops DATA for everyone, as
  // c-toxcore does for a single busy socket, rather than grow.
  totalQueueMax: 128 * 1024 * 1024,
  maxWriteChunk: 64 * 1024,
  // TCP_CONNECTION_TIMEOUT, the budget c-toxcore's client gives itself for the same steps.
  handshakeTimeoutMs: 10_000,
  // c-toxcore's net_crypto sends an OOB handshake or cookie packet about once a second per
  // friend it is reaching through this relay.
  oobLimit: { perSecond: 64, burst: 256, closeAfter: 1024 },
  // c-toxcore pings every 30 s, our client every 0.5 s while busy.
  pingLimit: { perSecond: 64, burst: 256, closeAfter: 1024 },
  // Room to route a full table of 240 keys twice over at once; then 32 changes a second.
  routingLimit: { perSecond: 32, burst: 512, closeAfter: 2048 },
};

/** A confirmed client as the forward policy sees it. */
export interface RelayClientInfo {
  readonly id: ConnectionNumber;
  readonly publicKey: Uint8Array;
}

/** What is about to be forwarded; `data` is a view valid only during the call. */
export type ForwardedPacket =
  /** DATA payload (after the connection id byte). */
  | { readonly kind: "data"; readonly data: Uint8Array }
  /** OOB payload (after the key). */
  | { readonly kind: "oob"; readonly data: Uint8Array };

/**
 * Policy hook, asked before each DATA or OOB packet is forwarded from one client to another:
 * false drops it silently, as a relay may (operators could use it for rate limiting or
 * accounting; tests use it for a relay that loses data). Control packets never pass here.
 */
export type ForwardPolicy = (
  from: RelayClientInfo,
  to: RelayClientInfo,
  packet: ForwardedPacket,
  now: number,
) => boolean;

export interface RelayServerOptions {
  /** The relay's key pair; for tox-bootstrapd it is the DHT key (spec/tcp.md §1). */
  readonly keys: KeyPair;
  readonly random: RandomBytes;
  readonly config?: Partial<RelayServerConfig>;
  readonly forward?: ForwardPolicy;
}

export type RelayServerEvent =
  /** The 128 bytes opened: answered with 96, waiting for the first frame. */
  | { readonly type: "handshake"; readonly id: ConnectionNumber; readonly publicKey: Uint8Array }
  /** The first frame opened: the client is on the relay under `publicKey`. */
  | { readonly type: "confirmed"; readonly id: ConnectionNumber; readonly publicKey: Uint8Array }
  /** A ROUTING_RESPONSE went to `id` for `publicKey`; connectionId null = refused (rpid 0). */
  | {
    readonly type: "routed";
    readonly id: ConnectionNumber;
    readonly publicKey: Uint8Array;
    readonly connectionId: number | null;
  }
  /** Both routed each other: both got a CONNECTION_NOTIFICATION. */
  | {
    readonly type: "linked";
    readonly id: ConnectionNumber;
    readonly connectionId: number;
    readonly peer: ConnectionNumber;
    readonly peerConnectionId: number;
  }
  /** `id` dropped its route or left; `peer` got a DISCONNECT_NOTIFICATION for its side. */
  | {
    readonly type: "unlinked";
    readonly id: ConnectionNumber;
    readonly connectionId: number;
    readonly peer: ConnectionNumber;
    readonly peerConnectionId: number;
  }
  | {
    readonly type: "closed";
    readonly id: ConnectionNumber;
    /** null if it closed before its handshake opened. */
    readonly publicKey: Uint8Array | null;
    readonly reason: RelayServerCloseReason;
    readonly fault: Fault;
    readonly message: string;
    /** Packets still queued for it, now lost. */
    readonly unsent: number;
  };

export interface RelayServerStats {
  /** Sockets the relay holds, in any stage. */
  readonly connections: number;
  readonly confirmed: number;
  readonly dataForwarded: number;
  /** DATA on a routed slot whose peer is not online (c-toxcore drops it silently). */
  readonly dataDroppedOffline: number;
  readonly dataDroppedPolicy: number;
  readonly oobForwarded: number;
  /** OOB_SEND to a key no confirmed client holds. */
  readonly oobDroppedNoTarget: number;
  readonly oobDroppedPolicy: number;
  /** DATA or OOB_RECV dropped because the receiver's queue was at dataQueueMax. */
  readonly droppedQueueFull: number;
  /** DATA or OOB_RECV dropped because all queues together were at totalQueueMax. */
  readonly droppedTotalFull: number;
  /** ONION_REQUESTs ignored: this relay is no onion hop. */
  readonly onionDropped: number;
  /** Packets dropped by the per-client rate limits. */
  readonly oobDroppedRate: number;
  readonly pingDroppedRate: number;
  readonly routingDroppedRate: number;
  /** Bytes owed to all clients now (see the file header), and the most ever at once. */
  readonly queuedBytes: number;
  readonly peakQueuedBytes: number;
  /** Connections closed so far, by reason. */
  readonly closed: Readonly<Record<RelayServerCloseReason, number>>;
  /** Connections tick() has looked at so far: only those whose deadline had come. */
  readonly timerChecks: number;
}

export interface RelayServerConnectionInfo {
  readonly id: ConnectionNumber;
  readonly acceptedAt: number;
  readonly status: RelayServerStatus;
  readonly publicKey: Uint8Array | null;
  /** Routing slots in use, and how many of them are online. */
  readonly routes: number;
  readonly online: number;
  /** Packets not yet sealed. */
  readonly queuedPackets: number;
  /** Bytes the relay owes this client on the wire (queued frames + the unwritten chunk). */
  readonly queuedBytes: number;
  /** The most queuedBytes ever was. */
  readonly peakQueuedBytes: number;
  readonly droppedQueueFull: number;
  /** Packets from this client dropped by its rate limits. */
  readonly droppedRate: number;
  /** When the relay's timer next looks at it (handshake timeout, PING, PONG due). */
  readonly deadline: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** One entry of TCP_Secure_Connection.connections[]: status 1 (registered) or 2 (online). */
interface Slot {
  readonly publicKey: Uint8Array;
  readonly hex: string;
  status: "registered" | "online";
  /** While online: the peer's connection and the slot index it knows us by. */
  other: Conn | null;
  otherId: number;
}

interface Conn {
  readonly id: ConnectionNumber;
  readonly acceptedAt: number;
  status: RelayServerStatus;
  readonly reader: FrameReader;
  session: SecureSession | null;
  publicKey: Uint8Array | null;
  hex: string;
  info: RelayClientInfo | null;
  /** Position in the incoming or unconfirmed ring while in those stages. */
  ring: number;
  /** The 96-byte handshake answer, before any frame. */
  handshakeResponse: Uint8Array | null;
  readonly queue: PacketQueue;
  out: Uint8Array | null;
  outOff: number;
  /** Bytes owed on the wire: queued frames, the unwritten chunk, the handshake answer. */
  owed: number;
  peakOwed: number;
  /** NO_SLOTS until the first route: most clients of a big relay route few keys or none. */
  connections: (Slot | undefined)[];
  lastPinged: number;
  pingId: bigint;
  /** Set when it must close but others are mid-update; closed by #settle. */
  doomed: { reason: RelayServerCloseReason; message: string } | null;
  /** Its next timer and its place in the deadline heap (-1: none). */
  deadline: number;
  heapIndex: number;
  readonly oobBucket: Bucket;
  readonly pingBucket: Bucket;
  readonly routingBucket: Bucket;
  droppedQueueFull: number;
  droppedRate: number;
  bytesIn: number;
  bytesOut: number;
}

// Frozen: a write through it would throw instead of giving every client the same table.
const NO_SLOTS = Object.freeze([]) as unknown as (Slot | undefined)[];

export class RelayServer {
  readonly keys: KeyPair;
  readonly config: RelayServerConfig;
  readonly #random: RandomBytes;
  readonly #forward: ForwardPolicy | undefined;

  #nextId: ConnectionNumber = 1;
  readonly #conns = new Map<ConnectionNumber, Conn>();
  /** Confirmed clients by key hex: get_TCP_connection_index. */
  readonly #accepted = new Map<string, Conn>();
  readonly #incoming: (Conn | undefined)[];
  #incomingIndex = 0;
  readonly #unconfirmed: (Conn | undefined)[];
  #unconfirmedIndex = 0;
  #events: RelayServerEvent[] = [];
  #writable = new Set<ConnectionNumber>();
  #doomed: Conn[] = [];
  readonly #timers = new DeadlineHeap<Conn>();
  #owed = 0;
  #peakOwed = 0;
  readonly #scratchIn = newFrameScratch();
  readonly #scratchOut = newFrameScratch();

  #dataForwarded = 0;
  #dataDroppedOffline = 0;
  #dataDroppedPolicy = 0;
  #oobForwarded = 0;
  #oobDroppedNoTarget = 0;
  #oobDroppedPolicy = 0;
  #droppedQueueFull = 0;
  #droppedTotalFull = 0;
  #onionDropped = 0;
  #oobDroppedRate = 0;
  #pingDroppedRate = 0;
  #routingDroppedRate = 0;
  #timerChecks = 0;
  readonly #closedBy = Object.fromEntries(
    Object.keys(FAULT_OF).map((r) => [r, 0]),
  ) as Record<RelayServerCloseReason, number>;

  constructor(opts: RelayServerOptions) {
    this.config = { ...DEFAULT_RELAY_SERVER_CONFIG, ...opts.config };
    const c = this.config;
    if (c.dataQueueMax < 0 || c.queueMax < c.dataQueueMax) {
      throw new RangeError("relay server: need 0 <= dataQueueMax <= queueMax");
    }
    if (!Number.isInteger(c.maxIncoming) || c.maxIncoming < 1) {
      throw new RangeError("relay server: maxIncoming must be a positive integer");
    }
    if (c.maxWriteChunk < MAX_FRAME_SIZE) {
      throw new RangeError("relay server: maxWriteChunk must hold the largest frame");
    }
    // Zero would make a deadline that is due again the moment it is handled.
    if (!(c.pingIntervalMs > 0 && c.pingTimeoutMs > 0 && c.handshakeTimeoutMs > 0)) {
      throw new RangeError("relay server: ping and handshake timers must be positive");
    }
    if (!(c.totalQueueMax >= 0)) throw new RangeError("relay server: totalQueueMax >= 0");
    for (
      const [name, l] of [["oob", c.oobLimit], ["ping", c.pingLimit], [
        "routing",
        c.routingLimit,
      ]] as const
    ) {
      if (!(l.perSecond >= 0 && l.burst >= 1 && l.closeAfter >= 1)) {
        throw new RangeError(
          `relay server: ${name}Limit needs perSecond >= 0, burst and closeAfter >= 1`,
        );
      }
    }
    this.keys = opts.keys;
    this.#random = opts.random;
    this.#forward = opts.forward;
    this.#incoming = new Array(c.maxIncoming);
    this.#unconfirmed = new Array(c.maxIncoming);
  }

  // ---- socket events ------------------------------------------------------------------

  /** A new client socket: it gets a connection number and waits for its 128 bytes. */
  accept(now: number): ConnectionNumber {
    const id = this.#nextId++;
    const pos = this.#incomingIndex++ % this.config.maxIncoming;
    const old = this.#incoming[pos];
    if (old !== undefined && old.status === "connected") {
      this.#kill(old, "evicted", "still no handshake when the incoming ring wrapped around");
    }
    const conn: Conn = {
      id,
      acceptedAt: now,
      status: "connected",
      reader: new FrameReader(),
      session: null,
      publicKey: null,
      hex: "",
      info: null,
      ring: pos,
      handshakeResponse: null,
      queue: new PacketQueue(),
      out: null,
      outOff: 0,
      owed: 0,
      peakOwed: 0,
      connections: NO_SLOTS,
      lastPinged: 0,
      pingId: 0n,
      doomed: null,
      deadline: Infinity,
      heapIndex: -1,
      oobBucket: { tokens: this.config.oobLimit.burst, at: now },
      pingBucket: { tokens: this.config.pingLimit.burst, at: now },
      routingBucket: { tokens: this.config.routingLimit.burst, at: now },
      droppedQueueFull: 0,
      droppedRate: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
    this.#incoming[pos] = conn;
    this.#conns.set(id, conn);
    this.#schedule(conn);
    this.#settle();
    return id;
  }

  /** Bytes read from client `id`'s socket; any split, down to one byte. */
  receive(id: ConnectionNumber, bytes: Uint8Array, now: number): void {
    const c = this.#conns.get(id);
    if (c === undefined || bytes.length === 0) return;
    c.bytesIn += bytes.length;
    c.reader.push(bytes);
    if (c.status === "connected") {
      // TCP_server.c reads the handshake only once all 128 bytes are there; anything after
      // them is the start of the encrypted stream.
      const hello = c.reader.takeRaw(CLIENT_HANDSHAKE_SIZE);
      if (hello === null) return;
      this.#handshake(c, hello);
    }
    this.#readFrames(c, now);
    this.#settle();
  }

  /** Client `id`'s socket reached EOF or failed. */
  closed(id: ConnectionNumber, error?: string): void {
    const c = this.#conns.get(id);
    if (c === undefined) return;
    this.#kill(
      c,
      error === undefined ? "socket_closed" : "socket_error",
      error ?? "the client closed the connection",
    );
    this.#settle();
  }

  /** `n` bytes of the chunk pollTransmit(id) returned were written. */
  written(id: ConnectionNumber, n: number): void {
    const c = this.#conns.get(id);
    if (c === undefined || c.out === null) return;
    if (!Number.isInteger(n) || n < 0 || c.outOff + n > c.out.length) {
      throw new RangeError(`written(${id}, ${n}): only ${c.out.length - c.outOff} bytes pending`);
    }
    c.outOff += n;
    c.bytesOut += n;
    c.owed -= n;
    this.#owed -= n;
    if (c.outOff === c.out.length) {
      c.out = null;
      c.outOff = 0;
    }
  }

  // ---- timers -------------------------------------------------------------------------

  /**
   * do_TCP_confirmed's timers: ping every client, close those whose PONG is overdue; and
   * close sockets that got no further than the handshake in time. Only connections whose
   * deadline has come are touched.
   */
  tick(now: number): void {
    for (let c = this.#timers.peek(); c !== undefined && c.deadline <= now;) {
      this.#expire(c, now);
      c = this.#timers.peek();
    }
    this.#settle();
  }

  /** When tick() must run next (same clock as `now`); Infinity when nothing is timed. */
  nextDeadline(): number {
    return this.#timers.peek()?.deadline ?? Infinity;
  }

  #expire(c: Conn, now: number): void {
    this.#timerChecks++;
    if (c.doomed !== null) {
      // #settle closes it at the end of this tick; off the heap so the loop moves on.
      this.#timers.remove(c);
      return;
    }
    if (c.status !== "confirmed") {
      this.#kill(
        c,
        "handshake_timeout",
        c.status === "connected"
          ? `no complete 128-byte handshake within ${this.config.handshakeTimeoutMs} ms`
          : `no frame after the handshake within ${this.config.handshakeTimeoutMs} ms`,
      );
      return;
    }
    if (now - c.lastPinged >= this.config.pingIntervalMs) {
      const view = new DataView(this.#random(8).buffer);
      c.pingId = view.getBigUint64(0) || 1n; // ping id 0 means "none outstanding"
      c.lastPinged = now;
      this.#sendPriority(c, encodeRelayPacket({ kind: "ping", pingId: c.pingId }));
    }
    if (c.pingId !== 0n && now - c.lastPinged >= this.config.pingTimeoutMs) {
      this.#kill(c, "ping_timeout", `no PONG within ${this.config.pingTimeoutMs} ms`);
      return;
    }
    this.#schedule(c);
  }

  /** Put `c` on the heap at its next deadline, from its stage and ping state. */
  #schedule(c: Conn): void {
    let at: number;
    if (c.status === "connected" || c.status === "unconfirmed") {
      at = c.acceptedAt + this.config.handshakeTimeoutMs;
    } else if (c.status === "confirmed") {
      // As do_TCP_confirmed: a PING interval shorter than the timeout re-pings first.
      at = c.lastPinged +
        (c.pingId !== 0n
          ? Math.min(this.config.pingTimeoutMs, this.config.pingIntervalMs)
          : this.config.pingIntervalMs);
    } else {
      at = Infinity;
    }
    this.#timers.set(c, at);
  }

  // ---- output -------------------------------------------------------------------------

  /**
   * The next bytes to write to client `id`, or null if none. Call written() with what the
   * socket took before asking again; an unfinished chunk is always returned first.
   */
  pollTransmit(id: ConnectionNumber): Uint8Array | null {
    const c = this.#conns.get(id);
    if (c === undefined) return null;
    if (c.out !== null) return c.out.subarray(c.outOff);
    if (c.handshakeResponse !== null) {
      c.out = c.handshakeResponse;
      c.handshakeResponse = null;
      return c.out;
    }
    if (c.queue.length === 0) return null;
    const { count, size } = c.queue.plan(this.config.maxWriteChunk);
    const chunk = new Uint8Array(size);
    let o = 0;
    // Sealing moves bytes from the queue to the chunk at the same size: owed is unchanged.
    for (let i = 0; i < count; i++) {
      o += sealFrameInto(c.session!, c.queue.shift(), chunk, o, this.#scratchOut);
    }
    c.out = chunk;
    c.outOff = 0;
    return chunk;
  }

  /** Connections that got something new to write since the last call. */
  takeWritable(): ConnectionNumber[] {
    const ids = [...this.#writable];
    this.#writable.clear();
    return ids;
  }

  /** Events since the last call, oldest first. */
  takeEvents(): RelayServerEvent[] {
    const e = this.#events;
    this.#events = [];
    return e;
  }

  // ---- commands -----------------------------------------------------------------------

  /** Drop client `id` by our own choice; its routed peers are told, as for any close. */
  close(id: ConnectionNumber, message = "closed by the relay's owner"): void {
    const c = this.#conns.get(id);
    if (c === undefined) return;
    this.#kill(c, "closed_by_owner", message);
    this.#settle();
  }

  // ---- introspection ------------------------------------------------------------------

  connectionIds(): ConnectionNumber[] {
    return [...this.#conns.keys()];
  }

  connection(id: ConnectionNumber): RelayServerConnectionInfo | null {
    const c = this.#conns.get(id);
    if (c === undefined) return null;
    let routes = 0;
    let online = 0;
    for (const s of c.connections) {
      if (s === undefined) continue;
      routes++;
      if (s.status === "online") online++;
    }
    return {
      id,
      acceptedAt: c.acceptedAt,
      status: c.status,
      publicKey: c.publicKey,
      routes,
      online,
      queuedPackets: c.queue.length,
      queuedBytes: c.owed,
      peakQueuedBytes: c.peakOwed,
      droppedQueueFull: c.droppedQueueFull,
      droppedRate: c.droppedRate,
      deadline: c.deadline,
      bytesIn: c.bytesIn,
      bytesOut: c.bytesOut,
    };
  }

  stats(): RelayServerStats {
    return {
      connections: this.#conns.size,
      confirmed: this.#accepted.size,
      dataForwarded: this.#dataForwarded,
      dataDroppedOffline: this.#dataDroppedOffline,
      dataDroppedPolicy: this.#dataDroppedPolicy,
      oobForwarded: this.#oobForwarded,
      oobDroppedNoTarget: this.#oobDroppedNoTarget,
      oobDroppedPolicy: this.#oobDroppedPolicy,
      droppedQueueFull: this.#droppedQueueFull,
      droppedTotalFull: this.#droppedTotalFull,
      onionDropped: this.#onionDropped,
      oobDroppedRate: this.#oobDroppedRate,
      pingDroppedRate: this.#pingDroppedRate,
      routingDroppedRate: this.#routingDroppedRate,
      queuedBytes: this.#owed,
      peakQueuedBytes: this.#peakOwed,
      closed: { ...this.#closedBy },
      timerChecks: this.#timerChecks,
    };
  }

  // ---- handshake and frames -----------------------------------------------------------

  /** handle_TCP_handshake, then do_incoming's move to the unconfirmed ring. */
  #handshake(c: Conn, hello: Uint8Array): void {
    const accepted = acceptClientHandshake(this.keys, hello, this.#random);
    if (accepted === null) {
      // TCP_server.c closes without a word; a client cannot tell this from a dead relay.
      this.#kill(
        c,
        "handshake_failed",
        "the 128-byte handshake did not open under this relay's key (made for another relay?)",
      );
      return;
    }
    if (this.#incoming[c.ring] === c) this.#incoming[c.ring] = undefined;
    const pos = this.#unconfirmedIndex++ % this.config.maxIncoming;
    const old = this.#unconfirmed[pos];
    if (old !== undefined && old.status === "unconfirmed") {
      this.#kill(old, "evicted", "still no valid frame when the unconfirmed ring wrapped around");
    }
    this.#unconfirmed[pos] = c;
    c.ring = pos;
    c.status = "unconfirmed";
    c.session = accepted.session;
    c.publicKey = accepted.clientPublicKey;
    c.hex = toHex(accepted.clientPublicKey);
    c.handshakeResponse = accepted.response;
    this.#owe(c, accepted.response.length);
    this.#writable.add(c.id);
    this.#events.push({ type: "handshake", id: c.id, publicKey: c.publicKey });
  }

  #readFrames(c: Conn, now: number): void {
    while ((c.status === "unconfirmed" || c.status === "confirmed") && c.doomed === null) {
      const r = c.reader.next();
      if (r.kind === "need_more") return;
      if (r.kind === "error") {
        this.#kill(c, "bad_frame", r.error.message);
        return;
      }
      const plain = openFrame(c.session!, r.box, this.#scratchIn);
      if (plain === null) {
        this.#kill(c, "bad_mac", "a frame failed authentication (bad MAC or nonce out of step)");
        return;
      }
      // confirm_TCP_connection: confirmed by the frame, which is then handled like any other
      // (a bad first packet still confirms, then closes).
      if (c.status === "unconfirmed") this.#confirm(c, now);
      this.#handlePacket(c, plain, now);
    }
  }

  /** add_accepted: a client already on the relay under the same key is dropped for this one. */
  #confirm(c: Conn, now: number): void {
    if (this.#unconfirmed[c.ring] === c) this.#unconfirmed[c.ring] = undefined;
    const old = this.#accepted.get(c.hex);
    if (old !== undefined) {
      this.#kill(old, "replaced", `the same key connected again (connection ${c.id})`);
    }
    c.status = "confirmed";
    c.info = { id: c.id, publicKey: c.publicKey! };
    c.lastPinged = now;
    c.pingId = 0n;
    this.#accepted.set(c.hex, c);
    this.#schedule(c);
    this.#events.push({ type: "confirmed", id: c.id, publicKey: c.publicKey! });
  }

  /** handle_TCP_packet. */
  #handlePacket(c: Conn, plain: Uint8Array, now: number): void {
    // TCP_server.c checks only the length of a client's CONNECTION_NOTIFICATION, then ignores
    // it; our decoder would also refuse an id below 16.
    if (plain[0] === PacketId.CONNECTION_NOTIFICATION && plain.length === 2) return;
    const d = decodeRelayPacket(plain);
    if (!d.ok) {
      this.#kill(c, "bad_packet", `${packetName(plain[0])}: ${d.error.message}`);
      return;
    }
    const p: RelayPacket = d.value;
    switch (p.kind) {
      case "routing_request":
        if (!this.#withinLimit(c, "routing", now)) return;
        return this.#onRoutingRequest(c, p.publicKey);
      case "connection_notification":
        return;
      case "disconnect_notification": {
        // Counted even when it frees nothing: route/unroute churn is what notifies peers.
        if (!this.#withinLimit(c, "routing", now)) return;
        // rm_connection_index fails on an unused slot, and the client is closed for it.
        if (c.connections[p.connectionId - NUM_RESERVED_PORTS] === undefined) {
          this.#kill(
            c,
            "bad_packet",
            `DISCONNECT_NOTIFICATION for connection id ${p.connectionId}, which is not routed`,
          );
          return;
        }
        this.#rmConnectionIndex(c, p.connectionId - NUM_RESERVED_PORTS);
        return;
      }
      case "ping":
        if (!this.#withinLimit(c, "ping", now)) return;
        this.#sendPriority(c, encodeRelayPacket({ kind: "pong", pingId: p.pingId }));
        return;
      case "pong":
        if (p.pingId === c.pingId && c.pingId !== 0n) {
          c.pingId = 0n;
          this.#schedule(c);
        }
        return;
      case "oob_send":
        if (!this.#withinLimit(c, "oob", now)) return;
        return this.#onOobSend(c, p.publicKey, p.data, now);
      case "onion_request":
        // A relay without an onion module ignores these (TCP_server.c with onion == NULL).
        this.#onionDropped++;
        return;
      case "data":
        return this.#onData(c, p.connectionId, plain, p.data, now);
      case "forward_request":
        // TCP_server.c closes the client when its forwarding module is off, as it is here.
        this.#kill(c, "bad_packet", "FORWARD_REQUEST (id 10): this relay does no forwarding");
        return;
      case "routing_response":
      case "oob_recv":
      case "onion_response":
      case "forwarding":
        this.#kill(
          c,
          "bad_packet",
          `${packetName(plain[0])} (id ${plain[0]}) is sent by relays, never by clients`,
        );
        return;
    }
  }

  /** handle_TCP_routing_req. */
  #onRoutingRequest(c: Conn, publicKey: Uint8Array): void {
    if (bytesEqual(publicKey, c.publicKey!)) {
      this.#sendRoutingResponse(c, null, publicKey);
      return;
    }
    const hex = toHex(publicKey);
    let index = -1;
    for (let i = 0; i < NUM_CLIENT_CONNECTIONS; i++) {
      const s = c.connections[i];
      if (s !== undefined) {
        // Asked again: the same id again, nothing new registered or notified.
        if (s.hex === hex) {
          this.#sendRoutingResponse(c, i + NUM_RESERVED_PORTS, publicKey);
          return;
        }
      } else if (index === -1) {
        index = i;
      }
    }
    if (index === -1) {
      this.#sendRoutingResponse(c, null, publicKey);
      return;
    }
    // A response that could not be queued registers nothing, as in c-toxcore.
    if (!this.#sendRoutingResponse(c, index + NUM_RESERVED_PORTS, publicKey)) return;
    const slot: Slot = {
      publicKey: publicKey.slice(),
      hex,
      status: "registered",
      other: null,
      otherId: 0,
    };
    if (c.connections === NO_SLOTS) c.connections = new Array(NUM_CLIENT_CONNECTIONS);
    c.connections[index] = slot;
    const other = this.#accepted.get(hex);
    if (other === undefined || other.doomed !== null) return;
    const otherId = other.connections.findIndex((s) =>
      s !== undefined && s.status === "registered" && s.hex === c.hex
    );
    if (otherId === -1) return;
    const otherSlot = other.connections[otherId]!;
    slot.status = "online";
    slot.other = other;
    slot.otherId = otherId;
    otherSlot.status = "online";
    otherSlot.other = c;
    otherSlot.otherId = index;
    this.#events.push({
      type: "linked",
      id: c.id,
      connectionId: index + NUM_RESERVED_PORTS,
      peer: other.id,
      peerConnectionId: otherId + NUM_RESERVED_PORTS,
    });
    this.#sendPriority(
      c,
      encodeRelayPacket({
        kind: "connection_notification",
        connectionId: index + NUM_RESERVED_PORTS,
      }),
    );
    this.#sendPriority(
      other,
      encodeRelayPacket({
        kind: "connection_notification",
        connectionId: otherId + NUM_RESERVED_PORTS,
      }),
    );
  }

  #sendRoutingResponse(c: Conn, connectionId: number | null, publicKey: Uint8Array): boolean {
    this.#events.push({ type: "routed", id: c.id, publicKey: publicKey.slice(), connectionId });
    return this.#sendPriority(
      c,
      encodeRelayPacket({ kind: "routing_response", connectionId, publicKey }),
    );
  }

  /** rm_connection_index: free the slot; an online peer falls back to registered and is told. */
  #rmConnectionIndex(c: Conn, index: number): void {
    const slot = c.connections[index];
    if (slot === undefined) return;
    c.connections[index] = undefined;
    if (slot.status !== "online") return;
    const other = slot.other!;
    const otherSlot = other.connections[slot.otherId]!;
    // The peer keeps its registration: when this client routes it again (or reconnects and
    // does), both go online again.
    otherSlot.status = "registered";
    otherSlot.other = null;
    otherSlot.otherId = 0;
    this.#events.push({
      type: "unlinked",
      id: c.id,
      connectionId: index + NUM_RESERVED_PORTS,
      peer: other.id,
      peerConnectionId: slot.otherId + NUM_RESERVED_PORTS,
    });
    this.#sendPriority(
      other,
      encodeRelayPacket({
        kind: "disconnect_notification",
        connectionId: slot.otherId + NUM_RESERVED_PORTS,
      }),
    );
  }

  /** The default case of handle_TCP_packet: DATA on connection id 16..255. */
  #onData(
    c: Conn,
    connectionId: number,
    plain: Uint8Array,
    payload: Uint8Array,
    now: number,
  ): void {
    const slot = c.connections[connectionId - NUM_RESERVED_PORTS];
    if (slot === undefined) {
      this.#kill(c, "bad_packet", `DATA on connection id ${connectionId}, which is not routed`);
      return;
    }
    if (slot.status !== "online") {
      this.#dataDroppedOffline++;
      return;
    }
    const other = slot.other!;
    if (
      this.#forward !== undefined &&
      !this.#forward(c.info!, other.info!, { kind: "data", data: payload }, now)
    ) {
      this.#dataDroppedPolicy++;
      return;
    }
    // The peer knows this link by its own slot index: rewrite the id byte, nothing else.
    if (this.#sendData(other, plain, slot.otherId + NUM_RESERVED_PORTS)) this.#dataForwarded++;
  }

  /** handle_TCP_oob_send: to any confirmed client by key, with the sender's key; no feedback. */
  #onOobSend(c: Conn, publicKey: Uint8Array, data: Uint8Array, now: number): void {
    const other = this.#accepted.get(toHex(publicKey));
    if (other === undefined) {
      this.#oobDroppedNoTarget++;
      return;
    }
    if (
      this.#forward !== undefined &&
      !this.#forward(c.info!, other.info!, { kind: "oob", data }, now)
    ) {
      this.#oobDroppedPolicy++;
      return;
    }
    const packet = encodeRelayPacket({ kind: "oob_recv", publicKey: c.publicKey!, data });
    if (this.#sendData(other, packet)) this.#oobForwarded++;
  }

  // ---- outbox -------------------------------------------------------------------------

  /** A control packet: always queued, unless the client has stopped reading (then closed). */
  #sendPriority(c: Conn, plain: Uint8Array): boolean {
    if (c.status === "closed" || c.doomed !== null) return false;
    const cost = frameSize(plain.length);
    if (c.owed + cost > this.config.queueMax) {
      // Not closed here: the caller may be halfway through updating this client's peers.
      c.doomed = {
        reason: "queue_overflow",
        message:
          `${c.owed} bytes queued for a client that does not read them; limit ${this.config.queueMax} (${
            packetName(plain[0])
          } refused)`,
      };
      this.#doomed.push(c);
      return false;
    }
    c.queue.push(plain, plain[0]);
    this.#owe(c, cost);
    this.#writable.add(c.id);
    return true;
  }

  /**
   * DATA or OOB_RECV (first byte `id`): dropped silently while the client's queue is at its
   * data bound, or all queues together at theirs.
   */
  #sendData(c: Conn, plain: Uint8Array, id = plain[0]): boolean {
    if (c.status === "closed" || c.doomed !== null) return false;
    const cost = frameSize(plain.length);
    if (c.owed + cost > this.config.dataQueueMax) {
      c.droppedQueueFull++;
      this.#droppedQueueFull++;
      return false;
    }
    if (this.#owed + cost > this.config.totalQueueMax) {
      this.#droppedTotalFull++;
      return false;
    }
    c.queue.push(plain, id);
    this.#owe(c, cost);
    this.#writable.add(c.id);
    return true;
  }

  #owe(c: Conn, n: number): void {
    c.owed += n;
    if (c.owed > c.peakOwed) c.peakOwed = c.owed;
    this.#owed += n;
    if (this.#owed > this.#peakOwed) this.#peakOwed = this.#owed;
  }

  /** One packet against `c`'s `kind` bucket: false = drop it (or `c` was closed for it). */
  #withinLimit(c: Conn, kind: "oob" | "ping" | "routing", now: number): boolean {
    const [bucket, limit] = kind === "oob"
      ? [c.oobBucket, this.config.oobLimit]
      : kind === "ping"
      ? [c.pingBucket, this.config.pingLimit]
      : [c.routingBucket, this.config.routingLimit];
    const verdict = spend(bucket, limit, now);
    if (verdict === "pass") return true;
    c.droppedRate++;
    if (kind === "oob") this.#oobDroppedRate++;
    else if (kind === "ping") this.#pingDroppedRate++;
    else this.#routingDroppedRate++;
    if (verdict === "abuse") {
      const what = kind === "oob"
        ? "OOB_SEND"
        : kind === "ping"
        ? "PING"
        : "ROUTING_REQUEST/DISCONNECT_NOTIFICATION";
      this.#kill(
        c,
        `${kind}_flood`,
        `${what} flood: ${limit.closeAfter} packets over ${limit.perSecond}/s (burst ${limit.burst})`,
      );
    }
    return false;
  }

  // ---- closing ------------------------------------------------------------------------

  /** Close every client that overflowed while others were being updated. */
  #settle(): void {
    for (let c = this.#doomed.shift(); c !== undefined; c = this.#doomed.shift()) {
      this.#kill(c, c.doomed!.reason, c.doomed!.message);
    }
  }

  /** kill_accepted / kill_TCP_secure_connection: online peers get a DISCONNECT_NOTIFICATION. */
  #kill(c: Conn, reason: RelayServerCloseReason, message: string): void {
    if (c.status === "closed") return;
    const wasConfirmed = c.status === "confirmed";
    c.status = "closed";
    this.#closedBy[reason]++;
    this.#conns.delete(c.id);
    this.#writable.delete(c.id);
    this.#timers.remove(c);
    if (this.#incoming[c.ring] === c) this.#incoming[c.ring] = undefined;
    if (this.#unconfirmed[c.ring] === c) this.#unconfirmed[c.ring] = undefined;
    if (wasConfirmed && this.#accepted.get(c.hex) === c) this.#accepted.delete(c.hex);
    if (c.connections !== NO_SLOTS) {
      for (let i = 0; i < NUM_CLIENT_CONNECTIONS; i++) this.#rmConnectionIndex(c, i);
    }
    const unsent = c.queue.length + (c.handshakeResponse !== null ? 1 : 0);
    this.#owed -= c.owed;
    c.owed = 0;
    c.queue.clear();
    c.out = null;
    c.handshakeResponse = null;
    c.session = null;
    this.#events.push({
      type: "closed",
      id: c.id,
      publicKey: c.publicKey,
      reason,
      fault: FAULT_OF[reason],
      message,
      unsent,
    });
  }
}

// ---- helpers ------------------------------------------------------------------------------

interface Bucket {
  tokens: number;
  /** When tokens was last brought up to date. */
  at: number;
}

/** Take one token: "pass", "drop" (over the rate), or "abuse" (closeAfter below zero). */
function spend(b: Bucket, limit: RateLimit, now: number): "pass" | "drop" | "abuse" {
  const elapsed = now - b.at;
  if (elapsed > 0) {
    b.tokens = Math.min(limit.burst, b.tokens + elapsed * limit.perSecond / 1000);
    b.at = now;
  }
  b.tokens -= 1;
  if (b.tokens >= 0) return "pass";
  return b.tokens <= -limit.closeAfter ? "abuse" : "drop";
}

const EMPTY = new Uint8Array(0);
/** A queue that empties keeps a buffer this big for the next burst; a bigger one is freed. */
const KEEP_BUFFER = 16 * 1024;

/**
 * The plaintexts owed to one client, back to back in one growable buffer as
 * length (u16) · plaintext: no object per packet, so a slow reader's queue of 2-byte DATA
 * costs what it holds, not 100-odd bytes of heap per packet, and forwarding allocates nothing.
 */
class PacketQueue {
  #buf: Uint8Array = EMPTY;
  #head = 0;
  #tail = 0;
  /** Packets queued. */
  length = 0;

  /** Copy `plain` in, with `first` as its first byte (the forwarded DATA's connection id). */
  push(plain: Uint8Array, first: number): void {
    const need = 2 + plain.length;
    if (this.#tail + need > this.#buf.length) this.#makeRoom(need);
    const b = this.#buf;
    const t = this.#tail;
    b[t] = plain.length >>> 8;
    b[t + 1] = plain.length & 0xff;
    b.set(plain, t + 2);
    b[t + 2] = first;
    this.#tail = t + need;
    this.length++;
  }

  /** How many packets from the head fit in `max` bytes as frames, and their size. */
  plan(max: number): { count: number; size: number } {
    const b = this.#buf;
    let size = 0;
    let count = 0;
    for (let o = this.#head; count < this.length; count++) {
      const len = (b[o] << 8) | b[o + 1];
      const f = frameSize(len);
      if (size + f > max) break;
      size += f;
      o += 2 + len;
    }
    return { count, size };
  }

  /** The head packet, removed; a view that holds only until the next push. */
  shift(): Uint8Array {
    if (this.length === 0) throw new RangeError("PacketQueue.shift: empty");
    const b = this.#buf;
    const len = (b[this.#head] << 8) | b[this.#head + 1];
    const start = this.#head + 2;
    this.#head = start + len;
    if (--this.length === 0) {
      this.#head = 0;
      this.#tail = 0;
      if (b.length > KEEP_BUFFER) this.#buf = EMPTY; // the view keeps the old buffer alive
    }
    return b.subarray(start, start + len);
  }

  clear(): void {
    this.#buf = EMPTY;
    this.#head = 0;
    this.#tail = 0;
    this.length = 0;
  }

  /** Compact when at most half would be in use after, else grow: amortised O(1) per byte. */
  #makeRoom(need: number): void {
    const live = this.#tail - this.#head;
    if (live + need <= this.#buf.length / 2) {
      this.#buf.copyWithin(0, this.#head, this.#tail);
    } else {
      // Twice what it holds: the buffer never outgrows twice the client's queue bound.
      const grown = new Uint8Array(Math.max(512, 2 * (live + need)));
      grown.set(this.#buf.subarray(this.#head, this.#tail));
      this.#buf = grown;
    }
    this.#head = 0;
    this.#tail = live;
  }
}

/** What DeadlineHeap keeps: the deadline and the slot the heap keeps it in (-1: not in it). */
interface Timed {
  deadline: number;
  heapIndex: number;
}

/**
 * A binary min-heap of items by deadline, each knowing its own index, so moving or removing
 * one is O(log n) without a search, and the heap never holds stale entries.
 */
class DeadlineHeap<T extends Timed> {
  readonly #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  /** Insert `t` at `deadline`, or move it there; Infinity takes it out. */
  set(t: T, deadline: number): void {
    if (deadline === Infinity) {
      this.remove(t);
      t.deadline = Infinity;
      return;
    }
    const earlier = deadline < t.deadline;
    t.deadline = deadline;
    if (t.heapIndex < 0) {
      t.heapIndex = this.#items.length;
      this.#items.push(t);
      this.#up(t.heapIndex);
    } else if (earlier) {
      this.#up(t.heapIndex);
    } else {
      this.#down(t.heapIndex);
    }
  }

  remove(t: T): void {
    const i = t.heapIndex;
    if (i < 0) return;
    t.heapIndex = -1;
    const last = this.#items.pop()!;
    if (last === t) return;
    this.#items[i] = last;
    last.heapIndex = i;
    this.#up(i);
    this.#down(last.heapIndex);
  }

  #up(i: number): void {
    const a = this.#items;
    const t = a[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p].deadline <= t.deadline) break;
      a[i] = a[p];
      a[i].heapIndex = i;
      i = p;
    }
    a[i] = t;
    t.heapIndex = i;
  }

  #down(i: number): void {
    const a = this.#items;
    const n = a.length;
    const t = a[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && a[r].deadline < a[l].deadline ? r : l;
      if (a[m].deadline >= t.deadline) break;
      a[i] = a[m];
      a[i].heapIndex = i;
      i = m;
    }
    a[i] = t;
    t.heapIndex = i;
  }
}

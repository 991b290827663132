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
 * Outbox: one FIFO per connection, sealed in order when handed to the socket, bounded per
 * client and in total (outbox.ts says how and why).
 *
 * Where it differs from TCP_server.c on purpose:
 * - it reads partial frames, so a sender cannot wedge it with half a frame in a closed receive
 *   window (relay_load.md §1), and the 96-byte answer may go out in pieces (c-toxcore closes
 *   the socket when that one send() is short);
 * - the bounded outbox (outbox.ts);
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
 *
 * This file is the sans-I/O API and the protocol logic that ties the parts together; the
 * parts live beside it: config.ts (limits and defaults), events.ts and stats.ts (what it
 * reports), connection.ts (the per-socket record and routing table), outbox.ts (what is
 * owed to clients, bounded), packet_queue.ts, rate_limit.ts and common/deadline_heap.ts.
 */
import { bytesEqual, type KeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import { acceptClientHandshake, CLIENT_HANDSHAKE_SIZE } from "../tcp_common/handshake.ts";
import { newFrameScratch, openFrame } from "../tcp_common/framing.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  NUM_CLIENT_CONNECTIONS,
  NUM_RESERVED_PORTS,
  PacketId,
  packetName,
  type RelayPacket,
} from "../tcp_common/packets.ts";
import {
  checkRelayServerConfig,
  DEFAULT_RELAY_SERVER_CONFIG,
  type ForwardPolicy,
  type RelayServerConfig,
} from "./config.ts";
import { type Conn, connectionInfo, newConn, NO_SLOTS, type Slot } from "./connection.ts";
import { DeadlineHeap } from "../common/deadline_heap.ts";
import {
  type ConnectionNumber,
  FAULT_OF,
  type RelayServerCloseReason,
  type RelayServerEvent,
} from "./events.ts";
import { Outbox } from "./outbox.ts";
import { spend } from "./rate_limit.ts";
import type { RelayServerConnectionInfo, RelayServerStats } from "./stats.ts";

export interface RelayServerOptions {
  /** The relay's key pair; for tox-bootstrapd it is the DHT key (spec/tcp.md §1). */
  readonly keys: KeyPair;
  readonly random: RandomBytes;
  readonly config?: Partial<RelayServerConfig>;
  readonly forward?: ForwardPolicy;
}

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
  readonly #timers = new DeadlineHeap<Conn>();
  readonly #outbox: Outbox;
  readonly #scratchIn = newFrameScratch();

  #dataForwarded = 0;
  #dataDroppedOffline = 0;
  #dataDroppedPolicy = 0;
  #oobForwarded = 0;
  #oobDroppedNoTarget = 0;
  #oobDroppedPolicy = 0;
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
    checkRelayServerConfig(c);
    this.keys = opts.keys;
    this.#random = opts.random;
    this.#forward = opts.forward;
    this.#outbox = new Outbox(c);
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
    const conn = newConn(id, now, pos, this.config);
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
    if (c === undefined) return;
    this.#outbox.written(c, n);
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
      this.#outbox.sendPriority(c, encodeRelayPacket({ kind: "ping", pingId: c.pingId }));
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
    return this.#outbox.poll(c);
  }

  /** Connections that got something new to write since the last call. */
  takeWritable(): ConnectionNumber[] {
    return this.#outbox.takeWritable();
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
    return connectionInfo(c);
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
      droppedQueueFull: this.#outbox.droppedQueueFull,
      droppedTotalFull: this.#outbox.droppedTotalFull,
      onionDropped: this.#onionDropped,
      oobDroppedRate: this.#oobDroppedRate,
      pingDroppedRate: this.#pingDroppedRate,
      routingDroppedRate: this.#routingDroppedRate,
      queuedBytes: this.#outbox.owed,
      peakQueuedBytes: this.#outbox.peakOwed,
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
    this.#outbox.answerHandshake(c, accepted.response);
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
        this.#outbox.sendPriority(c, encodeRelayPacket({ kind: "pong", pingId: p.pingId }));
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
    this.#outbox.sendPriority(
      c,
      encodeRelayPacket({
        kind: "connection_notification",
        connectionId: index + NUM_RESERVED_PORTS,
      }),
    );
    this.#outbox.sendPriority(
      other,
      encodeRelayPacket({
        kind: "connection_notification",
        connectionId: otherId + NUM_RESERVED_PORTS,
      }),
    );
  }

  #sendRoutingResponse(c: Conn, connectionId: number | null, publicKey: Uint8Array): boolean {
    this.#events.push({ type: "routed", id: c.id, publicKey: publicKey.slice(), connectionId });
    return this.#outbox.sendPriority(
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
    this.#outbox.sendPriority(
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
    if (this.#outbox.sendData(other, plain, slot.otherId + NUM_RESERVED_PORTS)) {
      this.#dataForwarded++;
    }
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
    if (this.#outbox.sendData(other, packet)) this.#oobForwarded++;
  }

  // ---- rate limits -------------------------------------------------------------------

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
    for (let c = this.#outbox.nextDoomed(); c !== undefined; c = this.#outbox.nextDoomed()) {
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
    this.#timers.remove(c);
    if (this.#incoming[c.ring] === c) this.#incoming[c.ring] = undefined;
    if (this.#unconfirmed[c.ring] === c) this.#unconfirmed[c.ring] = undefined;
    if (wasConfirmed && this.#accepted.get(c.hex) === c) this.#accepted.delete(c.hex);
    if (c.connections !== NO_SLOTS) {
      for (let i = 0; i < NUM_CLIENT_CONNECTIONS; i++) this.#rmConnectionIndex(c, i);
    }
    const unsent = this.#outbox.release(c);
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

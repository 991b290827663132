/**
 * One net_crypto session with one peer (c-toxcore 0.2.18 Crypto_Connection), sans-I/O.
 *
 * Initiator: COOKIE_REQUESTING → (cookie response) → HANDSHAKE_SENT → (peer handshake) →
 * NOT_CONFIRMED → (first data packet) → ESTABLISHED. Responder (accepted handshake):
 * NOT_CONFIRMED at once. The "temp packet" (cookie request, then our handshake) is resent
 * every second (after three quick extra sends, see tempEarlyResends); after 8 counted sends
 * without reaching ESTABLISHED the session is killed.
 *
 * Lossless packets keep their number until the peer's buffer_start passes it; the peer's
 * request packets name the holes, which we resend (new nonce, same number). Our own request
 * packets double as acknowledgements and keep-alives. Packets leave under a congestion
 * window (congestion.ts); "urgent" ones (Messenger's control packets, which c-toxcore writes
 * with congestion_control = false) skip the window so bulk data never starves them.
 *
 * The connection never touches a socket: it hands sealed packets to its host, which answers
 * sent / congested / unreachable, and it asks for nothing but `now`.
 */
import {
  bytesEqual,
  incrementNonce,
  type KeyPair,
  newKeyPair,
  precompute,
  type RandomBytes,
  toHex,
} from "../common/crypto.ts";
import { type CongestionConfig, CongestionControl } from "./congestion.ts";
import { RecvArray, SendArray, u32Add, u32Distance } from "./packet_arrays.ts";
import {
  advanceRecvNonce,
  createCookie,
  decodeDataPlain,
  encodeCookieRequest,
  encodeDataPlain,
  encodeHandshake,
  encodeRequestPacket,
  MAX_CRYPTO_DATA_SIZE,
  NET_PACKET_COOKIE_RESPONSE,
  NET_PACKET_CRYPTO_DATA,
  NET_PACKET_CRYPTO_HS,
  openCookieResponse,
  openDataPacket,
  type OpenedHandshake,
  openHandshake,
  PACKET_ID_KILL,
  PACKET_ID_RANGE_LOSSLESS_END,
  PACKET_ID_RANGE_LOSSLESS_START,
  PACKET_ID_RANGE_LOSSY_END,
  PACKET_ID_RANGE_LOSSY_START,
  PACKET_ID_REQUEST,
  sealDataPacket,
  walkRequestPacket,
} from "./packets.ts";

/** Crypto_Conn_State, minus the two "no connection" values (a free slot is no object). */
export type CryptoState =
  | "cookie_requesting"
  | "handshake_sent"
  | "not_confirmed"
  | "established"
  | "killed";

/** What the host did with a packet. */
export type TransmitResult = "sent" | "congested" | "unreachable";

/** Who ended a session, for the user and for relay scoring. */
export type KillCause =
  | "peer" // the peer sent KILL
  | "local" // we were told to (friend removed, DHT key changed, shutdown)
  | "timeout" // handshake never completed (8 temp packets)
  | "alive_timeout"; // friend_connection heard no ALIVE for 32 s

export type CryptoEvent =
  | { readonly type: "crypto_state"; readonly peer: string; readonly state: CryptoState }
  | { readonly type: "established"; readonly peer: string }
  | { readonly type: "lossless"; readonly peer: string; readonly payload: Uint8Array }
  | { readonly type: "lossy"; readonly peer: string; readonly payload: Uint8Array }
  /** The peer has everything below `bufferStart` (drives message receipts). */
  | { readonly type: "acked"; readonly peer: string; readonly bufferStart: number }
  /** A handshake from this friend under another DHT key (friend_connection's dht_pk_callback). */
  | { readonly type: "dht_key_seen"; readonly peer: string; readonly dhtPublicKey: Uint8Array }
  /** The send array has room again after `sendLossless` refused for lack of it. */
  | { readonly type: "send_ready"; readonly peer: string }
  | {
    readonly type: "killed";
    readonly peer: string;
    readonly cause: KillCause;
    readonly reason: string;
    readonly wasEstablished: boolean;
  };

export interface CryptoHost {
  readonly realKeys: KeyPair;
  readonly dhtPublicKey: Uint8Array;
  readonly cookieKey: Uint8Array;
  readonly random: RandomBytes;
  /** precompute(peer DHT pk, our DHT sk), cached. */
  dhtSharedKey(dhtPublicKey: Uint8Array): Uint8Array;
  /** precompute(peer real pk, our real sk), cached. */
  realSharedKey(realPublicKey: Uint8Array): Uint8Array;
  /** `expectsAck`: a lossless packet or a handshake step; false for lossy/request/kill. */
  transmit(dhtPublicKey: Uint8Array, packet: Uint8Array, expectsAck: boolean): TransmitResult;
  /** The peer acknowledged new data (TCP_connections scores the relay that carried it). */
  delivered(dhtPublicKey: Uint8Array): void;
  emit(event: CryptoEvent): void;
  /**
   * Called at every entry point (packet, send, tick, ...): the session's next deadline may
   * have moved. NetCrypto keeps sessions in a deadline heap and re-reads only those.
   */
  touched(connection: CryptoConnection): void;
  /** The opt-in key log, told of every session key (see capture/keylog.ts). */
  readonly keylog?: (keys: NetCryptoKeys) => void;
}

export interface CryptoConnectionConfig {
  /** CRYPTO_SEND_PACKET_INTERVAL: temp packet resend and base request-packet interval. */
  readonly sendPacketIntervalMs: number;
  /** MAX_NUM_SENDPACKET_TRIES. */
  readonly maxTempSends: number;
  /**
   * Extra sends of each new temp packet, this far apart, before the 1 s cadence; they do
   * not count as tries. Before the peer's route is up a temp packet goes by OOB, which a
   * relay drops without a word if the peer has not reached it yet (both ends usually join
   * the relay within the same fraction of a second): c-toxcore's 1 s cadence then costs a
   * whole second per loss, the bulk of a hinted friend's time to online.
   */
  readonly tempEarlyResendMs: number;
  readonly tempEarlyResends: number;
  /** Retry of a temp packet or flush that found no path to the peer. */
  readonly unreachableRetryMs: number;
  /** Lossless packets we hold unacknowledged at most (≤ 32768). */
  readonly sendArrayPackets: number;
  /** Bytes of out-of-order packets we hold for the peer at most. */
  readonly recvArrayBytes: number;
  /** Acknowledge after this many in-order packets, or after ackDelayMs. */
  readonly ackEveryPackets: number;
  readonly ackDelayMs: number;
  /** Shortest gap between two request packets reporting holes. */
  readonly holeReportMs: number;
  readonly congestion: Partial<CongestionConfig>;
}

export const DEFAULT_CRYPTO_CONNECTION_CONFIG: CryptoConnectionConfig = {
  sendPacketIntervalMs: 1000,
  maxTempSends: 8,
  tempEarlyResendMs: 250,
  tempEarlyResends: 3,
  unreachableRetryMs: 100,
  sendArrayPackets: 8192,
  recvArrayBytes: 8 << 20,
  ackEveryPackets: 32,
  ackDelayMs: 20,
  holeReportMs: 20,
  congestion: {},
};

export type LosslessRefusal = "not_established" | "send_queue_full" | "invalid";

export type LosslessResult =
  | { readonly ok: true; readonly packetNumber: number }
  | { readonly ok: false; readonly reason: LosslessRefusal; readonly message: string };

export interface CryptoConnectionView {
  readonly state: CryptoState;
  readonly dhtPublicKey: string;
  readonly rttMs: number | null;
  readonly minRttMs: number | null;
  readonly window: number;
  readonly inflight: number;
  /** Lossless packets held: unacknowledged or not yet sent. */
  readonly sendQueue: number;
  readonly unsent: number;
  readonly recvHeldPackets: number;
  readonly recvHeldBytes: number;
  readonly packetsSent: number;
  readonly packetsReceived: number;
  readonly resent: number;
  readonly losses: number;
  readonly timeouts: number;
  /** Window cuts for queueing delay (not loss). */
  readonly delayReductions: number;
  /** The peer's out-of-order packets refused for our receive budget (asked for again). */
  readonly recvOverBudget: number;
  readonly lossyDropped: number;
  readonly badPackets: number;
  readonly tempSends: number;
}

const seconds = (ms: number) => Math.floor(ms / 1000);

export class CryptoConnection {
  readonly peerRealPublicKey: Uint8Array;
  readonly peer: string;
  readonly #host: CryptoHost;
  readonly config: CryptoConnectionConfig;
  #dhtPublicKey: Uint8Array;
  #state: CryptoState;
  readonly #session: KeyPair;
  readonly #sentNonce: Uint8Array;
  #recvNonce: Uint8Array | null = null;
  #sharedKey: Uint8Array | null = null;
  readonly #echoId: Uint8Array;
  // Temp packet: cookie request, then our handshake.
  #temp: Uint8Array | null = null;
  #tempSends = 0;
  #tempEarlyLeft = 0;
  #tempDueAt = 0;
  // Lossless bookkeeping.
  readonly #send: SendArray;
  readonly #recv: RecvArray;
  /**
   * Lossless packets stay in the receive array instead of going up: buffer_start stops, so
   * our acknowledgements stop and the peer's send window closes. What the layer above (in
   * the end a program reading the control socket) cannot take yet slows the peer down; it is
   * never taken and then lost.
   */
  #deliveryHeld = false;
  readonly #cc: CongestionControl;
  /** Next never-sent packet number. */
  #nextNew = 0;
  /**
   * One past the highest number we ever sent: the packet number of our request, lossy and
   * kill packets (c-toxcore uses buffer_end; numbers not sent yet would only make the peer
   * ask for packets that are not late but unsent).
   */
  #sentEnd = 0;
  /** Packets marked lost, waiting to be resent (oldest first). */
  #resend: number[] = [];
  readonly #queued = new Set<number>();
  #inflight = 0;
  #windowLimited = false;
  #blocked = false;
  #retryAt = Infinity;
  #progressAt = 0;
  #rtoBackoff = 1;
  #refusedFull = false;
  // Our request packets.
  #requestDueAt = Infinity;
  #ackDueAt = Infinity;
  #unackedIn = 0;
  #lastRequestAt = -Infinity;
  // Counters.
  #packetsSent = 0;
  #packetsReceived = 0;
  #resent = 0;
  #lossyDropped = 0;
  #badPackets = 0;

  private constructor(
    host: CryptoHost,
    peerRealPublicKey: Uint8Array,
    dhtPublicKey: Uint8Array,
    config: Partial<CryptoConnectionConfig>,
  ) {
    this.#host = host;
    this.config = { ...DEFAULT_CRYPTO_CONNECTION_CONFIG, ...config };
    this.peerRealPublicKey = peerRealPublicKey.slice();
    this.peer = toHex(peerRealPublicKey);
    this.#dhtPublicKey = dhtPublicKey.slice();
    this.#session = newKeyPair(host.random);
    this.#sentNonce = host.random(24);
    this.#echoId = host.random(8);
    this.#state = "cookie_requesting";
    this.#send = new SendArray(this.config.sendArrayPackets);
    this.#recv = new RecvArray(this.config.recvArrayBytes);
    this.#cc = new CongestionControl(this.config.congestion);
  }

  /** new_crypto_connection: we dial; the cookie request goes out at once. */
  static dial(
    host: CryptoHost,
    peerRealPublicKey: Uint8Array,
    dhtPublicKey: Uint8Array,
    now: number,
    config: Partial<CryptoConnectionConfig> = {},
  ): CryptoConnection {
    const c = new CryptoConnection(host, peerRealPublicKey, dhtPublicKey, config);
    const kDht = host.dhtSharedKey(dhtPublicKey);
    c.#setTemp(
      encodeCookieRequest(kDht, {
        senderDhtPublicKey: host.dhtPublicKey,
        senderRealPublicKey: host.realKeys.publicKey,
        echoId: c.#echoId,
      }, host.random(24)),
      now,
    );
    return c;
  }

  /** accept_crypto_connection: the peer dialled us and its handshake checked out. */
  static accept(
    host: CryptoHost,
    hs: OpenedHandshake,
    now: number,
    config: Partial<CryptoConnectionConfig> = {},
  ): CryptoConnection {
    const c = new CryptoConnection(host, hs.peerRealPublicKey, hs.peerDhtPublicKey, config);
    c.#adoptHandshake(hs, now, true);
    return c;
  }

  get state(): CryptoState {
    return this.#state;
  }

  get dhtPublicKey(): Uint8Array {
    return this.#dhtPublicKey;
  }

  /** A net_crypto packet (0x19, 0x1a, 0x1b) from the peer's DHT key. */
  handle(packet: Uint8Array, now: number): void {
    if (this.#state === "killed" || packet.length === 0) return;
    this.#host.touched(this);
    switch (packet[0]) {
      case NET_PACKET_COOKIE_RESPONSE:
        this.#handleCookieResponse(packet, now);
        break;
      case NET_PACKET_CRYPTO_HS:
        this.#handleHandshake(packet, now);
        break;
      case NET_PACKET_CRYPTO_DATA:
        this.#handleData(packet, now);
        break;
      default:
        this.#badPackets++;
    }
  }

  /** A handshake the manager already opened (incoming path, same DHT key). */
  adopt(hs: OpenedHandshake, now: number): boolean {
    if (this.#state !== "cookie_requesting" && this.#state !== "handshake_sent") return false;
    this.#host.touched(this);
    this.#adoptHandshake(hs, now, this.#state === "cookie_requesting");
    return true;
  }

  /**
   * Queue a lossless packet (payload[0] is its id, 16..191). `urgent` packets leave at once,
   * outside the congestion window (they still take the next number, so order is kept).
   */
  sendLossless(payload: Uint8Array, now: number, urgent = false): LosslessResult {
    if (this.#state !== "established") {
      return { ok: false, reason: "not_established", message: `session is ${this.#state}` };
    }
    if (
      payload.length === 0 || payload.length > MAX_CRYPTO_DATA_SIZE ||
      payload[0] < PACKET_ID_RANGE_LOSSLESS_START || payload[0] > PACKET_ID_RANGE_LOSSLESS_END
    ) {
      return {
        ok: false,
        reason: "invalid",
        message: `lossless packet must be 1..${MAX_CRYPTO_DATA_SIZE} bytes with id 16..191`,
      };
    }
    this.#host.touched(this);
    if (this.#send.full) {
      this.#refusedFull = true;
      return {
        ok: false,
        reason: "send_queue_full",
        message: `${this.#send.span} lossless packets unacknowledged`,
      };
    }
    const n = this.#send.push(payload);
    if (urgent && !this.#blocked) {
      const p = this.#send.get(n)!;
      if (this.#transmitData(n, payload, now) === "sent") this.#markSent(n, p, now);
    }
    this.#flush(now);
    return { ok: true, packetNumber: n };
  }

  /** A lossy packet (id 192..254): now or never. */
  sendLossy(payload: Uint8Array, now: number): boolean {
    if (
      this.#state !== "established" || payload.length === 0 ||
      payload.length > MAX_CRYPTO_DATA_SIZE || payload[0] < PACKET_ID_RANGE_LOSSY_START ||
      payload[0] > PACKET_ID_RANGE_LOSSY_END
    ) {
      this.#lossyDropped++;
      return false;
    }
    if (this.#transmitData(this.#sentEnd, payload, now, false) !== "sent") {
      this.#lossyDropped++;
      return false;
    }
    return true;
  }

  /** crypto_kill: tell an established peer (KILL), then stop. */
  kill(now: number, cause: KillCause, reason: string): void {
    if (this.#state === "killed") return;
    this.#host.touched(this);
    const was = this.#state === "established";
    if (was) this.#sendKill(now);
    this.#terminate(cause, reason, was);
  }

  /** The path that refused us (congested) can take packets again. */
  writable(now: number): void {
    if (!this.#blocked) return;
    this.#host.touched(this);
    this.#blocked = false;
    this.#flush(now);
  }

  /** A route to the peer came up: retry what found no path, now. */
  pathUp(now: number): void {
    this.#host.touched(this);
    if (this.#temp !== null && this.#tempSends === 0) this.#tempDueAt = now;
    if (this.#retryAt !== Infinity) this.#retryAt = now;
    this.tick(now);
  }

  tick(now: number): void {
    if (this.#state === "killed") return;
    this.#host.touched(this);
    if (this.#temp !== null && now >= this.#tempDueAt) {
      if (this.#tempSends >= this.config.maxTempSends) {
        this.#terminate(
          "timeout",
          `no ${this.#waitingFor()} after ${this.#tempSends} tries`,
          false,
        );
        return;
      }
      this.#sendTemp(now);
    }
    if (this.#state !== "not_confirmed" && this.#state !== "established") return;
    if (now >= this.#requestDueAt || now >= this.#ackDueAt) this.#sendRequest(now);
    if (now >= this.#retryAt) {
      this.#retryAt = Infinity;
      this.#blocked = false;
      this.#flush(now);
    }
    if (this.#inflight > 0 && now >= this.#rtoAt()) this.#retransmitTimeout(now);
  }

  nextDeadline(): number {
    if (this.#state === "killed") return Infinity;
    let d = this.#temp !== null ? this.#tempDueAt : Infinity;
    if (this.#state === "not_confirmed" || this.#state === "established") {
      d = Math.min(d, this.#requestDueAt, this.#ackDueAt, this.#retryAt);
      if (this.#inflight > 0) d = Math.min(d, this.#rtoAt());
    }
    return d;
  }

  view(): CryptoConnectionView {
    return {
      state: this.#state,
      dhtPublicKey: toHex(this.#dhtPublicKey),
      rttMs: this.#cc.srtt === null ? null : Math.round(this.#cc.srtt * 10) / 10,
      minRttMs: this.#cc.minRtt,
      window: this.#cc.window,
      inflight: this.#inflight,
      sendQueue: this.#send.size,
      unsent: u32Distance(this.#send.bufferEnd, this.#nextNew) + this.#resend.length,
      recvHeldPackets: this.#recv.heldPackets,
      recvHeldBytes: this.#recv.heldBytes,
      packetsSent: this.#packetsSent,
      packetsReceived: this.#packetsReceived,
      resent: this.#resent,
      losses: this.#cc.losses,
      timeouts: this.#cc.timeouts,
      delayReductions: this.#cc.delayReductions,
      recvOverBudget: this.#recv.overBudget,
      lossyDropped: this.#lossyDropped,
      badPackets: this.#badPackets,
      tempSends: this.#tempSends,
    };
  }

  // ---- handshake --------------------------------------------------------------------------

  #waitingFor(): string {
    switch (this.#state) {
      case "cookie_requesting":
        return "cookie response";
      case "handshake_sent":
        return "handshake";
      default:
        return "session packet";
    }
  }

  #setTemp(packet: Uint8Array, now: number): void {
    this.#temp = packet;
    this.#tempSends = 0;
    this.#tempEarlyLeft = this.config.tempEarlyResends;
    this.#sendTemp(now);
  }

  #sendTemp(now: number): void {
    // A copy: the transport may move (transfer) the buffer it is given; the temp packet is
    // sent again later.
    const r = this.#host.transmit(this.#dhtPublicKey, this.#temp!.slice(), true);
    if (r === "sent") {
      if (this.#tempSends > 0 && this.#tempEarlyLeft > 0) this.#tempEarlyLeft--;
      else this.#tempSends++;
      this.#tempDueAt = now +
        (this.#tempEarlyLeft > 0
          ? this.config.tempEarlyResendMs
          : this.config.sendPacketIntervalMs);
    } else {
      // No path yet (c-toxcore retries every pass): try again soon, without counting.
      this.#tempDueAt = now + this.config.unreachableRetryMs;
    }
  }

  #setState(state: CryptoState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#host.emit({ type: "crypto_state", peer: this.peer, state });
  }

  #handleCookieResponse(packet: Uint8Array, now: number): void {
    if (this.#state !== "cookie_requesting") return;
    const r = openCookieResponse(packet, this.#host.dhtSharedKey(this.#dhtPublicKey));
    if (!r.ok || !bytesEqual(r.value.echoId, this.#echoId)) {
      this.#badPackets++;
      return;
    }
    // Our cookie request reached the peer: evidence for the relay that carried it, as an
    // acknowledgement is for data (TCP_connections judges relays by it).
    this.#host.delivered(this.#dhtPublicKey);
    this.#setState("handshake_sent");
    this.#setTemp(this.#makeHandshake(r.value.cookie, now), now);
  }

  #makeHandshake(peerCookie: Uint8Array, now: number): Uint8Array {
    const host = this.#host;
    return encodeHandshake({
      receiverCookie: peerCookie,
      sharedKey: host.realSharedKey(this.peerRealPublicKey),
      nonce: host.random(24),
      baseNonce: this.#sentNonce.slice(),
      sessionPublicKey: this.#session.publicKey,
      newCookie: createCookie(host.cookieKey, {
        time: seconds(now),
        realPublicKey: this.peerRealPublicKey,
        dhtPublicKey: this.#dhtPublicKey,
      }, host.random(24)),
    });
  }

  #handleHandshake(packet: Uint8Array, now: number): void {
    if (
      this.#state !== "cookie_requesting" && this.#state !== "handshake_sent" &&
      this.#state !== "not_confirmed"
    ) return;
    const host = this.#host;
    const r = openHandshake(packet, {
      cookieKey: host.cookieKey,
      nowSeconds: seconds(now),
      realSecretKey: host.realKeys.secretKey,
      expectedRealPublicKey: this.peerRealPublicKey,
      sharedKey: (pk) => host.realSharedKey(pk),
    });
    if (!r.ok) {
      this.#badPackets++;
      return;
    }
    if (!bytesEqual(r.value.peerDhtPublicKey, this.#dhtPublicKey)) {
      host.emit({
        type: "dht_key_seen",
        peer: this.peer,
        dhtPublicKey: r.value.peerDhtPublicKey,
      });
      return;
    }
    this.#adoptHandshake(r.value, now, this.#state === "cookie_requesting");
  }

  /** The peer's nonce and session key; answer with our handshake when we had not sent one. */
  #adoptHandshake(hs: OpenedHandshake, now: number, answer: boolean): void {
    this.#recvNonce = hs.baseNonce.slice();
    const sharedKey = precompute(hs.sessionPublicKey, this.#session.secretKey);
    const rekeyed = this.#sharedKey === null || !bytesEqual(sharedKey, this.#sharedKey);
    this.#sharedKey = sharedKey;
    if (rekeyed && this.#host.keylog) {
      this.#host.keylog({
        kind: "net_crypto",
        selfDhtPublicKey: this.#host.dhtPublicKey.slice(),
        peerDhtPublicKey: this.#dhtPublicKey.slice(),
        selfRealPublicKey: this.#host.realKeys.publicKey.slice(),
        peerRealPublicKey: this.peerRealPublicKey.slice(),
        sessionKey: sharedKey.slice(),
        selfNonce: this.#sentNonce.slice(),
        peerNonce: hs.baseNonce.slice(),
      });
    }
    const entering = this.#state !== "not_confirmed";
    if (!answer) this.#host.delivered(this.#dhtPublicKey); // it answers ours
    this.#setState("not_confirmed");
    if (answer) this.#setTemp(this.#makeHandshake(hs.cookie, now), now);
    if (entering) {
      // The first request packet goes out at once: it is what makes the peer ESTABLISHED.
      this.#progressAt = now;
      this.#sendRequest(now);
    }
  }

  // ---- data -------------------------------------------------------------------------------

  #handleData(packet: Uint8Array, now: number): void {
    if (this.#sharedKey === null || this.#recvNonce === null) return;
    const opened = openDataPacket(packet, this.#sharedKey, this.#recvNonce);
    if (!opened.ok) {
      this.#badPackets++;
      return;
    }
    const plain = decodeDataPlain(opened.value.plain);
    if (!plain.ok) {
      this.#badPackets++;
      return;
    }
    advanceRecvNonce(this.#recvNonce, opened.value.diff);
    const { bufferStart, packetNumber, payload } = plain.value;
    if (bufferStart !== this.#send.bufferStart && !this.#acknowledge(bufferStart, now)) {
      this.#badPackets++;
      return;
    }
    this.#packetsReceived++;
    const id = payload[0];
    if (id === PACKET_ID_KILL) {
      const was = this.#state === "established";
      // Answer the KILL as c-toxcore does: the peer expects (and ignores) one back.
      if (was) this.#sendKill(now);
      this.#terminate("peer", "the peer ended the session (KILL)", was);
      return;
    }
    if (this.#state === "not_confirmed") {
      this.#temp = null;
      this.#host.delivered(this.#dhtPublicKey); // the peer took our handshake
      this.#setState("established");
      this.#host.emit({ type: "established", peer: this.peer });
      // The layer above may have killed it from inside the event.
      if ((this.#state as CryptoState) !== "established") return;
    }
    if (id === PACKET_ID_REQUEST) {
      this.#handleRequest(payload, now);
      this.#recv.setBufferEnd(packetNumber);
      this.#reportHoles(now);
    } else if (id >= PACKET_ID_RANGE_LOSSLESS_START && id <= PACKET_ID_RANGE_LOSSLESS_END) {
      const r = this.#recv.add(packetNumber, payload);
      if (r === "stored" && !this.#deliveryHeld) {
        if (!this.#deliverInOrder()) return;
      }
      this.#scheduleAck(now, r !== "stored");
    } else if (id >= PACKET_ID_RANGE_LOSSY_START && id <= PACKET_ID_RANGE_LOSSY_END) {
      this.#recv.setBufferEnd(packetNumber);
      this.#host.emit({ type: "lossy", peer: this.peer, payload });
    } else {
      this.#badPackets++;
    }
    this.#flush(now);
  }

  /** Hand up the run of lossless packets from buffer_start; false if that ended the session. */
  #deliverInOrder(): boolean {
    for (const p of this.#recv.takeInOrder()) {
      this.#host.emit({ type: "lossless", peer: this.peer, payload: p });
      if (this.#state !== "established") return false;
      this.#unackedIn++;
    }
    return true;
  }

  /** Hold lossless delivery (true) or resume it, handing up what waited (false). */
  holdDelivery(held: boolean, now: number): void {
    if (this.#deliveryHeld === held) return;
    this.#host.touched(this);
    this.#deliveryHeld = held;
    if (held || this.#state !== "established") return;
    if (!this.#deliverInOrder()) return;
    this.#scheduleAck(now, false);
    this.#flush(now);
  }

  /** The peer's buffer_start moved: free what it has. False when it acknowledged the future. */
  #acknowledge(bufferStart: number, now: number): boolean {
    const newest = this.#send.get(u32Add(bufferStart, -1));
    const freed = this.#send.clearUntil(bufferStart);
    if (freed === null) return false;
    let sent = 0;
    for (const p of freed) if (p.sentAt > 0) sent++;
    this.#inflight -= sent;
    if (u32Distance(this.#nextNew, this.#send.bufferStart) > this.#send.span) {
      this.#nextNew = this.#send.bufferStart; // urgent packets can be acked before the flush
    }
    if (u32Distance(this.#sentEnd, this.#send.bufferStart) > this.#send.span) {
      this.#sentEnd = this.#send.bufferStart;
    }
    if (newest && newest.sends === 1 && newest.sentAt > 0) {
      this.#cc.sample(now - newest.sentAt, now);
    }
    this.#cc.acked(freed.length, !this.#windowLimited);
    this.#progressAt = now;
    this.#rtoBackoff = 1;
    this.#host.delivered(this.#dhtPublicKey);
    this.#host.emit({ type: "acked", peer: this.peer, bufferStart: this.#send.bufferStart });
    if (this.#refusedFull && this.#send.span <= this.#send.capacity / 2) {
      this.#refusedFull = false;
      this.#host.emit({ type: "send_ready", peer: this.peer });
    }
    return true;
  }

  /** The peer's request packet: resend what it misses, forget what it has. */
  #handleRequest(payload: Uint8Array, now: number): void {
    const w = walkRequestPacket(payload, this.#send.bufferStart, this.#send.bufferEnd);
    if (!w.ok) {
      this.#badPackets++;
      return;
    }
    const requested = new Set(w.value.requested);
    const span = u32Distance(w.value.end, this.#send.bufferStart);
    // A relay path is FIFO: a requested packet is lost only if the peer already has one we
    // sent after it. Later ones may still be on their way (a time threshold alone mistakes
    // queueing for loss); a tail that never arrives is the RTO's job.
    let lost = false;
    let receivedAfter = -Infinity; // latest send time of a packet the peer has, above here
    const stale = this.#cc.rto();
    const resentLate = Math.min(stale, (this.#cc.srtt ?? 100) * 1.5);
    for (let i = span - 1; i >= 0; i--) {
      const n = u32Add(this.#send.bufferStart, i);
      const p = this.#send.get(n);
      if (!p) continue;
      if (requested.has(n)) {
        // A resend has no later first-time packet behind it when the window is full of
        // packets the peer holds past the hole: judge it by time (one smoothed round trip).
        const late = p.sends > 1 ? resentLate : stale;
        if (p.sentAt > 0 && (p.sentAt < receivedAfter || now - p.sentAt > late)) {
          this.#markLost(n, p);
          lost = true;
        }
      } else {
        if (p.sentAt > receivedAfter) receivedAfter = p.sentAt;
        this.#send.delete(n);
        if (p.sentAt > 0) this.#inflight--;
      }
    }
    if (lost) this.#cc.lost(now);
  }

  #markLost(n: number, p: { sentAt: number }): void {
    p.sentAt = 0;
    this.#inflight--;
    if (this.#queued.has(n)) return;
    this.#queued.add(n);
    // Keep the resend list oldest-first (by distance from buffer_start).
    const base = this.#send.bufferStart;
    const d = u32Distance(n, base);
    let i = this.#resend.length;
    while (i > 0 && u32Distance(this.#resend[i - 1], base) > d) i--;
    this.#resend.splice(i, 0, n);
  }

  #retransmitTimeout(now: number): void {
    // Nothing acknowledged for an RTO: everything out is presumed lost (a relay died, or
    // dropped it); resend from the oldest under a collapsed window.
    this.#cc.timedOut(now);
    for (let i = 0; i < this.#send.span; i++) {
      const n = u32Add(this.#send.bufferStart, i);
      const p = this.#send.get(n);
      if (p && p.sentAt > 0) this.#markLost(n, p);
    }
    this.#rtoBackoff = Math.min(this.#rtoBackoff * 2, 8);
    this.#progressAt = now;
    // Tell the peer our buffer_end too, so its next request names the tail.
    this.#sendRequest(now);
    this.#flush(now);
  }

  #rtoAt(): number {
    return this.#progressAt + this.#cc.rto() * this.#rtoBackoff;
  }

  /** Send resends, then new packets, while the window and the path allow. */
  #flush(now: number): void {
    if (this.#state !== "established" || this.#blocked) return;
    const window = this.#cc.window;
    this.#windowLimited = false;
    while (this.#resend.length > 0) {
      if (this.#inflight >= window) {
        this.#windowLimited = true;
        return;
      }
      const n = this.#resend[0];
      const p = this.#send.get(n);
      if (!p || p.sentAt > 0) {
        this.#resend.shift();
        this.#queued.delete(n);
        continue;
      }
      if (this.#transmitData(n, p.payload, now) !== "sent") return;
      this.#resend.shift();
      this.#queued.delete(n);
      this.#resent++;
      this.#markSent(n, p, now);
    }
    while (this.#nextNew !== this.#send.bufferEnd) {
      const n = this.#nextNew;
      const p = this.#send.get(n);
      if (!p || p.sends > 0) {
        this.#nextNew = u32Add(n, 1);
        continue;
      }
      if (this.#inflight >= window) {
        this.#windowLimited = true;
        return;
      }
      if (this.#transmitData(n, p.payload, now) !== "sent") return;
      this.#nextNew = u32Add(n, 1);
      this.#markSent(n, p, now);
    }
  }

  #markSent(n: number, p: { sentAt: number; sends: number }, now: number): void {
    if (this.#inflight === 0) this.#progressAt = now;
    if (
      u32Distance(n, this.#send.bufferStart) >= u32Distance(this.#sentEnd, this.#send.bufferStart)
    ) {
      this.#sentEnd = u32Add(n, 1);
    }
    p.sentAt = now;
    p.sends++;
    this.#inflight++;
  }

  /** Seal and hand over one data packet; a refusal blocks the flush until writable. */
  #transmitData(
    packetNumber: number,
    payload: Uint8Array,
    now: number,
    lossless = true,
  ): TransmitResult {
    const plain = encodeDataPlain(this.#recv.bufferStart, packetNumber, payload);
    const packet = sealDataPacket(this.#sharedKey!, this.#sentNonce, plain);
    const r = this.#host.transmit(this.#dhtPublicKey, packet, lossless);
    if (r === "sent") {
      incrementNonce(this.#sentNonce);
      this.#packetsSent++;
      // Every data packet carries our buffer_start: it acknowledges as well as a request.
      this.#unackedIn = 0;
      this.#ackDueAt = Infinity;
    } else if (lossless) {
      if (r === "congested") this.#blocked = true;
      else if (this.#retryAt === Infinity) {
        this.#blocked = true;
        this.#retryAt = now + this.config.unreachableRetryMs;
      }
    }
    return r;
  }

  #sendKill(now: number): void {
    this.#transmitData(this.#sentEnd, new Uint8Array([PACKET_ID_KILL]), now, false);
  }

  #scheduleAck(now: number, unexpected: boolean): void {
    if (unexpected || this.#recv.hasHoles) {
      this.#reportHoles(now);
      return;
    }
    if (this.#unackedIn >= this.config.ackEveryPackets) this.#sendRequest(now);
    else if (this.#unackedIn > 0 && this.#ackDueAt === Infinity) {
      this.#ackDueAt = now + this.config.ackDelayMs;
    }
  }

  #reportHoles(now: number): void {
    if (!this.#recv.hasHoles) return;
    const at = this.#lastRequestAt + this.config.holeReportMs;
    if (now >= at) this.#sendRequest(now);
    else this.#ackDueAt = Math.min(this.#ackDueAt, at);
  }

  /** Our request packet: holes in what we received, and our buffer_end as its number. */
  #sendRequest(now: number): void {
    const payload = encodeRequestPacket(
      this.#recv.bufferStart,
      this.#recv.bufferEnd,
      (n) => this.#recv.has(n),
    );
    const r = this.#transmitData(this.#sentEnd, payload, now, false);
    this.#lastRequestAt = now;
    this.#requestDueAt = now + this.config.sendPacketIntervalMs;
    // An acknowledgement that found the path full is retried, not lost: the peer's window
    // waits on it.
    this.#ackDueAt = r === "sent" ? Infinity : now + this.config.ackDelayMs;
  }

  #terminate(cause: KillCause, reason: string, wasEstablished: boolean): void {
    this.#state = "killed";
    this.#temp = null;
    this.#send.clear();
    this.#recv.clear();
    this.#resend = [];
    this.#queued.clear();
    this.#inflight = 0;
    this.#host.emit({ type: "crypto_state", peer: this.peer, state: "killed" });
    this.#host.emit({ type: "killed", peer: this.peer, cause, reason, wasEstablished });
  }
}

/** What the key log (capture/keylog.ts) records of one session: enough to open its data packets. */
export interface NetCryptoKeys {
  readonly kind: "net_crypto";
  readonly selfDhtPublicKey: Uint8Array;
  readonly peerDhtPublicKey: Uint8Array;
  readonly selfRealPublicKey: Uint8Array;
  readonly peerRealPublicKey: Uint8Array;
  readonly sessionKey: Uint8Array;
  readonly selfNonce: Uint8Array;
  readonly peerNonce: Uint8Array;
}

/**
 * The Tox layer of `deno task decode`: TCP stream events in, one ToxRecord per thing on the
 * wire out (a proxy step, a handshake half, a frame), layers from the outside in, decrypted
 * as far as the key log allows. Sans-I/O and synchronous, like every stage of the pipeline.
 *
 * Per stream:
 *   recognise ─▶ [SOCKS5 | HTTP CONNECT preamble ─▶ recognise again] ─▶ 128/96-byte handshake
 *   ─▶ frames (FrameReader) ─▶ relay packet ─▶ net_crypto packet ─▶ friend/Messenger payload
 *                                            └─▶ onion packet (relay packets 8 and 9)
 *
 * Recognising: a stream is Tox when its server port is a relay port and nothing contradicts
 * it, when the key log names its handshake nonce, or by shape: the client's first 128 bytes
 * answered by exactly 96. Until that is settled its bytes are held (a few hundred at most)
 * and replayed in arrival order once it is. After a proxy preamble only the shape and the
 * key log count: the port is the proxy's.
 *
 * net_crypto sessions are tracked across streams: one receive nonce per (session key, sender
 * base nonce), so a session whose packets alternate between two relays decodes throughout,
 * and a session logged by both of its ends is tracked once.
 *
 * Hot path (a frame): one FrameReader step, one openFrame into a shared scratch buffer, one
 * decodeRelayPacket, and for net_crypto data one openDataPacket; keys are turned into hex once
 * per stream or route, never per frame.
 */
import { bytesEqual, incrementNonceNumber, MAC_SIZE, NONCE_SIZE, toHex } from "../common/crypto.ts";
import {
  decodeFriendPacket,
  friendPacketName,
  isLossyId,
  PACKET_ID_REQUEST,
} from "../friend_connection/friend_packets.ts";
import {
  advanceRecvNonce,
  COOKIE_RESPONSE_LENGTH,
  cookieRequestSender,
  decodeDataPlain,
  HANDSHAKE_PACKET_LENGTH,
  MAX_CRYPTO_PACKET_SIZE,
  NET_PACKET_COOKIE_REQUEST,
  NET_PACKET_COOKIE_RESPONSE,
  NET_PACKET_CRYPTO_DATA,
  NET_PACKET_CRYPTO_HS,
  openDataPacket,
  PACKET_ID_RANGE_LOSSLESS_END,
  PACKET_ID_RANGE_LOSSLESS_START,
  walkRequestPacket,
} from "../net_crypto/packets.ts";
import {
  announceResponseSendback,
  dataResponseKey,
  decodeOnionRequestTcp,
  NET_PACKET_ANNOUNCE_RESPONSE,
  NET_PACKET_ONION_DATA_RESPONSE,
} from "../onion/packets.ts";
import {
  decodePackedNodes,
  packedNodeToRelay,
  TOX_AF_INET,
  TOX_AF_INET6,
} from "../common/packed_node.ts";
import { formatRelayAddress } from "../common/relay_address.ts";
import { FrameReader, newFrameScratch, openFrame } from "../tcp_common/framing.ts";
import {
  CLIENT_HANDSHAKE_SIZE,
  parseClientHandshake,
  type SecureSession,
  SERVER_HANDSHAKE_SIZE,
} from "../tcp_common/handshake.ts";
import { MAX_HTTP_REPLY_HEADER } from "../relay_client/proxy.ts";
import { decodeRelayPacket, MAX_PACKET_SIZE, packetName } from "../tcp_common/packets.ts";
import type { KeyStore, NetCryptoKeys, TcpSessionKeys } from "./keylog.ts";
import {
  type FriendLayer,
  type Layer,
  type NetCryptoLayer,
  type OnionLayer,
  PREVIEW_BYTES,
  type ProxyLayer,
  type Sender,
  type TcpFrameLayer,
  type TcpHandshakeLayer,
  type ToxNotice,
  type ToxOutput,
  type ToxRecord,
} from "./tox_records.ts";
import {
  type Direction,
  type Endpoint,
  type StreamEvent,
  type StreamInfo,
  type Timestamp,
} from "./types.ts";

/** tox-bootstrapd's DEFAULT_TCP_RELAY_PORTS. */
export const DEFAULT_RELAY_PORTS: readonly number[] = [33445, 443, 3389];

export interface ToxStreamDecoderOptions {
  readonly keys: KeyStore;
  /** Server ports where a stream is taken for a relay stream (default 33445, 443, 3389). */
  readonly relayPorts?: readonly number[];
  /** Recognise relay streams on other ports (and behind proxies) by the handshake's shape. */
  readonly detectByShape?: boolean;
}

export interface DirectionSummary {
  /** Every byte the reassembler delivered in this direction. */
  readonly bytes: number;
  /** Encrypted frames after the handshake. */
  readonly frames: number;
  /** Frames whose MAC verified with the key log. */
  readonly decrypted: number;
  /** Gap events (bytes the capture does not have). */
  readonly gaps: number;
  /** Why the rest of this direction could not be decoded, when it could not. */
  readonly undecodable?: string;
  /** Frame number (nonce counter) of the first frame that failed its MAC. */
  readonly macFailedAtFrame?: number;
  readonly firstFrame?: Timestamp;
}

export interface RouteSummary {
  readonly connectionId: number;
  /** The peer's DHT key, as the relay's ROUTING_RESPONSE named it. */
  readonly publicKey: string;
  /**
   * routed: the relay took the request; online: CONNECTION_NOTIFICATION (the peer is on this
   * relay too); offline: DISCONNECT_NOTIFICATION from the relay (the slot stays); freed: the
   * client's DISCONNECT_NOTIFICATION gave the slot up.
   */
  readonly state: "routed" | "online" | "offline" | "freed";
  readonly routedAt: Timestamp;
  readonly onlineAt?: Timestamp;
  /** DATA packets on this route, client → relay and relay → client. */
  readonly dataC2s: number;
  readonly dataS2c: number;
}

export interface StreamSummary {
  readonly stream: number;
  readonly client: Endpoint;
  readonly server: Endpoint;
  /** detecting: not settled yet (still waiting for handshake bytes). */
  readonly state: "detecting" | "tox" | "not_tox";
  readonly detectedBy?: "port" | "shape" | "key_log";
  readonly notToxReason?: string;
  readonly proxy?: {
    readonly kind: "socks5" | "http_connect";
    readonly target?: string;
    /** false: the proxy refused; undefined: its answer was not seen. */
    readonly ok?: boolean;
  };
  readonly clientPublicKey?: string;
  readonly relayPublicKey?: string;
  /** A TCP_SESSION key log entry matched the handshake. */
  readonly keyed: boolean;
  readonly c2s: DirectionSummary;
  readonly s2c: DirectionSummary;
  readonly first: Timestamp;
  readonly last: Timestamp;
  readonly handshakeRequest?: Timestamp;
  readonly handshakeResponse?: Timestamp;
  /** Handshake request → response. */
  readonly handshakeMs?: number;
  /** The first relay DATA packet (needs the key log). */
  readonly firstData?: Timestamp;
  /** Handshake response → first DATA. */
  readonly firstDataMs?: number;
  /** PING → PONG round trips seen, either side pinging. */
  readonly ping?: {
    readonly n: number;
    readonly minMs: number;
    readonly avgMs: number;
    readonly maxMs: number;
    readonly lastMs: number;
  };
  /** Every route the relay granted on this stream, in order. */
  readonly routes: readonly RouteSummary[];
  readonly routesRefused: number;
  readonly oobSent: number;
  readonly oobReceived: number;
  /** Relay packets 8 (client → relay) and 9 (relay → client). */
  readonly onionRequests: number;
  readonly onionResponses: number;
  /** net_crypto data packets carried (DATA and OOB), and how many were opened. */
  readonly netCryptoData: number;
  readonly netCryptoDecrypted: number;
  readonly closed?: {
    readonly how: "fin" | "rst" | "end";
    readonly by?: Direction;
    readonly ts: Timestamp;
  };
}

// ---------------------------------------------------------------------------------------------
// Per-direction stages

const STAGE_WAIT = 0; // held until the stream is recognised
const STAGE_SOCKS_GREETING = 1; // c2s
const STAGE_SOCKS_CHOICE = 2; // s2c
const STAGE_SOCKS_REQUEST = 3; // c2s
const STAGE_SOCKS_REPLY = 4; // s2c
const STAGE_HTTP_REQUEST = 5; // c2s
const STAGE_HTTP_REPLY = 6; // s2c
const STAGE_HANDSHAKE = 7; // 128 bytes c2s, 96 s2c
const STAGE_FRAMES = 8;
const STAGE_DEAD = 9; // nothing more is decoded in this direction

/** id ‖ 2 nonce bytes ‖ MAC: a net_crypto data packet must be longer than this. */
const NET_DATA_MIN = 1 + 2 + MAC_SIZE;
/** Ping ids remembered per direction for RTTs (c-toxcore has one outstanding). */
const MAX_PINGS = 8;
/** Text from the wire in proxy steps: printable and bounded (it reaches terminals). */
const MAX_STEP_TEXT = 100;

const HTTP_CONNECT = new TextEncoder().encode("CONNECT ");
const latin1 = new TextDecoder("latin1");
const NO_OUTPUTS: readonly ToxOutput[] = Object.freeze([]);

/** A growable byte buffer for the unframed parts (proxy steps, handshake, recognition). */
class ByteAcc {
  buf: Uint8Array = new Uint8Array(0);
  len = 0;
  /** Stream offset of buf[0]. */
  start = 0;

  append(b: Uint8Array): void {
    if (this.len + b.length > this.buf.length) {
      const grown = new Uint8Array(Math.max(256, 2 * this.buf.length, this.len + b.length));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** Drop the first n bytes. */
  consume(n: number): void {
    this.buf.copyWithin(0, n, this.len);
    this.len -= n;
    this.start += n;
  }

  /** Take everything held, as a copy, leaving the buffer empty. */
  takeRest(): Uint8Array {
    const rest = this.buf.slice(0, this.len);
    this.start += this.len;
    this.len = 0;
    return rest;
  }
}

/** One relay-granted route of a stream's client. */
class Route {
  state: RouteSummary["state"] = "routed";
  onlineAt: Timestamp | undefined = undefined;
  dataC2s = 0;
  dataS2c = 0;
  /** The net_crypto pair (client, peer), looked up on first use. */
  pair: Pair | null = null;
  constructor(
    readonly connectionId: number,
    readonly publicKey: Uint8Array,
    readonly hex: string,
    readonly routedAt: Timestamp,
  ) {}
}

class Dir {
  stage = STAGE_WAIT;
  readonly acc = new ByteAcc();
  reader: FrameReader | null = null;
  /** Stream offset just past the bytes handed to the reader. */
  pushedEnd = 0;
  /** Stream offset just past the last frame taken (zero lengths skipped show up as a jump). */
  lastEnd = 0;
  /** Frames taken: the nonce counter of the next one. */
  seq = 0;
  session: SecureSession | null = null;
  macFailed = false;
  emptyNoticed = false;
  /** Ping id → when it was sent in this direction (made on the first PING). */
  pings: Map<bigint, Timestamp> | null = null;
  bytes = 0;
  frames = 0;
  decrypted = 0;
  gaps = 0;
  undecodable: string | undefined = undefined;
  macFailedAt = -1;
  firstFrame: Timestamp | undefined = undefined;

  constructor(readonly dir: Direction, readonly sender: Sender) {}
}

interface Held {
  readonly dir: 0 | 1;
  readonly from: number;
  readonly length: number;
  readonly offset: number;
  readonly ts: Timestamp;
  readonly frame: number;
}

type Verdict =
  | { readonly verdict: "wait" }
  | { readonly verdict: "tox"; readonly by: "port" | "shape" | "key_log" }
  | { readonly verdict: "socks5" | "http_connect" }
  | { readonly verdict: "not_tox"; readonly why: string };

const WAIT: Verdict = { verdict: "wait" };

class Stream {
  readonly id: number;
  readonly c2s = new Dir("c2s", "client");
  readonly s2c = new Dir("s2c", "relay");
  state: StreamSummary["state"] = "detecting";
  /** not Tox (or a refused proxy): data is dropped at the door. */
  ignored = false;
  // recognition
  det: [ByteAcc, ByteAcc] | null = [new ByteAcc(), new ByteAcc()];
  held: Held[] = [];
  c2sAtFirstS2c = -1;
  proxyAllowed = true;
  relayPort: boolean;
  toxDecided = false;
  keyChecked = false;
  keyMatch = false;
  detectedBy: StreamSummary["detectedBy"] = undefined;
  notToxReason: string | undefined = undefined;
  proxyKind: "socks5" | "http_connect" | undefined = undefined;
  proxyTarget: string | undefined = undefined;
  proxyOk: boolean | undefined = undefined;
  // the session
  clientPk: Uint8Array | null = null;
  clientHex: string | undefined = undefined;
  hsNonce: Uint8Array | null = null;
  tcpKeys: TcpSessionKeys | null = null;
  /** KeyStore size at the last TCP_SESSION lookup: look again only when keys were added. */
  keysSeen = -1;
  relayHex: string | undefined = undefined;
  noKeyNoticed = false;
  slots: (Route | undefined)[] | null = null;
  readonly routes: Route[] = [];
  routesRefused = 0;
  oobPairs: Map<string, Pair> | null = null;
  oobSent = 0;
  oobReceived = 0;
  onionRequests = 0;
  onionResponses = 0;
  netCryptoData = 0;
  netCryptoDecrypted = 0;
  // timing
  first: Timestamp;
  last: Timestamp;
  hsRequest: Timestamp | undefined = undefined;
  hsResponse: Timestamp | undefined = undefined;
  firstData: Timestamp | undefined = undefined;
  rttN = 0;
  rttSum = 0;
  rttMin = Infinity;
  rttMax = 0;
  rttLast = 0;
  closed: StreamSummary["closed"] = undefined;

  constructor(readonly info: StreamInfo, ts: Timestamp, relayPort: boolean) {
    this.id = info.id;
    this.first = ts;
    this.last = ts;
    this.relayPort = relayPort;
  }
}

/**
 * The receive side of one sender in one net_crypto session: what net_crypto keeps as
 * recv_nonce, plus the sender's send-array end (for reading the other side's requests).
 */
class Tracker {
  /** The sender's send_array.buffer_end as its packets reveal it; -1 unknown. */
  sendEnd = -1;
  partner: Tracker | null = null;
  constructor(readonly sharedKey: Uint8Array, readonly recvNonce: Uint8Array) {}
}

/** The candidate trackers for packets from one side of a DHT key pair. */
class PairSender {
  trackers: Tracker[] = [];
  last: Tracker | null = null;
}

/** Two DHT keys a net_crypto session may run between, with their key log entries. */
class Pair {
  /** KeyStore size when the entries were read. */
  storeSize = -1;
  entryCount = 0;
  readonly senders: [PairSender, PairSender] = [new PairSender(), new PairSender()];
  realKeys: string[] = [];
  constructor(readonly a: Uint8Array, readonly b: Uint8Array) {}
}

function pairKey(aHex: string, bHex: string): string {
  return aHex < bHex ? aHex + bHex : bHex + aHex;
}

/** Printable, bounded text from the wire. */
function clean(raw: string): string {
  // deno-lint-ignore no-control-regex
  const s = raw.replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
  return s.length > MAX_STEP_TEXT ? `${s.slice(0, MAX_STEP_TEXT)}…` : s;
}

function hexPreview(data: Uint8Array): string {
  return toHex(data.length > PREVIEW_BYTES ? data.subarray(0, PREVIEW_BYTES) : data);
}

/** A plausible frame header at `at` (or not enough bytes to tell). */
function plausibleFrame(b: Uint8Array, len: number, at: number): boolean {
  if (len < at + 2) return true;
  const n = (b[at] << 8) | b[at + 1];
  return n > MAC_SIZE && n <= MAX_PACKET_SIZE;
}

/** End of an HTTP header (just past its blank line; LF or CRLF line ends), or -1. */
function headerEnd(b: Uint8Array, len: number): number {
  for (let i = 0; i < len; i++) {
    if (b[i] !== 0x0a) continue;
    if (i + 1 < len && b[i + 1] === 0x0a) return i + 2;
    if (i + 2 < len && b[i + 1] === 0x0d && b[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/** "host:port" of a SOCKS5 address (ATYP at b[3]); null when the type is unknown. */
function socksAddress(b: Uint8Array, len: number): { size: number; text: string } | null {
  const atyp = b[3];
  let addr: number;
  if (atyp === 1) addr = 4;
  else if (atyp === 4) addr = 16;
  else if (atyp === 3) {
    if (len < 5) return { size: -1, text: "" };
    addr = 1 + b[4];
  } else return null;
  const size = 4 + addr + 2;
  if (len < size) return { size: -1, text: "" };
  const port = (b[4 + addr] << 8) | b[5 + addr];
  if (atyp === 3) return { size, text: `${clean(latin1.decode(b.subarray(5, 4 + addr)))}:${port}` };
  // The packed-node codec already prints addresses canonically (RFC 5952 for IPv6).
  const node = new Uint8Array(1 + addr + 2 + 32);
  node[0] = atyp === 1 ? TOX_AF_INET : TOX_AF_INET6;
  node.set(b.subarray(4, 4 + addr), 1);
  const r = decodePackedNodes(node, 1);
  const host = r.ok ? r.value.nodes[0].host : "?";
  return { size, text: formatRelayAddress({ host, port, publicKey: "" }) };
}

/** Milliseconds from a to b, to the microsecond (capture clocks carry no more). */
function msBetween(a: Timestamp, b: Timestamp): number {
  return Math.round((b.sec - a.sec) * 1e6 + (b.nsec - a.nsec) / 1e3) / 1e3;
}

function relayKind(firstByte: number): string {
  return packetName(firstByte).toLowerCase();
}

export class ToxStreamDecoder {
  readonly #keys: KeyStore;
  readonly #relayPorts: ReadonlySet<number>;
  readonly #shape: boolean;
  readonly #streams: (Stream | undefined)[] = [];
  /** Streams by id when ids are not small integers. */
  readonly #sparse = new Map<number, Stream>();
  readonly #pairs = new Map<string, Pair>();
  readonly #trackers = new Map<string, Tracker>();
  readonly #scratch = newFrameScratch();
  #out: ToxOutput[] = [];
  #toxStreams = 0;

  constructor(opts: ToxStreamDecoderOptions) {
    this.#keys = opts.keys;
    this.#relayPorts = new Set(opts.relayPorts ?? DEFAULT_RELAY_PORTS);
    this.#shape = opts.detectByShape ?? true;
  }

  /** Streams recognised as Tox relay streams so far. */
  get toxStreams(): number {
    return this.#toxStreams;
  }

  /** One event; returns the records and notices it completed, in wire order. */
  push(ev: StreamEvent): readonly ToxOutput[] {
    this.#handle(ev);
    if (this.#out.length === 0) return NO_OUTPUTS;
    const out = this.#out;
    this.#out = [];
    return out;
  }

  #handle(ev: StreamEvent): void {
    const st = this.#stream(ev.stream, ev.ts, ev.frame);
    st.last = ev.ts;
    switch (ev.kind) {
      case "data": {
        const d = ev.dir === "c2s" ? st.c2s : st.s2c;
        d.bytes += ev.bytes.length;
        if (ev.bytes.length === 0) return;
        if (d.stage === STAGE_FRAMES) this.#frames(st, d, ev.bytes, ev.ts, ev.frame);
        else if (d.stage !== STAGE_DEAD) {
          this.#feed(st, d, ev.bytes, ev.offset, ev.ts, ev.frame);
        }
        return;
      }
      case "gap":
        return this.#gap(st, ev.dir, ev.offset, ev.length, ev.ts, ev.frame);
      case "close":
        return this.#close(st, ev.how, ev.by, ev.ts, ev.frame);
      case "open":
        return;
    }
  }

  #stream(info: StreamInfo, ts: Timestamp, frame: number): Stream {
    const id = info.id;
    let st = id >= 0 && id < 1 << 24 ? this.#streams[id] : this.#sparse.get(id);
    if (st !== undefined) return st;
    st = new Stream(info, ts, this.#relayPorts.has(info.server.port));
    if (id >= 0 && id < 1 << 24) this.#streams[id] = st;
    else this.#sparse.set(id, st);
    if (!this.#shape && !st.relayPort) {
      this.#notTox(st, `server port ${info.server.port} is not a relay port`, ts, frame);
    }
    return st;
  }

  // ---- bytes before the frames --------------------------------------------------------------

  #feed(st: Stream, d: Dir, bytes: Uint8Array, offset: number, ts: Timestamp, frame: number): void {
    switch (d.stage) {
      case STAGE_FRAMES:
        return this.#frames(st, d, bytes, ts, frame);
      case STAGE_DEAD:
        return;
      case STAGE_WAIT:
        return this.#hold(st, d, bytes, offset, ts, frame);
    }
    if (d.acc.len === 0) d.acc.start = offset;
    d.acc.append(bytes);
    while (this.#step(st, d, ts, frame)) { /* one item per step */ }
    // The item that ended the unframed part may leave bytes for the next stage.
    if (d.acc.len > 0 && (d.stage === STAGE_FRAMES || d.stage === STAGE_WAIT)) {
      const at = d.acc.start;
      this.#feed(st, d, d.acc.takeRest(), at, ts, frame);
    }
  }

  /** Parse one unframed item from d.acc; false when it needs more bytes (or is done). */
  #step(st: Stream, d: Dir, ts: Timestamp, frame: number): boolean {
    const acc = d.acc;
    const b = acc.buf;
    const n = acc.len;
    switch (d.stage) {
      case STAGE_HANDSHAKE:
        return this.#handshake(st, d, ts, frame);
      case STAGE_SOCKS_GREETING: {
        if (n < 2 || n < 2 + b[1]) return false;
        const size = 2 + b[1];
        const methods = Array.from(b.subarray(2, size), (m) => m.toString(16).padStart(2, "0"));
        const step = methods.length === 1 && b[2] === 0
          ? "greeting (no auth)"
          : `greeting methods ${methods.join(",")}`;
        this.#proxyRecord(st, d, "socks5", step, undefined, size, ts, frame);
        d.stage = STAGE_SOCKS_REQUEST;
        return true;
      }
      case STAGE_SOCKS_CHOICE: {
        if (n < 2) return false;
        const ok = b[0] === 5 && b[1] === 0;
        const step = ok
          ? "method no auth"
          : b[1] === 0xff
          ? "no acceptable method"
          : `method 0x${b[1].toString(16).padStart(2, "0")}`;
        this.#proxyRecord(st, d, "socks5", step, ok, 2, ts, frame);
        if (!ok) this.#proxyRefused(st);
        else d.stage = STAGE_SOCKS_REPLY;
        return ok;
      }
      case STAGE_SOCKS_REQUEST:
      case STAGE_SOCKS_REPLY: {
        if (n < 4) return false;
        const request = d.stage === STAGE_SOCKS_REQUEST;
        const addr = socksAddress(b, n);
        if (addr === null) {
          const step = `${request ? "connect request" : "reply"} with address type ${b[3]}`;
          this.#proxyRecord(st, d, "socks5", step, false, n, ts, frame);
          this.#undecodable(st, d, "a SOCKS5 message this decoder cannot read", ts, frame);
          return false;
        }
        if (addr.size < 0) return false;
        if (request) {
          st.proxyTarget = addr.text;
          const step = b[1] === 1
            ? `connect ${addr.text}`
            : `command 0x${b[1].toString(16)} ${addr.text}`;
          this.#proxyRecord(st, d, "socks5", step, undefined, addr.size, ts, frame);
          return this.#endPreamble(st, d);
        }
        const ok = b[0] === 5 && b[1] === 0;
        const step = ok ? "reply ok" : `reply refused (0x${b[1].toString(16).padStart(2, "0")})`;
        this.#proxyRecord(st, d, "socks5", step, ok, addr.size, ts, frame);
        if (!ok) {
          this.#proxyRefused(st);
          return false;
        }
        st.proxyOk = true;
        return this.#endPreamble(st, d);
      }
      case STAGE_HTTP_REQUEST:
      case STAGE_HTTP_REPLY: {
        const request = d.stage === STAGE_HTTP_REQUEST;
        const end = headerEnd(b, n);
        if (end < 0) {
          if (n > MAX_HTTP_REPLY_HEADER) {
            this.#undecodable(st, d, `no end to an HTTP header in ${n} bytes`, ts, frame);
          }
          return false;
        }
        const lf = b.indexOf(0x0a);
        let line = latin1.decode(b.subarray(0, lf));
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (request) {
          const m = /^CONNECT (\S+) HTTP\/1\.[0-9]$/.exec(line);
          if (m !== null) st.proxyTarget = clean(m[1]);
          const step = m !== null ? `CONNECT ${st.proxyTarget}` : clean(line);
          this.#proxyRecord(st, d, "http_connect", step, undefined, end, ts, frame);
          return this.#endPreamble(st, d);
        }
        const ok = /^HTTP\/1\.[0-9] 200(?: |$)/.test(line);
        this.#proxyRecord(st, d, "http_connect", clean(line), ok, end, ts, frame);
        if (!ok) {
          this.#proxyRefused(st);
          return false;
        }
        st.proxyOk = true;
        return this.#endPreamble(st, d);
      }
    }
    return false;
  }

  #proxyRecord(
    st: Stream,
    d: Dir,
    kind: ProxyLayer["kind"],
    step: string,
    ok: boolean | undefined,
    size: number,
    ts: Timestamp,
    frame: number,
  ): void {
    const layer: ProxyLayer = ok === undefined
      ? { proto: "proxy", kind, step }
      : { proto: "proxy", kind, step, ok };
    const offset = d.acc.start;
    d.acc.consume(Math.min(size, d.acc.len));
    this.#record(st, d, frame, ts, offset, size, [layer]);
  }

  /**
   * A direction's proxy part is over: what follows is the Tox handshake (or is held until
   * the stream is recognised). True when the next item is parsed from the same buffer.
   */
  #endPreamble(st: Stream, d: Dir): boolean {
    if (st.ignored) d.stage = STAGE_DEAD;
    else if (st.toxDecided) d.stage = STAGE_HANDSHAKE;
    else d.stage = STAGE_WAIT;
    return d.stage === STAGE_HANDSHAKE;
  }

  #proxyRefused(st: Stream): void {
    st.proxyOk = false;
    st.ignored = true;
    st.state = "not_tox";
    st.notToxReason = "the proxy refused the connection";
    st.det = null;
    st.held = [];
    st.c2s.stage = STAGE_DEAD;
    st.s2c.stage = STAGE_DEAD;
  }

  /** The 128-byte request (c2s) or the 96-byte response (s2c). */
  #handshake(st: Stream, d: Dir, ts: Timestamp, frame: number): boolean {
    const acc = d.acc;
    const size = d.dir === "c2s" ? CLIENT_HANDSHAKE_SIZE : SERVER_HANDSHAKE_SIZE;
    if (acc.len < size) return false;
    const offset = acc.start;
    const bytes = acc.buf.subarray(0, size);
    let layer: TcpHandshakeLayer;
    if (d.dir === "c2s") {
      const f = parseClientHandshake(bytes);
      if (!f.ok) return false; // unreachable: exactly 128 bytes are there
      st.clientPk = f.value.clientPublicKey.slice();
      st.clientHex = toHex(st.clientPk);
      st.hsNonce = f.value.nonce.slice();
      st.hsRequest ??= ts;
      this.#lookupTcpKeys(st);
      const nonce = toHex(st.hsNonce);
      const keyed = st.tcpKeys !== null;
      layer = st.relayHex === undefined
        ? { proto: "tcp_handshake", kind: "request", clientPublicKey: st.clientHex, nonce, keyed }
        : {
          proto: "tcp_handshake",
          kind: "request",
          clientPublicKey: st.clientHex,
          nonce,
          relayPublicKey: st.relayHex,
          keyed,
        };
    } else {
      st.hsResponse ??= ts;
      this.#lookupTcpKeys(st);
      const nonce = toHex(bytes.subarray(0, NONCE_SIZE));
      const keyed = st.tcpKeys !== null;
      layer = st.relayHex === undefined
        ? { proto: "tcp_handshake", kind: "response", nonce, keyed }
        : { proto: "tcp_handshake", kind: "response", nonce, relayPublicKey: st.relayHex, keyed };
    }
    this.#record(st, d, frame, ts, offset, size, [layer]);
    acc.consume(size);
    d.stage = STAGE_FRAMES;
    d.reader = new FrameReader();
    d.pushedEnd = acc.start;
    d.lastEnd = acc.start;
    return false;
  }

  #lookupTcpKeys(st: Stream): void {
    if (st.tcpKeys !== null || st.hsNonce === null || st.keysSeen === this.#keys.size) return;
    st.keysSeen = this.#keys.size;
    const k = this.#keys.tcpSession(st.hsNonce);
    if (k === undefined) return;
    st.tcpKeys = k;
    st.relayHex = toHex(k.relayPublicKey);
  }

  // ---- recognition --------------------------------------------------------------------------

  #hold(st: Stream, d: Dir, bytes: Uint8Array, offset: number, ts: Timestamp, frame: number): void {
    const det = st.det;
    if (det === null) return;
    const i = d.dir === "c2s" ? 0 : 1;
    const acc = det[i];
    if (i === 1 && acc.len === 0 && st.c2sAtFirstS2c < 0) st.c2sAtFirstS2c = det[0].len;
    if (acc.len === 0) acc.start = offset;
    st.held.push({ dir: i, from: acc.len, length: bytes.length, offset, ts, frame });
    acc.append(bytes);
    const v = this.#classify(st, false);
    if (v.verdict !== "wait") this.#decide(st, v, ts, frame);
  }

  #classify(st: Stream, atClose: boolean): Verdict {
    const det = st.det!;
    const cb = det[0].buf;
    const c = det[0].len;
    const sb = det[1].buf;
    const s = det[1].len;
    const c0 = st.c2sAtFirstS2c;
    if (st.proxyAllowed && this.#shape) {
      const k = Math.min(c, HTTP_CONNECT.length);
      let connect = k > 0;
      for (let i = 0; i < k && connect; i++) connect = cb[i] === HTTP_CONNECT[i];
      if (connect) {
        if (c >= HTTP_CONNECT.length) return { verdict: "http_connect" };
        if (!atClose && s === 0) return WAIT;
      }
      if (c >= 1 && cb[0] === 5) {
        if (c < 2) {
          if (!atClose && s === 0) return WAIT;
        } else if (cb[1] >= 1) {
          const greeting = 2 + cb[1];
          if (s > 0 && c0 === greeting && sb[0] === 5) return { verdict: "socks5" };
          // A SOCKS5 client waits for the method choice after its greeting.
          if (s === 0 && c <= greeting && !atClose) return WAIT;
        }
      }
    }
    if (c >= CLIENT_HANDSHAKE_SIZE && this.#keys.size > 0 && !st.keyChecked) {
      st.keyChecked = true;
      st.keyMatch = this.#keys.tcpSession(cb.subarray(32, 56)) !== undefined;
    }
    if (st.keyMatch) return { verdict: "tox", by: "key_log" };
    const after = st.proxyKind === undefined ? "" : " after the proxy preamble";
    if (c0 >= 0) {
      if (c0 !== CLIENT_HANDSHAKE_SIZE) {
        return {
          verdict: "not_tox",
          why: `the client sent ${c0} bytes${after} before the server's first, ` +
            `not a 128-byte Tox handshake`,
        };
      }
      if (st.relayPort) return { verdict: "tox", by: "port" };
      if (!this.#shape) return { verdict: "not_tox", why: "not a relay port" };
      if (s < SERVER_HANDSHAKE_SIZE) {
        if (c > CLIENT_HANDSHAKE_SIZE) {
          return {
            verdict: "not_tox",
            why: `the client sent more before the server's ${s} bytes reached 96`,
          };
        }
        if (!atClose) return WAIT;
        return { verdict: "not_tox", why: `the server answered 128 bytes with only ${s}` };
      }
      // The relay says nothing more until the client's first frame: exactly 96 bytes.
      if (!plausibleFrame(sb, s, SERVER_HANDSHAKE_SIZE)) {
        return { verdict: "not_tox", why: `the server answered 128 bytes with ${s}, not 96` };
      }
      if (!plausibleFrame(cb, c, CLIENT_HANDSHAKE_SIZE)) {
        return { verdict: "not_tox", why: "no Tox frame after the 128/96-byte exchange" };
      }
      return { verdict: "tox", by: "shape" };
    }
    if (c > CLIENT_HANDSHAKE_SIZE) {
      return {
        verdict: "not_tox",
        why: `the client sent ${c} bytes${after} without an answer, not a 128-byte handshake`,
      };
    }
    if (!atClose) return WAIT;
    // A relay closes without a word on a handshake it cannot open (a wrong relay key).
    if (c === CLIENT_HANDSHAKE_SIZE && st.relayPort) return { verdict: "tox", by: "port" };
    return {
      verdict: "not_tox",
      why: c === 0 && s === 0
        ? `closed before any byte${after}`
        : `closed after ${c} client bytes${after} and no Tox handshake`,
    };
  }

  #decide(st: Stream, v: Verdict, ts: Timestamp, frame: number): void {
    if (v.verdict === "wait") return;
    if (v.verdict === "not_tox") {
      const where = st.relayPort ? ` (on relay port ${st.info.server.port})` : "";
      const hint = st.info.sawSyn ? "" : "; the capture may have started mid-stream";
      this.#notTox(st, `${v.why}${where}${hint}`, ts, frame);
      return;
    }
    const det = st.det!;
    const held = st.held;
    st.held = [];
    st.c2sAtFirstS2c = -1;
    if (v.verdict === "tox") {
      st.toxDecided = true;
      st.state = "tox";
      st.detectedBy = v.by;
      st.det = null;
      this.#toxStreams++;
      if (st.c2s.stage === STAGE_WAIT) st.c2s.stage = STAGE_HANDSHAKE;
      if (st.s2c.stage === STAGE_WAIT) st.s2c.stage = STAGE_HANDSHAKE;
      const how = v.by === "port"
        ? `its server port ${st.info.server.port}`
        : v.by === "key_log"
        ? "its handshake nonce, found in the key log"
        : "its handshake shape (128 bytes answered by 96)";
      const via = st.proxyKind === undefined
        ? ""
        : ` through a ${st.proxyKind === "socks5" ? "SOCKS5" : "HTTP CONNECT"} proxy` +
          (st.proxyTarget !== undefined ? ` to ${st.proxyTarget}` : "");
      this.#notice(
        st,
        undefined,
        frame,
        ts,
        "info",
        "stream_detected",
        `Tox relay stream${via}, recognised by ${how}`,
      );
    } else {
      st.proxyKind = v.verdict;
      st.proxyAllowed = false;
      // Past a proxy the port is the proxy's: only shape and key log tell.
      st.relayPort = false;
      st.det = [new ByteAcc(), new ByteAcc()];
      const socks = v.verdict === "socks5";
      st.c2s.stage = socks ? STAGE_SOCKS_GREETING : STAGE_HTTP_REQUEST;
      st.s2c.stage = socks ? STAGE_SOCKS_CHOICE : STAGE_HTTP_REPLY;
    }
    // Replay what was held, in arrival order, through the stages just chosen.
    for (const h of held) {
      const d = h.dir === 0 ? st.c2s : st.s2c;
      const bytes = det[h.dir].buf.subarray(h.from, h.from + h.length);
      this.#feed(st, d, bytes, h.offset, h.ts, h.frame);
    }
  }

  #notTox(st: Stream, why: string, ts: Timestamp, frame: number): void {
    giveUp(st, why);
    this.#notice(st, undefined, frame, ts, "info", "not_tox", `not a Tox relay stream: ${why}`);
  }

  // ---- frames -------------------------------------------------------------------------------

  #frames(st: Stream, d: Dir, bytes: Uint8Array, ts: Timestamp, frame: number): void {
    const reader = d.reader!;
    reader.push(bytes);
    d.pushedEnd += bytes.length;
    for (;;) {
      const r = reader.next();
      if (r.kind === "need_more") return;
      if (r.kind === "error") {
        this.#undecodable(
          st,
          d,
          `${r.error.message} at offset ${d.pushedEnd - reader.buffered}`,
          ts,
          frame,
        );
        return;
      }
      const box = r.box;
      const end = d.pushedEnd - reader.buffered;
      const start = end - 2 - box.length;
      if (start !== d.lastEnd && !d.emptyNoticed) {
        d.emptyNoticed = true;
        this.#notice(
          st,
          d.dir,
          frame,
          ts,
          "info",
          "empty_frame",
          `${start - d.lastEnd} bytes of zero-length frame headers at offset ${d.lastEnd}, ` +
            `skipped as c-toxcore skips them`,
        );
      }
      d.lastEnd = end;
      this.#frame(st, d, box, start, ts, frame);
    }
  }

  #frame(st: Stream, d: Dir, box: Uint8Array, offset: number, ts: Timestamp, frame: number): void {
    if (st.tcpKeys === null && st.keysSeen !== this.#keys.size) this.#lookupTcpKeys(st);
    const seq = d.seq;
    d.seq = seq + 1;
    d.frames++;
    d.firstFrame ??= ts;
    const wire = box.length + 2;
    if (d.session === null && st.tcpKeys !== null && !d.macFailed) {
      // Keys that arrive late (a pcapng secrets block after the handshake) still fit: the
      // nonce is the base plus the frames already counted.
      const base = d.dir === "c2s" ? st.tcpKeys.clientNonce : st.tcpKeys.relayNonce;
      const recvNonce = base.slice();
      incrementNonceNumber(recvNonce, seq);
      d.session = { sharedKey: st.tcpKeys.sessionKey, sendNonce: recvNonce, recvNonce };
    }
    if (d.session === null) {
      if (st.tcpKeys === null && !st.noKeyNoticed && this.#keys.size > 0) {
        st.noKeyNoticed = true;
        this.#notice(
          st,
          undefined,
          frame,
          ts,
          "info",
          "no_key",
          st.hsNonce === null
            ? "the handshake was not seen: frames stay encrypted"
            : `no TCP_SESSION entry for handshake nonce ${
              toHex(st.hsNonce)
            }: frames stay encrypted`,
        );
      }
      const layer: TcpFrameLayer = d.macFailed
        ? {
          proto: "tcp_frame",
          length: box.length,
          seq,
          decrypted: false,
          error: `not opened: frame ${d.macFailedAt} failed its MAC`,
        }
        : { proto: "tcp_frame", length: box.length, seq, decrypted: false };
      this.#record(st, d, frame, ts, offset, wire, [layer]);
      return;
    }
    const plain = openFrame(d.session, box, this.#scratch);
    if (plain === null) {
      d.session = null;
      d.macFailed = true;
      d.macFailedAt = seq;
      this.#notice(
        st,
        d.dir,
        frame,
        ts,
        "warn",
        "mac_failed",
        `frame ${seq} does not open with the key log's session key: wrong key, or bytes ` +
          `altered; the rest of ${d.dir} is shown encrypted`,
      );
      this.#record(st, d, frame, ts, offset, wire, [{
        proto: "tcp_frame",
        length: box.length,
        seq,
        decrypted: false,
        error: "MAC failed",
      }]);
      return;
    }
    d.decrypted++;
    const layers: Layer[] = [{ proto: "tcp_frame", length: box.length, seq, decrypted: true }];
    this.#relay(st, d, plain, ts, layers);
    this.#record(st, d, frame, ts, offset, wire, layers);
  }

  /** The relay packet inside an opened frame (a view into the scratch buffer). */
  #relay(st: Stream, d: Dir, plain: Uint8Array, ts: Timestamp, layers: Layer[]): void {
    const r = decodeRelayPacket(plain);
    if (!r.ok) {
      layers.push({
        proto: "relay",
        kind: relayKind(plain[0]),
        length: Math.max(0, plain.length - 1),
        error: r.error.message,
      });
      return;
    }
    const p = r.value;
    const c2s = d.dir === "c2s";
    switch (p.kind) {
      case "data": {
        const route = st.slots?.[p.connectionId];
        if (route !== undefined) {
          if (c2s) route.dataC2s++;
          else route.dataS2c++;
        }
        st.firstData ??= ts;
        layers.push(
          route === undefined
            ? { proto: "relay", kind: "data", connectionId: p.connectionId, length: p.data.length }
            : {
              proto: "relay",
              kind: "data",
              connectionId: p.connectionId,
              publicKey: route.hex,
              length: p.data.length,
            },
        );
        this.#netCrypto(st, p.data, c2s, route, null, layers);
        return;
      }
      case "oob_send":
      case "oob_recv": {
        const hex = toHex(p.publicKey);
        if (p.kind === "oob_send") st.oobSent++;
        else st.oobReceived++;
        layers.push({ proto: "relay", kind: p.kind, publicKey: hex, length: p.data.length });
        this.#netCrypto(st, p.data, c2s, null, this.#oobPair(st, p.publicKey, hex), layers);
        return;
      }
      case "routing_request":
        layers.push({ proto: "relay", kind: p.kind, publicKey: toHex(p.publicKey), length: 0 });
        return;
      case "routing_response": {
        const hex = toHex(p.publicKey);
        if (p.connectionId === null) {
          st.routesRefused++;
          layers.push({ proto: "relay", kind: p.kind, publicKey: hex, length: 0 });
          return;
        }
        const route = new Route(p.connectionId, p.publicKey.slice(), hex, ts);
        st.slots ??= new Array<Route | undefined>(256);
        st.slots[p.connectionId] = route;
        st.routes.push(route);
        layers.push({
          proto: "relay",
          kind: p.kind,
          connectionId: p.connectionId,
          publicKey: hex,
          length: 0,
        });
        return;
      }
      case "connection_notification":
      case "disconnect_notification": {
        const route = st.slots?.[p.connectionId];
        if (route !== undefined) {
          if (p.kind === "connection_notification") {
            route.state = "online";
            route.onlineAt ??= ts;
          } else if (c2s) {
            // The client gives the slot up; a relay's notice only says the peer left
            // (the slot stays, and a later CONNECTION_NOTIFICATION reuses it).
            route.state = "freed";
            st.slots![p.connectionId] = undefined;
          } else route.state = "offline";
        }
        layers.push(
          route === undefined
            ? { proto: "relay", kind: p.kind, connectionId: p.connectionId, length: 0 }
            : {
              proto: "relay",
              kind: p.kind,
              connectionId: p.connectionId,
              publicKey: route.hex,
              length: 0,
            },
        );
        return;
      }
      case "ping":
      case "pong": {
        const pingId = p.pingId.toString(16).padStart(16, "0");
        if (p.kind === "ping") {
          const mine = d.pings ??= new Map();
          if (mine.size >= MAX_PINGS) mine.delete(mine.keys().next().value!);
          mine.set(p.pingId, ts);
          layers.push({ proto: "relay", kind: "ping", pingId, length: 0 });
          return;
        }
        const pings = c2s ? st.s2c.pings : st.c2s.pings;
        const sent = pings?.get(p.pingId);
        if (pings === null || sent === undefined) {
          layers.push({ proto: "relay", kind: "pong", pingId, length: 0 });
          return;
        }
        pings.delete(p.pingId);
        const rttMs = msBetween(sent, ts);
        st.rttN++;
        st.rttSum += rttMs;
        st.rttLast = rttMs;
        if (rttMs < st.rttMin) st.rttMin = rttMs;
        if (rttMs > st.rttMax) st.rttMax = rttMs;
        layers.push({ proto: "relay", kind: "pong", pingId, length: 0, rttMs });
        return;
      }
      case "onion_request":
        st.onionRequests++;
        layers.push({ proto: "relay", kind: p.kind, length: p.data.length });
        layers.push(onionRequestLayer(p.data));
        return;
      case "onion_response":
        st.onionResponses++;
        layers.push({ proto: "relay", kind: p.kind, length: p.data.length });
        layers.push(onionResponseLayer(p.data));
        return;
      default:
        layers.push({ proto: "relay", kind: p.kind, length: p.data.length });
    }
  }

  // ---- net_crypto ---------------------------------------------------------------------------

  /**
   * One net_crypto packet from DATA (`route`) or OOB (`oob`); `c2s` says whether the stream's
   * client sent it (else the peer did).
   */
  #netCrypto(
    st: Stream,
    pkt: Uint8Array,
    c2s: boolean,
    route: Route | null | undefined,
    oob: Pair | null,
    layers: Layer[],
  ): void {
    const id = pkt[0];
    const length = pkt.length;
    switch (id) {
      case NET_PACKET_COOKIE_REQUEST: {
        const r = cookieRequestSender(pkt);
        layers.push(
          r.ok
            ? {
              proto: "net_crypto",
              kind: "cookie_request",
              length,
              senderDhtPublicKey: toHex(r.value),
            }
            : { proto: "net_crypto", kind: "cookie_request", length, error: r.error.message },
        );
        return;
      }
      case NET_PACKET_COOKIE_RESPONSE:
        layers.push(fixedLength("cookie_response", length, COOKIE_RESPONSE_LENGTH));
        return;
      case NET_PACKET_CRYPTO_HS:
        layers.push(fixedLength("handshake", length, HANDSHAKE_PACKET_LENGTH));
        return;
      case NET_PACKET_CRYPTO_DATA:
        st.netCryptoData++;
        return this.#netCryptoData(st, pkt, c2s, route, oob, layers);
      default:
        layers.push({ proto: "net_crypto", kind: "unknown", length });
    }
  }

  #netCryptoData(
    st: Stream,
    pkt: Uint8Array,
    c2s: boolean,
    route: Route | null | undefined,
    oob: Pair | null,
    layers: Layer[],
  ): void {
    const length = pkt.length;
    const nonceLow = length >= 3 ? (pkt[1] << 8) | pkt[2] : 0;
    if (length <= NET_DATA_MIN || length > MAX_CRYPTO_PACKET_SIZE) {
      layers.push({
        proto: "net_crypto",
        kind: "data",
        length,
        nonceLow,
        decrypted: false,
        error: `${length} bytes, must be ${NET_DATA_MIN + 1}..${MAX_CRYPTO_PACKET_SIZE}`,
      });
      return;
    }
    let pair = oob;
    if (route !== null && route !== undefined && st.clientPk !== null) {
      pair = route.pair ??= this.#pair(st.clientPk, st.clientHex!, route.publicKey, route.hex);
    }
    const noKey: NetCryptoLayer = {
      proto: "net_crypto",
      kind: "data",
      length,
      nonceLow,
      decrypted: false,
    };
    if (this.#keys.size === 0) {
      layers.push(noKey);
      return;
    }
    if (pair === null) {
      layers.push({
        ...noKey,
        error: st.clientPk === null
          ? "the stream's handshake was not seen: its client key is unknown"
          : "the peer's key is unknown: its route was not seen",
      });
      return;
    }
    this.#refreshPair(pair);
    if (pair.entryCount === 0) {
      layers.push(noKey);
      return;
    }
    // The sender is the stream's client (c2s) or the other key of the pair.
    const clientIsA = st.clientPk !== null && bytesEqual(st.clientPk, pair.a);
    const ps = pair.senders[clientIsA === c2s ? 0 : 1];
    let t = ps.last;
    let plain: Uint8Array | null = null;
    if (t !== null) {
      const r = openDataPacket(pkt, t.sharedKey, t.recvNonce);
      if (r.ok) {
        advanceRecvNonce(t.recvNonce, r.value.diff);
        plain = r.value.plain;
      }
    }
    if (plain === null) {
      for (const c of ps.trackers) {
        if (c === ps.last) continue;
        const r = openDataPacket(pkt, c.sharedKey, c.recvNonce);
        if (!r.ok) continue;
        advanceRecvNonce(c.recvNonce, r.value.diff);
        plain = r.value.plain;
        t = ps.last = c;
        break;
      }
    }
    if (plain === null || t === null) {
      layers.push({
        proto: "net_crypto",
        kind: "data",
        length,
        nonceLow,
        decrypted: false,
        error: `none of ${ps.trackers.length} NET_CRYPTO key(s) for these DHT keys opens it`,
      });
      return;
    }
    st.netCryptoDecrypted++;
    const dp = decodeDataPlain(plain);
    if (!dp.ok) {
      layers.push({
        proto: "net_crypto",
        kind: "data",
        length,
        nonceLow,
        decrypted: true,
        error: dp.error.message,
      });
      return;
    }
    const { bufferStart, packetNumber, payload } = dp.value;
    layers.push({
      proto: "net_crypto",
      kind: "data",
      length,
      nonceLow,
      decrypted: true,
      packetNumber,
      bufferStart,
    });
    const pid = payload[0];
    // What the sender's packets say of its send_array.buffer_end, to read the peer's requests.
    if (pid >= PACKET_ID_RANGE_LOSSLESS_START && pid <= PACKET_ID_RANGE_LOSSLESS_END) {
      const next = (packetNumber + 1) >>> 0;
      if (t.sendEnd < 0 || ((next - t.sendEnd) >>> 0) < 0x80000000) t.sendEnd = next;
    } else t.sendEnd = packetNumber;
    layers.push(this.#friend(payload, bufferStart, t));
  }

  #friend(payload: Uint8Array, bufferStart: number, t: Tracker): FriendLayer {
    const id = payload[0];
    const lossy = isLossyId(id);
    const length = payload.length;
    const r = decodeFriendPacket(payload);
    if (!r.ok) {
      return {
        proto: "friend",
        id,
        kind: friendPacketName(id),
        lossy,
        length,
        error: r.error.message,
      };
    }
    const p = r.value;
    switch (p.kind) {
      case "message":
      case "action":
      case "status_message":
        return { proto: "friend", id, kind: p.kind, lossy, length, text: p.text };
      case "nickname":
        return { proto: "friend", id, kind: p.kind, lossy, length, text: p.name };
      case "user_status":
        return { proto: "friend", id, kind: p.kind, lossy, length, value: p.status };
      case "typing":
        return { proto: "friend", id, kind: p.kind, lossy, length, value: p.typing };
      case "share_relays":
        return {
          proto: "friend",
          id,
          kind: p.kind,
          lossy,
          length,
          relays: p.nodes.map((n) => {
            const relay = packedNodeToRelay(n);
            return `${formatRelayAddress(relay)}:${relay.publicKey}`;
          }),
        };
      case "request":
        return {
          proto: "friend",
          id,
          kind: p.kind,
          lossy,
          length,
          requested: this.#requested(payload, p.body, bufferStart, t),
        };
      case "friend_requests":
      case "custom_lossless":
      case "custom_lossy":
        return { proto: "friend", id, kind: p.kind, lossy, length, preview: hexPreview(p.data) };
      case "other":
        return { proto: "friend", id, kind: p.name, lossy, length, preview: hexPreview(p.data) };
      default:
        return { proto: "friend", id, kind: p.kind, lossy, length };
    }
  }

  /**
   * How many packets a request asks for: walked as its receiver walks it, over the receiver's
   * send window (its buffer_end as its own packets showed it); without that, every non-zero
   * body byte names one packet.
   */
  #requested(payload: Uint8Array, body: Uint8Array, bufferStart: number, t: Tracker): number {
    const end = t.partner?.sendEnd ?? -1;
    if (end >= 0 && payload[0] === PACKET_ID_REQUEST) {
      const w = walkRequestPacket(payload, bufferStart, end);
      if (w.ok) return w.value.requested.length;
    }
    let n = 0;
    for (let i = 0; i < body.length; i++) if (body[i] !== 0) n++;
    return n;
  }

  #oobPair(st: Stream, other: Uint8Array, otherHex: string): Pair | null {
    if (st.clientPk === null) return null;
    st.oobPairs ??= new Map();
    let p = st.oobPairs.get(otherHex);
    if (p === undefined) {
      p = this.#pair(st.clientPk, st.clientHex!, other.slice(), otherHex);
      st.oobPairs.set(otherHex, p);
    }
    return p;
  }

  #pair(a: Uint8Array, aHex: string, b: Uint8Array, bHex: string): Pair {
    const key = pairKey(aHex, bHex);
    let p = this.#pairs.get(key);
    if (p === undefined) {
      p = new Pair(a, b);
      this.#pairs.set(key, p);
    }
    return p;
  }

  /** Read the pair's key log entries again if keys were added since. */
  #refreshPair(p: Pair): void {
    if (p.storeSize === this.#keys.size) return;
    p.storeSize = this.#keys.size;
    const entries = this.#keys.netCryptoSessions(p.a, p.b);
    if (entries.length === p.entryCount) return;
    p.entryCount = entries.length;
    const fromA: Tracker[] = [];
    const fromB: Tracker[] = [];
    const real = new Set<string>();
    // Newest first: a restarted session is the likelier one.
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i];
      const selfSends = this.#tracker(e, e.selfNonce);
      const peerSends = this.#tracker(e, e.peerNonce);
      selfSends.partner = peerSends;
      peerSends.partner = selfSends;
      const selfIsA = bytesEqual(e.selfDhtPublicKey, p.a);
      const [ta, tb] = selfIsA ? [selfSends, peerSends] : [peerSends, selfSends];
      // Both ends may log the same session: one tracker each way, whoever logged it.
      if (!fromA.includes(ta)) fromA.push(ta);
      if (!fromB.includes(tb)) fromB.push(tb);
      real.add(toHex(e.selfRealPublicKey));
      real.add(toHex(e.peerRealPublicKey));
    }
    p.senders[0].trackers = fromA;
    p.senders[1].trackers = fromB;
    p.realKeys = [...real];
  }

  #tracker(e: NetCryptoKeys, base: Uint8Array): Tracker {
    const key = toHex(e.sessionKey) + toHex(base);
    let t = this.#trackers.get(key);
    if (t === undefined) {
      t = new Tracker(e.sessionKey, base.slice());
      this.#trackers.set(key, t);
    }
    return t;
  }

  // ---- gaps, ends, outputs ------------------------------------------------------------------

  #gap(
    st: Stream,
    dir: Direction,
    offset: number,
    length: number,
    ts: Timestamp,
    frame: number,
  ): void {
    const d = dir === "c2s" ? st.c2s : st.s2c;
    d.gaps++;
    if (st.ignored || d.stage === STAGE_DEAD || length <= 0) return;
    this.#notice(
      st,
      dir,
      frame,
      ts,
      "warn",
      "gap",
      `${length} bytes missing from the capture at offset ${offset}`,
    );
    if (d.stage === STAGE_WAIT && !st.toxDecided) {
      // Recognition needs the first bytes whole.
      const why = "a gap before the stream could be recognised";
      this.#notice(st, undefined, frame, ts, "warn", "undecodable", why);
      giveUp(st, why);
      return;
    }
    this.#undecodable(st, d, "frame boundaries are lost after a gap", ts, frame);
  }

  #undecodable(st: Stream, d: Dir, why: string, ts: Timestamp, frame: number): void {
    d.stage = STAGE_DEAD;
    d.undecodable = why;
    d.reader = null;
    d.session = null;
    d.acc.len = 0;
    this.#notice(
      st,
      d.dir,
      frame,
      ts,
      "warn",
      "undecodable",
      `rest of ${d.dir} not decoded: ${why}`,
    );
  }

  #close(
    st: Stream,
    how: "fin" | "rst" | "end",
    by: Direction | undefined,
    ts: Timestamp,
    frame: number,
  ): void {
    if (st.closed !== undefined) return;
    st.closed = by === undefined ? { how, ts } : { how, by, ts };
    if (!st.ignored && st.det !== null) {
      const negotiating = st.proxyKind !== undefined &&
        (st.c2s.stage !== STAGE_WAIT || st.s2c.stage !== STAGE_WAIT);
      const v: Verdict = negotiating
        ? { verdict: "not_tox", why: "closed during the proxy negotiation" }
        : this.#classify(st, true);
      this.#decide(
        st,
        v.verdict === "wait" ? { verdict: "not_tox", why: "closed early" } : v,
        ts,
        frame,
      );
    }
    if (st.ignored) return;
    for (const d of [st.c2s, st.s2c]) {
      const left = d.stage === STAGE_FRAMES
        ? d.reader!.buffered
        : d.stage === STAGE_DEAD
        ? 0
        : d.acc.len;
      if (left > 0) {
        this.#notice(
          st,
          d.dir,
          frame,
          ts,
          "info",
          "truncated",
          `the stream ended ${left} bytes into an unfinished ${
            d.stage === STAGE_FRAMES
              ? "frame"
              : d.stage === STAGE_HANDSHAKE
              ? "handshake"
              : "message"
          }`,
        );
      }
      d.reader = null;
      d.stage = STAGE_DEAD;
    }
    const what = how === "fin"
      ? "closed (FIN)"
      : how === "rst"
      ? "reset (RST)"
      : "still open at the end of the capture";
    this.#notice(
      st,
      undefined,
      frame,
      ts,
      "info",
      "closed",
      by === undefined ? what : `${what} by ${by === "c2s" ? "the client" : "the server"}`,
    );
  }

  #record(
    st: Stream,
    d: Dir,
    frame: number,
    ts: Timestamp,
    offset: number,
    wireBytes: number,
    layers: Layer[],
  ): void {
    const record: ToxRecord = {
      frame,
      ts,
      stream: st.id,
      dir: d.dir,
      sender: d.sender,
      offset,
      wireBytes,
      relay: st.relayHex,
      client: st.clientHex,
      layers,
    };
    this.#out.push({ kind: "record", record });
  }

  #notice(
    st: Stream,
    dir: Direction | undefined,
    frame: number,
    ts: Timestamp,
    level: ToxNotice["level"],
    code: string,
    message: string,
  ): void {
    const notice: ToxNotice = dir === undefined
      ? { frame, ts, stream: st.id, level, code, message }
      : { frame, ts, stream: st.id, dir, level, code, message };
    this.#out.push({ kind: "notice", notice });
  }

  // ---- queries ------------------------------------------------------------------------------

  /**
   * The real (long-term) public keys of the net_crypto sessions a record's packet belongs
   * to, lower-case hex, from the key log: for `--filter peer=`. Empty when none is known.
   */
  sessionKeysOf(r: ToxRecord): string[] {
    if (r.client === undefined) return [];
    let peer: string | undefined;
    let netCrypto = false;
    for (const l of r.layers) {
      if (l.proto === "relay") peer = l.publicKey;
      else if (l.proto === "net_crypto") netCrypto = true;
    }
    if (peer === undefined || !netCrypto) return [];
    const p = this.#pairs.get(pairKey(r.client, peer));
    return p === undefined ? [] : p.realKeys.slice();
  }

  /** Per stream, in id order: what `--stats` and `--follow` show. */
  streamSummaries(): StreamSummary[] {
    const all: Stream[] = [];
    for (const st of this.#streams) if (st !== undefined) all.push(st);
    for (const st of this.#sparse.values()) all.push(st);
    all.sort((a, b) => a.id - b.id);
    return all.map((st) => this.#summary(st));
  }

  /** One stream's summary, or undefined if the stream was never seen. */
  streamSummary(id: number): StreamSummary | undefined {
    const st = id >= 0 && id < 1 << 24 ? this.#streams[id] : this.#sparse.get(id);
    return st === undefined ? undefined : this.#summary(st);
  }

  #summary(st: Stream): StreamSummary {
    const dir = (d: Dir): DirectionSummary => ({
      bytes: d.bytes,
      frames: d.frames,
      decrypted: d.decrypted,
      gaps: d.gaps,
      ...(d.undecodable !== undefined ? { undecodable: d.undecodable } : {}),
      ...(d.macFailedAt >= 0 ? { macFailedAtFrame: d.macFailedAt } : {}),
      ...(d.firstFrame !== undefined ? { firstFrame: d.firstFrame } : {}),
    });
    const ms = (a?: Timestamp, b?: Timestamp): number | undefined =>
      a === undefined || b === undefined ? undefined : msBetween(a, b);
    const s: Record<string, unknown> = {
      stream: st.id,
      client: st.info.client,
      server: st.info.server,
      state: st.state,
      detectedBy: st.detectedBy,
      notToxReason: st.notToxReason,
      proxy: st.proxyKind === undefined ? undefined : {
        kind: st.proxyKind,
        ...(st.proxyTarget !== undefined ? { target: st.proxyTarget } : {}),
        ...(st.proxyOk !== undefined ? { ok: st.proxyOk } : {}),
      },
      clientPublicKey: st.clientHex,
      relayPublicKey: st.relayHex,
      keyed: st.tcpKeys !== null,
      c2s: dir(st.c2s),
      s2c: dir(st.s2c),
      first: st.first,
      last: st.last,
      handshakeRequest: st.hsRequest,
      handshakeResponse: st.hsResponse,
      handshakeMs: ms(st.hsRequest, st.hsResponse),
      firstData: st.firstData,
      firstDataMs: ms(st.hsResponse, st.firstData),
      ping: st.rttN === 0 ? undefined : {
        n: st.rttN,
        minMs: st.rttMin,
        avgMs: Math.round((st.rttSum / st.rttN) * 1e3) / 1e3,
        maxMs: st.rttMax,
        lastMs: st.rttLast,
      },
      routes: st.routes.map((r): RouteSummary => ({
        connectionId: r.connectionId,
        publicKey: r.hex,
        state: r.state,
        routedAt: r.routedAt,
        ...(r.onlineAt !== undefined ? { onlineAt: r.onlineAt } : {}),
        dataC2s: r.dataC2s,
        dataS2c: r.dataS2c,
      })),
      routesRefused: st.routesRefused,
      oobSent: st.oobSent,
      oobReceived: st.oobReceived,
      onionRequests: st.onionRequests,
      onionResponses: st.onionResponses,
      netCryptoData: st.netCryptoData,
      netCryptoDecrypted: st.netCryptoDecrypted,
      closed: st.closed,
    };
    for (const k of Object.keys(s)) if (s[k] === undefined) delete s[k];
    return s as unknown as StreamSummary;
  }
}

/** A net_crypto packet whose only check without keys is its exact length. */
function fixedLength(
  kind: "cookie_response" | "handshake",
  length: number,
  expected: number,
): NetCryptoLayer {
  return length === expected
    ? { proto: "net_crypto", kind, length }
    : { proto: "net_crypto", kind, length, error: `${length} bytes, expected ${expected}` };
}

/** Packet 8 as the relay reads it: the rest is sealed for N2 and N3. */
function onionRequestLayer(body: Uint8Array): OnionLayer {
  const length = body.length;
  const r = decodeOnionRequestTcp(body);
  if (!r.ok) return { proto: "onion", kind: "request", length, error: r.error.message };
  const { host, port } = r.value.next;
  return {
    proto: "onion",
    kind: "request",
    next: host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`,
    tmpPublicKey: toHex(r.value.tmpPublicKey),
    length,
  };
}

/**
 * Packet 9: the announce node's raw answer, dispatched on its first byte as handle_tcp_onion
 * does. Length limits are the receiver's (a c-toxcore client drops what breaks them).
 */
function onionResponseLayer(body: Uint8Array): OnionLayer {
  const length = body.length;
  // The relay codec refuses an empty packet 9 today; without it there is no id to show.
  if (length === 0) {
    return { proto: "onion", kind: "unknown", length, error: "empty onion response" };
  }
  const id = body[0];
  if (id === NET_PACKET_ANNOUNCE_RESPONSE) {
    const r = announceResponseSendback(body);
    return r.ok
      ? { proto: "onion", kind: "announce_response", sendback: toHex(r.value), length }
      : { proto: "onion", kind: "announce_response", length, error: r.error.message };
  }
  if (id === NET_PACKET_ONION_DATA_RESPONSE) {
    const r = dataResponseKey(body);
    return r.ok
      ? { proto: "onion", kind: "data_response", tmpPublicKey: toHex(r.value), length }
      : { proto: "onion", kind: "data_response", length, error: r.error.message };
  }
  return { proto: "onion", kind: "unknown", id, length };
}

/** Stop looking at a stream for good: its data is skipped cheaply from now on. */
function giveUp(st: Stream, why: string): void {
  st.ignored = true;
  st.state = "not_tox";
  st.notToxReason = why;
  st.det = null;
  st.held = [];
  st.c2s.stage = STAGE_DEAD;
  st.s2c.stage = STAGE_DEAD;
}

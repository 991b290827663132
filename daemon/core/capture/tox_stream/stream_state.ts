/**
 * @module
 * What every layer of the Tox stream decoder reads and writes for one TCP stream: the stream
 * and its two directions, the relay's routes, the per-direction stages, the outputs sink, and
 * the summary `--stats` and `--follow` show. It lives apart so that the layers can share it
 * without importing one another (and without importing the decoder that drives them).
 */
import type { FrameReader } from "../../tcp_common/framing.ts";
import type { SecureSession } from "../../tcp_common/handshake.ts";
import type { TcpSessionKeys } from "../keylog.ts";
import type { Layer, Sender, ToxNotice, ToxOutput, ToxRecord } from "../tox_records.ts";
import type { Direction, Endpoint, StreamInfo, Timestamp } from "../types.ts";
import type { Pair } from "./net_crypto_sessions.ts";

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

export const STAGE_WAIT = 0; // held until the stream is recognised
export const STAGE_SOCKS_GREETING = 1; // c2s
export const STAGE_SOCKS_CHOICE = 2; // s2c
export const STAGE_SOCKS_REQUEST = 3; // c2s
export const STAGE_SOCKS_REPLY = 4; // s2c
export const STAGE_HTTP_REQUEST = 5; // c2s
export const STAGE_HTTP_REPLY = 6; // s2c
export const STAGE_HANDSHAKE = 7; // 128 bytes c2s, 96 s2c
export const STAGE_FRAMES = 8;
export const STAGE_DEAD = 9; // nothing more is decoded in this direction

/** A growable byte buffer for the unframed parts (proxy steps, handshake, recognition). */
export class ByteAcc {
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
export class Route {
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

export class Dir {
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

export interface Held {
  readonly dir: 0 | 1;
  readonly from: number;
  readonly length: number;
  readonly offset: number;
  readonly ts: Timestamp;
  readonly frame: number;
}

export class Stream {
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

/** Milliseconds from a to b, to the microsecond (capture clocks carry no more). */
export function msBetween(a: Timestamp, b: Timestamp): number {
  return Math.round((b.sec - a.sec) * 1e6 + (b.nsec - a.nsec) / 1e3) / 1e3;
}

/** Stop looking at a stream for good: its data is skipped cheaply from now on. */
export function giveUp(st: Stream, why: string): void {
  st.ignored = true;
  st.state = "not_tox";
  st.notToxReason = why;
  st.det = null;
  st.held = [];
  st.c2s.stage = STAGE_DEAD;
  st.s2c.stage = STAGE_DEAD;
}

/**
 * Where every layer puts what it completed: the decoder hands the lot out after each event,
 * so records and notices keep wire order whichever layer made them.
 */
export class Outputs {
  out: ToxOutput[] = [];

  record(
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
    this.out.push({ kind: "record", record });
  }

  notice(
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
    this.out.push({ kind: "notice", notice });
  }

  /** Give up on one direction: what follows cannot be framed any more. */
  undecodable(st: Stream, d: Dir, why: string, ts: Timestamp, frame: number): void {
    d.stage = STAGE_DEAD;
    d.undecodable = why;
    d.reader = null;
    d.session = null;
    d.acc.len = 0;
    this.notice(
      st,
      d.dir,
      frame,
      ts,
      "warn",
      "undecodable",
      `rest of ${d.dir} not decoded: ${why}`,
    );
  }
}

/** One stream's summary, for `--stats` and `--follow`. */
export function summarize(st: Stream): StreamSummary {
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

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
 * Each stage lives in tox_stream/, named after its protocol (recognition, proxy_preamble,
 * tcp_handshake, tcp_frames, relay_packets, net_crypto, messenger, onion), with the state
 * they share in stream_state; this file routes stream events to them and answers queries,
 * so the stages need not know one another beyond the next one in.
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
import type { KeyStore } from "./keylog.ts";
import type { ToxOutput, ToxRecord } from "./tox_records.ts";
import type { Direction, StreamEvent, StreamInfo, Timestamp } from "./types.ts";
import { NetCryptoPackets } from "./tox_stream/net_crypto.ts";
import { NetCryptoSessions } from "./tox_stream/net_crypto_sessions.ts";
import { ProxyPreamble } from "./tox_stream/proxy_preamble.ts";
import { StreamRecognition, type Verdict } from "./tox_stream/recognition.ts";
import { RelayPackets } from "./tox_stream/relay_packets.ts";
import {
  type Dir,
  giveUp,
  Outputs,
  STAGE_DEAD,
  STAGE_FRAMES,
  STAGE_HANDSHAKE,
  STAGE_WAIT,
  Stream,
  type StreamSummary,
  summarize,
} from "./tox_stream/stream_state.ts";
import { TcpFrames } from "./tox_stream/tcp_frames.ts";
import { TcpHandshake } from "./tox_stream/tcp_handshake.ts";

/** tox-bootstrapd's DEFAULT_TCP_RELAY_PORTS. */
export const DEFAULT_RELAY_PORTS: readonly number[] = [33445, 443, 3389];

export interface ToxStreamDecoderOptions {
  readonly keys: KeyStore;
  /** Server ports where a stream is taken for a relay stream (default 33445, 443, 3389). */
  readonly relayPorts?: readonly number[];
  /** Recognise relay streams on other ports (and behind proxies) by the handshake's shape. */
  readonly detectByShape?: boolean;
}

const NO_OUTPUTS: readonly ToxOutput[] = Object.freeze([]);

export class ToxStreamDecoder {
  readonly #relayPorts: ReadonlySet<number>;
  readonly #shape: boolean;
  readonly #streams: (Stream | undefined)[] = [];
  /** Streams by id when ids are not small integers. */
  readonly #sparse = new Map<number, Stream>();
  readonly #out = new Outputs();
  readonly #sessions: NetCryptoSessions;
  readonly #recognition: StreamRecognition;
  readonly #proxy: ProxyPreamble;
  readonly #handshake: TcpHandshake;
  readonly #frames: TcpFrames;

  constructor(opts: ToxStreamDecoderOptions) {
    const keys = opts.keys;
    this.#relayPorts = new Set(opts.relayPorts ?? DEFAULT_RELAY_PORTS);
    this.#shape = opts.detectByShape ?? true;
    this.#sessions = new NetCryptoSessions(keys);
    this.#recognition = new StreamRecognition(
      keys,
      this.#shape,
      this.#out,
      (st, d, bytes, offset, ts, frame) => this.#feed(st, d, bytes, offset, ts, frame),
    );
    this.#proxy = new ProxyPreamble(this.#out);
    this.#handshake = new TcpHandshake(keys, this.#out);
    const relay = new RelayPackets(new NetCryptoPackets(keys, this.#sessions));
    this.#frames = new TcpFrames(keys, this.#out, relay);
  }

  /** Streams recognised as Tox relay streams so far. */
  get toxStreams(): number {
    return this.#recognition.toxStreams;
  }

  /** One event; returns the records and notices it completed, in wire order. */
  push(ev: StreamEvent): readonly ToxOutput[] {
    this.#handle(ev);
    if (this.#out.out.length === 0) return NO_OUTPUTS;
    const out = this.#out.out;
    this.#out.out = [];
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
        if (d.stage === STAGE_FRAMES) this.#frames.push(st, d, ev.bytes, ev.ts, ev.frame);
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
      this.#recognition.notTox(
        st,
        `server port ${info.server.port} is not a relay port`,
        ts,
        frame,
      );
    }
    return st;
  }

  // ---- bytes before the frames --------------------------------------------------------------

  #feed(st: Stream, d: Dir, bytes: Uint8Array, offset: number, ts: Timestamp, frame: number): void {
    switch (d.stage) {
      case STAGE_FRAMES:
        return this.#frames.push(st, d, bytes, ts, frame);
      case STAGE_DEAD:
        return;
      case STAGE_WAIT:
        return this.#recognition.hold(st, d, bytes, offset, ts, frame);
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
    if (d.stage === STAGE_HANDSHAKE) return this.#handshake.step(st, d, ts, frame);
    return this.#proxy.step(st, d, ts, frame);
  }

  // ---- gaps and ends ------------------------------------------------------------------------

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
    this.#out.notice(
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
      this.#out.notice(st, undefined, frame, ts, "warn", "undecodable", why);
      giveUp(st, why);
      return;
    }
    this.#out.undecodable(st, d, "frame boundaries are lost after a gap", ts, frame);
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
        : this.#recognition.classify(st, true);
      this.#recognition.decide(
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
        this.#out.notice(
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
    this.#out.notice(
      st,
      undefined,
      frame,
      ts,
      "info",
      "closed",
      by === undefined ? what : `${what} by ${by === "c2s" ? "the client" : "the server"}`,
    );
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
    const p = this.#sessions.find(r.client, peer);
    return p === undefined ? [] : p.realKeys.slice();
  }

  /** Per stream, in id order: what `--stats` and `--follow` show. */
  streamSummaries(): StreamSummary[] {
    const all: Stream[] = [];
    for (const st of this.#streams) if (st !== undefined) all.push(st);
    for (const st of this.#sparse.values()) all.push(st);
    all.sort((a, b) => a.id - b.id);
    return all.map((st) => summarize(st));
  }

  /** One stream's summary, or undefined if the stream was never seen. */
  streamSummary(id: number): StreamSummary | undefined {
    const st = id >= 0 && id < 1 << 24 ? this.#streams[id] : this.#sparse.get(id);
    return st === undefined ? undefined : summarize(st);
  }
}

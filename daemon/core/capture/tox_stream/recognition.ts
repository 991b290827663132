/**
 * @module
 * Deciding whether a TCP stream is a Tox relay stream, and whether a proxy preamble comes
 * first: by its server port when nothing contradicts it, by the key log naming its handshake
 * nonce, or by shape (the client's first 128 bytes answered by exactly 96). Bytes are held
 * until that is settled, then replayed through the stages chosen, in arrival order; the
 * decoder supplies that replay path, so this layer does not depend on the ones after it.
 */
import { MAC_SIZE } from "../../common/crypto.ts";
import { CLIENT_HANDSHAKE_SIZE, SERVER_HANDSHAKE_SIZE } from "../../tcp_common/handshake.ts";
import { MAX_PACKET_SIZE } from "../../tcp_common/packets.ts";
import type { KeyStore } from "../keylog.ts";
import type { Timestamp } from "../types.ts";
import {
  ByteAcc,
  type Dir,
  giveUp,
  type Outputs,
  STAGE_HANDSHAKE,
  STAGE_HTTP_REPLY,
  STAGE_HTTP_REQUEST,
  STAGE_SOCKS_CHOICE,
  STAGE_SOCKS_GREETING,
  STAGE_WAIT,
  type Stream,
} from "./stream_state.ts";

export type Verdict =
  | { readonly verdict: "wait" }
  | { readonly verdict: "tox"; readonly by: "port" | "shape" | "key_log" }
  | { readonly verdict: "socks5" | "http_connect" }
  | { readonly verdict: "not_tox"; readonly why: string };

const WAIT: Verdict = { verdict: "wait" };

const HTTP_CONNECT = new TextEncoder().encode("CONNECT ");

/** How held bytes re-enter the decoder once the stream's stages are chosen. */
export type Feed = (
  st: Stream,
  d: Dir,
  bytes: Uint8Array,
  offset: number,
  ts: Timestamp,
  frame: number,
) => void;

/** A plausible frame header at `at` (or not enough bytes to tell). */
function plausibleFrame(b: Uint8Array, len: number, at: number): boolean {
  if (len < at + 2) return true;
  const n = (b[at] << 8) | b[at + 1];
  return n > MAC_SIZE && n <= MAX_PACKET_SIZE;
}

export class StreamRecognition {
  readonly #keys: KeyStore;
  readonly #shape: boolean;
  readonly #out: Outputs;
  readonly #feed: Feed;
  #toxStreams = 0;

  constructor(keys: KeyStore, shape: boolean, out: Outputs, feed: Feed) {
    this.#keys = keys;
    this.#shape = shape;
    this.#out = out;
    this.#feed = feed;
  }

  /** Streams recognised as Tox relay streams so far. */
  get toxStreams(): number {
    return this.#toxStreams;
  }

  /** Bytes of a direction still in STAGE_WAIT: held, and the stream classified again. */
  hold(st: Stream, d: Dir, bytes: Uint8Array, offset: number, ts: Timestamp, frame: number): void {
    const det = st.det;
    if (det === null) return;
    const i = d.dir === "c2s" ? 0 : 1;
    const acc = det[i];
    if (i === 1 && acc.len === 0 && st.c2sAtFirstS2c < 0) st.c2sAtFirstS2c = det[0].len;
    if (acc.len === 0) acc.start = offset;
    st.held.push({ dir: i, from: acc.len, length: bytes.length, offset, ts, frame });
    acc.append(bytes);
    const v = this.classify(st, false);
    if (v.verdict !== "wait") this.decide(st, v, ts, frame);
  }

  classify(st: Stream, atClose: boolean): Verdict {
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

  decide(st: Stream, v: Verdict, ts: Timestamp, frame: number): void {
    if (v.verdict === "wait") return;
    if (v.verdict === "not_tox") {
      const where = st.relayPort ? ` (on relay port ${st.info.server.port})` : "";
      const hint = st.info.sawSyn ? "" : "; the capture may have started mid-stream";
      this.notTox(st, `${v.why}${where}${hint}`, ts, frame);
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
      this.#out.notice(
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

  notTox(st: Stream, why: string, ts: Timestamp, frame: number): void {
    giveUp(st, why);
    this.#out.notice(st, undefined, frame, ts, "info", "not_tox", `not a Tox relay stream: ${why}`);
  }
}

/**
 * @module
 * The proxy preamble a client may send before the relay handshake (TCP_client.c's SOCKS5 and
 * HTTP CONNECT proxy support): each step is one record, a refusal ends the stream, and once
 * both directions are through, the direction is handed back for the Tox handshake. Text from
 * the wire is cleaned and bounded here because it reaches terminals.
 */
import { decodePackedNodes, TOX_AF_INET, TOX_AF_INET6 } from "../../common/packed_node.ts";
import { formatRelayAddress } from "../../common/relay_address.ts";
import { MAX_HTTP_REPLY_HEADER } from "../../relay_client/proxy.ts";
import type { ProxyLayer } from "../tox_records.ts";
import type { Timestamp } from "../types.ts";
import {
  type Dir,
  type Outputs,
  STAGE_DEAD,
  STAGE_HANDSHAKE,
  STAGE_HTTP_REPLY,
  STAGE_HTTP_REQUEST,
  STAGE_SOCKS_CHOICE,
  STAGE_SOCKS_GREETING,
  STAGE_SOCKS_REPLY,
  STAGE_SOCKS_REQUEST,
  STAGE_WAIT,
  type Stream,
} from "./stream_state.ts";

/** Text from the wire in proxy steps: printable and bounded (it reaches terminals). */
const MAX_STEP_TEXT = 100;

const latin1 = new TextDecoder("latin1");

/** Printable, bounded text from the wire. */
function clean(raw: string): string {
  // deno-lint-ignore no-control-regex
  const s = raw.replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
  return s.length > MAX_STEP_TEXT ? `${s.slice(0, MAX_STEP_TEXT)}…` : s;
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

export class ProxyPreamble {
  readonly #out: Outputs;

  constructor(out: Outputs) {
    this.#out = out;
  }

  /**
   * Parse one SOCKS5 or HTTP CONNECT message from d.acc; false when it needs more bytes (or
   * is done, or the direction is in no proxy stage).
   */
  step(st: Stream, d: Dir, ts: Timestamp, frame: number): boolean {
    const acc = d.acc;
    const b = acc.buf;
    const n = acc.len;
    switch (d.stage) {
      case STAGE_SOCKS_GREETING: {
        if (n < 2 || n < 2 + b[1]) return false;
        const size = 2 + b[1];
        const methods = Array.from(b.subarray(2, size), (m) => m.toString(16).padStart(2, "0"));
        const step = methods.length === 1 && b[2] === 0
          ? "greeting (no auth)"
          : `greeting methods ${methods.join(",")}`;
        this.#record(st, d, "socks5", step, undefined, size, ts, frame);
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
        this.#record(st, d, "socks5", step, ok, 2, ts, frame);
        if (!ok) this.#refused(st);
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
          this.#record(st, d, "socks5", step, false, n, ts, frame);
          this.#out.undecodable(st, d, "a SOCKS5 message this decoder cannot read", ts, frame);
          return false;
        }
        if (addr.size < 0) return false;
        if (request) {
          st.proxyTarget = addr.text;
          const step = b[1] === 1
            ? `connect ${addr.text}`
            : `command 0x${b[1].toString(16)} ${addr.text}`;
          this.#record(st, d, "socks5", step, undefined, addr.size, ts, frame);
          return this.#endPreamble(st, d);
        }
        const ok = b[0] === 5 && b[1] === 0;
        const step = ok ? "reply ok" : `reply refused (0x${b[1].toString(16).padStart(2, "0")})`;
        this.#record(st, d, "socks5", step, ok, addr.size, ts, frame);
        if (!ok) {
          this.#refused(st);
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
            this.#out.undecodable(st, d, `no end to an HTTP header in ${n} bytes`, ts, frame);
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
          this.#record(st, d, "http_connect", step, undefined, end, ts, frame);
          return this.#endPreamble(st, d);
        }
        const ok = /^HTTP\/1\.[0-9] 200(?: |$)/.test(line);
        this.#record(st, d, "http_connect", clean(line), ok, end, ts, frame);
        if (!ok) {
          this.#refused(st);
          return false;
        }
        st.proxyOk = true;
        return this.#endPreamble(st, d);
      }
    }
    return false;
  }

  #record(
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
    this.#out.record(st, d, frame, ts, offset, size, [layer]);
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

  #refused(st: Stream): void {
    st.proxyOk = false;
    st.ignored = true;
    st.state = "not_tox";
    st.notToxReason = "the proxy refused the connection";
    st.det = null;
    st.held = [];
    st.c2s.stage = STAGE_DEAD;
    st.s2c.stage = STAGE_DEAD;
  }
}

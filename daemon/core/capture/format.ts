/**
 * How decoded records read: one line per packet in tshark's manner (number, time since the
 * first packet, endpoints, protocol, bytes, info), a JSON object per packet, or a detailed
 * block per packet (every layer, every field) for `--follow`.
 *
 * Text from the wire (names, messages) is printed through JSON.stringify: quoted, control
 * characters escaped, so a peer cannot write to the reader's terminal.
 */
import { ONION_ANNOUNCE_RESPONSE_MIN_SIZE } from "../onion/packets.ts";
import type { Layer, ToxNotice, ToxRecord } from "./tox_records.ts";
import { type Endpoint, secondsBetween, type StreamInfo, type Timestamp } from "./types.ts";

const MAX_TEXT = 80;

export function endpointText(e: Endpoint): string {
  return e.addr.includes(":") ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`;
}

export function shortKey(hex: string | undefined): string {
  return hex === undefined ? "?" : `${hex.slice(0, 8)}…`;
}

export function timestampText(ts: Timestamp): string {
  return `${ts.sec}.${String(ts.nsec).padStart(9, "0")}`;
}

function quote(text: string): string {
  const cut = text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
  return JSON.stringify(cut);
}

const FRIEND_CONNECTION_KINDS = new Set(["alive", "share_relays", "friend_requests"]);
const NET_CRYPTO_KINDS = new Set(["padding", "request", "kill"]);

/** The protocol column: named after the innermost layer. */
export function protocolOf(r: ToxRecord): string {
  const l = r.layers[r.layers.length - 1];
  if (l === undefined) return "TOX";
  switch (l.proto) {
    case "proxy":
      return l.kind === "socks5" ? "SOCKS5" : "HTTP";
    case "tcp_handshake":
      return "TOX-HS";
    case "tcp_frame":
      return "TOX-TCP";
    case "relay":
      return "TOX-RELAY";
    case "net_crypto":
      return "NET-CRYPTO";
    case "onion":
      return "TOX-ONION";
    case "friend":
      if (FRIEND_CONNECTION_KINDS.has(l.kind)) return "FRIEND-CONN";
      if (NET_CRYPTO_KINDS.has(l.kind)) return "NET-CRYPTO";
      return "MESSENGER";
  }
}

function layerInfo(l: Layer): string | null {
  switch (l.proto) {
    case "proxy":
      return `${l.kind === "socks5" ? "SOCKS5" : "HTTP CONNECT"} ${l.step}${
        l.ok === false ? " (refused)" : ""
      }`;
    case "tcp_handshake":
      return l.kind === "request"
        ? `Handshake request client=${shortKey(l.clientPublicKey)}${l.keyed ? "" : " [no key]"}`
        : `Handshake response${l.keyed ? "" : " [no key]"}`;
    case "tcp_frame":
      if (l.decrypted) return null;
      return `Encrypted frame #${l.seq} len=${l.length}${l.error ? ` (${l.error})` : " [no key]"}`;
    case "relay":
      return relayInfo(l);
    case "net_crypto":
      return netCryptoInfo(l);
    case "onion":
      return onionInfo(l);
    case "friend":
      return friendInfo(l);
  }
}

function relayInfo(l: Extract<Layer, { proto: "relay" }>): string {
  const name = l.kind.toUpperCase();
  if (l.error) return `${name} malformed: ${l.error}`;
  switch (l.kind) {
    case "ping":
      return `PING id=${l.pingId}`;
    case "pong":
      return `PONG id=${l.pingId}${l.rttMs !== undefined ? ` rtt=${l.rttMs.toFixed(2)}ms` : ""}`;
    case "routing_request":
      return `ROUTING_REQUEST pk=${shortKey(l.publicKey)}`;
    case "routing_response":
      return l.connectionId === undefined
        ? `ROUTING_RESPONSE refused pk=${shortKey(l.publicKey)}`
        : `ROUTING_RESPONSE conn=${l.connectionId} pk=${shortKey(l.publicKey)}`;
    case "connection_notification":
    case "disconnect_notification":
      return `${name} conn=${l.connectionId}${l.publicKey ? ` pk=${shortKey(l.publicKey)}` : ""}`;
    case "data":
      return `DATA conn=${l.connectionId} peer=${shortKey(l.publicKey)} len=${l.length}`;
    case "oob_send":
      return `OOB_SEND to=${shortKey(l.publicKey)} len=${l.length}`;
    case "oob_recv":
      return `OOB_RECV from=${shortKey(l.publicKey)} len=${l.length}`;
    default:
      return `${name} len=${l.length}`;
  }
}

function netCryptoInfo(l: Extract<Layer, { proto: "net_crypto" }>): string {
  if (l.error && l.kind !== "data") return `${l.kind.toUpperCase()} malformed: ${l.error}`;
  switch (l.kind) {
    case "cookie_request":
      return `COOKIE_REQUEST from=${shortKey(l.senderDhtPublicKey)}`;
    case "cookie_response":
      return "COOKIE_RESPONSE";
    case "handshake":
      return "CRYPTO_HANDSHAKE";
    case "data": {
      const nonce = `nonce=${(l.nonceLow ?? 0).toString(16).padStart(4, "0")}`;
      if (l.decrypted) {
        return `CRYPTO_DATA #${l.packetNumber} buffer_start=${l.bufferStart} ${nonce}`;
      }
      return `CRYPTO_DATA ${nonce} len=${l.length}${l.error ? ` (${l.error})` : " [no key]"}`;
    }
    default:
      return `NET_CRYPTO id? len=${l.length}`;
  }
}

function onionInfo(l: Extract<Layer, { proto: "onion" }>): string {
  const name = l.kind === "request" || l.kind === "unknown" ? "ONION" : l.kind.toUpperCase();
  if (l.error) return `${name} malformed: ${l.error}`;
  switch (l.kind) {
    case "request":
      return `ONION next=${l.next} key=${shortKey(l.tmpPublicKey)}`;
    case "announce_response":
      return `ANNOUNCE_RESPONSE sendback=${l.sendback}${
        l.length === ONION_ANNOUNCE_RESPONSE_MIN_SIZE ? " (no nodes)" : ""
      }`;
    case "data_response":
      return `DATA_RESPONSE key=${shortKey(l.tmpPublicKey)}`;
    default:
      return `ONION id=0x${(l.id ?? 0).toString(16).padStart(2, "0")}? len=${l.length}`;
  }
}

function friendInfo(l: Extract<Layer, { proto: "friend" }>): string {
  const name = l.kind.toUpperCase();
  if (l.error) return `${name} (id ${l.id}) malformed: ${l.error}`;
  switch (l.kind) {
    case "message":
    case "action":
    case "nickname":
    case "status_message":
      return `${name} ${quote(l.text ?? "")}`;
    case "user_status":
      return `USER_STATUS ${l.value}`;
    case "typing":
      return `TYPING ${l.value ? "on" : "off"}`;
    case "share_relays":
      return `SHARE_RELAYS ${(l.relays ?? []).length}: ${(l.relays ?? []).join(" ")}`;
    case "request":
      return `REQUEST ${l.requested ?? "?"} missing`;
    case "online":
    case "offline":
    case "alive":
    case "kill":
    case "padding":
      return name;
    default:
      return `${name} id=${l.id} len=${l.length}${l.preview ? ` ${l.preview}` : ""}`;
  }
}

/** The info column: each layer's say, outermost first, those with nothing to add left out. */
export function infoOf(r: ToxRecord): string {
  const parts: string[] = [];
  for (const l of r.layers) {
    const s = layerInfo(l);
    if (s !== null) parts.push(s);
  }
  return parts.join(" › ");
}

/** Source and destination of a record, by its direction in the stream. */
export function endpointsOf(r: { dir: string }, s: StreamInfo): [string, string] {
  const c = endpointText(s.client);
  const v = endpointText(s.server);
  return r.dir === "c2s" ? [c, v] : [v, c];
}

export function formatRecordLine(r: ToxRecord, s: StreamInfo, start: Timestamp): string {
  const [src, dst] = endpointsOf(r, s);
  const rel = secondsBetween(start, r.ts).toFixed(6);
  return `${String(r.frame).padStart(6)} ${rel.padStart(11)} ${src} → ${dst} s${r.stream} ${
    protocolOf(r).padEnd(11)
  } ${String(r.wireBytes).padStart(5)}  ${infoOf(r)}`;
}

export function formatNoticeLine(n: ToxNotice, start: Timestamp): string {
  const rel = secondsBetween(start, n.ts).toFixed(6);
  const dir = n.dir ? ` ${n.dir}` : "";
  return `${String(n.frame).padStart(6)} ${
    rel.padStart(11)
  } ** s${n.stream}${dir} ${n.level.toUpperCase()} ${n.code}: ${n.message}`;
}

export function recordJson(r: ToxRecord, s: StreamInfo, start: Timestamp): Record<string, unknown> {
  const [src, dst] = endpointsOf(r, s);
  return {
    frame: r.frame,
    time: timestampText(r.ts),
    rel: Number(secondsBetween(start, r.ts).toFixed(9)),
    stream: r.stream,
    dir: r.dir,
    src,
    dst,
    sender: r.sender,
    offset: r.offset,
    wire_bytes: r.wireBytes,
    relay: r.relay,
    client: r.client,
    protocol: protocolOf(r),
    info: infoOf(r),
    layers: r.layers,
  };
}

export function noticeJson(n: ToxNotice, start: Timestamp): Record<string, unknown> {
  return {
    notice: n.code,
    level: n.level,
    frame: n.frame,
    time: timestampText(n.ts),
    rel: Number(secondsBetween(start, n.ts).toFixed(9)),
    stream: n.stream,
    dir: n.dir,
    message: n.message,
  };
}

/** `--follow`: one block per record, every layer with every field. */
export function formatRecordDetail(r: ToxRecord, s: StreamInfo, start: Timestamp): string {
  const [src, dst] = endpointsOf(r, s);
  const rel = secondsBetween(start, r.ts).toFixed(6);
  const head = `${r.dir === "c2s" ? "▶" : "◀"} frame ${r.frame} +${rel}s ${src} → ${dst} ` +
    `${r.wireBytes} B at stream offset ${r.offset}`;
  const lines = [head];
  for (const l of r.layers) {
    const fields = Object.entries(l)
      .filter(([k, v]) => k !== "proto" && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "string" && k === "text" ? quote(v) : fmt(v)}`);
    lines.push(`    ${l.proto}: ${fields.join(" ")}`);
  }
  return lines.join("\n");
}

function fmt(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(fmt).join(", ")}]`;
  if (typeof v === "string") return /^[\x21-\x7e]*$/.test(v) ? v : JSON.stringify(v);
  return String(v);
}

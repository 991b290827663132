/**
 * `decode --stats`: what a capture says about each relay stream and each friend session —
 * packets and bytes per type and direction, onion requests and responses, ping RTTs, routing
 * events, and how long each step took (TCP handshake, first DATA, cookie → handshake → first
 * data of each session).
 * Built from the decoded records only, so it agrees with what the line output shows.
 */
import { endpointText, protocolOf, shortKey } from "./format.ts";
import type { PipelineTotals } from "./pipeline.ts";
import type { ToxNotice, ToxRecord } from "./tox_records.ts";
import { secondsBetween, type StreamInfo, type Timestamp } from "./types.ts";

interface StreamStats {
  info: StreamInfo;
  client?: string;
  relay?: string;
  proxy?: string;
  keyed: boolean;
  records: [number, number];
  bytes: [number, number];
  first: Timestamp;
  last: Timestamp;
  hsRequest?: Timestamp;
  hsResponse?: Timestamp;
  firstData?: Timestamp;
  gaps: number;
  undecodable: number;
  closed?: string;
  rtts: number[];
  /** Relay packets 8 and 9: how busy the client's onion (announcing, searching) was. */
  onion: [number, number];
}

interface SessionStats {
  a: string;
  b: string;
  cookieRequest?: Timestamp;
  handshake?: Timestamp;
  firstData?: Timestamp;
  firstDecrypted?: Timestamp;
  dataPackets: number;
  decrypted: number;
  streams: Set<number>;
}

export interface RoutingEvent {
  readonly rel: number;
  readonly stream: number;
  readonly kind: string;
  readonly connectionId?: number;
  readonly publicKey?: string;
}

/** The pipeline's totals, and what only the reader of the file knows. */
export interface CaptureTotals extends PipelineTotals {
  readonly file: string;
  readonly format: string;
  /** Why the file could not be read to its end, or null. */
  readonly damaged: string | null;
}

const ROUTING = new Set([
  "routing_request",
  "routing_response",
  "connection_notification",
  "disconnect_notification",
]);

export class CaptureStats {
  readonly #streams = new Map<number, StreamStats>();
  readonly #types = new Map<string, { packets: number; bytes: number }>();
  readonly #sessions = new Map<string, SessionStats>();
  readonly #routing: RoutingEvent[] = [];
  #start: Timestamp | null = null;

  #stream(info: StreamInfo, ts: Timestamp): StreamStats {
    let s = this.#streams.get(info.id);
    if (s === undefined) {
      s = {
        info,
        keyed: false,
        records: [0, 0],
        bytes: [0, 0],
        first: ts,
        last: ts,
        gaps: 0,
        undecodable: 0,
        rtts: [],
        onion: [0, 0],
      };
      this.#streams.set(info.id, s);
    }
    return s;
  }

  record(r: ToxRecord, info: StreamInfo, start: Timestamp): void {
    this.#start ??= start;
    const s = this.#stream(info, r.ts);
    const d = r.dir === "c2s" ? 0 : 1;
    s.records[d]++;
    s.bytes[d] += r.wireBytes;
    s.last = r.ts;
    s.client ??= r.client;
    s.relay ??= r.relay;
    const inner = r.layers[r.layers.length - 1];
    const kind = inner && "kind" in inner ? inner.kind : inner?.proto ?? "?";
    const typeKey = `${protocolOf(r)} ${kind}\t${r.sender}`;
    const t = this.#types.get(typeKey) ?? { packets: 0, bytes: 0 };
    t.packets++;
    t.bytes += r.wireBytes;
    this.#types.set(typeKey, t);

    let session: SessionStats | null = null;
    for (const l of r.layers) {
      switch (l.proto) {
        case "proxy":
          s.proxy = l.kind === "socks5" ? "SOCKS5" : "HTTP CONNECT";
          break;
        case "tcp_handshake":
          if (l.kind === "request") s.hsRequest ??= r.ts;
          else s.hsResponse ??= r.ts;
          if (l.keyed) s.keyed = true;
          break;
        case "relay":
          if (l.kind === "data") s.firstData ??= r.ts;
          if (l.kind === "pong" && l.rttMs !== undefined) s.rtts.push(l.rttMs);
          if (l.kind === "onion_request") s.onion[0]++;
          else if (l.kind === "onion_response") s.onion[1]++;
          if (ROUTING.has(l.kind)) {
            this.#routing.push({
              rel: secondsBetween(start, r.ts),
              stream: r.stream,
              kind: l.kind,
              connectionId: l.connectionId,
              publicKey: l.publicKey,
            });
          }
          if ((l.kind === "data" || l.kind.startsWith("oob")) && l.publicKey && r.client) {
            session = this.#session(r.client, l.publicKey);
            session.streams.add(r.stream);
          }
          break;
        case "net_crypto":
          if (session === null) break;
          if (l.kind === "cookie_request") session.cookieRequest ??= r.ts;
          else if (l.kind === "handshake") session.handshake ??= r.ts;
          else if (l.kind === "data") {
            session.dataPackets++;
            session.firstData ??= r.ts;
            if (l.decrypted) {
              session.decrypted++;
              session.firstDecrypted ??= r.ts;
            }
          }
          break;
      }
    }
  }

  #session(a: string, b: string): SessionStats {
    const [x, y] = a < b ? [a, b] : [b, a];
    const key = `${x}:${y}`;
    let s = this.#sessions.get(key);
    if (s === undefined) {
      s = { a: x, b: y, dataPackets: 0, decrypted: 0, streams: new Set() };
      this.#sessions.set(key, s);
    }
    return s;
  }

  notice(n: ToxNotice, info: StreamInfo | undefined): void {
    if (info === undefined) return;
    const s = this.#stream(info, n.ts);
    if (n.code === "gap") s.gaps++;
    else if (n.code === "undecodable" || n.code === "mac_failed") s.undecodable++;
    else if (n.code === "closed") s.closed = n.message;
  }

  /** Everything, as one JSON-able object. */
  toJson(totals: CaptureTotals): Record<string, unknown> {
    const start = this.#start ?? totals.first;
    const rel = (t: Timestamp | undefined) =>
      t === undefined || start === null ? null : round(secondsBetween(start, t));
    const ms = (a?: Timestamp, b?: Timestamp) =>
      a === undefined || b === undefined ? null : round(secondsBetween(a, b) * 1000);
    return {
      capture: {
        ...totals,
        first: undefined,
        last: undefined,
        duration_s: totals.first && totals.last
          ? round(secondsBetween(totals.first, totals.last))
          : 0,
        tox_streams: this.#streams.size,
      },
      streams: [...this.#streams.values()].map((s) => ({
        stream: s.info.id,
        client_endpoint: endpointText(s.info.client),
        server_endpoint: endpointText(s.info.server),
        proxy: s.proxy ?? null,
        client: s.client ?? null,
        relay: s.relay ?? null,
        keyed: s.keyed,
        records_c2s: s.records[0],
        records_s2c: s.records[1],
        bytes_c2s: s.bytes[0],
        bytes_s2c: s.bytes[1],
        start_s: rel(s.first),
        handshake_ms: ms(s.hsRequest, s.hsResponse),
        first_data_ms: ms(s.hsResponse, s.firstData),
        ping: rttSummary(s.rtts),
        onion_requests: s.onion[0],
        onion_responses: s.onion[1],
        gaps: s.gaps,
        undecodable: s.undecodable,
        closed: s.closed ?? null,
      })),
      types: [...this.#types.entries()].sort().map(([k, v]) => {
        const [type, sender] = k.split("\t");
        return { type, from: sender, packets: v.packets, bytes: v.bytes };
      }),
      routing: this.#routing.map((e) => ({ ...e, rel: round(e.rel) })),
      sessions: [...this.#sessions.values()].map((s) => ({
        keys: [s.a, s.b],
        streams: [...s.streams],
        cookie_request_s: rel(s.cookieRequest),
        handshake_ms: ms(s.cookieRequest, s.handshake),
        handshake_to_first_data_ms: ms(s.handshake, s.firstData),
        data_packets: s.dataPackets,
        decrypted: s.decrypted,
      })),
    };
  }

  /** The same, as tables for a terminal. */
  toText(totals: CaptureTotals): string {
    const j = this.toJson(totals) as {
      capture: Record<string, unknown>;
      streams: Record<string, unknown>[];
      types: { type: string; from: string; packets: number; bytes: number }[];
      routing: RoutingEvent[];
      sessions: Record<string, unknown>[];
    };
    const c = j.capture;
    const out: string[] = [];
    out.push(
      `capture ${totals.file} (${totals.format}): ${totals.packets} packets, ${totals.bytes} bytes, ` +
        `${c.duration_s} s, ${totals.tcpStreams} TCP streams, ${this.#streams.size} Tox streams` +
        (totals.notTcp > 0 ? `, ${totals.notTcp} not TCP` : "") +
        (totals.damaged ? `\nDAMAGED: ${totals.damaged}` : ""),
    );
    out.push("", "relay streams");
    out.push(table(
      [
        "stream",
        "client → server",
        "via",
        "client",
        "relay",
        "keys",
        "pkts →/←",
        "bytes →/←",
        "hs ms",
        "1st data ms",
        "ping ms min/avg/max (n)",
        "onion →/←",
        "gaps",
        "end",
      ],
      j.streams.map((s) => {
        const p = s.ping as { min: number; avg: number; max: number; n: number } | null;
        return [
          `s${s.stream}`,
          `${s.client_endpoint} → ${s.server_endpoint}`,
          String(s.proxy ?? "direct"),
          shortKey(s.client as string | undefined),
          s.relay ? shortKey(s.relay as string) : "-",
          s.keyed ? "yes" : "no",
          `${s.records_c2s}/${s.records_s2c}`,
          `${s.bytes_c2s}/${s.bytes_s2c}`,
          s.handshake_ms === null ? "-" : String(s.handshake_ms),
          s.first_data_ms === null ? "-" : String(s.first_data_ms),
          p === null ? "-" : `${p.min}/${p.avg}/${p.max} (${p.n})`,
          `${s.onion_requests}/${s.onion_responses}`,
          String(s.gaps),
          String(s.closed ?? "open"),
        ];
      }),
    ));
    out.push("", "packets by type and sender");
    out.push(table(
      ["type", "from", "packets", "bytes"],
      j.types.map((t) => [t.type, t.from, String(t.packets), String(t.bytes)]),
    ));
    if (j.routing.length > 0) {
      out.push("", "routing events");
      out.push(table(
        ["time s", "stream", "event", "conn", "key"],
        j.routing.map((e) => [
          e.rel.toFixed(6),
          `s${e.stream}`,
          e.kind,
          e.connectionId === undefined ? "-" : String(e.connectionId),
          e.publicKey ? shortKey(e.publicKey) : "-",
        ]),
      ));
    }
    if (j.sessions.length > 0) {
      out.push("", "net_crypto sessions (by DHT keys)");
      out.push(table(
        [
          "keys",
          "streams",
          "cookie req s",
          "→ handshake ms",
          "handshake → data ms",
          "data pkts",
          "decrypted",
        ],
        j.sessions.map((s) => {
          const keys = s.keys as string[];
          return [
            `${shortKey(keys[0])} ↔ ${shortKey(keys[1])}`,
            (s.streams as number[]).map((n) => `s${n}`).join(","),
            s.cookie_request_s === null ? "-" : String(s.cookie_request_s),
            s.handshake_ms === null ? "-" : String(s.handshake_ms),
            s.handshake_to_first_data_ms === null ? "-" : String(s.handshake_to_first_data_ms),
            String(s.data_packets),
            String(s.decrypted),
          ];
        }),
      ));
    }
    return out.join("\n");
  }
}

function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

function rttSummary(rtts: number[]): { min: number; avg: number; max: number; n: number } | null {
  if (rtts.length === 0) return null;
  const r2 = (n: number) => Math.round(n * 100) / 100;
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const r of rtts) {
    sum += r;
    min = Math.min(min, r);
    max = Math.max(max, r);
  }
  return {
    min: r2(min),
    avg: r2(sum / rtts.length),
    max: r2(max),
    n: rtts.length,
  };
}

/** A plain text table, columns padded to their widest cell. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

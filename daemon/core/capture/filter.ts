/**
 * `decode --filter EXPR`: which records to show. EXPR is terms separated by spaces, all of
 * which must hold; a term is `key=value` (several values separated by `|`: any of them) or
 * `key!=value` (none of them):
 *
 *   stream=N        TCP stream (as tshark's tcp.stream)
 *   relay=HEX       the relay's public key starts with HEX (needs the key log for the relay)
 *   peer=HEX        any key in the packet starts with HEX: the routed / OOB peer, a cookie
 *                   request's sender, the net_crypto session's keys, the stream's client
 *   conn=N          relay connection id (16..255)
 *   type=NAME       any layer's kind or protocol: ping, routing_response, oob_send, data,
 *                   cookie_request, handshake, message, alive, share_relays, custom_lossless,
 *                   onion_request, onion_response, announce_response, data_response,
 *                   relay, net_crypto, onion, friend, tcp_frame, tcp_handshake, proxy, notice,
 *                   ... ("request" and "unknown" are kinds of more than one layer: onion_request
 *                   and onion_response name only the onion's packets)
 *   dir=c2s|s2c     direction within the stream (c2s: from the side that connected)
 *   from=client|relay
 *   time=A..B       seconds since the first packet of the capture (either end may be left out)
 *   frame=A..B      capture frame numbers
 *
 * Notices (gaps, undecodable streams...) pass terms on stream, dir, time and frame, and are
 * shown only if no other term is given, or `type=notice`.
 */
import type { ToxNotice, ToxRecord } from "./tox_records.ts";

export class FilterError extends Error {
  override name = "FilterError";
}

type Range = { readonly lo: number; readonly hi: number };

type Term =
  | { readonly key: "stream" | "conn"; readonly values: readonly number[]; readonly not: boolean }
  | {
    readonly key: "relay" | "peer" | "type" | "dir" | "from";
    readonly values: readonly string[];
    readonly not: boolean;
  }
  | { readonly key: "time" | "frame"; readonly values: readonly Range[]; readonly not: boolean };

export interface RecordFilter {
  /** `relSeconds`: the record's time since the first packet. */
  record(r: ToxRecord, relSeconds: number, sessionKeys?: readonly string[]): boolean;
  notice(n: ToxNotice, relSeconds: number): boolean;
  /** The filter only ever keeps one stream: the decoder may skip the others early. */
  readonly onlyStream: number | null;
}

const KEYS = ["stream", "relay", "peer", "conn", "type", "dir", "from", "time", "frame"];

function parseRange(v: string, what: string, integer: boolean): Range {
  const at = v.indexOf("..");
  const num = (s: string, dflt: number): number => {
    if (s === "") return dflt;
    const n = Number(s);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
      throw new FilterError(`${what}: "${s}" is not a ${integer ? "whole " : ""}number`);
    }
    return n;
  };
  if (at < 0) {
    if (v === "") throw new FilterError(`${what}: empty value`);
    const n = num(v, NaN);
    return { lo: n, hi: n };
  }
  const r = { lo: num(v.slice(0, at), -Infinity), hi: num(v.slice(at + 2), Infinity) };
  if (r.lo > r.hi) throw new FilterError(`${what}: range ${v} is empty`);
  return r;
}

function parseTerm(t: string): Term {
  const m = /^([a-z]+)(!?=)(.+)$/.exec(t);
  if (m === null) {
    throw new FilterError(`"${t}": a term is key=value or key!=value (keys: ${KEYS.join(", ")})`);
  }
  const [, key, op, raw] = m;
  const not = op === "!=";
  const parts = raw.split("|");
  switch (key) {
    case "stream":
    case "conn":
      return {
        key,
        not,
        values: parts.map((p) => {
          const n = Number(p);
          if (!Number.isInteger(n) || n < 0) {
            throw new FilterError(`${key}: "${p}" is not a number`);
          }
          return n;
        }),
      };
    case "relay":
    case "peer":
      return {
        key,
        not,
        values: parts.map((p) => {
          if (!/^[0-9a-fA-F]{2,64}$/.test(p)) {
            throw new FilterError(`${key}: "${p}" is not a hex key prefix (2 to 64 hex digits)`);
          }
          return p.toLowerCase();
        }),
      };
    case "type":
      return { key, not, values: parts.map((p) => p.toLowerCase()) };
    case "dir":
    case "from": {
      const ok = key === "dir" ? ["c2s", "s2c"] : ["client", "relay"];
      for (const p of parts) {
        if (!ok.includes(p)) throw new FilterError(`${key}: "${p}" is not one of ${ok.join(", ")}`);
      }
      return { key, not, values: parts };
    }
    case "time":
    case "frame":
      return { key, not, values: parts.map((p) => parseRange(p, key, key === "frame")) };
    default:
      throw new FilterError(`unknown filter key "${key}" (known: ${KEYS.join(", ")})`);
  }
}

function inRanges(v: number, ranges: readonly Range[]): boolean {
  return ranges.some((r) => v >= r.lo && v <= r.hi);
}

/** Every public key a record names, lower-case hex. */
export function keysOf(r: ToxRecord): string[] {
  const out: string[] = [];
  if (r.client) out.push(r.client);
  for (const l of r.layers) {
    if (l.proto === "relay" && l.publicKey) out.push(l.publicKey);
    else if (l.proto === "tcp_handshake" && l.clientPublicKey) out.push(l.clientPublicKey);
    else if (l.proto === "net_crypto" && l.senderDhtPublicKey) out.push(l.senderDhtPublicKey);
  }
  return out;
}

/** Every name `type=` matches for a record: each layer's protocol and kind. */
export function typesOf(r: ToxRecord): string[] {
  const out: string[] = [];
  for (const l of r.layers) {
    out.push(l.proto);
    if ("kind" in l && typeof l.kind === "string") out.push(l.kind);
  }
  return out;
}

export function parseFilter(expr: string): RecordFilter {
  const terms = expr.trim() === "" ? [] : expr.trim().split(/\s+/).map(parseTerm);
  const recordOnly = terms.some((t) =>
    t.key === "relay" || t.key === "peer" || t.key === "conn" || t.key === "from" ||
    (t.key === "type" && !(t.values as string[]).includes("notice"))
  );
  const streams = terms.filter((t) => t.key === "stream" && !t.not);
  const onlyStream = streams.length === 1 && streams[0].values.length === 1
    ? streams[0].values[0] as number
    : null;

  const holds = (
    t: Term,
    r: ToxRecord | null,
    n: ToxNotice | null,
    rel: number,
    extraKeys: readonly string[],
  ): boolean => {
    const x = (r ?? n)!;
    switch (t.key) {
      case "stream":
        return t.values.includes(x.stream);
      case "conn":
        return r !== null &&
          r.layers.some((l) =>
            l.proto === "relay" && l.connectionId !== undefined &&
            t.values.includes(l.connectionId)
          );
      case "relay":
        return r?.relay !== undefined && t.values.some((v) => r.relay!.startsWith(v));
      case "peer": {
        if (r === null) return false;
        const keys = [...keysOf(r), ...extraKeys];
        return t.values.some((v) => keys.some((k) => k.startsWith(v)));
      }
      case "type":
        return r === null
          ? t.values.includes("notice")
          : typesOf(r).some((k) => t.values.includes(k));
      case "dir":
        return x.dir !== undefined && t.values.includes(x.dir);
      case "from":
        return r !== null && t.values.includes(r.sender);
      case "time":
        return inRanges(rel, t.values);
      case "frame":
        return inRanges(x.frame, t.values);
    }
  };

  return {
    onlyStream,
    record(r, rel, sessionKeys = []) {
      for (const t of terms) if (holds(t, r, null, rel, sessionKeys) === t.not) return false;
      return true;
    },
    notice(n, rel) {
      if (recordOnly) return false;
      for (const t of terms) {
        if (t.key === "type") continue; // only type=notice gets here
        if (holds(t, null, n, rel, []) === t.not) return false;
      }
      return true;
    },
  };
}

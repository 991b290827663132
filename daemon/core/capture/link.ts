/**
 * A captured link-layer frame → the TCP segment inside it, or why there is none.
 *
 * Runs once per captured packet, so it reads bytes directly (no DataView per frame), returns
 * shared objects for the common refusals and caches the address strings it formats.
 * Lengths are taken from the IP header: Ethernet padding and FCS after the packet are ignored,
 * and a payload the snap length cut keeps its declared length in payloadLength.
 * IP fragments are reported, not reassembled: a TCP stream split into IP fragments is rare
 * enough (TCP segments to the path MTU) that the complexity would not pay for itself.
 */
import type { TcpSegment } from "./types.ts";
import { formatIPv4, formatIPv6 } from "../common/ip_text.ts";
export { formatIPv4, formatIPv6 };

export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
/** DLT_RAW as most systems number it when it leaks into files; 14 on OpenBSD. */
export const LINKTYPE_RAW_12 = 12;
export const LINKTYPE_RAW_14 = 14;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LOOP = 108;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export type LinkDecodeResult =
  | { readonly ok: true; readonly segment: TcpSegment }
  | { readonly ok: false; readonly reason: string; readonly notTcp?: boolean };

type Refusal = Extract<LinkDecodeResult, { ok: false }>;

function refusal(reason: string): Refusal {
  return Object.freeze({ ok: false as const, reason });
}

const IP_FRAGMENT = refusal("ip fragment");
const EMPTY = refusal("empty frame");
const SHORT_ETHERNET = refusal("truncated ethernet header");
const SHORT_VLAN = refusal("truncated vlan tag");
const SHORT_SLL = refusal("truncated linux cooked header");
const SHORT_NULL = refusal("truncated loopback header");
const SHORT_IPV4 = refusal("truncated ipv4 header");
const SHORT_IPV6 = refusal("truncated ipv6 header");
const SHORT_IPV6_EXT = refusal("truncated ipv6 extension header");
const SHORT_TCP = refusal("truncated tcp header");
const BAD_IHL = refusal("ipv4 header length below 20");
const BAD_TOTAL = refusal("ipv4 total length shorter than its header");
const BAD_EXT = refusal("ipv6 extension header runs past the packet");
const BAD_TCP_FIT = refusal("tcp header does not fit in the ip packet");
const BAD_DOFF = refusal("tcp data offset below 20");
const NOT_V4 = refusal("ipv4 link type, but not an ipv4 packet");
const NOT_V6 = refusal("ipv6 link type, but not an ipv6 packet");

const notTcpCache = new Map<string, Refusal>();

/** Not TCP at all (ARP, UDP, ICMP...): counted apart from real problems by the caller. */
function notTcp(what: string): Refusal {
  let r = notTcpCache.get(what);
  if (r === undefined) {
    r = Object.freeze({ ok: false as const, reason: `not tcp: ${what}`, notTcp: true });
    if (notTcpCache.size < 1024) notTcpCache.set(what, r);
  }
  return r;
}

const IP_PROTOCOLS: Record<number, string> = {
  1: "icmp",
  2: "igmp",
  17: "udp",
  47: "gre",
  50: "esp",
  58: "icmpv6",
  132: "sctp",
};

function notTcpProtocol(p: number): Refusal {
  const name = IP_PROTOCOLS[p];
  return notTcp(name !== undefined ? `ip protocol ${p} (${name})` : `ip protocol ${p}`);
}

export function decodeLinkFrame(linkType: number, data: Uint8Array): LinkDecodeResult {
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      if (data.length < 14) return SHORT_ETHERNET;
      return byEthertype(data, 14, (data[12] << 8) | data[13]);
    case LINKTYPE_LINUX_SLL:
      if (data.length < 16) return SHORT_SLL;
      return byEthertype(data, 16, (data[14] << 8) | data[15]);
    case LINKTYPE_LINUX_SLL2:
      if (data.length < 20) return SHORT_SLL;
      return byEthertype(data, 20, (data[0] << 8) | data[1]);
    case LINKTYPE_RAW:
    case LINKTYPE_RAW_12:
    case LINKTYPE_RAW_14: {
      if (data.length === 0) return EMPTY;
      const v = data[0] >> 4;
      if (v === 4) return ipv4(data, 0);
      if (v === 6) return ipv6(data, 0);
      return refusal(`raw ip frame of ip version ${v}`);
    }
    case LINKTYPE_IPV4:
      if (data.length === 0) return EMPTY;
      return data[0] >> 4 === 4 ? ipv4(data, 0) : NOT_V4;
    case LINKTYPE_IPV6:
      if (data.length === 0) return EMPTY;
      return data[0] >> 4 === 6 ? ipv6(data, 0) : NOT_V6;
    case LINKTYPE_NULL: {
      if (data.length < 4) return SHORT_NULL;
      // The family is in the byte order of the host that captured: the smaller reading is it.
      const le = (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
      const be = ((data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3]) >>> 0;
      return byFamily(data, Math.min(le, be));
    }
    case LINKTYPE_LOOP: {
      if (data.length < 4) return SHORT_NULL;
      return byFamily(data, ((data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3]) >>> 0);
    }
    default:
      return refusal(`unsupported link type ${linkType}`);
  }
}

/** BSD loopback: AF_INET is 2 everywhere, AF_INET6 differs by system. */
function byFamily(d: Uint8Array, family: number): LinkDecodeResult {
  if (family === 2) return ipv4(d, 4);
  if (family === 10 || family === 24 || family === 28 || family === 30) return ipv6(d, 4);
  return notTcp(`address family ${family}`);
}

function byEthertype(d: Uint8Array, o: number, type: number): LinkDecodeResult {
  // 802.1Q, 802.1ad and the pre-standard QinQ tag: 2 bytes of tag, then the next type.
  while (type === 0x8100 || type === 0x88a8 || type === 0x9100) {
    if (d.length < o + 4) return SHORT_VLAN;
    type = (d[o + 2] << 8) | d[o + 3];
    o += 4;
  }
  if (type === 0x0800) return ipv4(d, o);
  if (type === 0x86dd) return ipv6(d, o);
  if (type < 0x0600) return notTcp("802.3 frame");
  return notTcp(`ethertype 0x${type.toString(16).padStart(4, "0")}`);
}

function ipv4(d: Uint8Array, o: number): LinkDecodeResult {
  if (d.length - o < 20) return SHORT_IPV4;
  const b0 = d[o];
  if (b0 >> 4 !== 4) return refusal(`ipv4 ethertype, but ip version ${b0 >> 4}`);
  const ihl = (b0 & 0x0f) * 4;
  if (ihl < 20) return BAD_IHL;
  if (d.length - o < ihl) return SHORT_IPV4;
  let total = (d[o + 2] << 8) | d[o + 3];
  // 0 is what a capture of a segmentation-offloaded send shows: the frame is the packet.
  if (total === 0) total = d.length - o;
  else if (total < ihl) return BAD_TOTAL;
  const proto = d[o + 9];
  if (proto !== 6) return notTcpProtocol(proto);
  // More-fragments set or a fragment offset: a piece of a packet, not a segment.
  if ((((d[o + 6] << 8) | d[o + 7]) & 0x3fff) !== 0) return IP_FRAGMENT;
  return tcp(d, 4, o + 12, o + ihl, o + total);
}

function ipv6(d: Uint8Array, o: number): LinkDecodeResult {
  if (d.length - o < 40) return SHORT_IPV6;
  if (d[o] >> 4 !== 6) return refusal(`ipv6 ethertype, but ip version ${d[o] >> 4}`);
  const plen = (d[o + 4] << 8) | d[o + 5];
  // 0: a jumbogram or an offloaded send; take the frame as the packet.
  const end = plen === 0 ? d.length : o + 40 + plen;
  let next = d[o + 6];
  let p = o + 40;
  for (;;) {
    switch (next) {
      case 6:
        return tcp(d, 6, o + 8, p, end);
      case 0: // hop-by-hop options
      case 43: // routing
      case 60: // destination options
        if (p + 2 > end) return BAD_EXT;
        if (p + 2 > d.length) return SHORT_IPV6_EXT;
        next = d[p];
        p += (d[p + 1] + 1) * 8;
        break;
      case 51: // authentication header: its length is in 4-byte units, minus 2
        if (p + 2 > end) return BAD_EXT;
        if (p + 2 > d.length) return SHORT_IPV6_EXT;
        next = d[p];
        p += (d[p + 1] + 2) * 4;
        break;
      case 44: {
        if (p + 8 > end) return BAD_EXT;
        if (p + 8 > d.length) return SHORT_IPV6_EXT;
        // An atomic fragment (offset 0, no more fragments) is a whole packet (RFC 6946).
        if ((((d[p + 2] << 8) | d[p + 3]) & 0xfff9) !== 0) return IP_FRAGMENT;
        next = d[p];
        p += 8;
        break;
      }
      case 59:
        return notTcp("ipv6 no next header");
      default:
        return notTcpProtocol(next);
    }
    if (p > end) return BAD_EXT;
  }
}

/**
 * The TCP header at t; the IP packet ends at `end` (declared), the frame may end earlier.
 * Addresses: 4 or 16 bytes each, source then destination, from `addr`.
 */
function tcp(d: Uint8Array, v: 4 | 6, addr: number, t: number, end: number): LinkDecodeResult {
  if (end - t < 20) return BAD_TCP_FIT;
  if (d.length - t < 20) return SHORT_TCP;
  const doff = (d[t + 12] >> 4) * 4;
  if (doff < 20) return BAD_DOFF;
  if (t + doff > end) return BAD_TCP_FIT;
  if (t + doff > d.length) return SHORT_TCP;
  const src = v === 4 ? ipv4At(d, addr) : ipv6At(d, addr);
  const dst = v === 4 ? ipv4At(d, addr + 4) : ipv6At(d, addr + 16);
  const start = t + doff;
  return {
    ok: true,
    segment: {
      ipVersion: v,
      src: { addr: src, port: (d[t] << 8) | d[t + 1] },
      dst: { addr: dst, port: (d[t + 2] << 8) | d[t + 3] },
      seq: ((d[t + 4] << 24) | (d[t + 5] << 16) | (d[t + 6] << 8) | d[t + 7]) >>> 0,
      ack: ((d[t + 8] << 24) | (d[t + 9] << 16) | (d[t + 10] << 8) | d[t + 11]) >>> 0,
      flags: d[t + 13],
      window: (d[t + 14] << 8) | d[t + 15],
      payload: d.subarray(start, Math.min(end, d.length)),
      payloadLength: end - start,
    },
  };
}

// Address strings: a capture has few distinct addresses and many packets.
const CACHE_LIMIT = 4096;
const v4Cache = new Map<number, string>();

function ipv4At(d: Uint8Array, o: number): string {
  const key = ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
  let s = v4Cache.get(key);
  if (s === undefined) {
    s = `${d[o]}.${d[o + 1]}.${d[o + 2]}.${d[o + 3]}`;
    if (v4Cache.size >= CACHE_LIMIT) v4Cache.clear();
    v4Cache.set(key, s);
  }
  return s;
}

interface V6Entry {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  readonly s: string;
}

/** Keyed by a hash of the 16 bytes; the entry holds them to tell collisions apart. */
const v6Cache = new Map<number, V6Entry>();

function word(d: Uint8Array, o: number): number {
  return ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) | 0;
}

function ipv6At(d: Uint8Array, o: number): string {
  const w0 = word(d, o);
  const w1 = word(d, o + 4);
  const w2 = word(d, o + 8);
  const w3 = word(d, o + 12);
  const h = (w0 ^ Math.imul(w1, 0x9e3779b1) ^ Math.imul(w2, 0x85ebca77) ^
    Math.imul(w3, 0xc2b2ae3d)) | 0;
  const e = v6Cache.get(h);
  if (e !== undefined && e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3) return e.s;
  const s = formatIPv6(d, o);
  if (v6Cache.size >= CACHE_LIMIT) v6Cache.clear();
  v6Cache.set(h, { w0, w1, w2, w3, s });
  return s;
}

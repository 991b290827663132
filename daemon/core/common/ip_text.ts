/** IP addresses as text: the one way every module prints and parses them. */

export interface IpLiteral {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

const IPV4_PART = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

function parseIpv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    // Leading zeros are refused because inet_aton and many proxies read them as octal.
    if (!IPV4_PART.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Hex groups of one side of "::" as 16-bit words; a dotted quad is allowed only at the very end. */
function parseIpv6Groups(s: string, mayEndInIpv4: boolean): number[] | null {
  if (s === "") return [];
  const parts = s.split(":");
  const words: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (mayEndInIpv4 && i === parts.length - 1 && p.includes(".")) {
      const v4 = parseIpv4(p);
      if (v4 === null) return null;
      words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else {
      if (!HEX_GROUP.test(p)) return null;
      words.push(parseInt(p, 16));
    }
  }
  return words;
}

function parseIpv6(s: string): Uint8Array | null {
  // Zone ids ("%eth0") name a local interface and mean nothing to a proxy.
  if (!/^[0-9A-Fa-f:.]+$/.test(s)) return null;
  const gap = s.indexOf("::");
  let words: number[];
  if (gap === -1) {
    const all = parseIpv6Groups(s, true);
    if (all === null || all.length !== 8) return null;
    words = all;
  } else {
    // A second "::" (including ":::") would make the gap's size ambiguous.
    if (s.indexOf("::", gap + 1) !== -1) return null;
    const head = parseIpv6Groups(s.slice(0, gap), false);
    const tail = parseIpv6Groups(s.slice(gap + 2), true);
    if (head === null || tail === null) return null;
    // "::" stands for at least one zero group.
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    words = [...head, ...new Array<number>(missing).fill(0), ...tail];
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >>> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

/**
 * An IPv4 dotted quad or an IPv6 address (no brackets, no zone id), as network-order bytes;
 * null when `host` is neither. IPv4-mapped IPv6 (::ffff:1.2.3.4) stays family 6.
 */
export function parseIpLiteral(host: string): IpLiteral | null {
  if (host.includes(":")) {
    const bytes = parseIpv6(host);
    return bytes === null ? null : { family: 6, bytes };
  }
  const bytes = parseIpv4(host);
  return bytes === null ? null : { family: 4, bytes };
}

/** 4 bytes at `offset` as dotted decimal. */
export function formatIPv4(bytes: Uint8Array, offset = 0): string {
  const d = bytes;
  const o = offset;
  return `${d[o]}.${d[o + 1]}.${d[o + 2]}.${d[o + 3]}`;
}

/**
 * 16 bytes at `offset` as RFC 5952 text: lower-case hex without leading zeros, the longest
 * run of two or more zero groups (the first of equals) as "::", and IPv4-mapped addresses
 * as ::ffff:a.b.c.d.
 */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  const g = new Array<number>(8);
  for (let i = 0; i < 8; i++) g[i] = (bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1];
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${formatIPv4(bytes, offset + 12)}`;
  }
  let bestAt = -1;
  let bestLen = 1; // a single zero group is never compressed
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestAt < 0) return g.map((x) => x.toString(16)).join(":");
  const head = g.slice(0, bestAt).map((x) => x.toString(16)).join(":");
  const tail = g.slice(bestAt + bestLen).map((x) => x.toString(16)).join(":");
  return `${head}::${tail}`;
}

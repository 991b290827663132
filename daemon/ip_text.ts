/** IP addresses as text, the one way every module prints them. */

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

/**
 * Packed nodes (DHT.c pack_nodes / unpack_nodes of c-toxcore 0.2.18; spec/friend_connection.md
 * §2.1): type byte ‖ IPv4 (4) or IPv6 (16) address in network order ‖ u16 BE port ‖ 32-byte
 * key, concatenated without a count. Used by friend_connection's SHARE_RELAYS and the onion.
 */
import { codecError, type Decoded, decoded, EncodeError } from "./codec.ts";
import { fromHex, PUBLIC_KEY_SIZE, toHex } from "./crypto.ts";
import type { RelayAddress } from "./relay_address.ts";
import { parseIpLiteral } from "./ip_text.ts";
import { formatIPv4, formatIPv6 } from "./ip_text.ts";

export const TOX_AF_INET = 2;
export const TOX_AF_INET6 = 10;
export const TOX_TCP_INET = 130;
export const TOX_TCP_INET6 = 138;
export const PACKED_NODE_SIZE_IP4 = 1 + 4 + 2 + PUBLIC_KEY_SIZE;
export const PACKED_NODE_SIZE_IP6 = 1 + 16 + 2 + PUBLIC_KEY_SIZE;

export interface PackedNode {
  /** TCP types (130/138) name relays; c-toxcore treats UDP ones as relays too in SHARE_RELAYS. */
  readonly transport: "udp" | "tcp";
  /** Dotted IPv4, or canonical (RFC 5952) lower-case IPv6 text without brackets. */
  readonly host: string;
  readonly port: number;
  readonly publicKey: Uint8Array;
}

/** The canonical text of an IP literal, or null for a host name. */
function canonicalHost(host: string): string | null {
  const ip = parseIpLiteral(host);
  if (ip === null) return null;
  return ip.family === 4 ? formatIPv4(ip.bytes, 0) : formatIPv6(ip.bytes);
}

/** Pack nodes back to back. Throws EncodeError for a host name, a bad port or a bad key. */
export function encodePackedNodes(nodes: readonly PackedNode[]): Uint8Array {
  const parts: { type: number; bytes: Uint8Array; node: PackedNode }[] = [];
  let size = 0;
  for (const node of nodes) {
    const ip = parseIpLiteral(node.host);
    if (ip === null) {
      throw new EncodeError(
        `packed node: ${JSON.stringify(node.host)} is not an IP address (names cannot be packed)`,
      );
    }
    if (!Number.isInteger(node.port) || node.port < 1 || node.port > 65535) {
      throw new EncodeError(`packed node: port ${node.port} is not in 1..65535`);
    }
    if (node.publicKey.length !== PUBLIC_KEY_SIZE) {
      throw new EncodeError(`packed node: public key must be ${PUBLIC_KEY_SIZE} bytes`);
    }
    if (node.transport !== "udp" && node.transport !== "tcp") {
      throw new EncodeError(`packed node: transport ${String(node.transport)} is not udp or tcp`);
    }
    const tcp = node.transport === "tcp";
    const type = ip.family === 4
      ? (tcp ? TOX_TCP_INET : TOX_AF_INET)
      : (tcp ? TOX_TCP_INET6 : TOX_AF_INET6);
    parts.push({ type, bytes: ip.bytes, node });
    size += ip.family === 4 ? PACKED_NODE_SIZE_IP4 : PACKED_NODE_SIZE_IP6;
  }
  const out = new Uint8Array(size);
  let o = 0;
  for (const { type, bytes, node } of parts) {
    out[o++] = type;
    out.set(bytes, o);
    o += bytes.length;
    out[o++] = node.port >>> 8;
    out[o++] = node.port & 0xff;
    out.set(node.publicKey, o);
    o += PUBLIC_KEY_SIZE;
  }
  return out;
}

/**
 * Unpack up to `max` nodes from the start of `bytes`; what follows them is ignored. One bad
 * type byte or cut-off node fails the whole list, as in c-toxcore. Port 0 is passed through
 * (c-toxcore does not check it either); keys are copies.
 */
export function decodePackedNodes(
  bytes: Uint8Array,
  max: number,
): Decoded<{ readonly nodes: PackedNode[]; readonly consumed: number }> {
  const nodes: PackedNode[] = [];
  let o = 0;
  while (nodes.length < max && o < bytes.length) {
    const type = bytes[o];
    let addressSize: number;
    if (type === TOX_AF_INET || type === TOX_TCP_INET) addressSize = 4;
    else if (type === TOX_AF_INET6 || type === TOX_TCP_INET6) addressSize = 16;
    else {
      return codecError(
        "malformed",
        `packed node ${nodes.length} at byte ${o}: unknown address type ${type}`,
      );
    }
    const size = 1 + addressSize + 2 + PUBLIC_KEY_SIZE;
    if (o + size > bytes.length) {
      return codecError(
        "too_short",
        `packed node ${nodes.length} at byte ${o}: ${bytes.length - o} bytes left, needs ${size}`,
      );
    }
    const address = bytes.subarray(o + 1, o + 1 + addressSize);
    const portAt = o + 1 + addressSize;
    nodes.push({
      transport: type === TOX_TCP_INET || type === TOX_TCP_INET6 ? "tcp" : "udp",
      host: addressSize === 4 ? formatIPv4(address, 0) : formatIPv6(address),
      port: (bytes[portAt] << 8) | bytes[portAt + 1],
      publicKey: bytes.slice(portAt + 2, portAt + 2 + PUBLIC_KEY_SIZE),
    });
    o += size;
  }
  return decoded({ nodes, consumed: o });
}

/**
 * c-toxcore ip_is_local: loopback only (127.0.0.0/8, ::1, ::ffff:127.x.x.x), not private LAN
 * ranges. A host name is not local by this rule, even "localhost".
 *
 * Note: in 0.2.18 friend_add_tcp_relay asks this of a relay unpacked with type 130 (TCP IPv4),
 * which ip_is_local reads as IPv6 and never finds local; the loopback swap there really
 * happens only for types 2, 10 and 138. This function answers for the address itself.
 */
export function isLocalAddress(host: string): boolean {
  const ip = parseIpLiteral(host);
  if (ip === null) return false;
  const b = ip.bytes;
  if (ip.family === 4) return b[0] === 127;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  if (b[10] === 0xff && b[11] === 0xff) return b[12] === 127;
  return b[10] === 0 && b[11] === 0 && b[12] === 0 && b[13] === 0 && b[14] === 0 && b[15] === 1;
}

/** A packed node as a relay to connect to (whatever its transport type, as c-toxcore does). */
export function packedNodeToRelay(node: PackedNode): RelayAddress {
  return { host: node.host, port: node.port, publicKey: toHex(node.publicKey) };
}

/** A relay as a TCP packed node with its host in canonical form; null when host is a name. */
export function relayToPackedNode(r: RelayAddress): PackedNode | null {
  const host = canonicalHost(r.host);
  if (host === null) return null;
  return {
    transport: "tcp",
    host,
    port: r.port,
    publicKey: fromHex(r.publicKey, PUBLIC_KEY_SIZE),
  };
}

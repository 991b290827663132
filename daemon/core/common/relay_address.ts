/**
 * Where relays come from: `HOST:PORT:PUBKEY` on the command line, or the community
 * nodes.json format ({"nodes":[{"ipv4","ipv6","tcp_ports","public_key",...}]}).
 * There is no built-in list of public relays: the user supplies them.
 */
import { parseIpLiteral } from "./ip_text.ts";

export interface RelayAddress {
  readonly host: string;
  readonly port: number;
  /** 64 lower-case hex digits. */
  readonly publicKey: string;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const HOSTNAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function checkHost(host: string, what: string): string {
  if (parseIpLiteral(host) !== null || HOSTNAME.test(host)) return host;
  throw new TypeError(`${what}: ${JSON.stringify(host)} is not an IP address or host name`);
}

function checkPort(port: unknown, what: string): number {
  const n = typeof port === "string" && /^\d{1,5}$/.test(port) ? Number(port) : port;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new TypeError(`${what}: port ${JSON.stringify(port)} is not in 1..65535`);
  }
  return n;
}

function checkKey(pk: unknown, what: string): string {
  if (typeof pk !== "string" || !HEX64.test(pk)) {
    throw new TypeError(`${what}: public key must be 64 hex digits`);
  }
  return pk.toLowerCase();
}

/** `HOST:PORT:PUBKEY`; an IPv6 host in brackets (`[::1]:33445:PK`) or bare (`::1:33445:PK`). */
export function parseRelaySpec(spec: string): RelayAddress {
  const what = `relay ${JSON.stringify(spec)}`;
  const last = spec.lastIndexOf(":");
  const mid = last > 0 ? spec.lastIndexOf(":", last - 1) : -1;
  if (last < 0 || mid < 0) throw new TypeError(`${what}: expected HOST:PORT:PUBKEY`);
  let host = spec.slice(0, mid);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return {
    host: checkHost(host, what),
    port: checkPort(spec.slice(mid + 1, last), what),
    publicKey: checkKey(spec.slice(last + 1), what),
  };
}

export function formatRelayAddress(r: RelayAddress): string {
  return r.host.includes(":") ? `[${r.host}]:${r.port}` : `${r.host}:${r.port}`;
}

/**
 * Each node object of a nodes.json text with its name for errors and its addresses (the
 * community list writes "-" or "NONE" for a missing address family).
 */
function nodesOf(text: string): { node: Record<string, unknown>; what: string; hosts: string[] }[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`nodes file is not JSON: ${(e as Error).message}`);
  }
  const nodes = (doc as { nodes?: unknown })?.nodes;
  if (!Array.isArray(nodes)) throw new TypeError(`nodes file has no "nodes" array`);
  return nodes.map((node: Record<string, unknown>, i) => {
    const what = `nodes[${i}]`;
    if (node === null || typeof node !== "object") throw new TypeError(`${what} is not an object`);
    const hosts: string[] = [];
    for (const field of ["ipv4", "ipv6"]) {
      const host = node[field];
      if (typeof host !== "string" || host === "" || host === "-" || host === "NONE") continue;
      hosts.push(checkHost(host, what));
    }
    return { node, what, hosts };
  });
}

/** Every (address, TCP port) of every node in a nodes.json text. */
export function parseNodesJson(text: string): RelayAddress[] {
  const out: RelayAddress[] = [];
  for (const { node, what, hosts } of nodesOf(text)) {
    const publicKey = checkKey(node.public_key, what);
    const ports = Array.isArray(node.tcp_ports) ? node.tcp_ports : [];
    for (const host of hosts) {
      for (const p of ports) out.push({ host, port: checkPort(p, what), publicKey });
    }
  }
  return out;
}

/**
 * Every (address, UDP port) of a nodes.json text: the DHT side of each node, what the onion
 * routes through. Nodes without a "port" are skipped (TCP-only entries), and so are host
 * names: an onion layer carries an IP address.
 */
export function parseNodesJsonUdp(text: string): RelayAddress[] {
  const out: RelayAddress[] = [];
  for (const { node, what, hosts } of nodesOf(text)) {
    if (node.port === undefined || node.port === null) continue;
    const publicKey = checkKey(node.public_key, what);
    const port = checkPort(node.port, what);
    for (const host of hosts) {
      if (parseIpLiteral(host) !== null) out.push({ host, port, publicKey });
    }
  }
  return out;
}

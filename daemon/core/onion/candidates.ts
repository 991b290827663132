/**
 * Which nodes to ask to join a close-node list: the populate step of do_announce/do_friend
 * (path nodes we know, else bootstrap nodes), client_ping_nodes (nodes an answer lists, with
 * c-toxcore's LAN rule) and good_to_ping's memory of who was asked lately. Apart from the lists
 * themselves because it decides what we send, not what an answer means.
 */

import { bytesEqual, type RandomBytes, toHex } from "../common/crypto.ts";
import { parseIpLiteral } from "../common/ip_text.ts";
import type { PackedNode } from "../common/packed_node.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { OnionClientConfig } from "./config.ts";
import { compareDistance, type ListNode } from "./close_list.ts";
import { type OnionPaths, randomInt } from "./onion_path.ts";
import type { OnionNode } from "./packets.ts";

/**
 * c-toxcore ip_is_lan: loopback, the private, link-local and CGNAT IPv4 ranges, IPv6
 * link-local (fe80::/10) and ff00::1..ff02::1, and IPv4 inside IPv6.
 */
export function isLanAddress(host: string): boolean {
  const ip = parseIpLiteral(host);
  if (ip === null) return false;
  const b = ip.bytes;
  if (ip.family === 4) {
    return b[0] === 127 || b[0] === 10 || (b[0] === 172 && (b[1] & 0xf0) === 16) ||
      (b[0] === 192 && b[1] === 168) || (b[0] === 169 && b[1] === 254) ||
      (b[0] === 100 && (b[1] & 0xc0) === 64);
  }
  const v4mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (v4mapped) return isLanAddress(`${b[12]}.${b[13]}.${b[14]}.${b[15]}`);
  const loopback = b.subarray(0, 15).every((x) => x === 0) && b[15] === 1;
  const multicastAllNodes = b[0] === 0xff && b[1] < 3 && b[15] === 1;
  return loopback || multicastAllNodes || (b[0] === 0xfe && (b[1] & 0xc0) === 0x80);
}

function shuffle<T>(random: RandomBytes, a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = randomInt(random, i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
}

/** Sends the list's announce or search request to a node; false when it could not go. */
export type AskNode = (node: OnionNode) => boolean;

export class Candidates {
  readonly #config: OnionClientConfig;
  readonly #random: RandomBytes;
  readonly #paths: OnionPaths;
  readonly #relays: () => readonly RelayAddress[];
  readonly #realPublicKey: Uint8Array;
  /** Candidates asked recently (good_to_ping), per list: "self" or a friend's hex. */
  readonly #asked = new Map<string, Map<string, number>>();

  constructor(
    config: OnionClientConfig,
    random: RandomBytes,
    paths: OnionPaths,
    relays: () => readonly RelayAddress[],
    realPublicKey: Uint8Array,
  ) {
    this.#config = config;
    this.#random = random;
    this.#paths = paths;
    this.#relays = relays;
    this.#realPublicKey = realPublicKey;
  }

  /** Forget who was asked for one list ("self" or a friend's hex). */
  forget(key: string): void {
    this.#asked.delete(key);
  }

  /** Forget who was asked for every list: after a sleep, anybody may be asked again. */
  clear(): void {
    this.#asked.clear();
  }

  /**
   * Ask nodes not yet in the list (learnt path nodes, else the bootstrap nodes), each at
   * most once per minNodePingMs; returns how many were asked and when a candidate may be
   * asked again.
   */
  populate(
    key: string,
    list: ListNode[],
    max: number,
    now: number,
    ask: AskNode,
  ): { sent: number; next: number } {
    let asked = this.#asked.get(key);
    if (!asked) this.#asked.set(key, asked = new Map());
    for (const [hex, at] of asked) if (now - at >= this.#config.minNodePingMs) asked.delete(hex);
    const pathNodes = this.#paths.pathNodes;
    const pool = pathNodes.length > 0 ? pathNodes : this.#paths.bootstrapNodes();
    const inList = new Set(list.map((n) => n.hex));
    const candidates = pool.filter((n) => {
      const hex = toHex(n.publicKey);
      return !inList.has(hex) && !asked.has(hex);
    });
    shuffle(this.#random, candidates);
    let sent = 0;
    for (const node of candidates.slice(0, Math.max(1, max))) {
      if (ask(node)) {
        asked.set(toHex(node.publicKey), now);
        sent++;
      }
    }
    // Only candidates still outside the list are worth waking up for.
    let next = Infinity;
    for (const [hex, at] of asked) {
      if (!inList.has(hex)) next = Math.min(next, at + this.#config.minNodePingMs);
    }
    return { sent, next };
  }

  /**
   * client_ping_nodes: nodes a response lists are asked once (announce or search) if they
   * would make the list. Private addresses are only taken from a relay on a private address
   * itself: from anywhere else they cannot mean what they say.
   */
  pingListed(
    key: string,
    list: ListNode[],
    ref: Uint8Array,
    max: number,
    nodes: readonly PackedNode[],
    relay: string,
    now: number,
    ask: AskNode,
  ): void {
    if (nodes.length === 0) return;
    const via = this.#relays().find((r) => r.publicKey === relay);
    const lanOk = via !== undefined && isLanAddress(via.host);
    let asked = this.#asked.get(key);
    if (!asked) this.#asked.set(key, asked = new Map());
    for (const p of nodes) {
      if (p.transport !== "udp") continue;
      if (!lanOk && isLanAddress(p.host)) continue;
      const hex = toHex(p.publicKey);
      if (list.some((n) => n.hex === hex)) continue;
      if (bytesEqual(p.publicKey, this.#realPublicKey)) continue;
      const sorted = [...list].sort((a, b) =>
        compareDistance(ref, a.node.publicKey, b.node.publicKey)
      );
      const worth = sorted.length < max ||
        compareDistance(ref, p.publicKey, sorted[sorted.length - 1].node.publicKey) < 0;
      if (!worth) continue;
      const seen = asked.get(hex);
      if (seen !== undefined && now - seen < this.#config.minNodePingMs) continue;
      const node: OnionNode = { host: p.host, port: p.port, publicKey: p.publicKey };
      if (ask(node)) asked.set(hex, now);
    }
  }
}

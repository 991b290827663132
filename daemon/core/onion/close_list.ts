/**
 * The close-node lists (onion_client.c's clients_announce_list and each friend's clients_list):
 * the nodes closest to a key by XOR distance that answered us, how an answer enters or refreshes
 * an entry, and when unanswered pings drop one. Shared by our announce and every friend search,
 * which differ only in what an answer means.
 */

import { toHex } from "../common/crypto.ts";
import type { OnionClientConfig } from "./config.ts";
import type { OnionNode } from "./packets.ts";

export const ZERO_KEY = new Uint8Array(32);

/** An entry of an announce list (ours) or a search list (a friend's). */
export interface ListNode {
  readonly node: OnionNode;
  readonly hex: string;
  /** Our announce: the ping id to echo. Searches never send one (c-toxcore neither). */
  pingId: Uint8Array;
  /** Ours: stored there. A friend's: it holds the friend's announcement (dataKey). */
  stored: boolean;
  dataKey: Uint8Array | null;
  lastResponse: number;
  lastPinged: number;
  pings: number;
  readonly addedAt: number;
  pathId: number;
}

/** id_closest: < 0 when `a` is closer to `ref` than `b` (XOR metric), 0 when equal. */
export function compareDistance(ref: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const da = ref[i] ^ a[i];
    const db = ref[i] ^ b[i];
    if (da !== db) return da - db;
  }
  return 0;
}

export function timedOut(config: OnionClientConfig, n: ListNode, now: number): boolean {
  return n.pings >= config.nodeMaxPings && now - n.lastPinged >= config.nodeTimeoutMs;
}

export function dropTimedOut(config: OnionClientConfig, list: ListNode[], now: number): void {
  for (let i = list.length - 1; i >= 0; i--) if (timedOut(config, list[i], now)) list.splice(i, 1);
}

/** client_add_to_list: keep the `max` nodes closest to `ref`, refresh a known one. */
export function addToList(
  config: OnionClientConfig,
  list: ListNode[],
  ref: Uint8Array,
  max: number,
  entry: { readonly node: OnionNode; readonly pathId: number; readonly sentAt: number },
  now: number,
  update: (n: ListNode) => void,
): void {
  const hex = toHex(entry.node.publicKey);
  let n = list.find((x) => x.hex === hex);
  if (!n) {
    // A list of size 0 keeps nothing (a config that turns announcing off).
    if (max <= 0) return;
    dropTimedOut(config, list, now);
    if (list.length >= max) {
      list.sort((a, b) => compareDistance(ref, a.node.publicKey, b.node.publicKey));
      const farthest = list[list.length - 1];
      if (compareDistance(ref, entry.node.publicKey, farthest.node.publicKey) >= 0) return;
      list.pop();
    }
    n = {
      node: entry.node,
      hex,
      pingId: ZERO_KEY,
      stored: false,
      dataKey: null,
      lastResponse: now,
      lastPinged: entry.sentAt,
      pings: 0,
      addedAt: now,
      pathId: entry.pathId,
    };
    list.push(n);
  }
  n.lastResponse = now;
  n.pings = 0;
  n.pathId = entry.pathId;
  update(n);
}

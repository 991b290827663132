/**
 * Shared keys with onion nodes, per our key pair (the real one or a friend's search key): every
 * announce response from a node is opened with the same key, and precomputing it is the
 * costly part of opening one (and of sealing every request to it). Sized for a daemon with
 * thousands of friends: each friend's search key meets up to 8 nodes, and a cache smaller than
 * that working set recomputes a key agreement (~1 ms in JavaScript) for nearly every request.
 * The oldest entry goes first when it is full (~200 bytes an entry: ~3 MB at the bound).
 */

/** Entries kept: 1,000 friends × 8 search nodes, our 12 announce nodes and room to spare. */
export const SHARED_KEY_CACHE_SIZE = 16_384;

import { type KeyPair, precompute, toHex } from "../common/crypto.ts";

export class SharedKeyCache {
  readonly #shared = new Map<string, Uint8Array>();

  /** null when the node's key is of low order: nothing can be opened from it. */
  get(keys: KeyPair, nodeKey: Uint8Array): Uint8Array | null {
    const k = toHex(keys.publicKey) + toHex(nodeKey);
    let s = this.#shared.get(k);
    if (s === undefined) {
      try {
        s = precompute(nodeKey, keys.secretKey);
      } catch {
        return null;
      }
      if (this.#shared.size >= SHARED_KEY_CACHE_SIZE) {
        this.#shared.delete(this.#shared.keys().next().value!);
      }
      this.#shared.set(k, s);
    }
    return s;
  }
}

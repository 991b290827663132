/**
 * Shared keys with onion nodes, per our key pair (the real one or a friend's search key): every
 * announce response from a node is opened with the same key, and precomputing it is the
 * costly part of opening one. Bounded by clearing, as a cache that may simply be rebuilt.
 */

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
      if (this.#shared.size >= 1024) this.#shared.clear();
      this.#shared.set(k, s);
    }
    return s;
  }
}

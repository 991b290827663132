/**
 * Announce requests and their sendbacks (client_send_announce_request, new_sendback,
 * check_sendback and the ping array behind them): our announce and every friend search send the
 * same request, and an answer is only ours if it carries a sendback we issued and opens with the
 * key pair that request was made with. The pending-request table lives here so both halves of
 * that rule stay together.
 */

import { type KeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import type { OnionClientConfig } from "./config.ts";
import { ZERO_KEY } from "./close_list.ts";
import type { Kind, OnionPaths } from "./onion_path.ts";
import {
  type AnnounceResponse,
  announceResponseSendback,
  encodeAnnounceRequestShared,
  ONION_ANNOUNCE_SENDBACK_DATA_LENGTH,
  type OnionNode,
  openAnnounceResponse,
} from "./packets.ts";
import { SharedKeyCache } from "./shared_keys.ts";

export interface Sendback {
  readonly target: string | null; // null: our own announce; else the friend (hex)
  readonly node: OnionNode;
  readonly pathId: number;
  readonly sentAt: number;
  readonly pingId: Uint8Array;
}

/** A friend as a search sees it: whom we look for, and the key pair we look with. */
export interface SearchTarget {
  readonly realPublicKey: Uint8Array;
  readonly hex: string;
  /** The key pair searches are made with (friends_list[].temp_*_key). */
  readonly searchKeys: KeyPair;
}

export class AnnounceRequests {
  readonly #config: OnionClientConfig;
  readonly #random: RandomBytes;
  readonly #paths: OnionPaths;
  readonly #real: KeyPair;
  readonly #data: KeyPair;
  readonly #sendbacks = new Map<string, Sendback>();
  /** Shared keys with nodes, per our key pair (real or a friend's search key). */
  readonly #shared = new SharedKeyCache();

  constructor(
    config: OnionClientConfig,
    random: RandomBytes,
    paths: OnionPaths,
    realKeys: KeyPair,
    dataKeys: KeyPair,
  ) {
    this.#config = config;
    this.#random = random;
    this.#paths = paths;
    this.#real = realKeys;
    this.#data = dataKeys;
  }

  /** Requests sent and not yet answered nor expired. */
  get size(): number {
    return this.#sendbacks.size;
  }

  /** client_send_announce_request: `friend` null announces us, else searches for it. */
  send(
    friend: SearchTarget | null,
    node: OnionNode,
    pingId: Uint8Array,
    pathId: number | null,
    now: number,
  ): boolean {
    const kind: Kind = friend ? "friends" : "self";
    const path = this.#paths.pathFor(kind, pathId, now);
    if (path === null || !this.#paths.canSendThrough(path)) return false;
    const sendback = this.#random(ONION_ANNOUNCE_SENDBACK_DATA_LENGTH);
    const keys = friend ? friend.searchKeys : this.#real;
    const shared = this.#shared.get(keys, node.publicKey);
    if (shared === null) return false; // a low-order node key: nothing could answer us
    const request = encodeAnnounceRequestShared(
      {
        requesterPublicKey: keys.publicKey,
        pingId: friend ? ZERO_KEY : pingId,
        searchPublicKey: friend ? friend.realPublicKey : this.#real.publicKey,
        dataPublicKey: friend ? ZERO_KEY : this.#data.publicKey,
        sendback,
      },
      shared,
      this.#random,
    );
    if (!this.#paths.sendThrough(path, node, request, now)) return false;
    while (this.#sendbacks.size >= this.#config.maxSendbacks) {
      this.#sendbacks.delete(this.#sendbacks.keys().next().value!);
    }
    this.#sendbacks.set(toHex(sendback), {
      target: friend?.hex ?? null,
      node,
      pathId: path.id,
      sentAt: now,
      pingId: pingId.slice(),
    });
    return true;
  }

  expire(now: number): void {
    for (const [k, s] of this.#sendbacks) {
      if (now - s.sentAt < this.#config.sendbackTimeoutMs) break; // insertion order = age
      this.#sendbacks.delete(k);
    }
  }

  /**
   * check_sendback and the opening of the response: the pending request it answers (consumed),
   * the friend the search was for (null: our announce), and what it says; null if not ours.
   */
  take<F extends SearchTarget>(
    body: Uint8Array,
    friends: (hex: string) => F | undefined,
  ): { entry: Sendback; friend: F | null; response: AnnounceResponse } | null {
    const sb = announceResponseSendback(body);
    if (!sb.ok) return null;
    const key = toHex(sb.value);
    const entry = this.#sendbacks.get(key);
    if (!entry) return null;
    const friend = entry.target === null ? null : friends(entry.target) ?? null;
    if (entry.target !== null && !friend) return null;
    const keys = friend ? friend.searchKeys : this.#real;
    const shared = this.#shared.get(keys, entry.node.publicKey);
    if (shared === null) return null;
    const r = openAnnounceResponse(body, shared);
    if (!r.ok) return null;
    // Only now is it ours: a forged sendback cannot consume a pending request.
    this.#sendbacks.delete(key);
    return { entry, friend, response: r.value };
  }
}

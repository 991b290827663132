/**
 * Announcing ourselves (do_announce, onion_isconnected and the announce half of
 * handle_announce_response): keep our real key stored at the nodes closest to it, with our
 * onion data key, so a friend's search finds us. Apart from the friend side because its
 * schedule, its ping ids and its notion of "stored" are its own.
 */

import { bytesEqual, type KeyPair } from "../common/crypto.ts";
import type { OnionClientConfig } from "./config.ts";
import type { OnionAnnounceNodeView, OnionEvent } from "./views.ts";
import { addToList, dropTimedOut, type ListNode, timedOut, ZERO_KEY } from "./close_list.ts";
import type { Candidates } from "./candidates.ts";
import type { AnnounceRequests, Sendback } from "./announce_requests.ts";
import { addressOf, type OnionPaths } from "./onion_path.ts";
import type { AnnounceResponse } from "./packets.ts";

export class SelfAnnounce {
  readonly #config: OnionClientConfig;
  readonly #paths: OnionPaths;
  readonly #requests: AnnounceRequests;
  readonly #candidates: Candidates;
  readonly #real: KeyPair;
  readonly #data: KeyPair;
  readonly #emit: (e: OnionEvent) => void;
  readonly #announce: ListNode[] = [];
  #lastPopulated = -Infinity;
  #announced = false;

  constructor(
    config: OnionClientConfig,
    paths: OnionPaths,
    requests: AnnounceRequests,
    candidates: Candidates,
    realKeys: KeyPair,
    dataKeys: KeyPair,
    emit: (e: OnionEvent) => void,
  ) {
    this.#config = config;
    this.#paths = paths;
    this.#requests = requests;
    this.#candidates = candidates;
    this.#real = realKeys;
    this.#data = dataKeys;
    this.#emit = emit;
  }

  /** Stored at one node at least and at half of the live announce nodes (onion_isconnected). */
  get announced(): boolean {
    return this.#announced;
  }

  /** do_announce: ping the list's nodes that are due, look for more; when to come back. */
  doAnnounce(now: number): number {
    const cfg = this.#config;
    let next = Infinity;
    dropTimedOut(cfg, this.#announce, now);
    for (const n of this.#announce) {
      if (n.pings >= cfg.nodeMaxPings) {
        next = Math.min(next, n.lastPinged + cfg.nodeTimeoutMs);
        continue;
      }
      const due = n.lastPinged + this.#announceInterval(n, now);
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      // The last try for a node that has lived long goes by another path (c-toxcore).
      const lastChance = n.pings === cfg.nodeMaxPings - 1 &&
        now - n.addedAt >= cfg.timeToStableMs;
      if (this.#requests.send(null, n.node, n.pingId, lastChance ? null : n.pathId, now)) {
        n.lastPinged = now;
        n.pings++;
        next = Math.min(next, now + this.#announceInterval(n, now));
      } else {
        next = Math.min(next, now + 1_000);
      }
    }
    if (
      this.#announce.length <= cfg.maxAnnounceNodes / 2 ||
      now - this.#lastPopulated >= cfg.populateEveryMs
    ) {
      const p = this.#candidates.populate(
        "self",
        this.#announce,
        cfg.maxAnnounceNodes / 2,
        now,
        (node) => this.#requests.send(null, node, ZERO_KEY, null, now),
      );
      if (p.sent > 0) this.#lastPopulated = now;
      next = Math.min(next, p.next);
    }
    return next;
  }

  #announceInterval(n: ListNode, now: number): number {
    const cfg = this.#config;
    if (!n.stored) return cfg.announceIntervalNotStoredMs;
    const path = this.#paths.pathById("self", n.pathId);
    if (path === null || this.#paths.pathDead(path, now)) return cfg.announceIntervalNotStoredMs;
    const stable = now - n.addedAt >= cfg.timeToStableMs && n.pings === 0 &&
      now - path.createdAt >= cfg.timeToStableMs;
    return stable ? cfg.announceIntervalStableMs : cfg.announceIntervalStoredMs;
  }

  /** Whether friends can find us now, reported on change; true when we just became findable. */
  updateAnnounced(now: number, relayUpAt: number): boolean {
    const live = this.#announce.filter((n) => !timedOut(this.#config, n, now));
    const stored = live.filter((n) => n.stored).length;
    const announced = stored > 0 && stored >= Math.floor(live.length / 2);
    if (announced !== this.#announced) {
      this.#announced = announced;
      this.#emit({
        type: "onion_announced",
        announced,
        storedAt: stored,
        nodes: live.length,
        sinceRelayUpMs: announced && Number.isFinite(relayUpAt)
          ? Math.round(now - relayUpAt)
          : null,
      });
      return announced;
    }
    return false;
  }

  /** handle_announce_response for our announce: the node joins or refreshes our list. */
  onAnnounceResponse(
    entry: Sendback,
    response: AnnounceResponse,
    relay: string,
    now: number,
  ): void {
    const { isStored, pingIdOrKey, nodes } = response;
    addToList(
      this.#config,
      this.#announce,
      this.#real.publicKey,
      this.#config.maxAnnounceNodes,
      entry,
      now,
      (n) => {
        if (isStored === 1) {
          // Somebody announced our key: stored only if it is our own data key.
          n.stored = bytesEqual(pingIdOrKey, this.#data.publicKey);
          return;
        }
        n.stored = isStored === 2;
        n.pingId = pingIdOrKey;
        // A fresh ping id is answered at once: the second request is what stores us, and
        // c-toxcore's 3-s wait for it is most of its time to be findable.
        if (!bytesEqual(pingIdOrKey, entry.pingId)) n.lastPinged = -Infinity;
      },
    );
    this.#candidates.pingListed(
      "self",
      this.#announce,
      this.#real.publicKey,
      this.#config.maxAnnounceNodes,
      nodes,
      relay,
      now,
      (node) => this.#requests.send(null, node, ZERO_KEY, null, now),
    );
  }

  /** After a suspend or a network change: every node is due, and more are looked for. */
  wake(): void {
    for (const n of this.#announce) n.lastPinged = -Infinity;
    this.#lastPopulated = -Infinity;
  }

  nodeViews(now: number): OnionAnnounceNodeView[] {
    const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : null);
    return this.#announce.map((n) => ({
      publicKey: n.hex,
      address: addressOf(n.node),
      stored: n.stored,
      lastResponseAgoMs: ago(n.lastResponse),
      pingsUnanswered: n.pings,
    }));
  }
}

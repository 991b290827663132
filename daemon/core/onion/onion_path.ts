/**
 * Onion paths for a client with no UDP (onion_client.c's onion_paths, random_path,
 * random_nodes_path_onion, path_timed_out): each starts at a connected TCP relay and goes on
 * through two UDP nodes that answered us before (or bootstrap nodes until some have). Kept
 * apart because when a path dies decides which route every request takes, and those rules
 * are easier to check on their own.
 */

import { bytesEqual, newKeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import { formatRelayAddress, type RelayAddress } from "../common/relay_address.ts";
import type { OnionClientConfig } from "./config.ts";
import type { OnionCounters, OnionPathView } from "./views.ts";
import {
  createOnionPath,
  encodeOnionRequestTcp,
  isIpLiteral,
  type OnionNode,
  type OnionPath,
} from "./packets.ts";

/** What the onion needs from TCP_connections. */
export interface OnionTransport {
  /** Relay packet 8 through that relay; false when it cannot take it now. */
  send(body: Uint8Array, relay: string): boolean;
  /**
   * Whether that relay would take a packet now. Asked before a request is built: building
   * one costs three boxes, and a full relay would refuse it anyway.
   */
  canSend?(relay: string): boolean;
  /** Relays with a confirmed session, by key (hex), host and port. */
  connectedRelays(): readonly RelayAddress[];
}

export type Kind = "self" | "friends";

export interface Path {
  readonly id: number;
  readonly kind: Kind;
  readonly relay: string;
  readonly onion: OnionPath;
  readonly createdAt: number;
  lastSuccess: number;
  lastUsed: number;
  usesWithoutResponse: number;
}

function nodeOf(r: RelayAddress): OnionNode | null {
  if (!isIpLiteral(r.host)) return null;
  if (!/^[0-9a-fA-F]{64}$/.test(r.publicKey)) return null;
  const publicKey = new Uint8Array(32);
  for (let i = 0; i < 32; i++) publicKey[i] = parseInt(r.publicKey.slice(2 * i, 2 * i + 2), 16);
  return { host: r.host, port: r.port, publicKey };
}

export function addressOf(n: { host: string; port: number }): string {
  return formatRelayAddress({ host: n.host, port: n.port, publicKey: "" });
}

export function randomInt(random: RandomBytes, n: number): number {
  const b = random(4);
  return (((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0) % n;
}

/** The paths for announcing and for friends, and the nodes to build them from. */
export class OnionPaths {
  readonly #config: OnionClientConfig;
  readonly #random: RandomBytes;
  readonly #transport: OnionTransport;
  readonly #relays: () => readonly RelayAddress[];
  readonly #counters: OnionCounters;
  readonly #bootstrap = new Map<string, OnionNode>();
  /** Nodes that answered, newest last (path_nodes). */
  #pathNodes: OnionNode[] = [];
  readonly #paths: Record<Kind, (Path | null)[]> = { self: [], friends: [] };
  #nextPathId = 1;

  constructor(
    config: OnionClientConfig,
    random: RandomBytes,
    transport: OnionTransport,
    relays: () => readonly RelayAddress[],
    counters: OnionCounters,
  ) {
    this.#config = config;
    this.#random = random;
    this.#transport = transport;
    this.#relays = relays;
    this.#counters = counters;
  }

  /** onion_add_bs_path_node: a node to build paths from and announce to before we know any. */
  addBootstrap(r: RelayAddress): { ok: true } | { ok: false; message: string } {
    const node = nodeOf(r);
    if (node === null) {
      return {
        ok: false,
        message: `${formatRelayAddress(r)}: an onion node needs an IP address and a 64-hex key`,
      };
    }
    this.#bootstrap.set(toHex(node.publicKey), node);
    return { ok: true };
  }

  /** Nodes that answered, newest last (path_nodes). */
  get pathNodes(): readonly OnionNode[] {
    return this.#pathNodes;
  }

  pathById(kind: Kind, id: number): Path | null {
    return this.#paths[kind].find((p) => p !== null && p.id === id) ?? null;
  }

  pathDead(p: Path, now: number): boolean {
    const cfg = this.#config;
    if (now - p.createdAt >= cfg.pathMaxLifetimeMs) return true;
    if (!this.#relays().some((r) => r.publicKey === p.relay)) return true;
    const timeout = p.lastSuccess === p.createdAt ? cfg.pathFirstTimeoutMs : cfg.pathTimeoutMs;
    return p.usesWithoutResponse >= cfg.pathMaxNoResponseUses && now - p.lastUsed >= timeout;
  }

  /** random_path: the asked-for path if it lives, else a random slot, rebuilt if dead. */
  pathFor(kind: Kind, id: number | null, now: number): Path | null {
    const slots = this.#paths[kind];
    if (id !== null) {
      const p = this.pathById(kind, id);
      if (p !== null && !this.pathDead(p, now)) return p;
    }
    const n = this.#config.pathsPerKind;
    while (slots.length < n) slots.push(null);
    const slot = randomInt(this.#random, n);
    const p = slots[slot];
    if (p !== null && !this.pathDead(p, now)) return p;
    const made = this.#newPath(kind, now);
    slots[slot] = made;
    return made;
  }

  /** random_nodes_path_onion without UDP: a relay, then two nodes picked with replacement. */
  #newPath(kind: Kind, now: number): Path | null {
    const relays = this.#relays();
    if (relays.length === 0) return null;
    const pool = this.#pathNodes.length >= 2 ? this.#pathNodes : this.bootstrapNodes();
    if (pool.length === 0) return null;
    const relay = relays[randomInt(this.#random, relays.length)];
    const n2 = pool[randomInt(this.#random, pool.length)];
    const n3 = pool[randomInt(this.#random, pool.length)];
    let onion: OnionPath;
    try {
      onion = createOnionPath(n2, n3, () => newKeyPair(this.#random));
    } catch {
      return null; // a node key of low order: nothing to build on it
    }
    return {
      id: this.#nextPathId++,
      kind,
      relay: relay.publicKey,
      onion,
      createdAt: now,
      lastSuccess: now,
      lastUsed: now,
      // A new path gets half its allowance of unanswered uses (c-toxcore).
      usesWithoutResponse: this.#config.pathMaxNoResponseUses / 2,
    };
  }

  /** Explicit bootstrap nodes, then every connected relay at its TCP port as a node. */
  bootstrapNodes(): OnionNode[] {
    const out = [...this.#bootstrap.values()];
    for (const r of this.#relays()) {
      if (this.#bootstrap.has(r.publicKey)) continue;
      const node = nodeOf(r);
      if (node !== null) out.push(node);
    }
    return out;
  }

  /** onion_add_path_node. */
  addPathNode(node: OnionNode): void {
    if (this.#pathNodes.some((n) => bytesEqual(n.publicKey, node.publicKey))) return;
    this.#pathNodes.push(node);
    if (this.#pathNodes.length > this.#config.maxPathNodes) this.#pathNodes.shift();
  }

  /** An answer came back through the path: it lives on, and its nodes are good to build from. */
  answered(kind: Kind, id: number, now: number): void {
    const path = this.pathById(kind, id);
    if (path !== null) {
      path.lastSuccess = now;
      path.usesWithoutResponse = 0;
      this.addPathNode(path.onion.n2);
      this.addPathNode(path.onion.n3);
    }
  }

  /** Whether a request through `path` could leave now (its relay takes packets). */
  canSendThrough(path: Path): boolean {
    return this.#transport.canSend?.(path.relay) !== false;
  }

  sendThrough(path: Path, dest: OnionNode, payload: Uint8Array, now: number): boolean {
    if (this.#transport.canSend?.(path.relay) === false) return false;
    const body = encodeOnionRequestTcp(path.onion, dest, payload, this.#random);
    if (!this.#transport.send(body, path.relay)) return false;
    this.#counters.requestsSent++;
    if (path.usesWithoutResponse < this.#config.pathMaxNoResponseUses) path.lastUsed = now;
    path.usesWithoutResponse++;
    return true;
  }

  views(now: number): OnionPathView[] {
    const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : null);
    const paths: OnionPathView[] = [];
    for (const kind of ["self", "friends"] as const) {
      for (const p of this.#paths[kind]) {
        if (p === null || this.pathDead(p, now)) continue;
        paths.push({
          relay: p.relay,
          nodes: [addressOf(p.onion.n2), addressOf(p.onion.n3)],
          ageMs: Math.round(now - p.createdAt),
          lastSuccessAgoMs: p.lastSuccess > p.createdAt ? ago(p.lastSuccess) : null,
        });
      }
    }
    return paths;
  }
}

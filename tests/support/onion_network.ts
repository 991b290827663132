/**
 * A network of tox-bootstrapd nodes as the onion over TCP sees them (spec/onion.md §3–§5;
 * c-toxcore 0.2.18 TCP_server.c, onion.c, onion_announce.c), in process and sans-I/O: a client
 * hands relay packet-8 bodies to the node it is connected to, and takes relay packet-9 bodies
 * back. Every node is relay, N2, N3 and announce node at once, as a bootstrapd is; the
 * UDP hops between them are routed by the IP_Port inside each layer.
 *
 * Modelled faithfully: the size rules of each hop, the ping id (a keyed hash of the 300-s
 * window, the requester key and the previous hop's address, valid for the current and the
 * previous window), is_stored 0/1/2 with every quirk of §4.1, entries that expire after 300 s
 * (160 at most, the closest to the node's key kept), close nodes with the LAN rule, data
 * forwarded only to a stored key. Simplified: return paths are plain records, not encrypted
 * RETURN blobs (so the 2-hour key rotation that ends them is not modelled), and a node's DHT
 * knows every other node of the network.
 */
import { isLanAddress } from "../../daemon/core/onion/candidates.ts";
import { hmac } from "@noble/hashes/hmac.js";
import { sha512 } from "@noble/hashes/sha2.js";
import {
  bytesEqual,
  type KeyPair,
  newKeyPair,
  NONCE_SIZE,
  PUBLIC_KEY_SIZE,
  type RandomBytes,
  toHex,
} from "../../daemon/core/common/crypto.ts";
import {
  decodeAnnounceRequest,
  decodeOnionRequestTcp,
  encodeAnnounceResponse,
  encodeIpPort,
  type IpPort,
  type IsStored,
  MAX_SENT_NODES,
  NET_PACKET_ANNOUNCE_REQUEST,
  NET_PACKET_ONION_DATA_REQUEST,
  NET_PACKET_ONION_DATA_RESPONSE,
  ONION_ANNOUNCE_REQUEST_SIZE,
  ONION_DATA_REQUEST_MIN_SIZE,
  ONION_MAX_PACKET_SIZE,
  ONION_PING_ID_SIZE,
  ONION_SEND_BASE,
  type OnionNode,
  openOnionLayer,
} from "../../daemon/core/onion/packets.ts";
import type { PackedNode } from "../../daemon/core/common/packed_node.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";

// onion.h sizes that packets.ts has no use for.
const ONION_RETURN_1 = NONCE_SIZE + 19 + 16;
const ONION_RETURN_2 = NONCE_SIZE + 19 + 16 + ONION_RETURN_1;
const ONION_RETURN_3 = NONCE_SIZE + 19 + 16 + ONION_RETURN_2;
const ONION_SEND_2 = NONCE_SIZE + 2 * ONION_SEND_BASE + ONION_RETURN_1;
const ONION_SEND_3 = NONCE_SIZE + ONION_SEND_BASE + ONION_RETURN_2;
/** onion_announce.h */
export const ONION_ANNOUNCE_TIMEOUT_S = 300;
export const ONION_ANNOUNCE_MAX_ENTRIES = 160;

/** Why a packet went no further. */
export type FakeOnionDropReason =
  /** The packet 8 was handed to a key that is no node of this network. */
  | "unknown_relay"
  /** Packet 8 of ≤ 159 bytes with its id: tox-bootstrapd closes the client's connection. */
  | "connection_closed"
  /** Outside a hop's length rule (onion_send_1, handle_send_1/2, the announce/data handlers). */
  | "size"
  /** An IP_Port with a family other than 2 or 10, or a layer with nothing after it. */
  | "malformed"
  /** A layer names an address no node of the network has. */
  | "unknown_address"
  /** A silent node was on the way (either direction). */
  | "silent"
  /** Lost to `dropRate` on one UDP hop. */
  | "lost"
  /** A layer did not open with the node's key. */
  | "bad_layer"
  /** N3 forwards only 0x83 and 0x85. */
  | "payload_id"
  /** D could not open the announce request. */
  | "bad_announce"
  /** A 0x85 for a key not (or no longer) announced at D. */
  | "not_announced";

const DROP_REASONS: readonly FakeOnionDropReason[] = [
  "unknown_relay",
  "connection_closed",
  "size",
  "malformed",
  "unknown_address",
  "silent",
  "lost",
  "bad_layer",
  "payload_id",
  "bad_announce",
  "not_announced",
];

export interface FakeOnionStats {
  /** Packet-8 bodies handed in. */
  requests: number;
  /** Announce requests D opened and answered (whatever is_stored). */
  announcesAnswered: number;
  /** Entries stored or refreshed (a valid ping id). */
  announcesStored: number;
  /** Non-zero ping ids that were not valid (other requester, other N3, too old). */
  pingIdsRefused: number;
  /** Valid ping ids that found no room (160 entries all closer to D's key). */
  storesRefusedFull: number;
  /** 0x85 turned into 0x86 and sent along the announced peer's return path. */
  dataForwarded: number;
  /** Packet-9 bodies queued for a client. */
  responsesQueued: number;
  readonly drops: Record<FakeOnionDropReason, number>;
}

export interface FakeOnionNetworkOptions {
  /** How many nodes at 127.0.0.1 from port 33445, or their UDP addresses (default 3). */
  readonly nodes?: number | readonly IpPort[];
  /**
   * Whether an announce response lists up to 4 of the other nodes, closest to the search key
   * first. Off by default: a lone real bootstrapd, or bootstrapds that never met, list none.
   */
  readonly listCloseNodes?: boolean;
  /** The chance each UDP hop loses a packet (0..1; default 0). */
  readonly dropRate?: number;
  /** ONION_ANNOUNCE_MAX_ENTRIES, smaller to test the full list cheaply. */
  readonly maxEntries?: number;
}

/** One bootstrapd: its DHT key (also its relay key) and its UDP address. */
export interface FakeOnionNode {
  readonly index: number;
  readonly keys: KeyPair;
  /** The DHT public key in lower-case hex (what `onionRequest` takes as the relay). */
  readonly hex: string;
  readonly host: string;
  readonly port: number;
  /** Key and UDP address, as an onion path names the node. */
  readonly onion: OnionNode;
  /** The node as a TCP relay (its TCP port taken equal to its UDP port). */
  readonly relay: RelayAddress;
  /** A silent node drops everything it receives, in both directions, as a relay too. */
  silent: boolean;
}

/** An announce entry at D, for assertions. */
export interface FakeAnnounceEntry {
  /** The requester key (for a self-announce, the announced real key). */
  readonly publicKey: Uint8Array;
  readonly dataPublicKey: Uint8Array;
  readonly client: string;
  /** The hops back to `client`: the relay, N2, N3 (DHT keys in hex). */
  readonly relay: string;
  readonly n2: string;
  readonly n3: string;
  /** now() when stored or last refreshed. */
  readonly announcedAt: number;
}

/** What RETURN_3 would let D's answer retrace. */
interface ReturnPath {
  readonly client: string;
  readonly relay: FakeOnionNode;
  readonly n2: FakeOnionNode;
  readonly n3: FakeOnionNode;
}

interface Entry {
  readonly publicKey: Uint8Array;
  dataPublicKey: Uint8Array;
  path: ReturnPath;
  /** mono_time seconds, as c-toxcore keeps announce_time. */
  atSeconds: number;
  atMs: number;
}

interface NodeState {
  readonly hmacKey: Uint8Array;
  readonly entries: Map<string, Entry>;
}

/** c-toxcore id_closest: 1 if `a` is closer to `base` by XOR distance, 2 if `b`, 0 if equal. */
function idClosest(base: Uint8Array, a: Uint8Array, b: Uint8Array): 0 | 1 | 2 {
  for (let i = 0; i < PUBLIC_KEY_SIZE; i++) {
    const da = base[i] ^ a[i];
    const db = base[i] ^ b[i];
    if (da < db) return 1;
    if (da > db) return 2;
  }
  return 0;
}

export { isLanAddress };

/**
 * The network. Clients are named by any string; a client talks to a node by that node's key
 * (its relay), and what comes back waits per client until taken.
 */
export class FakeOnionNetwork {
  readonly nodes: readonly FakeOnionNode[];
  readonly stats: FakeOnionStats;
  /** The chance each UDP hop loses a packet; may be changed at any time. */
  dropRate: number;
  readonly listCloseNodes: boolean;
  readonly maxEntries: number;
  readonly #now: () => number;
  readonly #random: RandomBytes;
  readonly #state = new Map<FakeOnionNode, NodeState>();
  readonly #byHex = new Map<string, FakeOnionNode>();
  readonly #byAddress = new Map<string, FakeOnionNode>();
  readonly #queues = new Map<string, { relay: string; body: Uint8Array }[]>();

  /** `now` in ms (virtual time); `random` makes the keys, nonces and losses. */
  constructor(now: () => number, random: RandomBytes, options: FakeOnionNetworkOptions = {}) {
    this.#now = now;
    this.#random = random;
    this.dropRate = options.dropRate ?? 0;
    this.listCloseNodes = options.listCloseNodes ?? false;
    this.maxEntries = options.maxEntries ?? ONION_ANNOUNCE_MAX_ENTRIES;
    const spec = options.nodes ?? 3;
    const addresses: readonly IpPort[] = typeof spec === "number"
      ? Array.from({ length: spec }, (_, i) => ({ host: "127.0.0.1", port: 33445 + i }))
      : spec;
    const nodes: FakeOnionNode[] = [];
    for (const [index, a] of addresses.entries()) {
      const keys = newKeyPair(random);
      const hex = toHex(keys.publicKey);
      const node: FakeOnionNode = {
        index,
        keys,
        hex,
        host: a.host,
        port: a.port,
        onion: { host: a.host, port: a.port, publicKey: keys.publicKey },
        relay: { host: a.host, port: a.port, publicKey: hex },
        silent: false,
      };
      // Refuses a name here rather than at the first packet routed to it.
      const key = this.#addressKey(a);
      if (this.#byAddress.has(key) || this.#byHex.has(hex)) {
        throw new Error(`onion network: two nodes at ${a.host}:${a.port}`);
      }
      this.#byAddress.set(key, node);
      this.#byHex.set(hex, node);
      this.#state.set(node, { hmacKey: random(32), entries: new Map() });
      nodes.push(node);
    }
    this.nodes = nodes;
    const drops = {} as Record<FakeOnionDropReason, number>;
    for (const r of DROP_REASONS) drops[r] = 0;
    this.stats = {
      requests: 0,
      announcesAnswered: 0,
      announcesStored: 0,
      pingIdsRefused: 0,
      storesRefusedFull: 0,
      dataForwarded: 0,
      responsesQueued: 0,
      drops,
    };
  }

  /** The node with this DHT key (hex, any case) or index. */
  node(keyHexOrIndex: string | number): FakeOnionNode {
    const n = typeof keyHexOrIndex === "number"
      ? this.nodes[keyHexOrIndex]
      : this.#byHex.get(keyHexOrIndex.toLowerCase());
    if (n === undefined) throw new Error(`onion network: no node ${keyHexOrIndex}`);
    return n;
  }

  /** Make a node drop everything (a machine gone without its TCP peers noticing yet). */
  setSilent(keyHexOrIndex: string | number, silent = true): void {
    this.node(keyHexOrIndex).silent = silent;
  }

  /** The live (not expired) entries at a node. */
  entries(keyHexOrIndex: string | number): FakeAnnounceEntry[] {
    const d = this.node(keyHexOrIndex);
    const nowS = this.#seconds();
    return [...this.#state.get(d)!.entries.values()].filter((e) => !this.#expired(e, nowS)).map(
      (e) => ({
        publicKey: e.publicKey.slice(),
        dataPublicKey: e.dataPublicKey.slice(),
        client: e.path.client,
        relay: e.path.relay.hex,
        n2: e.path.n2.hex,
        n3: e.path.n3.hex,
        announcedAt: e.atMs,
      }),
    );
  }

  /** Relay packet-8 body from `clientId` on its TCP connection to the node `relayNodeKeyHex`. */
  onionRequest(relayNodeKeyHex: string, clientId: string, body: Uint8Array): void {
    this.stats.requests++;
    const relay = this.#byHex.get(relayNodeKeyHex.toLowerCase());
    if (relay === undefined) return this.#drop("unknown_relay");
    if (relay.silent) return this.#drop("silent");
    // TCP_server.c checks the packet with its id byte.
    if (1 + body.length <= 1 + NONCE_SIZE + 2 * ONION_SEND_BASE) {
      return this.#drop("connection_closed");
    }
    // onion_send_1 measures what follows the nonce.
    const len = body.length - NONCE_SIZE;
    const max = ONION_MAX_PACKET_SIZE + 19 - (1 + NONCE_SIZE + ONION_RETURN_1);
    if (len > max || len <= 19 + 2 * ONION_SEND_BASE) return this.#drop("size");
    const r = decodeOnionRequestTcp(body);
    if (!r.ok) return this.#drop("malformed");
    const { nonce, next, tmpPublicKey, box } = r.value;
    const n2 = this.#hop(next);
    if (n2 === null) return;

    // N2, handle_send_1: the 0x81 it receives is id ‖ nonce ‖ tmp_pk2 ‖ box2 ‖ RETURN_1.
    const send1 = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + box.length + ONION_RETURN_1;
    if (send1 > ONION_MAX_PACKET_SIZE || send1 <= 1 + ONION_SEND_2) return this.#drop("size");
    const l2 = openOnionLayer(nonce, tmpPublicKey, box, n2.keys.secretKey);
    if (!l2.ok) return this.#drop(l2.error.code === "bad_mac" ? "bad_layer" : "malformed");
    const n3 = this.#hop(l2.value.next);
    if (n3 === null) return;

    // N3, handle_send_2: id ‖ nonce ‖ tmp_pk3 ‖ box3 ‖ RETURN_2.
    const rest = l2.value.rest;
    const send2 = 1 + NONCE_SIZE + rest.length + ONION_RETURN_2;
    if (send2 > ONION_MAX_PACKET_SIZE || send2 <= 1 + ONION_SEND_3) return this.#drop("size");
    const l3 = openOnionLayer(
      nonce,
      rest.subarray(0, PUBLIC_KEY_SIZE),
      rest.subarray(PUBLIC_KEY_SIZE),
      n3.keys.secretKey,
    );
    if (!l3.ok) return this.#drop(l3.error.code === "bad_mac" ? "bad_layer" : "malformed");
    const payload = l3.value.rest;
    const id = payload[0];
    if (id !== NET_PACKET_ANNOUNCE_REQUEST && id !== NET_PACKET_ONION_DATA_REQUEST) {
      return this.#drop("payload_id");
    }
    const d = this.#hop(l3.value.next);
    if (d === null) return;
    const path: ReturnPath = { client: clientId, relay, n2, n3 };
    if (id === NET_PACKET_ANNOUNCE_REQUEST) this.#announce(d, path, payload);
    else this.#dataRequest(d, payload);
  }

  /** The packet-9 bodies waiting for `clientId`, oldest first; the queue is emptied. */
  takeResponses(clientId: string): Uint8Array[] {
    return this.takeDeliveries(clientId).map((x) => x.body);
  }

  /** As takeResponses, with the relay (node key hex) each body comes from. */
  takeDeliveries(clientId: string): { relay: string; body: Uint8Array }[] {
    const q = this.#queues.get(clientId) ?? [];
    this.#queues.delete(clientId);
    return q;
  }

  /** Bodies waiting for `clientId`, left in place. */
  pending(clientId: string): number {
    return this.#queues.get(clientId)?.length ?? 0;
  }

  // ---- D: onion_announce.c ---------------------------------------------------------------------

  #announce(d: FakeOnionNode, path: ReturnPath, payload: Uint8Array): void {
    // handle_announce_request_old: exactly 177 bytes (+ RETURN_3) or nothing.
    if (payload.length !== ONION_ANNOUNCE_REQUEST_SIZE) return this.#drop("size");
    const a = decodeAnnounceRequest(payload, d.keys.secretKey);
    if (!a.ok) return this.#drop("bad_announce");
    const req = a.value;
    const state = this.#state.get(d)!;
    const nowS = this.#seconds();
    const source = path.n3.onion;
    const window = Math.floor(nowS / ONION_ANNOUNCE_TIMEOUT_S);
    const valid = [window, window - 1].some((w) =>
      bytesEqual(req.pingId, this.#pingId(state, w, req.requesterPublicKey, source))
    );
    if (!valid && req.pingId.some((x) => x !== 0)) this.stats.pingIdsRefused++;

    // A valid ping id stores the requester, whatever the search key; otherwise D only
    // looks the search key up, which is what makes a stale self-announce answer 2.
    let entry: Entry | undefined;
    if (valid) {
      entry = this.#store(d, state, req.requesterPublicKey, req.dataPublicKey, path, nowS);
      if (entry === undefined) this.stats.storesRefusedFull++;
      else this.stats.announcesStored++;
    } else {
      entry = this.#live(state, req.searchPublicKey, nowS);
    }

    const fresh = this.#pingId(state, window, req.requesterPublicKey, source);
    let isStored: IsStored = 0;
    let pingIdOrKey = fresh;
    if (entry !== undefined) {
      if (bytesEqual(entry.publicKey, req.requesterPublicKey)) {
        if (bytesEqual(entry.dataPublicKey, req.dataPublicKey)) isStored = 2;
      } else {
        isStored = 1;
        pingIdOrKey = entry.dataPublicKey;
      }
    }
    const nodes = this.listCloseNodes ? this.#closeNodes(d, req.searchPublicKey, source) : [];
    const response = encodeAnnounceResponse(
      req.sendback,
      req.shared,
      { isStored, pingIdOrKey, nodes },
      this.#random,
    );
    this.stats.announcesAnswered++;
    this.#respond(path, response);
  }

  #dataRequest(d: FakeOnionNode, payload: Uint8Array): void {
    // handle_data_request counts RETURN_3 in.
    const length = payload.length + ONION_RETURN_3;
    if (length <= ONION_DATA_REQUEST_MIN_SIZE + ONION_RETURN_3 || length > ONION_MAX_PACKET_SIZE) {
      return this.#drop("size");
    }
    const state = this.#state.get(d)!;
    const entry = this.#live(state, payload.subarray(1, 1 + PUBLIC_KEY_SIZE), this.#seconds());
    if (entry === undefined) return this.#drop("not_announced");
    // Built here rather than with decodeDataRequest, whose 1174-byte bound is tighter than
    // what a real D forwards (up to 1182 bytes arrive over a TCP relay).
    const response = new Uint8Array(payload.length - PUBLIC_KEY_SIZE);
    response[0] = NET_PACKET_ONION_DATA_RESPONSE;
    response.set(payload.subarray(1 + PUBLIC_KEY_SIZE), 1);
    this.stats.dataForwarded++;
    this.#respond(entry.path, response);
  }

  /** add_to_entries: refresh, or take a free slot, or push out the farthest from D's key. */
  #store(
    d: FakeOnionNode,
    state: NodeState,
    publicKey: Uint8Array,
    dataPublicKey: Uint8Array,
    path: ReturnPath,
    nowS: number,
  ): Entry | undefined {
    for (const [k, e] of state.entries) if (this.#expired(e, nowS)) state.entries.delete(k);
    const hex = toHex(publicKey);
    let entry = state.entries.get(hex);
    if (entry === undefined && state.entries.size >= this.maxEntries) {
      let farthest: [string, Entry] | undefined;
      for (const kv of state.entries) {
        if (
          farthest === undefined ||
          idClosest(d.keys.publicKey, kv[1].publicKey, farthest[1].publicKey) === 2
        ) {
          farthest = kv;
        }
      }
      if (idClosest(d.keys.publicKey, publicKey, farthest![1].publicKey) !== 1) return undefined;
      state.entries.delete(farthest![0]);
    }
    const fields = {
      dataPublicKey: dataPublicKey.slice(),
      path,
      atSeconds: nowS,
      atMs: this.#now(),
    };
    if (entry === undefined) {
      entry = { publicKey: publicKey.slice(), ...fields };
      state.entries.set(hex, entry);
    } else {
      Object.assign(entry, fields);
    }
    return entry;
  }

  /** in_entries */
  #live(state: NodeState, publicKey: Uint8Array, nowS: number): Entry | undefined {
    const e = state.entries.get(toHex(publicKey));
    return e === undefined || this.#expired(e, nowS) ? undefined : e;
  }

  /** mono_time_is_timeout(announce_time, 300): timestamp + timeout <= now, in seconds. */
  #expired(e: Entry, nowS: number): boolean {
    return e.atSeconds + ONION_ANNOUNCE_TIMEOUT_S <= nowS;
  }

  /**
   * generate_timed_auth: HMAC-SHA512 cut to 32 bytes over the window ‖ requester key ‖ the
   * address the request came from (N3's), so a ping id works for one requester via one N3.
   */
  #pingId(state: NodeState, window: number, requester: Uint8Array, source: IpPort): Uint8Array {
    const msg = new Uint8Array(8 + PUBLIC_KEY_SIZE + 19);
    new DataView(msg.buffer).setBigUint64(0, BigInt(window), true);
    msg.set(requester, 8);
    encodeIpPort(source, msg, 8 + PUBLIC_KEY_SIZE);
    return hmac(sha512, state.hmacKey, msg).slice(0, ONION_PING_ID_SIZE);
  }

  /** get_close_nodes from D's DHT (every other node), LAN ones only for a LAN requester. */
  #closeNodes(d: FakeOnionNode, key: Uint8Array, source: IpPort): PackedNode[] {
    const lan = isLanAddress(source.host);
    return this.nodes
      .filter((n) => n !== d && (lan || !isLanAddress(n.host)))
      .sort((a, b) => {
        const c = idClosest(key, a.keys.publicKey, b.keys.publicKey);
        return c === 1 ? -1 : c === 2 ? 1 : 0;
      })
      .slice(0, MAX_SENT_NODES)
      .map((n) => ({ transport: "udp", host: n.host, port: n.port, publicKey: n.keys.publicKey }));
  }

  // ---- the UDP hops ----------------------------------------------------------------------------

  /** One UDP hop to the node at `a`: found, not silent, not lost; else counted. */
  #hop(a: IpPort): FakeOnionNode | null {
    const n = this.#byAddress.get(this.#addressKey(a));
    const why = n === undefined
      ? "unknown_address"
      : this.#lost()
      ? "lost"
      : n.silent
      ? "silent"
      : null;
    if (why === null) return n!;
    this.#drop(why);
    return null;
  }

  /** D → N3 → N2 → relay (RECV_3, RECV_2, RECV_1), then packet 9 to the client. */
  #respond(path: ReturnPath, body: Uint8Array): void {
    // send_onion_response's bound: what fits after RETURN_3 in one packet.
    if (body.length > ONION_MAX_PACKET_SIZE - (1 + ONION_RETURN_3)) return this.#drop("size");
    for (const hop of [path.n3, path.n2, path.relay]) {
      if (this.#lost()) return this.#drop("lost");
      if (hop.silent) return this.#drop("silent");
    }
    const q = this.#queues.get(path.client) ?? [];
    q.push({ relay: path.relay.hex, body });
    this.#queues.set(path.client, q);
    this.stats.responsesQueued++;
  }

  #lost(): boolean {
    if (this.dropRate <= 0) return false;
    const b = this.#random(4);
    return ((b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]) >>> 0) / 2 ** 32 < this.dropRate;
  }

  #seconds(): number {
    return Math.floor(this.#now() / 1000);
  }

  #addressKey(a: IpPort): string {
    return toHex(encodeIpPort(a));
  }

  #drop(reason: FakeOnionDropReason): void {
    this.stats.drops[reason]++;
  }
}

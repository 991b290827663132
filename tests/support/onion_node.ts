/**
 * A lone tox-bootstrapd's onion side, sans-I/O, for tests on virtual time: built from the node
 * side of daemon/core/onion/packets.ts, keeping spec/onion.md §4.1's rules: a ping id bound to the
 * requester key and the 300-s window, stored only with a valid one, is_stored 0/1/2, data
 * forwarded to stored entries only. (The single node is every hop, so the ping id's binding
 * to the last hop cannot vary here.)
 */
import { sha256 } from "@noble/hashes/sha2.js";
import {
  bytesEqual,
  type KeyPair,
  newKeyPair,
  type RandomBytes,
  toHex,
} from "../../daemon/core/common/crypto.ts";
import {
  decodeAnnounceRequest,
  decodeDataRequest,
  decodeOnionRequestTcp,
  encodeAnnounceResponse,
  type IsStored,
  openOnionLayer,
} from "../../daemon/core/onion/packets.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import { seededRandom } from "../../tools/testbed/seeded_random.ts";

interface Entry {
  readonly requester: string;
  dataKey: Uint8Array;
  client: string;
  at: number;
}

/**
 * One tox-bootstrapd as the onion sees it: relay, every hop and the announce node, at one
 * address (its UDP port = its TCP port, as our clients assume). Paths through any other
 * node are dropped. Responses wait in `outbox` per client id until the test delivers them.
 */
export class LoneNode {
  readonly keys: KeyPair;
  readonly hex: string;
  readonly relay: RelayAddress;
  readonly #secret: Uint8Array;
  readonly #random: RandomBytes;
  readonly entries = new Map<string, Entry>();
  readonly outbox = new Map<string, Uint8Array[]>();
  /** Drops every request (a node that went away without its relay noticing). */
  silent = false;
  received = 0;
  dropped = 0;

  constructor(
    readonly now: () => number,
    opts: { keys?: KeyPair; host?: string; port?: number; seed?: number } = {},
  ) {
    const seed = opts.seed ?? 97;
    this.keys = opts.keys ?? newKeyPair(seededRandom(seed + 2));
    this.hex = toHex(this.keys.publicKey);
    this.relay = { host: opts.host ?? "127.0.0.1", port: opts.port ?? 33445, publicKey: this.hex };
    this.#secret = seededRandom(seed + 1)(32);
    this.#random = seededRandom(seed);
  }

  #pingId(requester: Uint8Array, window: number): Uint8Array {
    const b = new Uint8Array(32 + 32 + 8);
    b.set(this.#secret);
    b.set(requester, 32);
    new DataView(b.buffer).setFloat64(64, window);
    return sha256(b);
  }

  /** Relay packet 8 from client `client`. */
  onionRequest(client: string, body: Uint8Array): void {
    this.received++;
    if (this.silent) return;
    const r = decodeOnionRequestTcp(body);
    if (!r.ok || !this.#isMe(r.value.next)) return void this.dropped++;
    const l2 = openOnionLayer(
      r.value.nonce,
      r.value.tmpPublicKey,
      r.value.box,
      this.keys.secretKey,
    );
    if (!l2.ok) return void this.dropped++;
    const rest = l2.value.rest;
    const l3 = openOnionLayer(
      r.value.nonce,
      rest.subarray(0, 32),
      rest.subarray(32),
      this.keys.secretKey,
    );
    if (!l3.ok || !this.#isMe(l2.value.next) || !this.#isMe(l3.value.next)) {
      return void this.dropped++;
    }
    const payload = l3.value.rest;
    if (payload[0] === 0x83) this.#announce(client, payload);
    else if (payload[0] === 0x85) this.#data(payload);
    else this.dropped++;
  }

  #isMe(a: { host: string; port: number }): boolean {
    return a.host === this.relay.host && a.port === this.relay.port;
  }

  /** Take what waits for `client`. */
  take(client: string): Uint8Array[] {
    const q = this.outbox.get(client) ?? [];
    this.outbox.delete(client);
    return q;
  }

  #announce(client: string, payload: Uint8Array): void {
    const a = decodeAnnounceRequest(payload, this.keys.secretKey);
    if (!a.ok) return void this.dropped++;
    const req = a.value;
    const window = Math.floor(this.now() / 300_000);
    const valid = [window, window - 1].some((w) =>
      bytesEqual(req.pingId, this.#pingId(req.requesterPublicKey, w))
    );
    const requester = toHex(req.requesterPublicKey);
    if (valid) {
      this.entries.set(requester, {
        requester,
        dataKey: req.dataPublicKey.slice(),
        client,
        at: this.now(),
      });
    }
    for (const [k, e] of this.entries) if (this.now() - e.at > 300_000) this.entries.delete(k);
    const fresh = this.#pingId(req.requesterPublicKey, window);
    const searched = this.entries.get(toHex(req.searchPublicKey));
    let isStored: IsStored = 0;
    let value = fresh;
    if (searched && searched.requester === requester) {
      if (bytesEqual(searched.dataKey, req.dataPublicKey)) isStored = 2;
    } else if (searched) {
      isStored = 1;
      value = searched.dataKey;
    }
    this.#send(
      client,
      encodeAnnounceResponse(req.sendback, req.shared, {
        isStored,
        pingIdOrKey: value,
        nodes: [],
      }, this.#random),
    );
  }

  #data(payload: Uint8Array): void {
    const d = decodeDataRequest(payload);
    if (!d.ok) return void this.dropped++;
    const e = this.entries.get(toHex(d.value.destination));
    if (!e) return void this.dropped++;
    this.#send(e.client, d.value.response);
  }

  #send(client: string, body: Uint8Array): void {
    const q = this.outbox.get(client) ?? [];
    q.push(body);
    this.outbox.set(client, q);
  }
}

/**
 * The fake onion network (tests/support/onion_network.ts) against spec/onion.md §3–§5, driven
 * by a client made by hand from daemon/core/onion/packets.ts alone, on virtual time: what a real
 * bootstrapd answers must be what the fake answers, or the onion client's tests prove nothing.
 */
import assert from "node:assert/strict";
import {
  type KeyPair,
  newKeyPair,
  precompute,
  type RandomBytes,
} from "../daemon/core/common/crypto.ts";
import {
  type AnnounceResponse,
  announceResponseSendback,
  createOnionPath,
  decodeFriendRequest,
  encodeAnnounceRequest,
  encodeDataRequest,
  encodeFriendRequest,
  encodeOnionRequestTcp,
  openAnnounceResponse,
  openDataResponse,
} from "../daemon/core/onion/packets.ts";
import { seededRandom } from "../tools/testbed/seeded_random.ts";
import { fails, ok } from "./support/decoded.ts";
import {
  FakeOnionNetwork,
  type FakeOnionNetworkOptions,
  type FakeOnionNode,
  isLanAddress,
} from "./support/onion_network.ts";

const ZERO = new Uint8Array(32);
const S = 1000;

/** Virtual time for the network under test; each test sets it. */
let t = 0;

function network(options: FakeOnionNetworkOptions = {}, seed = 1): FakeOnionNetwork {
  t = 0;
  return new FakeOnionNetwork(() => t, seededRandom(seed), options);
}

/** The relay the client is connected to, the two hops after it, and the announce node. */
interface Route {
  readonly relay: FakeOnionNode;
  readonly n2: FakeOnionNode;
  readonly n3: FakeOnionNode;
  readonly d: FakeOnionNode;
}

const route = (net: FakeOnionNetwork, relay: number, n2: number, n3: number, d: number): Route => ({
  relay: net.node(relay),
  n2: net.node(n2),
  n3: net.node(n3),
  d: net.node(d),
});

interface AnnounceOptions {
  readonly pingId?: Uint8Array;
  /** The key pair the request is made with: our real one unless searching. */
  readonly keys?: KeyPair;
  readonly search?: Uint8Array;
  readonly data?: Uint8Array;
}

/** A client that knows only packets.ts: it builds requests and opens answers by hand. */
class HandClient {
  readonly real: KeyPair;
  readonly data: KeyPair;
  /** Per friend in c-toxcore; one is enough here. */
  readonly temp: KeyPair;
  readonly #random: RandomBytes;
  readonly #keys: () => KeyPair;

  constructor(readonly net: FakeOnionNetwork, readonly id: string, seed: number) {
    this.#random = seededRandom(seed);
    this.#keys = () => newKeyPair(this.#random);
    this.real = this.#keys();
    this.data = this.#keys();
    this.temp = this.#keys();
  }

  send(r: Route, payload: Uint8Array): void {
    const path = createOnionPath(r.n2.onion, r.n3.onion, this.#keys);
    const body = encodeOnionRequestTcp(path, r.d.onion, payload, this.#random);
    this.net.onionRequest(r.relay.hex, this.id, body);
  }

  /** Announce ourselves (or search, with `keys` and `search`); the answer, or null if none. */
  announce(r: Route, o: AnnounceOptions = {}): AnnounceResponse | null {
    const keys = o.keys ?? this.real;
    const sendback = this.#random(8);
    const req = encodeAnnounceRequest(
      {
        requesterPublicKey: keys.publicKey,
        pingId: o.pingId ?? ZERO,
        searchPublicKey: o.search ?? this.real.publicKey,
        dataPublicKey: o.data ?? (o.keys === undefined ? this.data.publicKey : ZERO),
        sendback,
      },
      keys.secretKey,
      r.d.keys.publicKey,
      this.#random,
    );
    this.send(r, req);
    const bodies = this.net.takeResponses(this.id);
    if (bodies.length === 0) return null;
    assert.equal(bodies.length, 1, "one answer per request");
    assert.deepEqual(ok(announceResponseSendback(bodies[0])), sendback);
    return ok(openAnnounceResponse(bodies[0], precompute(r.d.keys.publicKey, keys.secretKey)));
  }

  /** Zero ping id, then the one D gave: stored. */
  announceTwice(r: Route): AnnounceResponse {
    const first = this.announce(r)!;
    return this.announce(r, { pingId: first.pingIdOrKey })!;
  }

  search(r: Route, friend: Uint8Array): AnnounceResponse | null {
    return this.announce(r, { keys: this.temp, search: friend });
  }

  sendData(r: Route, friend: HandClient, friendData: Uint8Array, payload: Uint8Array): void {
    const req = encodeDataRequest(
      friend.real.publicKey,
      friendData,
      this.real.publicKey,
      this.real.secretKey,
      payload,
      this.#random,
      this.#keys,
    );
    this.send(r, req);
  }
}

/** The drops that are not zero, for one readable assertion. */
function drops(net: FakeOnionNetwork): Record<string, number> {
  return Object.fromEntries(Object.entries(net.stats.drops).filter(([, n]) => n > 0));
}

// ---- §4.1: announce ----------------------------------------------------------------------------

Deno.test("onion network §4.1: a zero ping id gets is_stored 0 and a ping id; that ping id stores (2)", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const r = route(net, 0, 1, 2, 1);
  const first = bob.announce(r)!;
  assert.equal(first.isStored, 0);
  assert.notDeepEqual(first.pingIdOrKey, ZERO);
  assert.deepEqual(first.nodes, []);
  assert.equal(net.stats.announcesStored, 0);
  assert.deepEqual(net.entries(1), []);

  t = 1 * S;
  const second = bob.announce(r, { pingId: first.pingIdOrKey })!;
  assert.equal(second.isStored, 2);
  // Same requester, same N3, same window: the same ping id again.
  assert.deepEqual(second.pingIdOrKey, first.pingIdOrKey);
  assert.equal(net.stats.announcesStored, 1);
  assert.equal(net.stats.announcesAnswered, 2);
  assert.deepEqual(net.entries(1), [{
    publicKey: bob.real.publicKey,
    dataPublicKey: bob.data.publicKey,
    client: "bob",
    relay: net.node(0).hex,
    n2: net.node(1).hex,
    n3: net.node(2).hex,
    announcedAt: 1 * S,
  }]);
  // Stored at D only.
  assert.deepEqual(net.entries(0), []);
  assert.deepEqual(drops(net), {});
});

Deno.test("onion network §4.2: a lone-bootstrapd answer is 82 bytes, back through the request's relay", () => {
  const net = network({ nodes: 1 });
  const bob = new HandClient(net, "bob", 10);
  const r = route(net, 0, 0, 0, 0);
  bob.send(
    r,
    encodeAnnounceRequest(
      {
        requesterPublicKey: bob.real.publicKey,
        pingId: ZERO,
        searchPublicKey: bob.real.publicKey,
        dataPublicKey: bob.data.publicKey,
        sendback: new Uint8Array(8),
      },
      bob.real.secretKey,
      r.d.keys.publicKey,
      seededRandom(3),
    ),
  );
  const got = net.takeDeliveries("bob");
  assert.equal(got.length, 1);
  assert.equal(got[0].relay, net.node(0).hex);
  assert.equal(got[0].body.length, 82);
  assert.equal(net.pending("bob"), 0);
  // R = N2 = N3 = D, as with one tox-bootstrapd: stored all the same.
  assert.equal(bob.announceTwice(r).isStored, 2);
});

Deno.test("onion network §4.1: a search with a temp key finds the announced key: 1 and its data key", () => {
  const net = network({ nodes: 4 });
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  bob.announceTwice(route(net, 0, 1, 2, 3));
  const found = alice.search(route(net, 1, 2, 0, 3), bob.real.publicKey)!;
  assert.equal(found.isStored, 1);
  assert.deepEqual(found.pingIdOrKey, bob.data.publicKey);
  // Not announced there, or nobody of that key: a ping id, not a key.
  const elsewhere = alice.search(route(net, 1, 2, 0, 1), bob.real.publicKey)!;
  assert.equal(elsewhere.isStored, 0);
  assert.notDeepEqual(elsewhere.pingIdOrKey, bob.data.publicKey);
  assert.equal(alice.search(route(net, 1, 2, 0, 3), alice.real.publicKey)!.isStored, 0);
  // A search with a zero ping id is never stored.
  assert.equal(net.entries(3).length, 1);
  assert.equal(net.stats.announcesStored, 1);
});

Deno.test("onion network §4.1: the ping id is bound to N3: refused via another N3", () => {
  const net = network({ nodes: 4 });
  const bob = new HandClient(net, "bob", 10);
  const viaN3 = route(net, 0, 1, 2, 3);
  const viaOther = route(net, 0, 1, 0, 3);
  const ping = bob.announce(viaN3)!.pingIdOrKey;
  const refused = bob.announce(viaOther, { pingId: ping })!;
  assert.equal(refused.isStored, 0);
  // D answers with the ping id for the N3 this request came through.
  assert.notDeepEqual(refused.pingIdOrKey, ping);
  assert.equal(net.stats.pingIdsRefused, 1);
  assert.equal(net.stats.announcesStored, 0);
  // The same N3 with other N2 and relay is fine: only the last hop counts.
  assert.equal(bob.announce(route(net, 2, 3, 2, 3), { pingId: ping })!.isStored, 2);
  // And the other N3's own ping id works via that N3.
  assert.equal(bob.announce(viaOther, { pingId: refused.pingIdOrKey })!.isStored, 2);
  assert.equal(net.stats.announcesStored, 2);
});

Deno.test("onion network §4.1: a ping id obtained with another requester key is refused", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const carol = new HandClient(net, "carol", 30);
  const r = route(net, 0, 1, 2, 1);
  const bobs = bob.announce(r)!.pingIdOrKey;
  const got = carol.announce(r, { pingId: bobs })!;
  assert.equal(got.isStored, 0);
  assert.equal(net.stats.pingIdsRefused, 1);
  assert.deepEqual(net.entries(1), []);
});

Deno.test("onion network §4.1: a ping id lives the current and the previous 300-s window", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const r = route(net, 0, 1, 2, 1);
  t = 0;
  const ping = bob.announce(r)!.pingIdOrKey;
  t = 300 * S;
  const next = bob.announce(r)!.pingIdOrKey;
  assert.notDeepEqual(next, ping, "a new window, a new ping id");
  // Window 1 still accepts window 0's.
  t = 599 * S + 999;
  assert.equal(bob.announce(r, { pingId: ping })!.isStored, 2);
  assert.equal(net.stats.announcesStored, 1);

  const net2 = network();
  const bob2 = new HandClient(net2, "bob", 10);
  const r2 = route(net2, 0, 1, 2, 1);
  const old = bob2.announce(r2)!.pingIdOrKey;
  t = 600 * S;
  const late = bob2.announce(r2, { pingId: old })!;
  assert.equal(late.isStored, 0);
  assert.equal(net2.stats.pingIdsRefused, 1);
  assert.equal(net2.stats.announcesStored, 0);
});

Deno.test("onion network §4.1: an entry expires 300 s after its last store", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  const r = route(net, 0, 1, 2, 1);
  t = 0;
  const ping = bob.announce(r)!.pingIdOrKey;
  t = 10 * S;
  bob.announce(r, { pingId: ping });
  t = 309 * S + 999;
  assert.equal(alice.search(r, bob.real.publicKey)!.isStored, 1);
  assert.equal(net.entries(1).length, 1);
  t = 310 * S;
  assert.equal(alice.search(r, bob.real.publicKey)!.isStored, 0);
  assert.deepEqual(net.entries(1), []);
  // And data for it goes nowhere.
  alice.sendData(
    r,
    bob,
    bob.data.publicKey,
    encodeFriendRequest(new Uint8Array(4), new Uint8Array([1])),
  );
  assert.deepEqual(net.takeResponses("bob"), []);
  assert.deepEqual(drops(net), { not_announced: 1 });
});

Deno.test("onion network §4.1: a zero ping id answers 2 for a stored self-announce, refreshing nothing", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  const r = route(net, 0, 1, 2, 1);
  bob.announceTwice(r);
  assert.equal(net.stats.announcesStored, 1);
  t = 200 * S;
  const stale = bob.announce(r)!;
  assert.equal(stale.isStored, 2);
  assert.equal(net.stats.announcesStored, 1);
  assert.equal(net.entries(1)[0].announcedAt, 0);
  // So the entry still ends 300 s after the real store, "2"s notwithstanding.
  t = 300 * S;
  assert.equal(bob.announce(r)!.isStored, 0);
  assert.equal(alice.search(r, bob.real.publicKey)!.isStored, 0);
});

Deno.test("onion network §4.1: another data key: 0 with a zero ping id, replaced with a valid one", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  const r = route(net, 0, 1, 2, 1);
  const stored = bob.announceTwice(r);
  const newData = newKeyPair(seededRandom(99)).publicKey;
  assert.equal(bob.announce(r, { data: newData })!.isStored, 0);
  assert.deepEqual(alice.search(r, bob.real.publicKey)!.pingIdOrKey, bob.data.publicKey);
  assert.equal(bob.announce(r, { data: newData, pingId: stored.pingIdOrKey })!.isStored, 2);
  assert.deepEqual(alice.search(r, bob.real.publicKey)!.pingIdOrKey, newData);
  assert.equal(net.entries(1).length, 1);
});

Deno.test("onion network §4.1: a valid ping id stores the requester even when it searches", () => {
  // c-toxcore never searches with a ping id; D would store the temp key with a zero data key.
  const net = network();
  const alice = new HandClient(net, "alice", 20);
  const someone = newKeyPair(seededRandom(98)).publicKey;
  const r = route(net, 0, 1, 2, 1);
  const ping = alice.search(r, someone)!.pingIdOrKey;
  const got = alice.announce(r, { keys: alice.temp, search: someone, pingId: ping })!;
  assert.equal(got.isStored, 2);
  assert.deepEqual(net.entries(1).map((e) => e.publicKey), [alice.temp.publicKey]);
  assert.deepEqual(net.entries(1)[0].dataPublicKey, ZERO);
});

Deno.test("onion network §4.1: with the list full, the key closest to D's wins", () => {
  const net = network({ maxEntries: 3 });
  const d = net.node(1);
  const r = route(net, 0, 1, 2, 1);
  const distance = (k: Uint8Array) => k.map((x, i) => x ^ d.keys.publicKey[i]);
  const cmp = (a: Uint8Array, b: Uint8Array) => {
    for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i] - b[i];
    return 0;
  };
  const clients = [0, 1, 2, 3].map((i) => new HandClient(net, `c${i}`, 40 + i))
    .sort((a, b) => cmp(distance(a.real.publicKey), distance(b.real.publicKey)));
  const [closest, , , farthest] = clients;
  for (const c of clients.slice(1)) assert.equal(c.announceTwice(r).isStored, 2);
  assert.equal(net.entries(1).length, 3);
  assert.equal(closest.announceTwice(r).isStored, 2);
  const kept = net.entries(1).map((e) => e.client).sort();
  assert.deepEqual(kept, clients.slice(0, 3).map((c) => c.id).sort());
  // The farthest has a valid ping id and still finds no room.
  const ping = farthest.announce(r)!.pingIdOrKey;
  assert.equal(farthest.announce(r, { pingId: ping })!.isStored, 0);
  assert.equal(net.stats.storesRefusedFull, 1);
  // An expired entry frees its slot.
  t = 300 * S;
  const ping2 = farthest.announce(r)!.pingIdOrKey;
  assert.equal(farthest.announce(r, { pingId: ping2 })!.isStored, 2);
});

Deno.test("onion network §4.1: close nodes, optional, closest to the search key, D left out", () => {
  const quiet = network({ nodes: 6 });
  const bob = new HandClient(quiet, "bob", 10);
  assert.deepEqual(bob.announce(route(quiet, 0, 1, 2, 3))!.nodes, []);

  const net = network({ nodes: 6, listCloseNodes: true });
  const bob2 = new HandClient(net, "bob", 10);
  const d = net.node(3);
  const got = bob2.announce(route(net, 0, 1, 2, 3))!;
  assert.equal(got.nodes.length, 4);
  assert.ok(got.nodes.every((n) => n.transport === "udp" && n.host === "127.0.0.1"));
  assert.ok(!got.nodes.some((n) => n.port === d.port));
  const dist = (k: Uint8Array) => [...k].map((x, i) => x ^ bob2.real.publicKey[i]);
  const expected = net.nodes.filter((n) => n !== d)
    .sort((a, b) => {
      const x = dist(a.keys.publicKey);
      const y = dist(b.keys.publicKey);
      for (let i = 0; i < 32; i++) if (x[i] !== y[i]) return x[i] - y[i];
      return 0;
    })
    .slice(0, 4)
    .map((n) => n.port);
  assert.deepEqual(got.nodes.map((n) => n.port), expected);
});

Deno.test("onion network §4.1: LAN nodes are listed only to a request that came from the LAN", () => {
  const net = network({
    nodes: [
      { host: "203.0.113.1", port: 33445 },
      { host: "203.0.113.2", port: 33445 },
      { host: "192.168.1.3", port: 33445 },
      { host: "127.0.0.1", port: 33445 },
    ],
    listCloseNodes: true,
  });
  const bob = new HandClient(net, "bob", 10);
  const fromPublic = bob.announce(route(net, 0, 0, 1, 0))!;
  assert.deepEqual(fromPublic.nodes.map((n) => n.host), ["203.0.113.2"]);
  const fromLan = bob.announce(route(net, 0, 0, 2, 0))!;
  assert.deepEqual(fromLan.nodes.map((n) => n.host).sort(), [
    "127.0.0.1",
    "192.168.1.3",
    "203.0.113.2",
  ]);
  assert.ok(isLanAddress("10.1.2.3") && isLanAddress("::1") && isLanAddress("fe80::1"));
  assert.ok(isLanAddress("172.31.0.1") && !isLanAddress("172.32.0.1"));
  assert.ok(isLanAddress("::ffff:192.168.0.1") && !isLanAddress("2001:db8::1"));
});

// ---- §5: data ----------------------------------------------------------------------------------

Deno.test("onion network §5: a data request to the announced key arrives at its client and opens", () => {
  const net = network({ nodes: 4 });
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  bob.announceTwice(route(net, 0, 1, 2, 3));
  const bobData = alice.search(route(net, 1, 2, 0, 3), bob.real.publicKey)!.pingIdOrKey;
  const hello = encodeFriendRequest(
    new Uint8Array([1, 2, 3, 4]),
    new TextEncoder().encode("hello"),
  );
  alice.sendData(route(net, 2, 0, 1, 3), bob, bobData, hello);
  assert.deepEqual(net.takeResponses("alice"), []);
  const got = net.takeDeliveries("bob");
  assert.equal(got.length, 1);
  // Back along Bob's stored path, so through Bob's relay.
  assert.equal(got[0].relay, net.node(0).hex);
  assert.equal(got[0].body.length, 131);
  const opened = ok(openDataResponse(got[0].body, bob.data.secretKey, bob.real.secretKey));
  assert.deepEqual(opened.sender, alice.real.publicKey);
  assert.equal(new TextDecoder().decode(ok(decodeFriendRequest(opened.payload)).message), "hello");
  assert.equal(net.stats.dataForwarded, 1);
  // Only Bob's keys open it.
  fails(openDataResponse(got[0].body, alice.data.secretKey, bob.real.secretKey), "bad_mac", "key");
});

Deno.test("onion network §5: data for a key not announced at D is dropped", () => {
  const net = network({ nodes: 4 });
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  bob.announceTwice(route(net, 0, 1, 2, 3));
  alice.sendData(route(net, 1, 2, 0, 2), bob, bob.data.publicKey, new Uint8Array([0x20, 1]));
  assert.equal(net.pending("bob"), 0);
  assert.deepEqual(drops(net), { not_announced: 1 });
  assert.equal(net.stats.dataForwarded, 0);
});

// ---- §3: hops and path failure -----------------------------------------------------------------

Deno.test("onion network §3: a silent node on the way or on the return path drops the packet", () => {
  const net = network({ nodes: 4 });
  const bob = new HandClient(net, "bob", 10);
  const alice = new HandClient(net, "alice", 20);
  net.setSilent(1);
  assert.equal(bob.announce(route(net, 0, 1, 2, 3)), null);
  assert.equal(bob.announce(route(net, 1, 0, 2, 3)), null, "as a relay");
  assert.deepEqual(drops(net), { silent: 2 });
  net.setSilent(1, false);
  bob.announceTwice(route(net, 0, 1, 2, 3));
  // Bob's return path runs through node 1: data for him dies there.
  net.setSilent(1);
  alice.sendData(route(net, 2, 0, 2, 3), bob, bob.data.publicKey, new Uint8Array([0x20, 1]));
  assert.equal(net.stats.dataForwarded, 1);
  assert.equal(net.pending("bob"), 0);
  assert.deepEqual(drops(net), { silent: 3 });
});

Deno.test("onion network §3: an address no node has, a key no node has", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const ghost = { ...net.node(1), onion: { ...net.node(1).onion, port: 9 } };
  assert.equal(bob.announce({ ...route(net, 0, 1, 2, 1), n3: ghost }), null);
  assert.equal(bob.announce({ ...route(net, 0, 1, 2, 1), d: ghost }), null);
  assert.deepEqual(drops(net), { unknown_address: 2 });
  net.onionRequest("00".repeat(32), "bob", new Uint8Array(354));
  assert.equal(net.stats.drops.unknown_relay, 1);
  assert.throws(() => net.node("00".repeat(32)));
});

Deno.test("onion network §3: a layer for another node's key does not open", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const liar = {
    ...net.node(1),
    onion: { ...net.node(1).onion, publicKey: net.node(2).keys.publicKey },
  };
  assert.equal(bob.announce({ ...route(net, 0, 1, 2, 1), n2: liar }), null);
  assert.equal(bob.announce({ ...route(net, 0, 1, 2, 1), n3: liar }), null);
  assert.deepEqual(drops(net), { bad_layer: 2 });
});

Deno.test("onion network §3: the relay's length rules; N3 forwards only 0x83 and 0x85", () => {
  const net = network();
  const bob = new HandClient(net, "bob", 10);
  const r = route(net, 0, 1, 2, 1);
  net.onionRequest(r.relay.hex, "bob", new Uint8Array(158));
  assert.deepEqual(drops(net), { connection_closed: 1 });
  net.onionRequest(r.relay.hex, "bob", new Uint8Array(177));
  net.onionRequest(r.relay.hex, "bob", new Uint8Array(24 + 1336));
  assert.deepEqual(drops(net), { connection_closed: 1, size: 2 });
  bob.send(r, new Uint8Array([0x87, ...new Uint8Array(200)]));
  bob.send(r, new Uint8Array([0x84, 1, 2, 3]));
  assert.deepEqual(drops(net), { connection_closed: 1, size: 2, payload_id: 2 });
  // D takes a 0x83 of exactly 177 bytes and a 0x85 of more than 105.
  bob.send(r, new Uint8Array([0x83, ...new Uint8Array(177)]));
  bob.send(r, new Uint8Array([0x85, ...new Uint8Array(104)]));
  assert.deepEqual(drops(net), { connection_closed: 1, size: 4, payload_id: 2 });
  bob.send(r, new Uint8Array([0x83, ...new Uint8Array(176)]));
  assert.deepEqual(drops(net), { connection_closed: 1, size: 4, payload_id: 2, bad_announce: 1 });
  assert.equal(net.stats.requests, 8);
  assert.equal(net.pending("bob"), 0);
});

Deno.test("onion network §3: dropRate loses packets on the UDP hops, deterministically", () => {
  const all = network({ dropRate: 1 });
  const bob = new HandClient(all, "bob", 10);
  assert.equal(bob.announce(route(all, 0, 1, 2, 1)), null);
  assert.deepEqual(drops(all), { lost: 1 });

  const half = network({ dropRate: 0.1 }, 7);
  const carol = new HandClient(half, "carol", 30);
  let answered = 0;
  for (let i = 0; i < 20; i++) if (carol.announce(route(half, 0, 1, 2, 1)) !== null) answered++;
  assert.ok(answered > 0 && answered < 20, `${answered} of 20 answered`);
  assert.equal(half.stats.drops.lost, 20 - answered);
  half.dropRate = 0;
  assert.notEqual(carol.announce(route(half, 0, 1, 2, 1)), null);
});

/**
 * onion_client over TCP relays, sans-I/O, on virtual time: clients talk to a lone
 * tox-bootstrapd model (relay = N2 = N3 = announce node, as in the one-bootstrapd test
 * network; tests/support/onion_node.ts).
 */
import assert from "node:assert/strict";
import { bytesEqual, newKeyPair, toHex } from "../daemon/core/common/crypto.ts";
import { encodeFriendRequest } from "../daemon/core/onion/packets.ts";
import { OnionClient } from "../daemon/core/onion/onion_client.ts";
import type { OnionClientEvent } from "../daemon/core/onion/views.ts";
import { seededRandom } from "../tools/testbed/seeded_random.ts";
import { LoneNode } from "./support/onion_node.ts";
import { FakeOnionNetwork } from "./support/onion_network.ts";

/** A client on the lone node, with its transport and event log. */
class Peer {
  readonly real;
  readonly dht;
  readonly realHex;
  readonly onion: OnionClient;
  readonly events: OnionClientEvent[] = [];
  sent = 0;
  relayUp = true;

  constructor(readonly id: number, readonly node: LoneNode, now: number) {
    this.real = newKeyPair(seededRandom(id * 7 + 1));
    this.dht = newKeyPair(seededRandom(id * 7 + 2));
    this.realHex = toHex(this.real.publicKey);
    this.onion = new OnionClient({
      now,
      unixTimeMs: 1_790_000_000_000 + now,
      random: seededRandom(this.id * 7 + 3),
      realKeys: this.real,
      dhtPublicKey: this.dht.publicKey,
      transport: {
        send: (body, relay) => {
          if (!this.relayUp || relay !== node.hex) return false;
          this.sent++;
          node.onionRequest(String(this.id), body);
          return true;
        },
        connectedRelays: () => (this.relayUp ? [node.relay] : []),
      },
    });
  }

  /** Deliver what the node has for us; the client may answer at once (more requests). */
  deliver(now: number): number {
    let n = 0;
    for (let round = 0; round < 10; round++) {
      const q = this.node.take(String(this.id));
      if (q.length === 0) break;
      for (const body of q) {
        this.onion.handleResponse(this.node.hex, body, now);
        n++;
      }
      // A response makes the client due at once; its owner's timer runs it at the same time.
      if (this.onion.nextDeadline() <= now) this.onion.tick(now);
    }
    this.events.push(...this.onion.takeEvents());
    return n;
  }

  of<T extends OnionClientEvent["type"]>(type: T): Extract<OnionClientEvent, { type: T }>[] {
    return this.events.filter((e) => e.type === type) as Extract<OnionClientEvent, { type: T }>[];
  }
}

/** Alice and Bob, each the other's friend, both with their relay up at 0. */
function friendsOnNode() {
  const node = new LoneNode(() => 0);
  const a = new Peer(1, node, 0);
  const b = new Peer(2, node, 0);
  a.onion.addFriend(b.real.publicKey, 0);
  b.onion.addFriend(a.real.publicKey, 0);
  a.onion.relayUp(0);
  b.onion.relayUp(0);
  return { node, a, b };
}

/** Virtual time: run every peer's deadlines and deliveries until `until`. */
function run(peers: Peer[], from: number, until: number): number {
  let now = from;
  for (let guard = 0; guard < 100_000; guard++) {
    for (const p of peers) p.deliver(now);
    const next = Math.min(...peers.map((p) => p.onion.nextDeadline()));
    if (!Number.isFinite(next) || next > until) return until;
    now = Math.max(now, next);
    for (const p of peers) if (p.onion.nextDeadline() <= now) p.onion.tick(now);
  }
  throw new Error("the schedule did not settle");
}

Deno.test("announce: the first relay up starts it; a fresh ping id is echoed at once; stored", () => {
  let clock = 0;
  const node = new LoneNode(() => clock);
  const a = new Peer(1, node, 0);
  a.onion.relayUp(0);
  assert.equal(a.sent, 1, "one announce request at once, with a zero ping id");
  a.deliver(0);
  assert.equal(a.sent, 2, "the answer's ping id is sent back at once, not 3 s later");
  a.deliver(0);
  assert.deepEqual(a.of("onion_announced"), [{
    type: "onion_announced",
    announced: true,
    storedAt: 1,
    nodes: 1,
    sinceRelayUpMs: 0,
  }]);
  assert.equal(node.entries.get(a.realHex)?.dataKey.length, 32);
  assert.ok(bytesEqual(node.entries.get(a.realHex)!.dataKey, a.onion.dataPublicKey));
  const v = a.onion.view(0);
  assert.equal(v.announced, true);
  assert.equal(v.announceNodes[0].publicKey, node.hex);
  assert.equal(v.announceNodes[0].address, "127.0.0.1:33445");
  assert.equal(v.paths.length, 1);
  assert.equal(v.bootstrapNodes, 1, "the relay itself is the bootstrap node");
  // Stored: the next announce is 15 s later (ANNOUNCE_INTERVAL_ANNOUNCED), echoing the ping id.
  assert.equal(a.onion.nextDeadline(), 15_000);
  clock = 15_000;
  a.onion.tick(15_000);
  assert.equal(a.sent, 3);
  a.deliver(15_000);
  assert.equal(a.onion.view(15_000).announceNodes[0].pingsUnanswered, 0);
});

Deno.test("announce: stable after 90 s re-announces every 120 s, always before the 300 s expiry", () => {
  let clock = 0;
  const node = new LoneNode(() => clock);
  const a = new Peer(1, node, 0);
  a.onion.relayUp(0);
  const times: number[] = [];
  const orig = node.onionRequest.bind(node);
  node.onionRequest = (c, b) => {
    times.push(clock);
    orig(c, b);
  };
  for (let now = 0; now < 1_200_000;) {
    a.deliver(now);
    now = a.onion.nextDeadline();
    clock = now;
    a.onion.tick(now);
  }
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(gaps.includes(15_000), "15 s while not yet stable");
  assert.ok(gaps.includes(120_000), "120 s once stable");
  assert.ok(Math.max(...gaps) <= 120_000, "never long enough for the node to forget us");
  assert.equal(a.onion.view(clock).announced, true);
});

Deno.test("search: friends find each other's data key and swap DHT keys and relays (DHT-PK)", () => {
  const { node, a, b } = friendsOnNode();
  const end = run([a, b], 0, 5_000);
  const got = a.of("onion_dht_pk");
  assert.equal(got.length, 1, "one DHT-PK from b (later copies are replays)");
  assert.equal(got[0].friend, b.realHex);
  assert.ok(bytesEqual(got[0].dhtPublicKey, b.dht.publicKey));
  assert.deepEqual(got[0].relays, [node.relay], "b's relay, as a TCP node");
  assert.equal(b.of("onion_dht_pk")[0].friend, a.realHex);
  assert.equal(a.of("onion_friend_found")[0].friend, b.realHex);
  const fv = a.onion.friendView(b.realHex, end)!;
  assert.equal(fv.announcedAt, 1);
  assert.ok(fv.dhtPkSentAgoMs !== null && fv.dhtPkReceivedAgoMs !== null);
});

Deno.test("search: a friend announced later is found on the next 1 s search", () => {
  const node = new LoneNode(() => 0);
  const a = new Peer(1, node, 0);
  const b = new Peer(2, node, 0);
  b.relayUp = false;
  a.onion.addFriend(b.real.publicKey, 0);
  a.onion.relayUp(0);
  run([a], 0, 2_500);
  assert.equal(a.of("onion_friend_found").length, 0);
  b.relayUp = true;
  b.onion.relayUp(2_500);
  run([a, b], 2_500, 6_000);
  const found = a.of("onion_friend_found");
  assert.equal(found.length, 1);
  assert.ok(a.onion.friendView(b.realHex, 6_000)!.lastSearchAgoMs! <= 1_000);
});

Deno.test("onion data: nothing goes before the friend is found; then one copy per holding node", () => {
  const node = new LoneNode(() => 0);
  const a = new Peer(1, node, 0);
  const b = new Peer(2, node, 0);
  a.onion.addFriend(b.real.publicKey, 0);
  const nospam = new Uint8Array([1, 2, 3, 4]);
  const request = encodeFriendRequest(nospam, new TextEncoder().encode("hi b"));
  assert.equal(a.onion.sendData(b.realHex, request, 0), 0, "not found: nothing sent");
  a.onion.relayUp(0);
  b.onion.relayUp(0);
  run([a, b], 0, 3_000);
  assert.equal(a.onion.sendData(b.realHex, request, 3_000), 1);
  b.deliver(3_000);
  const reqs = b.of("onion_friend_request");
  assert.equal(reqs.length, 1, "b need not have a as a friend to hear its request");
  assert.ok(bytesEqual(reqs[0].sender, a.real.publicKey));
  assert.deepEqual([...reqs[0].nospam], [1, 2, 3, 4]);
  assert.equal(new TextDecoder().decode(reqs[0].message), "hi b");
  // A DHT-PK from someone who is not b's friend is dropped (handle_dhtpk_announce).
  assert.equal(b.of("onion_dht_pk").length, 0);
});

Deno.test("DHT-PK: a replayed announcement is refused; after going offline a friend's counter resets", () => {
  const { node, a, b } = friendsOnNode();
  // Capture what the node forwards to a, to replay it.
  const seen: Uint8Array[] = [];
  const orig = a.onion.handleResponse.bind(a.onion);
  a.onion.handleResponse = (relay, body, now) => {
    if (body[0] === 0x86) seen.push(body.slice());
    return orig(relay, body, now);
  };
  run([a, b], 0, 3_000);
  assert.equal(a.of("onion_dht_pk").length, 1);
  assert.ok(seen.length >= 1);
  assert.equal(orig(node.hex, seen[0], 3_000), false, "the same no_replay again is refused");
  a.onion.setFriendOnline(b.realHex, true, 3_000);
  a.onion.setFriendOnline(b.realHex, false, 3_001);
  assert.equal(orig(node.hex, seen[0], 3_002), true, "a friend back from offline starts over");
});

Deno.test("DHT-PK goes every 30 s, every 2 s while our request is unanswered, never once online", () => {
  const { a, b } = friendsOnNode();
  run([a, b], 0, 100_000);
  const slow = b.of("onion_dht_pk").length;
  assert.ok(slow >= 3 && slow <= 5, `every 30 s: ${slow} in 100 s`);
  a.onion.setRequestPending(b.realHex, true, 100_000);
  run([a, b], 100_000, 120_000);
  const fast = b.of("onion_dht_pk").length - slow;
  assert.ok(fast >= 9, `every 2 s while requested: ${fast} in 20 s`);
  a.onion.setFriendOnline(b.realHex, true, 120_000);
  const before = b.of("onion_dht_pk").length;
  run([a, b], 120_000, 200_000);
  assert.equal(b.of("onion_dht_pk").length, before, "none while online");
  assert.equal(a.onion.friendView(b.realHex, 200_000), null, "no search view while online");
});

Deno.test("a silent node: paths die after unanswered uses, the node is dropped, we are no longer announced", () => {
  let clock = 0;
  const node = new LoneNode(() => clock);
  const a = new Peer(1, node, 0);
  a.onion.relayUp(0);
  a.deliver(0);
  a.deliver(0);
  assert.equal(a.onion.announced, true);
  node.silent = true;
  for (let now = 0; now < 120_000;) {
    a.deliver(now);
    now = Math.min(a.onion.nextDeadline(), now + 1_000);
    clock = now;
    a.onion.tick(now);
  }
  const v = a.onion.view(clock);
  assert.equal(v.announced, false);
  assert.equal(v.announceNodes.length, 0, "3 unanswered tries and 15 s drop the node");
  assert.deepEqual(a.of("onion_announced").map((e) => e.announced), [true, false]);
  // And when it answers again, we are stored again without outside help.
  node.silent = false;
  for (let now = clock; now < clock + 30_000;) {
    a.deliver(now);
    now = Math.min(a.onion.nextDeadline(), now + 1_000);
    a.onion.tick(now);
  }
  assert.equal(a.onion.announced, true);
  assert.ok(a.onion.view().dropped === 0);
});

Deno.test("relays: nothing is sent without one; the first one up announces at once", () => {
  const node = new LoneNode(() => 0);
  const a = new Peer(1, node, 0);
  a.relayUp = false;
  a.onion.addFriend(new Uint8Array(32).fill(7), 0);
  a.onion.tick(0);
  assert.equal(a.sent, 0);
  assert.equal(a.onion.nextDeadline(), Infinity, "no relay: no timer");
  a.relayUp = true;
  a.onion.relayUp(5);
  assert.ok(a.sent >= 1, "announce (and search) requests the moment a relay is up");
});

Deno.test("wake: a timer that fires 30 s late (a suspend) re-announces and searches at once", () => {
  const node = new LoneNode(() => 0);
  const a = new Peer(1, node, 0);
  a.onion.relayUp(0);
  a.deliver(0);
  a.deliver(0);
  const due = a.onion.nextDeadline();
  const before = a.sent;
  a.onion.tick(due + 31_000);
  assert.equal(a.sent, before + 1, "the stored node is asked at once");
  a.onion.wake(due + 32_000);
  assert.equal(a.sent, before + 2, "wake() asks again whatever the intervals say");
});

Deno.test("bad input is counted and dropped, never thrown: junk, forged sendbacks, other keys", () => {
  const node = new LoneNode(() => 0);
  const a = new Peer(1, node, 0);
  const r = seededRandom(5);
  const junk = [
    new Uint8Array(0),
    new Uint8Array([0x84]),
    new Uint8Array([0x86, 1, 2, 3]),
    new Uint8Array([0x99, ...r(200)]),
    new Uint8Array([0x84, ...r(81)]),
    new Uint8Array([0x84, ...r(300)]),
    new Uint8Array([0x86, ...r(500)]),
  ];
  for (const j of junk) assert.equal(a.onion.handleResponse(node.hex, j, 0), false);
  assert.equal(a.onion.view().dropped, junk.length);
  assert.equal(a.onion.view().responses, 0);
  // A response to a sendback that is ours but sealed with another key does not consume it.
  a.onion.relayUp(0);
  const real = node.take("1")[0];
  const forged = real.slice();
  forged[forged.length - 1] ^= 1;
  assert.equal(a.onion.handleResponse(node.hex, forged, 0), false);
  assert.equal(a.onion.handleResponse(node.hex, real, 0), true, "the genuine one still works");
});

Deno.test("sendbacks are bounded: a node that never answers cannot grow them past 256", () => {
  let clock = 0;
  const node = new LoneNode(() => clock);
  node.silent = true;
  const a = new Peer(1, node, 0);
  // 300 friends: their first searches alone are more requests than the bound.
  for (let i = 0; i < 300; i++) a.onion.addFriend(seededRandom(1000 + i)(32), 0);
  a.onion.relayUp(0);
  let most = 0;
  for (let now = 0; now < 15_000; now += 250) {
    clock = now;
    a.onion.tick(now);
    most = Math.max(most, a.onion.view(now).awaitingResponses);
  }
  assert.ok(a.sent > 256, `enough unanswered requests to matter: ${a.sent}`);
  assert.equal(most, 256);
  // Requests expire after 10 s (ANNOUNCE_TIMEOUT) once nothing new goes out.
  a.relayUp = false;
  a.onion.tick(clock + 10_001);
  assert.equal(a.onion.view().awaitingResponses, 0);
});

// ---- a network of three nodes (tests/support/onion_network.ts) ---------------------------------

/** A client of the three-node model: its relay is node `relayIndex`; bootstrap = every node. */
function netPeer(net: FakeOnionNetwork, id: number, relayIndex: number, now: () => number) {
  const real = newKeyPair(seededRandom(500 + id));
  const relay = net.node(relayIndex).relay;
  const onion = new OnionClient({
    now: now(),
    unixTimeMs: 1_790_000_000_000,
    random: seededRandom(600 + id),
    realKeys: real,
    dhtPublicKey: newKeyPair(seededRandom(700 + id)).publicKey,
    bootstrap: net.nodes.map((n) => n.relay),
    transport: {
      send: (body, r) => {
        net.onionRequest(r, String(id), body);
        return true;
      },
      connectedRelays: () => [relay],
    },
  });
  const events: OnionClientEvent[] = [];
  const deliver = () => {
    for (let i = 0; i < 10; i++) {
      const d = net.takeDeliveries(String(id));
      if (d.length === 0) break;
      for (const x of d) onion.handleResponse(x.relay, x.body, now());
    }
    events.push(...onion.takeEvents());
  };
  return { real, realHex: toHex(real.publicKey), onion, events, deliver };
}

Deno.test("three nodes: paths through other nodes, announced at several, no ping-id flapping over 20 min", () => {
  let t = 0;
  const net = new FakeOnionNetwork(() => t, seededRandom(77), { nodes: 3, listCloseNodes: true });
  const a = netPeer(net, 1, 0, () => t);
  a.onion.relayUp(0);
  while (t < 1_200_000) {
    a.deliver();
    t = Math.min(a.onion.nextDeadline(), t + 5_000);
    a.onion.tick(t);
  }
  a.deliver();
  const v = a.onion.view(t);
  assert.equal(v.announced, true);
  assert.ok(v.announceNodes.filter((n) => n.stored).length >= 2, "stored at more than one node");
  assert.ok(
    v.paths.some((p) => p.nodes.some((n) => n !== "127.0.0.1:33445")),
    "hops beyond the relay",
  );
  assert.equal(v.dropped, 0);
  // Re-announcing through the path each node answered on keeps the ping id valid: once stored,
  // nodes never had to refuse one.
  const refusedAfterStart = net.stats.pingIdsRefused;
  const before = net.stats.announcesStored;
  for (const end = t + 600_000; t < end;) {
    a.deliver();
    t = Math.min(a.onion.nextDeadline(), t + 5_000);
    a.onion.tick(t);
  }
  assert.ok(net.stats.announcesStored > before, "re-announced");
  assert.equal(net.stats.pingIdsRefused, refusedAfterStart, "no ping id refused once stored");
  assert.deepEqual(a.events.filter((e) => e.type === "onion_announced").map((e) => e.announced), [
    true,
  ]);
});

Deno.test("three nodes: friends on different relays find each other and swap DHT keys", () => {
  let t = 0;
  const net = new FakeOnionNetwork(() => t, seededRandom(78), { nodes: 3, listCloseNodes: true });
  const a = netPeer(net, 1, 0, () => t);
  const b = netPeer(net, 2, 2, () => t);
  a.onion.addFriend(b.real.publicKey, 0);
  b.onion.addFriend(a.real.publicKey, 0);
  a.onion.relayUp(0);
  b.onion.relayUp(0);
  while (
    t < 20_000 && (a.events.every((e) => e.type !== "onion_dht_pk") ||
      b.events.every((e) => e.type !== "onion_dht_pk"))
  ) {
    a.deliver();
    b.deliver();
    t = Math.min(a.onion.nextDeadline(), b.onion.nextDeadline(), t + 1_000);
    a.onion.tick(t);
    b.onion.tick(t);
  }
  assert.ok(t < 5_000, `both DHT keys swapped within ${t} ms`);
  const got = a.events.find((e) => e.type === "onion_dht_pk");
  assert.ok(got && got.type === "onion_dht_pk" && got.friend === b.realHex);
});

Deno.test("friend searches share one budget: 60 friends at 20 requests/s take turns, none starves", () => {
  const node = new LoneNode(() => 0);
  const real = newKeyPair(seededRandom(901));
  let requests = 0;
  const onion = new OnionClient({
    now: 0,
    unixTimeMs: 1_790_000_000_000,
    random: seededRandom(902),
    realKeys: real,
    dhtPublicKey: newKeyPair(seededRandom(903)).publicKey,
    config: { searchRequestsPerSec: 20, maxAnnounceNodes: 0 },
    transport: {
      send: (body) => {
        requests++;
        node.onionRequest("us", body);
        return true;
      },
      canSend: () => true,
      connectedRelays: () => [node.relay],
    },
  });
  const friends = Array.from({ length: 60 }, (_, i) => newKeyPair(seededRandom(1000 + i)));
  for (const f of friends) onion.addFriend(f.publicKey, 0);
  onion.relayUp(0);
  const perSecond: number[] = [];
  let now = 0;
  for (let second = 1; second <= 6; second++) {
    const before = requests;
    while (now < second * 1000) {
      const next = Math.max(now + 1, Math.min(onion.nextDeadline(), second * 1000));
      now = next;
      onion.tick(now);
      for (const body of node.take("us")) {
        onion.handleResponse(node.hex, body, now);
      }
      onion.runIfDue(now);
    }
    perSecond.push(requests - before);
  }
  // The bucket starts full (a second's worth), then refills at the rate.
  for (const n of perSecond) assert.ok(n <= 20 + 20, `requests in one second: ${perSecond}`);
  assert.ok(perSecond.slice(1).every((n) => n <= 21), `per second after the first: ${perSecond}`);
  // Every friend has been searched for: the views say when each last was.
  const views = friends.map((f) => onion.friendView(toHex(f.publicKey), now));
  const never = views.filter((v) => v === null || v.lastSearchAgoMs === null).length;
  assert.equal(never, 0, "a friend was never searched for");
});

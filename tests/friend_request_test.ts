/**
 * Friends found and friend requests through the onion, Messenger to Messenger on virtual
 * time (SimNet: one relay that is also a lone onion node, as tox-bootstrapd is). No hint
 * anywhere unless a test says so.
 */
import assert from "node:assert/strict";
import { toHex } from "../daemon/core/common/crypto.ts";
import type { MessengerEvent } from "../daemon/core/messenger/messenger.ts";
import { SimNet, type SimNode } from "./support/sim_network.ts";

function ofType<T extends MessengerEvent["type"]>(
  n: SimNode,
  type: T,
): Extract<MessengerEvent, { type: T }>[] {
  return n.events.filter((e): e is Extract<MessengerEvent, { type: T }> => e.type === type);
}

const online = (n: SimNode, friend: SimNode) =>
  ofType(n, "friend_online").some((e) => e.friend === friend.hex);

function pair() {
  const net = new SimNet();
  const r = net.addRelay();
  const a = net.addNode("alice", [r]);
  const b = net.addNode("bob", [r]);
  return { net, r, a, b };
}

Deno.test("no hint: two friends who know only each other's key come online through the onion", () => {
  const { net, a, b } = pair();
  net.act(a, (m, now) => m.addFriend(b.real.publicKey, now));
  net.act(b, (m, now) => m.addFriend(a.real.publicKey, now));
  const t0 = net.now;
  assert.ok(net.run(() => online(a, b) && online(b, a), 10_000), "both online");
  assert.ok(net.now - t0 < 2_000, `online after ${net.now - t0} ms of virtual time`);
  const key = ofType(a, "friend_dht_key")[0];
  assert.equal(key.source, "onion");
  assert.equal(key.dhtPublicKey, toHex(b.dht.publicKey));
  assert.equal(ofType(a, "onion_announced")[0].announced, true);
  const view = a.messenger.friends()[0];
  assert.equal(view.onion, null, "no search for a friend online");
  assert.equal(view.request, null);
});

Deno.test("a friend request: reported once though re-sent 5, 10, 20 s apart; accepted, both online", () => {
  const { net, a, b } = pair();
  const r = net.act(
    a,
    (m, now) => m.addFriend(b.real.publicKey, now, { nospam: b.nospam, message: "hi bob ✓" }),
  );
  assert.equal(r.ok, true);
  assert.ok(net.run(() => ofType(b, "friend_request").length > 0, 5_000), "bob is asked");
  const req = ofType(b, "friend_request")[0];
  assert.deepEqual(req, { type: "friend_request", publicKey: a.hex, text: "hi bob ✓" });
  // Bob thinks it over for a minute; alice's request goes out again meanwhile.
  net.advance(60_000);
  const sent = ofType(a, "friend_request_sent");
  assert.deepEqual(sent.map((e) => e.attempt), [1, 2, 3, 4]);
  assert.equal(ofType(b, "friend_request").length, 1, "one report per requester");
  const view = a.messenger.friends()[0];
  assert.equal(view.request?.attempts, 4);
  assert.notEqual(view.onion, null);
  assert.equal(view.onion!.announcedAt, 1, "bob is found at the one node");
  // Bob accepts: both online soon (alice's DHT-PK goes every 2 s while her request waits).
  const t = net.now;
  net.act(b, (m, now) => m.addFriend(a.real.publicKey, now));
  assert.ok(net.run(() => online(a, b) && online(b, a), 10_000));
  assert.ok(net.now - t < 3_000, `online ${net.now - t} ms after the accept`);
  assert.equal(a.messenger.friends()[0].request, null, "answered: no more requests");
  net.advance(60_000);
  assert.equal(ofType(a, "friend_request_sent").length, 4);
  const again = net.act(
    a,
    (m, now) => m.addFriend(b.real.publicKey, now, { nospam: b.nospam, message: "again" }),
  );
  assert.deepEqual(again, { ok: false, reason: "invalid", message: "already a friend" });
});

Deno.test("the re-send schedule doubles: 5 s, 10 s, 20 s, 40 s after each attempt", () => {
  const { net, a, b } = pair();
  net.act(a, (m, now) => m.addFriend(b.real.publicKey, now, { nospam: b.nospam, message: "hi" }));
  const times: number[] = [];
  for (let i = 0; i < 1_000 && times.length < 5; i++) {
    net.advance(100);
    const n = ofType(a, "friend_request_sent").length;
    while (times.length < n) times.push(net.now);
  }
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  const want = [5_000, 10_000, 20_000, 40_000];
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(gaps[i] - want[i]) <= 200, `gap ${i + 1}: ${gaps[i]} ms, want ${want[i]}`);
  }
});

Deno.test("requests with a wrong nospam, or from a friend, are dropped; a restart forgets nothing saved", () => {
  const { net, r, a, b } = pair();
  const c = net.addNode("carol", [r]);
  const wrong = b.nospam.map((x) => x ^ 1);
  net.act(c, (m, now) => m.addFriend(b.real.publicKey, now, { nospam: wrong, message: "spam" }));
  net.act(b, (m, now) => m.addFriend(a.real.publicKey, now));
  net.act(a, (m, now) => m.addFriend(b.real.publicKey, now, { nospam: b.nospam, message: "hi" }));
  net.advance(20_000);
  assert.ok(ofType(c, "friend_request_sent").length >= 2, "carol's request reached bob's node");
  assert.deepEqual(
    ofType(b, "friend_request"),
    [],
    "wrong nospam: dropped; alice: a friend already",
  );
  assert.ok(online(a, b) && online(b, a));
});

Deno.test("an outgoing request waits for the friend to be found; nothing is sent to nobody", () => {
  const { net, a, b } = pair();
  net.removeNode("bob");
  net.act(a, (m, now) => m.addFriend(b.real.publicKey, now, { nospam: b.nospam, message: "hi" }));
  net.advance(30_000);
  assert.deepEqual(ofType(a, "friend_request_sent"), []);
  const v = a.messenger.friends()[0];
  assert.deepEqual(v.request, { attempts: 0, lastSentAgoMs: null });
  assert.equal(v.onion?.announcedAt, 0);
  assert.equal(v.progress, "awaiting_dht_key");
});

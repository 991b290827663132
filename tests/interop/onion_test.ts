/**
 * The onion over TCP against a real c-toxcore 0.2.18 network (one tox-bootstrapd on
 * 127.0.0.1 is relay, every onion hop and the announce node): two of ours find each other
 * with nothing but their long-term keys, and friend requests go both ways between ours.
 * The C peer side is in onion_c_test.ts.
 */
import assert from "node:assert/strict";
import { FriendEndpoint } from "../../tools/testbed/friend_flow.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";

type Of<T extends CoordinatorEvent["type"]> = Extract<CoordinatorEvent, { type: T }>;
const is =
  <T extends CoordinatorEvent["type"]>(type: T, pred: (e: Of<T>) => boolean = () => true) =>
  (
    e: CoordinatorEvent,
  ): e is Of<T> => e.type === type && pred(e as Of<T>);

/** Both see the other online (bounded). */
const bothOnline = (a: FriendEndpoint, b: FriendEndpoint, signal: AbortSignal) =>
  Promise.all([
    a.waitFor("a sees b", is("friend_online", (e) => e.friend === b.realHex), 15_000, signal),
    b.waitFor("b sees a", is("friend_online", (e) => e.friend === a.realHex), 15_000, signal),
  ]);

interopTest("onion: two of ours, given only each other's key, find each other and talk", [
  "tox-bootstrapd",
], async (_t, signal) => {
  await using relay = await startBootstrapd();
  const a = new FriendEndpoint({ name: "alice", relays: [relay.relay] });
  const b = new FriendEndpoint({ name: "bob", relays: [relay.relay] });
  try {
    const announced = Promise.all([
      a.waitFor("alice announced", is("onion_announced", (e) => e.announced), 10_000, signal),
      b.waitFor("bob announced", is("onion_announced", (e) => e.announced), 10_000, signal),
    ]);
    const learnt = a.waitFor(
      "alice learns bob's DHT key from the onion",
      is("friend_dht_key", (e) => e.friend === b.realHex && e.source === "onion"),
      15_000,
      signal,
    );
    const online = bothOnline(a, b, signal);
    a.handle.addFriend(b.real.publicKey);
    b.handle.addFriend(a.real.publicKey);
    await announced;
    assert.equal((await learnt).dhtPublicKey, b.dhtHex, "the DHT key bob announced");
    await online;
    console.log(`online ${(performance.now() - a.startedAt).toFixed(0)} ms after start`);

    const st = await a.status();
    const onion = st.self!.onion;
    assert.equal(onion.announced, true);
    assert.equal(onion.announceNodes[0].publicKey, relay.relay.publicKey);
    assert.ok(onion.announceNodes[0].stored);
    assert.ok(onion.paths.length >= 1, "a working path is listed");
    const friend = st.friends.find((f) => f.publicKey === b.realHex)!;
    assert.equal(friend.dhtKeySource === "onion" || friend.dhtKeySource === "handshake", true);
    assert.equal(friend.onion, null, "no search while the friend is online");

    const got = b.waitFor("bob gets the text", is("friend_message"), 10_000, signal);
    a.handle.sendMessage(b.real.publicKey, "found you through the onion");
    assert.equal((await got).text, "found you through the onion");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}, { timeout: 60_000 });

interopTest("onion: a friend request between two of ours, accepted, and a wrong nospam ignored", [
  "tox-bootstrapd",
], async (_t, signal) => {
  await using relay = await startBootstrapd();
  const a = new FriendEndpoint({ name: "alice", relays: [relay.relay] });
  const b = new FriendEndpoint({ name: "bob", relays: [relay.relay] });
  const mallory = new FriendEndpoint({ name: "mallory", relays: [relay.relay] });
  const requests: Of<"friend_request">[] = [];
  b.subscribe((evs) => evs.forEach((e) => e.type === "friend_request" && requests.push(e)));
  try {
    // Mallory knows bob's key but not his nospam: c-toxcore drops such a request silently.
    const wrong = b.nospam.map((x) => x ^ 0xff);
    const malloryTried = mallory.waitFor(
      "mallory's request went out",
      is("friend_request_sent"),
      15_000,
      signal,
    );
    await mallory.handle.request({
      t: "friend_add",
      publicKey: b.real.publicKey,
      request: { nospam: wrong, message: "let me in" },
    });
    const asked = b.waitFor(
      "bob is asked by alice",
      is("friend_request", (e) => e.publicKey === a.realHex),
      15_000,
      signal,
    );
    const sent = await a.handle.request({
      t: "friend_add",
      publicKey: b.real.publicKey,
      request: { nospam: b.nospam, message: "hi bob, it's alice ✓" },
    });
    assert.ok(sent.ok, "the request is queued");
    const req = await asked;
    assert.equal(req.text, "hi bob, it's alice ✓");
    await malloryTried;

    const online = bothOnline(a, b, signal);
    b.handle.addFriend(a.real.publicKey); // accept
    await online;
    const st = await a.status();
    assert.equal(st.friends.find((f) => f.publicKey === b.realHex)!.request, null);
    assert.deepEqual(
      requests.map((r) => r.publicKey),
      [a.realHex],
      "one report of alice's request (it is re-sent until answered), none from mallory",
    );
    const again = await a.handle.request({
      t: "friend_add",
      publicKey: b.real.publicKey,
      request: { nospam: b.nospam, message: "again?" },
    });
    assert.equal(again.ok, false);
    assert.match(again.ok ? "" : again.message, /already a friend/);
  } finally {
    await Promise.all([a.close(), b.close(), mallory.close()]);
  }
}, { timeout: 60_000 });

import assert from "node:assert/strict";
import { SimNet, type SimNode } from "./support/sim_network.ts";
import type { MessengerEvent } from "../daemon/core/messenger/messenger.ts";
import { toHex } from "../daemon/core/common/crypto.ts";

function ofType<T extends MessengerEvent["type"]>(
  n: SimNode,
  type: T,
): Extract<MessengerEvent, { type: T }>[] {
  return n.events.filter((e): e is Extract<MessengerEvent, { type: T }> => e.type === type);
}

function friends(net: SimNet, hintA = true) {
  const r = net.addRelay();
  const a = net.addNode("alice", [r]);
  const b = net.addNode("bob", [r]);
  net.act(a, (m, now) => m.addFriend(b.real.publicKey, now));
  net.act(b, (m, now) => m.addFriend(a.real.publicKey, now));
  if (hintA) net.act(a, (m, now) => m.hint(b.hex, b.dht.publicKey, [r], now));
  return { r, a, b };
}

const online = (n: SimNode) => ofType(n, "friend_online").length > 0;

Deno.test("a hinted friend comes online on both sides through one relay", () => {
  const net = new SimNet();
  const { a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000), "both online");
  const progress = ofType(a, "friend_progress").map((e) => e.progress);
  assert.deepEqual(progress, [
    "awaiting_dht_key",
    "acquiring_cookie",
    "awaiting_handshake",
    "awaiting_session_packet",
    "connected",
  ]);
  // bob learned alice's DHT key from her handshake.
  assert.equal(ofType(b, "friend_dht_key")[0].source, "handshake");
  net.advance(200);
  assert.equal(ofType(a, "friend_name")[0].name, "bob");
  assert.equal(ofType(b, "friend_name")[0].name, "alice");
});

Deno.test("messages both ways with receipts", () => {
  const net = new SimNet();
  const { a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  const r1 = net.act(a, (m, now) => m.sendMessage(b.hex, "hello bob", "normal", now));
  const r2 = net.act(b, (m, now) => m.sendMessage(a.hex, "waves", "action", now));
  assert.ok(r1.ok && r2.ok);
  assert.ok(
    net.run(
      () => ofType(a, "friend_receipt").length > 0 && ofType(b, "friend_receipt").length > 0,
      3_000,
    ),
  );
  assert.deepEqual(ofType(b, "friend_message").map((e) => [e.kind, e.text]), [[
    "normal",
    "hello bob",
  ]]);
  assert.deepEqual(ofType(a, "friend_message").map((e) => [e.kind, e.text]), [["action", "waves"]]);
  assert.equal(ofType(a, "friend_receipt")[0].messageId, 1);
});

/**
 * Alice's side of a numbered stream to bob: `pump()` sends packets 0..total-1 (id 160, the
 * number at byte 1) until her session refuses one; `refused` counts the refusals.
 */
function numberedStream(net: SimNet, a: SimNode, b: SimNode, total: number) {
  const s = {
    sent: 0,
    refused: 0,
    pump(): void {
      while (s.sent < total) {
        const p = new Uint8Array(100);
        p[0] = 160;
        new DataView(p.buffer).setUint32(1, s.sent);
        const res = net.act(a, (m, now) => m.sendLossless(b.hex, p, now));
        if (!res.ok) {
          s.refused++;
          break;
        }
        s.sent++;
      }
    },
  };
  return s;
}

/** Pump until bob has all `total` packets (within `ms`), and check they came once, in order. */
function allArriveInOrder(
  net: SimNet,
  b: SimNode,
  stream: { pump(): void },
  total: number,
  ms: number,
): void {
  assert.ok(
    net.run(() => {
      stream.pump();
      return ofType(b, "friend_lossless").length >= total;
    }, ms),
    `got ${ofType(b, "friend_lossless").length}`,
  );
  const seqs = ofType(b, "friend_lossless").map((e) =>
    new DataView(e.data.buffer, e.data.byteOffset).getUint32(1)
  );
  assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i));
}

Deno.test("2000 custom lossless packets arrive complete and in order, with a lossy relay", () => {
  const net = new SimNet();
  const { r, a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  let n = 0;
  net.setDropData(r, () => (n++ % 7) === 3); // drop one DATA in seven, silently
  const total = 2000;
  const stream = numberedStream(net, a, b, total);
  stream.pump();
  allArriveInOrder(net, b, stream, total, 120_000);
  assert.ok(net.dropped > 0);
  assert.ok(online(a) && ofType(a, "friend_offline").length === 0);
});

Deno.test("removing a friend sends OFFLINE and KILL: the other side sees it offline at once", () => {
  const net = new SimNet();
  const { a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  net.act(a, (m, now) => m.removeFriend(b.hex, now));
  assert.ok(net.run(() => ofType(b, "friend_offline").length > 0, 1_000));
  assert.equal(ofType(b, "friend_disconnected")[0]?.cause ?? "peer", "peer");
});

Deno.test("a dial nobody accepts dies after 8 handshake tries and is redialled", () => {
  const net = new SimNet();
  const r = net.addRelay();
  const a = net.addNode("alice", [r]);
  const b = net.addNode("bob", [r]); // bob does not have alice as a friend
  net.act(a, (m, now) => m.addFriend(b.real.publicKey, now));
  net.act(a, (m, now) => m.hint(b.hex, b.dht.publicKey, [r], now));
  net.advance(12_000);
  const view = a.messenger.friends()[0];
  assert.equal(view.online, false);
  assert.match(view.lastDisconnect ?? "", /timeout: no handshake after 8 tries/);
  assert.notEqual(view.crypto, null, "a new dial is under way");
  assert.ok(b.events.some((e) => e.type === "handshake_refused"));
});

Deno.test("32 s without ALIVE kills the session (only ALIVE refreshes the timer)", () => {
  const net = new SimNet();
  const { r, a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  // From now on the relay drops everything bob sends: alice hears nothing.
  net.setDropData(r, (from) => from === "bob");
  assert.ok(net.run(() => ofType(a, "friend_offline").length > 0, 40_000));
  assert.equal(ofType(a, "friend_offline")[0].cause, "alive_timeout");
});

Deno.test("a cookie request lost before the friend reached the relay is sent again within 250 ms", () => {
  const net = new SimNet();
  const r = net.addRelay();
  const bobKeys = net.keys();
  const a = net.addNode("alice", [r]);
  net.act(a, (m, now) => m.addFriend(bobKeys.real.publicKey, now));
  net.act(a, (m, now) => m.hint(toHex(bobKeys.real.publicKey), bobKeys.dht.publicKey, [r], now));
  // Alice's first cookie request goes by OOB to a key the relay does not know yet: dropped.
  net.advance(100);
  assert.equal(a.messenger.friends()[0].progress, "acquiring_cookie");
  const b = net.addNode("bob", [r], {}, bobKeys);
  net.act(b, (m, now) => m.addFriend(a.real.publicKey, now));
  const joined = net.now;
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  // c-toxcore's 1 s resend cadence alone would make this more than a second.
  assert.ok(net.now - joined < 500, `online ${net.now - joined} ms after bob joined`);
});

Deno.test("a handshake under a new DHT key (the friend restarted) replaces the session at once", () => {
  const net = new SimNet();
  const { r, a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  const oldDht = toHex(b.dht.publicKey);
  // Bob restarts: same long-term key, a new DHT key; he dials alice (he has her hint). The
  // relay has not noticed his old connection die, so alice's session still looks alive.
  net.removeNode("bob", false);
  const fresh = net.keys();
  const b2 = net.addNode("bob2", [r], {}, { real: b.real, dht: fresh.dht });
  net.act(b2, (m, now) => m.addFriend(a.real.publicKey, now));
  net.act(b2, (m, now) => m.hint(a.hex, a.dht.publicKey, [r], now));
  const since = net.now;
  assert.ok(net.run(() => online(b2), 5_000), "bob2 sees alice online");
  const keys = ofType(a, "friend_dht_key").map((e) => [e.source, e.dhtPublicKey]);
  assert.deepEqual(keys[0], ["hint", oldDht]);
  // The new key comes with bob2's handshake or, as bob2 announces himself, his DHT-PK
  // through the relay's onion node: whichever is first replaces the old one.
  assert.equal(keys.length, 2);
  assert.ok(keys[1][0] === "handshake" || keys[1][0] === "onion", String(keys[1][0]));
  assert.equal(keys[1][1], toHex(fresh.dht.publicKey));
  // Alice went offline and online again without waiting out the 32 s ALIVE timeout.
  assert.ok(net.run(() => ofType(a, "friend_online").length === 2, 5_000));
  assert.equal(ofType(a, "friend_offline").length, 1);
  assert.ok(net.now - since < 3_000, `back online after ${net.now - since} ms`);
  const view = a.messenger.friends()[0];
  assert.equal(view.dhtPublicKey, toHex(fresh.dht.publicKey));
  assert.equal(view.progress, "connected");
  // Messages flow over the new session.
  net.act(b2, (m, now) => m.sendMessage(a.hex, "back again", "normal", now));
  assert.ok(net.run(() => ofType(a, "friend_message").some((e) => e.text === "back again"), 2_000));
});

Deno.test("shutting down sends KILL: the friend sees us offline at once, not after 32 s", () => {
  const net = new SimNet();
  const { a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  net.act(a, (m, now) => m.shutdown(now));
  const since = net.now;
  assert.ok(net.run(() => ofType(b, "friend_offline").length > 0, 1_000));
  assert.ok(net.now - since < 100, `offline after ${net.now - since} ms`);
  assert.equal(ofType(b, "friend_offline")[0].cause, "peer");
  // Alice keeps her friend list: shutdown is not removal.
  assert.equal(a.messenger.friends().length, 1);
});

Deno.test("held delivery: lossless packets wait in net_crypto, the sender is refused, none is lost", () => {
  const net = new SimNet();
  const { a, b } = friends(net);
  assert.ok(net.run(() => online(a) && online(b), 5_000));
  net.act(b, (m, now) => m.holdDelivery(true, now));
  const total = 10_000; // more than alice may leave unacknowledged (8192)
  const stream = numberedStream(net, a, b, total);
  net.run(() => {
    stream.pump();
    return false;
  }, 10_000);
  assert.equal(ofType(b, "friend_lossless").length, 0, "nothing handed up while held");
  assert.ok(
    stream.refused > 0 && stream.sent < total,
    `alice was held back (sent ${stream.sent})`,
  );
  assert.ok(online(a) && online(b), "the friendship lives on while held");
  net.act(b, (m, now) => m.holdDelivery(false, now));
  allArriveInOrder(net, b, stream, total, 60_000);
});

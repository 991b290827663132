/**
 * Our Messenger core to our Messenger core (two coordinator Workers) through real c-toxcore
 * 0.2.18 relays: a hinted friend comes online, messages go both ways with receipts, custom
 * lossless streams arrive whole and in order, and killing the relay in use loses nothing.
 */
import assert from "node:assert/strict";
import { FriendEndpoint, sendStream, StreamCounter } from "../../tools/friend_flow.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import { type Bootstrapd, interopTest, startBootstrapd } from "./harness.ts";

const isOnline = (friend: string) => (e: CoordinatorEvent) =>
  e.type === "friend_online" && e.friend === friend;

/** a knows b's DHT key and relays (the hint); b knows only a's long-term key. */
async function friends(relays: Bootstrapd[], signal: AbortSignal) {
  const a = new FriendEndpoint({ name: "alice", relays: relays.map((r) => r.relay) });
  const b = new FriendEndpoint({ name: "bob", relays: relays.map((r) => r.relay) });
  try {
    const online = Promise.all([
      a.waitFor("alice sees bob online", isOnline(b.realHex), 15_000, signal),
      b.waitFor("bob sees alice online", isOnline(a.realHex), 15_000, signal),
    ]);
    b.handle.addFriend(a.real.publicKey);
    a.handle.addFriend(b.real.publicKey, {
      dhtPublicKey: b.dht.publicKey,
      relays: relays.map((r) => r.relay),
    });
    await online;
    return { a, b, close: () => Promise.all([a.close(), b.close()]) };
  } catch (e) {
    await Promise.all([a.close(), b.close()]);
    throw e;
  }
}

interopTest("ours<->ours: hinted friend online, messages with receipts, 2000 lossless each way", [
  "tox-bootstrapd",
], async (_t, signal) => {
  await using relay = await startBootstrapd();
  const started = performance.now();
  const { a, b, close } = await friends([relay], signal);
  try {
    const onlineMs = performance.now() - started;
    const st = await a.status();
    const friend = st.friends[0];
    assert.equal(friend.progress, "connected");
    assert.equal(friend.online, true);
    assert.equal(friend.path?.online, true);
    console.log(`online after ${onlineMs.toFixed(0)} ms`);

    // Messages both ways, each with its receipt.
    const got = Promise.all([
      b.waitFor("bob gets the message", (e) => e.type === "friend_message", 5_000, signal),
      a.waitFor("alice gets the action", (e) => e.type === "friend_message", 5_000, signal),
      a.waitFor("alice's receipt", (e) => e.type === "friend_receipt", 5_000, signal),
      b.waitFor("bob's receipt", (e) => e.type === "friend_receipt", 5_000, signal),
    ]);
    a.handle.sendMessage(b.real.publicKey, "hello bob ☺", "normal", 7);
    b.handle.sendMessage(a.real.publicKey, "waves", "action");
    const [m1, m2, r1, r2] = await got;
    assert.deepEqual(m1, {
      type: "friend_message",
      friend: a.realHex,
      kind: "normal",
      text: "hello bob ☺",
    });
    assert.deepEqual(m2, {
      type: "friend_message",
      friend: b.realHex,
      kind: "action",
      text: "waves",
    });
    assert.deepEqual(r1, { type: "friend_receipt", friend: b.realHex, messageId: 1 });
    assert.deepEqual(r2, { type: "friend_receipt", friend: a.realHex, messageId: 1 });

    // 2000 custom lossless packets each way, at once.
    const atB = new StreamCounter(b, a.realHex);
    const atA = new StreamCounter(a, b.realHex);
    const count = 2000;
    const [ab, ba] = await Promise.all([
      sendStream(a, b.real.publicKey, {
        count,
        size: 100,
        timeoutMs: 30_000,
        done: () => atB.received >= count,
        signal,
      }),
      sendStream(b, a.real.publicKey, {
        count,
        size: 100,
        timeoutMs: 30_000,
        done: () => atA.received >= count,
        signal,
      }),
    ]);
    atA.stop();
    atB.stop();
    assert.equal(ab.timedOut, false, `a->b: ${atB.received}/${count}`);
    assert.equal(ba.timedOut, false, `b->a: ${atA.received}/${count}`);
    assert.deepEqual([atB.received, atB.inOrder, atA.received, atA.inOrder], [
      count,
      count,
      count,
      count,
    ]);
    console.log(
      `a->b ${(count / ab.ms * 1000).toFixed(0)} pkt/s, b->a ${
        (count / ba.ms * 1000).toFixed(0)
      } pkt/s`,
    );
  } finally {
    await close();
  }
}, { timeout: 60_000 });

interopTest("ours<->ours over two relays: killing the relay in use loses no lossless packet", [
  "tox-bootstrapd",
], async (_t, signal) => {
  await using r1 = await startBootstrapd();
  await using r2 = await startBootstrapd();
  const { a, b, close } = await friends([r1, r2], signal);
  try {
    // Wait until both relays carry the friend, then find the sender.
    let sender: string | null = null;
    for (let i = 0; i < 100; i++) {
      const st = await a.status();
      const path = st.friends[0]?.path;
      if (path && path.slots.filter((s) => s.status === "online").length === 2) {
        sender = path.sender;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(sender, "the friend is online on both relays");
    const victim = [r1, r2].find((r) => r.publicKeyHex.toLowerCase() === sender)!;
    const count = 4000;
    const atB = new StreamCounter(b, a.realHex);
    let killed = false;
    const flow = sendStream(a, b.real.publicKey, {
      count,
      size: 200,
      timeoutMs: 40_000,
      done: () => {
        if (!killed && atB.received >= count / 4) {
          killed = true;
          victim.kill();
        }
        return atB.received >= count;
      },
      signal,
    });
    const r = await flow;
    atB.stop();
    assert.ok(killed, "the relay was killed mid-stream");
    assert.equal(r.timedOut, false, `${atB.received}/${count} arrived`);
    assert.equal(atB.received, count);
    assert.equal(atB.inOrder, count);
    const st = await a.status();
    assert.equal(st.friends[0].online, true);
  } finally {
    await close();
  }
}, { timeout: 60_000 });

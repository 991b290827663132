/**
 * Our Messenger core against a real c-toxcore 0.2.18 client (tests/interop/tox_peer.c,
 * built from Debian's libtoxcore-dev): TCP only, one tox-bootstrapd on 127.0.0.1. Both add
 * each other without a request; our side dials with the C peer's DHT id and relay as hint.
 */
import assert from "node:assert/strict";
import { fromHex } from "../../daemon/crypto.ts";
import { FriendEndpoint, sendStream, StreamCounter } from "../../tools/friend_flow.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import { type Bootstrapd, interopTest, startBootstrapd } from "./harness.ts";
import { startToxPeer, type ToxPeer, watchReceived } from "./tox_peer.ts";

/** Us (with the hint) and a C peer, friends and online on both sides. */
async function withCPeer(relays: Bootstrapd[], signal: AbortSignal) {
  const c = await startToxPeer({ relays: relays.map((r) => r.relay), name: "c-peer" });
  const us = new FriendEndpoint({ name: "deno", relays: relays.map((r) => r.relay) });
  try {
    const cKey = fromHex(c.realPublicKey, 32);
    const weSee = us.waitFor(
      "we see the C peer online",
      (e: CoordinatorEvent) => e.type === "friend_online" && e.friend === c.realPublicKey,
      20_000,
      signal,
    );
    const friend = await c.addFriend(us.realHex);
    const cSees = c.waitForFriendOnline(friend, 20_000);
    us.handle.addFriend(cKey, {
      dhtPublicKey: fromHex(c.dhtPublicKey, 32),
      relays: relays.map((r) => r.relay),
    });
    await Promise.all([weSee, cSees]);
    return { c, us, cKey, friend, close: () => Promise.all([us.close(), c.stop()]) };
  } catch (e) {
    await Promise.all([us.close(), c.stop()]);
    throw e;
  }
}

async function cStatsUntil(c: ToxPeer, friend: number, count: number, timeoutMs: number) {
  const end = performance.now() + timeoutMs;
  let s = await c.stats(friend);
  while (s.received < count && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    s = await c.stats(friend);
  }
  return s;
}

interopTest("ours<->C: online both ways, messages with receipts, 2000 lossless each way in order", [
  "tox-bootstrapd",
  "gcc",
], async (_t, signal) => {
  await using relay = await startBootstrapd();
  const started = performance.now();
  const { c, us, cKey, friend, close } = await withCPeer([relay], signal);
  try {
    console.log(`online both ways after ${(performance.now() - started).toFixed(0)} ms`);
    // The C peer sees our profile; we see its name.
    await c.waitFor((e) => e.type === "name" && e.text === "deno", 5_000);
    let st = await us.status();
    for (let i = 0; i < 50 && st.friends[0].name === ""; i++) {
      await new Promise((r) => setTimeout(r, 100));
      st = await us.status();
    }
    assert.equal(st.friends[0].name, "c-peer");
    assert.equal(st.friends[0].progress, "connected");

    // Messages both ways with receipts.
    const ourReceipt = us.waitFor("receipt from C", (e) => e.type === "friend_receipt", 5_000);
    const cGets = c.waitFor((e) => e.type === "message" && e.text === "hello from deno", 5_000);
    us.handle.sendMessage(cKey, "hello from deno");
    await cGets;
    assert.deepEqual(await ourReceipt, {
      type: "friend_receipt",
      friend: c.realPublicKey,
      messageId: 1,
    });
    const weGet = us.waitFor("message from C", (e) => e.type === "friend_message", 5_000);
    const id = await c.sendMessage(friend, "hello from C", "action");
    assert.deepEqual(await weGet, {
      type: "friend_message",
      friend: c.realPublicKey,
      kind: "action",
      text: "hello from C",
    });
    await c.waitFor((e) => e.type === "receipt" && e.messageId === id, 5_000);

    // 2000 custom lossless each way, at the same time, complete and in order.
    const count = 2000;
    const atUs = new StreamCounter(us, c.realPublicKey);
    const watch = watchReceived(c, friend);
    const [toC, fromC] = await Promise.all([
      sendStream(us, cKey, {
        count,
        size: 100,
        timeoutMs: 30_000,
        done: () => watch.received >= count,
        signal,
      }),
      c.burst(friend, count, 100, 160, 30_000),
    ]);
    const cStats = await cStatsUntil(c, friend, count, 10_000);
    await watch.stop();
    const deadline = performance.now() + 10_000;
    while (atUs.received < count && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    atUs.stop();
    assert.equal(toC.timedOut, false);
    assert.deepEqual([cStats.received, cStats.inOrder], [count, count], "ours -> C");
    assert.deepEqual([atUs.received, atUs.inOrder], [count, count], "C -> ours");
    console.log(
      `ours->C ${(count / toC.ms * 1000).toFixed(0)} pkt/s; C accepted its burst in ${fromC.ms} ms`,
    );
  } finally {
    await close();
  }
}, { timeout: 90_000 });

interopTest("ours<->C over two relays: killing the relay in use loses no lossless packet", [
  "tox-bootstrapd",
  "gcc",
], async (_t, signal) => {
  await using r1 = await startBootstrapd();
  await using r2 = await startBootstrapd();
  const { c, us, cKey, friend, close } = await withCPeer([r1, r2], signal);
  try {
    // Our SHARE_RELAYS gives the C peer the second relay; wait until both carry the route.
    let sender: string | null = null;
    for (let i = 0; i < 150 && sender === null; i++) {
      const path = (await us.status()).friends[0]?.path;
      if (path && path.slots.filter((s) => s.status === "online").length === 2) {
        sender = path.sender;
      } else await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(sender, "the C peer is online with us on both relays");
    const victim = [r1, r2].find((r) => r.publicKeyHex.toLowerCase() === sender)!;
    const count = 3000;
    const watch = watchReceived(c, friend);
    let killed = false;
    const r = await sendStream(us, cKey, {
      count,
      size: 200,
      timeoutMs: 60_000,
      done: () => {
        if (!killed && watch.received >= count / 4) {
          killed = true;
          victim.kill();
        }
        return watch.received >= count;
      },
      signal,
    });
    await watch.stop();
    const s = await c.stats(friend);
    assert.ok(killed, "the relay in use was killed mid-stream");
    assert.equal(r.timedOut, false, `${s.received}/${count} arrived`);
    assert.deepEqual([s.received, s.inOrder], [count, count]);
    const st = await us.status();
    assert.equal(st.friends[0].online, true);
  } finally {
    await close();
  }
}, { timeout: 120_000 });

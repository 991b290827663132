/**
 * Our Messenger core to our Messenger core (two coordinator Workers) through real c-toxcore
 * 0.2.18 relays: a hinted friend comes online, messages go both ways with receipts, custom
 * lossless streams arrive whole and in order, and killing the relay in use loses nothing.
 */
import assert from "node:assert/strict";
import { sendStream, StreamCounter } from "../../tools/testbed/friend_flow.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import { exchangeOurs, ourFriends } from "./friend_pairs.ts";

interopTest("ours<->ours: hinted friend online, messages with receipts, 2000 lossless each way", [
  "tox-bootstrapd",
], async (_t, signal) => {
  await using relay = await startBootstrapd();
  const pair = await ourFriends([relay], signal);
  try {
    console.log(`online after ${pair.onlineMs.toFixed(0)} ms`);
    const f = await exchangeOurs(pair, signal);
    console.log(`a->b ${f.abPps.toFixed(0)} pkt/s, b->a ${f.baPps.toFixed(0)} pkt/s`);
  } finally {
    await pair.close();
  }
}, { timeout: 60_000 });

interopTest("ours<->ours over two relays: killing the relay in use loses no lossless packet", [
  "tox-bootstrapd",
], async (_t, signal) => {
  await using r1 = await startBootstrapd();
  await using r2 = await startBootstrapd();
  const { a, b, close } = await ourFriends([r1, r2], signal);
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

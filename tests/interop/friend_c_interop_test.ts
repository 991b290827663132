/**
 * Our Messenger core against a real c-toxcore 0.2.18 client (tools/testbed/tox_peer.c,
 * built from Debian's libtoxcore-dev): TCP only, one tox-bootstrapd on 127.0.0.1. Both add
 * each other without a request; our side dials with the C peer's DHT id and relay as hint.
 */
import assert from "node:assert/strict";
import { sendStream } from "../../tools/testbed/friend_flow.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import { watchReceived } from "../../tools/testbed/tox_peer.ts";
import { exchangeWithCPeer, withCPeer } from "./friend_pairs.ts";

interopTest("ours<->C: online both ways, messages with receipts, 2000 lossless each way in order", [
  "tox-bootstrapd",
  "gcc",
], async (_t, signal) => {
  await using relay = await startBootstrapd();
  const pair = await withCPeer([relay], signal);
  try {
    console.log(`online both ways after ${pair.onlineMs.toFixed(0)} ms`);
    const f = await exchangeWithCPeer(pair, signal, 2000);
    console.log(
      `ours->C ${f.oursToThemPps.toFixed(0)} pkt/s; C accepted its burst in ${f.themToUsMs} ms`,
    );
  } finally {
    await pair.close();
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
    if (r.timedOut) {
      // What each side thought when the stream stopped, to tell whose fault a stall is.
      const st = await us.status();
      console.log(JSON.stringify({ friend: st.friends[0], relays: st.relays, c: s }));
    }
    assert.ok(killed, "the relay in use was killed mid-stream");
    assert.equal(r.timedOut, false, `${s.received}/${count} arrived`);
    assert.deepEqual([s.received, s.inOrder], [count, count]);
    const st = await us.status();
    assert.equal(st.friends[0].online, true);
  } finally {
    await close();
  }
}, { timeout: 120_000 });

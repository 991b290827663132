/**
 * Two real c-toxcore 0.2.18 peers (tools/testbed/tox_peer.c, TCP only: UDP, LAN discovery,
 * IPv6 and hole punching off) through one private tox-bootstrapd on 127.0.0.1: they find each
 * other via the onion, exchange messages with receipts and custom lossless packets. This is the
 * reference behaviour our own stack is measured against.
 */
import assert from "node:assert/strict";
import { type Bootstrapd, interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import {
  measureCToC,
  parseToxPeerLine,
  startToxPeer,
  type ToxPeer,
  ToxPeerCommandError,
  type ToxPeerEvent,
} from "../../tools/testbed/tox_peer.ts";

const BINS = ["tox-bootstrapd", "gcc"];
const ONLINE_TIMEOUT_MS = 30_000;
/** c-toxcore needs ~7-10 s on the onion before a request can go out; this is the bound. */
const REQUEST_TIMEOUT_MS = 40_000;

/** Two peers on `bs`, friends without request, both online. */
async function onlinePair(bs: Bootstrapd): Promise<{
  a: ToxPeer;
  b: ToxPeer;
  onlineMs: number;
  stop: () => Promise<void>;
}> {
  const relays = [bs.relay];
  const started = await Promise.allSettled([
    startToxPeer({ relays, name: "alice" }),
    startToxPeer({ relays, name: "bob" }),
  ]);
  const peers = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const stop = async () => {
    await Promise.all(peers.map((p) => p.stop()));
  };
  try {
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const [a, b] = peers;
    assert.notEqual(a.realPublicKey, b.realPublicKey);
    assert.match(a.address, /^[0-9a-f]{76}$/);
    assert.equal(a.address.slice(0, 64), a.realPublicKey);
    assert.match(a.dhtPublicKey, /^[0-9a-f]{64}$/);
    assert.equal(await a.addFriend(b.realPublicKey), 0);
    assert.equal(await b.addFriend(a.realPublicKey), 0);
    const t0 = performance.now();
    const online = (p: ToxPeer) =>
      p.waitFor(
        (e) => e.type === "friend" && e.friend === 0 && e.connection === "tcp",
        ONLINE_TIMEOUT_MS,
      );
    const [ea, eb] = await Promise.all([online(a), online(b)]);
    const onlineMs = Math.max(ea.at, eb.at) - t0;
    return { a, b, onlineMs, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

Deno.test("tox_peer line parser", () => {
  const ev = parseToxPeerLine("message 3 action 68c3a9", 7, 1);
  assert.equal(ev.type, "message");
  if (ev.type === "message") {
    assert.deepEqual([ev.friend, ev.kind, ev.text, ev.seq], [3, "action", "hé", 7]);
  }
  const st = parseToxPeerLine("stats 0 10 9 1 5.500 7.250 1 0 0 4");
  assert.equal(st.type, "stats");
  if (st.type === "stats") {
    assert.deepEqual(st.stats, {
      friend: 0,
      received: 10,
      inOrder: 9,
      outOfOrder: 1,
      firstMs: 5.5,
      lastMs: 7.25,
      duplicates: 1,
      gaps: 0,
      shortPackets: 0,
      sentSeq: 4,
    });
  }
  assert.equal(parseToxPeerLine("name 0 ").type, "name");
  const pk = "ab".repeat(32);
  const ready = parseToxPeerLine(`ready ${pk} ${"cd".repeat(32)} ${pk}0102030405ff 1.250`);
  assert.equal(ready.type === "ready" && ready.toxNewMs, 1.25);
  const req = parseToxPeerLine(`friend_request ${pk} 6869206d6520e29c93 9000.500`);
  assert.equal(req.type, "friend_request");
  if (req.type === "friend_request") {
    assert.deepEqual([req.publicKey, req.text, req.peerMs], [pk, "hi me ✓", 9000.5]);
  }
  const up = parseToxPeerLine("friend 2 tcp 8123.000");
  assert.equal(up.type === "friend" && up.peerMs, 8123);
  assert.equal(parseToxPeerLine("friend_request nothex 6869 1.000").type, "unknown");
  assert.equal(parseToxPeerLine("friend 0 sideways").type, "unknown");
  assert.equal(parseToxPeerLine("error add TOX_ERR_FRIEND_ADD_OWN_KEY").type, "error");
});

interopTest(
  "tox_peer: two TCP-only c-toxcore peers find each other, message with receipts, 2000 lossless packets each way",
  BINS,
  async () => {
    await using bs = await startBootstrapd();
    const { a, b, onlineMs, stop } = await onlinePair(bs);
    try {
      console.log(`C<->C: friends online after ${onlineMs.toFixed(0)} ms (TCP only, one relay)`);
      assert.ok(a.events.some((e) => e.type === "self" && e.connection === "tcp"));
      // The initial state exchange on connect.
      await a.waitFor((e) => e.type === "name" && e.friend === 0 && e.text === "bob", 5_000);
      await b.waitFor((e) => e.type === "name" && e.friend === 0 && e.text === "alice", 5_000);

      // Command errors come back as `error <cmd> <TOX_ERR>`.
      assert.match(
        await a.command(`add ${a.realPublicKey}`),
        /^error add TOX_ERR_FRIEND_ADD_OWN_KEY$/,
      );
      assert.match(await a.command("send 7 normal 41"), /FRIEND_NOT_FOUND/);

      // Messages both ways, with receipts.
      const exchange = async (
        from: ToxPeer,
        to: ToxPeer,
        text: string,
        kind: "normal" | "action",
      ) => {
        const mark = to.nextSeq;
        const markFrom = from.nextSeq;
        const id = await from.sendMessage(0, text, kind);
        const got = await to.waitFor(
          (e): e is Extract<ToxPeerEvent, { type: "message" }> =>
            e.type === "message" && e.friend === 0,
          5_000,
          mark,
        );
        assert.equal(got.text, text);
        assert.equal(got.kind, kind);
        await from.waitFor(
          (e) => e.type === "receipt" && e.friend === 0 && e.messageId === id,
          5_000,
          markFrom,
        );
      };
      await exchange(a, b, "hello bob ✓", "normal");
      await exchange(b, a, "hello alice", "normal");
      await exchange(a, b, "waves", "action");

      // Profile changes arrive as events.
      let mark = b.nextSeq;
      await a.setStatusMessage("testing");
      await a.setUserStatus(1);
      await b.waitFor((e) => e.type === "status_message" && e.text === "testing", 5_000, mark);
      await b.waitFor((e) => e.type === "user_status" && e.status === 1, 5_000, mark);

      // A single lossless packet is counted and (verbose) printed; lossy packets are printed.
      await b.setVerbose(true);
      mark = b.nextSeq;
      // (3 bytes: too short for a sequence number, so it does not disturb the burst's count)
      await a.sendLossless(0, new Uint8Array([170, 1, 2]));
      await b.waitFor(
        (e) => e.type === "lossless" && e.data.length === 3 && e.data[0] === 170,
        5_000,
        mark,
      );
      await b.setVerbose(false);
      mark = b.nextSeq;
      await a.sendLossy(0, new Uint8Array([200, 9, 9]));
      // lossy may be dropped in principle; on loopback through one relay it arrives
      await b.waitFor((e) => e.type === "lossy" && e.data[0] === 200, 5_000, mark);
      const one = await b.stats(0);
      assert.deepEqual([one.received, one.inOrder, one.outOfOrder, one.shortPackets], [1, 0, 0, 1]);

      // 2000 x 100-byte custom lossless packets each way (id 160), complete and in order.
      const COUNT = 2000;
      const t0 = performance.now();
      const [sa, sb] = await Promise.all([
        a.burst(0, COUNT, 100, 160, 20_000),
        b.burst(0, COUNT, 100, 160, 20_000),
      ]);
      assert.equal(sa.count, COUNT);
      assert.equal(sb.count, COUNT);
      const deadline = performance.now() + 20_000;
      const final = async (p: ToxPeer, expected: number) => {
        let st = await p.stats(0);
        while (st.received < expected && performance.now() < deadline) {
          await new Promise((r) => setTimeout(r, 25));
          st = await p.stats(0);
        }
        return st;
      };
      // b already had the single short packet from a.
      const [stA, stB] = await Promise.all([final(a, COUNT), final(b, COUNT + 1)]);
      const ms = performance.now() - t0;
      console.log(
        `C<->C: ${COUNT} x 100 B lossless each way in ${ms.toFixed(0)} ms ` +
          `(sender queue times ${sa.ms.toFixed(0)} / ${sb.ms.toFixed(0)} ms)`,
      );
      assert.deepEqual(
        [stA.received, stA.inOrder, stA.outOfOrder, stA.duplicates, stA.gaps],
        [COUNT, COUNT, 0, 0, 0],
      );
      assert.deepEqual(
        [stB.received, stB.inOrder, stB.outOfOrder, stB.duplicates, stB.gaps],
        [COUNT + 1, COUNT, 0, 0, 0],
      );
      assert.equal((await a.stats(0)).sentSeq, COUNT);
      assert.equal((await b.stats(0)).sentSeq, COUNT);
    } finally {
      await stop();
    }
  },
  { timeout: 55_000 },
);

interopTest(
  "tox_peer: measureCToC reports the online time and lossless throughput",
  BINS,
  async () => {
    await using bs = await startBootstrapd();
    const r = await measureCToC({ bootstrapd: bs, count: 2000, size: 100, timeoutMs: 45_000 });
    console.log(
      `measureCToC: online ${r.onlineMs.toFixed(0)} ms, ${r.received}/${r.sent} in ` +
        `${r.ms.toFixed(1)} ms = ${r.packetsPerSecond.toFixed(0)} packets/s`,
    );
    assert.equal(r.error, null);
    assert.equal(r.sent, 2000);
    assert.equal(r.received, 2000);
    assert.equal(r.inOrder, 2000);
    assert.ok(r.complete);
    assert.ok(r.ms > 0 && r.packetsPerSecond > 0);
  },
  { timeout: 55_000 },
);

interopTest(
  "tox_peer: a friend request by Tox ID alone (no DHT key) between two C peers, seen with its text, accepted explicitly; both online, a message A->B; bad requests are errors",
  BINS,
  async () => {
    await using bs = await startBootstrapd();
    const relays = [bs.relay];
    const started = await Promise.allSettled([
      startToxPeer({ relays, name: "alice" }),
      startToxPeer({ relays, name: "bob" }),
    ]);
    const peers = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    try {
      for (const r of started) if (r.status === "rejected") throw r.reason;
      const [a, b] = peers;
      assert.match(b.address, /^[0-9a-f]{76}$/);
      const refused = (reason: string) => (e: unknown) => {
        assert.ok(e instanceof ToxPeerCommandError, String(e));
        assert.equal(e.reason, reason);
        return true;
      };

      // Bad requests come back as errors and leave the peer working.
      const last = b.address.slice(-2);
      const badChecksum = b.address.slice(0, -2) + (parseInt(last, 16) ^ 1).toString(16)
        .padStart(2, "0");
      assert.equal(
        await a.command(`request ${badChecksum} 6869`),
        "error request TOX_ERR_FRIEND_ADD_BAD_CHECKSUM",
      );
      await assert.rejects(
        a.sendFriendRequest(badChecksum, "hi"),
        refused("TOX_ERR_FRIEND_ADD_BAD_CHECKSUM"),
      );
      await assert.rejects(
        a.sendFriendRequest(b.address.slice(0, 64), "hi"),
        refused("bad_address"),
      );
      await assert.rejects(
        a.sendFriendRequest(a.address, "hi"),
        refused("TOX_ERR_FRIEND_ADD_OWN_KEY"),
      );
      await assert.rejects(
        a.sendFriendRequest(b.address, ""),
        refused("TOX_ERR_FRIEND_ADD_NO_MESSAGE"),
      );
      // Nobody asked b yet: there is nothing to accept.
      await assert.rejects(b.acceptFriendRequest(a.realPublicKey), refused("no_request"));
      assert.match(await a.command("ping"), /^ok ping /);

      const text = "hi bob, it is alice ✓ — with  spaces";
      const fromB = b.nextSeq;
      const fa = await a.sendFriendRequest(b.address, text);
      assert.equal(fa, 0);
      assert.equal(
        a.events.findLast((e) => e.type === "ok")?.line,
        `ok request 0 ${b.realPublicKey}`,
      );
      const req = await b.waitForFriendRequest(REQUEST_TIMEOUT_MS, fromB);
      assert.equal(req.publicKey, a.realPublicKey);
      assert.equal(req.text, text);
      const asked = b.timeOf(req);

      // Not accepted on its own: b has no friend until it says so.
      assert.match(await b.command("send 0 normal 41"), /FRIEND_NOT_FOUND/);
      const fb = await b.acceptFriendRequest(req.publicKey);
      assert.equal(fb, 0);
      await assert.rejects(b.acceptFriendRequest(req.publicKey), refused("no_request"));

      const [ea, eb] = await Promise.all([
        a.waitForFriendOnline(fa, REQUEST_TIMEOUT_MS),
        b.waitForFriendOnline(fb, REQUEST_TIMEOUT_MS),
      ]);
      assert.equal(ea.type === "friend" && ea.connection, "tcp");
      assert.equal(eb.type === "friend" && eb.connection, "tcp");
      const onA = a.friendOnline.get(fa)!;
      const onB = b.friendOnline.get(fb)!;
      assert.ok(a.selfOnline !== null && b.selfOnline !== null);
      assert.ok(onA.sinceToxNewMs > a.selfOnline.sinceToxNewMs);

      const fromMsg = b.nextSeq;
      const fromReceipt = a.nextSeq;
      const id = await a.sendMessage(fa, "hello bob");
      const msg = await b.waitFor(
        (e): e is Extract<ToxPeerEvent, { type: "message" }> =>
          e.type === "message" && e.friend === fb,
        5_000,
        fromMsg,
      );
      assert.equal(msg.text, "hello bob");
      await a.waitFor(
        (e) => e.type === "receipt" && e.friend === fa && e.messageId === id,
        5_000,
        fromReceipt,
      );

      const ms = (x: number) => `${x.toFixed(0)} ms`;
      console.log(
        `C->C request: self online a ${ms(a.selfOnline.sinceStartMs)} / b ` +
          `${ms(b.selfOnline.sinceStartMs)}; request at b ${ms(req.at - a.startedAt)} after a's ` +
          `start (b's tox_new +${ms(asked.sinceToxNewMs)}); both online ` +
          `${ms(Math.max(onA.at, onB.at) - a.startedAt)} after a's start ` +
          `(tox_new + a ${ms(onA.sinceToxNewMs)} / b ${ms(onB.sinceToxNewMs)}), ` +
          `${ms(Math.max(onA.at, onB.at) - req.at)} after the request arrived`,
      );
    } finally {
      await Promise.all(peers.map((p) => p.stop()));
    }
  },
  { timeout: 100_000 },
);

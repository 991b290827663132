/**
 * Two coordinators (TCP_connections over one relay Worker per relay) through real
 * c-toxcore 0.2.18 relays (Debian's tox-bootstrapd on 127.0.0.1, no bootstrap nodes, LAN
 * discovery off): routing over every shared relay, failover when the sending relay dies or
 * stops reading, reconnection when it comes back, OOB before the peer has routed us.
 */
import assert from "node:assert/strict";
import { toHex } from "../../daemon/core/common/crypto.ts";
import {
  type CoordinatorEndpoint as Endpoint,
  longestGapAfter,
  runPeerFlow,
} from "../../tools/testbed/peer_flow.ts";
import { CoordinatorEndpoint } from "../../tools/testbed/peer_flow.ts";
import type { CoordinatorEvent, CoordinatorStatus } from "../../workers/messages.ts";
import { EventLog } from "../support/events.ts";
import { startRoutingRelay } from "../../tools/testbed/routing_relay.ts";
import { type Bootstrapd, interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";

/** Poll the coordinator's status until `pred` holds (bounded). */
async function statusUntil(
  ep: Endpoint,
  what: string,
  pred: (s: CoordinatorStatus) => boolean,
  timeoutMs = 15_000,
): Promise<CoordinatorStatus> {
  const end = performance.now() + timeoutMs;
  let last: CoordinatorStatus | null = null;
  while (performance.now() < end) {
    last = await ep.handle.status();
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; last status ${JSON.stringify(last)}`);
}

const onlineSlots = (s: CoordinatorStatus) =>
  s.peers[0]?.slots.filter((x) => x.status === "online").length ?? 0;

/** Two coordinators given the same relays (peers not added yet). */
function pair(relays: Bootstrapd[]) {
  const a = new CoordinatorEndpoint({ relays: relays.map((r) => r.relay) });
  const b = new CoordinatorEndpoint({ relays: relays.map((r) => r.relay) });
  const la = new EventLog<CoordinatorEvent>(["data"]);
  const lb = new EventLog<CoordinatorEvent>(["data"]);
  a.subscribe(la.push);
  b.subscribe(lb.push);
  return { a, b, la, lb, close: () => Promise.all([a.close(), b.close()]) };
}

/** As pair, each with the other as its peer, both online on every relay. */
async function onlinePair(relays: Bootstrapd[]) {
  const p = pair(relays);
  try {
    p.a.handle.addPeer(p.b.publicKey);
    p.b.handle.addPeer(p.a.publicKey);
    const n = relays.length;
    await statusUntil(p.a, `A sees B online on all ${n} relays`, (s) => onlineSlots(s) === n);
    await statusUntil(p.b, `B sees A online on all ${n} relays`, (s) => onlineSlots(s) === n);
    return p;
  } catch (e) {
    await p.close();
    throw e;
  }
}

interopTest(
  "coordinator: two coordinators on three shared relays route over all three; killing the sending relay moves traffic at once; restarting it brings it back",
  ["tox-bootstrapd"],
  async (_t, signal) => {
    const relays = await Promise.all([startBootstrapd(), startBootstrapd(), startBootstrapd()]);
    const p = await onlinePair(relays);
    try {
      // A steady stream A -> B, 800 packets/s.
      const stop = new AbortController();
      signal.addEventListener("abort", () => stop.abort());
      const flow = runPeerFlow(p.a, p.b, {
        count: 1_000_000,
        size: 200,
        batch: 4,
        intervalMs: 5,
        timeoutMs: 60_000,
        signal: stop.signal,
      });
      await p.la.waitFor("sender_changed", 5_000);
      const before = await p.a.handle.status();
      const sender = before.peers[0].sender!;
      const victim = relays.find((r) => r.publicKeyHex.toLowerCase() === sender)!;
      assert.ok(victim, "the sender is one of our relays");
      await new Promise((r) => setTimeout(r, 500));

      const killedAt = performance.now();
      await victim.kill();
      const moved = await p.la.waitFor("sender_changed", 10_000, (e) => e.from === sender);
      assert.ok(
        moved.to !== null && moved.to !== sender,
        `moved to another relay: ${moved.reason}`,
      );
      await new Promise((r) => setTimeout(r, 1_000));

      // Back: the relay reconnects (with back-off) and B is online on it again.
      await victim.restart();
      await statusUntil(
        p.a,
        "killed relay back in A's set with B online on it",
        (s) => s.peers[0].slots.some((x) => x.relay === sender && x.status === "online"),
        30_000,
      );
      stop.abort();
      const r = await flow;
      const gap = longestGapAfter(r.arrivals, killedAt - r.startedAt);
      console.log(
        `failover gap ${
          gap.toFixed(0)
        } ms; ${r.received}/${r.sent} arrived, ${r.lost} lost in the ` +
          `dead relay, ${r.outOfOrder} out of order; reason: ${moved.reason}`,
      );
      // The socket's death is seen at once, not after the 30 s ping + 10 s timeout.
      assert.ok(gap < 5_000, `failover gap ${gap} ms`);
      assert.ok(r.received > 0 && r.arrivals.at(-1)! > killedAt - r.startedAt + 1_000);
      const after = await p.a.handle.status();
      const view = after.relays.find((x) => x.publicKey === sender)!;
      assert.equal(view.state, "confirmed");
      assert.ok(view.sessions >= 2, "a second session on the restarted relay");
    } finally {
      await p.close();
      await Promise.all(relays.map((r) => r.stop()));
    }
  },
);

interopTest(
  "coordinator: before the peer has routed us, data goes as OOB through the relay where the peer is registered",
  ["tox-bootstrapd"],
  async () => {
    await using relay = await startBootstrapd();
    const p = pair([relay]);
    try {
      // B is connected to the relay but has not added A: A's route is REGISTERED, not ONLINE.
      await p.lb.waitFor("relay_state", 10_000, (e) => e.state === "confirmed");
      p.a.handle.addPeer(p.b.publicKey);
      await statusUntil(
        p.a,
        "A registered for B",
        (s) => s.peers[0]?.slots[0]?.status === "registered",
      );
      const oob = p.lb.waitFor("oob", 5_000);
      p.a.handle.send([{
        publicKey: p.b.publicKey,
        data: new TextEncoder().encode("before routing"),
      }]);
      const got = await oob;
      assert.equal(toHex(got.from), p.a.publicKeyHex);
      assert.equal(new TextDecoder().decode(got.data), "before routing");
      assert.equal(got.relay, relay.relay.publicKey);
      assert.equal((await p.a.handle.status()).peers[0].oobSent, 1);

      // Once B routes A too, both are ONLINE and the same call sends DATA.
      p.b.handle.addPeer(p.a.publicKey);
      await p.la.waitFor("peer_online", 10_000);
      const data = p.lb.waitFor("data", 5_000);
      p.a.handle.send([{ publicKey: p.b.publicKey, data: new TextEncoder().encode("routed") }]);
      assert.equal(new TextDecoder().decode((await data).data), "routed");
      assert.equal((await p.a.handle.status()).peers[0].oobSent, 1);
    } finally {
      await p.close();
    }
  },
);

interopTest(
  "coordinator: a sending relay that stops reading (SIGSTOP) is left for another relay and the coordinator's memory stays bounded",
  ["tox-bootstrapd"],
  async (_t, signal) => {
    const relays = await Promise.all([startBootstrapd(), startBootstrapd()]);
    const p = await onlinePair(relays);
    try {
      const stop = new AbortController();
      signal.addEventListener("abort", () => stop.abort());
      const flow = runPeerFlow(p.a, p.b, {
        count: 10_000_000,
        size: 1024,
        timeoutMs: 60_000,
        signal: stop.signal,
      });
      await p.la.waitFor("sender_changed", 5_000);
      await new Promise((r) => setTimeout(r, 1_000));
      const busy = await statusUntil(p.a, "A has a sender", (s) => s.peers[0].sender !== null);
      const sender = busy.peers[0].sender!;
      const victim = relays.find((r) => r.publicKeyHex.toLowerCase() === sender)!;
      const heapBefore = busy.heapUsed;

      const pausedAt = performance.now();
      victim.pause();
      let maxInflight = 0, maxHeap = 0, maxQueue = 0;
      const window = 128;
      const sampler = setInterval(async () => {
        const s = await p.a.handle.status().catch(() => null);
        if (!s) return;
        for (const r of s.relays) {
          maxInflight = Math.max(maxInflight, r.inflight);
          maxQueue = Math.max(maxQueue, r.queueBytes);
        }
        maxHeap = Math.max(maxHeap, s.heapUsed);
      }, 100);
      try {
        const moved = await p.la.waitFor("sender_changed", 10_000, (e) => e.from === sender);
        assert.ok(moved.to !== null && moved.to !== sender);
        const movedMs = performance.now() - pausedAt;
        await new Promise((r) => setTimeout(r, 2_000));
        stop.abort();
        const r = await flow;
        const gap = longestGapAfter(r.arrivals, pausedAt - r.startedAt);
        console.log(
          `SIGSTOP: left the relay after ${movedMs.toFixed(0)} ms (${moved.reason}); gap ` +
            `${gap.toFixed(0)} ms; ${r.received} packets arrived; coordinator heap ` +
            `${(heapBefore / 1e6).toFixed(1)} -> max ${(maxHeap / 1e6).toFixed(1)} MB; max ` +
            `in flight per relay ${maxInflight} packets; max relay queue ${maxQueue} bytes`,
        );
        assert.ok(r.arrivals.at(-1)! > pausedAt - r.startedAt + movedMs, "traffic after the move");
        assert.ok(maxInflight <= window, `in flight ${maxInflight} <= window ${window}`);
        assert.ok(maxQueue <= 1024 * 1024, `relay data lane ${maxQueue} <= 1 MiB`);
        assert.ok(maxHeap - heapBefore < 32e6, "coordinator heap did not grow with the backlog");
        // Status says what happened to the relay, and holds it against it.
        const view = (await p.a.handle.status()).relays.find((x) => x.publicKey === sender)!;
        assert.match(view.lastError ?? "", /stalled/);
        assert.ok(view.score < 100);
      } finally {
        clearInterval(sampler);
        victim.resume();
      }
    } finally {
      await p.close();
      await Promise.all(relays.map((r) => r.stop()));
    }
  },
);

/**
 * Coordinators that start on one relay of ours (where a fault will be switched on), so it is
 * the sender; `addGood` then gives both a tox-bootstrapd to fall back on.
 */
async function faultyFirst(
  faulty: { host: string; port: number; publicKey: string },
  good: Bootstrapd,
  feedback: boolean,
) {
  const config = feedback ? { deliveryFeedback: true } : {};
  const a = new CoordinatorEndpoint({ relays: [faulty], config });
  const b = new CoordinatorEndpoint({ relays: [faulty], config });
  const la = new EventLog<CoordinatorEvent>(["data"]);
  const lb = new EventLog<CoordinatorEvent>(["data"]);
  a.subscribe(la.push);
  b.subscribe(lb.push);
  a.handle.addPeer(b.publicKey);
  b.handle.addPeer(a.publicKey);
  await statusUntil(a, "A sees B online", (s) => onlineSlots(s) === 1);
  await statusUntil(b, "B sees A online", (s) => onlineSlots(s) === 1);
  return {
    a,
    b,
    la,
    lb,
    async addGood() {
      a.handle.addRelay(good.relay);
      b.handle.addRelay(good.relay);
      await statusUntil(a, "A sees B online on both relays", (s) => onlineSlots(s) === 2);
      await statusUntil(b, "B sees A online on both relays", (s) => onlineSlots(s) === 2);
    },
    close: () => Promise.all([a.close(), b.close()]),
  };
}

function steady(signal: AbortSignal) {
  return {
    count: 1_000_000,
    size: 200,
    batch: 2,
    intervalMs: 10,
    timeoutMs: 60_000,
    feedback: true,
    signal,
  };
}

interopTest(
  "coordinator: a relay that routes but silently drops every DATA packet is detected and benched, with the reason in status; traffic flows on the other relay",
  ["tox-bootstrapd"],
  async (_t, signal) => {
    await using good = await startBootstrapd();
    await using liar = startRoutingRelay();
    liar.setDropData(true);
    const liarHex = liar.publicKeyHex;
    const p = await faultyFirst(
      { host: liar.host, port: liar.port, publicKey: liarHex },
      good,
      true,
    );
    try {
      const stop = new AbortController();
      signal.addEventListener("abort", () => stop.abort());
      // Both directions, as a net_crypto session is: each side reports what the other got.
      const t0 = performance.now();
      const flows = [
        runPeerFlow(p.a, p.b, steady(stop.signal)),
        runPeerFlow(p.b, p.a, steady(stop.signal)),
      ];
      await p.addGood();
      const benched = await Promise.any([
        p.la.waitFor("relay_state", 20_000, (e) => e.relay === liarHex && e.state === "benched"),
        p.lb.waitFor("relay_state", 20_000, (e) => e.relay === liarHex && e.state === "benched"),
      ]);
      const detectMs = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 1_000));
      stop.abort();
      const [ab, ba] = await Promise.all(flows);
      const firstArrival = Math.min(ab.arrivals[0] ?? Infinity, ba.arrivals[0] ?? Infinity);
      console.log(
        `dropping relay benched ${
          detectMs.toFixed(0)
        } ms after data started (${benched.reason}); ` +
          `first packet delivered (through the good relay) at ${firstArrival.toFixed(0)} ms; ` +
          `A->B ${ab.received}/${ab.sent}, B->A ${ba.received}/${ba.sent}`,
      );
      assert.match(benched.reason ?? "", /dropped data/);
      assert.ok(ab.received > 0 && ba.received > 0, "traffic flows both ways after the switch");
      const views = await Promise.all([p.a.handle.status(), p.b.handle.status()]);
      const liarViews = views.map((s) => s.relays.find((r) => r.publicKey === liarHex)!);
      assert.ok(
        liarViews.some((v) => v.state === "benched" && /dropped data/.test(v.benchedReason ?? "")),
      );
      for (const s of views) assert.equal(s.peers[0].sender, good.publicKeyHex.toLowerCase());
    } finally {
      await p.close();
    }
  },
);

interopTest(
  "coordinator: a sending relay that stops reading its sockets is left for another relay; its data lane stays bounded",
  ["tox-bootstrapd"],
  async (_t, signal) => {
    await using good = await startBootstrapd();
    await using deaf = startRoutingRelay();
    const deafHex = deaf.publicKeyHex;
    const p = await faultyFirst(
      { host: deaf.host, port: deaf.port, publicKey: deafHex },
      good,
      false,
    );
    try {
      const stop = new AbortController();
      signal.addEventListener("abort", () => stop.abort());
      const flow = runPeerFlow(p.a, p.b, {
        count: 10_000_000,
        size: 1024,
        timeoutMs: 60_000,
        signal: stop.signal,
      });
      await p.lb.waitFor("peer_online", 5_000);
      await p.addGood();
      const busy = await statusUntil(
        p.a,
        "A sends through the deaf relay",
        (s) => s.peers[0].sender === deafHex,
      );
      let maxQueue = 0, maxInflight = 0;
      const sampler = setInterval(() => {
        p.a.handle.status().then((s) => {
          const v = s.relays.find((r) => r.publicKey === deafHex);
          if (v) {
            (maxQueue = Math.max(maxQueue, v.queueBytes),
              maxInflight = Math.max(maxInflight, v.inflight));
          }
        }, () => {});
      }, 100);
      try {
        const at = performance.now();
        deaf.setReading(false);
        const moved = await p.la.waitFor("sender_changed", 15_000, (e) => e.from === deafHex);
        const movedMs = performance.now() - at;
        await new Promise((r) => setTimeout(r, 1_500));
        stop.abort();
        const r = await flow;
        const view = (await p.a.handle.status()).relays.find((x) => x.publicKey === deafHex)!;
        console.log(
          `deaf relay left after ${movedMs.toFixed(0)} ms (${moved.reason}); max data lane ` +
            `${maxQueue} B, max in flight ${maxInflight}; score now ${view.score}; ` +
            `${r.received} packets arrived; heap ${(busy.heapUsed / 1e6).toFixed(1)} MB before`,
        );
        assert.equal(moved.to, good.publicKeyHex.toLowerCase());
        assert.ok(r.arrivals.at(-1)! > at - r.startedAt + movedMs, "traffic after the move");
        assert.ok(maxQueue <= 1024 * 1024 && maxInflight <= 128);
        assert.ok(view.score < 100, "the relay's fault is held against it");
        assert.match(view.lastError ?? "", /stalled/);
      } finally {
        clearInterval(sampler);
        deaf.setReading(true);
      }
    } finally {
      await p.close();
    }
  },
);

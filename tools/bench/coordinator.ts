/**
 * Coordinator section of `deno task bench`: two coordinator Workers (each with one relay
 * Worker per relay) through real tox-bootstrapd relays on 127.0.0.1. Measures time to peer
 * online, throughput over 1 vs 3 relays, the failover gap when the sending relay is killed
 * or stops reading, the coordinator's heap while a relay is backed up, and how long a relay
 * that silently drops DATA takes to be benched.
 */
import { type Bootstrapd, startBootstrapd } from "../testbed/harness.ts";
import { startRoutingRelay } from "../testbed/routing_relay.ts";
import { CoordinatorEndpoint, longestGapAfter, runPeerFlow } from "../testbed/peer_flow.ts";
import type { CoordinatorEvent, CoordinatorStatus } from "../../workers/messages.ts";
import { round, type Row } from "./report.ts";

function waitFor(
  ep: CoordinatorEndpoint,
  pred: (e: CoordinatorEvent) => boolean,
  ms: number,
  what: string,
): Promise<CoordinatorEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`bench: no ${what} within ${ms} ms`));
    }, ms);
    const off = ep.subscribe((evs) => {
      const e = evs.find(pred);
      if (e) {
        clearTimeout(timer);
        off();
        resolve(e);
      }
    });
  });
}

async function statusUntil(
  ep: CoordinatorEndpoint,
  pred: (s: CoordinatorStatus) => boolean,
  ms: number,
  what: string,
): Promise<CoordinatorStatus> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const s = await ep.handle.status();
    if (pred(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`bench: ${what} not within ${ms} ms`);
}

/** Two coordinators on `relays`, each the other's peer, online on all of them. */
async function onlinePair(relays: Bootstrapd[]) {
  const t0 = performance.now();
  const a = new CoordinatorEndpoint({ relays: relays.map((r) => r.relay) });
  const b = new CoordinatorEndpoint({ relays: relays.map((r) => r.relay) });
  const online = Promise.all([
    waitFor(a, (e) => e.type === "peer_online", 20_000, "peer online (A)"),
    waitFor(b, (e) => e.type === "peer_online", 20_000, "peer online (B)"),
  ]);
  a.handle.addPeer(b.publicKey);
  b.handle.addPeer(a.publicKey);
  await online;
  const onlineMs = performance.now() - t0;
  const all = (s: CoordinatorStatus) =>
    s.peers[0]?.slots.filter((x) => x.status === "online").length === relays.length;
  await statusUntil(a, all, 20_000, "online on every relay");
  await statusUntil(b, all, 20_000, "online on every relay");
  return { a, b, onlineMs, close: () => Promise.all([a.close(), b.close()]) };
}

async function throughput(relays: Bootstrapd[], count: number): Promise<Row> {
  const p = await onlinePair(relays);
  try {
    const r = await runPeerFlow(p.a, p.b, {
      count,
      size: 1024,
      timeoutMs: 120_000,
      quietMs: 2_000,
    });
    return {
      test: `1 KB packets, ${relays.length} relay${relays.length > 1 ? "s" : ""}`,
      packets: r.sent,
      "MB/s": round((r.received * 1024) / (r.ms / 1000) / 1e6, 2),
      "pkt/s": Math.round(r.received / (r.ms / 1000)),
      lost: r.lost,
      out_of_order: r.outOfOrder,
      "online ms": Math.round(p.onlineMs),
    };
  } finally {
    await p.close();
  }
}

/** Kill (or SIGSTOP) the sending relay under a steady 800 packets/s stream; measure the gap. */
async function failover(
  relays: Bootstrapd[],
  how: "kill" | "stop",
): Promise<{ gapMs: number; moveMs: number; lost: number; heapGrowth: number }> {
  const p = await onlinePair(relays);
  const stop = new AbortController();
  try {
    const flow = runPeerFlow(p.a, p.b, {
      count: 1_000_000,
      size: how === "stop" ? 1024 : 200,
      batch: 4,
      intervalMs: how === "stop" ? undefined : 5,
      timeoutMs: 60_000,
      signal: stop.signal,
    });
    const busy = await statusUntil(p.a, (s) => s.peers[0].sender !== null, 5_000, "a sender");
    await new Promise((r) => setTimeout(r, 500));
    const sender = busy.peers[0].sender!;
    const victim = relays.find((r) => r.publicKeyHex.toLowerCase() === sender)!;
    const moved = waitFor(
      p.a,
      (e) => e.type === "sender_changed" && e.from === sender,
      20_000,
      "sender change",
    );
    let maxHeap = 0;
    const sampler = setInterval(() => {
      p.a.handle.status().then((s) => (maxHeap = Math.max(maxHeap, s.heapUsed)), () => {});
    }, 100);
    const at = performance.now();
    if (how === "kill") await victim.kill();
    else victim.pause();
    try {
      await moved;
      const moveMs = performance.now() - at;
      await new Promise((r) => setTimeout(r, 1_500));
      stop.abort();
      const r = await flow;
      return {
        gapMs: longestGapAfter(r.arrivals, at - r.startedAt),
        moveMs,
        lost: r.lost,
        heapGrowth: maxHeap - busy.heapUsed,
      };
    } finally {
      clearInterval(sampler);
      if (how === "stop") victim.resume();
      await victim.restart();
    }
  } finally {
    stop.abort();
    await p.close();
  }
}

/**
 * Time from the first data to the bench of a relay that routes but drops every DATA packet,
 * with both coordinators on it alone first (so it sends) and a tox-bootstrapd added after.
 */
async function dropDetection(good: Bootstrapd): Promise<{ detectMs: number; deliveredMs: number }> {
  await using liar = startRoutingRelay();
  liar.setDropData(true);
  const liarAddr = { host: liar.host, port: liar.port, publicKey: liar.publicKeyHex };
  const config = { deliveryFeedback: true };
  const a = new CoordinatorEndpoint({ relays: [liarAddr], config });
  const b = new CoordinatorEndpoint({ relays: [liarAddr], config });
  const stop = new AbortController();
  try {
    const online = (s: CoordinatorStatus) => s.peers[0]?.online === true;
    a.handle.addPeer(b.publicKey);
    b.handle.addPeer(a.publicKey);
    await statusUntil(a, online, 20_000, "online on the liar");
    await statusUntil(b, online, 20_000, "online on the liar");
    const benched = Promise.any([a, b].map((ep) =>
      waitFor(
        ep,
        (e) => e.type === "relay_state" && e.relay === liarAddr.publicKey && e.state === "benched",
        30_000,
        "bench of the dropping relay",
      )
    ));
    const opts = {
      count: 1_000_000,
      size: 200,
      batch: 2,
      intervalMs: 10,
      timeoutMs: 60_000,
      feedback: true,
      signal: stop.signal,
    };
    const t0 = performance.now();
    const flows = [runPeerFlow(a, b, opts), runPeerFlow(b, a, opts)];
    for (const ep of [a, b]) ep.handle.addRelay(good.relay);
    await benched;
    const detectMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
    stop.abort();
    const [ab, ba] = await Promise.all(flows);
    const deliveredMs = Math.min(ab.arrivals[0] ?? Infinity, ba.arrivals[0] ?? Infinity);
    return { detectMs, deliveredMs };
  } finally {
    stop.abort();
    await Promise.all([a.close(), b.close()]);
  }
}

export async function benchCoordinator(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const relays = await Promise.all([startBootstrapd(), startBootstrapd(), startBootstrapd()]);
  try {
    const count = quick ? 3_000 : 20_000;
    const rows = [await throughput(relays.slice(0, 1), count), await throughput(relays, count)];
    const kills = [];
    for (let i = 0; i < (quick ? 1 : 3); i++) kills.push(await failover(relays, "kill"));
    const stall = await failover(relays, "stop");
    const drop = await dropDetection(relays[0]);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const summary: Row = {
      failover_gap_kill_ms_median: round(median(kills.map((k) => k.gapMs))),
      failover_gap_kill_ms_max: round(Math.max(...kills.map((k) => k.gapMs))),
      failover_runs: kills.length,
      lost_in_dead_relay_median: median(kills.map((k) => k.lost)),
      failover_sigstop_detect_ms: round(stall.moveMs),
      failover_sigstop_gap_ms: round(stall.gapMs),
      coordinator_heap_growth_sigstop_mb: round(stall.heapGrowth / 1e6, 2),
      dropping_relay_benched_ms: round(drop.detectMs),
      dropping_relay_first_delivery_ms: round(drop.deliveredMs),
    };
    return { rows, summary };
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
  }
}

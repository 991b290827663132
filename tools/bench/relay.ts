/**
 * The relay section: zero-loss throughput between two of our relay workers through a real
 * tox-bootstrapd on 127.0.0.1 (64, 1024, 2000-byte DATA), ping RTT percentiles, RSS per relay
 * worker, the relay's CPU, the noble crypto ceiling, and our own per-packet cost (framing +
 * crypto, no relay).
 */
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { newKeyPair } from "../../daemon/core/common/crypto.ts";
import { UNPACED } from "../../daemon/core/relay_client/pacer.ts";
import { RelayClient } from "../../daemon/core/relay_client/relay_client.ts";
import { FakeRelayPeer, seededRandom } from "../testbed/fake_relay.ts";
import { type Bootstrapd, startBootstrapd } from "../testbed/harness.ts";
import {
  type FlowResult,
  RelayEndpoint,
  routedPair,
  runFlow,
  waitForEvent,
} from "../testbed/relay_flow.ts";
import { rawPacedFlow } from "../testbed/raw_paced_flow.ts";
import { cpuTicks } from "./proc.ts";
import { percentile, round, type Row } from "./report.ts";

/** Seals per second of `size`-byte packets with noble alone, one core. */
function cryptoCeiling(size: number, ms = 1_000): number {
  const key = new Uint8Array(32).fill(1);
  const nonce = new Uint8Array(24);
  const plain = new Uint8Array(size);
  const out = new Uint8Array(size + 32); // as our own path does: no allocation per seal
  const run = (budget: number) => {
    let n = 0;
    const t = performance.now();
    while (performance.now() - t < budget) {
      for (let i = 0; i < 200; i++) {
        nonce[23] = i;
        xsalsa20poly1305(key, nonce).encrypt(plain, out);
      }
      n += 200;
    }
    return n;
  };
  run(200); // warm the JIT up first
  const t0 = performance.now();
  const n = run(ms);
  return n / ((performance.now() - t0) / 1000);
}

/** Our sender and receiver per-packet cost without sockets or relay: framing + crypto. */
function ownCost(size: number, count: number): { sendPps: number; recvPps: number } {
  const fast = {
    pacer: UNPACED,
    dataQueueMax: 1 << 30,
    dataQueueHigh: 1 << 30,
    maxWriteChunk: 1 << 20,
  };
  const random = seededRandom(1);
  const relay = new FakeRelayPeer(seededRandom(2));
  const client = new RelayClient({
    self: newKeyPair(random),
    relayPublicKey: relay.keys.publicKey,
    random,
    now: 0,
    config: fast,
  });
  client.transportConnected(0);
  const hello = client.pollTransmit(0)!;
  client.written(hello.length, 0);
  client.receive(relay.fromClient(hello).response!, 0);
  const peer = newKeyPair(random).publicKey;
  client.route(peer);
  client.receive(relay.frame({ kind: "routing_response", connectionId: 16, publicKey: peer }), 0);
  client.receive(relay.frame({ kind: "connection_notification", connectionId: 16 }), 0);
  for (let c = client.pollTransmit(0); c; c = client.pollTransmit(0)) client.written(c.length, 0);
  const payload = new Uint8Array(size);
  let t0 = performance.now();
  for (let done = 0; done < count; done += 1000) {
    for (let i = 0; i < 1000; i++) client.sendData(peer, payload);
    for (let c = client.pollTransmit(1); c; c = client.pollTransmit(1)) client.written(c.length, 1);
  }
  const sendPps = count / ((performance.now() - t0) / 1000);
  // Receive: the relay's frames, fed in 64 KB reads.
  const frames = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const f = relay.frame({ kind: "data", connectionId: 16, data: payload });
    frames.push(f);
    total += f.length;
  }
  const stream = new Uint8Array(total);
  let o = 0;
  for (const f of frames) {
    stream.set(f, o);
    o += f.length;
  }
  t0 = performance.now();
  for (let i = 0; i < stream.length; i += 65536) {
    client.receive(stream.subarray(i, i + 65536), 2);
    client.takeEvents();
  }
  const recvPps = count / ((performance.now() - t0) / 1000);
  return { sendPps, recvPps };
}

async function rssPerWorker(relay: Bootstrapd, n: number): Promise<number> {
  const addr = { host: relay.host, port: relay.port, publicKey: relay.publicKeyHex };
  const before = Deno.memoryUsage().rss;
  const eps = Array.from({ length: n }, () => new RelayEndpoint({ relay: addr }));
  await Promise.all(eps.map((e) => waitForEvent(e, "pong")));
  await new Promise((r) => setTimeout(r, 500));
  const after = Deno.memoryUsage().rss;
  await Promise.all(eps.map((e) => e.close()));
  return (after - before) / n;
}

async function pingRtts(relay: Bootstrapd, samples: number): Promise<number[]> {
  const addr = { host: relay.host, port: relay.port, publicKey: relay.publicKeyHex };
  const ep = new RelayEndpoint({ relay: addr, config: { pingIntervalMs: 20 } });
  const rtts: number[] = [];
  await new Promise<void>((resolve) => {
    ep.subscribe((evs) => {
      for (const e of evs) if (e.type === "pong") rtts.push(e.rttMs);
      if (rtts.length >= samples) resolve();
    });
  });
  await ep.close();
  return rtts;
}

/** The largest receive buffer (`ss` rb) of any socket of the relay's port, sampled meanwhile. */
function sampleRelayBuffers(port: number): { stop: () => Promise<number | null> } {
  let max: number | null = null;
  let inflight: Promise<void> | null = null;
  const sample = async () => {
    try {
      const out = await new Deno.Command("ss", { args: ["-tmn", "sport", "=", `:${port}`] })
        .output();
      for (const m of new TextDecoder().decode(out.stdout).matchAll(/\brb(\d+)/g)) {
        max = Math.max(max ?? 0, Number(m[1]));
      }
    } catch {
      /* no ss here: the figure is left out */
    }
  };
  const timer = setInterval(() => {
    inflight ??= sample().finally(() => (inflight = null));
  }, 250);
  return {
    // Waits for a sample still running, so no `ss` outlives the run it measured.
    stop: async () => {
      clearInterval(timer);
      await inflight;
      return max;
    },
  };
}

/**
 * The data lane as the daemon runs it (default configuration): `runs` × `count` 1 KB DATA
 * through a fresh tox-bootstrapd each, and the raw paced anchor on the same kind of relay.
 */
async function dataLane(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const runs = quick ? 3 : 20;
  const count = quick ? 10_000 : 50_000;
  const rates: number[] = [];
  let stalls = 0;
  let lost = 0;
  let maxBurst = 0;
  let maxRb: number | null = null;
  for (let i = 0; i < runs; i++) {
    const relay = await startBootstrapd();
    try {
      const [a, b] = await routedPair(relay.relay);
      const buffers = sampleRelayBuffers(relay.port);
      const r = await runFlow(a, b, { count, size: 1024, timeoutMs: 120_000, quietMs: 2_000 });
      const stats = new Promise<number>((resolve) => {
        const off = a.subscribe((evs) => {
          for (const e of evs) {
            if (e.type === "stats") {
              off();
              resolve(e.stats.maxBytesPer30ms);
            }
          }
        });
      });
      a.handle.requestStats();
      maxBurst = Math.max(maxBurst, await stats);
      const rb = await buffers.stop();
      if (rb !== null) maxRb = Math.max(maxRb ?? 0, rb);
      await Promise.all([a.close(), b.close()]);
      rates.push((r.received * 1024) / (r.ms / 1000) / 1e6);
      stalls += r.stalls;
      lost += r.lost;
    } finally {
      await relay.stop();
    }
  }
  const anchorRuns = quick ? 2 : 6;
  const anchor: number[] = [];
  let anchorStalls = 0;
  for (let i = 0; i < anchorRuns; i++) {
    const relay = await startBootstrapd();
    try {
      const r = await rawPacedFlow(relay, {
        count,
        size: 1024,
        targetRate: 18_800_000,
        rampMs: 2_000,
      });
      if (r.stalled) anchorStalls++;
      else anchor.push(r.bytesPerSec / 1e6);
    } finally {
      await relay.stop();
    }
  }
  const med = (xs: number[]) => (xs.length === 0 ? NaN : percentile(xs, 50));
  // Rows in the section's own columns; spread and bursts are in the summary.
  const row = (test: string, mbs: number, n: number, lostN: number | null, st: number): Row => ({
    test,
    packets: n,
    "MB/s": round(mbs, 2),
    "pkt/s": Math.round((mbs * 1e6) / 1024),
    lost: lostN,
    out_of_order: null,
    stalls: st,
    "relay CPU %": null,
  });
  const rows: Row[] = [
    row(`data lane: median of ${runs} fresh relays`, med(rates), runs * count, lost, stalls),
    row(
      `raw paced anchor: median of ${anchorRuns}, ramp to 18.8 MB/s`,
      med(anchor),
      anchorRuns * count,
      null,
      anchorStalls,
    ),
  ];
  return {
    rows,
    summary: {
      data_lane_runs: runs,
      data_lane_stalls: stalls,
      data_lane_lost: lost,
      data_lane_mb_s_median: round(med(rates), 2),
      data_lane_mb_s_min: round(Math.min(...rates), 2),
      data_lane_mb_s_max: round(Math.max(...rates), 2),
      data_lane_max_bytes_per_30ms: maxBurst,
      data_lane_relay_rb_max: maxRb,
      raw_anchor_mb_s_median: round(med(anchor), 2),
      raw_anchor_stalled_runs: `${anchorStalls}/${anchorRuns}`,
      data_lane_vs_raw_anchor: round(med(rates) / med(anchor), 2),
    },
  };
}

export async function benchRelay(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const rows: Row[] = [];
  let summary: Row;
  const relay = await startBootstrapd();
  try {
    const sizes: [number, number][] = quick
      ? [[64, 5_000], [1024, 3_000], [2000, 1_500]]
      : [[64, 40_000], [1024, 20_000], [2000, 10_000]];
    for (const [size, count] of sizes) {
      const [a, b] = await routedPair(relay.relay);
      const cpu0 = await cpuTicks(relay.pid);
      const t0 = performance.now();
      const r: FlowResult = await runFlow(a, b, {
        count,
        size,
        timeoutMs: 120_000,
        quietMs: 2_000,
      });
      const secs = (performance.now() - t0) / 1000;
      const cpu1 = await cpuTicks(relay.pid);
      await Promise.all([a.close(), b.close()]);
      rows.push({
        test: `DATA ${size} B via tox-bootstrapd`,
        packets: r.sent,
        "MB/s": round((r.received * size) / (r.ms / 1000) / 1e6, 2),
        "pkt/s": Math.round(r.received / (r.ms / 1000)),
        lost: r.lost,
        out_of_order: r.outOfOrder,
        stalls: r.stalls,
        "relay CPU %": round(((cpu1 - cpu0) / 100 / secs) * 100),
      });
    }
    const rtts = await pingRtts(relay, quick ? 30 : 150);
    const rss = await rssPerWorker(relay, quick ? 3 : 8);
    const ceiling = cryptoCeiling(1024, quick ? 300 : 1_000);
    const own = ownCost(1024, quick ? 5_000 : 50_000);
    summary = {
      ping_rtt_p50_ms: round(percentile(rtts, 50), 2),
      ping_rtt_p99_ms: round(percentile(rtts, 99), 2),
      ping_samples: rtts.length,
      rss_per_relay_worker_mb: round(rss / 1e6, 2),
      crypto_ceiling_1k_seals_per_s: Math.round(ceiling),
      own_send_1k_pkt_per_s: Math.round(own.sendPps),
      own_recv_1k_pkt_per_s: Math.round(own.recvPps),
      own_send_vs_ceiling: round(own.sendPps / ceiling, 2),
      own_recv_vs_ceiling: round(own.recvPps / ceiling, 2),
    };
  } finally {
    await relay.stop();
  }
  // The data lane brings its own fresh relays.
  const lane = await dataLane(quick);
  return { rows: [...rows, ...lane.rows], summary: { ...summary, ...lane.summary } };
}

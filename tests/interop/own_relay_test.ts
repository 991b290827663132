/**
 * Our own TCP relay, run as the program users run (`deno task relay`, a subprocess: see
 * relay_process.ts), between real c-toxcore 0.2.18 peers (tools/testbed/tox_peer.c, TCP only)
 * and our clients, on 127.0.0.1:
 * - a C peer whose only relay is ours and our Messenger endpoint: friends, online both ways,
 *   messages with receipts, 2,000 custom lossless packets each way, complete and in order;
 * - two of our endpoints, the same;
 * - the unpaced 1 KB burst that wedges tox-bootstrapd (spec relay_load.md §1) goes through
 *   ours whole, in order, with no stall and no reconnect (the same burst against
 *   tox-bootstrapd is only measured and logged: it wedges in most runs, not all).
 *
 * Not here: two C peers with only our relay. c-toxcore learns a friend's DHT key through the
 * onion, and our relay is no onion hop (it drops ONION_REQUEST), so they never find each
 * other (tried: 40 s, neither saw the other online; the relay dropped 456 onion requests).
 */
import assert from "node:assert/strict";
import { UNPACED } from "../../daemon/core/relay_client/pacer.ts";
import type { RelayClientConfig } from "../../daemon/core/relay_client/relay_client.ts";
import { probeRelay } from "../../tools/probe.ts";
import { type FlowResult, RelayEndpoint, runFlow } from "../../tools/testbed/relay_flow.ts";
import { EventLog } from "../support/events.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import {
  exchangeOurs,
  exchangeWithCPeer,
  type HasRelay,
  ourFriends,
  withCPeer,
} from "./friend_pairs.ts";
import { type OwnRelay, startOwnRelay } from "../../tools/testbed/relay_process.ts";

/** Stop the relay and check it went as a program should: SIGTERM → `stopped` line, exit 0. */
async function stopCleanly(own: OwnRelay) {
  await own.stop();
  assert.equal(own.exitStatus?.code, 0, `exit ${JSON.stringify(own.exitStatus)}\n${own.log()}`);
  assert.ok(own.stopped, `no "stopped" line:\n${own.log()}`);
  assert.equal(own.stopped.signal, "SIGTERM");
  return own.stopped.stats;
}

interopTest(
  "own relay process: listening line, probe answers, --keys keeps the key",
  [],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "own-relay-" });
    try {
      const keysFile = `${dir}/relay.json`;
      let first: string;
      {
        await using own = await startOwnRelay({ keysFile, maxConns: 16 });
        assert.equal(own.host, "127.0.0.1");
        assert.ok(own.port > 0);
        assert.match(own.publicKeyHex, /^[0-9a-f]{64}$/);
        assert.deepEqual(own.relay, {
          host: own.host,
          port: own.port,
          publicKey: own.publicKeyHex,
        });
        const p = await probeRelay(own.relay, { timeoutMs: 5_000 });
        assert.equal(p.ok, true, p.error ?? "");
        assert.ok(p.rtt_ms !== null && p.rtt_ms < 1_000, `rtt ${p.rtt_ms} ms`);
        first = own.publicKeyHex;
        const stats = await stopCleanly(own);
        assert.equal(stats.connections, 0);
      }
      assert.equal((await Deno.stat(keysFile)).mode! & 0o777, 0o600);
      await using again = await startOwnRelay({ keysFile });
      assert.equal(again.publicKeyHex, first, "same key file, same relay key");
      assert.equal((await probeRelay(again.relay, { timeoutMs: 5_000 })).ok, true);
      await stopCleanly(again);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// A supervisor may stop the relay as soon as it reads the listening line: the signal
// listeners are in place before that line is printed (this failed 39 of 40 times before).
interopTest(
  "own relay process: SIGTERM right after the listening line still stops cleanly",
  [],
  async () => {
    for (let i = 0; i < 10; i++) {
      const own = await startOwnRelay();
      await stopCleanly(own);
    }
  },
);

interopTest(
  "own relay: a C peer whose only relay is ours and our Messenger — online, messages, 2000 lossless each way",
  [
    "gcc",
  ],
  async (_t, signal) => {
    const own = await startOwnRelay();
    try {
      const pair = await withCPeer([own], signal);
      try {
        const f = await exchangeWithCPeer(pair, signal, 2000);
        console.log(
          `own relay, ours<->C: online both ways after ${pair.onlineMs.toFixed(0)} ms; ` +
            `ours->C ${
              f.oursToThemPps.toFixed(0)
            } pkt/s; C accepted its 2000 in ${f.themToUsMs} ms`,
        );
      } finally {
        await pair.close();
      }
      const stats = await stopCleanly(own);
      console.log(`own relay counters: ${JSON.stringify(stats)}`);
      assert.ok(stats.dataForwarded >= 4000, `forwarded ${stats.dataForwarded}`);
    } finally {
      await own.stop();
    }
  },
  { timeout: 90_000 },
);

interopTest(
  "own relay: ours<->ours — hinted friend online, messages with receipts, 2000 lossless each way",
  [],
  async (_t, signal) => {
    const own = await startOwnRelay();
    try {
      const pair = await ourFriends([own], signal);
      try {
        const f = await exchangeOurs(pair, signal, 2000);
        console.log(
          `own relay, ours<->ours: online after ${pair.onlineMs.toFixed(0)} ms; a->b ${
            f.abPps.toFixed(0)
          } pkt/s, b->a ${f.baPps.toFixed(0)} pkt/s`,
        );
      } finally {
        await pair.close();
      }
      const stats = await stopCleanly(own);
      console.log(`own relay counters: ${JSON.stringify(stats)}`);
      assert.ok(stats.dataForwarded >= 4000, `forwarded ${stats.dataForwarded}`);
    } finally {
      await own.stop();
    }
  },
  { timeout: 60_000 },
);

// ---------------------------------------------------------------------------------------------
// The unpaced burst (relay_load.md §1)

/** The whole burst fits the sender's data lane at once: it goes to the socket as fast as the
 * socket takes it. Stall detection stays on (2 s without progress or PONG = stalled). */
const BURST_CONFIG: Partial<RelayClientConfig> = {
  pacer: UNPACED,
  dataQueueMax: 64 << 20,
  dataQueueHigh: 32 << 20,
  dataQueueLow: 16 << 20,
};

interface BurstFigures {
  readonly flow: FlowResult;
  /** From the start of the burst to the first arrival, and the longest silence after it. */
  readonly firstMs: number;
  readonly longestGapMs: number;
  /** Arrivals whose number was not above the one before (a reorder or a duplicate). */
  readonly backwards: number;
  /** The sender's data lane at its fullest (bytes): what was handed over unpaced. */
  readonly highWater: number;
  readonly paceRate: number;
  /** The sender's last events (stalls and reconnects show here). */
  readonly senderEvents: string;
}

/** Two raw relay clients routed through `relay`; a sends `count` × `size` B DATA unpaced. */
async function unpacedBurst(
  relay: HasRelay,
  count: number,
  size: number,
  signal: AbortSignal,
): Promise<BurstFigures> {
  const a = new RelayEndpoint({ relay: relay.relay, config: BURST_CONFIG });
  const b = new RelayEndpoint({ relay: relay.relay });
  const la = new EventLog(["sent", "data"]);
  const lb = new EventLog(["data"]);
  a.subscribe(la.push);
  b.subscribe(lb.push);
  try {
    await Promise.all([la.waitFor("confirmed"), lb.waitFor("confirmed")]);
    a.handle.route(b.publicKey);
    b.handle.route(a.publicKey);
    await Promise.all([la.waitFor("online"), lb.waitFor("online")]);
    const t0 = performance.now();
    let first: number | null = null;
    let last = 0;
    let longestGapMs = 0;
    let lastSeq = -1;
    let backwards = 0;
    const off = b.subscribe((events) => {
      for (const e of events) {
        if (e.type !== "data") continue;
        const now = performance.now();
        if (first === null) first = now;
        else longestGapMs = Math.max(longestGapMs, now - last);
        last = now;
        const seq = new DataView(e.data.buffer, e.data.byteOffset).getUint32(0);
        if (seq <= lastSeq) backwards++;
        lastSeq = seq;
      }
    });
    const flow = await runFlow(a, b, {
      count,
      size,
      timeoutMs: 30_000,
      windowBytes: 64 << 20, // everything posted at once
      signal,
    });
    off();
    const since = la.events.length;
    a.handle.requestStats();
    const st = (await la.waitFor("stats", 5_000, () => true, since)).stats;
    return {
      flow,
      firstMs: first === null ? NaN : first - t0,
      longestGapMs,
      backwards,
      highWater: st.dataQueuedHighWater,
      paceRate: st.paceRate,
      senderEvents: la.summary(),
    };
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

function burstLine(what: string, count: number, f: BurstFigures): string {
  const r = f.flow;
  return `${what}: ${r.received}/${count} × 1 KB arrived (lost ${r.lost}, out of order ${r.outOfOrder}) ` +
    `in ${r.ms.toFixed(0)} ms, first after ${f.firstMs.toFixed(0)} ms, longest silence ` +
    `${f.longestGapMs.toFixed(0)} ms, stalls ${r.stalls}, reconnects ${r.reconnects}, ` +
    `sender lane high water (this session) ${(f.highWater / 1e6).toFixed(2)} MB`;
}

interopTest(
  "own relay: an unpaced burst of 10,000 × 1 KB DATA goes through in order, no stall, no reconnect",
  [],
  async (_t, signal) => {
    const own = await startOwnRelay();
    try {
      const count = 10_000;
      const f = await unpacedBurst(own, count, 1024, signal);
      const stats = await stopCleanly(own);
      const dropped = stats.droppedQueueFull +
        ((stats as { droppedTotalFull?: number }).droppedTotalFull ?? 0);
      console.log(`${burstLine("own relay, unpaced burst", count, f)}; relay dropped ${dropped}`);
      console.log(`own relay counters: ${JSON.stringify(stats)}`);
      const r = f.flow;
      assert.equal(f.paceRate, UNPACED.maxRate, "the sender was not paced");
      // The deadlock of relay_load.md §1 cannot happen: no stall, no reconnect, no silence.
      assert.equal(r.timedOut, false, f.senderEvents);
      assert.equal(r.stalls, 0, `a stall: ${f.senderEvents}`);
      assert.equal(r.reconnects, 0, f.senderEvents);
      assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
      assert.ok(f.longestGapMs < 2_000, `silent for ${f.longestGapMs} ms`);
      // Everything was sent and everything arrived, in order: the receiver's outbox (1 MiB)
      // holds what its socket cannot take yet. It peaked at ~265 KB here; at the old 256 KiB
      // bound 1-4 packets were dropped in 7 of 17 runs.
      assert.equal(r.sent, count);
      assert.equal(f.backwards, 0, "arrivals in order");
      assert.equal(dropped, 0, "the relay dropped nothing");
      assert.equal(stats.dataForwarded, count, "the relay forwarded every packet");
      assert.equal(r.received, count, "and every one arrived");
    } finally {
      await own.stop();
    }
  },
  { timeout: 60_000 },
);

interopTest("tox-bootstrapd under the same unpaced burst (measured and logged, not asserted)", [
  "tox-bootstrapd",
], async (_t, signal) => {
  // It wedges in most runs (in 10 of 11 trials here: 155..5677 of 10,000 arrived, the stall
  // detector fired after 2 s, one reconnect), but not in all: the start is a race (§1).
  await using relay = await startBootstrapd();
  const count = 10_000;
  const f = await unpacedBurst(relay, count, 1024, signal);
  console.log(burstLine("tox-bootstrapd, unpaced burst", count, f));
  assert.equal(f.flow.timedOut, false, "bounded either way");
}, { timeout: 60_000 });

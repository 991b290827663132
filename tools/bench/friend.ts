/**
 * Friend section of `deno task bench`: custom lossless throughput between friends through
 * one tox-bootstrapd 0.2.18 on 127.0.0.1, for ours<->ours, ours<->C and C<->C (the C peer is
 * tools/testbed/tox_peer.c on Debian's libtoxcore), plus the time from start to both sides
 * seeing the friend online. Ours are dialled with the hint (DHT key + relay); C<->C has no
 * hint API and finds its friend through the onion.
 */
import { fromHex } from "../../daemon/core/common/crypto.ts";
import { type Bootstrapd, startBootstrapd } from "../testbed/harness.ts";
import { measureCToC, startToxPeer, type ToxPeer, watchReceived } from "../testbed/tox_peer.ts";
import { FriendEndpoint, sendStream, StreamCounter } from "../testbed/friend_flow.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import { daemonBlast } from "../testbed/daemon_blast.ts";
import { round, type Row } from "./report.ts";
import { cpuPerPacket, threadTicks } from "./threads.ts";

/** CPU per packet per thread of the last ours->ours run at each size (the summary shows it). */
const cpuBySize = new Map<number, Record<string, number>>();

const onlineEvent = (friend: string) => (e: CoordinatorEvent) =>
  e.type === "friend_online" && e.friend === friend;

async function oursToOurs(relay: Bootstrapd, count: number, size: number): Promise<Row> {
  const started = performance.now();
  const a = new FriendEndpoint({ name: "a", relays: [relay.relay] });
  const b = new FriendEndpoint({ name: "b", relays: [relay.relay] });
  try {
    const online = Promise.all([
      a.waitFor("a online", onlineEvent(b.realHex), 20_000),
      b.waitFor("b online", onlineEvent(a.realHex), 20_000),
    ]);
    b.handle.addFriend(a.real.publicKey);
    a.handle.addFriend(b.real.publicKey, {
      dhtPublicKey: b.dht.publicKey,
      relays: [relay.relay],
    });
    await online;
    const onlineMs = performance.now() - started;
    const atB = new StreamCounter(b, a.realHex);
    const ticks0 = await threadTicks();
    const r = await sendStream(a, b.real.publicKey, {
      count,
      size,
      timeoutMs: 60_000,
      done: () => atB.received >= count,
    });
    cpuBySize.set(size, cpuPerPacket(ticks0, await threadTicks(), atB.received));
    atB.stop();
    const st = await a.status();
    const c = st.friends[0].crypto;
    const stalls = st.relays.reduce((n, x) => n + x.sessions - 1, 0);
    return {
      pair: "ours->ours",
      size,
      packets: atB.received,
      in_order: atB.inOrder,
      pkt_s: round(atB.received / r.ms * 1000, 0),
      mb_s: round(atB.received * size / r.ms / 1000, 2),
      online_ms: round(onlineMs, 0),
      resent: c?.resent ?? null,
      relay_reconnects: stalls,
    };
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

async function oursToC(relay: Bootstrapd, count: number, size: number): Promise<Row[]> {
  const started = performance.now();
  const c: ToxPeer = await startToxPeer({ relays: [relay.relay], name: "c" });
  const us = new FriendEndpoint({ name: "deno", relays: [relay.relay] });
  try {
    const cKey = fromHex(c.realPublicKey, 32);
    const weSee = us.waitFor("we see C", onlineEvent(c.realPublicKey), 20_000);
    const friend = await c.addFriend(us.realHex);
    const cSees = c.waitForFriendOnline(friend, 20_000);
    us.handle.addFriend(cKey, {
      dhtPublicKey: fromHex(c.dhtPublicKey, 32),
      relays: [relay.relay],
    });
    await Promise.all([weSee, cSees]);
    const onlineMs = performance.now() - started;
    // ours -> C
    const watch = watchReceived(c, friend);
    const r = await sendStream(us, cKey, {
      count,
      size,
      timeoutMs: 60_000,
      done: () => watch.received >= count,
    });
    await watch.stop();
    const s = await c.stats(friend);
    // C -> ours
    const atUs = new StreamCounter(us, c.realPublicKey);
    const t0 = performance.now();
    await c.burst(friend, count, size, 160, 60_000);
    const end = performance.now() + 30_000;
    while (atUs.received < count && performance.now() < end) {
      await new Promise((r) => setTimeout(r, 10));
    }
    atUs.stop();
    const back = (atUs.lastAt ?? performance.now()) - t0;
    return [{
      pair: "ours->C",
      size,
      packets: s.received,
      in_order: s.inOrder,
      pkt_s: round(s.received / r.ms * 1000, 0),
      mb_s: round(s.received * size / r.ms / 1000, 2),
      online_ms: round(onlineMs, 0),
      resent: (await us.status()).friends[0].crypto?.resent ?? null,
      relay_reconnects: null,
    }, {
      pair: "C->ours",
      size,
      packets: atUs.received,
      in_order: atUs.inOrder,
      pkt_s: round(atUs.received / back * 1000, 0),
      mb_s: round(atUs.received * size / back / 1000, 2),
      online_ms: round(onlineMs, 0),
      resent: null,
      relay_reconnects: null,
    }];
  } finally {
    await Promise.all([us.close(), c.stop()]);
  }
}

async function cToC(relay: Bootstrapd, count: number, size: number): Promise<Row> {
  const r = await measureCToC({ bootstrapd: relay, count, size, timeoutMs: 90_000 });
  return {
    pair: "C->C",
    size,
    packets: r.received,
    in_order: r.inOrder,
    pkt_s: round(r.packetsPerSecond, 0),
    mb_s: round(r.received * size / r.ms / 1000, 2),
    online_ms: round(r.onlineMs, 0),
    resent: null,
    relay_reconnects: null,
  };
}

export async function benchFriend(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const count = quick ? 2_000 : 10_000;
  const rows: Row[] = [];
  for (const size of quick ? [100] : [100, 1000]) {
    // A fresh relay per pair: one pair's leftovers never slow the next.
    for (const run of [oursToOurs, oursToC, cToC] as const) {
      const relay = await startBootstrapd();
      try {
        const out = await run(relay, count, size);
        rows.push(...(Array.isArray(out) ? out : [out]));
      } finally {
        await relay.stop();
      }
    }
  }
  // What a program gets through the daemons' control sockets (pipelined send.lossless).
  {
    const relay = await startBootstrapd();
    try {
      const n = quick ? 4_000 : 20_000;
      const r = await daemonBlast(relay, n, 1000);
      rows.push({
        pair: "daemon->daemon (control socket)",
        size: 1000,
        packets: r.received,
        in_order: r.inOrder ? r.received : null,
        pkt_s: round((r.received / r.ms) * 1000, 0),
        mb_s: round((r.received * 1000) / r.ms / 1000, 2),
        online_ms: null,
        resent: r.refused,
        relay_reconnects: null,
      });
    } finally {
      await relay.stop();
    }
  }
  const at = (pair: string, size: number) =>
    rows.find((r) => r.pair === pair && r.size === size)?.pkt_s as number | undefined;
  const summary: Row = {};
  for (const size of quick ? [100] : [100, 1000]) {
    const cc = at("C->C", size);
    const oo = at("ours->ours", size);
    const oc = at("ours->C", size);
    if (cc && oo) summary[`ours_vs_c_to_c_${size}B`] = round(oo / cc, 1);
    if (cc && oc) summary[`ours_to_c_vs_c_to_c_${size}B`] = round(oc / cc, 2);
  }
  // Both endpoints (each a coordinator Worker and a relay Worker) run in this process: the
  // Worker threads are the four busiest worker-N, busiest first.
  for (const [size, cpu] of cpuBySize) {
    for (const [k, v] of Object.entries(cpu)) summary[`ours_${size}B_cpu_${k}`] = v;
  }
  const blast = at("daemon->daemon (control socket)", 1000);
  const cc1000 = at("C->C", quick ? 100 : 1000);
  if (blast && cc1000) {
    summary[`control_socket_vs_c_to_c_${quick ? 100 : 1000}B`] = round(blast / cc1000, 1);
  }
  return { rows, summary };
}

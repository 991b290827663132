/**
 * `deno task bench` relay server section: the same pair of our relay clients through our
 * relay (`deno task relay`, a process) and through tox-bootstrapd 0.2.18, in the same run:
 * 1 KB DATA paced (our client's default pacer, tuned for tox-bootstrapd) and unpaced (the
 * burst that deadlocks tox-bootstrapd, relay_load.md §1), and unpaced beside a client that never
 * reads while another floods it (one stuck receiver must cost the others nothing). Per row:
 * throughput, loss, stalls,
 * and the relay's CPU per forwarded packet (from /proc, utime + stime). Then the memory one
 * more client connection costs our relay (its RSS with 1,000 confirmed clients on).
 */
import { UNPACED } from "../../daemon/core/relay_client/pacer.ts";
import { startBootstrapd } from "../testbed/harness.ts";
import { startOwnRelay } from "../testbed/relay_process.ts";
import { RawRelayClient } from "../testbed/raw_relay_client.ts";
import { routedPair, runFlow } from "../testbed/relay_flow.ts";
import { round, type Row } from "./report.ts";

async function procStat(pid: number): Promise<{ cpu: number; rss: number }> {
  // /proc needs --allow-all in Deno; cat keeps the bench's permissions narrow.
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
  const f = new TextDecoder().decode(out.stdout).split(") ")[1].split(" ");
  // utime + stime (1/100 s); rss in pages (4 KiB here).
  return { cpu: (Number(f[11]) + Number(f[12])) / 100, rss: Number(f[21]) * 4096 };
}

/** `n` raw clients, each confirmed by a PING answered. */
async function rawClients(relay: { port: number; publicKey: Uint8Array }, n: number) {
  const out: RawRelayClient[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, async () => {
        const c = await RawRelayClient.connect(relay.port, relay.publicKey);
        await c.ping();
        return c;
      }),
    );
    out.push(...batch);
  }
  return out;
}

/**
 * A client that never reads, flooded with 1 KB DATA by another raw client while the pair runs
 * its unpaced flow: what one stuck receiver costs everyone else.
 */
async function withStalledReader(
  relay: { port: number; publicKey: Uint8Array },
  during: () => Promise<void>,
): Promise<number> {
  const [flooder, stuck] = await rawClients(relay, 2);
  let sent = 0;
  try {
    stuck.pause();
    await flooder.send({ kind: "routing_request", publicKey: stuck.keys.publicKey });
    await stuck.send({ kind: "routing_request", publicKey: flooder.keys.publicKey });
    await flooder.until(
      () => flooder.inbox.some((p) => p.kind === "connection_notification"),
      5_000,
      "the stuck client online",
    );
    const id = flooder.inbox.find((p) => p.kind === "connection_notification")!;
    const conn = (id as { connectionId: number }).connectionId;
    let flooding = true;
    const flood = (async () => {
      const data = new Uint8Array(1024);
      while (flooding) {
        await flooder.send({ kind: "data", connectionId: conn, data });
        sent++;
      }
    })();
    try {
      await during();
    } finally {
      flooding = false;
      await flood.catch(() => {});
    }
  } finally {
    await Promise.all([flooder.close(), stuck.close()]);
  }
  return sent;
}

export async function benchRelayServer(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const rows: Row[] = [];
  const summary: Row = {};
  const count = quick ? 3_000 : 20_000;
  const size = 1024;
  for (const mode of ["paced", "unpaced"] as const) {
    for (const which of ["ours", "tox-bootstrapd"] as const) {
      const relay = which === "ours" ? await startOwnRelay() : await startBootstrapd();
      try {
        const address = relay.relay;
        const [a, b] = await routedPair(
          address,
          mode === "unpaced" ? { pacer: UNPACED } : undefined,
        );
        const s0 = await procStat(relay.pid);
        const r = await runFlow(a, b, { count, size, timeoutMs: 60_000, quietMs: 4_000 });
        const s1 = await procStat(relay.pid);
        await Promise.all([a.close(), b.close()]);
        const cpu = s1.cpu - s0.cpu;
        rows.push({
          relay: which,
          sender: mode,
          packets: r.sent,
          received: r.received,
          lost: r.lost,
          stalls: r.stalls,
          "MB/s": round((r.received * size) / (r.ms / 1000) / 1e6, 2),
          "pkt/s": Math.round(r.received / (r.ms / 1000)),
          "relay CPU µs/pkt": r.received > 0 ? round((cpu / r.received) * 1e6, 1) : null,
          "timed out": r.timedOut ? "yes" : "no",
        });
      } finally {
        await relay.stop();
      }
    }
  }
  // One stuck receiver, flooded, beside the unpaced pair: the pair must not notice.
  {
    const relay = await startOwnRelay();
    try {
      let flooded = 0;
      const row: Row = { relay: "ours", sender: "unpaced + a stuck reader flooded" };
      flooded = await withStalledReader(relay, async () => {
        const [a, b] = await routedPair(relay.relay, { pacer: UNPACED });
        const s0 = await procStat(relay.pid);
        const r = await runFlow(a, b, { count, size, timeoutMs: 60_000, quietMs: 4_000 });
        const s1 = await procStat(relay.pid);
        await Promise.all([a.close(), b.close()]);
        Object.assign(row, {
          packets: r.sent,
          received: r.received,
          lost: r.lost,
          stalls: r.stalls,
          "MB/s": round((r.received * size) / (r.ms / 1000) / 1e6, 2),
          "pkt/s": Math.round(r.received / (r.ms / 1000)),
          "relay CPU µs/pkt": r.received > 0
            ? round(((s1.cpu - s0.cpu) / r.received) * 1e6, 1)
            : null,
          "timed out": r.timedOut ? "yes" : "no",
        });
      });
      await relay.stop();
      const dropped = relay.stopped?.stats.droppedQueueFull ?? null;
      rows.push(row);
      summary["ours: stuck reader flooded with (packets), of which the relay dropped"] =
        `${flooded}, ${dropped}`;
    } finally {
      await relay.stop();
    }
  }
  // Memory: our relay's RSS with 1,000 confirmed clients, less its RSS idle.
  const n = quick ? 200 : 1_000;
  const own = await startOwnRelay();
  let conns: RawRelayClient[] = [];
  try {
    await new Promise((r) => setTimeout(r, 300));
    const idle = (await procStat(own.pid)).rss;
    conns = await rawClients(own, n);
    await new Promise((r) => setTimeout(r, 500));
    const loaded = (await procStat(own.pid)).rss;
    summary[`ours: RSS idle (MB)`] = round(idle / 1e6, 1);
    summary[`ours: RSS with ${n} clients (MB)`] = round(loaded / 1e6, 1);
    summary["ours: KB per client connection"] = round((loaded - idle) / n / 1024, 1);
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await own.stop();
  }
  for (const row of rows) {
    summary[`${row.relay} ${row.sender}: received/sent, stalls`] =
      `${row.received}/${row.packets}, ${row.stalls}`;
  }
  return { rows, summary };
}

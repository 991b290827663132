/**
 * The memory section: a daemon's resident memory (VmRSS of the deno process, the `deno task`
 * wrapper left out) idle with 1 and 3 relays and no friend, then with 100 friends added on 3
 * relays, settled for a few seconds each; and from those the cost of a relay (its Worker) and
 * of a friend. The target of the speed issue is ≤ 80 MB idle with 3 relays.
 *
 * Where it goes (measured 2026-12-07, Deno 2.9, `--max-semi-space-size=1` as the daemon task
 * runs): a bare deno process is 36 MB and every Worker, empty, adds ~9 MB of runtime and
 * isolate, so main + coordinator + 3 relay Workers cost ~73 MB before a line of ours runs;
 * our modules and heaps add ~6 MB per relay Worker and ~20 MB to main and the coordinator.
 * 80 MB with one Worker per relay is therefore out of reach in Deno; the semi-space flag took
 * 20-22 MB off (145 → 123 MB) with no measurable cost in throughput.
 */
import { newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import { ControlClient } from "../ctl.ts";
import { type Bootstrapd, startBootstrapd } from "../testbed/harness.ts";
import { DaemonProcess, privateDir, spec } from "../testbed/daemon_process.ts";
import { rssMb } from "./proc.ts";
import { round, type Row } from "./report.ts";

/** Relays confirmed, as `ctl relays` counts them. */
async function confirmedRelays(socket: string): Promise<number> {
  const c = await ControlClient.connect(socket);
  try {
    const r = await c.request("relays");
    const list = (r.ok ? r.result : []) as { state: string }[];
    return list.filter((x) => x.state === "confirmed").length;
  } finally {
    await c.close();
  }
}

async function settled(d: DaemonProcess, socket: string, relays: number, ms: number) {
  const end = performance.now() + 15_000;
  while ((await confirmedRelays(socket)) < relays && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, ms));
  return await rssMb(d.pid);
}

export async function benchMemory(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const relays: Bootstrapd[] = [];
  const dir = await privateDir("toxtcp-mem-");
  const settleMs = quick ? 1_000 : 3_000;
  const friends = quick ? 20 : 100;
  try {
    for (let i = 0; i < 3; i++) relays.push(await startBootstrapd());
    const one = await DaemonProcess.start({
      dataDir: `${dir}/one`,
      socket: `${dir}/one.sock`,
      relays: [spec(relays[0])],
    });
    let rss1: number;
    try {
      rss1 = await settled(one, `${dir}/one.sock`, 1, settleMs);
    } finally {
      await one.stop();
    }
    const three = await DaemonProcess.start({
      dataDir: `${dir}/three`,
      socket: `${dir}/three.sock`,
      relays: relays.map(spec),
    });
    let rss3: number;
    let rssFriends: number;
    try {
      rss3 = await settled(three, `${dir}/three.sock`, 3, settleMs);
      const c = await ControlClient.connect(`${dir}/three.sock`);
      try {
        for (let i = 0; i < friends; i++) {
          const r = await c.request("friend.add", { public_key: toHex(newKeyPair().publicKey) });
          if (!r.ok) throw new Error(`friend.add: ${JSON.stringify(r)}`);
        }
      } finally {
        await c.close();
      }
      rssFriends = await settled(three, `${dir}/three.sock`, 3, settleMs);
    } finally {
      await three.stop();
    }
    const rows: Row[] = [
      { daemon: "1 relay, 0 friends", "RSS MB": round(rss1, 1) },
      { daemon: "3 relays, 0 friends", "RSS MB": round(rss3, 1) },
      { daemon: `3 relays, ${friends} friends`, "RSS MB": round(rssFriends, 1) },
    ];
    return {
      rows,
      summary: {
        rss_idle_1_relay_mb: round(rss1, 1),
        rss_idle_3_relays_mb: round(rss3, 1),
        rss_per_extra_relay_mb: round((rss3 - rss1) / 2, 1),
        [`rss_3_relays_${friends}_friends_mb`]: round(rssFriends, 1),
        rss_per_friend_kb: round(((rssFriends - rss3) * 1024) / friends, 1),
        rss_idle_3_relays_vs_80mb_target: round(rss3 / 80, 2),
      },
    };
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
    await Deno.remove(dir, { recursive: true });
  }
}

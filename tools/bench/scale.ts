/**
 * The scale section: one daemon with 1,000 friends. The friends are whole Messenger stacks run
 * in the bench's own thread (tools/testbed/friend_swarm.ts), spread over 5 tox-bootstrapd: a
 * relay routes at most 240 keys per client (c-toxcore's NUM_CLIENT_CONNECTIONS), so 1,000
 * friends need at least 5 relays. Each side is given the other's DHT key and relay (what
 * `ctl friend add --dht --relay` gives), so the figure is the daemon's, not the onion's.
 *
 * Measured: the time from the first `friend.add` until every friend sees the daemon online;
 * the daemon's CPU (all its threads, /proc/PID/stat) while all are online and idle (c-toxcore's
 * ALIVE every 8 s per friend is then all that moves); its RSS with 5 relays before and after,
 * per friend.
 */
import { ControlClient } from "../ctl.ts";
import { type Bootstrapd, startBootstrapd } from "../testbed/harness.ts";
import {
  ctlJson,
  DaemonProcess,
  type DaemonSelf,
  privateDir,
  spec,
} from "../testbed/daemon_process.ts";
import { FriendSwarm } from "../testbed/friend_swarm.ts";
import { cpuTicks, rssMb } from "./proc.ts";
import { round, type Row } from "./report.ts";

const RELAYS = 5;
/** Friends started per second: a relay takes a burst of new clients badly (256 handshakes at once). */
const START_PER_SECOND = 50;
/** friend.add requests in flight at once, over this many control connections. */
const CONTROL_CLIENTS = 25;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchScale(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const friends = quick ? 200 : 1_000;
  const idleMs = quick ? 10_000 : 30_000;
  const relays: Bootstrapd[] = [];
  const dir = await privateDir("toxtcp-scale-");
  let swarm: FriendSwarm | null = null;
  try {
    for (let i = 0; i < RELAYS; i++) relays.push(await startBootstrapd());
    const socket = `${dir}/d.sock`;
    const d = await DaemonProcess.start({
      dataDir: `${dir}/d`,
      socket,
      relays: relays.map(spec),
    });
    try {
      await sleep(3_000);
      const rss0 = await rssMb(d.pid);
      const self = await ctlJson<DaemonSelf>(socket, "self");
      swarm = await FriendSwarm.start(friends, relays.map((r) => r.relay), {
        publicKey: self.public_key,
        dhtPublicKey: self.dht_public_key,
      }, START_PER_SECOND);
      const t0 = performance.now();
      const clients = await Promise.all(
        Array.from({ length: CONTROL_CLIENTS }, () => ControlClient.connect(socket)),
      );
      try {
        const answers = await Promise.all(
          swarm.members.map((m, i) =>
            clients[i % CONTROL_CLIENTS].request("friend.add", {
              public_key: m.publicKey,
              dht_public_key: m.dhtPublicKey,
              relays: [`${m.relay.host}:${m.relay.port}:${m.relay.publicKey}`],
            })
          ),
        );
        const bad = answers.find((a) => !a.ok);
        if (bad) throw new Error(`friend.add: ${JSON.stringify(bad)}`);
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
      const addedMs = performance.now() - t0;
      const all = await swarm.untilOnline(friends, 180_000);
      const onlineMs = performance.now() - t0;
      const onlineAtEnd = swarm.online;
      // Let the last handshakes and the onion's searches for them settle before measuring.
      await sleep(5_000);
      const cpu0 = await cpuTicks(d.pid);
      const w0 = performance.now();
      await sleep(idleMs);
      const cpuPct = ((await cpuTicks(d.pid)) - cpu0) / ((performance.now() - w0) / 1000);
      const rss1 = await rssMb(d.pid);
      const stillOnline = swarm.online;
      // Members whose own relay session is down: the swarm's trouble, not the daemon's.
      const trouble = swarm.relayTrouble().slice(0, 3).map(([w, n]) => `${n}× ${w}`).join("; ");
      const rows: Row[] = [
        {
          test: `${friends} friends on ${RELAYS} relays`,
          "added s": round(addedMs / 1000, 1),
          "all online s": all ? round(onlineMs / 1000, 1) : null,
          online: `${onlineAtEnd}/${friends}`,
          "idle CPU %": round(cpuPct, 1),
          "RSS MB": round(rss1, 1),
          "KB/friend": round(((rss1 - rss0) * 1024) / friends, 1),
          "members' relay down": trouble || "none",
        },
      ];
      return {
        rows,
        summary: {
          scale_friends: friends,
          scale_relays: RELAYS,
          scale_friend_add_s: round(addedMs / 1000, 1),
          scale_all_online_s: all ? round(onlineMs / 1000, 1) : null,
          scale_online: onlineAtEnd,
          scale_online_after_idle: stillOnline,
          scale_idle_cpu_pct_one_core: round(cpuPct, 1),
          scale_idle_cpu_vs_2pct_target: round(cpuPct / 2, 2),
          scale_rss_before_mb: round(rss0, 1),
          scale_rss_mb: round(rss1, 1),
          scale_rss_per_friend_kb: round(((rss1 - rss0) * 1024) / friends, 1),
          scale_members_relay_down: trouble || "none",
        },
      };
    } finally {
      await swarm?.close();
      await d.stop();
    }
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Onion section of `deno task bench`: time from start to friend online with no hint, only
 * the friend's key (or Tox ID), through one tox-bootstrapd 0.2.18 on 127.0.0.1 (relay, every
 * onion hop and the announce node). Ours<->ours, ours<->C and C<->C (tools/testbed/tox_peer.c
 * on Debian's libtoxcore), each from a fresh bootstrapd, and for each pair:
 *   - mutual: both add the other's key (no request) at start;
 *   - request: one sends a friend request to the other's Tox ID at start, the other accepts
 *     as soon as it arrives.
 * "Start" is just before the endpoints are created (Worker or process spawn included). For
 * ours: announced_ms is the first relay coming up → stored at an announce node.
 */
import { type Bootstrapd, startBootstrapd } from "../testbed/harness.ts";
import { startToxPeer, type ToxPeer } from "../testbed/tox_peer.ts";
import { fromHex } from "../../daemon/core/common/crypto.ts";
import { FriendEndpoint } from "../testbed/friend_flow.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import type { Row } from "./report.ts";

const round = (x: number, d = 0) => Math.round(x * 10 ** d) / 10 ** d;
const TIMEOUT_MS = 40_000;

const online = (friend: string) => (e: CoordinatorEvent) =>
  e.type === "friend_online" && e.friend === friend;

interface Timing {
  readonly onlineMs: number;
  readonly requestMs?: number;
  readonly announcedMs?: number;
}

/**
 * ms from the first relay up to stored at an announce node, for one of ours, as the
 * coordinator timed it (the main thread may be busy spawning a C peer meanwhile).
 */
function watchAnnounce(ep: FriendEndpoint): () => number | undefined {
  let ms: number | undefined;
  ep.subscribe((evs) => {
    for (const e of evs) {
      if (e.type === "onion_announced" && e.announced && e.sinceRelayUpMs !== null) {
        ms ??= e.sinceRelayUpMs;
      }
    }
  });
  return () => ms;
}

async function oursOurs(relay: Bootstrapd, request: boolean): Promise<Timing> {
  const t0 = performance.now();
  const a = new FriendEndpoint({ name: "a", relays: [relay.relay] });
  const b = new FriendEndpoint({ name: "b", relays: [relay.relay] });
  const announced = watchAnnounce(a);
  try {
    const both = Promise.all([
      a.waitFor("a sees b", online(b.realHex), TIMEOUT_MS),
      b.waitFor("b sees a", online(a.realHex), TIMEOUT_MS),
    ]);
    let requestMs: number | undefined;
    if (request) {
      const asked = b.waitFor("b asked", (e) => e.type === "friend_request", TIMEOUT_MS);
      a.handle.addFriend(b.real.publicKey, { request: { nospam: b.nospam, message: "hi" } });
      await asked;
      requestMs = performance.now() - t0;
      b.handle.addFriend(a.real.publicKey);
    } else {
      a.handle.addFriend(b.real.publicKey);
      b.handle.addFriend(a.real.publicKey);
    }
    await both;
    return { onlineMs: performance.now() - t0, requestMs, announcedMs: announced() };
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

/** `weAsk`: we send the request; else the C peer does; null: mutual add. */
async function oursC(relay: Bootstrapd, weAsk: boolean | null): Promise<Timing> {
  const t0 = performance.now();
  const us = new FriendEndpoint({ name: "deno", relays: [relay.relay] });
  const announced = watchAnnounce(us);
  let c: ToxPeer | null = null;
  try {
    c = await startToxPeer({ relays: [relay.relay], name: "c" });
    const cKey = fromHex(c.realPublicKey, 32);
    const weSee = us.waitFor("we see C", online(c.realPublicKey), TIMEOUT_MS);
    let requestMs: number | undefined;
    let friend: number;
    if (weAsk === null) {
      friend = await c.addFriend(us.realHex);
      us.handle.addFriend(cKey);
    } else if (weAsk) {
      const asked = c.waitForFriendRequest(TIMEOUT_MS);
      us.handle.addFriend(cKey, {
        request: { nospam: fromHex(c.address.slice(64, 72), 4), message: "hi from deno" },
      });
      const req = await asked;
      requestMs = performance.now() - t0;
      friend = await c.acceptFriendRequest(req.publicKey);
    } else {
      const asked = us.waitFor("we are asked", (e) => e.type === "friend_request", TIMEOUT_MS);
      friend = await c.sendFriendRequest(us.toxId, "hi from c-toxcore");
      await asked;
      requestMs = performance.now() - t0;
      us.handle.addFriend(cKey);
    }
    await Promise.all([weSee, c.waitForFriendOnline(friend, TIMEOUT_MS)]);
    return { onlineMs: performance.now() - t0, requestMs, announcedMs: announced() };
  } finally {
    await Promise.all([us.close(), c?.stop()]);
  }
}

async function cC(relay: Bootstrapd, request: boolean): Promise<Timing> {
  const t0 = performance.now();
  const peers = await Promise.allSettled([
    startToxPeer({ relays: [relay.relay], name: "c-a" }),
    startToxPeer({ relays: [relay.relay], name: "c-b" }),
  ]);
  const [a, b] = peers.map((p) => (p.status === "fulfilled" ? p.value : null));
  try {
    for (const p of peers) if (p.status === "rejected") throw p.reason;
    let fa: number;
    let fb: number;
    let requestMs: number | undefined;
    if (request) {
      const asked = b!.waitForFriendRequest(TIMEOUT_MS);
      fa = await a!.sendFriendRequest(b!.address, "hi");
      const req = await asked;
      requestMs = performance.now() - t0;
      fb = await b!.acceptFriendRequest(req.publicKey);
    } else {
      [fa, fb] = await Promise.all([
        a!.addFriend(b!.realPublicKey),
        b!.addFriend(a!.realPublicKey),
      ]);
    }
    await Promise.all([
      a!.waitForFriendOnline(fa, TIMEOUT_MS),
      b!.waitForFriendOnline(fb, TIMEOUT_MS),
    ]);
    return { onlineMs: performance.now() - t0, requestMs };
  } finally {
    await Promise.all([a?.stop(), b?.stop()]);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
};

export async function benchOnion(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const runs = quick ? 1 : 3;
  const cases: [string, string, (r: Bootstrapd) => Promise<Timing>][] = [
    ["ours<->ours", "mutual", (r) => oursOurs(r, false)],
    ["ours<->ours", "request", (r) => oursOurs(r, true)],
    ["ours<->C", "mutual", (r) => oursC(r, null)],
    ["ours->C", "request", (r) => oursC(r, true)],
    ["C->ours", "request", (r) => oursC(r, false)],
    ["C<->C", "mutual", (r) => cC(r, false)],
    ["C->C", "request", (r) => cC(r, true)],
  ];
  const rows: Row[] = [];
  for (const [pair, how, run] of cases) {
    const times: Timing[] = [];
    const errors: string[] = [];
    for (let i = 0; i < runs; i++) {
      // A fresh bootstrapd per run: no announcement or path from an earlier run helps.
      const relay = await startBootstrapd();
      try {
        times.push(await run(relay));
      } catch (e) {
        errors.push((e as Error).message.split("\n")[0]);
      } finally {
        await relay.stop();
      }
    }
    const pick = (f: (t: Timing) => number | undefined) => {
      const xs = times.map(f).filter((x): x is number => x !== undefined);
      return xs.length === 0 ? null : round(median(xs));
    };
    rows.push({
      pair,
      how,
      runs: times.length,
      failed: errors.length,
      request_arrived_ms: pick((t) => t.requestMs),
      online_ms_median: pick((t) => t.onlineMs),
      online_ms_max: times.length ? round(Math.max(...times.map((t) => t.onlineMs))) : null,
      announced_ms: pick((t) => t.announcedMs),
      error: errors[0] ?? null,
    });
  }
  const at = (pair: string, how: string) =>
    rows.find((r) => r.pair === pair && r.how === how)?.online_ms_median as number | null;
  const ratio = (a: number | null, b: number | null) => (a && b ? round(a / b, 2) : null);
  const summary: Row = {
    ours_ours_online_ms: at("ours<->ours", "mutual"),
    ours_announced_ms: rows.find((r) => r.pair === "ours<->ours")?.announced_ms ?? null,
    ours_c_vs_c_c_mutual: ratio(at("ours<->C", "mutual"), at("C<->C", "mutual")),
    c_to_ours_vs_c_to_c_request: ratio(at("C->ours", "request"), at("C->C", "request")),
    ours_to_c_vs_c_to_c_request: ratio(at("ours->C", "request"), at("C->C", "request")),
  };
  return { rows, summary };
}

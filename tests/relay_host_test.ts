/**
 * Our relay's shell (daemon/shell/relay_host.ts) under load and abuse, over real sockets on
 * 127.0.0.1, in-thread: a thousand clients at once, a client that stops reading, malformed
 * handshakes and frames, the connection cap. The clients are bare codecs over sockets
 * (tools/testbed/raw_relay_client.ts). Assertions use the relay's own accounting, not timing.
 */
import assert from "node:assert/strict";
import { newKeyPair, systemRandom } from "../daemon/core/common/crypto.ts";
import { createClientHandshake } from "../daemon/core/tcp_common/handshake.ts";
import { frameSize } from "../daemon/core/tcp_common/framing.ts";
import { PacketId, type RelayPacket } from "../daemon/core/tcp_common/packets.ts";
import type {
  ConnectionNumber,
  RelayServerCloseReason,
  RelayServerEvent,
} from "../daemon/core/relay_server/events.ts";
import { type RoutingRelay, startRoutingRelay } from "../daemon/shell/relay_host.ts";
import { RawRelayClient, untilClosed, writeAll } from "../tools/testbed/raw_relay_client.ts";

/** Poll `pred` every 10 ms until it holds, for at most `ms`. */
async function eventually(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A client that has done the handshake and had its first PING answered (so: confirmed). */
async function confirmed(relay: RoutingRelay, pingId = 1n): Promise<RawRelayClient> {
  const c = await RawRelayClient.connect(relay.port, relay.publicKey);
  try {
    await c.ping(pingId);
  } catch (e) {
    await c.close();
    throw e;
  }
  return c;
}

/** The relay's connection number for a confirmed client. */
function relayId(relay: RoutingRelay, c: RawRelayClient): ConnectionNumber {
  const hex = c.keys.publicKey.join(",");
  const e = relay.events.findLast((e) => e.type === "confirmed" && e.publicKey.join(",") === hex);
  assert.ok(e, "the relay confirmed this client");
  return e.id;
}

/** x and y route each other; resolves with the id each knows the other by, once both are online. */
async function link(x: RawRelayClient, y: RawRelayClient): Promise<{ xy: number; yx: number }> {
  const notified = (c: RawRelayClient) => {
    const i = c.inbox.findIndex((p) => p.kind === "connection_notification");
    return i < 0 ? null : c.inbox.splice(i, 1)[0];
  };
  const routed = (c: RawRelayClient, pk: Uint8Array) => {
    const i = c.inbox.findIndex((p) =>
      p.kind === "routing_response" && p.publicKey.join(",") === pk.join(",")
    );
    const p = i < 0 ? null : c.inbox.splice(i, 1)[0];
    return p?.kind === "routing_response" ? p.connectionId : null;
  };
  await x.send({ kind: "routing_request", publicKey: y.keys.publicKey });
  await y.send({ kind: "routing_request", publicKey: x.keys.publicKey });
  let xy: number | null = null;
  let yx: number | null = null;
  let xOn = false;
  let yOn = false;
  await x.until(() => (xy ??= routed(x, y.keys.publicKey)) !== null && (xOn ||= !!notified(x)));
  await y.until(() => (yx ??= routed(y, x.keys.publicKey)) !== null && (yOn ||= !!notified(y)));
  return { xy: xy!, yx: yx! };
}

/**
 * `count` DATA packets of `size` bytes from → to on `id`, at most `window` unreceived at a time
 * (so the pair never overruns its own queue); checks every one arrives, whole and in order.
 */
async function stream(
  from: RawRelayClient,
  to: RawRelayClient,
  id: number,
  count: number,
  size: number,
  window: number,
): Promise<void> {
  let received = 0;
  to.onPacket = (p) => {
    if (p.kind !== "data") return;
    const n = (p.data[0] << 8) | p.data[1];
    assert.equal(n, received & 0xffff, "in order");
    assert.equal(p.data.length, size);
    received++;
  };
  for (let sent = 0; sent < count;) {
    await to.until(() => sent - received < window, 10_000, "window");
    const n = Math.min(count - sent, window - (sent - received));
    const frames: Uint8Array[] = [];
    for (let i = 0; i < n; i++, sent++) {
      const data = new Uint8Array(size).fill(0x5a);
      data[0] = (sent >> 8) & 0xff;
      data[1] = sent & 0xff;
      frames.push(from.frame({ kind: "data", connectionId: id, data }));
    }
    await writeAll(from.conn, concat(frames));
  }
  await to.until(() => received === count, 10_000, "all received");
  to.onPacket = null;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function closeAll(clients: RawRelayClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.close()));
}

Deno.test("relay host: 1000 concurrent clients complete the handshake and are confirmed; the relay's queues stay within their bounds", async () => {
  const n = 1_000;
  await using relay = startRoutingRelay();
  const clients: RawRelayClient[] = [];
  try {
    // In batches of 100: a burst of more than 256 handshakes in flight at once would wrap the
    // incoming ring and evict the oldest, as c-toxcore's relay does too.
    for (let i = 0; i < n; i += 100) {
      const batch = await Promise.allSettled(
        Array.from({ length: 100 }, (_, j) => confirmed(relay, BigInt(i + j + 1))),
      );
      for (const r of batch) if (r.status === "fulfilled") clients.push(r.value);
      const failed = batch.find((r) => r.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    }
    assert.equal(relay.clients(), n);
    // All of them at once again: every one is still there and answered.
    await Promise.all(clients.map((c, i) => c.ping(BigInt(n + i + 1))));
    const cfg = relay.server.config;
    let s = relay.server.stats();
    assert.equal(s.connections, n);
    assert.deepEqual(
      Object.entries(s.closed).filter(([, k]) => k > 0),
      [],
      "nobody was closed",
    );
    // The relay's own accounting: at most a 96-byte answer and two PONGs owed to any one.
    const perClient = 96 + 2 * frameSize(9);
    for (const id of relay.server.connectionIds()) {
      const info = relay.server.connection(id)!;
      assert.ok(info.peakQueuedBytes <= perClient, `${info.peakQueuedBytes}`);
      assert.ok(info.queuedBytes <= cfg.queueMax);
    }
    assert.ok(s.peakQueuedBytes <= n * perClient && s.peakQueuedBytes <= cfg.totalQueueMax);
    // Every PONG went out: the relay owes nothing once the writes have settled.
    await eventually(() => relay.server.stats().queuedBytes === 0, 5_000, "queues empty");
    assert.equal(relay.refused, 0);
    await closeAll(clients.splice(0));
    await eventually(() => relay.server.stats().connections === 0, 5_000, "all gone");
    s = relay.server.stats();
    assert.equal(s.closed.socket_closed, n);
  } finally {
    await closeAll(clients);
  }
});

Deno.test("relay host: a client that stops reading fills only its own queue; DATA to it is dropped and counted while a pair exchanges 5000 packets", async () => {
  const dataQueueMax = 64 * 1024;
  await using relay = startRoutingRelay({ config: { dataQueueMax, queueMax: 96 * 1024 } });
  const clients: RawRelayClient[] = [];
  try {
    for (let i = 0; i < 4; i++) clients.push(await confirmed(relay));
    const [a, b, flooder, slow] = clients;
    const { xy: ab, yx: ba } = await link(a, b);
    const { xy: toSlow } = await link(flooder, slow);
    const slowId = relayId(relay, slow);
    slow.pause();
    let slowPeak = 0;
    const slowInfo = () => relay.server.connection(slowId)!;

    // The flooder writes 1 KB DATA to slow as fast as its socket takes it, until the relay
    // has dropped plenty (the kernel's buffers on the way to slow fill first).
    let flooded = 0;
    const flood = (async () => {
      const data = new Uint8Array(1000).fill(7);
      while (slowInfo().droppedQueueFull < 2_000) {
        assert.ok(flooded < 40_000, "40 MB without a drop: the queue bound does not hold");
        const frames = [];
        for (let i = 0; i < 64; i++, flooded++) {
          frames.push(flooder.frame({ kind: "data", connectionId: toSlow, data }));
        }
        await writeAll(flooder.conn, concat(frames));
        slowPeak = Math.max(slowPeak, slowInfo().queuedBytes);
        await new Promise((r) => setTimeout(r, 0)); // let the relay read it
      }
    })();
    // Meanwhile a and b exchange 5000 DATA each way, each side windowed to 48 KB in flight.
    await Promise.all([
      stream(a, b, ab, 5_000, 1_000, 48),
      stream(b, a, ba, 5_000, 1_000, 48),
      flood,
    ]);
    const info = slowInfo();
    assert.ok(info.queuedBytes <= dataQueueMax, `${info.queuedBytes}`);
    assert.ok(info.peakQueuedBytes <= dataQueueMax, `${info.peakQueuedBytes}`);
    assert.ok(slowPeak <= dataQueueMax);
    // Every flooded packet the relay has read was either queued for slow or dropped.
    const pair = 10_000;
    await eventually(
      () => {
        const s = relay.server.stats();
        return s.dataForwarded - pair + s.droppedQueueFull === flooded;
      },
      5_000,
      "the relay has read the whole flood",
    );
    const s = relay.server.stats();
    assert.equal(s.droppedQueueFull, slowInfo().droppedQueueFull, "every drop was slow's");
    assert.ok(slowInfo().peakQueuedBytes <= dataQueueMax);
    assert.ok(info.droppedQueueFull >= 2_000);
    assert.equal(s.closed.queue_overflow, 0);
    assert.equal(relay.clients(), 4);
    // Counted exactly: what slow gets once it reads again is what was not dropped.
    const forwardedToSlow = s.dataForwarded - pair;
    let late = 0;
    slow.onPacket = (p) => {
      if (p.kind === "data") late++;
    };
    const held = slow.inbox.filter((p) => p.kind === "data").length;
    slow.resume();
    await slow.until(() => held + late === forwardedToSlow, 10_000, "slow drains");
    assert.equal(relay.server.stats().droppedQueueFull, s.droppedQueueFull);
  } finally {
    await closeAll(clients);
  }
});

/** What a malformed connection sends, and the close reason the relay must give it. */
interface Abuse {
  readonly name: string;
  readonly reason: RelayServerCloseReason;
  /** Given the relay, do the damage on a fresh socket; resolves once the relay has closed it. */
  readonly run: (relay: RoutingRelay) => Promise<void>;
}

/** A raw socket sends `bytes` and must be closed by the relay (not by our timeout). */
function rawSocket(bytes: (relay: RoutingRelay) => Uint8Array) {
  return async (relay: RoutingRelay) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
    try {
      await writeAll(conn, bytes(relay));
    } catch { /* closed already */ }
    assert.notEqual(await untilClosed(conn, 5_000), "timeout");
    try {
      conn.close();
    } catch { /* already closed */ }
  };
}

/** After a good handshake, `frames` builds what to send; the relay must close the client. */
function afterHandshake(frames: (c: RawRelayClient) => Uint8Array, confirmFirst = false) {
  return async (relay: RoutingRelay) => {
    const c = confirmFirst
      ? await confirmed(relay)
      : await RawRelayClient.connect(relay.port, relay.publicKey);
    try {
      await c.sendRaw(frames(c)).catch(() => {});
      await c.closedByRelay(5_000);
    } finally {
      await c.close();
    }
  };
}

const ABUSES: Abuse[] = [
  {
    name: "short handshake (100 bytes), then silence",
    reason: "handshake_timeout",
    run: rawSocket(() => new Uint8Array(100).fill(1)),
  },
  {
    name: "handshake of garbage",
    reason: "handshake_failed",
    run: rawSocket(() => systemRandom(300)),
  },
  {
    name: "handshake with a flipped bit in its box",
    reason: "handshake_failed",
    run: rawSocket((relay) => {
      const hs = createClientHandshake(newKeyPair(), relay.publicKey, systemRandom).packet;
      hs[100] ^= 4;
      return hs;
    }),
  },
  {
    name: "handshake made for another relay's key",
    reason: "handshake_failed",
    run: rawSocket(() =>
      createClientHandshake(newKeyPair(), newKeyPair().publicKey, systemRandom).packet
    ),
  },
  {
    name: "handshake of 128 zero bytes (a low-order key)",
    reason: "handshake_failed",
    run: rawSocket(() => new Uint8Array(128)),
  },
  ...[1, 2, 15, 16].map((len): Abuse => ({
    name: `frame length ${len}`,
    reason: "bad_frame",
    run: afterHandshake(() => {
      const f = new Uint8Array(2 + len).fill(3);
      f[0] = 0;
      f[1] = len;
      return f;
    }),
  })),
  ...[2049, 65535].map((len): Abuse => ({
    name: `frame length ${len}`,
    reason: "bad_frame",
    run: afterHandshake(() => Uint8Array.of(len >> 8, len & 0xff, 0, 0, 0)),
  })),
  {
    name: "bad MAC",
    reason: "bad_mac",
    run: afterHandshake((c) => {
      const f = c.frame({ kind: "ping", pingId: 9n });
      f[10] ^= 1;
      return f;
    }),
  },
  {
    name: "bad MAC after confirmation",
    reason: "bad_mac",
    run: afterHandshake((c) => {
      const f = c.frame({ kind: "ping", pingId: 9n });
      f[f.length - 1] ^= 1;
      return f;
    }, true),
  },
  ...[12, 13, 14, 15].map((id): Abuse => ({
    name: `reserved packet id ${id}`,
    reason: "bad_packet",
    run: afterHandshake((c) => c.framePlain(Uint8Array.of(id, 1, 2, 3)), true),
  })),
  {
    name: "PING with id 0",
    reason: "bad_packet",
    run: afterHandshake((c) => c.framePlain(Uint8Array.of(PacketId.PING, 0, 0, 0, 0, 0, 0, 0, 0))),
  },
  {
    name: "PONG with id 0",
    reason: "bad_packet",
    run: afterHandshake(
      (c) => c.framePlain(Uint8Array.of(PacketId.PONG, 0, 0, 0, 0, 0, 0, 0, 0)),
      true,
    ),
  },
  {
    name: "DATA on a connection id never routed",
    reason: "bad_packet",
    run: afterHandshake((c) =>
      c.frame({ kind: "data", connectionId: 200, data: Uint8Array.of(1) })
    ),
  },
];

Deno.test("relay host: malformed handshakes and frames each close only that connection while a pair keeps exchanging data", async () => {
  await using relay = startRoutingRelay({ config: { handshakeTimeoutMs: 500 } });
  const a = await confirmed(relay);
  const b = await confirmed(relay);
  const pairIds = [relayId(relay, a), relayId(relay, b)];
  let rounds = 0;
  let stop = false;
  try {
    const { xy: ab, yx: ba } = await link(a, b);
    // The pair plays ping-pong with DATA for as long as the abuse goes on.
    const traffic = (async () => {
      while (!stop) {
        const n = rounds;
        const data = Uint8Array.of(n >> 8, n & 0xff, 1, 2, 3);
        await a.send({ kind: "data", connectionId: ab, data });
        const got = await b.next(5_000);
        assert.ok(got?.kind === "data" && got.data[1] === (n & 0xff), "a → b");
        await b.send({ kind: "data", connectionId: ba, data });
        const back = await a.next(5_000);
        assert.ok(back?.kind === "data" && back.data[1] === (n & 0xff), "b → a");
        rounds++;
      }
    })();
    // A zero length is skipped, as c-toxcore does: the client is neither closed nor lost.
    const c = await confirmed(relay);
    try {
      await c.sendRaw(concat([Uint8Array.of(0, 0, 0, 0), c.frame({ kind: "ping", pingId: 3n })]));
      const p = await c.next(5_000);
      assert.deepEqual(p, { kind: "pong", pingId: 3n } satisfies RelayPacket);
      assert.equal(relay.server.stats().closed.bad_frame, 0);
    } finally {
      await c.close();
    }
    await eventually(() => relay.server.stats().connections === 2, 5_000, "zero-length one gone");
    for (const abuse of ABUSES) {
      const before = relay.server.stats().closed;
      const roundsBefore = rounds;
      await abuse.run(relay);
      const after = relay.server.stats().closed;
      const changed = Object.keys(after).filter((k) =>
        after[k as RelayServerCloseReason] !== before[k as RelayServerCloseReason]
      );
      assert.deepEqual(changed, [abuse.reason], abuse.name);
      assert.equal(after[abuse.reason] - before[abuse.reason], 1, abuse.name);
      // The pair is still going, whatever that connection did.
      await eventually(() => rounds > roundsBefore, 5_000, `traffic after ${abuse.name}`);
    }
    stop = true;
    await traffic;
    const closedPair = relay.events.filter((
      e,
    ): e is Extract<RelayServerEvent, { type: "closed" }> =>
      e.type === "closed" && pairIds.includes(e.id)
    );
    assert.deepEqual(closedPair, []);
    const peerFaults = relay.events.filter((e) => e.type === "closed" && e.fault === "peer");
    // One socket per abuse, plus the zero-length client, which left on its own.
    assert.equal(peerFaults.length, ABUSES.length);
    assert.ok(rounds > ABUSES.length, `${rounds} rounds`);
    assert.equal(relay.clients(), 2);
  } finally {
    stop = true;
    await a.close();
    await b.close();
  }
});

Deno.test("relay host: past maxConnections new sockets are closed at accept and counted (refused); the others carry on", async () => {
  await using relay = startRoutingRelay({ maxConnections: 5 });
  const clients: RawRelayClient[] = [];
  try {
    for (let i = 0; i < 5; i++) clients.push(await confirmed(relay));
    for (let i = 0; i < 3; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
      const hs = createClientHandshake(newKeyPair(), relay.publicKey, systemRandom).packet;
      await writeAll(conn, hs).catch(() => {});
      assert.notEqual(await untilClosed(conn, 5_000), "timeout", "closed by the relay");
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    assert.equal(relay.refused, 3);
    assert.equal(relay.server.stats().connections, 5);
    await Promise.all(clients.map((c, i) => c.ping(BigInt(100 + i))));
    // One leaves: there is room for one more.
    await clients.shift()!.close();
    await eventually(() => relay.server.stats().connections === 4, 5_000, "one gone");
    clients.push(await confirmed(relay));
    assert.equal(relay.clients(), 5);
    assert.equal(relay.refused, 3);
  } finally {
    await closeAll(clients);
  }
});

Deno.test("relay host: the timer grid still pings on time; a client that never answers is closed (ping_timeout), one that answers stays", async () => {
  // A PING interval shorter than the timeout would re-ping before the timeout (as c-toxcore).
  await using relay = startRoutingRelay({ config: { pingIntervalMs: 300, pingTimeoutMs: 200 } });
  const deaf = await confirmed(relay);
  const polite = await confirmed(relay);
  try {
    let answered = 0;
    polite.onPacket = (p) => {
      if (p.kind !== "ping") return;
      answered++;
      polite.send({ kind: "pong", pingId: p.pingId }).catch(() => {});
    };
    await deaf.closedByRelay(3_000);
    const ev = relay.events.find((e) => e.type === "closed" && e.reason === "ping_timeout");
    assert.ok(ev?.type === "closed" && ev.fault === "peer");
    await polite.until(() => answered >= 3, 3_000, "three relay PINGs answered");
    assert.equal(relay.clients(), 1);
    assert.ok(relay.server.stats().timerChecks < 100, "no timer storm");
  } finally {
    await deaf.close();
    await polite.close();
  }
});

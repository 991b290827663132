/**
 * A hostile relay over real sockets: each kind of misbehaviour closes that connection with a
 * reason that blames the relay, while the relay worker and other connections live on.
 */
import assert from "node:assert/strict";
import { newKeyPair } from "../daemon/core/common/crypto.ts";
import { RelayWorkerHandle } from "../workers/relay_handle.ts";
import { FakeRelayServer, politeRelay, type RelayScript } from "./support/fake_relay_server.ts";
import { EventLog } from "./support/events.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Answer the client's first PING (so it is confirmed), then do `then`. */
function afterFirstPing(then: RelayScript): RelayScript {
  return async (side) => {
    const first = await side.nextPackets();
    const ping = first?.find((p) => p.kind === "ping");
    if (ping?.kind === "ping") {
      await side.send(side.peer.frame({ kind: "pong", pingId: ping.pingId }));
    }
    await then(side);
    await side.nextPackets(); // hold the socket until the client hangs up
  };
}

const HOSTILE: [string, RelayScript, string, RegExp][] = [
  [
    "oversized length",
    afterFirstPing((s) => s.send(Uint8Array.of(0xff, 0xff, 1, 2, 3))),
    "bad_frame",
    /65535 exceeds 2048/,
  ],
  [
    "bad MAC",
    afterFirstPing(async (s) => {
      const f = s.peer.frame({ kind: "ping", pingId: 77n });
      f[f.length - 1] ^= 0x80;
      await s.send(f);
    }),
    "bad_mac",
    /authentication/,
  ],
  [
    "unknown packet id",
    afterFirstPing((s) => s.send(s.peer.rawFrame(Uint8Array.of(13, 1, 2)))),
    "bad_packet",
    /reserved/,
  ],
  [
    "routing response for a key never asked",
    afterFirstPing((s) =>
      s.send(
        s.peer.frame({
          kind: "routing_response",
          connectionId: 16,
          publicKey: new Uint8Array(32).fill(9),
        }),
      )
    ),
    "unsolicited_routing_response",
    /never asked/,
  ],
  [
    "a trickle that never finishes a frame",
    afterFirstPing(async (s) => {
      const f = s.peer.frame({ kind: "ping", pingId: 5n });
      for (let i = 0; i < f.length - 1; i++) {
        await s.send(f.subarray(i, i + 1));
        await sleep(100);
      }
    }),
    "ping_timeout",
    /no PONG/,
  ],
];

for (const [name, script, reason, message] of HOSTILE) {
  Deno.test(`hostile relay: ${name} closes that connection (${reason}); the worker and a good connection live on`, async () => {
    const bad = new FakeRelayServer(script);
    const good = new FakeRelayServer(politeRelay);
    const badLog = new EventLog();
    const goodLog = new EventLog();
    // Short ping timers so the trickle case ends in about a second.
    const config = { pingIntervalMs: 300, pingTimeoutMs: 1_000 };
    const a = new RelayWorkerHandle(
      {
        relay: { host: "127.0.0.1", port: bad.port, publicKey: bad.publicKeyHex },
        self: newKeyPair(),
        config,
      },
      badLog.push,
    );
    const b = new RelayWorkerHandle(
      {
        relay: { host: "127.0.0.1", port: good.port, publicKey: good.publicKeyHex },
        self: newKeyPair(),
        config,
      },
      goodLog.push,
    );
    try {
      const closed = await badLog.waitFor("closed", 5_000);
      assert.equal(closed.reason, reason);
      assert.equal(closed.fault, "peer");
      assert.match(closed.message, message);
      // The worker is alive and answers; the other connection keeps pinging.
      a.requestStats();
      const stats = await badLog.waitFor("stats");
      assert.equal(stats.stats.state, "disconnected");
      const pongs = goodLog.count("pong");
      await goodLog.waitFor("pong", 3_000, () => true, goodLog.events.length);
      assert.ok(goodLog.count("pong") > pongs);
      assert.equal(goodLog.count("closed"), 0);
    } finally {
      await a.close();
      await b.close();
      await bad.close();
      await good.close();
    }
  });
}

Deno.test("hostile relay: a handshake reply trickled past the connect timeout closes (connect_timeout)", async () => {
  const slow = new FakeRelayServer(politeRelay, async (side, response) => {
    for (let i = 0; i < response.length; i++) {
      await side.send(response.subarray(i, i + 1));
      await sleep(50);
    }
  });
  const log = new EventLog();
  const h = new RelayWorkerHandle(
    {
      relay: { host: "127.0.0.1", port: slow.port, publicKey: slow.publicKeyHex },
      self: newKeyPair(),
      config: { connectTimeoutMs: 1_000 },
    },
    log.push,
  );
  try {
    const closed = await log.waitFor("closed", 5_000);
    assert.equal(closed.reason, "connect_timeout");
    assert.match(closed.message, /handshake reply within 1000 ms/);
  } finally {
    await h.close();
    await slow.close();
  }
});

Deno.test("wrong relay key: the handshake fails with a clear error", async () => {
  const server = new FakeRelayServer(politeRelay);
  const log = new EventLog();
  const h = new RelayWorkerHandle(
    {
      relay: { host: "127.0.0.1", port: server.port, publicKey: "ab".repeat(32) },
      self: newKeyPair(),
    },
    log.push,
  );
  try {
    const closed = await log.waitFor("closed", 5_000);
    assert.equal(closed.reason, "handshake_failed");
    assert.match(closed.message, /wrong relay public key/);
  } finally {
    await h.close();
    await server.close();
  }
});

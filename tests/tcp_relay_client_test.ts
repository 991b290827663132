/**
 * The relay client state machine, fed bytes and time only (no sockets, no sleeping).
 * A FakeRelayPeer plays the relay's half of the protocol.
 */
import assert from "node:assert/strict";
import { newKeyPair, toHex } from "../daemon/core/common/crypto.ts";
import {
  RelayClient,
  type RelayClient as RelayClientType,
  type RelayClientConfig,
  type RelayEvent,
} from "../daemon/core/relay_client/relay_client.ts";
import type { RelayPacket } from "../daemon/core/tcp_common/packets.ts";
import { FakeRelayPeer, seededRandom } from "../tools/testbed/fake_relay.ts";

const T0 = 1_000_000;

interface Rig {
  client: RelayClientType;
  relay: FakeRelayPeer;
  events: RelayEvent[];
  /** Packets the relay has decoded from the client, in wire order. */
  seen: RelayPacket[];
  now: number;
}

function newRig(config?: Partial<RelayClientConfig>, proxy = false): Rig {
  const random = seededRandom(7);
  const relay = new FakeRelayPeer(seededRandom(8));
  const client = new RelayClient({
    self: newKeyPair(random),
    relayPublicKey: relay.keys.publicKey,
    random,
    now: T0,
    config,
    proxy: proxy ? { kind: "socks5", target: { host: "127.0.0.1", port: 33445 } } : undefined,
  });
  return { client, relay, events: [], seen: [], now: T0 };
}

function collect(r: Rig): RelayEvent[] {
  const e = r.client.takeEvents();
  r.events.push(...e);
  return e;
}

/** Write everything the client wants to write (whole chunks), feeding the relay. */
function flush(r: Rig, step = Infinity): Uint8Array | null | undefined {
  let response: Uint8Array | null | undefined;
  for (let guard = 0; guard < 100_000; guard++) {
    const chunk = r.client.pollTransmit(r.now);
    if (chunk === null) break;
    const n = Math.min(step, chunk.length);
    const part = chunk.slice(0, n);
    r.client.written(n, r.now);
    const out = r.relay.fromClient(part);
    if (out.response !== undefined) response = out.response;
    r.seen.push(...out.packets);
  }
  return response;
}

function toClient(r: Rig, bytes: Uint8Array, step = Infinity): void {
  for (let o = 0; o < bytes.length; o += step) {
    r.client.receive(bytes.slice(o, Math.min(bytes.length, o + step)), r.now);
  }
}

function confirm(r: Rig, step = Infinity): void {
  r.client.transportConnected(r.now);
  const response = flush(r, step);
  assert.ok(response, "the relay accepted the handshake");
  toClient(r, response, step);
  flush(r, step);
}

function routeOnline(r: Rig, pk: Uint8Array, connectionId = 16): void {
  r.client.route(pk);
  flush(r);
  toClient(r, r.relay.frame({ kind: "routing_response", connectionId, publicKey: pk }));
  toClient(r, r.relay.frame({ kind: "connection_notification", connectionId }));
}

function closed(r: Rig): Extract<RelayEvent, { type: "closed" }> | undefined {
  collect(r);
  return r.events.find((e) => e.type === "closed") as Extract<RelayEvent, { type: "closed" }>;
}

Deno.test("handshake: 128 bytes out, 96 back, fed one byte at a time; first frame is a PING", () => {
  const r = newRig();
  assert.equal(r.client.state, "connecting");
  r.client.transportConnected(r.now);
  const hello = r.client.pollTransmit(r.now)!;
  assert.equal(hello.length, 128);
  assert.deepEqual(hello.subarray(0, 32), r.client.self.publicKey);
  assert.equal(r.client.state, "unconfirmed");
  for (let i = 0; i < 128; i++) r.client.written(1, r.now); // written a byte at a time
  const out = r.relay.fromClient(hello);
  assert.ok(out.response);
  toClient(r, out.response, 1);
  assert.equal(r.client.state, "confirmed");
  assert.deepEqual(collect(r).map((e) => e.type), ["confirmed"]);
  flush(r, 1);
  assert.equal(r.seen[0].kind, "ping");
});

Deno.test("routing: request, response, connection and disconnect notification, data", () => {
  const r = newRig();
  const peer = newKeyPair(seededRandom(3)).publicKey;
  r.client.route(peer); // before confirmation: sent once confirmed, after the PING
  confirm(r);
  assert.deepEqual(r.seen.map((p) => p.kind), ["ping", "routing_request"]);
  toClient(r, r.relay.frame({ kind: "routing_response", connectionId: 16, publicKey: peer }));
  toClient(r, r.relay.frame({ kind: "connection_notification", connectionId: 16 }));
  toClient(r, r.relay.frame({ kind: "data", connectionId: 16, data: Uint8Array.of(1, 2, 3) }));
  toClient(r, r.relay.frame({ kind: "disconnect_notification", connectionId: 16 }));
  const ev = collect(r);
  assert.deepEqual(ev.map((e) => e.type), ["confirmed", "routed", "online", "data", "offline"]);
  const data = ev[3] as Extract<RelayEvent, { type: "data" }>;
  assert.deepEqual(data.data, Uint8Array.of(1, 2, 3));
  assert.equal(toHex(data.publicKey), toHex(peer));
});

Deno.test("routing: a refused route (rpid 0) is reported, the connection lives", () => {
  const r = newRig();
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  r.client.route(peer);
  flush(r);
  toClient(r, r.relay.frame({ kind: "routing_response", connectionId: null, publicKey: peer }));
  assert.deepEqual(collect(r).map((e) => e.type), ["confirmed", "route_refused"]);
  assert.equal(r.client.state, "confirmed");
});

Deno.test("routing: a response for a key never asked closes the connection, relay's fault", () => {
  const r = newRig();
  confirm(r);
  const stranger = newKeyPair(seededRandom(4)).publicKey;
  toClient(r, r.relay.frame({ kind: "routing_response", connectionId: 17, publicKey: stranger }));
  const c = closed(r)!;
  assert.equal(c.reason, "unsolicited_routing_response");
  assert.equal(c.fault, "peer");
  assert.equal(r.client.state, "disconnected");
});

Deno.test("routing: unrouting a pending request sends a disconnect when the answer comes", () => {
  const r = newRig();
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  r.client.route(peer);
  flush(r);
  r.client.unroute(peer);
  toClient(r, r.relay.frame({ kind: "routing_response", connectionId: 20, publicKey: peer }));
  flush(r);
  assert.deepEqual(r.seen.at(-1), { kind: "disconnect_notification", connectionId: 20 });
  assert.equal(r.client.wantedRoutes().length, 0);
  assert.equal(r.client.state, "confirmed");
});

Deno.test("routing: at most 240 routes; a route to ourselves is refused locally", () => {
  const r = newRig();
  confirm(r);
  const rnd = seededRandom(11);
  for (let i = 0; i < 240; i++) assert.ok(r.client.route(rnd(32)).ok);
  const over = r.client.route(rnd(32));
  assert.equal(over.ok, false);
  assert.equal(r.client.route(r.client.self.publicKey).ok, false);
});

Deno.test("ping: the relay's PING is answered with its id, ahead of queued data", () => {
  const r = newRig();
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  flush(r);
  r.seen.length = 0;
  // A write is in flight (not yet acknowledged) while data and a relay PING queue up.
  for (let i = 0; i < 3; i++) r.client.sendData(peer, new Uint8Array(100).fill(i));
  const inflight = r.client.pollTransmit(r.now)!;
  for (let i = 3; i < 6; i++) r.client.sendData(peer, new Uint8Array(100).fill(i));
  toClient(r, r.relay.frame({ kind: "ping", pingId: 0x1122334455667788n }));
  r.client.written(inflight.length, r.now);
  r.seen.push(...r.relay.fromClient(inflight).packets);
  flush(r);
  assert.deepEqual(r.seen.map((p) => p.kind), [
    "data",
    "data",
    "data",
    "pong",
    "data",
    "data",
    "data",
  ]);
  assert.deepEqual(r.seen[3], { kind: "pong", pingId: 0x1122334455667788n });
});

Deno.test("ping: a flood of relay PINGs owes one PONG (the latest), the lane stays bounded", () => {
  const r = newRig();
  confirm(r);
  const blocked = r.client.pollTransmit(r.now); // nothing pending after confirm+flush
  assert.equal(blocked, null);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  r.client.sendData(peer, Uint8Array.of(1));
  const inflight = r.client.pollTransmit(r.now)!; // socket "full": never acknowledged
  for (let i = 1; i <= 1000; i++) toClient(r, r.relay.frame({ kind: "ping", pingId: BigInt(i) }));
  assert.ok(r.client.stats().priorityQueued <= 2);
  r.client.written(inflight.length, r.now);
  r.seen.length = 0;
  r.relay.fromClient(inflight);
  flush(r);
  const pongs = r.seen.filter((p) => p.kind === "pong");
  assert.deepEqual(pongs, [{ kind: "pong", pingId: 1000n }]);
});

Deno.test("ping: every 30 s while idle; no PONG within 10 s closes (ping_timeout)", () => {
  const r = newRig();
  confirm(r);
  const first = r.seen.find((p) => p.kind === "ping") as Extract<RelayPacket, { kind: "ping" }>;
  r.now += 20;
  toClient(r, r.relay.frame({ kind: "pong", pingId: first.pingId }));
  const pong = collect(r).find((e) => e.type === "pong") as Extract<RelayEvent, { type: "pong" }>;
  assert.equal(pong.rttMs, 20);
  assert.equal(r.client.nextDeadline(r.now), T0 + 30_000);
  r.now = T0 + 30_000;
  r.client.tick(r.now);
  r.seen.length = 0;
  flush(r);
  assert.equal(r.seen[0].kind, "ping");
  assert.equal(r.client.nextDeadline(r.now), r.now + 10_000);
  r.now += 9_999;
  r.client.tick(r.now);
  assert.equal(r.client.state, "confirmed");
  r.now += 1;
  r.client.tick(r.now);
  const c = closed(r)!;
  assert.equal(c.reason, "ping_timeout");
  assert.equal(c.fault, "peer");
});

Deno.test("ping: a PONG with an id we did not send is ignored; id 0 kills", () => {
  const r = newRig();
  confirm(r);
  toClient(r, r.relay.frame({ kind: "pong", pingId: 12345n }));
  assert.equal(r.client.state, "confirmed");
  toClient(r, r.relay.rawFrame(Uint8Array.of(5, 0, 0, 0, 0, 0, 0, 0, 0)));
  assert.equal(closed(r)!.reason, "bad_packet");
});

Deno.test("stall: data flowing and no PONG for 400 ms closes as stalled", () => {
  const r = newRig();
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  const ping = r.seen.find((p) => p.kind === "ping") as Extract<RelayPacket, { kind: "ping" }>;
  toClient(r, r.relay.frame({ kind: "pong", pingId: ping.pingId }));
  r.client.sendData(peer, new Uint8Array(500));
  flush(r);
  // Data flowing: the next probe is due within the busy interval, not 30 s.
  assert.ok(r.client.nextDeadline(r.now) <= r.now + 100);
  r.now += 100;
  r.client.tick(r.now);
  flush(r);
  assert.equal(r.seen.at(-1)!.kind, "ping");
  r.client.sendData(peer, new Uint8Array(500)); // still busy; the relay never answers
  flush(r);
  r.now += 399;
  r.client.tick(r.now);
  assert.equal(r.client.state, "confirmed");
  r.now += 1;
  r.client.tick(r.now);
  const c = closed(r)!;
  assert.equal(c.reason, "stalled");
  assert.equal(c.fault, "peer");
  assert.ok(r.client.wantedRoutes().length === 1, "routes survive for the reconnect");
});

Deno.test("stall: a socket that takes no bytes for 400 ms while data waits closes as stalled", () => {
  const r = newRig();
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  flush(r);
  const ping = r.seen.find((p) => p.kind === "ping") as Extract<RelayPacket, { kind: "ping" }>;
  toClient(r, r.relay.frame({ kind: "pong", pingId: ping.pingId }));
  r.client.sendData(peer, new Uint8Array(1000));
  const chunk = r.client.pollTransmit(r.now)!;
  r.client.written(chunk.length - 10, r.now); // the tail never goes out
  const rateBefore = r.client.stats().paceRate;
  r.now += 250;
  r.client.tick(r.now);
  assert.ok(r.client.stats().paceRate < rateBefore, "a blocked write slows the pacer");
  r.now += 149;
  r.client.tick(r.now);
  assert.equal(r.client.state, "confirmed");
  r.now += 1;
  r.client.tick(r.now);
  assert.equal(closed(r)!.reason, "stalled");
});

Deno.test("connect timeout: nothing within 10 s closes with a network fault", () => {
  const r = newRig();
  assert.equal(r.client.nextDeadline(r.now), T0 + 10_000);
  r.client.tick(T0 + 9_999);
  assert.equal(r.client.state, "connecting");
  r.client.tick(T0 + 10_000);
  const c = closed(r)!;
  assert.equal(c.reason, "connect_timeout");
  assert.equal(c.fault, "network");
});

Deno.test("handshake: a reply that does not open means the wrong relay key", () => {
  const r = newRig();
  r.client.transportConnected(r.now);
  flush(r);
  toClient(r, seededRandom(5)(96), 7);
  const c = closed(r)!;
  assert.equal(c.reason, "handshake_failed");
  assert.match(c.message, /wrong relay public key/);
});

Deno.test("hostile frames: oversized length, short length, bad MAC, reserved and client-only ids", () => {
  const cases: [string, (r: Rig) => Uint8Array, string][] = [
    ["length 2049", () => Uint8Array.of(0x08, 0x01), "bad_frame"],
    ["length 16", () => Uint8Array.of(0x00, 0x10), "bad_frame"],
    ["flipped MAC bit", (r) => {
      const f = r.relay.frame({ kind: "ping", pingId: 9n });
      f[5] ^= 1;
      return f;
    }, "bad_mac"],
    ["reserved id 12", (r) => r.relay.rawFrame(Uint8Array.of(12, 0)), "bad_packet"],
    [
      "OOB_SEND from the relay",
      (r) => r.relay.rawFrame(new Uint8Array(40).fill(6, 0, 1)),
      "bad_packet",
    ],
    ["ROUTING_REQUEST from the relay", (r) => r.relay.rawFrame(new Uint8Array(33)), "bad_packet"],
    ["one-byte packet", (r) => r.relay.rawFrame(Uint8Array.of(16)), "bad_packet"],
  ];
  for (const [name, make, reason] of cases) {
    const r = newRig();
    confirm(r);
    toClient(r, make(r), 1);
    const c = closed(r);
    assert.ok(c, name);
    assert.equal(c.reason, reason, name);
    assert.equal(c.fault, "peer", name);
    assert.equal(r.client.pollTransmit(r.now), null, `${name}: nothing more is written`);
  }
});

Deno.test("disconnected is terminal: sends refused, online peers reported offline", () => {
  const r = newRig();
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  r.client.sendData(peer, Uint8Array.of(1));
  r.client.close();
  const ev = collect(r);
  assert.deepEqual(ev.slice(-2).map((e) => e.type), ["offline", "closed"]);
  const c = ev.at(-1) as Extract<RelayEvent, { type: "closed" }>;
  assert.equal(c.fault, "local");
  assert.equal(c.unsent, 1);
  const again = r.client.sendData(peer, Uint8Array.of(1));
  assert.equal(again.ok, false);
  r.client.receive(Uint8Array.of(1, 2, 3), r.now);
  r.client.tick(r.now + 100_000);
  assert.equal(r.client.takeEvents().length, 0);
});

Deno.test("sending: DATA needs an online peer; OOB is 1..1024 bytes; onion has a floor", () => {
  const r = newRig();
  const peer = newKeyPair(seededRandom(3)).publicKey;
  assert.equal(
    (r.client.sendOob(peer, Uint8Array.of(1)) as { reason: string }).reason,
    "not_confirmed",
  );
  confirm(r);
  assert.equal(
    (r.client.sendData(peer, Uint8Array.of(1)) as { reason: string }).reason,
    "not_online",
  );
  assert.ok(r.client.sendOob(peer, new Uint8Array(1024)).ok);
  assert.equal(r.client.sendOob(peer, new Uint8Array(1025)).ok, false);
  assert.equal(r.client.sendOob(peer, new Uint8Array(0)).ok, false);
  assert.equal(r.client.sendOnion(new Uint8Array(158)).ok, false);
  assert.ok(r.client.sendOnion(new Uint8Array(159)).ok);
  routeOnline(r, peer);
  assert.equal(r.client.sendData(peer, new Uint8Array(2032)).ok, false);
  assert.ok(r.client.sendData(peer, new Uint8Array(2031)).ok);
  flush(r);
  // The routing request is a priority packet: it overtakes the OOB and onion queued before it.
  const kinds = r.seen.map((p) => p.kind);
  assert.deepEqual(kinds.filter((k) => k !== "ping"), [
    "routing_request",
    "oob_send",
    "onion_request",
    "data",
  ]);
});

Deno.test("backpressure: congested above the high mark, refused at the limit, drained below low", () => {
  const r = newRig({ dataQueueHigh: 10_000, dataQueueLow: 2_000, dataQueueMax: 20_000 });
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  collect(r);
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < 100; i++) {
    const res = r.client.sendData(peer, new Uint8Array(999));
    if (res.ok) accepted++;
    else {
      refused++;
      assert.equal(res.reason, "queue_full");
    }
  }
  assert.equal(accepted, 20);
  assert.equal(refused, 80);
  assert.ok(r.client.stats().dataQueuedBytes <= 20_000);
  assert.deepEqual(collect(r).map((e) => e.type), ["congested"]);
  for (let t = 0; t < 100 && r.client.stats().dataQueued > 0; t++) {
    r.now += 10;
    flush(r);
  }
  assert.deepEqual(collect(r).map((e) => e.type), ["drained"]);
  assert.equal(r.seen.filter((p) => p.kind === "data").length, 20);
});

Deno.test("pacing: data leaves at the initial rate (~1.5 MB/s), never in a burst", () => {
  const r = newRig({ dataQueueMax: 8 * 1024 * 1024, dataQueueHigh: 8 * 1024 * 1024 });
  confirm(r);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  flush(r);
  for (let i = 0; i < 4000; i++) r.client.sendData(peer, new Uint8Array(1024));
  let maxChunk = 0;
  const start = r.now;
  // 200 ms of 1 ms ticks; the socket takes everything at once.
  for (let t = 0; t < 200; t++) {
    for (;;) {
      const c = r.client.pollTransmit(r.now);
      if (c === null) break;
      maxChunk = Math.max(maxChunk, c.length);
      r.client.written(c.length, r.now);
    }
    r.now += 1;
  }
  const sentFrames = 4000 - r.client.stats().dataQueued;
  const bytes = sentFrames * 1043;
  const expected = (1_500_000 * (r.now - start)) / 1000;
  assert.ok(bytes <= expected + 8 * 1024, `sent ${bytes} B in 200 ms, pace allows ${expected}`);
  assert.ok(bytes >= expected * 0.8, `sent ${bytes} B in 200 ms, pace allows ${expected}`);
  assert.ok(maxChunk <= 8 * 1024, `largest write ${maxChunk} B`);
  // A data frame waiting on the pacer says when it may go.
  while (r.client.pollTransmit(r.now) !== null) r.client.written(Infinity, r.now);
  assert.ok(r.client.nextTransmitTime(r.now) > r.now);
});

Deno.test("partial writes: frames written one byte at a time arrive whole and in order", () => {
  const r = newRig();
  confirm(r, 1);
  const peer = newKeyPair(seededRandom(3)).publicKey;
  routeOnline(r, peer);
  flush(r, 1);
  r.seen.length = 0;
  for (let i = 0; i < 20; i++) r.client.sendData(peer, new Uint8Array(30).fill(i));
  for (let t = 0; t < 50; t++) {
    flush(r, 1);
    r.now += 5;
  }
  const data = r.seen.filter((p) => p.kind === "data") as Extract<RelayPacket, { kind: "data" }>[];
  assert.deepEqual(data.map((d) => d.data[0]), [...Array(20).keys()]);
});

Deno.test("proxy: SOCKS5 negotiation comes first, then the Tox handshake", () => {
  const r = newRig(undefined, true);
  r.client.transportConnected(r.now);
  assert.equal(r.client.state, "proxy");
  const greeting = r.client.pollTransmit(r.now)!;
  assert.deepEqual(greeting, Uint8Array.of(5, 1, 0));
  r.client.written(3, r.now);
  r.client.receive(Uint8Array.of(5, 0), r.now);
  const req = r.client.pollTransmit(r.now)!;
  assert.deepEqual(req, Uint8Array.of(5, 1, 0, 1, 127, 0, 0, 1, 0x82, 0xa5));
  r.client.written(req.length, r.now);
  r.client.receive(Uint8Array.of(5, 0, 0, 1, 0, 0, 0, 0, 0, 0), r.now);
  assert.equal(r.client.state, "unconfirmed");
  const hello = r.client.pollTransmit(r.now)!;
  assert.equal(hello.length, 128);
});

Deno.test("proxy: a refusal closes with proxy_failed and never falls back to direct", () => {
  const r = newRig(undefined, true);
  r.client.transportConnected(r.now);
  r.client.written(r.client.pollTransmit(r.now)!.length, r.now);
  r.client.receive(Uint8Array.of(5, 0), r.now);
  r.client.written(r.client.pollTransmit(r.now)!.length, r.now);
  r.client.receive(Uint8Array.of(5, 5, 0, 1, 0, 0, 0, 0, 0, 0), r.now);
  const c = closed(r)!;
  assert.equal(c.reason, "proxy_failed");
  assert.match(c.message, /refused/);
  assert.equal(r.client.pollTransmit(r.now), null);
});

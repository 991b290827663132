/**
 * The relay server core (TCP_server.c behaviour), fed bytes and time only: raw clients built
 * from the handshake/framing/packet codecs check it packet by packet, and our RelayClient
 * checks it end to end. Then the same core behind real sockets (tools/testbed/routing_relay.ts)
 * with in-thread RelayConnections, including the drop-DATA and stop-reading faults.
 */
import assert from "node:assert/strict";
import { type KeyPair, newKeyPair } from "../daemon/core/common/crypto.ts";
import {
  CLIENT_HANDSHAKE_SIZE,
  completeClientHandshake,
  createClientHandshake,
  type SecureSession,
  SERVER_HANDSHAKE_SIZE,
} from "../daemon/core/tcp_common/handshake.ts";
import { FrameReader, frameSize, openFrame, sealFrame } from "../daemon/core/tcp_common/framing.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  NUM_CLIENT_CONNECTIONS,
  PacketId,
  type RelayPacket,
} from "../daemon/core/tcp_common/packets.ts";
import { RelayClient, type RelayEvent } from "../daemon/core/relay_client/relay_client.ts";
import type { ForwardPolicy, RelayServerConfig } from "../daemon/core/relay_server/config.ts";
import type { ConnectionNumber, RelayServerEvent } from "../daemon/core/relay_server/events.ts";
import { RelayServer } from "../daemon/core/relay_server/relay_server.ts";
import { RelayConnection } from "../workers/relay_connection.ts";
import { EventLog } from "./support/events.ts";
import { seededRandom } from "../tools/testbed/fake_relay.ts";
import { seededUnit } from "../tools/testbed/seeded_random.ts";
import { type RoutingRelay, startRoutingRelay } from "../tools/testbed/routing_relay.ts";

const T0 = 1_000_000;

/** The client half of one session, packet by packet (what RelayClient would never send). */
interface Client {
  readonly keys: KeyPair;
  readonly id: ConnectionNumber;
  readonly session: SecureSession;
  readonly reader: FrameReader;
}

type Closed = Extract<RelayServerEvent, { type: "closed" }>;

class Rig {
  readonly server: RelayServer;
  now = T0;
  readonly events: RelayServerEvent[] = [];
  #seed = 100;

  constructor(opts: { config?: Partial<RelayServerConfig>; forward?: ForwardPolicy } = {}) {
    this.server = new RelayServer({
      keys: newKeyPair(seededRandom(1)),
      random: seededRandom(2),
      ...opts,
    });
  }

  keys(): KeyPair {
    return newKeyPair(seededRandom(this.#seed++));
  }

  /** Handshake only: the relay has answered, the client is not confirmed yet. */
  open(keys: KeyPair = this.keys()): Client {
    const id = this.server.accept(this.now);
    const hs = createClientHandshake(keys, this.server.keys.publicKey, seededRandom(this.#seed++));
    this.server.receive(id, hs.packet, this.now);
    const reply = this.server.pollTransmit(id);
    assert.equal(reply?.length, SERVER_HANDSHAKE_SIZE);
    this.server.written(id, reply.length);
    const session = completeClientHandshake(hs.pending, reply);
    assert.ok(session, "the relay's 96 bytes open under K_hs");
    return { keys, id, session, reader: new FrameReader() };
  }

  /** Handshake plus a first PING, as c-toxcore's client does: confirmed, PONG taken. */
  connect(keys?: KeyPair): Client {
    const c = this.open(keys);
    this.send(c, { kind: "ping", pingId: 0x0102030405060708n });
    assert.deepEqual(this.take(c), [{ kind: "pong", pingId: 0x0102030405060708n }]);
    return c;
  }

  send(c: Client, p: RelayPacket): void {
    this.sendPlain(c, encodeRelayPacket(p));
  }

  sendPlain(c: Client, plain: Uint8Array): void {
    this.server.receive(c.id, sealFrame(c.session, plain), this.now);
  }

  /** Everything queued for `c`, written whole and decoded. */
  take(c: Client): RelayPacket[] {
    for (let chunk = this.server.pollTransmit(c.id); chunk !== null;) {
      c.reader.push(chunk.slice());
      this.server.written(c.id, chunk.length);
      chunk = this.server.pollTransmit(c.id);
    }
    const out: RelayPacket[] = [];
    for (;;) {
      const r = c.reader.next();
      if (r.kind === "need_more") return out;
      if (r.kind === "error") throw new Error(r.error.message);
      const plain = openFrame(c.session, r.box);
      assert.ok(plain, "every relay frame opens in nonce order");
      const d = decodeRelayPacket(plain);
      if (!d.ok) throw new Error(d.error.message);
      out.push(structuredClone(d.value));
    }
  }

  /** a and b route each other; both end up online (ids as the relay gave them). */
  link(a: Client, b: Client): { ab: number; ba: number } {
    this.send(a, { kind: "routing_request", publicKey: b.keys.publicKey });
    this.send(b, { kind: "routing_request", publicKey: a.keys.publicKey });
    const pa = this.take(a);
    const pb = this.take(b);
    const ab = routedId(pa, b.keys.publicKey);
    const ba = routedId(pb, a.keys.publicKey);
    assert.ok(pa.some((p) => p.kind === "connection_notification" && p.connectionId === ab));
    assert.ok(pb.some((p) => p.kind === "connection_notification" && p.connectionId === ba));
    return { ab, ba };
  }

  takeEvents(): RelayServerEvent[] {
    const e = this.server.takeEvents();
    this.events.push(...e);
    return e;
  }

  closed(id: ConnectionNumber): Closed | undefined {
    this.takeEvents();
    return this.events.find((e): e is Closed => e.type === "closed" && e.id === id);
  }

  advance(ms: number): void {
    this.now += ms;
    this.server.tick(this.now);
  }
}

function routedId(packets: RelayPacket[], publicKey: Uint8Array): number {
  const r = packets.find((p) =>
    p.kind === "routing_response" && bytesOf(p.publicKey) === bytesOf(publicKey)
  );
  assert.ok(r?.kind === "routing_response" && r.connectionId !== null, "routed");
  return r.connectionId;
}

function bytesOf(b: Uint8Array): string {
  return Array.from(b).join(",");
}

// ---- handshake and confirmation ----------------------------------------------------------

Deno.test("handshake: 128 bytes fed one at a time → exactly 96 back; confirmed on the first frame", () => {
  const rig = new Rig();
  const keys = rig.keys();
  const id = rig.server.accept(rig.now);
  const hs = createClientHandshake(keys, rig.server.keys.publicKey, seededRandom(5));
  assert.equal(hs.packet.length, CLIENT_HANDSHAKE_SIZE);
  for (let i = 0; i < CLIENT_HANDSHAKE_SIZE - 1; i++) {
    rig.server.receive(id, hs.packet.subarray(i, i + 1), rig.now);
  }
  assert.equal(rig.server.pollTransmit(id), null, "nothing before the 128th byte");
  assert.equal(rig.server.connection(id)?.status, "connected");
  rig.server.receive(id, hs.packet.subarray(CLIENT_HANDSHAKE_SIZE - 1), rig.now);
  assert.deepEqual(rig.server.takeWritable(), [id]);
  const reply = rig.server.pollTransmit(id)!;
  assert.equal(reply.length, SERVER_HANDSHAKE_SIZE);
  // Written a byte at a time: the rest is offered again until it is all out.
  for (let i = 0; i < reply.length; i++) {
    assert.equal(rig.server.pollTransmit(id)!.length, reply.length - i);
    rig.server.written(id, 1);
  }
  assert.equal(rig.server.pollTransmit(id), null);
  const session = completeClientHandshake(hs.pending, reply.slice())!;
  assert.ok(session);
  assert.equal(rig.server.connection(id)?.status, "unconfirmed");
  assert.deepEqual(rig.takeEvents().map((e) => e.type), ["handshake"]);
  assert.equal(rig.server.stats().confirmed, 0);
  assert.equal(
    rig.server.nextDeadline(),
    T0 + 10_000,
    "before confirmation only the handshake timeout runs (10 s from accept)",
  );

  rig.now += 5;
  const ping = sealFrame(session, encodeRelayPacket({ kind: "ping", pingId: 42n }));
  rig.server.receive(id, ping, rig.now);
  const ev = rig.takeEvents();
  assert.deepEqual(ev.map((e) => e.type), ["confirmed"]);
  assert.deepEqual(
    (ev[0] as Extract<RelayServerEvent, { type: "confirmed" }>).publicKey,
    keys.publicKey,
  );
  const pong = rig.server.pollTransmit(id)!;
  assert.equal(pong.length, frameSize(9), "PONG frame: 2 + 16 + 9 bytes");
  assert.deepEqual(
    decodeRelayPacket(openFrame(session, pong.subarray(2))!),
    { ok: true, value: { kind: "pong", pingId: 42n } },
  );
  assert.equal(rig.server.stats().confirmed, 1);
  assert.equal(rig.server.nextDeadline(), rig.now + 30_000, "first relay PING 30 s after");
});

Deno.test("handshake: bytes after the 128 in the same read are the encrypted stream", () => {
  const rig = new Rig();
  const id = rig.server.accept(rig.now);
  const hs = createClientHandshake(rig.keys(), rig.server.keys.publicKey, seededRandom(5));
  const glued = new Uint8Array(CLIENT_HANDSHAKE_SIZE + 2);
  glued.set(hs.packet);
  glued.set([0x08, 0x01], CLIENT_HANDSHAKE_SIZE); // a frame length of 2049
  rig.server.receive(id, glued, rig.now);
  assert.deepEqual(rig.takeEvents().map((e) => e.type), ["handshake", "closed"]);
  assert.equal(rig.closed(id)?.reason, "bad_frame");
});

Deno.test("handshake: a first frame split across reads confirms once it is whole", () => {
  const rig = new Rig();
  const c = rig.open();
  const f = sealFrame(c.session, encodeRelayPacket({ kind: "ping", pingId: 7n }));
  rig.server.receive(c.id, f.subarray(0, 3), rig.now);
  assert.equal(rig.server.connection(c.id)?.status, "unconfirmed");
  rig.server.receive(c.id, f.subarray(3), rig.now);
  assert.equal(rig.server.connection(c.id)?.status, "confirmed");
  assert.deepEqual(rig.take(c), [{ kind: "pong", pingId: 7n }]);
});

Deno.test("handshake made for another relay key: closed without a word (handshake_failed, peer)", () => {
  const rig = new Rig();
  const id = rig.server.accept(rig.now);
  const other = newKeyPair(seededRandom(77));
  const hs = createClientHandshake(rig.keys(), other.publicKey, seededRandom(5));
  rig.server.receive(id, hs.packet, rig.now);
  assert.equal(rig.server.pollTransmit(id), null);
  const c = rig.closed(id)!;
  assert.equal(c.reason, "handshake_failed");
  assert.equal(c.fault, "peer");
  assert.equal(c.publicKey, null);
  assert.equal(rig.server.connection(id), null);
});

Deno.test("a bad MAC as the very first frame closes before confirmation (bad_mac)", () => {
  const rig = new Rig();
  const c = rig.open();
  const f = sealFrame(c.session, encodeRelayPacket({ kind: "ping", pingId: 3n }));
  f[f.length - 1] ^= 1;
  rig.server.receive(c.id, f, rig.now);
  const closed = rig.closed(c.id)!;
  assert.equal(closed.reason, "bad_mac");
  assert.ok(!rig.events.some((e) => e.type === "confirmed"));
});

Deno.test("incoming and unconfirmed rings: the oldest waiting socket is evicted when a ring wraps", () => {
  const rig = new Rig({ config: { maxIncoming: 4 } });
  const silent = rig.server.accept(rig.now);
  for (let i = 0; i < 3; i++) rig.server.accept(rig.now);
  assert.equal(rig.closed(silent), undefined);
  rig.server.accept(rig.now); // lands on the silent socket's ring entry
  const ev = rig.closed(silent)!;
  assert.equal(ev.reason, "evicted");
  assert.equal(ev.fault, "local");

  const rig2 = new Rig({ config: { maxIncoming: 4 } });
  const first = rig2.open();
  for (let i = 0; i < 3; i++) rig2.open();
  assert.equal(rig2.closed(first.id), undefined);
  rig2.open();
  assert.equal(rig2.closed(first.id)?.reason, "evicted");
  // A confirmed client has left the rings: wrapping them again does not touch it.
  const confirmed = rig2.connect();
  for (let i = 0; i < 9; i++) rig2.open();
  assert.equal(rig2.server.connection(confirmed.id)?.status, "confirmed");
});

// ---- routing -------------------------------------------------------------------------------

Deno.test("routing: responses 16+slot, CONNECTION_NOTIFICATION to both, DATA both ways with each side's id", () => {
  const rig = new Rig();
  const a = rig.connect();
  const bKeys = rig.keys();
  const x = rig.keys().publicKey;
  rig.send(a, { kind: "routing_request", publicKey: x }); // slot 0 → id 16, never online
  rig.send(a, { kind: "routing_request", publicKey: bKeys.publicKey }); // id 17, b not here yet
  const toA = rig.server.pollTransmit(a.id)!;
  assert.equal(toA.length, 2 * frameSize(34), "two ROUTING_RESPONSEs of 34 bytes");
  a.reader.push(toA.slice());
  rig.server.written(a.id, toA.length);
  assert.deepEqual(rig.take(a), [
    { kind: "routing_response", connectionId: 16, publicKey: x },
    { kind: "routing_response", connectionId: 17, publicKey: bKeys.publicKey },
  ]);
  const b = rig.connect(bKeys);
  rig.send(b, { kind: "routing_request", publicKey: a.keys.publicKey });
  assert.deepEqual(rig.take(b), [
    { kind: "routing_response", connectionId: 16, publicKey: a.keys.publicKey },
    { kind: "connection_notification", connectionId: 16 },
  ]);
  assert.deepEqual(rig.take(a), [{ kind: "connection_notification", connectionId: 17 }]);
  const linked = rig.takeEvents().find((e) => e.type === "linked");
  assert.deepEqual(linked, {
    type: "linked",
    id: b.id,
    connectionId: 16,
    peer: a.id,
    peerConnectionId: 17,
  });

  rig.send(a, { kind: "data", connectionId: 17, data: Uint8Array.of(1, 2, 3) });
  const toB = rig.server.pollTransmit(b.id)!;
  assert.equal(toB.length, frameSize(4), "DATA keeps its length; only the id byte changes");
  b.reader.push(toB.slice());
  rig.server.written(b.id, toB.length);
  assert.deepEqual(rig.take(b), [{ kind: "data", connectionId: 16, data: Uint8Array.of(1, 2, 3) }]);
  rig.send(b, { kind: "data", connectionId: 16, data: Uint8Array.of(9) });
  assert.deepEqual(rig.take(a), [{ kind: "data", connectionId: 17, data: Uint8Array.of(9) }]);
  assert.equal(rig.server.stats().dataForwarded, 2);
  assert.deepEqual(
    [rig.server.connection(a.id)?.routes, rig.server.connection(a.id)?.online],
    [2, 1],
  );
});

Deno.test("routing: asking again for a routed key answers the same id and registers nothing new", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  rig.send(a, { kind: "routing_request", publicKey: b.keys.publicKey });
  assert.deepEqual(rig.take(a), [
    { kind: "routing_response", connectionId: 16, publicKey: b.keys.publicKey },
  ]);
  assert.deepEqual(rig.take(b), [], "no second CONNECTION_NOTIFICATION");
  assert.equal(rig.server.connection(a.id)?.routes, 1);
});

Deno.test("routing refused with rpid 0: our own key, and a 241st key when all 240 slots are used", () => {
  const rig = new Rig();
  const a = rig.connect();
  rig.send(a, { kind: "routing_request", publicKey: a.keys.publicKey });
  const own = rig.server.pollTransmit(a.id)!;
  assert.equal(own.length, frameSize(34));
  a.reader.push(own.slice());
  rig.server.written(a.id, own.length);
  assert.deepEqual(rig.take(a), [
    { kind: "routing_response", connectionId: null, publicKey: a.keys.publicKey },
  ]);
  assert.equal(rig.server.connection(a.id)?.routes, 0);

  const keys: Uint8Array[] = [];
  for (let i = 0; i <= NUM_CLIENT_CONNECTIONS; i++) {
    const pk = new Uint8Array(32).fill(i & 0xff);
    pk[0] = i >> 8;
    pk[31] = 0xaa;
    keys.push(pk);
    rig.send(a, { kind: "routing_request", publicKey: pk });
  }
  const got = rig.take(a);
  assert.equal(got.length, NUM_CLIENT_CONNECTIONS + 1);
  got.forEach((p, i) => {
    assert.equal(p.kind, "routing_response");
    if (p.kind !== "routing_response") return;
    assert.deepEqual(p.publicKey, keys[i]);
    assert.equal(p.connectionId, i < NUM_CLIENT_CONNECTIONS ? 16 + i : null);
  });
  // A freed slot is taken by the next request (the lowest free one, as TCP_server.c).
  rig.send(a, { kind: "disconnect_notification", connectionId: 20 });
  rig.send(a, { kind: "routing_request", publicKey: keys[NUM_CLIENT_CONNECTIONS] });
  assert.deepEqual(rig.take(a), [
    { kind: "routing_response", connectionId: 20, publicKey: keys[NUM_CLIENT_CONNECTIONS] },
  ]);
});

Deno.test("DISCONNECT_NOTIFICATION from a client frees its slot and tells the peer with the peer's id; routing again relinks", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  rig.send(b, { kind: "routing_request", publicKey: new Uint8Array(32).fill(5) }); // b: 16
  rig.take(b);
  const { ab, ba } = rig.link(a, b);
  assert.deepEqual([ab, ba], [16, 17]);
  rig.send(a, { kind: "disconnect_notification", connectionId: ab });
  assert.deepEqual(rig.take(b), [{ kind: "disconnect_notification", connectionId: 17 }]);
  assert.deepEqual(rig.take(a), [], "the sender is not answered");
  assert.equal(rig.server.connection(a.id)?.routes, 0);
  assert.deepEqual(
    [rig.server.connection(b.id)?.routes, rig.server.connection(b.id)?.online],
    [2, 0],
    "b keeps its registration",
  );
  // DATA from b on its now-offline slot is dropped, not forwarded, and b stays.
  rig.send(b, { kind: "data", connectionId: 17, data: Uint8Array.of(1) });
  assert.equal(rig.server.stats().dataDroppedOffline, 1);
  assert.equal(rig.server.connection(b.id)?.status, "confirmed");
  // a routes b again: b's registered slot makes them both online at once.
  rig.send(a, { kind: "routing_request", publicKey: b.keys.publicKey });
  assert.deepEqual(rig.take(a), [
    { kind: "routing_response", connectionId: 16, publicKey: b.keys.publicKey },
    { kind: "connection_notification", connectionId: 16 },
  ]);
  assert.deepEqual(rig.take(b), [{ kind: "connection_notification", connectionId: 17 }]);
});

Deno.test("a client whose socket ends: online peers get DISCONNECT_NOTIFICATION, merely registered ones hear nothing", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  const c = rig.connect();
  rig.link(a, b);
  rig.send(c, { kind: "routing_request", publicKey: a.keys.publicKey }); // c → a only
  rig.take(c);
  rig.server.closed(a.id);
  const ev = rig.closed(a.id)!;
  assert.deepEqual([ev.reason, ev.fault], ["socket_closed", "network"]);
  assert.deepEqual(ev.publicKey, a.keys.publicKey);
  assert.deepEqual(rig.take(b), [{ kind: "disconnect_notification", connectionId: 16 }]);
  assert.deepEqual(rig.take(c), []);
  assert.equal(rig.server.stats().confirmed, 2);
  assert.equal(rig.server.pollTransmit(a.id), null);
  rig.server.closed(a.id); // a second report of the same end changes nothing
  assert.equal(rig.takeEvents().length, 0);
});

Deno.test("the same key connecting again replaces the old session; the peer sees offline, then online on routing", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  const a2 = rig.connect(a.keys); // confirmed by its PING: the old session goes
  const old = rig.closed(a.id)!;
  assert.deepEqual([old.reason, old.fault], ["replaced", "local"]);
  assert.deepEqual(rig.take(b), [{ kind: "disconnect_notification", connectionId: 16 }]);
  rig.send(a2, { kind: "routing_request", publicKey: b.keys.publicKey });
  assert.deepEqual(rig.take(a2), [
    { kind: "routing_response", connectionId: 16, publicKey: b.keys.publicKey },
    { kind: "connection_notification", connectionId: 16 },
  ]);
  assert.deepEqual(rig.take(b), [{ kind: "connection_notification", connectionId: 16 }]);
  assert.equal(rig.server.stats().confirmed, 2);
});

Deno.test("CONNECTION_NOTIFICATION from a client is ignored, whatever its id", () => {
  const rig = new Rig();
  const a = rig.connect();
  rig.sendPlain(a, Uint8Array.of(PacketId.CONNECTION_NOTIFICATION, 3));
  rig.send(a, { kind: "connection_notification", connectionId: 40 });
  assert.deepEqual(rig.take(a), []);
  assert.equal(rig.server.connection(a.id)?.status, "confirmed");
});

// ---- OOB, ping, onion ----------------------------------------------------------------------

Deno.test("OOB_SEND to a connected key → OOB_RECV with the sender's key; to an absent key dropped silently", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  const data = new Uint8Array(1024).fill(0x5a);
  rig.send(a, { kind: "oob_send", publicKey: b.keys.publicKey, data });
  const toB = rig.server.pollTransmit(b.id)!;
  assert.equal(toB.length, frameSize(1 + 32 + 1024));
  b.reader.push(toB.slice());
  rig.server.written(b.id, toB.length);
  assert.deepEqual(rig.take(b), [{ kind: "oob_recv", publicKey: a.keys.publicKey, data }]);
  rig.send(a, { kind: "oob_send", publicKey: new Uint8Array(32).fill(8), data: Uint8Array.of(1) });
  assert.deepEqual(rig.take(a), []);
  assert.deepEqual(rig.take(b), []);
  const s = rig.server.stats();
  assert.deepEqual([s.oobForwarded, s.oobDroppedNoTarget], [1, 1]);
});

Deno.test("PING → PONG with the same id; the relay pings at 30 s and closes 10 s after an unanswered PING", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  rig.send(a, { kind: "ping", pingId: 0xffff_ffff_ffff_fffen });
  assert.deepEqual(rig.take(a), [{ kind: "pong", pingId: 0xffff_ffff_ffff_fffen }]);
  /** b answers every relay PING; a only when told to. */
  const answerB = () => {
    for (const p of rig.take(b)) {
      if (p.kind === "ping") rig.send(b, { kind: "pong", pingId: p.pingId });
    }
  };

  assert.equal(rig.server.nextDeadline(), T0 + 30_000);
  rig.advance(29_999);
  assert.deepEqual(rig.take(a), []);
  rig.advance(1);
  answerB();
  const [ping] = rig.take(a);
  assert.equal(ping.kind, "ping");
  if (ping.kind !== "ping") return;
  assert.equal(rig.server.nextDeadline(), T0 + 40_000, "a's PONG is due 10 s after");
  rig.send(a, { kind: "pong", pingId: ping.pingId ^ 1n }); // not ours: ignored
  assert.equal(rig.server.nextDeadline(), T0 + 40_000);
  rig.send(a, { kind: "pong", pingId: ping.pingId });
  assert.equal(rig.server.nextDeadline(), T0 + 60_000, "answered: next PING in 30 s");
  rig.advance(30_000);
  answerB();
  assert.equal(rig.take(a)[0]?.kind, "ping");
  rig.advance(9_999);
  assert.equal(rig.server.connection(a.id)?.status, "confirmed");
  rig.advance(1);
  const ev = rig.closed(a.id)!;
  assert.deepEqual([ev.reason, ev.fault], ["ping_timeout", "peer"]);
  assert.match(ev.message, /no PONG within 10000 ms/);
  assert.deepEqual(rig.take(b), [{ kind: "disconnect_notification", connectionId: 16 }]);
  assert.equal(rig.server.connection(b.id)?.status, "confirmed");
});

Deno.test("ONION_REQUEST is dropped silently (no onion module); FORWARD_REQUEST closes (no forwarding)", () => {
  const rig = new Rig();
  const a = rig.connect();
  rig.send(a, { kind: "onion_request", data: new Uint8Array(200).fill(1) });
  assert.deepEqual(rig.take(a), []);
  assert.equal(rig.server.stats().onionDropped, 1);
  assert.equal(rig.server.connection(a.id)?.status, "confirmed");
  rig.send(a, { kind: "forward_request", data: Uint8Array.of(2, 127, 0, 0, 1, 0, 1, 9) });
  assert.equal(rig.closed(a.id)?.reason, "bad_packet");
});

// ---- invalid input closes only that connection ----------------------------------------------

const BAD: [string, (rig: Rig, c: Client) => void, string, RegExp][] = [
  [
    "frame length 2049",
    (r, c) => r.server.receive(c.id, Uint8Array.of(0x08, 0x01), r.now),
    "bad_frame",
    /2049 exceeds 2048/,
  ],
  [
    "frame length 16 (no packet)",
    (r, c) => r.server.receive(c.id, Uint8Array.of(0, 16), r.now),
    "bad_frame",
    /no room/,
  ],
  [
    "bad MAC",
    (r, c) => {
      const f = sealFrame(c.session, encodeRelayPacket({ kind: "ping", pingId: 1n }));
      f[5] ^= 0x40;
      r.server.receive(c.id, f, r.now);
    },
    "bad_mac",
    /authentication/,
  ],
  ["one-byte plaintext", (r, c) => r.sendPlain(c, Uint8Array.of(16)), "bad_packet", /minimum is 2/],
  ["reserved id 13", (r, c) => r.sendPlain(c, Uint8Array.of(13, 0)), "bad_packet", /reserved/],
  [
    "ROUTING_REQUEST of 34 bytes",
    (r, c) => r.sendPlain(c, new Uint8Array(34)),
    "bad_packet",
    /expected exactly 33/,
  ],
  [
    "PING of 8 bytes",
    (r, c) => r.sendPlain(c, new Uint8Array(8).fill(4)),
    "bad_packet",
    /expected 9/,
  ],
  [
    "PONG with id 0",
    (r, c) => r.sendPlain(c, Uint8Array.of(PacketId.PONG, 0, 0, 0, 0, 0, 0, 0, 0)),
    "bad_packet",
    /id 0/,
  ],
  [
    "OOB_SEND with 1025 bytes",
    (r, c) => {
      const p = new Uint8Array(1 + 32 + 1025);
      p[0] = PacketId.OOB_SEND;
      r.sendPlain(c, p);
    },
    "bad_packet",
    /maximum 1024/,
  ],
  [
    "ROUTING_RESPONSE from a client",
    (r, c) =>
      r.send(c, { kind: "routing_response", connectionId: 16, publicKey: new Uint8Array(32) }),
    "bad_packet",
    /never by clients/,
  ],
  [
    "OOB_RECV from a client",
    (r, c) =>
      r.send(c, { kind: "oob_recv", publicKey: new Uint8Array(32), data: Uint8Array.of(1) }),
    "bad_packet",
    /never by clients/,
  ],
  [
    "ONION_RESPONSE from a client",
    (r, c) => r.send(c, { kind: "onion_response", data: Uint8Array.of(1) }),
    "bad_packet",
    /never by clients/,
  ],
  [
    "DISCONNECT_NOTIFICATION for an unused id",
    (r, c) => r.send(c, { kind: "disconnect_notification", connectionId: 200 }),
    "bad_packet",
    /200, which is not routed/,
  ],
  [
    "DATA on an unused connection id",
    (r, c) => r.send(c, { kind: "data", connectionId: 99, data: Uint8Array.of(1) }),
    "bad_packet",
    /DATA on connection id 99/,
  ],
];

for (const [name, act, reason, message] of BAD) {
  Deno.test(`invalid input closes only that connection: ${name} (${reason})`, () => {
    const rig = new Rig();
    const a = rig.connect();
    const b = rig.connect();
    const bad = rig.connect();
    rig.link(a, b);
    const { ab: aToBad } = rig.link(a, bad);
    act(rig, bad);
    const ev = rig.closed(bad.id)!;
    assert.ok(ev, "the offender is closed");
    assert.equal(ev.reason, reason);
    assert.equal(ev.fault, "peer");
    assert.match(ev.message, message);
    assert.equal(rig.server.pollTransmit(bad.id), null);
    assert.deepEqual(rig.take(a), [{ kind: "disconnect_notification", connectionId: aToBad }]);
    // Everyone else carries on.
    rig.send(a, { kind: "data", connectionId: 16, data: Uint8Array.of(4, 2) });
    assert.deepEqual(rig.take(b), [{ kind: "data", connectionId: 16, data: Uint8Array.of(4, 2) }]);
    assert.equal(rig.server.stats().confirmed, 2);
    assert.equal(rig.events.filter((e) => e.type === "closed").length, 1);
  });
}

// ---- policy and bounds -------------------------------------------------------------------

Deno.test("forward policy hook: asked for DATA and OOB with both clients; false drops silently", () => {
  const asked: string[] = [];
  const forward: ForwardPolicy = (from, to, packet, now) => {
    assert.equal(now, T0);
    asked.push(`${from.id}>${to.id}:${packet.kind}:${packet.data[0]}`);
    return packet.data[0] !== 0xff;
  };
  const rig = new Rig({ forward });
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  rig.send(a, { kind: "data", connectionId: 16, data: Uint8Array.of(1) });
  rig.send(a, { kind: "data", connectionId: 16, data: Uint8Array.of(0xff) });
  rig.send(a, { kind: "oob_send", publicKey: b.keys.publicKey, data: Uint8Array.of(0xff) });
  rig.send(a, { kind: "data", connectionId: 16, data: Uint8Array.of(2) });
  rig.send(a, { kind: "ping", pingId: 5n }); // control packets never ask the hook
  assert.deepEqual(rig.take(b), [
    { kind: "data", connectionId: 16, data: Uint8Array.of(1) },
    { kind: "data", connectionId: 16, data: Uint8Array.of(2) },
  ]);
  assert.deepEqual(rig.take(a), [{ kind: "pong", pingId: 5n }]);
  assert.deepEqual(asked, [
    `${a.id}>${b.id}:data:1`,
    `${a.id}>${b.id}:data:255`,
    `${a.id}>${b.id}:oob:255`,
    `${a.id}>${b.id}:data:2`,
  ]);
  const s = rig.server.stats();
  assert.deepEqual([s.dataForwarded, s.dataDroppedPolicy, s.oobDroppedPolicy], [2, 1, 1]);
  assert.equal(rig.server.connection(a.id)?.status, "confirmed");
});

Deno.test("outbox bound: DATA past dataQueueMax is dropped and counted; control packets past queueMax close the client that does not read", () => {
  const rig = new Rig({ config: { dataQueueMax: 4096, queueMax: 8192 } });
  const a = rig.connect();
  const b = rig.connect();
  const c = rig.connect();
  rig.link(a, b);
  rig.link(b, c);
  // b stops reading: 4 frames of 1001 bytes (1019 on the wire) fit under 4096, 6 are dropped.
  for (let i = 0; i < 10; i++) {
    rig.send(a, { kind: "data", connectionId: 16, data: new Uint8Array(1000).fill(i) });
  }
  const s = rig.server.stats();
  assert.deepEqual([s.dataForwarded, s.droppedQueueFull], [4, 6]);
  assert.deepEqual(
    [rig.server.connection(b.id)?.queuedBytes, rig.server.connection(b.id)?.droppedQueueFull],
    [4 * frameSize(1001), 6],
  );
  // Control packets still queue above the data bound ...
  rig.send(c, { kind: "disconnect_notification", connectionId: 16 });
  rig.send(c, { kind: "routing_request", publicKey: b.keys.publicKey });
  assert.equal(rig.server.connection(b.id)?.status, "confirmed");
  // ... until b's PING flood, never read, runs past queueMax.
  let sent = 0;
  while (rig.server.connection(b.id) !== null && sent < 10_000) {
    rig.send(b, { kind: "ping", pingId: BigInt(++sent) });
  }
  const ev = rig.closed(b.id)!;
  assert.deepEqual([ev.reason, ev.fault], ["queue_overflow", "peer"]);
  assert.match(ev.message, /limit 8192/);
  // 4076 bytes of DATA and two notifications (20 each) owed: 150 PONGs (27 each) still fit.
  assert.equal(sent, 151, `${sent} PONGs of 27 bytes fill 8192 − 4116`);
  assert.ok(ev.unsent > 150);
  assert.ok(rig.take(a).some((p) => p.kind === "disconnect_notification"));
  assert.ok(rig.take(c).some((p) => p.kind === "disconnect_notification"));
});

Deno.test("a large backlog leaves in chunks of at most maxWriteChunk, frames whole, in order", () => {
  const rig = new Rig({ config: { maxWriteChunk: 4096 } });
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  for (let i = 0; i < 20; i++) {
    rig.send(a, { kind: "data", connectionId: 16, data: new Uint8Array(999).fill(i) });
  }
  const sizes: number[] = [];
  for (let chunk = rig.server.pollTransmit(b.id); chunk !== null;) {
    sizes.push(chunk.length);
    b.reader.push(chunk.slice());
    rig.server.written(b.id, chunk.length);
    chunk = rig.server.pollTransmit(b.id);
  }
  assert.ok(sizes.every((n) => n <= 4096 && n % frameSize(1000) === 0), `${sizes}`);
  const got = rig.take(b);
  assert.deepEqual(got.map((p) => p.kind === "data" ? p.data[0] : -1), [...Array(20).keys()]);
});

// ---- timers at scale ------------------------------------------------------------------------

Deno.test("handshake timeout: no handshake, or no frame after it, within 10 s of accept closes (handshake_timeout, peer)", () => {
  const rig = new Rig();
  const silent = rig.server.accept(rig.now);
  rig.now += 4_000;
  const half = rig.open(); // accepted at T0 + 4 s, answered, no frame yet
  const ok = rig.connect(); // confirmed at T0 + 4 s: its timer is the PING at 30 s
  assert.equal(rig.server.connection(silent)?.deadline, T0 + 10_000);
  assert.equal(rig.server.nextDeadline(), T0 + 10_000);
  rig.advance(5_999);
  assert.equal(rig.closed(silent), undefined);
  rig.advance(1);
  const ev = rig.closed(silent)!;
  assert.deepEqual([ev.reason, ev.fault, ev.publicKey], ["handshake_timeout", "peer", null]);
  assert.match(ev.message, /no complete 128-byte handshake within 10000 ms/);
  assert.equal(rig.server.nextDeadline(), T0 + 14_000);
  rig.advance(4_000);
  const ev2 = rig.closed(half.id)!;
  assert.equal(ev2.reason, "handshake_timeout");
  assert.deepEqual(ev2.publicKey, half.keys.publicKey);
  assert.match(ev2.message, /no frame after the handshake/);
  assert.equal(rig.server.connection(ok.id)?.status, "confirmed");
  assert.equal(rig.server.nextDeadline(), T0 + 34_000);
  const s = rig.server.stats();
  assert.deepEqual([s.closed.handshake_timeout, s.connections, s.timerChecks], [2, 1, 2]);
});

Deno.test("handshakeTimeoutMs Infinity is c-toxcore's way: no timer, only the rings evict", () => {
  const rig = new Rig({ config: { handshakeTimeoutMs: Infinity } });
  const id = rig.server.accept(rig.now);
  const half = rig.open();
  assert.equal(rig.server.nextDeadline(), Infinity);
  rig.advance(3_600_000);
  assert.equal(rig.server.connection(id)?.status, "connected");
  assert.equal(rig.server.connection(half.id)?.status, "unconfirmed");
});

Deno.test("timers at scale: 20,000 sockets; tick() looks only at the due ones, nextDeadline() is the earliest", () => {
  const n = 20_000;
  const rig = new Rig({ config: { maxIncoming: n } });
  for (let i = 0; i < n; i++) rig.server.accept(T0 + i); // deadlines 1 ms apart
  assert.equal(rig.server.nextDeadline(), T0 + 10_000);
  for (let i = 0; i < 10_000; i++) rig.server.tick(T0 + 9_999);
  assert.equal(rig.server.stats().timerChecks, 0, "nothing due: no connection looked at");
  rig.server.tick(T0 + 10_499);
  let s = rig.server.stats();
  assert.deepEqual([s.timerChecks, s.closed.handshake_timeout, s.connections], [500, 500, n - 500]);
  assert.equal(rig.server.nextDeadline(), T0 + 10_500);
  rig.server.tick(T0 + 10_000 + n);
  s = rig.server.stats();
  assert.deepEqual([s.timerChecks, s.connections], [n, 0]);
  assert.equal(rig.server.nextDeadline(), Infinity);
});

Deno.test("timers: through PINGs, PONGs, closes and new sockets, nextDeadline() is the earliest deadline, none is overdue, only the deaf time out", () => {
  const rig = new Rig({
    config: { pingIntervalMs: 3_000, pingTimeoutMs: 1_000, handshakeTimeoutMs: 2_000 },
  });
  const rnd = seededUnit(11);
  const diligent: Client[] = [];
  const deaf: Client[] = [];
  const check = () => {
    const ds = rig.server.connectionIds().map((id) => rig.server.connection(id)!.deadline);
    assert.equal(rig.server.nextDeadline(), Math.min(Infinity, ...ds));
    assert.ok(ds.every((d) => d > rig.now), "nothing overdue after a tick");
  };
  for (let step = 0; step < 600; step++) {
    const r = rnd();
    if (r < 0.5) rig.advance(Math.floor(rnd() * 700));
    else if (r < 0.6 && step < 400) {
      (step % 2 === 0 ? diligent : deaf).push(rig.connect());
    } else if (r < 0.7) rig.server.accept(rig.now); // never sends a byte
    else if (r < 0.75 && diligent.length > 10) {
      const gone = diligent.splice(Math.floor(rnd() * diligent.length), 1)[0];
      rig.server.closed(gone.id);
    }
    for (const c of diligent) {
      for (const p of rig.take(c)) {
        if (p.kind === "ping") rig.send(c, { kind: "pong", pingId: p.pingId });
      }
    }
    check();
  }
  rig.advance(4_000);
  check();
  rig.takeEvents();
  const closedBy = (c: Client) => rig.closed(c.id)?.reason;
  assert.ok(diligent.length > 5 && deaf.length > 5, `${diligent.length}/${deaf.length}`);
  assert.deepEqual(diligent.map(closedBy), diligent.map(() => undefined));
  assert.deepEqual(deaf.map(closedBy), deaf.map(() => "ping_timeout"));
});

// ---- rate limits ------------------------------------------------------------------------------

Deno.test("OOB_SEND rate limit: a burst passes, the excess is dropped and counted, tokens come back with time; a flood closes (oob_flood, peer)", () => {
  const rig = new Rig({ config: { oobLimit: { perSecond: 10, burst: 20, closeAfter: 50 } } });
  const a = rig.connect();
  const b = rig.connect();
  const oob = (i: number) =>
    rig.send(a, { kind: "oob_send", publicKey: b.keys.publicKey, data: Uint8Array.of(i) });
  for (let i = 0; i < 25; i++) oob(i);
  assert.equal(rig.take(b).length, 20);
  let s = rig.server.stats();
  assert.deepEqual([s.oobForwarded, s.oobDroppedRate], [20, 5]);
  assert.equal(rig.server.connection(a.id)?.droppedRate, 5);
  // Five below zero; a second brings 10 tokens: 5 pass, the 6th is dropped.
  rig.now += 1_000;
  for (let i = 0; i < 6; i++) oob(i);
  assert.equal(rig.take(b).length, 5);
  // A flood at one instant sinks from -1 to -50 in 49 packets, and closes.
  let sent = 0;
  while (rig.server.connection(a.id) !== null && sent < 1_000) {
    oob(0);
    sent++;
  }
  assert.equal(sent, 49);
  const ev = rig.closed(a.id)!;
  assert.deepEqual([ev.reason, ev.fault], ["oob_flood", "peer"]);
  assert.match(ev.message, /OOB_SEND flood: 50 packets over 10\/s/);
  assert.deepEqual(rig.take(b), [], "nothing of the flood reached b");
  s = rig.server.stats();
  assert.deepEqual([s.oobForwarded, s.oobDroppedRate, s.closed.oob_flood], [25, 55, 1]);
  assert.equal(rig.server.connection(b.id)?.status, "confirmed");
});

Deno.test("PING rate limit: past the burst PINGs go unanswered (counted); a flood closes (ping_flood) with the PONG queue bounded", () => {
  const rig = new Rig({ config: { pingLimit: { perSecond: 10, burst: 20, closeAfter: 100 } } });
  const a = rig.connect(); // its first PING took a token: 19 left
  for (let i = 1; i <= 30; i++) rig.send(a, { kind: "ping", pingId: BigInt(i) });
  const ids = rig.take(a).map((p) => p.kind === "pong" ? Number(p.pingId) : -1);
  assert.deepEqual(ids, [...Array(19).keys()].map((i) => i + 1));
  assert.equal(rig.server.stats().pingDroppedRate, 11);
  rig.now += 2_000; // -11 + 20 = 9 tokens
  let sent = 0;
  while (rig.server.connection(a.id) !== null && sent < 100_000) {
    rig.send(a, { kind: "ping", pingId: BigInt(++sent) });
  }
  assert.equal(sent, 9 + 100, "9 answered, then 100 refused");
  const ev = rig.closed(a.id)!;
  assert.deepEqual([ev.reason, ev.fault], ["ping_flood", "peer"]);
  assert.equal(ev.unsent, 9, "only the answered ones were ever queued");

  // Defaults: a client flooding PINGs and reading nothing costs at most 255 PONGs.
  const rig2 = new Rig();
  const c = rig2.connect();
  let n = 0;
  let peak = 0;
  while (rig2.server.connection(c.id) !== null && n < 100_000) {
    rig2.send(c, { kind: "ping", pingId: BigInt(++n) });
    peak = Math.max(peak, rig2.server.connection(c.id)?.peakQueuedBytes ?? 0);
  }
  assert.equal(rig2.closed(c.id)?.reason, "ping_flood");
  assert.equal(n, 255 + 1024);
  assert.equal(peak, 255 * frameSize(9));
});

Deno.test("route-change rate limit: ROUTING_REQUEST/DISCONNECT churn past the burst is dropped, so the peer hears little of it; a flood closes (routing_flood)", () => {
  const rig = new Rig({ config: { routingLimit: { perSecond: 5, burst: 10, closeAfter: 40 } } });
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b); // one token each
  for (let i = 0; i < 20; i++) {
    rig.send(
      a,
      i % 2 === 0
        ? { kind: "disconnect_notification", connectionId: 16 }
        : { kind: "routing_request", publicKey: b.keys.publicKey },
    );
  }
  // 9 changes passed (5 unroutes, 4 routes); the 11 after them did nothing, not even close
  // a for the DISCONNECT of an id that was no longer routed.
  const toB = rig.take(b);
  assert.equal(toB.filter((p) => p.kind === "disconnect_notification").length, 5);
  assert.equal(toB.filter((p) => p.kind === "connection_notification").length, 4);
  assert.equal(rig.take(a).filter((p) => p.kind === "routing_response").length, 4);
  assert.equal(rig.server.stats().routingDroppedRate, 11);
  assert.equal(rig.server.connection(a.id)?.status, "confirmed");
  let sent = 0;
  while (rig.server.connection(a.id) !== null && sent < 1_000) {
    rig.send(a, { kind: "routing_request", publicKey: new Uint8Array(32).fill(sent++ & 0xff) });
  }
  assert.equal(sent, 29, "from -11 to -40");
  const ev = rig.closed(a.id)!;
  assert.deepEqual([ev.reason, ev.fault], ["routing_flood", "peer"]);
  assert.deepEqual(rig.take(b), [], "a was not online with b when it went");
  assert.equal(rig.server.connection(b.id)?.status, "confirmed");
});

// ---- queue accounting -------------------------------------------------------------------------

Deno.test("queued bytes are what is owed on the wire: sealing leaves them, each partial write takes them; the total is the sum", () => {
  const rig = new Rig();
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  const total = () => rig.server.stats().queuedBytes;
  const owed = (c: Client) => rig.server.connection(c.id)!.queuedBytes;
  assert.equal(total(), 0);
  for (let i = 0; i < 3; i++) {
    rig.send(a, { kind: "data", connectionId: 16, data: new Uint8Array(100).fill(i) });
  }
  assert.deepEqual([owed(b), total()], [3 * frameSize(101), 3 * frameSize(101)]);
  const chunk = rig.server.pollTransmit(b.id)!;
  assert.equal(chunk.length, 3 * frameSize(101));
  assert.equal(owed(b), chunk.length, "sealed but unwritten is still owed");
  b.reader.push(chunk.slice(0, 100));
  rig.server.written(b.id, 100);
  assert.deepEqual([owed(b), total()], [chunk.length - 100, chunk.length - 100]);
  rig.send(b, { kind: "ping", pingId: 5n });
  assert.equal(owed(b), chunk.length - 100 + frameSize(9));
  assert.equal(total(), owed(a) + owed(b));
  rig.take(b);
  assert.deepEqual([owed(b), total()], [0, 0]);
  rig.send(a, { kind: "data", connectionId: 16, data: new Uint8Array(500) });
  assert.equal(total(), frameSize(501));
  rig.server.closed(b.id);
  assert.equal(total(), frameSize(2), "b's bytes are gone; a is owed its DISCONNECT_NOTIFICATION");
});

Deno.test("total queue bound: past totalQueueMax DATA to anyone is dropped (counted apart); control packets still queue; room comes back as clients read", () => {
  const rig = new Rig({ config: { dataQueueMax: 4096, queueMax: 8192, totalQueueMax: 6000 } });
  const a = rig.connect();
  const b = rig.connect();
  const c = rig.connect();
  rig.link(a, b); // a: b = 16
  rig.link(a, c); // a: c = 17
  const data = (id: number) =>
    rig.send(a, { kind: "data", connectionId: id, data: new Uint8Array(1000) });
  for (let i = 0; i < 5; i++) data(16); // 4 fit b's own bound (4076)
  for (let i = 0; i < 5; i++) data(17); // 1 fits the total (5095; 6114 would not)
  let s = rig.server.stats();
  assert.deepEqual([s.dataForwarded, s.droppedQueueFull, s.droppedTotalFull], [5, 1, 4]);
  assert.equal(s.queuedBytes, 5 * frameSize(1001));
  assert.equal(rig.server.connection(c.id)?.droppedQueueFull, 0, "c's own queue was not full");
  rig.send(c, { kind: "ping", pingId: 9n });
  assert.equal(rig.server.stats().queuedBytes, 5 * frameSize(1001) + frameSize(9), "PONG queued");
  assert.equal(rig.take(b).length, 4);
  data(17);
  data(17);
  s = rig.server.stats();
  assert.deepEqual([s.dataForwarded, s.droppedTotalFull], [7, 4]);
  assert.deepEqual(rig.take(c).map((p) => p.kind), ["data", "pong", "data", "data"]);
  assert.ok(s.peakQueuedBytes <= 6000 + frameSize(9), `${s.peakQueuedBytes}`);
});

Deno.test("slow reader: its queue stops at dataQueueMax and DATA to it is dropped (counted) while DATA to a reader keeps flowing", () => {
  const rig = new Rig({ config: { dataQueueMax: 64 * 1024 } });
  const a = rig.connect();
  const b = rig.connect();
  const slow = rig.connect();
  rig.link(a, b); // a: b = 16
  rig.link(a, slow); // a: slow = 17
  const got: number[] = [];
  for (let i = 0; i < 5_000; i++) {
    const data = new Uint8Array(500).fill(i & 0xff);
    data[0] = i >> 8;
    rig.send(a, { kind: "data", connectionId: 16, data });
    rig.send(a, { kind: "data", connectionId: 17, data });
    if (i % 50 === 49) {
      for (const p of rig.take(b)) if (p.kind === "data") got.push((p.data[0] << 8) | p.data[1]);
    }
  }
  assert.deepEqual(got, [...Array(5_000).keys()], "b got every packet, in order");
  const info = rig.server.connection(slow.id)!;
  const fit = Math.floor(64 * 1024 / frameSize(501));
  assert.equal(info.queuedBytes, fit * frameSize(501));
  assert.ok(info.peakQueuedBytes <= 64 * 1024);
  assert.equal(info.droppedQueueFull, 5_000 - fit);
  const s = rig.server.stats();
  assert.deepEqual([s.dataForwarded, s.droppedQueueFull, s.confirmed], [
    5_000 + fit,
    5_000 - fit,
    3,
  ]);
  // It reads at last: exactly what was queued arrives, in order.
  const late = rig.take(slow).filter((p) => p.kind === "data");
  assert.equal(late.length, fit);
  assert.ok(late.every((p, i) => p.kind === "data" && ((p.data[0] << 8) | p.data[1]) === i));
});

Deno.test("the packet queue keeps packets whole and in order through growth, compaction and partial writes", () => {
  const rig = new Rig({
    config: { maxWriteChunk: 4096, dataQueueMax: 1 << 20, queueMax: 1 << 21 },
  });
  const a = rig.connect();
  const b = rig.connect();
  rig.link(a, b);
  const rnd = seededUnit(5);
  const sent: number[][] = [];
  const got: number[][] = [];
  const read = (budget: number) => {
    for (let chunk = rig.server.pollTransmit(b.id); chunk !== null && budget > 0;) {
      const n = Math.min(budget, chunk.length);
      b.reader.push(chunk.slice(0, n));
      rig.server.written(b.id, n);
      budget -= n;
      chunk = rig.server.pollTransmit(b.id);
    }
    for (let r = b.reader.next(); r.kind === "frame"; r = b.reader.next()) {
      const d = decodeRelayPacket(openFrame(b.session, r.box)!);
      assert.ok(d.ok && d.value.kind === "data");
      got.push([d.value.data.length, d.value.data[0], d.value.data[d.value.data.length - 1]]);
    }
  };
  for (let step = 0; step < 4_000; step++) {
    if (rnd() < 0.55) {
      const len = 1 + Math.floor(rnd() ** 3 * 2030);
      const data = new Uint8Array(len).fill(step & 0xff);
      data[len - 1] = (step >> 8) & 0xff;
      rig.send(a, { kind: "data", connectionId: 16, data });
      sent.push([len, data[0], data[len - 1]]);
    } else {
      read(Math.floor(rnd() * 6_000));
    }
  }
  read(Infinity);
  assert.equal(rig.server.stats().droppedQueueFull, 0);
  assert.deepEqual(got, sent);
  assert.equal(rig.server.connection(b.id)?.queuedBytes, 0);
});

// ---- our RelayClient on both ends --------------------------------------------------------

interface Pair {
  readonly client: RelayClient;
  readonly id: ConnectionNumber;
  readonly events: RelayEvent[];
}

/** Move bytes both ways until nothing moves; writes and reads cut to `step` bytes. */
function shuttle(server: RelayServer, pairs: Pair[], now: number, step = Infinity): void {
  for (let moved = true, guard = 0; moved; guard++) {
    assert.ok(guard < 100_000, "shuttle does not settle");
    moved = false;
    for (const p of pairs) {
      for (let chunk = p.client.pollTransmit(now); chunk !== null;) {
        const n = Math.min(step, chunk.length);
        const part = chunk.slice(0, n);
        p.client.written(n, now);
        server.receive(p.id, part, now);
        moved = true;
        chunk = p.client.pollTransmit(now);
      }
      for (let chunk = server.pollTransmit(p.id); chunk !== null;) {
        const n = Math.min(step, chunk.length);
        const part = chunk.slice(0, n);
        server.written(p.id, n);
        p.client.receive(part, now);
        moved = true;
        chunk = server.pollTransmit(p.id);
      }
      p.events.push(...p.client.takeEvents());
    }
  }
}

function relayClientPair(step: number): void {
  const server = new RelayServer({ keys: newKeyPair(seededRandom(1)), random: seededRandom(2) });
  const pairs: Pair[] = [3, 4].map((seed) => {
    const random = seededRandom(seed);
    const client = new RelayClient({
      self: newKeyPair(random),
      relayPublicKey: server.keys.publicKey,
      random,
      now: T0,
    });
    const id = server.accept(T0);
    client.transportConnected(T0);
    return { client, id, events: [] };
  });
  const [a, b] = pairs;
  shuttle(server, pairs, T0, step);
  assert.equal(a.client.state, "confirmed");
  assert.equal(b.client.state, "confirmed");
  a.client.route(b.client.self.publicKey);
  b.client.route(a.client.self.publicKey);
  shuttle(server, pairs, T0, step);
  assert.ok(a.client.isOnline(b.client.self.publicKey));
  assert.ok(b.client.isOnline(a.client.self.publicKey));
  for (let i = 0; i < 5; i++) {
    assert.ok(a.client.sendData(b.client.self.publicKey, Uint8Array.of(0xa0, i)).ok);
    assert.ok(b.client.sendData(a.client.self.publicKey, new Uint8Array(1500).fill(i)).ok);
  }
  shuttle(server, pairs, T0, step);
  const dataOf = (p: Pair) =>
    p.events.flatMap((e) => e.type === "data" ? [Array.from(e.data.subarray(0, 2))] : []);
  assert.deepEqual(dataOf(b), [0, 1, 2, 3, 4].map((i) => [0xa0, i]));
  assert.deepEqual(dataOf(a), [0, 1, 2, 3, 4].map((i) => [i, i]));
  assert.ok(a.events.some((e) => e.type === "pong"), "the client's first PING was answered");
  // a leaves its route: b goes offline, both stay connected.
  a.client.unroute(b.client.self.publicKey);
  shuttle(server, pairs, T0, step);
  assert.ok(b.events.some((e) => e.type === "offline"));
  assert.equal(server.stats().confirmed, 2);
  assert.ok(
    !a.events.some((e) => e.type === "closed") && !b.events.some((e) => e.type === "closed"),
  );
}

Deno.test("RelayClient ↔ RelayServer ↔ RelayClient: confirm, route, online, DATA both ways, offline", () => {
  relayClientPair(Infinity);
});

Deno.test("RelayClient ↔ RelayServer ↔ RelayClient with every write and read cut to one byte", () => {
  relayClientPair(1);
});

// ---- over sockets --------------------------------------------------------------------------

async function socketClient(relay: RoutingRelay) {
  const self = newKeyPair();
  const log = new EventLog();
  const conn = new RelayConnection(
    {
      t: "connect",
      relay: { host: relay.host, port: relay.port, publicKey: relay.publicKeyHex },
      self,
      // Busy-time PINGs every 200 ms: a test sees a PONG soon after its data went out.
      config: { busyPingIntervalMs: 200 },
      reconnectOnStall: false,
    },
    log.push,
  );
  conn.start();
  // The relay confirms a client on its first frame (the PING): its PONG means we are on.
  await log.waitFor("pong", 5_000);
  return { self, log, conn };
}

type SocketClient = Awaited<ReturnType<typeof socketClient>>;

async function online(x: SocketClient, y: SocketClient): Promise<void> {
  const sx = x.log.events.length;
  const sy = y.log.events.length;
  x.conn.route(y.self.publicKey);
  y.conn.route(x.self.publicKey);
  await x.log.waitFor("online", 5_000, () => true, sx);
  await y.log.waitFor("online", 5_000, () => true, sy);
}

/** Poll `pred` every 10 ms until it holds, for at most `timeoutMs`. */
async function until(pred: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`not true within ${timeoutMs} ms: ${pred}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function dataCount(x: SocketClient): number {
  return x.log.count("data");
}

Deno.test("routing relay over sockets: DATA both ways; setDropData(true) drops DATA silently while PING, routing and OOB work", async () => {
  await using relay = startRoutingRelay();
  const a = await socketClient(relay);
  const b = await socketClient(relay);
  try {
    assert.equal(relay.clients(), 2);
    await online(a, b);
    for (let i = 0; i < 50; i++) {
      a.conn.send([{
        kind: "data",
        publicKey: b.self.publicKey,
        data: new Uint8Array(1000).fill(i),
      }]);
      b.conn.send([{ kind: "data", publicKey: a.self.publicKey, data: Uint8Array.of(i) }]);
    }
    await b.log.waitFor("data", 5_000, (e) => e.data.length === 1000 && e.data[0] === 49);
    await a.log.waitFor("data", 5_000, (e) => e.data[0] === 49);
    assert.equal(dataCount(a), 50);
    assert.equal(dataCount(b), 50);

    relay.setDropData(true);
    const before = relay.server.stats();
    for (let i = 0; i < 10; i++) {
      a.conn.send([{ kind: "data", publicKey: b.self.publicKey, data: Uint8Array.of(i) }]);
    }
    await until(() => relay.server.stats().dataDroppedPolicy - before.dataDroppedPolicy === 10);
    // Pings still go both ways after the drops (a pings every 200 ms while busy).
    await a.log.waitFor("pong", 5_000, () => true, a.log.events.length);
    assert.equal(relay.server.stats().dataForwarded, before.dataForwarded);
    assert.equal(dataCount(b), 50, "b saw none of them");
    // OOB still passes, and routing works: a third client comes online with a.
    a.conn.send([{ kind: "oob", publicKey: b.self.publicKey, data: Uint8Array.of(7, 7) }]);
    const oob = await b.log.waitFor("oob", 5_000);
    assert.deepEqual(oob.publicKey, a.self.publicKey);
    const c = await socketClient(relay);
    try {
      await online(a, c);
      assert.equal(relay.clients(), 3);
    } finally {
      await c.conn.close();
    }
    assert.equal(a.log.count("closed") + b.log.count("closed"), 0, "nobody was closed");

    relay.setDropData(false);
    a.conn.send([{ kind: "data", publicKey: b.self.publicKey, data: Uint8Array.of(0xee) }]);
    await b.log.waitFor("data", 5_000, (e) => e.data[0] === 0xee);
  } finally {
    await a.conn.close();
    await b.conn.close();
  }
});

Deno.test("routing relay over sockets: setReading(false) holds every byte until reading resumes; stop() closes the clients", async () => {
  const relay = startRoutingRelay();
  const a = await socketClient(relay);
  const b = await socketClient(relay);
  try {
    await online(a, b);
    relay.setReading(false);
    a.conn.send([{ kind: "data", publicKey: b.self.publicKey, data: Uint8Array.of(1, 2, 3) }]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(dataCount(b), 0, "nothing is read, so nothing is forwarded");
    relay.setReading(true);
    const got = await b.log.waitFor("data", 5_000);
    assert.deepEqual(got.data, Uint8Array.of(1, 2, 3));
    await relay.stop();
    const closed = await a.log.waitFor("closed", 5_000);
    assert.equal(closed.reason, "socket_closed");
    await b.log.waitFor("closed", 5_000);
    assert.equal(relay.clients(), 0);
    assert.ok(relay.events.some((e) => e.type === "closed" && e.reason === "closed_by_owner"));
  } finally {
    await a.conn.close();
    await b.conn.close();
    await relay.stop();
  }
});

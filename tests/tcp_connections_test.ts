/**
 * The TCP_connections coordinator (daemon/core/tcp_connections/tcp_connections.ts), driven sans-I/O: commands and
 * relay-worker events in, actions and events out, time and randomness injected. No sockets,
 * no workers, no sleeping.
 */
import assert from "node:assert/strict";
import { toHex } from "../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../daemon/core/common/relay_address.ts";
import type { Fault } from "../daemon/core/common/codec.ts";
import { TcpConnections } from "../daemon/core/tcp_connections/tcp_connections.ts";
import type { TcpConnectionsConfig } from "../daemon/core/tcp_connections/config.ts";
import type {
  RelayAction,
  RelayView,
  TcpConnectionsEvent,
} from "../daemon/core/tcp_connections/types.ts";
import type { RelayLinkEvent } from "../daemon/core/relay_client/relay_link.ts";
import { seededRandom } from "../tools/testbed/fake_relay.ts";

const T0 = 1_000_000;
const HOUR = 3_600_000;

// ---- driver ---------------------------------------------------------------------------------

interface TestRelay {
  readonly address: RelayAddress;
  /** The name the coordinator uses for it: lower-case hex of its key. */
  readonly hex: string;
}

/** `n` relays with distinct 32-byte keys (first byte 0xee, second the index). */
function makeRelays(n: number, from = 0): TestRelay[] {
  return Array.from({ length: n }, (_, j) => {
    const i = from + j;
    const key = new Uint8Array(32).fill(0x11 * ((i % 15) + 1));
    key[0] = 0xee;
    key[1] = i;
    const hex = toHex(key);
    return { address: { host: "127.0.0.1", port: 33445 + i, publicKey: hex }, hex };
  });
}

/** `n` peer DHT keys (first byte 0x9e, second the index). */
function makePeers(n: number, from = 0): Uint8Array[] {
  return Array.from({ length: n }, (_, j) => {
    const key = new Uint8Array(32).fill(j + from + 1);
    key[0] = 0x9e;
    key[1] = j + from;
    return key;
  });
}

/**
 * A coordinator at T0. The stats poll is pushed out of the way (an hour) so `nextDeadline()`
 * shows the deadlines under test; the stats test sets it back.
 */
function newTc(config: Partial<TcpConnectionsConfig> = {}, seed = 1): TcpConnections {
  return new TcpConnections({
    now: T0,
    random: seededRandom(seed),
    config: { statsIntervalMs: HOUR, ...config },
  });
}

function drain(tc: TcpConnections): { actions: RelayAction[]; events: TcpConnectionsEvent[] } {
  return { actions: tc.takeActions(), events: tc.takeEvents() };
}

function addGlobals(tc: TcpConnections, relays: readonly TestRelay[], now = T0): void {
  for (const r of relays) assert.equal(tc.addRelay(r.address, now).ok, true);
}

function feed(tc: TcpConnections, r: TestRelay, now: number, ...events: RelayLinkEvent[]) {
  tc.relayEvents(r.hex, events, now);
}

function confirm(tc: TcpConnections, r: TestRelay, now: number): void {
  feed(tc, r, now, { type: "confirmed", handshakeMs: 3 });
}

/** ROUTING_RESPONSE only: the peer is REGISTERED on this relay. */
function routed(tc: TcpConnections, r: TestRelay, pk: Uint8Array, connId: number, now: number) {
  feed(tc, r, now, { type: "routed", publicKey: pk, connectionId: connId });
}

/** ROUTING_RESPONSE then CONNECT_NOTIFICATION: the peer is ONLINE on this relay. */
function routeAndOnline(
  tc: TcpConnections,
  r: TestRelay,
  pk: Uint8Array,
  connId: number,
  now: number,
): void {
  feed(
    tc,
    r,
    now,
    { type: "routed", publicKey: pk, connectionId: connId },
    { type: "online", publicKey: pk, connectionId: connId },
  );
}

function closed(
  tc: TcpConnections,
  r: TestRelay,
  now: number,
  opts: { reason?: string; fault?: Fault; unsent?: number } = {},
): void {
  feed(tc, r, now, {
    type: "closed",
    reason: (opts.reason ?? "socket_closed") as "socket_closed",
    fault: opts.fault ?? "network",
    message: "test",
    unsent: opts.unsent ?? 0,
  });
}

function peerData(
  tc: TcpConnections,
  r: TestRelay,
  pk: Uint8Array,
  connId: number,
  now: number,
  data = new Uint8Array([1, 2, 3]),
): void {
  feed(tc, r, now, { type: "data", publicKey: pk, connectionId: connId, data });
}

function pong(tc: TcpConnections, r: TestRelay, rttMs: number, now: number): void {
  feed(tc, r, now, { type: "pong", rttMs });
}

function only<T extends RelayAction["type"]>(
  actions: readonly RelayAction[],
  type: T,
): Extract<RelayAction, { type: T }>[] {
  return actions.filter((a): a is Extract<RelayAction, { type: T }> => a.type === type);
}

function ofType<T extends TcpConnectionsEvent["type"]>(
  events: readonly TcpConnectionsEvent[],
  type: T,
): Extract<TcpConnectionsEvent, { type: T }>[] {
  return events.filter((e): e is Extract<TcpConnectionsEvent, { type: T }> => e.type === type);
}

const relaysOf = (as: readonly { relay: string }[]) => as.map((a) => a.relay);
const hexes = (rs: readonly TestRelay[]) => rs.map((r) => r.hex);

function relayView(tc: TcpConnections, r: TestRelay, now?: number): RelayView {
  const v = tc.relays(now).find((v) => v.publicKey === r.hex);
  assert.ok(v, `relay ${r.hex.slice(0, 8)} is known`);
  return v;
}

function peerView(tc: TcpConnections, pk: Uint8Array, now?: number) {
  const v = tc.peers(now).find((p) => p.publicKey === toHex(pk));
  assert.ok(v, `peer ${toHex(pk).slice(0, 8)} is known`);
  return v;
}

const slotRelays = (tc: TcpConnections, pk: Uint8Array) =>
  peerView(tc, pk).slots.map((s) => s.relay);

/** One global relay per name, all confirmed, and `pk` ONLINE on each (conn ids 16, 17, ...). */
function onlineOn(tc: TcpConnections, pk: Uint8Array, relays: readonly TestRelay[], now: number) {
  relays.forEach((r, i) => {
    if (relayView(tc, r).state !== "confirmed") confirm(tc, r, now);
    routeAndOnline(tc, r, pk, 16 + i, now);
  });
}

/** Each relay's retry (or bench) bound, by the back-off formula. */
function backoffBounds(attempts: number, cfg: TcpConnectionsConfig): [number, number] {
  const base = Math.min(cfg.reconnectMaxMs, cfg.reconnectMinMs * 2 ** (attempts - 1));
  return [
    Math.round(base * (1 - cfg.reconnectJitter)),
    Math.round(base * (1 + cfg.reconnectJitter)),
  ];
}

// ---- slots and which relays are open ---------------------------------------------------------

Deno.test("a peer with 5 global relays gets exactly 3 slots and only the 3 kept relays open", () => {
  const tc = newTc();
  const R = makeRelays(5);
  addGlobals(tc, R);
  const [p1, p2] = makePeers(2);
  let { actions } = drain(tc);
  assert.deepEqual(relaysOf(only(actions, "open")), hexes(R.slice(0, 3)));
  assert.equal(actions.length, 3);
  assert.equal(relayView(tc, R[3]).state, "sleeping");
  assert.equal(relayView(tc, R[4]).state, "sleeping");

  assert.equal(tc.addPeer(p1, T0), true);
  assert.equal(tc.addPeer(p2, T0), true);
  ({ actions } = drain(tc));
  // The peers fit on the relays already opening: nothing new opens, nothing is routed yet.
  assert.deepEqual(actions, []);
  assert.deepEqual(slotRelays(tc, p1), hexes(R.slice(0, 3)));
  assert.deepEqual(slotRelays(tc, p2), hexes(R.slice(0, 3)));
  for (const s of peerView(tc, p1).slots) assert.equal(s.status, "none");
});

Deno.test("a confirmed relay sends a ROUTING request for every peer holding a slot on it", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  const [p1, p2, p3] = makePeers(3);
  tc.addPeer(p1, T0);
  tc.addPeer(p2, T0);
  drain(tc);

  // Both peers were attached while R0 was connecting: they are routed when it confirms.
  confirm(tc, R[0], T0 + 50);
  const { actions, events } = drain(tc);
  const routes = only(actions, "route");
  assert.equal(routes.length, 2);
  assert.deepEqual(relaysOf(routes), [R[0].hex, R[0].hex]);
  assert.deepEqual(routes.map((a) => toHex(a.publicKey)).sort(), [toHex(p1), toHex(p2)].sort());
  assert.deepEqual(ofType(events, "relay_state"), [
    { type: "relay_state", relay: R[0].hex, state: "confirmed" },
  ]);

  // A peer added after the confirm is routed at once on the confirmed relay only.
  tc.addPeer(p3, T0 + 60);
  const later = only(drain(tc).actions, "route");
  assert.equal(later.length, 1);
  assert.equal(later[0].relay, R[0].hex);
  assert.deepEqual(later[0].publicKey, p3);
  assert.equal(relayView(tc, R[3]).state, "sleeping");

  // Slot status follows the relay: REGISTERED on the routing response, ONLINE on connect.
  routed(tc, R[0], p1, 16, T0 + 70);
  let slot = peerView(tc, p1).slots.find((s) => s.relay === R[0].hex)!;
  assert.equal(slot.status, "registered");
  assert.equal(slot.connectionId, 16);
  feed(tc, R[0], T0 + 80, { type: "online", publicKey: p1, connectionId: 16 });
  slot = peerView(tc, p1).slots.find((s) => s.relay === R[0].hex)!;
  assert.equal(slot.status, "online");
  assert.equal(relayView(tc, R[0]).peersOnline, 1);
  assert.equal(relayView(tc, R[0]).peersRouted, 1);
  feed(tc, R[0], T0 + 90, { type: "offline", publicKey: p1, connectionId: 16 });
  slot = peerView(tc, p1).slots.find((s) => s.relay === R[0].hex)!;
  assert.equal(slot.status, "registered");
});

Deno.test("6-slot cap: learned relays are attached up to 6 and no more", () => {
  const tc = newTc();
  const [p] = makePeers(1);
  const L = makeRelays(8);
  tc.addPeer(p, T0);
  for (const r of L) {
    const res = tc.addPeerRelay(p, r.address, T0);
    assert.deepEqual(res, { ok: true, relay: r.hex, added: true });
  }
  assert.deepEqual(slotRelays(tc, p), hexes(L.slice(0, 6)));
  assert.deepEqual(peerView(tc, p).learned, hexes(L));
  // Only what the peer needs is opened: the two relays beyond the cap stay asleep.
  const { actions } = drain(tc);
  assert.deepEqual(relaysOf(only(actions, "open")), hexes(L.slice(0, 6)));
  assert.equal(relayView(tc, L[6]).state, "sleeping");
  assert.equal(relayView(tc, L[7]).state, "sleeping");
  // Learning a relay again changes nothing.
  assert.deepEqual(tc.addPeerRelay(p, L[7].address, T0), {
    ok: true,
    relay: L[7].hex,
    added: false,
  });
  assert.equal(peerView(tc, p).slots.length, 6);
  // Even searching (offline for long) never goes past 6.
  tc.tick(T0 + 60_000);
  assert.equal(peerView(tc, p).slots.length, 6);
});

Deno.test("a peer remembers the newest 24 learned relays (FRIEND_MAX_STORED_TCP_RELAYS)", () => {
  const tc = newTc();
  const [p] = makePeers(1);
  const L = makeRelays(30);
  tc.addPeer(p, T0);
  for (const r of L) assert.equal(tc.addPeerRelay(p, r.address, T0).ok, true);
  assert.deepEqual(peerView(tc, p).learned, hexes(L.slice(6)));
  assert.equal(peerView(tc, p).slots.length, 6);
});

Deno.test("once 3 slots are ONLINE no new relay is attached; one going offline reopens the search", () => {
  const tc = newTc();
  const [p] = makePeers(1);
  const L = makeRelays(4);
  tc.addPeer(p, T0);
  for (const r of L.slice(0, 3)) tc.addPeerRelay(p, r.address, T0);
  onlineOn(tc, p, L.slice(0, 3), T0 + 10);
  drain(tc);

  tc.addPeerRelay(p, L[3].address, T0 + 20);
  assert.deepEqual(slotRelays(tc, p), hexes(L.slice(0, 3)));
  assert.deepEqual(peerView(tc, p).learned, hexes(L));
  assert.deepEqual(only(drain(tc).actions, "open"), []);
  assert.equal(relayView(tc, L[3]).state, "sleeping");

  // With only 2 ONLINE the peer takes the learned relay.
  feed(tc, L[0], T0 + 30, { type: "offline", publicKey: p, connectionId: 16 });
  assert.deepEqual(slotRelays(tc, p), hexes(L));
  assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), [L[3].hex]);
});

Deno.test("a peer with no ONLINE slot for searchAfterMs widens to 6 relays", () => {
  const tc = newTc();
  const R = makeRelays(7);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  drain(tc);
  assert.equal(peerView(tc, p).slots.length, 3);
  assert.equal(tc.nextDeadline(), T0 + 10_000);

  tc.tick(T0 + 9_999);
  assert.equal(peerView(tc, p).slots.length, 3);
  assert.deepEqual(drain(tc).actions, []);

  tc.tick(T0 + 10_000);
  assert.deepEqual(slotRelays(tc, p), hexes(R.slice(0, 6)));
  assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), hexes(R.slice(3, 6)));
  assert.equal(relayView(tc, R[6]).state, "sleeping");
  // The search deadline is spent: it must not stay due (a shell would spin on it).
  assert.ok(tc.nextDeadline() > T0 + 10_000, `nextDeadline ${tc.nextDeadline() - T0}`);
});

// ---- keepConnected and sleeping ------------------------------------------------------------

Deno.test("keepConnected: with no peers 3 relays are opened and kept for good", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), hexes(R.slice(0, 3)));
  for (const r of R.slice(0, 3)) confirm(tc, r, T0 + 100);
  drain(tc);
  for (const t of [T0 + 10_100, T0 + 60_000, T0 + HOUR / 2]) {
    tc.tick(t);
    const { actions, events } = drain(tc);
    assert.deepEqual(actions, []);
    assert.deepEqual(events, []);
    // Kept relays never become due again: the deadline is in the future.
    assert.ok(tc.nextDeadline() > t, `nextDeadline ${tc.nextDeadline() - t} ms from now`);
  }
  assert.deepEqual(tc.relays().map((v) => v.state), [
    "confirmed",
    "confirmed",
    "confirmed",
    "sleeping",
  ]);
});

Deno.test("an unneeded 4th confirmed relay sleeps idleSleepMs after its confirm, not before, and wakes when needed", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  const [p, q] = makePeers(2);
  tc.addPeer(p, T0);
  // A learned relay the peer needs: opened although 3 are already live.
  tc.addPeerRelay(p, R[3].address, T0);
  assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), hexes(R));
  for (const r of R.slice(0, 3)) confirm(tc, r, T0 + 100);
  confirm(tc, R[3], T0 + 1_000);
  drain(tc);

  // The peer goes away 8 s after R3 confirmed: R3 is not needed, but the 10 s count from
  // its confirm (c-toxcore's connected_time), not from now.
  tc.removePeer(p, T0 + 9_000);
  drain(tc);
  tc.tick(T0 + 10_100); // the kept relays' idle time passes: they stay
  assert.deepEqual(drain(tc).actions, []);
  assert.equal(tc.nextDeadline(), T0 + 11_000);
  tc.tick(T0 + 10_999);
  assert.deepEqual(drain(tc).actions, []);
  assert.equal(relayView(tc, R[3]).state, "confirmed");

  tc.tick(T0 + 11_000);
  const { actions, events } = drain(tc);
  assert.deepEqual(actions, [{ type: "close", relay: R[3].hex }]);
  assert.deepEqual(ofType(events, "relay_state"), [
    { type: "relay_state", relay: R[3].hex, state: "sleeping", reason: "not needed" },
  ]);
  assert.deepEqual(tc.relays().map((v) => v.state), [
    "confirmed",
    "confirmed",
    "confirmed",
    "sleeping",
  ]);
  // A late `closed` from the worker we closed is ignored.
  closed(tc, R[3], T0 + 11_001, { reason: "closed_by_owner", fault: "local" });
  assert.deepEqual(drain(tc), { actions: [], events: [] });
  assert.equal(relayView(tc, R[3]).state, "sleeping");

  // Sleeping relays wake when a peer needs them.
  tc.addPeer(q, T0 + 20_000);
  drain(tc);
  tc.addPeerRelay(q, R[3].address, T0 + 20_000);
  const woke = drain(tc);
  assert.deepEqual(woke.actions, [{ type: "open", relay: R[3].hex, address: R[3].address }]);
  assert.deepEqual(ofType(woke.events, "relay_state"), [
    { type: "relay_state", relay: R[3].hex, state: "connecting" },
  ]);
});

Deno.test("when a kept relay dies a sleeping relay is woken to keep 3 live", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  for (const r of R.slice(0, 3)) confirm(tc, r, T0 + 100);
  drain(tc);

  closed(tc, R[0], T0 + 5_000);
  const { actions } = drain(tc);
  assert.deepEqual(actions.filter((a) => a.type === "close"), [{ type: "close", relay: R[0].hex }]);
  assert.deepEqual(relaysOf(only(actions, "open")), [R[3].hex]);
  const live = tc.relays().filter((v) => v.state === "confirmed" || v.state === "connecting");
  assert.deepEqual(live.map((v) => v.publicKey), hexes(R.slice(1)));
});

// ---- which relay sends ---------------------------------------------------------------------

Deno.test("the first ONLINE relay becomes the sender and the sender is sticky", () => {
  const tc = newTc();
  const R = makeRelays(3);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  for (const r of R) confirm(tc, r, T0 + 10);
  drain(tc);

  routeAndOnline(tc, R[1], p, 20, T0 + 20);
  let { events } = drain(tc);
  assert.deepEqual(events, [
    // The routing response: OOB to the peer can go through R[1] from now on.
    { type: "peer_registered", peer: toHex(p), relay: R[1].hex },
    { type: "peer_online", peer: toHex(p), relay: R[1].hex },
    {
      type: "sender_changed",
      peer: toHex(p),
      from: null,
      to: R[1].hex,
      reason: "first relay the peer is online on",
    },
  ]);
  // Another relay coming up, even a faster one, does not take over.
  pong(tc, R[0], 5, T0 + 25);
  pong(tc, R[1], 90, T0 + 25);
  routeAndOnline(tc, R[0], p, 16, T0 + 30);
  ({ events } = drain(tc));
  assert.deepEqual(events, []);
  for (let i = 0; i < 5; i++) {
    const out = tc.sendData(p, new Uint8Array([i]), T0 + 40 + i);
    assert.deepEqual(out, { ok: true, via: "data", relay: R[1].hex });
  }
  const { actions } = drain(tc);
  assert.equal(actions.length, 1);
  const send = only(actions, "send")[0];
  assert.equal(send.relay, R[1].hex);
  assert.equal(send.items.length, 5);
  assert.deepEqual(send.items[0], { kind: "data", publicKey: p, data: new Uint8Array([0]) });
  assert.equal(peerView(tc, p).sender, R[1].hex);
  assert.equal(relayView(tc, R[1]).inflight, 5);
  assert.equal(relayView(tc, R[1]).packetsOut, 5);
});

Deno.test("when the sender's relay closes the next ONLINE relay takes over at once; peer_offline only when none is left", () => {
  const { tc, R, p } = onlineRig(3, T0 + 10);
  drain(tc);
  assert.equal(peerView(tc, p).sender, R[0].hex);

  closed(tc, R[0], T0 + 1_000, { reason: "socket_error" });
  let { events } = drain(tc);
  const changes = ofType(events, "sender_changed");
  assert.equal(changes.length, 1);
  assert.equal(changes[0].from, R[0].hex);
  assert.equal(changes[0].to, R[1].hex);
  assert.match(changes[0].reason, /closed: socket_error/);
  assert.deepEqual(ofType(events, "peer_offline"), []);
  assert.deepEqual(tc.sendData(p, new Uint8Array([1]), T0 + 1_001), {
    ok: true,
    via: "data",
    relay: R[1].hex,
  });
  // The closed relay's slot stays attached, reset to NONE, for the reconnect.
  const slot0 = peerView(tc, p).slots.find((s) => s.relay === R[0].hex)!;
  assert.equal(slot0.status, "none");
  assert.equal(slot0.connectionId, null);

  closed(tc, R[1], T0 + 2_000);
  ({ events } = drain(tc));
  assert.deepEqual(ofType(events, "sender_changed").map((e) => e.to), [R[2].hex]);
  assert.deepEqual(ofType(events, "peer_offline"), []);

  closed(tc, R[2], T0 + 3_000);
  ({ events } = drain(tc));
  const last = ofType(events, "sender_changed");
  assert.equal(last.length, 1);
  assert.equal(last[0].to, null);
  assert.deepEqual(ofType(events, "peer_offline"), [{ type: "peer_offline", peer: toHex(p) }]);
  assert.equal(peerView(tc, p).online, false);
  assert.equal(
    tc.sendData(p, new Uint8Array([1]), T0 + 3_001).ok,
    false,
  );
});

Deno.test("lower RTT (pong) breaks ties when the sender fails over", () => {
  const { tc, R } = onlineRig(3, T0 + 10);
  pong(tc, R[1], 80, T0 + 20);
  pong(tc, R[2], 20, T0 + 20);
  drain(tc);
  assert.equal(relayView(tc, R[2]).rttMs, 20);
  closed(tc, R[0], T0 + 1_000);
  assert.deepEqual(ofType(drain(tc).events, "sender_changed").map((e) => e.to), [R[2].hex]);
});

Deno.test("a relay proven by the peer's data is preferred over an unproven one", () => {
  const { tc, R, p } = onlineRig(3, T0 + 10);
  // R2 is faster, R1 carries the peer's traffic.
  pong(tc, R[1], 200, T0 + 20);
  pong(tc, R[2], 10, T0 + 20);
  drain(tc);

  peerData(tc, R[1], p, 17, T0 + 100, new Uint8Array([7, 7]));
  let { events } = drain(tc);
  assert.deepEqual(events, [
    { type: "data", peer: toHex(p), relay: R[1].hex, data: new Uint8Array([7, 7]) },
  ]);
  let slots = peerView(tc, p).slots;
  assert.equal(slots.find((s) => s.relay === R[1].hex)!.proven, true);
  assert.equal(slots.find((s) => s.relay === R[0].hex)!.proven, false);
  assert.equal(slots.find((s) => s.relay === R[1].hex)!.packetsIn, 1);

  // The current sender R0 is unproven: the next send moves to R1.
  assert.deepEqual(tc.sendData(p, new Uint8Array([1]), T0 + 200), {
    ok: true,
    via: "data",
    relay: R[1].hex,
  });
  ({ events } = drain(tc));
  const change = ofType(events, "sender_changed");
  assert.equal(change.length, 1);
  assert.equal(change[0].from, R[0].hex);
  assert.match(change[0].reason, /traffic arrives on/);

  // Proof beats RTT on fail-over too: without R1, R2 (fast) is taken; with it, R1.
  closed(tc, R[1], T0 + 300);
  assert.deepEqual(ofType(drain(tc).events, "sender_changed").map((e) => e.to), [R[2].hex]);
  // Proof expires after provenForMs.
  slots = peerView(tc, p, T0 + 100 + tc.config.provenForMs).slots;
  assert.equal(slots.every((s) => !s.proven), true);
});

// ---- OOB -----------------------------------------------------------------------------------

Deno.test("OOB: with the peer only REGISTERED sendData goes as OOB on every registered relay", () => {
  const tc = newTc();
  const R = makeRelays(3);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  for (const r of R) confirm(tc, r, T0 + 10);
  drain(tc);
  assert.deepEqual(tc.sendData(p, new Uint8Array([1]), T0 + 15), {
    ok: false,
    reason: "not_connected",
    message: "the peer is not on any of its relays yet",
  });

  routed(tc, R[0], p, 16, T0 + 20);
  routed(tc, R[2], p, 30, T0 + 20);
  drain(tc);
  const data = new Uint8Array(1024).fill(5);
  assert.deepEqual(tc.sendData(p, data, T0 + 30), {
    ok: true,
    via: "oob",
    relays: [R[0].hex, R[2].hex],
  });
  const sends = only(drain(tc).actions, "send");
  assert.deepEqual(relaysOf(sends), [R[0].hex, R[2].hex]);
  for (const s of sends) assert.deepEqual(s.items, [{ kind: "oob", publicKey: p, data }]);
  assert.equal(peerView(tc, p).oobSent, 1);

  const big = tc.sendData(p, new Uint8Array(1025), T0 + 40);
  assert.equal(big.ok, false);
  assert.equal(!big.ok && big.reason, "invalid");
  assert.deepEqual(drain(tc).actions, []);
});

Deno.test("OOB in: from a peer with a slot on that relay it is data, from anyone else it is oob", () => {
  const tc = newTc();
  const [g] = makeRelays(1);
  const [l] = makeRelays(1, 1);
  addGlobals(tc, [g]);
  const [p, q, stranger] = makePeers(3);
  tc.addPeer(p, T0);
  tc.addPeerRelay(p, l.address, T0);
  tc.addPeer(q, T0); // q has a slot on g only
  confirm(tc, g, T0 + 10);
  confirm(tc, l, T0 + 10);
  drain(tc);
  assert.deepEqual(slotRelays(tc, q), [g.hex]);

  const bytes = new Uint8Array([4, 5, 6]);
  feed(tc, g, T0 + 20, { type: "oob", publicKey: p, data: bytes });
  feed(tc, g, T0 + 21, { type: "oob", publicKey: stranger, data: bytes });
  feed(tc, l, T0 + 22, { type: "oob", publicKey: q, data: bytes });
  const { events } = drain(tc);
  assert.deepEqual(events, [
    { type: "data", peer: toHex(p), relay: g.hex, data: bytes },
    { type: "oob", from: stranger, relay: g.hex, data: bytes },
    { type: "oob", from: q, relay: l.hex, data: bytes },
  ]);
  assert.equal(relayView(tc, g).packetsIn, 2);

  // sendOob: to any key through one confirmed relay, bounded like the wire format.
  assert.deepEqual(tc.sendOob(g.hex, stranger, bytes, T0 + 30), {
    ok: true,
    via: "oob",
    relays: [g.hex],
  });
  assert.deepEqual(drain(tc).actions, [
    { type: "send", relay: g.hex, items: [{ kind: "oob", publicKey: stranger, data: bytes }] },
  ]);
  const tooBig = tc.sendOob(g.hex, stranger, new Uint8Array(1025), T0 + 31);
  assert.equal(!tooBig.ok && tooBig.reason, "invalid");
  const shortKey = tc.sendOob(g.hex, new Uint8Array(31), bytes, T0 + 31);
  assert.equal(!shortKey.ok && shortKey.reason, "invalid");
  const unknown = tc.sendOob("ab".repeat(32), stranger, bytes, T0 + 31);
  assert.equal(!unknown.ok && unknown.reason, "not_connected");
});

// ---- backpressure --------------------------------------------------------------------------

Deno.test("congested: sendData uses another ONLINE relay, all congested is refused, drained is writable", () => {
  const { tc, R, p } = onlineRig(2, T0 + 10);
  drain(tc);

  feed(tc, R[0], T0 + 20, { type: "congested", queuedBytes: 300_000 });
  assert.equal(relayView(tc, R[0]).congested, true);
  assert.deepEqual(tc.sendData(p, new Uint8Array([1]), T0 + 21), {
    ok: true,
    via: "data",
    relay: R[1].hex,
  });
  let { events } = drain(tc);
  assert.match(ofType(events, "sender_changed")[0].reason, /congested/);

  feed(tc, R[1], T0 + 30, { type: "congested", queuedBytes: 300_000 });
  const refused = tc.sendData(p, new Uint8Array([1]), T0 + 31);
  assert.equal(refused.ok, false);
  assert.equal(!refused.ok && refused.reason, "congested");
  assert.equal(peerView(tc, p).congestedRefusals, 1);
  // Refusing queues nothing.
  assert.deepEqual(drain(tc).actions, []);

  feed(tc, R[0], T0 + 40, { type: "drained", queuedBytes: 1_000 });
  ({ events } = drain(tc));
  assert.deepEqual(events, [{ type: "writable", peer: toHex(p) }]);
  assert.deepEqual(tc.sendData(p, new Uint8Array([1]), T0 + 41), {
    ok: true,
    via: "data",
    relay: R[0].hex,
  });
  // A second drain, nobody blocked: no event.
  feed(tc, R[1], T0 + 50, { type: "drained", queuedBytes: 0 });
  assert.deepEqual(ofType(drain(tc).events, "writable"), []);
});

Deno.test("the per-relay send window is enforced and `sent` credits reopen it", () => {
  const tc = newTc({ sendWindowPackets: 4 });
  const [r] = makeRelays(1);
  addGlobals(tc, [r]);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  onlineOn(tc, p, [r], T0 + 10);
  drain(tc);

  for (let i = 0; i < 4; i++) assert.equal(tc.sendData(p, new Uint8Array([i]), T0 + 20).ok, true);
  assert.equal(relayView(tc, r).inflight, 4);
  const full = tc.sendData(p, new Uint8Array([9]), T0 + 21);
  assert.equal(!full.ok && full.reason, "congested");
  assert.equal(relayView(tc, r).inflight, 4);
  assert.equal(only(drain(tc).actions, "send")[0].items.length, 4);

  // One credit: room for one, but not yet half empty, so no `writable`.
  feed(tc, r, T0 + 30, { type: "sent", packets: 1 });
  assert.deepEqual(ofType(drain(tc).events, "writable"), []);
  assert.equal(relayView(tc, r).inflight, 3);
  assert.equal(tc.sendData(p, new Uint8Array([5]), T0 + 31).ok, true);
  assert.equal(tc.sendData(p, new Uint8Array([6]), T0 + 31).ok, false);
  assert.equal(relayView(tc, r).inflight, 4);
  feed(tc, r, T0 + 40, { type: "sent", packets: 2 });
  assert.deepEqual(ofType(drain(tc).events, "writable"), [{ type: "writable", peer: toHex(p) }]);

  // Items the worker hands back free their room and are reported, not lost silently.
  feed(tc, r, T0 + 50, {
    type: "refused",
    reason: "queue_full",
    message: "full",
    items: [{ kind: "data", publicKey: p, data: new Uint8Array([1]) }],
  });
  assert.equal(relayView(tc, r).inflight, 1);
  assert.equal(relayView(tc, r).sendFailures, 1);
  assert.deepEqual(ofType(drain(tc).events, "send_failed"), [
    { type: "send_failed", relay: r.hex, packets: 1, reason: "queue_full: full" },
  ]);
  // A session that dies with queued items reports them too, and its window starts empty.
  closed(tc, r, T0 + 60, { unsent: 3 });
  assert.deepEqual(ofType(drain(tc).events, "send_failed"), [
    { type: "send_failed", relay: r.hex, packets: 3, reason: "relay closed: socket_closed" },
  ]);
  assert.equal(relayView(tc, r).inflight, 0);
  assert.equal(relayView(tc, r).sendFailures, 4);
});

Deno.test("inflight never exceeds the send window over a long random run", () => {
  const window = 8;
  const { tc, R, p } = onlineRig(3, T0 + 10, { sendWindowPackets: window });
  drain(tc);
  const rnd = seededRandom(42);
  const owed = new Map<string, number>(R.map((r) => [r.hex, 0]));
  let now = T0 + 100;
  let ok = 0, congested = 0;
  for (let step = 0; step < 2_000; step++) {
    now += 1;
    const roll = rnd(1)[0];
    if (roll < 160) {
      const out = tc.sendData(p, new Uint8Array([roll]), now);
      if (out.ok) ok++;
      else {
        assert.equal(out.reason, "congested");
        congested++;
      }
    } else {
      // The worker credits part of what it was given.
      const r = R[roll % 3];
      const credit = Math.min(owed.get(r.hex)!, 1 + (roll % 4));
      if (credit > 0) {
        owed.set(r.hex, owed.get(r.hex)! - credit);
        feed(tc, r, now, { type: "sent", packets: credit });
      }
    }
    for (const a of only(tc.takeActions(), "send")) {
      owed.set(a.relay, owed.get(a.relay)! + a.items.length);
    }
    tc.takeEvents();
    for (const v of tc.relays(now)) {
      assert.ok(v.inflight <= window, `${v.publicKey.slice(0, 8)} inflight ${v.inflight}`);
      assert.equal(v.inflight, owed.get(v.publicKey), "inflight = handed out − credited");
    }
  }
  assert.ok(ok > 0 && congested > 0, `ok ${ok} congested ${congested}`);
});

// ---- reconnect -----------------------------------------------------------------------------

Deno.test("reconnect: a confirmed relay that closes waits, and the retry delay grows with jitter in bounds", () => {
  const tc = newTc();
  const R = makeRelays(2);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  // The peer stays online through R1, so R0's retry is the only deadline.
  onlineOn(tc, p, R, T0);
  drain(tc);

  closed(tc, R[0], T0 + 1_000, { reason: "socket_closed" });
  let { actions, events } = drain(tc);
  assert.deepEqual(actions, [{ type: "close", relay: R[0].hex }]);
  let waiting = ofType(events, "relay_state").filter((e) => e.state === "waiting");
  assert.equal(waiting.length, 1);
  assert.equal(waiting[0].reason, "socket_closed: test");
  assert.equal(waiting[0].fault, "network");
  let now = T0 + 1_000;
  const delays: number[] = [];
  for (let attempt = 1; attempt <= 9; attempt++) {
    const delay = waiting[0].retryInMs!;
    const [lo, hi] = backoffBounds(attempt, tc.config);
    assert.ok(delay >= lo && delay <= hi, `attempt ${attempt}: ${delay} not in ${lo}..${hi}`);
    delays.push(delay);
    const retryAt = now + delay;
    assert.equal(relayView(tc, R[0], now).state, "waiting");
    assert.equal(relayView(tc, R[0], now).retryInMs, delay);
    assert.equal(relayView(tc, R[0], now).lastError, waiting[0].reason);
    assert.equal(tc.nextDeadline(), retryAt);
    tc.tick(retryAt - 1);
    assert.deepEqual(only(drain(tc).actions, "open"), []);
    tc.tick(retryAt);
    ({ actions } = drain(tc));
    assert.deepEqual(relaysOf(only(actions, "open")), [R[0].hex]);
    // The connect fails: a relay that once worked is retried, never forgotten.
    now = retryAt + 10_000;
    closed(tc, R[0], now, { reason: "connect_timeout" });
    ({ events } = drain(tc));
    waiting = ofType(events, "relay_state").filter((e) => e.state === "waiting");
    assert.equal(waiting.length, 1);
  }
  // Growth: each step at least 1.07× the last until the cap (70 % of 2× vs 130 %).
  for (let i = 1; i < 6; i++) assert.ok(delays[i] > delays[i - 1], `${delays}`);
  assert.ok(delays.at(-1)! <= tc.config.reconnectMaxMs * 1.3);
  assert.ok(delays.at(-1)! >= tc.config.reconnectMaxMs * 0.7);
});

Deno.test("reconnect jitter: delays for the same attempt spread within ±30 %", () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 30; seed++) {
    const tc = newTc({}, seed);
    const [r] = makeRelays(1);
    addGlobals(tc, [r]);
    const [p] = makePeers(1);
    tc.addPeer(p, T0);
    confirm(tc, r, T0);
    drain(tc);
    closed(tc, r, T0 + 1_000);
    const w = ofType(drain(tc).events, "relay_state").find((e) => e.state === "waiting")!;
    assert.ok(w.retryInMs! >= 700 && w.retryInMs! <= 1_300, `${w.retryInMs}`);
    seen.add(w.retryInMs!);
  }
  assert.ok(seen.size >= 20, `only ${seen.size} distinct delays in 30 runs`);
  const spread = Math.max(...seen) - Math.min(...seen);
  assert.ok(spread >= 300, `spread ${spread}`);
});

Deno.test("reconnect: a session stable for stableAfterMs resets to a near-immediate retry and routes are re-sent", () => {
  const tc = newTc();
  const [r] = makeRelays(1);
  addGlobals(tc, [r]);
  const [p, q] = makePeers(2);
  tc.addPeer(p, T0);
  tc.addPeer(q, T0);
  confirm(tc, r, T0);
  routeAndOnline(tc, r, p, 16, T0);
  drain(tc);

  // Two short sessions: the back-off climbs.
  let now = T0;
  let delay = 0;
  for (let i = 1; i <= 2; i++) {
    now += 5_000;
    closed(tc, r, now);
    delay = ofType(drain(tc).events, "relay_state").find((e) => e.state === "waiting")!
      .retryInMs!;
    const [lo, hi] = backoffBounds(i, tc.config);
    assert.ok(delay >= lo && delay <= hi, `${delay}`);
    now += delay;
    tc.tick(now);
    assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), [r.hex]);
    confirm(tc, r, now);
    // Every peer with a slot on the relay is routed again on the new session.
    const routes = only(drain(tc).actions, "route");
    assert.deepEqual(routes.map((a) => toHex(a.publicKey)).sort(), [toHex(p), toHex(q)].sort());
  }
  // One just short of stable still climbs (attempt 3).
  closed(tc, r, now + tc.config.stableAfterMs - 1);
  now += tc.config.stableAfterMs - 1;
  delay = ofType(drain(tc).events, "relay_state").find((e) => e.state === "waiting")!.retryInMs!;
  assert.ok(delay >= backoffBounds(3, tc.config)[0], `${delay}`);
  now += delay;
  tc.tick(now);
  confirm(tc, r, now);
  drain(tc);
  assert.equal(relayView(tc, r).sessions, 4);

  // A session up for stableAfterMs: the next retry is near immediate.
  now += tc.config.stableAfterMs;
  closed(tc, r, now);
  delay = ofType(drain(tc).events, "relay_state").find((e) => e.state === "waiting")!.retryInMs!;
  assert.ok(delay >= 0 && delay < 250, `${delay}`);
  assert.equal(tc.nextDeadline(), now + delay);
  tc.tick(now + delay);
  assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), [r.hex]);
  // ...and the back-off starts over: a quick failure now waits about reconnectMinMs.
  closed(tc, r, now + delay + 100, { reason: "connect_timeout" });
  delay = ofType(drain(tc).events, "relay_state").find((e) => e.state === "waiting")!.retryInMs!;
  assert.ok(delay >= 700 && delay <= 1_300, `${delay}`);
});

Deno.test("a learned relay that never confirmed is removed and its slot freed", () => {
  const tc = newTc();
  const G = makeRelays(3);
  const [l] = makeRelays(1, 10);
  addGlobals(tc, G.slice(0, 1));
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  tc.addPeerRelay(p, l.address, T0);
  drain(tc);
  assert.deepEqual(slotRelays(tc, p), [G[0].hex, l.hex]);

  closed(tc, l, T0 + 10_000, { reason: "connect_timeout" });
  const { actions, events } = drain(tc);
  assert.deepEqual(actions, [{ type: "close", relay: l.hex }]);
  assert.deepEqual(ofType(events, "relay_state"), [
    {
      type: "relay_state",
      relay: l.hex,
      state: "removed",
      reason: "connect_timeout: test",
      fault: "network",
    },
  ]);
  assert.deepEqual(slotRelays(tc, p), [G[0].hex]);
  assert.equal(tc.relays().some((v) => v.publicKey === l.hex), false);
  // It never comes back by itself; its events are ignored.
  tc.tick(T0 + 100_000);
  assert.deepEqual(only(drain(tc).actions, "open"), []);
  confirm(tc, l, T0 + 100_001);
  assert.deepEqual(drain(tc), { actions: [], events: [] });

  // The freed slot is taken by a global relay added later.
  addGlobals(tc, G.slice(1), T0 + 100_002);
  assert.deepEqual(slotRelays(tc, p), hexes(G));
});

Deno.test("a global relay that never confirmed is retried with back-off, not removed", () => {
  for (const withPeer of [true, false]) {
    const tc = newTc();
    const [r] = makeRelays(1);
    addGlobals(tc, [r]);
    const [p] = makePeers(1);
    if (withPeer) tc.addPeer(p, T0);
    drain(tc);
    let now = T0;
    for (let attempt = 1; attempt <= 4; attempt++) {
      now += 10_000;
      closed(tc, r, now, { reason: "connect_timeout" });
      const { events } = drain(tc);
      const states = ofType(events, "relay_state");
      assert.equal(states[0].state, "waiting", `with peer: ${withPeer}`);
      const delay = states[0].retryInMs!;
      const [lo, hi] = backoffBounds(attempt, tc.config);
      assert.ok(delay >= lo && delay <= hi, `attempt ${attempt}: ${delay}`);
      assert.equal(relayView(tc, r).state, "waiting", `with peer: ${withPeer}`);
      assert.equal(relayView(tc, r).everConfirmed, false);
      // Nothing reopens it before its retry time, whatever else happens meanwhile.
      for (const t of [now + 1, now + Math.floor(delay / 2), now + delay - 1]) {
        tc.tick(t);
        assert.deepEqual(
          only(drain(tc).actions, "open"),
          [],
          `opened early at +${t - now} (delay ${delay}, with peer: ${withPeer})`,
        );
      }
      now += delay;
      tc.tick(now);
      assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), [r.hex]);
    }
  }
});

Deno.test("relays in back-off are not reopened early to keep 3 live", () => {
  // Four dead global relays, no peers: every connect fails at once. Each relay must still
  // wait out its own back-off; swapping in another dead relay must not reset it.
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  const opens = new Map<string, number[]>(R.map((r) => [r.hex, []]));
  const fails = new Map<string, number>(R.map((r) => [r.hex, 0]));
  let now = T0;
  const pending: string[] = [];
  const collect = () => {
    for (const a of only(tc.takeActions(), "open")) {
      opens.get(a.relay)!.push(now);
      pending.push(a.relay);
    }
    tc.takeEvents();
  };
  collect();
  for (; now < T0 + 60_000; now += 50) {
    tc.tick(now);
    collect();
    for (let spins = 0; pending.length > 0; spins++) {
      // Bounded: an owner that reopens a dead relay on its own close would spin forever here.
      assert.ok(spins < 20, `reopened ${spins} times within one instant at +${now - T0} ms`);
      const hex = pending.shift()!;
      fails.set(hex, fails.get(hex)! + 1);
      tc.relayEvents(hex, [{
        type: "closed",
        reason: "socket_error",
        fault: "network",
        message: "Connection refused",
        unsent: 0,
      }], now);
      collect();
    }
  }
  for (const [hex, times] of opens) {
    // Gaps between attempts of one relay never fall below the back-off's lower bound.
    for (let i = 1; i < times.length; i++) {
      const [lo] = backoffBounds(i, tc.config);
      assert.ok(
        times[i] - times[i - 1] >= lo,
        `${hex.slice(0, 6)} attempt ${i + 1} after ${times[i] - times[i - 1]} ms (>= ${lo})`,
      );
    }
    assert.ok(times.length <= 8, `${hex.slice(0, 6)} opened ${times.length} times in 60 s`);
  }
});

// ---- benching --------------------------------------------------------------------------------

Deno.test("bench: 3 closes by the relay's fault within the window bench it; after benchMs it sleeps and is usable", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  onlineOn(tc, p, R.slice(0, 3), T0);
  drain(tc);
  assert.deepEqual(slotRelays(tc, p), hexes(R.slice(0, 3)));

  let now = T0;
  for (let i = 1; i <= 3; i++) {
    now += 20_000;
    closed(tc, R[0], now, { reason: "ping_timeout", fault: "peer" });
    const { actions, events } = drain(tc);
    // One close per dead session, never two.
    assert.deepEqual(actions.filter((a) => a.type === "close"), [{
      type: "close",
      relay: R[0].hex,
    }]);
    if (i < 3) {
      const w = ofType(events, "relay_state").find((e) => e.state === "waiting")!;
      now += w.retryInMs!;
      tc.tick(now);
      confirm(tc, R[0], now);
      routeAndOnline(tc, R[0], p, 16, now);
      drain(tc);
      continue;
    }
    const benched = ofType(events, "relay_state").filter((e) => e.state === "benched");
    assert.equal(benched.length, 1);
    assert.match(benched[0].reason!, /closed 3 times by its own fault.*ping_timeout/);
    // The peer loses its slot there and gets another relay (R3, live since R0's first
    // close left only 2 of the 3 kept relays up).
    assert.deepEqual(only(actions, "open"), []);
    assert.deepEqual(slotRelays(tc, p), hexes(R.slice(1)));
    assert.equal(relayView(tc, R[3]).state, "connecting");
  }
  const v = relayView(tc, R[0], now);
  assert.equal(v.state, "benched");
  assert.match(v.benchedReason!, /ping_timeout/);
  assert.equal(v.retryInMs, tc.config.benchMs);
  assert.ok(v.score < 100);
  assert.deepEqual(slotRelays(tc, p), hexes(R.slice(1)));
  assert.equal(tc.nextDeadline(), now + tc.config.benchMs);
  // Not used meanwhile, even by a new peer that wants relays.
  const [q] = makePeers(1, 5);
  tc.addPeer(q, now + 1);
  assert.equal(slotRelays(tc, q).includes(R[0].hex), false);
  tc.tick(now + tc.config.benchMs - 1);
  assert.equal(relayView(tc, R[0]).state, "benched");
  drain(tc);

  tc.tick(now + tc.config.benchMs);
  // Back from the bench it sleeps, and is usable again: q, searching (offline for long, so
  // wanting up to 6 relays), takes it at once and it is opened.
  const back = drain(tc);
  assert.deepEqual(ofType(back.events, "relay_state"), [
    { type: "relay_state", relay: R[0].hex, state: "sleeping" },
    { type: "relay_state", relay: R[0].hex, state: "connecting" },
  ]);
  assert.deepEqual(relaysOf(only(back.actions, "open")), [R[0].hex]);
  assert.equal(slotRelays(tc, q).includes(R[0].hex), true);
  assert.equal(relayView(tc, R[0]).benchedReason, null);
  assert.equal(relayView(tc, R[0]).retryInMs, null);
});

Deno.test("bench: closes that are the network's or ours never bench a relay", () => {
  const tc = newTc();
  const [r] = makeRelays(1);
  addGlobals(tc, [r]);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  let now = T0;
  for (let i = 0; i < 6; i++) {
    confirm(tc, r, now);
    now += 1_000;
    closed(tc, r, now, i % 2 ? { reason: "socket_error" } : { reason: "connect_timeout" });
    now += 70_000;
    tc.tick(now);
  }
  const states = ofType(drain(tc).events, "relay_state").map((e) => e.state);
  assert.equal(states.includes("benched"), false);
  assert.equal(relayView(tc, r).state, "connecting");
});

// ---- dropping relay detection --------------------------------------------------------------

/** `n` global relays, one peer added at T0 and ONLINE on all of them at `at`. */
function onlineRig(n: number, at: number, config: Partial<TcpConnectionsConfig> = {}) {
  const tc = newTc(config);
  const R = makeRelays(n);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  onlineOn(tc, p, R, at);
  return { tc, R, p };
}

/** A peer ONLINE on R0 (sender) and R1, feedback armed at `T0 + 100`. */
function droppingRig() {
  const { tc, R, p } = onlineRig(2, T0);
  tc.delivered(p, T0 + 100);
  drain(tc);
  assert.equal(peerView(tc, p).sender, R[0].hex);
  return { tc, R, p };
}

/** Sends through R0 at `at`, lets deliveryTimeoutMs pass with nothing delivered. */
function suspectR0(tc: TcpConnections, R: TestRelay[], p: Uint8Array, at: number): number {
  assert.deepEqual(tc.sendData(p, new Uint8Array([1]), at), {
    ok: true,
    via: "data",
    relay: R[0].hex,
  });
  assert.equal(tc.nextDeadline(), at + tc.config.deliveryTimeoutMs);
  tc.tick(at + tc.config.deliveryTimeoutMs - 1);
  assert.deepEqual(ofType(drain(tc).events, "sender_changed"), []);
  const when = at + tc.config.deliveryTimeoutMs;
  tc.tick(when);
  const changes = ofType(drain(tc).events, "sender_changed");
  assert.equal(changes.length, 1);
  assert.equal(changes[0].from, R[0].hex);
  assert.equal(changes[0].to, R[1].hex);
  assert.match(changes[0].reason, /nothing delivered/);
  const slot = peerView(tc, p).slots.find((s) => s.relay === R[0].hex)!;
  assert.match(slot.suspect!, /nothing delivered in 4000 ms/);
  return when;
}

Deno.test("dropping relay: no delivery for deliveryTimeoutMs suspects the sender; the peer's data via the other relay costs the suspect that peer, not its other peers", () => {
  const { tc, R, P } = manyDroppingRig(4);
  const p = P[0];
  const t = suspectR0(tc, R, p, T0 + 1_000);
  // Sends now go through R1.
  assert.deepEqual(tc.sendData(p, new Uint8Array([2]), t + 10), {
    ok: true,
    via: "data",
    relay: R[1].hex,
  });
  drain(tc);
  peerData(tc, R[1], p, 16, t + 20);
  const { actions, events } = drain(tc);
  // One peer's evidence, three peers still ONLINE on R0: R0 stays up for them.
  assert.deepEqual(ofType(events, "relay_state"), []);
  assert.deepEqual(only(actions, "close"), []);
  assert.deepEqual(only(actions, "unroute"), [{ type: "unroute", relay: R[0].hex, publicKey: p }]);
  assert.equal(relayView(tc, R[0]).state, "confirmed");
  assert.equal(relayView(tc, R[0]).score, 75);
  assert.match(relayView(tc, R[0]).lastError!, /dropped data for peer .*nothing delivered/);
  assert.deepEqual(slotRelays(tc, p), [R[1].hex]);
  for (const q of P.slice(1)) assert.deepEqual(slotRelays(tc, q), [R[0].hex, R[1].hex]);
  assert.equal(peerView(tc, p).sender, R[1].hex);
  // The data itself is still delivered upward.
  assert.equal(ofType(events, "data").length, 1);
  // R0 is not offered to this peer again until benchMs has passed.
  tc.tick(t + tc.config.benchMs - 1);
  assert.deepEqual(slotRelays(tc, p), [R[1].hex]);
  tc.tick(t + 20 + tc.config.benchMs);
  assert.deepEqual(slotRelays(tc, p).sort(), [R[0].hex, R[1].hex].sort());
});

Deno.test("dropping relay: delivered() after attributionMs proves the suspect dropped, sooner is not attributed; its only peer gone, it is benched", () => {
  const { tc, R, p } = droppingRig();
  const t = suspectR0(tc, R, p, T0 + 1_000);
  tc.sendData(p, new Uint8Array([2]), t + 10);
  tc.delivered(p, t + tc.config.attributionMs - 1);
  assert.deepEqual(ofType(drain(tc).events, "relay_state"), []);
  assert.notEqual(peerView(tc, p).slots.find((s) => s.relay === R[0].hex)!.suspect, null);

  tc.sendData(p, new Uint8Array([3]), t + tc.config.attributionMs);
  tc.delivered(p, t + tc.config.attributionMs);
  const benched = ofType(drain(tc).events, "relay_state").filter((e) => e.state === "benched");
  assert.equal(benched.length, 1);
  assert.equal(benched[0].relay, R[0].hex);
  assert.match(
    relayView(tc, R[0]).benchedReason!,
    /dropped data .*\(1 peer lost data on it\)/,
  );
  assert.deepEqual(slotRelays(tc, p), [R[1].hex]);
  assert.ok(relayView(tc, R[0]).score < 100);
});

/** Two confirmed relays and `n` peers ONLINE on both, R0 sending, feedback armed. */
function manyDroppingRig(n: number) {
  const tc = newTc();
  const R = makeRelays(2);
  addGlobals(tc, R);
  const P = makePeers(n);
  for (const r of R) confirm(tc, r, T0);
  P.forEach((p, i) => {
    tc.addPeer(p, T0);
    for (const r of R) routeAndOnline(tc, r, p, 16 + i, T0);
    tc.delivered(p, T0 + 100);
  });
  drain(tc);
  for (const p of P) assert.equal(peerView(tc, p).sender, R[0].hex);
  return { tc, R, P };
}

/** `p` sends through R0 at `at`, hears nothing for deliveryTimeoutMs, then its data comes via R1. */
function dropOnR0(tc: TcpConnections, R: TestRelay[], p: Uint8Array, i: number, at: number) {
  tc.sendData(p, new Uint8Array([1]), at);
  tc.tick(at + tc.config.deliveryTimeoutMs);
  peerData(tc, R[1], p, 16 + i, at + tc.config.deliveryTimeoutMs + 10);
  return at + tc.config.deliveryTimeoutMs + 10;
}

Deno.test("dropping relay: benched once the peers that lost data on it reach half of those still ONLINE there", () => {
  const { tc, R, P } = manyDroppingRig(4);
  let t = T0 + 1_000;
  t = dropOnR0(tc, R, P[0], 0, t); // 1 dropped, 3 left: not yet
  assert.deepEqual(ofType(drain(tc).events, "relay_state"), []);
  t = dropOnR0(tc, R, P[1], 1, t); // 2 dropped, 2 left
  const benched = ofType(drain(tc).events, "relay_state").filter((e) => e.state === "benched");
  assert.equal(benched.length, 1);
  assert.equal(benched[0].relay, R[0].hex);
  assert.match(
    benched[0].reason!,
    /dropped data for peer .*nothing delivered.*\(2 peers lost data on it\)/,
  );
  assert.equal(relayView(tc, R[0]).state, "benched");
  // Benching detaches R0 from every peer, those never suspected included.
  assert.deepEqual(slotRelays(tc, P[3]), [R[1].hex]);
});

Deno.test("dropping relay: dropsToBench drops do not bench a relay while more than twice as many peers are still ONLINE on it", () => {
  const { tc, R, P } = manyDroppingRig(10);
  let t = T0 + 1_000;
  // 3 dropped, 7 still ONLINE on R0: a busy machine, not a bad relay.
  for (let i = 0; i < 3; i++) t = dropOnR0(tc, R, P[i], i, t);
  assert.deepEqual(ofType(drain(tc).events, "relay_state"), []);
  assert.equal(relayView(tc, R[0]).state, "confirmed");
  // 4 dropped, 6 left: half of those is reached.
  t = dropOnR0(tc, R, P[3], 3, t);
  const benched = ofType(drain(tc).events, "relay_state").filter((e) => e.state === "benched");
  assert.equal(benched.length, 1);
  assert.match(benched[0].reason!, /\(4 peers lost data on it\)/);
});

Deno.test("dropping relay: another peer's traffic through it between the drops keeps it in service", () => {
  for (const traffic of [true, false]) {
    const { tc, R, P } = manyDroppingRig(8);
    let t = T0 + 1_000;
    for (let i = 0; i < 2; i++) t = dropOnR0(tc, R, P[i], i, t); // 2 dropped, 6 left
    if (traffic) peerData(tc, R[0], P[7], 16 + 7, t + 1);
    t = dropOnR0(tc, R, P[2], 2, t + 2); // 3 dropped (1 since the traffic), 5 left
    const benched = ofType(drain(tc).events, "relay_state").filter((e) => e.state === "benched");
    assert.equal(benched.length, traffic ? 0 : 1, `traffic ${traffic}`);
    if (traffic) {
      assert.deepEqual(slotRelays(tc, P[7]), [R[0].hex, R[1].hex]);
      for (let i = 0; i < 3; i++) assert.deepEqual(slotRelays(tc, P[i]), [R[1].hex]);
    }
  }
});

Deno.test("dropping relay: a suspect that later carries the peer's data is cleared, not benched", () => {
  const { tc, R, p } = droppingRig();
  const t = suspectR0(tc, R, p, T0 + 1_000);
  peerData(tc, R[0], p, 16, t + 10);
  let slot = peerView(tc, p).slots.find((s) => s.relay === R[0].hex)!;
  assert.equal(slot.suspect, null);
  assert.equal(slot.proven, true);
  peerData(tc, R[1], p, 17, t + 20);
  tc.delivered(p, t + 5_000);
  const { events } = drain(tc);
  assert.deepEqual(ofType(events, "relay_state"), []);
  assert.equal(relayView(tc, R[0]).state, "confirmed");
  slot = peerView(tc, p).slots.find((s) => s.relay === R[0].hex)!;
  assert.equal(slot.status, "online");
});

Deno.test("dropping relay: an unconfirmed suspicion is forgotten after suspectForMs", () => {
  const { tc, R, p } = droppingRig();
  const t = suspectR0(tc, R, p, T0 + 1_000);
  assert.equal(tc.nextDeadline(), t + tc.config.suspectForMs);
  tc.tick(t + tc.config.suspectForMs);
  assert.equal(peerView(tc, p).slots.find((s) => s.relay === R[0].hex)!.suspect, null);
  peerData(tc, R[1], p, 17, t + tc.config.suspectForMs + 1);
  assert.deepEqual(ofType(drain(tc).events, "relay_state"), []);
});

Deno.test("dropping relay: with only one ONLINE relay nothing is suspected", () => {
  const tc = newTc();
  const R = makeRelays(2);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  onlineOn(tc, p, R.slice(0, 1), T0);
  confirm(tc, R[1], T0);
  routed(tc, R[1], p, 17, T0); // registered, not online
  tc.delivered(p, T0 + 100);
  drain(tc);
  tc.sendData(p, new Uint8Array([1]), T0 + 1_000);
  for (const t of [T0 + 5_000, T0 + 20_000]) {
    tc.tick(t);
    assert.deepEqual(ofType(drain(tc).events, "sender_changed"), []);
    assert.equal(peerView(tc, p).slots.every((s) => s.suspect === null), true);
    assert.ok(tc.nextDeadline() > t, `nextDeadline ${tc.nextDeadline() - t}`);
  }
  assert.equal(peerView(tc, p).sender, R[0].hex);
});

Deno.test("dropping relay: without delivered() feedback nothing is ever suspected", () => {
  const { tc, R, p } = onlineRig(2, T0);
  drain(tc);
  tc.sendData(p, new Uint8Array([1]), T0 + 1_000);
  tc.tick(T0 + 30_000);
  assert.deepEqual(ofType(drain(tc).events, "sender_changed"), []);
  assert.equal(peerView(tc, p).sender, R[0].hex);
});

Deno.test("dropping relay: with deliveryFeedback on, detection is armed without a delivered() call", () => {
  const { tc, R, p } = onlineRig(2, T0, { deliveryFeedback: true });
  drain(tc);
  suspectR0(tc, R, p, T0 + 1_000);
});

Deno.test("dropping relay: packets that expect no acknowledgement (lossy) never make the sender suspect", () => {
  const { tc, p } = onlineRig(2, T0, { deliveryFeedback: true });
  drain(tc);
  const out = tc.sendData(p, new Uint8Array([200]), T0 + 1_000, false);
  assert.equal(out.ok, true);
  tc.tick(T0 + 1_000 + tc.config.deliveryTimeoutMs * 3);
  assert.deepEqual(ofType(drain(tc).events, "sender_changed"), []);
  assert.equal(tc.peers()[0].slots.every((s) => s.suspect === null), true);
});

Deno.test("dropping relay: recent traffic from the peer on the sender delays suspicion, and the deadline says when", () => {
  const { tc, R, p } = droppingRig();
  const T = tc.config.deliveryTimeoutMs;
  tc.sendData(p, new Uint8Array([1]), T0 + 1_000);
  // The peer's data arrives on R0 3 s later: R0 is not suspected until T after that.
  peerData(tc, R[0], p, 16, T0 + 4_000);
  drain(tc);
  tc.tick(T0 + 1_000 + T);
  assert.deepEqual(ofType(drain(tc).events, "sender_changed"), []);
  assert.equal(tc.nextDeadline(), T0 + 4_000 + T);
  tc.tick(T0 + 4_000 + T);
  const changes = ofType(drain(tc).events, "sender_changed");
  assert.deepEqual(changes.map((e) => e.to), [R[1].hex]);
});

// ---- peers and routes ----------------------------------------------------------------------

Deno.test("removePeer sends unroute on confirmed relays only", () => {
  const tc = newTc();
  const R = makeRelays(3);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  confirm(tc, R[0], T0);
  confirm(tc, R[1], T0);
  routeAndOnline(tc, R[0], p, 16, T0);
  drain(tc);
  assert.equal(tc.removePeer(p, T0 + 10), true);
  const { actions, events } = drain(tc);
  assert.deepEqual(actions, [
    { type: "unroute", relay: R[0].hex, publicKey: p },
    { type: "unroute", relay: R[1].hex, publicKey: p },
  ]);
  assert.deepEqual(events, []);
  assert.deepEqual(tc.peers(), []);
  assert.equal(relayView(tc, R[0]).peersRouted, 0);
  assert.equal(tc.removePeer(p, T0 + 11), false);
  // Removing by hex works too.
  tc.addPeer(p, T0 + 12);
  assert.equal(tc.removePeer(toHex(p).toUpperCase(), T0 + 13), true);
  // Late events for it make the relay forget it.
  routed(tc, R[1], p, 20, T0 + 14);
  drain(tc);
  feed(tc, R[0], T0 + 15, { type: "online", publicKey: p, connectionId: 16 });
  assert.deepEqual(drain(tc), { actions: [], events: [] });
});

/** 3 confirmed relays of 2 routes each, 3 peers added in order: the first two fill them. */
function fullRelaysRig() {
  const tc = newTc({ routesPerRelay: 2 });
  const R = makeRelays(3);
  addGlobals(tc, R);
  for (const r of R) confirm(tc, r, T0);
  const P = makePeers(3);
  for (const p of P) tc.addPeer(p, T0);
  return { tc, R, P };
}

Deno.test("routes: a relay is asked for at most routesPerRelay routes; extras skip a full relay", () => {
  const { tc, R, P } = fullRelaysRig();
  assert.deepEqual(slotRelays(tc, P[0]), hexes(R));
  assert.deepEqual(slotRelays(tc, P[1]), hexes(R));
  assert.deepEqual(slotRelays(tc, P[2]), []);
  const routes = only(drain(tc).actions, "route");
  for (const r of R) assert.equal(routes.filter((a) => a.relay === r.hex).length, 2);
});

Deno.test("routes: on a full relay, a peer known to be there takes the route of a peer held there on the off chance", () => {
  const { tc, R, P } = fullRelaysRig();
  // P1 is ONLINE on R0 (its route matters); P0's is a guess.
  routeAndOnline(tc, R[0], P[1], 17, T0 + 1);
  drain(tc);
  assert.equal(tc.addPeerRelay(P[2], R[0].address, T0 + 2).ok, true);
  const { actions, events } = drain(tc);
  assert.deepEqual(slotRelays(tc, P[2]), [R[0].hex]);
  assert.deepEqual(slotRelays(tc, P[0]), [R[1].hex, R[2].hex]);
  assert.deepEqual(only(actions, "unroute"), [{
    type: "unroute",
    relay: R[0].hex,
    publicKey: P[0],
  }]);
  assert.deepEqual(only(actions, "route"), [{ type: "route", relay: R[0].hex, publicKey: P[2] }]);
  assert.deepEqual(ofType(events, "peer_online"), []);
  // Full of routes that matter (ONLINE, or learned there): nothing gives way.
  const [q] = makePeers(1, 3);
  tc.addPeer(q, T0 + 3);
  assert.equal(tc.addPeerRelay(q, R[0].address, T0 + 3).ok, true);
  assert.deepEqual(slotRelays(tc, q), []);
  assert.deepEqual(only(drain(tc).actions, "unroute"), []);
});

Deno.test("route_refused drops that slot and the relay is not tried again for that peer", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  const [p, q] = makePeers(2);
  tc.addPeer(p, T0);
  for (const r of R.slice(0, 3)) confirm(tc, r, T0);
  drain(tc);
  feed(tc, R[0], T0 + 10, { type: "route_refused", publicKey: p });
  const { actions } = drain(tc);
  assert.deepEqual(slotRelays(tc, p), hexes(R.slice(1)));
  assert.deepEqual(relaysOf(only(actions, "open")), [R[3].hex]);
  // The relay never gave an id: nothing to disconnect.
  assert.deepEqual(only(actions, "unroute"), []);
  // Searching (offline 10 s+) widens, but never back onto the refusing relay.
  tc.tick(T0 + 20_000);
  assert.equal(slotRelays(tc, p).includes(R[0].hex), false);
  tc.tick(T0 + 40_000);
  assert.equal(slotRelays(tc, p).includes(R[0].hex), false);
  // Other peers still use it.
  tc.addPeer(q, T0 + 40_001);
  assert.equal(slotRelays(tc, q).includes(R[0].hex), true);
  // A new session of that relay starts with a clean table: the peer may be routed there again.
  feed(tc, R[0], T0 + 40_002, {
    type: "closed",
    reason: "socket_closed",
    fault: "network",
    message: "",
    unsent: 0,
  });
  tc.tick(T0 + 200_000);
  confirm(tc, R[0], T0 + 200_001);
  tc.removePeer(q, T0 + 200_002);
  tc.tick(T0 + 200_003);
  assert.equal(slotRelays(tc, p).includes(R[0].hex), true);
});

Deno.test("routed for an unknown peer produces an unroute", () => {
  const tc = newTc();
  const [r] = makeRelays(1);
  addGlobals(tc, [r]);
  confirm(tc, r, T0);
  drain(tc);
  const [stranger] = makePeers(1, 7);
  routed(tc, r, stranger, 40, T0 + 1);
  assert.deepEqual(drain(tc).actions, [{ type: "unroute", relay: r.hex, publicKey: stranger }]);
});

Deno.test("a crashed relay worker is handled like a closed connection", () => {
  const tc = newTc();
  const R = makeRelays(2);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  onlineOn(tc, p, R.slice(0, 1), T0);
  drain(tc);
  feed(tc, R[0], T0 + 1_000, { type: "crashed", message: "boom" });
  const { actions, events } = drain(tc);
  assert.deepEqual(actions.filter((a) => a.type === "close"), [{ type: "close", relay: R[0].hex }]);
  const w = ofType(events, "relay_state").find((e) => e.relay === R[0].hex)!;
  assert.equal(w.state, "waiting");
  assert.equal(w.fault, "local");
  assert.match(w.reason!, /crashed: boom/);
  assert.deepEqual(ofType(events, "peer_offline"), [{ type: "peer_offline", peer: toHex(p) }]);
  assert.equal(relayView(tc, R[0]).lastError, w.reason);
  tc.tick(T0 + 1_000 + w.retryInMs!);
  assert.deepEqual(relaysOf(only(drain(tc).actions, "open")), [R[0].hex]);
  // After a crash, a `closed` from the same (dead) worker is not a second failure.
  feed(tc, R[1], T0 + 5_000, { type: "crashed", message: "again" });
  closed(tc, R[1], T0 + 5_000);
  const again = drain(tc);
  assert.equal(only(again.actions, "close").length, 1);
});

Deno.test("removeRelay closes it, frees its slots and forgets it", () => {
  const tc = newTc();
  const R = makeRelays(4);
  addGlobals(tc, R);
  const [p] = makePeers(1);
  tc.addPeer(p, T0);
  onlineOn(tc, p, R.slice(0, 1), T0);
  drain(tc);
  assert.equal(tc.removeRelay(R[0].hex.toUpperCase(), T0 + 1), true);
  const { actions, events } = drain(tc);
  assert.deepEqual(actions.filter((a) => a.type === "close"), [{ type: "close", relay: R[0].hex }]);
  assert.deepEqual(relaysOf(only(actions, "open")), [R[3].hex]);
  assert.deepEqual(ofType(events, "relay_state")[0], {
    type: "relay_state",
    relay: R[0].hex,
    state: "removed",
    reason: "removed",
  });
  assert.deepEqual(ofType(events, "peer_offline"), [{ type: "peer_offline", peer: toHex(p) }]);
  assert.deepEqual(slotRelays(tc, p), hexes(R.slice(1)));
  assert.equal(tc.removeRelay(R[0].hex, T0 + 2), false);
  // Events for a relay we forgot are ignored.
  confirm(tc, R[0], T0 + 3);
  assert.deepEqual(drain(tc), { actions: [], events: [] });
});

// ---- onion, stats ---------------------------------------------------------------------------

Deno.test("onion requests go through confirmed relays in turn; responses are passed up", () => {
  const tc = newTc();
  const R = makeRelays(3);
  addGlobals(tc, R);
  const data = new Uint8Array(200).fill(1);
  assert.equal(tc.sendOnion(data, T0).ok, false);
  confirm(tc, R[0], T0);
  confirm(tc, R[2], T0);
  drain(tc);
  const used = [0, 1, 2, 3].map((i) => {
    const out = tc.sendOnion(data, T0 + i);
    assert.equal(out.ok, true);
    return out.ok && out.via === "onion" ? out.relay : "";
  });
  assert.deepEqual(used, [R[0].hex, R[2].hex, R[0].hex, R[2].hex]);
  const chosen = tc.sendOnion(data, T0 + 5, R[2].hex);
  assert.equal(chosen.ok && chosen.via === "onion" && chosen.relay, R[2].hex);
  assert.equal(tc.sendOnion(data, T0 + 5, R[1].hex).ok, false);
  drain(tc);
  feed(tc, R[2], T0 + 10, { type: "onion", data: new Uint8Array([9]) });
  assert.deepEqual(drain(tc).events, [
    { type: "onion", relay: R[2].hex, data: new Uint8Array([9]) },
  ]);
});

Deno.test("connected relays are asked for stats every statsIntervalMs; reports show in relays()", () => {
  const tc = new TcpConnections({ now: T0, random: seededRandom(3) });
  const R = makeRelays(2);
  addGlobals(tc, R);
  confirm(tc, R[0], T0 + 10);
  drain(tc);
  assert.equal(tc.nextDeadline(), T0 + tc.config.statsIntervalMs);
  tc.tick(T0 + tc.config.statsIntervalMs);
  assert.deepEqual(drain(tc).actions, [{ type: "stats", relay: R[0].hex }]);
  assert.equal(tc.nextDeadline(), T0 + 2 * tc.config.statsIntervalMs);
  feed(tc, R[0], T0 + 1_100, {
    type: "stats",
    stats: {
      state: "confirmed",
      bytesIn: 1,
      bytesOut: 2,
      packetsIn: 3,
      packetsOut: 4,
      dataQueued: 5,
      dataQueuedBytes: 6_000,
      dataQueuedHighWater: 7_000,
      priorityQueued: 0,
      rttMs: 30,
      paceRate: 1_500_000,
      maxBytesPer30ms: 0,
      routes: 0,
      online: 0,
      droppedUnroutedData: 0,
      refusedSends: 0,
    },
  });
  const v = relayView(tc, R[0]);
  assert.equal(v.queueDepth, 5);
  assert.equal(v.queueBytes, 6_000);
  assert.equal(v.queueHighWater, 7_000);
  assert.equal(v.upForMs, 1_090);
  feed(tc, R[0], T0 + 1_200, { type: "bad_command", message: "owner bug" });
  assert.equal(relayView(tc, R[0]).lastError, "owner bug");
});

Deno.test("with a proxy every open goes through it", () => {
  const proxy = { kind: "socks5" as const, host: "127.0.0.1", port: 1080 };
  const tc = new TcpConnections({ now: T0, random: seededRandom(3), proxy });
  const [r] = makeRelays(1);
  addGlobals(tc, [r]);
  assert.deepEqual(drain(tc).actions, [
    { type: "open", relay: r.hex, address: r.address, proxy },
  ]);
  // A relay given its own proxy goes through that one; learned relays use the default.
  const [r2, r3] = makeRelays(3).slice(1);
  const other = { kind: "http" as const, host: "127.0.0.1", port: 8888 };
  tc.addRelay(r2.address, T0 + 1, other);
  const [p] = makePeers(1);
  tc.addPeer(p, T0 + 2);
  tc.addPeerRelay(p, r3.address, T0 + 3);
  const opens = only(drain(tc).actions, "open");
  assert.deepEqual(opens.map((o) => [o.relay, o.proxy]), [[r2.hex, other], [r3.hex, proxy]]);
});

// ---- deadlines -------------------------------------------------------------------------------

Deno.test("nextDeadline is the earliest pending retry, idle sleep, search or bench, and never in the past", () => {
  const tc = newTc();
  const R = makeRelays(5);
  addGlobals(tc, R.slice(0, 3));
  // Nothing pending but the (hour-long) stats poll.
  assert.equal(tc.nextDeadline(), T0 + HOUR);
  for (const r of R.slice(0, 3)) confirm(tc, r, T0 + 100);
  // Idle relays: due at confirm + idleSleepMs (they are kept, so nothing happens then).
  assert.equal(tc.nextDeadline(), T0 + 100 + tc.config.idleSleepMs);
  tc.tick(T0 + 100 + tc.config.idleSleepMs);
  assert.equal(tc.nextDeadline(), T0 + HOUR);

  // A peer: its search starts searchAfterMs after it was added.
  const [p] = makePeers(1);
  tc.addPeer(p, T0 + 20_000);
  assert.equal(tc.nextDeadline(), T0 + 30_000);
  // A retry comes first.
  closed(tc, R[1], T0 + 21_000);
  const w = ofType(drain(tc).events, "relay_state").find((e) => e.state === "waiting")!;
  assert.equal(tc.nextDeadline(), T0 + 21_000 + w.retryInMs!);
  tc.tick(T0 + 21_000 + w.retryInMs!);
  assert.equal(tc.nextDeadline(), T0 + 30_000);
  tc.tick(T0 + 30_000);
  assert.ok(tc.nextDeadline() > T0 + 30_000, `${tc.nextDeadline() - T0 - 30_000}`);

  // Whatever the shell does, after a tick at the deadline the next one is later.
  let now = T0 + 30_000;
  for (let i = 0; i < 50; i++) {
    const at = tc.nextDeadline();
    assert.ok(at > now, `step ${i}: deadline ${at - now} ms from now`);
    now = Math.min(at, now + 5_000);
    tc.tick(now);
    drain(tc);
  }
});

// ---- bad input -----------------------------------------------------------------------------

Deno.test("bad input returns typed failures and never throws", () => {
  const tc = newTc();
  const [r] = makeRelays(1);
  addGlobals(tc, [r]);
  const [p, q] = makePeers(2);
  tc.addPeer(p, T0);
  onlineOn(tc, p, [r], T0);
  drain(tc);

  const unknown = tc.sendData(q, new Uint8Array([1]), T0);
  assert.equal(!unknown.ok && unknown.reason, "unknown_peer");
  assert.equal(tc.sendData("not hex at all", new Uint8Array([1]), T0).ok, false);
  const empty = tc.sendData(p, new Uint8Array(0), T0);
  assert.equal(!empty.ok && empty.reason, "invalid");
  const big = tc.sendData(p, new Uint8Array(2032), T0);
  assert.equal(!big.ok && big.reason, "invalid");
  assert.deepEqual(tc.sendData(p, new Uint8Array(2031), T0), {
    ok: true,
    via: "data",
    relay: r.hex,
  });
  // By hex, any case.
  assert.equal(tc.sendData(toHex(p).toUpperCase(), new Uint8Array(1), T0).ok, true);
  assert.equal(only(drain(tc).actions, "send")[0].items.length, 2);

  for (
    const publicKey of [
      "",
      "zz".repeat(32),
      "ab".repeat(31),
      "ab".repeat(33),
      "abc",
      "g".repeat(64),
    ]
  ) {
    const out = tc.addRelay({ host: "127.0.0.1", port: 1, publicKey }, T0);
    assert.equal(out.ok, false, JSON.stringify(publicKey));
    assert.match(!out.ok ? out.message : "", /relay public key/);
    const learned = tc.addPeerRelay(p, { host: "127.0.0.1", port: 1, publicKey }, T0);
    assert.equal(learned.ok, false);
  }
  assert.equal(tc.relays().length, 1);
  // A key in upper case is the same relay.
  assert.deepEqual(tc.addRelay({ ...r.address, publicKey: r.hex.toUpperCase() }, T0), {
    ok: true,
    relay: r.hex,
    added: false,
  });
  assert.deepEqual(tc.addPeerRelay(q, r.address, T0), { ok: false, message: "unknown peer" });
  assert.equal(tc.addPeer(p, T0), false);
  // A peer key that is not 32 bytes is refused, not routed.
  assert.equal(tc.addPeer(new Uint8Array(31), T0), false);
  assert.equal(tc.addPeer(new Uint8Array(0), T0), false);
  assert.equal(tc.peers().length, 1);
  assert.equal(tc.removePeer("nope", T0), false);
  tc.delivered(q, T0);
  tc.delivered("nope", T0);
  tc.relayEvents("ff".repeat(32), [{ type: "confirmed", handshakeMs: 1 }], T0);
  assert.deepEqual(drain(tc), { actions: [], events: [] });
});

// ---- invariants under random input -----------------------------------------------------------

Deno.test("random commands and relay events keep every invariant (simulated shell)", () => {
  const window = 16;
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = seededRandom(1_000 + seed);
    const pick = <T>(xs: readonly T[]): T => xs[rnd(1)[0] % xs.length];
    const chance = (pct: number) => rnd(1)[0] < pct * 2.56;
    const tc = newTc({ sendWindowPackets: window }, seed);
    const R = makeRelays(8);
    const P = makePeers(6);
    /** What the shell knows of each relay worker it runs. */
    const workers = new Map<
      string,
      { confirmed: boolean; dead: boolean; routes: Map<string, number>; owed: number }
    >();
    let now = T0;
    let nextId = 16;
    const where = () => `seed ${seed} at +${now - T0} ms`;

    const apply = () => {
      for (const a of tc.takeActions()) {
        const w = workers.get(a.relay);
        switch (a.type) {
          case "open":
            assert.ok(!w, `${where()}: open of a relay that has a worker`);
            workers.set(a.relay, { confirmed: false, dead: false, routes: new Map(), owed: 0 });
            break;
          case "close":
            assert.ok(w, `${where()}: close of a relay without a worker`);
            workers.delete(a.relay);
            break;
          case "route":
          case "unroute":
          case "stats":
            assert.ok(w?.confirmed && !w.dead, `${where()}: ${a.type} to an unconfirmed relay`);
            if (a.type === "route") w.routes.set(toHex(a.publicKey), 0);
            if (a.type === "unroute") w.routes.delete(toHex(a.publicKey));
            break;
          case "send":
            assert.ok(w?.confirmed && !w.dead, `${where()}: send to an unconfirmed relay`);
            w.owed += a.items.length;
            break;
        }
      }
      for (const e of tc.takeEvents()) {
        if (e.type === "sender_changed") assert.notEqual(e.from, e.to);
      }
    };
    const check = () => {
      const relays = tc.relays(now);
      for (const v of relays) {
        assert.ok(v.inflight <= window, `${where()}: inflight ${v.inflight}`);
        const live = v.state === "connecting" || v.state === "confirmed";
        assert.equal(workers.has(v.publicKey), live, `${where()}: ${v.state} vs shell`);
        if (v.state === "confirmed") assert.equal(v.inflight, workers.get(v.publicKey)!.owed);
      }
      for (const hex of workers.keys()) {
        assert.ok(relays.some((v) => v.publicKey === hex), `${where()}: worker for a lost relay`);
      }
      for (const p of tc.peers(now)) {
        assert.ok(p.slots.length <= 6, `${where()}: ${p.slots.length} slots`);
        assert.equal(new Set(p.slots.map((s) => s.relay)).size, p.slots.length);
        assert.equal(p.online, p.slots.some((s) => s.status === "online"), where());
        if (p.sender !== null) {
          const s = p.slots.find((s) => s.relay === p.sender);
          assert.equal(s?.status, "online", `${where()}: sender not ONLINE`);
        }
        for (const s of p.slots) {
          const v = relays.find((v) => v.publicKey === s.relay);
          assert.ok(v && v.state !== "benched", `${where()}: slot on a benched/unknown relay`);
          if (s.status !== "none") assert.equal(v.state, "confirmed", where());
        }
      }
    };

    for (let step = 0; step < 600; step++) {
      now += chance(50) ? 0 : rnd(1)[0] * 20;
      const op = rnd(1)[0] % 16;
      const p = pick(P);
      const r = pick(R);
      if (op === 0) tc.addRelay(r.address, now);
      else if (op === 1 && chance(20)) tc.removeRelay(r.hex, now);
      else if (op === 2) tc.addPeer(p, now);
      else if (op === 3 && chance(30)) tc.removePeer(p, now);
      else if (op === 4) tc.addPeerRelay(p, r.address, now);
      else if (op === 5 || op === 6) {
        const size = pick([1, 100, 1024, 1025, 2031]);
        const out = tc.sendData(p, new Uint8Array(size), now);
        // Only OOB has the smaller limit.
        if (!out.ok && out.reason === "invalid") assert.ok(size > 1024, where());
      } else if (op === 7) tc.delivered(p, now);
      else if (op === 8) {
        tc.tick(now);
        apply();
        assert.ok(tc.nextDeadline() > now, `${where()}: deadline not after a tick`);
      } else {
        const live = [...workers.entries()].filter(([, w]) => !w.dead);
        if (live.length === 0) continue;
        const [hex, w] = pick(live);
        const ev: RelayLinkEvent[] = [];
        const routedKeys = [...w.routes.keys()];
        if (!w.confirmed) {
          if (chance(70)) {
            w.confirmed = true;
            ev.push({ type: "confirmed", handshakeMs: 1 });
          } else {
            w.dead = true;
            ev.push({
              type: "closed",
              reason: "connect_timeout",
              fault: "network",
              message: "x",
              unsent: 0,
            });
          }
        } else if (op === 9 && routedKeys.length > 0) {
          const k = pick(routedKeys);
          const id = w.routes.get(k) || nextId++;
          w.routes.set(k, id);
          const pk = P.find((x) => toHex(x) === k)!;
          ev.push({ type: "routed", publicKey: pk, connectionId: id });
          if (chance(70)) ev.push({ type: "online", publicKey: pk, connectionId: id });
        } else if (op === 10 && routedKeys.length > 0) {
          const k = pick(routedKeys);
          const pk = P.find((x) => toHex(x) === k)!;
          ev.push(
            chance(50)
              ? {
                type: "data",
                publicKey: pk,
                connectionId: w.routes.get(k)!,
                data: new Uint8Array(5),
              }
              : chance(50)
              ? { type: "offline", publicKey: pk, connectionId: w.routes.get(k)! }
              : { type: "route_refused", publicKey: pk },
          );
        } else if (op === 11) {
          ev.push({ type: "pong", rttMs: rnd(1)[0] });
          ev.push(
            chance(50)
              ? { type: "congested", queuedBytes: 1 }
              : { type: "drained", queuedBytes: 0 },
          );
        } else if (op === 12 && w.owed > 0) {
          const n = 1 + (rnd(1)[0] % w.owed);
          w.owed -= n;
          ev.push({ type: "sent", packets: n });
        } else if (op === 13) {
          ev.push({ type: "oob", publicKey: p, data: new Uint8Array(3) });
        } else if (chance(40)) {
          w.dead = true;
          ev.push(
            chance(20) ? { type: "crashed", message: "x" } : {
              type: "closed",
              reason: pick(["ping_timeout", "socket_closed", "stalled"] as const),
              fault: pick(["peer", "network"] as const),
              message: "x",
              unsent: w.owed,
            },
          );
        }
        if (ev.length === 0) continue;
        tc.relayEvents(hex, ev, now);
      }
      apply();
      check();
    }
  }
});

Deno.test("after a suspend: back-offs from before it are void, and a long sleep reopens live sessions at once", () => {
  const tc = newTc();
  const [a, b] = makeRelays(2);
  addGlobals(tc, [a, b]);
  drain(tc);
  confirm(tc, a, T0 + 10);
  confirm(tc, b, T0 + 10);
  // b fails and backs off; a stays up.
  closed(tc, b, T0 + 20);
  closed(tc, b, T0 + 20); // late duplicate: ignored
  assert.equal(relayView(tc, b).state, "waiting");
  const retryIn = relayView(tc, b, T0 + 20).retryInMs!;
  assert.ok(retryIn > 0);
  drain(tc);

  // A short nap (10 s): a keeps its session, b is retried now rather than after its back-off.
  tc.wake(T0 + 30, 10_000);
  let { actions } = drain(tc);
  assert.deepEqual(only(actions, "open").map((x) => x.relay), [b.hex]);
  assert.deepEqual(only(actions, "close"), []);
  assert.equal(relayView(tc, a).state, "confirmed");

  // A long one (an hour): a's session is surely gone at the relay: closed and reopened now.
  confirm(tc, b, T0 + 40);
  drain(tc);
  tc.wake(T0 + 50, 3_600_000);
  ({ actions } = drain(tc));
  assert.deepEqual(only(actions, "close").map((x) => x.relay).sort(), [a.hex, b.hex].sort());
  assert.deepEqual(only(actions, "open").map((x) => x.relay).sort(), [a.hex, b.hex].sort());
  assert.match(relayView(tc, a).lastError ?? "", /reopened after 3600 s asleep/);
});

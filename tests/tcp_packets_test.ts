/**
 * daemon/core/tcp_common/packets.ts against spec/tcp.md §5 (packet ids and layouts), §4 (sizes) and the
 * length checks of §7/§8: exact bytes, round trips, and every malformed form.
 */
import assert from "node:assert/strict";
import { EncodeError } from "../daemon/core/common/codec.ts";
import { toHex } from "../daemon/core/common/crypto.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  isConnectionId,
  isPriority,
  MAX_DATA_PAYLOAD,
  MAX_FORWARD_PAYLOAD,
  MAX_OOB_DATA,
  MAX_PACKET_SIZE,
  MAX_PLAIN_SIZE,
  MIN_ONION_REQUEST_PAYLOAD,
  NUM_CLIENT_CONNECTIONS,
  NUM_RESERVED_PORTS,
  PacketId,
  packetName,
  type RelayPacket,
  type RelayPacketKind,
} from "../daemon/core/tcp_common/packets.ts";

const fill = (byte: number, n: number) => new Uint8Array(n).fill(byte);
const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => (start + i) & 0xff);
const PK = seq(0x20, 32); // 20 21 .. 3f
const PK_HEX = toHex(PK);

/** Decode, asserting success. */
function decodeOk(b: Uint8Array): RelayPacket {
  const r = decodeRelayPacket(b);
  if (!r.ok) assert.fail(`decode failed: ${r.error.code} ${r.error.message}`);
  return r.value;
}

/** Decode, asserting failure with `code`. */
function decodeFails(b: Uint8Array, code: string, what: string): void {
  const r = decodeRelayPacket(b);
  assert.ok(!r.ok, `${what}: expected ${code}, decoded ${JSON.stringify(r.ok && r.value.kind)}`);
  assert.equal(r.error.code, code, `${what}: ${r.error.message}`);
  assert.equal(typeof r.error.message, "string");
}

/** Encode to exactly `hex`, then decode back to an equal packet. */
function roundTrip(p: RelayPacket, hex: string): void {
  const bytes = encodeRelayPacket(p);
  assert.equal(toHex(bytes), hex, `${p.kind} bytes`);
  assert.deepEqual(decodeOk(bytes), p, `${p.kind} round trip`);
}

/** A packet whose first byte is `id` followed by `n` bytes of `fillByte`. */
const raw = (id: number, n: number, fillByte = 0x42) => Uint8Array.of(id, ...fill(fillByte, n));

// ---- constants (§2) ----

Deno.test("tcp §2: constants", () => {
  assert.equal(NUM_RESERVED_PORTS, 16);
  assert.equal(NUM_CLIENT_CONNECTIONS, 240);
  assert.equal(MAX_PACKET_SIZE, 2048);
  assert.equal(MAX_PLAIN_SIZE, 2032);
  assert.equal(MAX_DATA_PAYLOAD, 2031);
  assert.equal(MAX_OOB_DATA, 1024);
  assert.equal(MIN_ONION_REQUEST_PAYLOAD, 159);
  assert.equal(MAX_FORWARD_PAYLOAD, 1792 + 19);
  assert.deepEqual(PacketId, {
    ROUTING_REQUEST: 0,
    ROUTING_RESPONSE: 1,
    CONNECTION_NOTIFICATION: 2,
    DISCONNECT_NOTIFICATION: 3,
    PING: 4,
    PONG: 5,
    OOB_SEND: 6,
    OOB_RECV: 7,
    ONION_REQUEST: 8,
    ONION_RESPONSE: 9,
    FORWARD_REQUEST: 10,
    FORWARDING: 11,
  });
});

// ---- exact bytes and round trips (§5) ----

Deno.test("tcp §5 id 0: ROUTING_REQUEST = 00 · pk (33 bytes)", () => {
  roundTrip({ kind: "routing_request", publicKey: PK }, "00" + PK_HEX);
});

Deno.test("tcp §5 id 1: ROUTING_RESPONSE = 01 · rpid · pk (34 bytes); rpid 0 = refused", () => {
  roundTrip({ kind: "routing_response", connectionId: 16, publicKey: PK }, "0110" + PK_HEX);
  roundTrip({ kind: "routing_response", connectionId: 255, publicKey: PK }, "01ff" + PK_HEX);
  roundTrip({ kind: "routing_response", connectionId: null, publicKey: PK }, "0100" + PK_HEX);
});

Deno.test("tcp §5 ids 2, 3: CONNECTION / DISCONNECT_NOTIFICATION = id · conn_id", () => {
  roundTrip({ kind: "connection_notification", connectionId: 16 }, "0210");
  roundTrip({ kind: "connection_notification", connectionId: 255 }, "02ff");
  roundTrip({ kind: "disconnect_notification", connectionId: 16 }, "0310");
  roundTrip({ kind: "disconnect_notification", connectionId: 0x9a }, "039a");
});

Deno.test("tcp §5 ids 4, 5: PING / PONG = id · ping_id (8 bytes, big-endian)", () => {
  roundTrip({ kind: "ping", pingId: 0x0102030405060708n }, "040102030405060708");
  roundTrip({ kind: "pong", pingId: 0x0102030405060708n }, "050102030405060708");
  roundTrip({ kind: "ping", pingId: 1n }, "040000000000000001");
  roundTrip({ kind: "pong", pingId: 0xffff_ffff_ffff_ffffn }, "05ffffffffffffffff");
  roundTrip({ kind: "ping", pingId: 0x8000_0000_0000_0000n }, "048000000000000000");
});

Deno.test("tcp §5 ids 6, 7: OOB_SEND / OOB_RECV = id · pk · data (1..1024)", () => {
  roundTrip({ kind: "oob_send", publicKey: PK, data: Uint8Array.of(0xab) }, "06" + PK_HEX + "ab");
  roundTrip(
    { kind: "oob_recv", publicKey: PK, data: Uint8Array.of(1, 2, 3) },
    "07" + PK_HEX + "010203",
  );
  const max = seq(0, MAX_OOB_DATA);
  roundTrip({ kind: "oob_send", publicKey: PK, data: max }, "06" + PK_HEX + toHex(max));
  roundTrip({ kind: "oob_recv", publicKey: PK, data: max }, "07" + PK_HEX + toHex(max));
  assert.equal(encodeRelayPacket({ kind: "oob_send", publicKey: PK, data: max }).length, 1057);
});

Deno.test("tcp §5 id 8: ONION_REQUEST = 08 · payload (≥ 159)", () => {
  const min = seq(1, MIN_ONION_REQUEST_PAYLOAD);
  roundTrip({ kind: "onion_request", data: min }, "08" + toHex(min));
  assert.equal(encodeRelayPacket({ kind: "onion_request", data: min }).length, 160);
  const max = seq(7, MAX_PLAIN_SIZE - 1);
  roundTrip({ kind: "onion_request", data: max }, "08" + toHex(max));
});

Deno.test("tcp §5 id 9: ONION_RESPONSE = 09 · payload", () => {
  roundTrip({ kind: "onion_response", data: Uint8Array.of(0x8c) }, "098c");
  const big = seq(3, 400);
  roundTrip({ kind: "onion_response", data: big }, "09" + toHex(big));
});

Deno.test("tcp §5 ids 10, 11: FORWARD_REQUEST / FORWARDING = id · payload", () => {
  // packed ip_port: family 2 (IPv4) · 127.0.0.1 · port 33445 big-endian, then data
  const fwd = Uint8Array.of(2, 127, 0, 0, 1, 0x82, 0xa5, 0xde, 0xad);
  roundTrip({ kind: "forward_request", data: fwd }, "0a" + toHex(fwd));
  roundTrip({ kind: "forwarding", data: Uint8Array.of(0x55) }, "0b55");
  const max = seq(0, MAX_FORWARD_PAYLOAD);
  roundTrip({ kind: "forward_request", data: max }, "0a" + toHex(max));
});

Deno.test("tcp §5 ids 16..255: DATA = conn_id · payload, no separate id byte", () => {
  roundTrip(
    { kind: "data", connectionId: 16, data: new TextEncoder().encode("hello") },
    "1068656c6c6f",
  );
  roundTrip({ kind: "data", connectionId: 255, data: Uint8Array.of(0) }, "ff00");
  const max = seq(0, MAX_DATA_PAYLOAD);
  const bytes = encodeRelayPacket({ kind: "data", connectionId: 0x80, data: max });
  assert.equal(bytes.length, MAX_PLAIN_SIZE);
  assert.equal(bytes[0], 0x80);
  assert.deepEqual(decodeOk(bytes), { kind: "data", connectionId: 0x80, data: max });
  // Every connection id decodes as DATA with that id.
  for (let id = 16; id <= 255; id++) {
    assert.deepEqual(decodeOk(Uint8Array.of(id, 0xee)), {
      kind: "data",
      connectionId: id,
      data: Uint8Array.of(0xee),
    });
  }
});

Deno.test("tcp §5: decoded payloads are views into the input (documented)", () => {
  const b = Uint8Array.of(0x10, 1, 2, 3);
  const p = decodeOk(b);
  assert.equal(p.kind, "data");
  if (p.kind === "data") {
    b[1] = 9;
    assert.equal(p.data[0], 9);
  }
});

Deno.test("tcp §5: decoding works on a subarray at an odd offset (ping id read)", () => {
  const backing = Uint8Array.of(0xee, 0x04, 1, 2, 3, 4, 5, 6, 7, 8, 0xee);
  assert.deepEqual(decodeOk(backing.subarray(1, 10)), {
    kind: "ping",
    pingId: 0x0102030405060708n,
  });
});

// ---- malformed forms (decoder) ----

Deno.test("tcp §4: a packet of fewer than 2 bytes is too_short", () => {
  decodeFails(new Uint8Array(0), "too_short", "empty");
  for (let id = 0; id < 256; id++) decodeFails(Uint8Array.of(id), "too_short", `one byte ${id}`);
});

Deno.test("tcp §8: ROUTING_REQUEST must be exactly 33 bytes", () => {
  for (const n of [1, 31, 33, 34, 99]) {
    decodeFails(raw(0, n), "wrong_length", `routing_request of ${n + 1}`);
  }
  assert.equal(decodeOk(raw(0, 32)).kind, "routing_request");
});

Deno.test("tcp §7: ROUTING_RESPONSE must be exactly 34 bytes", () => {
  for (const n of [1, 31, 32, 34, 35]) {
    decodeFails(raw(1, n, 0x10), "wrong_length", `routing_response of ${n + 1}`);
  }
  assert.equal(decodeOk(raw(1, 33, 0x10)).kind, "routing_response");
});

Deno.test("tcp §7: ROUTING_RESPONSE rpid 1..15 is out_of_range; 0 and 16..255 are fine", () => {
  for (let rpid = 1; rpid < 16; rpid++) {
    decodeFails(Uint8Array.of(1, rpid, ...PK), "out_of_range", `rpid ${rpid}`);
  }
  assert.deepEqual(decodeOk(Uint8Array.of(1, 0, ...PK)), {
    kind: "routing_response",
    connectionId: null,
    publicKey: PK,
  });
  for (let rpid = 16; rpid < 256; rpid++) {
    const p = decodeOk(Uint8Array.of(1, rpid, ...PK));
    assert.ok(p.kind === "routing_response" && p.connectionId === rpid);
  }
});

Deno.test("tcp §7: notifications must be exactly 2 bytes", () => {
  for (const id of [2, 3]) {
    for (const n of [2, 3, 33]) {
      decodeFails(raw(id, n, 0x10), "wrong_length", `id ${id} len ${n + 1}`);
    }
  }
});

Deno.test("tcp §7: notification conn id < 16 is out_of_range", () => {
  for (const id of [2, 3]) {
    for (let c = 0; c < 16; c++) {
      decodeFails(Uint8Array.of(id, c), "out_of_range", `id ${id} conn ${c}`);
    }
    assert.equal(
      decodeOk(Uint8Array.of(id, 16)).kind,
      id === 2 ? "connection_notification" : "disconnect_notification",
    );
  }
});

Deno.test("tcp §7: PING / PONG must be exactly 9 bytes", () => {
  for (const id of [4, 5]) {
    for (const n of [1, 7, 9, 10, 32]) {
      decodeFails(raw(id, n, 0x01), "wrong_length", `id ${id} len ${n + 1}`);
    }
  }
});

Deno.test("tcp §5/§7: ping id 0 is out_of_range for PING and PONG", () => {
  decodeFails(raw(4, 8, 0), "out_of_range", "ping 0");
  decodeFails(raw(5, 8, 0), "out_of_range", "pong 0");
  // One set bit anywhere makes it valid.
  for (let i = 1; i <= 8; i++) {
    const b = raw(5, 8, 0);
    b[i] = 1;
    assert.equal(decodeOk(b).kind, "pong");
  }
});

Deno.test("tcp §7/§8: OOB packets below 34 bytes are too_short, above 1057 too_long", () => {
  for (const id of [6, 7]) {
    for (const n of [1, 31, 32]) decodeFails(raw(id, n), "too_short", `id ${id} len ${n + 1}`);
    decodeFails(raw(id, 33 + MAX_OOB_DATA), "too_long", `id ${id} len 1058`);
    decodeFails(raw(id, 2000), "too_long", `id ${id} len 2001`);
    assert.equal(decodeOk(raw(id, 33)).kind, id === 6 ? "oob_send" : "oob_recv"); // 34 bytes
    assert.equal(decodeOk(raw(id, 32 + MAX_OOB_DATA)).kind, id === 6 ? "oob_send" : "oob_recv");
  }
});

Deno.test("tcp §5: ONION_REQUEST with payload < 159 is too_short", () => {
  for (const n of [1, 100, 158]) decodeFails(raw(8, n), "too_short", `onion payload ${n}`);
  assert.equal(decodeOk(raw(8, 159)).kind, "onion_request");
});

Deno.test("tcp §5: FORWARD_REQUEST / FORWARDING payload > 1811 is too_long", () => {
  for (const id of [10, 11]) {
    decodeFails(raw(id, MAX_FORWARD_PAYLOAD + 1), "too_long", `id ${id}`);
    assert.equal(
      decodeOk(raw(id, MAX_FORWARD_PAYLOAD)).kind,
      id === 10 ? "forward_request" : "forwarding",
    );
  }
});

Deno.test("tcp §5: ids 12..15 are reserved_id", () => {
  for (let id = 12; id <= 15; id++) {
    for (const n of [1, 8, 33]) decodeFails(raw(id, n), "reserved_id", `id ${id} len ${n + 1}`);
  }
});

// ---- encoder refusals ----

function refuses(p: RelayPacket, what: string): void {
  assert.throws(() => encodeRelayPacket(p), EncodeError, what);
}

Deno.test("EncodeError is a RangeError named EncodeError", () => {
  try {
    encodeRelayPacket({ kind: "ping", pingId: 0n });
    assert.fail("no throw");
  } catch (e) {
    assert.ok(e instanceof EncodeError);
    assert.ok(e instanceof RangeError);
    assert.equal(e.name, "EncodeError");
  }
});

Deno.test("encoder refuses public keys that are not 32 bytes", () => {
  for (const n of [0, 31, 33]) {
    const pk = new Uint8Array(n);
    const d = Uint8Array.of(1);
    refuses({ kind: "routing_request", publicKey: pk }, `routing_request pk ${n}`);
    refuses({ kind: "routing_response", connectionId: 16, publicKey: pk }, `rr pk ${n}`);
    refuses({ kind: "routing_response", connectionId: null, publicKey: pk }, `rr0 pk ${n}`);
    refuses({ kind: "oob_send", publicKey: pk, data: d }, `oob_send pk ${n}`);
    refuses({ kind: "oob_recv", publicKey: pk, data: d }, `oob_recv pk ${n}`);
  }
});

Deno.test("encoder refuses connection ids outside 16..255", () => {
  for (const id of [-1, 0, 1, 15, 256, 1000, 16.5, NaN]) {
    refuses({ kind: "routing_response", connectionId: id, publicKey: PK }, `rr ${id}`);
    refuses({ kind: "connection_notification", connectionId: id }, `cn ${id}`);
    refuses({ kind: "disconnect_notification", connectionId: id }, `dn ${id}`);
    refuses({ kind: "data", connectionId: id, data: Uint8Array.of(1) }, `data ${id}`);
  }
});

Deno.test("encoder refuses ping id 0 and ids outside 64 bits", () => {
  for (const kind of ["ping", "pong"] as const) {
    refuses({ kind, pingId: 0n }, `${kind} 0`);
    refuses({ kind, pingId: -1n }, `${kind} -1`);
    refuses({ kind, pingId: 1n << 64n }, `${kind} 2^64`);
  }
});

Deno.test("encoder refuses OOB data of 0 or 1025 bytes", () => {
  for (const kind of ["oob_send", "oob_recv"] as const) {
    refuses({ kind, publicKey: PK, data: new Uint8Array(0) }, `${kind} 0`);
    refuses({ kind, publicKey: PK, data: new Uint8Array(MAX_OOB_DATA + 1) }, `${kind} 1025`);
  }
});

Deno.test("encoder refuses DATA payloads of 0 or 2032 bytes", () => {
  refuses({ kind: "data", connectionId: 16, data: new Uint8Array(0) }, "data 0");
  refuses({ kind: "data", connectionId: 16, data: new Uint8Array(MAX_DATA_PAYLOAD + 1) }, "2032");
});

Deno.test("encoder refuses onion requests below 159 or above 2031 bytes of payload", () => {
  refuses({ kind: "onion_request", data: new Uint8Array(0) }, "onion 0");
  refuses({ kind: "onion_request", data: new Uint8Array(158) }, "onion 158");
  refuses({ kind: "onion_request", data: new Uint8Array(MAX_PLAIN_SIZE) }, "onion 2032");
});

Deno.test("encoder refuses empty / oversized onion responses and forward payloads", () => {
  refuses({ kind: "onion_response", data: new Uint8Array(0) }, "onion_response 0");
  refuses({ kind: "onion_response", data: new Uint8Array(MAX_PLAIN_SIZE) }, "onion_response 2032");
  for (const kind of ["forward_request", "forwarding"] as const) {
    refuses({ kind, data: new Uint8Array(0) }, `${kind} 0`);
    refuses({ kind, data: new Uint8Array(MAX_FORWARD_PAYLOAD + 1) }, `${kind} too long`);
  }
});

Deno.test("every encodable packet fits in one frame (≤ 2032 bytes of plaintext)", () => {
  const biggest: RelayPacket[] = [
    { kind: "oob_send", publicKey: PK, data: new Uint8Array(MAX_OOB_DATA) },
    { kind: "onion_request", data: new Uint8Array(MAX_PLAIN_SIZE - 1) },
    { kind: "onion_response", data: new Uint8Array(MAX_PLAIN_SIZE - 1) },
    { kind: "forward_request", data: new Uint8Array(MAX_FORWARD_PAYLOAD) },
    { kind: "data", connectionId: 16, data: new Uint8Array(MAX_DATA_PAYLOAD) },
  ];
  for (const p of biggest) assert.ok(encodeRelayPacket(p).length <= MAX_PLAIN_SIZE, p.kind);
});

// ---- priority (§6) ----

Deno.test("tcp §6: isPriority for each kind", () => {
  const expected: Record<RelayPacketKind, boolean> = {
    routing_request: true,
    routing_response: true,
    connection_notification: true,
    disconnect_notification: true,
    ping: true,
    pong: true,
    oob_send: false,
    oob_recv: false,
    onion_request: false,
    onion_response: false,
    forward_request: false,
    forwarding: false,
    data: false,
  };
  for (const [kind, prio] of Object.entries(expected)) {
    assert.equal(isPriority(kind as RelayPacketKind), prio, kind);
  }
});

Deno.test("isConnectionId: 16..255 integers only", () => {
  assert.ok(isConnectionId(16));
  assert.ok(isConnectionId(255));
  for (const id of [0, 15, 256, -16, 16.5, NaN, Infinity]) assert.ok(!isConnectionId(id), `${id}`);
});

// ---- names ----

Deno.test("packetName: ids 0..11 by name, 12..15 reserved, 16..255 DATA", () => {
  const names = [
    "ROUTING_REQUEST",
    "ROUTING_RESPONSE",
    "CONNECTION_NOTIFICATION",
    "DISCONNECT_NOTIFICATION",
    "PING",
    "PONG",
    "OOB_SEND",
    "OOB_RECV",
    "ONION_REQUEST",
    "ONION_RESPONSE",
    "FORWARD_REQUEST",
    "FORWARDING",
  ];
  names.forEach((n, id) => assert.equal(packetName(id), n));
  for (const [name, id] of Object.entries(PacketId)) assert.equal(packetName(id), name);
  for (let id = 12; id <= 15; id++) assert.equal(packetName(id), `RESERVED_${id}`);
  for (let id = 16; id <= 255; id++) assert.equal(packetName(id), "DATA");
});

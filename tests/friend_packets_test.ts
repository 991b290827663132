/**
 * daemon/core/friend_connection/friend_packets.ts against spec/friend_connection.md §2 and §4.1 (the receive rules
 * friend_connection.ts and messenger.ts apply): every kind round-trips, every length rule at
 * its boundary, and friend_connection.ts and messenger.ts export the codec's own ids and limits.
 */
import assert from "node:assert/strict";
import { EncodeError } from "../daemon/core/common/codec.ts";
import * as fc from "../daemon/core/friend_connection/friend_connection.ts";
import * as fp from "../daemon/core/friend_connection/friend_packets.ts";
import {
  decodeFriendPacket,
  encodeFriendPacket,
  type FriendPacket,
  friendPacketName,
  isLossyId,
  MAX_MESSAGE_LENGTH,
  MAX_NAME_LENGTH,
  MAX_STATUSMESSAGE_LENGTH,
} from "../daemon/core/friend_connection/friend_packets.ts";
import * as messenger from "../daemon/core/messenger/messenger.ts";
import { encodeRequestPacket, MAX_CRYPTO_DATA_SIZE } from "../daemon/core/net_crypto/packets.ts";
import { encodePackedNodes, type PackedNode } from "../daemon/core/common/packed_node.ts";
import { fails, ok } from "./support/decoded.ts";

const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => (start + i) & 0xff);

const withId = (id: number, body: Uint8Array | number[]) => Uint8Array.of(id, ...body);
const ascii = (n: number, ch = "a") => ch.repeat(n);

const NODES: PackedNode[] = [
  { transport: "tcp", host: "192.168.1.10", port: 33445, publicKey: seq(0x20, 32) },
  { transport: "tcp", host: "2001:db8::1", port: 443, publicKey: seq(0x60, 32) },
  { transport: "udp", host: "10.0.0.7", port: 3389, publicKey: seq(0xa0, 32) },
];

const SAMPLES: FriendPacket[] = [
  { kind: "request", body: new Uint8Array(0) },
  { kind: "request", body: encodeRequestPacket(5, 20, (n) => n % 3 !== 0).subarray(1) },
  { kind: "kill" },
  { kind: "alive" },
  { kind: "share_relays", nodes: NODES },
  { kind: "share_relays", nodes: [] },
  { kind: "friend_requests", data: Uint8Array.of(1, 2, 3, 4, 0x68, 0x69) },
  { kind: "online" },
  { kind: "offline" },
  { kind: "nickname", name: "" },
  { kind: "nickname", name: "Алиса 🦊" },
  { kind: "status_message", text: "" },
  { kind: "status_message", text: "out for lunch" },
  { kind: "user_status", status: "none" },
  { kind: "user_status", status: "away" },
  { kind: "user_status", status: "busy" },
  { kind: "typing", typing: true },
  { kind: "typing", typing: false },
  { kind: "message", text: "hello there" },
  { kind: "action", text: "waves" },
  { kind: "custom_lossless", data: Uint8Array.of(160, 1, 2, 3) },
  { kind: "custom_lossless", data: Uint8Array.of(191) },
  { kind: "custom_lossy", data: Uint8Array.of(200, 9, 9) },
  { kind: "custom_lossy", data: Uint8Array.of(254) },
  { kind: "other", id: 69, name: "msi", data: Uint8Array.of(1, 2) },
  { kind: "other", id: 80, name: "file_sendrequest", data: seq(0, 40) },
  { kind: "other", id: 81, name: "file_control", data: Uint8Array.of(0, 1, 0) },
  { kind: "other", id: 82, name: "file_data", data: seq(3, 100) },
  { kind: "other", id: 96, name: "conference_invite", data: seq(7, 35) },
  { kind: "other", id: 99, name: "conference_message", data: seq(1, 10) },
  { kind: "other", id: 192, name: "av_audio", data: seq(1, 10) },
  { kind: "other", id: 199, name: "conference_lossy", data: seq(1, 10) },
  { kind: "other", id: 140, name: "unknown", data: new Uint8Array(0) },
];

Deno.test("friend packets: every kind round-trips through encode and decode", () => {
  const kinds = new Set<string>();
  for (const p of SAMPLES) {
    const bytes = encodeFriendPacket(p);
    assert.deepStrictEqual(ok(decodeFriendPacket(bytes), p.kind), p, p.kind);
    // Encoding what was decoded gives the same bytes back.
    assert.deepStrictEqual(encodeFriendPacket(ok(decodeFriendPacket(bytes))), bytes, p.kind);
    kinds.add(p.kind);
  }
  // Padding has no sendable form (net_crypto strips it), but the codec still names it.
  assert.deepStrictEqual(ok(decodeFriendPacket(Uint8Array.of(0, 0, 5))), { kind: "padding" });
  assert.deepStrictEqual(encodeFriendPacket({ kind: "padding" }), Uint8Array.of(0));
  kinds.add("padding");
  const all: FriendPacket["kind"][] = [
    "padding",
    "request",
    "kill",
    "alive",
    "share_relays",
    "friend_requests",
    "online",
    "offline",
    "nickname",
    "status_message",
    "user_status",
    "typing",
    "message",
    "action",
    "custom_lossless",
    "custom_lossy",
    "other",
  ];
  assert.deepStrictEqual([...kinds].sort(), [...all].sort());
});

Deno.test("friend packets: the bytes the daemon sends today", () => {
  const e = (p: FriendPacket) => [...encodeFriendPacket(p)];
  assert.deepStrictEqual(e({ kind: "alive" }), [16]);
  assert.deepStrictEqual(e({ kind: "online" }), [24]);
  assert.deepStrictEqual(e({ kind: "offline" }), [25]);
  assert.deepStrictEqual(e({ kind: "nickname", name: "ab" }), [48, 0x61, 0x62]);
  assert.deepStrictEqual(e({ kind: "status_message", text: "" }), [49]);
  assert.deepStrictEqual(e({ kind: "user_status", status: "busy" }), [50, 2]);
  assert.deepStrictEqual(e({ kind: "typing", typing: true }), [51, 1]);
  assert.deepStrictEqual(e({ kind: "message", text: "hi" }), [64, 0x68, 0x69]);
  assert.deepStrictEqual(e({ kind: "action", text: "hi" }), [65, 0x68, 0x69]);
  assert.deepStrictEqual(e({ kind: "custom_lossless", data: Uint8Array.of(170, 5) }), [170, 5]);
  assert.deepStrictEqual(
    encodeFriendPacket({ kind: "share_relays", nodes: NODES.slice(0, 2) }),
    withId(17, encodePackedNodes(NODES.slice(0, 2))),
  );
});

Deno.test("friend packets: friend_connection.ts and messenger.ts export the codec's ids", () => {
  // They re-export them, and their importers (control.ts, config.ts, state_store.ts, the
  // tests) take these names from them: each must still be exported there, with the codec's
  // value, which is c-toxcore 0.2.18's.
  const expected = {
    fc: { PACKET_ID_ALIVE: 16, PACKET_ID_SHARE_RELAYS: 17, PACKET_ID_FRIEND_REQUESTS: 18 },
    messenger: {
      PACKET_ID_ONLINE: 24,
      PACKET_ID_OFFLINE: 25,
      PACKET_ID_NICKNAME: 48,
      PACKET_ID_STATUSMESSAGE: 49,
      PACKET_ID_USERSTATUS: 50,
      PACKET_ID_TYPING: 51,
      PACKET_ID_MESSAGE: 64,
      PACKET_ID_ACTION: 65,
      MAX_NAME_LENGTH: 128,
      MAX_STATUSMESSAGE_LENGTH: 1007,
      MAX_MESSAGE_LENGTH: 1372,
      CUSTOM_LOSSLESS_FIRST: 160,
      CUSTOM_LOSSLESS_LAST: 191,
      CUSTOM_LOSSY_FIRST: 200,
      CUSTOM_LOSSY_LAST: 254,
    },
  } as const;
  const modules = { fc, messenger } as const;
  for (const [mod, values] of Object.entries(expected) as [keyof typeof modules, object][]) {
    const exported = modules[mod] as Record<string, unknown>;
    const codec = fp as Record<string, unknown>;
    for (const [name, value] of Object.entries(values)) {
      assert.ok(name in exported, `${mod} no longer exports ${name}`);
      assert.equal(codec[name], value, `friend_packets.ts ${name}`);
      assert.equal(exported[name], codec[name], `${mod}.${name}`);
    }
    // Every PACKET_ID_* either module exports is one of the codec's.
    for (const name of Object.keys(exported).filter((k) => k.startsWith("PACKET_ID_"))) {
      assert.ok(name in values, `${mod} exports ${name}, which the test does not know`);
    }
  }
  assert.equal(fp.MAX_SHARED_RELAYS, fc.DEFAULT_FRIEND_CONNECTION_CONFIG.maxSharedRelays);
});

Deno.test("friend packets: nickname up to 128 bytes, status message up to 1007", () => {
  const name = ok(decodeFriendPacket(withId(48, new TextEncoder().encode(ascii(128)))));
  assert.deepStrictEqual(name, { kind: "nickname", name: ascii(128) });
  fails(decodeFriendPacket(withId(48, new Uint8Array(129).fill(0x61))), "too_long", "name 129");
  assert.throws(() => encodeFriendPacket({ kind: "nickname", name: ascii(129) }), EncodeError);
  // Bytes, not characters: 43 three-byte characters are 129 bytes.
  assert.throws(() => encodeFriendPacket({ kind: "nickname", name: ascii(43, "€") }), EncodeError);
  assert.equal(encodeFriendPacket({ kind: "nickname", name: ascii(42, "€") }).length, 127);

  const sm = ok(decodeFriendPacket(withId(49, new Uint8Array(1007).fill(0x62))));
  assert.deepStrictEqual(sm, { kind: "status_message", text: ascii(1007, "b") });
  fails(decodeFriendPacket(withId(49, new Uint8Array(1008).fill(0x62))), "too_long", "status");
  assert.throws(
    () => encodeFriendPacket({ kind: "status_message", text: ascii(MAX_STATUSMESSAGE_LENGTH + 1) }),
    EncodeError,
  );
  assert.equal(MAX_NAME_LENGTH, 128);
});

Deno.test("friend packets: user status is one byte below 3, typing one byte", () => {
  assert.deepStrictEqual(ok(decodeFriendPacket(Uint8Array.of(50, 2))), {
    kind: "user_status",
    status: "busy",
  });
  fails(decodeFriendPacket(Uint8Array.of(50, 3)), "out_of_range", "status 3");
  fails(decodeFriendPacket(Uint8Array.of(50)), "wrong_length", "status empty");
  fails(decodeFriendPacket(Uint8Array.of(50, 0, 0)), "wrong_length", "status 2 bytes");
  assert.throws(
    () => encodeFriendPacket({ kind: "user_status", status: "gone" as "none" }),
    EncodeError,
  );
  // Any non-zero byte means typing, as Messenger reads it.
  assert.deepStrictEqual(ok(decodeFriendPacket(Uint8Array.of(51, 7))), {
    kind: "typing",
    typing: true,
  });
  fails(decodeFriendPacket(Uint8Array.of(51)), "wrong_length", "typing empty");
  fails(decodeFriendPacket(Uint8Array.of(51, 1, 1)), "wrong_length", "typing 2 bytes");
});

Deno.test("friend packets: online and offline have no body; alive and kill take any", () => {
  fails(decodeFriendPacket(Uint8Array.of(24, 0)), "wrong_length", "online + 1");
  fails(decodeFriendPacket(Uint8Array.of(25, 1)), "wrong_length", "offline + 1");
  assert.deepStrictEqual(ok(decodeFriendPacket(Uint8Array.of(16, 1, 2))), { kind: "alive" });
  assert.deepStrictEqual(ok(decodeFriendPacket(Uint8Array.of(2, 9))), { kind: "kill" });
});

Deno.test("friend packets: messages are 1..1372 bytes, whole payloads at most 1373", () => {
  fails(decodeFriendPacket(Uint8Array.of(64)), "too_short", "empty message");
  fails(decodeFriendPacket(Uint8Array.of(65)), "too_short", "empty action");
  const longest = new Uint8Array(1 + MAX_MESSAGE_LENGTH).fill(0x7a);
  longest[0] = 64;
  assert.equal(longest.length, MAX_CRYPTO_DATA_SIZE);
  assert.equal((ok(decodeFriendPacket(longest)) as { text: string }).text.length, 1372);
  const over = new Uint8Array(MAX_CRYPTO_DATA_SIZE + 1).fill(0x7a);
  over[0] = 64;
  fails(decodeFriendPacket(over), "too_long", "1374-byte payload");
  assert.throws(() => encodeFriendPacket({ kind: "message", text: "" }), EncodeError);
  assert.throws(() => encodeFriendPacket({ kind: "message", text: ascii(1373) }), EncodeError);
  assert.equal(encodeFriendPacket({ kind: "action", text: ascii(1372) }).length, 1373);
  // Invalid UTF-8 is shown, with U+FFFD, as Messenger shows it.
  const bad = ok(decodeFriendPacket(Uint8Array.of(64, 0x68, 0xff, 0x69)));
  assert.deepStrictEqual(bad, { kind: "message", text: "h\ufffdi" });
});

Deno.test("friend packets: share_relays reads at most 3 nodes, a bad node fails it all", () => {
  const four = encodePackedNodes([...NODES, NODES[0]]);
  const r = ok(decodeFriendPacket(withId(17, four)));
  assert.deepStrictEqual(r, { kind: "share_relays", nodes: NODES });
  // friend_connection's config may ask for another limit.
  const one = ok(decodeFriendPacket(withId(17, four), { maxSharedRelays: 1 }));
  assert.deepStrictEqual(one, { kind: "share_relays", nodes: NODES.slice(0, 1) });
  const badType = encodePackedNodes(NODES.slice(0, 2));
  badType[39] = 7; // the second node's type byte
  fails(decodeFriendPacket(withId(17, badType)), "malformed", "bad type");
  fails(decodeFriendPacket(withId(17, four.subarray(0, 50))), "too_short", "cut node");
  assert.throws(
    () => encodeFriendPacket({ kind: "share_relays", nodes: [...NODES, NODES[0]] }),
    EncodeError,
  );
  // The same limit for sending: friend_connection shares as many as its config reads.
  const fourNodes = [...NODES, NODES[0]];
  const sent = encodeFriendPacket({ kind: "share_relays", nodes: fourNodes }, {
    maxSharedRelays: 4,
  });
  assert.deepStrictEqual(sent, withId(17, four));
  assert.deepStrictEqual(ok(decodeFriendPacket(sent, { maxSharedRelays: 4 })), {
    kind: "share_relays",
    nodes: fourNodes,
  });
  assert.throws(
    () => encodeFriendPacket({ kind: "share_relays", nodes: NODES }, { maxSharedRelays: 2 }),
    EncodeError,
  );
});

Deno.test("friend packets: ids net_crypto refuses, custom ranges, other ids", () => {
  fails(decodeFriendPacket(new Uint8Array(0)), "too_short", "empty");
  for (let id = 3; id <= 15; id++) {
    fails(decodeFriendPacket(Uint8Array.of(id)), "reserved_id", `id ${id}`);
  }
  fails(decodeFriendPacket(Uint8Array.of(255, 1)), "unknown_id", "id 255");
  for (const id of [160, 175, 191]) {
    assert.equal(ok(decodeFriendPacket(Uint8Array.of(id))).kind, "custom_lossless", `${id}`);
  }
  for (const id of [200, 230, 254]) {
    assert.equal(ok(decodeFriendPacket(Uint8Array.of(id))).kind, "custom_lossy", `${id}`);
  }
  for (const id of [159, 192, 193, 196, 199]) {
    assert.equal(ok(decodeFriendPacket(Uint8Array.of(id))).kind, "other", `${id}`);
  }
  assert.throws(
    () => encodeFriendPacket({ kind: "custom_lossless", data: Uint8Array.of(159) }),
    EncodeError,
  );
  assert.throws(
    () => encodeFriendPacket({ kind: "custom_lossy", data: Uint8Array.of(199, 1) }),
    EncodeError,
  );
  assert.throws(
    () => encodeFriendPacket({ kind: "custom_lossy", data: new Uint8Array(0) }),
    EncodeError,
  );
  const big = new Uint8Array(MAX_CRYPTO_DATA_SIZE + 1).fill(161);
  assert.throws(() => encodeFriendPacket({ kind: "custom_lossless", data: big }), EncodeError);
  // An id with a kind of its own, or outside 16..254, is not `other`.
  for (const id of [64, 170, 210, 2, 255, 300]) {
    assert.throws(
      () => encodeFriendPacket({ kind: "other", id, name: "x", data: new Uint8Array(0) }),
      EncodeError,
      `other ${id}`,
    );
  }
});

Deno.test("friend packets: names and lossiness by id", () => {
  const names: [number, string][] = [
    [0, "padding"],
    [1, "request"],
    [2, "kill"],
    [7, "reserved"],
    [16, "alive"],
    [17, "share_relays"],
    [18, "friend_requests"],
    [24, "online"],
    [48, "nickname"],
    [49, "status_message"],
    [50, "user_status"],
    [51, "typing"],
    [64, "message"],
    [65, "action"],
    [69, "msi"],
    [82, "file_data"],
    [97, "conference_online"],
    [100, "conference_rejoin"],
    [120, "unknown"],
    [165, "custom_lossless"],
    [193, "av_video"],
    [196, "av_bandwidth"],
    [201, "custom_lossy"],
    [255, "unknown"],
  ];
  for (const [id, name] of names) assert.equal(friendPacketName(id), name, `id ${id}`);
  assert.ok(!isLossyId(191));
  assert.ok(isLossyId(192));
  assert.ok(isLossyId(254));
  assert.ok(!isLossyId(255));
});

/**
 * daemon/core/common/packed_node.ts against spec/friend_connection.md §2.1 (DHT.c pack_nodes/unpack_nodes
 * layout) and §2.2 (ip_is_local): exact bytes, lists, limits, malformed input.
 */
import assert from "node:assert/strict";
import { EncodeError } from "../daemon/core/common/codec.ts";
import { toHex } from "../daemon/core/common/crypto.ts";
import {
  decodePackedNodes,
  encodePackedNodes,
  isLocalAddress,
  PACKED_NODE_SIZE_IP4,
  PACKED_NODE_SIZE_IP6,
  type PackedNode,
  packedNodeToRelay,
  relayToPackedNode,
  TOX_AF_INET,
  TOX_AF_INET6,
  TOX_TCP_INET,
  TOX_TCP_INET6,
} from "../daemon/core/common/packed_node.ts";
import { fails, ok } from "./support/decoded.ts";

const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => (start + i) & 0xff);
const PK1 = seq(0x20, 32);
const PK2 = seq(0x60, 32);
const PK3 = seq(0xa0, 32);

const V4_TCP: PackedNode = { transport: "tcp", host: "192.168.1.10", port: 33445, publicKey: PK1 };
const V6_TCP: PackedNode = { transport: "tcp", host: "2001:db8::1", port: 443, publicKey: PK2 };
const V4_UDP: PackedNode = { transport: "udp", host: "10.0.0.7", port: 1, publicKey: PK3 };

Deno.test("packed node §2.1: type values and node sizes", () => {
  assert.deepEqual([TOX_AF_INET, TOX_AF_INET6, TOX_TCP_INET, TOX_TCP_INET6], [2, 10, 130, 138]);
  assert.equal(PACKED_NODE_SIZE_IP4, 39);
  assert.equal(PACKED_NODE_SIZE_IP6, 51);
});

Deno.test("packed node §2.1: an IPv4 TCP node, byte for byte", () => {
  const bytes = encodePackedNodes([V4_TCP]);
  // 130 | 192.168.1.10 | 33445 = 0x82a5 | key
  assert.equal(toHex(bytes), "82" + "c0a8010a" + "82a5" + toHex(PK1));
  assert.equal(bytes.length, PACKED_NODE_SIZE_IP4);
  assert.deepEqual(ok(decodePackedNodes(bytes, 3)), { nodes: [V4_TCP], consumed: 39 });
});

Deno.test("packed node §2.1: IPv6 nodes, UDP and TCP, byte for byte", () => {
  const udp = { ...V6_TCP, transport: "udp" as const };
  const ip6 = "20010db8000000000000000000000001";
  assert.equal(toHex(encodePackedNodes([udp])), "0a" + ip6 + "01bb" + toHex(PK2));
  assert.equal(toHex(encodePackedNodes([V6_TCP])), "8a" + ip6 + "01bb" + toHex(PK2));
  assert.deepEqual(ok(decodePackedNodes(encodePackedNodes([udp]), 1)).nodes, [udp]);
  // Any spelling of the address packs the same; decoding gives the canonical text.
  const loud = { ...V6_TCP, host: "2001:0DB8:0:0:0:0:0:0001" };
  assert.deepEqual(encodePackedNodes([loud]), encodePackedNodes([V6_TCP]));
});

Deno.test("packed node §2.1: IPv4-mapped IPv6 stays a 16-byte IPv6 node", () => {
  const mapped: PackedNode = {
    transport: "tcp",
    host: "::ffff:127.0.0.1",
    port: 7,
    publicKey: PK1,
  };
  const bytes = encodePackedNodes([mapped]);
  assert.equal(bytes.length, PACKED_NODE_SIZE_IP6);
  assert.equal(toHex(bytes.subarray(0, 17)), "8a" + "00000000000000000000ffff7f000001");
  assert.deepEqual(ok(decodePackedNodes(bytes, 1)).nodes, [mapped]);
});

Deno.test("packed node §2.1: IPv6 hosts decode to RFC 5952 text", () => {
  const cases: [string, string][] = [
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
    ["FE80::ABCD", "fe80::abcd"],
    ["1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"],
    ["1:2:3:4:5:6:0:0", "1:2:3:4:5:6::"],
    ["::0.0.0.1", "::1"],
  ];
  for (const [input, text] of cases) {
    const node: PackedNode = { transport: "udp", host: input, port: 5, publicKey: PK1 };
    const d = ok(decodePackedNodes(encodePackedNodes([node]), 1), input);
    assert.equal(d.nodes[0].host, text, input);
  }
});

Deno.test("packed node §2.1: a mixed list round-trips back to back, no count byte", () => {
  const list = [V4_TCP, V6_TCP, V4_UDP];
  const bytes = encodePackedNodes(list);
  assert.equal(bytes.length, 39 + 51 + 39);
  assert.deepEqual([bytes[0], bytes[39], bytes[90]], [130, 138, 2]);
  assert.deepEqual(ok(decodePackedNodes(bytes, 3)), { nodes: list, consumed: 129 });
  assert.deepEqual(ok(decodePackedNodes(bytes, 10)).nodes, list, "max above the count");
  assert.deepEqual(encodePackedNodes([]).length, 0);
  assert.deepEqual(ok(decodePackedNodes(new Uint8Array(0), 3)), { nodes: [], consumed: 0 });
});

Deno.test("packed node §2.1: at most max nodes are read; what follows them is ignored", () => {
  const bytes = encodePackedNodes([V4_TCP, V6_TCP, V4_UDP]);
  assert.deepEqual(ok(decodePackedNodes(bytes, 2)), { nodes: [V4_TCP, V6_TCP], consumed: 90 });
  assert.deepEqual(ok(decodePackedNodes(bytes, 0)), { nodes: [], consumed: 0 });
  const garbage = new Uint8Array([...bytes, 0xff, 0x01, 0x02]);
  assert.deepEqual(ok(decodePackedNodes(garbage, 3)), {
    nodes: [V4_TCP, V6_TCP, V4_UDP],
    consumed: 129,
  });
  // With room for a 4th node the garbage is read as one, and the whole list fails.
  fails(decodePackedNodes(garbage, 4), "malformed", "garbage read as a node");
});

Deno.test("packed node §2.1: an unknown type byte fails the whole list", () => {
  for (const type of [0, 1, 3, 6, 11, 129, 131, 255]) {
    const bad = encodePackedNodes([V4_TCP]);
    bad[0] = type;
    fails(decodePackedNodes(bad, 3), "malformed", `type ${type}`);
  }
  const second = encodePackedNodes([V4_TCP, V6_TCP]);
  second[39] = 0x07;
  fails(decodePackedNodes(second, 3), "malformed", "good node then a bad one");
});

Deno.test("packed node §2.1: a cut-off node fails the whole list", () => {
  const v4 = encodePackedNodes([V4_TCP]);
  const v6 = encodePackedNodes([V6_TCP]);
  fails(decodePackedNodes(v4.subarray(0, 38), 3), "too_short", "IPv4 node of 38 bytes");
  fails(decodePackedNodes(v4.subarray(0, 1), 3), "too_short", "type byte only");
  fails(decodePackedNodes(v6.subarray(0, 50), 3), "too_short", "IPv6 node of 50 bytes");
  fails(decodePackedNodes(v6.subarray(0, 39), 3), "too_short", "IPv6 type, IPv4 size");
  const both = encodePackedNodes([V4_TCP, V6_TCP]);
  fails(decodePackedNodes(both.subarray(0, 89), 3), "too_short", "second node cut off");
});

Deno.test("packed node §2.1: host names, bad ports and bad keys cannot be packed", () => {
  const bad: PackedNode[] = [
    { ...V4_TCP, host: "relay.example.org" },
    { ...V4_TCP, host: "localhost" },
    { ...V4_TCP, host: "[::1]" },
    { ...V4_TCP, host: "fe80::1%eth0" },
    { ...V4_TCP, host: "1.2.3.256" },
    { ...V4_TCP, port: 0 },
    { ...V4_TCP, port: 65536 },
    { ...V4_TCP, port: 1.5 },
    { ...V4_TCP, publicKey: seq(0, 31) },
    { ...V4_TCP, publicKey: seq(0, 33) },
  ];
  for (const node of bad) {
    assert.throws(() => encodePackedNodes([V6_TCP, node]), EncodeError, JSON.stringify(node));
  }
});

Deno.test("packed node §2.2: isLocalAddress is loopback only, like ip_is_local", () => {
  const local = ["127.0.0.1", "127.255.1.2", "127.0.0.0", "::1", "0:0:0:0:0:0:0:1"];
  const mapped = ["::ffff:127.0.0.1", "::FFFF:7f00:2"];
  const notLocal = [
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "128.0.0.1",
    "0.0.0.0",
    "126.255.255.255",
    "::",
    "::2",
    "::1:0",
    "fe80::1",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "localhost",
    "relay.example.org",
    "",
  ];
  for (const h of [...local, ...mapped]) assert.equal(isLocalAddress(h), true, h);
  for (const h of notLocal) assert.equal(isLocalAddress(h), false, h);
});

Deno.test("packed node: conversion to and from relay addresses", () => {
  const relay = packedNodeToRelay(V4_TCP);
  assert.deepEqual(relay, { host: "192.168.1.10", port: 33445, publicKey: toHex(PK1) });
  assert.deepEqual(relayToPackedNode(relay), V4_TCP);
  assert.deepEqual(packedNodeToRelay(V4_UDP).host, "10.0.0.7", "UDP types are relays too");
  const v6 = relayToPackedNode({ host: "2001:DB8:0::1", port: 443, publicKey: toHex(PK2) });
  assert.deepEqual(v6, V6_TCP, "canonical host, TCP type, key bytes");
  assert.equal(
    relayToPackedNode({ host: "relay.example.org", port: 1, publicKey: toHex(PK1) }),
    null,
  );
  assert.equal(
    relayToPackedNode({ host: "1.2.3.4", port: 1, publicKey: toHex(PK1).toUpperCase() })
      ?.publicKey.length,
    32,
  );
});

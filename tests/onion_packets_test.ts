/**
 * daemon/core/onion/packets.ts against spec/onion.md: the IP_Port of the layers (§2), the TCP onion
 * request peeled hop by hop (§3), announce request and response (§4), data request and
 * response (§5), DHT-PK (§6) and the friend request payload, with the sizes measured against
 * c-toxcore 0.2.18 on the wire.
 */
import assert from "node:assert/strict";
import { EncodeError } from "../daemon/core/common/codec.ts";
import {
  bytesEqual,
  type KeyPair,
  MAC_SIZE,
  newKeyPair,
  NONCE_SIZE,
  open,
  precompute,
  seal,
  toHex,
} from "../daemon/core/common/crypto.ts";
import {
  announceResponseSendback,
  createOnionPath,
  decodeAnnounceRequest,
  decodeDataRequest,
  decodeDhtPk,
  decodeFriendRequest,
  decodeIpPort,
  decodeOnionRequestTcp,
  DHTPK_DATA_MIN_LENGTH,
  encodeAnnounceRequest,
  encodeAnnounceResponse,
  encodeDataRequest,
  encodeDhtPk,
  encodeFriendRequest,
  encodeIpPort,
  encodeOnionRequestTcp,
  isIpLiteral,
  type IsStored,
  MAX_DATA_REQUEST_SIZE,
  MAX_FRIEND_REQUEST_DATA_SIZE,
  MAX_FRIEND_REQUEST_DELIVERED,
  MAX_SENT_NODES,
  NET_PACKET_ANNOUNCE_REQUEST,
  NET_PACKET_ANNOUNCE_RESPONSE,
  NET_PACKET_ONION_DATA_REQUEST,
  NET_PACKET_ONION_DATA_RESPONSE,
  NET_PACKET_ONION_SEND_1,
  NET_PACKET_ONION_SEND_2,
  NOSPAM_SIZE,
  ONION_ANNOUNCE_REQUEST_SIZE,
  ONION_ANNOUNCE_RESPONSE_MAX_SIZE,
  ONION_ANNOUNCE_RESPONSE_MIN_SIZE,
  ONION_ANNOUNCE_SENDBACK_DATA_LENGTH,
  ONION_CLIENT_MAX_DATA_SIZE,
  ONION_DATA_DHTPK,
  ONION_DATA_FRIEND_REQ,
  ONION_DATA_IN_RESPONSE_MIN_SIZE,
  ONION_DATA_MAX_ACCEPTED,
  ONION_DATA_REQUEST_MIN_SIZE,
  ONION_DATA_RESPONSE_MIN_SIZE,
  ONION_MAX_DATA_SIZE,
  ONION_MAX_PACKET_SIZE,
  ONION_PING_ID_SIZE,
  ONION_SEND_1,
  ONION_SEND_BASE,
  type OnionNode,
  openAnnounceResponse,
  openDataResponse,
  openOnionLayer,
  SIZE_IPPORT,
} from "../daemon/core/onion/packets.ts";
import { encodePackedNodes, type PackedNode } from "../daemon/core/common/packed_node.ts";
import { seededRandom } from "../tools/testbed/seeded_random.ts";
import { fails, ok } from "./support/decoded.ts";

const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => (start + i) & 0xff);
const zeros = (n: number) => new Uint8Array(n);
const keyPair = (seed: number): KeyPair => newKeyPair(seededRandom(seed));
/** A key-pair factory of its own seed, so a path's layer keys are the same on every run. */
const keyPairs = (seed: number) => {
  const random = seededRandom(seed);
  return () => newKeyPair(random);
};

const N2 = keyPair(2);
const N3 = keyPair(3);
const D = keyPair(4);
const node = (k: KeyPair, port: number): OnionNode => ({
  host: "127.0.0.1",
  port,
  publicKey: k.publicKey,
});
const N2_NODE = node(N2, 33446);
const N3_NODE = node(N3, 33447);
const D_ADDR = { host: "192.0.2.7", port: 33448 };

/** The three layers a node peels: R reads N2 in the clear, N2 and N3 open theirs. */
function peel(body: Uint8Array) {
  const r = ok(decodeOnionRequestTcp(body), "relay");
  const l2 = ok(openOnionLayer(r.nonce, r.tmpPublicKey, r.box, N2.secretKey), "N2's layer");
  const l3 = ok(
    openOnionLayer(r.nonce, l2.rest.subarray(0, 32), l2.rest.subarray(32), N3.secretKey),
    "N3's layer",
  );
  return { r, l2, l3 };
}

function sendThrough(payload: Uint8Array, seed = 10): Uint8Array {
  const path = createOnionPath(N2_NODE, N3_NODE, keyPairs(seed));
  return encodeOnionRequestTcp(path, D_ADDR, payload, seededRandom(seed + 1));
}

// ---- §1, §2: ids and sizes -------------------------------------------------------------------

Deno.test("onion §1: packet and payload ids are c-toxcore 0.2.18's", () => {
  assert.deepEqual(
    [
      NET_PACKET_ONION_SEND_1,
      NET_PACKET_ONION_SEND_2,
      NET_PACKET_ANNOUNCE_REQUEST,
      NET_PACKET_ANNOUNCE_RESPONSE,
      NET_PACKET_ONION_DATA_REQUEST,
      NET_PACKET_ONION_DATA_RESPONSE,
    ],
    [0x81, 0x82, 0x83, 0x84, 0x85, 0x86],
  );
  assert.equal(ONION_DATA_DHTPK, 0x9c);
  assert.equal(ONION_DATA_FRIEND_REQ, 0x20);
});

Deno.test("onion §2: the size table", () => {
  assert.equal(SIZE_IPPORT, 19);
  assert.equal(ONION_MAX_PACKET_SIZE, 1400);
  assert.equal(ONION_SEND_BASE, 67);
  assert.equal(ONION_SEND_1, 24 + 3 * 67);
  assert.equal(ONION_PING_ID_SIZE, 32);
  assert.equal(ONION_ANNOUNCE_SENDBACK_DATA_LENGTH, 8);
  assert.equal(ONION_ANNOUNCE_REQUEST_SIZE, 177);
  assert.equal(ONION_ANNOUNCE_RESPONSE_MIN_SIZE, 82);
  assert.equal(ONION_ANNOUNCE_RESPONSE_MAX_SIZE, 82 + 4 * 136);
  assert.equal(MAX_SENT_NODES, 4);
  assert.equal(ONION_MAX_DATA_SIZE, 1174);
  assert.equal(ONION_DATA_REQUEST_MIN_SIZE, 105);
  assert.equal(MAX_DATA_REQUEST_SIZE, 1069);
  assert.equal(ONION_DATA_RESPONSE_MIN_SIZE, 73);
  assert.equal(ONION_DATA_IN_RESPONSE_MIN_SIZE, 48);
  assert.equal(ONION_CLIENT_MAX_DATA_SIZE, 1021);
  assert.equal(ONION_DATA_MAX_ACCEPTED, 948);
  assert.equal(ONION_DATA_RESPONSE_MIN_SIZE + ONION_DATA_IN_RESPONSE_MIN_SIZE, 121);
  assert.equal(DHTPK_DATA_MIN_LENGTH, 41);
  assert.equal(NOSPAM_SIZE, 4);
  assert.equal(MAX_FRIEND_REQUEST_DATA_SIZE, 1016);
  assert.equal(MAX_FRIEND_REQUEST_DELIVERED, 943);
});

Deno.test("onion §2: an IPv4 ipport is family 2, the address in the first 4 of 16 bytes, port BE", () => {
  const b = encodeIpPort({ host: "127.0.0.1", port: 33445 });
  assert.equal(toHex(b), "02" + "7f000001" + "00".repeat(12) + "82a5");
  assert.deepEqual(ok(decodeIpPort(b)), { host: "127.0.0.1", port: 33445 });
});

Deno.test("onion §2: an IPv6 ipport is family 10 and all 16 bytes", () => {
  const b = encodeIpPort({ host: "2001:DB8::1", port: 443 });
  assert.equal(toHex(b), "0a" + "20010db8" + "00".repeat(11) + "01" + "01bb");
  // Decoding gives the canonical text, whatever spelling went in.
  assert.deepEqual(ok(decodeIpPort(b)), { host: "2001:db8::1", port: 443 });
  const mapped = ok(decodeIpPort(encodeIpPort({ host: "::ffff:10.1.2.3", port: 1 })));
  assert.deepEqual(mapped, { host: "::ffff:10.1.2.3", port: 1 });
});

Deno.test("onion §2: an ipport is written in place, over whatever was there", () => {
  const out = new Uint8Array(SIZE_IPPORT + 4).fill(0xee);
  const r = encodeIpPort({ host: "10.0.0.1", port: 65535 }, out, 2);
  assert.equal(r, out);
  assert.equal(toHex(out), "eeee" + "02" + "0a000001" + "00".repeat(12) + "ffff" + "eeee");
  assert.deepEqual(ok(decodeIpPort(out.subarray(2))), { host: "10.0.0.1", port: 65535 });
});

Deno.test("onion §2: a layer cannot carry a name or a port outside 1..65535", () => {
  for (const host of ["localhost", "tox.example.org", "", "1.2.3"]) {
    assert.throws(() => encodeIpPort({ host, port: 33445 }), EncodeError, host);
    assert.equal(isIpLiteral(host), false, host);
  }
  for (const port of [0, 65536, -1, 1.5]) {
    assert.throws(() => encodeIpPort({ host: "127.0.0.1", port }), EncodeError, String(port));
  }
  assert.ok(isIpLiteral("127.0.0.1") && isIpLiteral("::1"));
});

Deno.test("onion §2: forward hops accept only families 2 and 10", () => {
  for (const family of [0, 3, 130, 138, 255]) {
    const b = encodeIpPort({ host: "127.0.0.1", port: 1 });
    b[0] = family;
    fails(decodeIpPort(b), "malformed", `family ${family}`);
  }
  fails(decodeIpPort(new Uint8Array(18)), "too_short", "18 bytes");
});

// ---- §3: the TCP onion request -----------------------------------------------------------------

Deno.test("onion §3: a packet-8 body peeled layer by layer by N2's and N3's keys", () => {
  const payload = seq(0x83, 177);
  const k = keyPairs(7);
  const path = createOnionPath(N2_NODE, N3_NODE, k);
  const layerKeys = keyPairs(7);
  const k2 = layerKeys();
  const k3 = layerKeys();
  assert.deepEqual(path.tmpPublicKey2, k2.publicKey);
  assert.deepEqual(path.tmpPublicKey3, k3.publicKey);
  // Either side of each layer computes the same key.
  assert.deepEqual(path.shared2, precompute(k2.publicKey, N2.secretKey));
  assert.deepEqual(path.shared3, precompute(k3.publicKey, N3.secretKey));

  const body = encodeOnionRequestTcp(path, D_ADDR, payload, seededRandom(8));
  const nonce = seededRandom(8)(NONCE_SIZE);
  // What R reads in the clear: nonce ‖ ipport(N2) ‖ tmp_pk2.
  assert.deepEqual(body.subarray(0, 24), nonce);
  assert.deepEqual(body.subarray(24, 43), encodeIpPort(N2_NODE));
  assert.deepEqual(body.subarray(43, 75), k2.publicKey);

  const { r, l2, l3 } = peel(body);
  assert.deepEqual(r.nonce, nonce);
  assert.deepEqual(r.next, { host: "127.0.0.1", port: 33446 });
  assert.deepEqual(r.tmpPublicKey, k2.publicKey);
  assert.equal(r.box.length, body.length - 75);
  assert.deepEqual(l2.next, { host: "127.0.0.1", port: 33447 });
  assert.deepEqual(l2.rest.subarray(0, 32), k3.publicKey);
  assert.deepEqual(l3.next, D_ADDR);
  assert.deepEqual(l3.rest, payload);
});

Deno.test("onion §3: one nonce seals every layer", () => {
  const path = createOnionPath(N2_NODE, N3_NODE, keyPairs(7));
  const body = encodeOnionRequestTcp(path, D_ADDR, seq(1, 50), seededRandom(9));
  const nonce = body.subarray(0, 24);
  const l2 = open(path.shared2, nonce, body.subarray(75));
  assert.ok(l2 !== null);
  const l3 = open(path.shared3, nonce, l2.subarray(SIZE_IPPORT + 32));
  assert.ok(l3 !== null);
  assert.deepEqual(l3.subarray(SIZE_IPPORT), seq(1, 50));
});

Deno.test("onion §3: the layer keys' secrets are wiped once the shared keys are made", () => {
  const made: KeyPair[] = [];
  const factory = keyPairs(12);
  createOnionPath(N2_NODE, N3_NODE, () => {
    const k = factory();
    made.push(k);
    return k;
  });
  assert.equal(made.length, 2);
  for (const k of made) assert.deepEqual(k.secretKey, zeros(32));
});

Deno.test("onion §3: a wrong node key gives bad_mac, a short layer too_short", () => {
  const body = sendThrough(seq(0x83, 177));
  const r = ok(decodeOnionRequestTcp(body));
  // N3 cannot open N2's layer, nor N2 with a flipped bit.
  fails(openOnionLayer(r.nonce, r.tmpPublicKey, r.box, N3.secretKey), "bad_mac", "N3 on layer 2");
  const flipped = r.box.slice();
  flipped[40] ^= 1;
  fails(openOnionLayer(r.nonce, r.tmpPublicKey, flipped, N2.secretKey), "bad_mac", "flipped");
  fails(
    openOnionLayer(r.nonce, r.tmpPublicKey, r.box.subarray(0, r.box.length - 1), N2.secretKey),
    "bad_mac",
    "cut box",
  );
  // The relay needs nonce, ipport, key and at least a MAC and a byte.
  const min = NONCE_SIZE + SIZE_IPPORT + 32 + MAC_SIZE + 1;
  fails(decodeOnionRequestTcp(body.subarray(0, min - 1)), "too_short", "cut body");
  assert.equal(ok(decodeOnionRequestTcp(body.subarray(0, min))).box.length, MAC_SIZE + 1);
  // A layer that opens but holds only an address has nothing to forward.
  const tmp = keyPair(13);
  const nonce = seq(0, 24);
  const onlyIpPort = seal(
    precompute(N2.publicKey, tmp.secretKey),
    nonce,
    encodeIpPort(N3_NODE),
  );
  fails(openOnionLayer(nonce, tmp.publicKey, onlyIpPort, N2.secretKey), "too_short", "ipport only");
});

Deno.test("onion §3: the relay refuses a bad family for N2", () => {
  const body = sendThrough(seq(0x83, 177)).slice();
  body[NONCE_SIZE] = 130;
  fails(decodeOnionRequestTcp(body), "malformed", "TCP family for N2");
});

Deno.test("onion §3: a packet-8 body is payload + 177 bytes; the payload is 1..1174", () => {
  assert.equal(sendThrough(seq(0, 1)).length, 178);
  assert.equal(sendThrough(seq(0, ONION_MAX_DATA_SIZE)).length, ONION_MAX_DATA_SIZE + 177);
  const path = createOnionPath(N2_NODE, N3_NODE, keyPairs(7));
  for (const n of [0, ONION_MAX_DATA_SIZE + 1]) {
    assert.throws(
      () => encodeOnionRequestTcp(path, D_ADDR, seq(0, n), seededRandom(1)),
      EncodeError,
      `${n} bytes`,
    );
  }
  assert.throws(
    () =>
      encodeOnionRequestTcp(path, { host: "node.example", port: 1 }, seq(0, 9), seededRandom(1)),
    EncodeError,
  );
});

// ---- §4: announce request and response ---------------------------------------------------------

const ME = keyPair(20);
const MY_DATA = keyPair(21);
const SENDBACK = seq(0xb0, 8);

function announceRequest(pingId = zeros(32)) {
  return {
    requesterPublicKey: ME.publicKey,
    pingId,
    searchPublicKey: ME.publicKey,
    dataPublicKey: MY_DATA.publicKey,
    sendback: SENDBACK,
  };
}

Deno.test("onion §3/§4: a 177-byte announce request makes a 354-byte packet-8 body", () => {
  const req = encodeAnnounceRequest(announceRequest(), ME.secretKey, D.publicKey, seededRandom(1));
  assert.equal(req.length, 177);
  const body = sendThrough(req);
  assert.equal(body.length, 354);
  assert.equal(1 + 2 + body.length + 16, 373, "the TCP frame: length, id, body, MAC");
  assert.deepEqual(peel(body).l3.rest, req);
});

Deno.test("onion §4: announce request layout, opened by D", () => {
  const pingId = seq(0x40, 32);
  const req = encodeAnnounceRequest(
    announceRequest(pingId),
    ME.secretKey,
    D.publicKey,
    seededRandom(5),
  );
  assert.equal(req[0], 0x83);
  assert.deepEqual(req.subarray(1, 25), seededRandom(5)(24));
  assert.deepEqual(req.subarray(25, 57), ME.publicKey);
  assert.equal(req.length - 57, 104 + MAC_SIZE);
  const plain = open(precompute(ME.publicKey, D.secretKey), req.subarray(1, 25), req.subarray(57));
  assert.ok(plain !== null);
  assert.equal(
    toHex(plain),
    toHex(pingId) + toHex(ME.publicKey) + toHex(MY_DATA.publicKey) + toHex(SENDBACK),
  );

  const got = ok(decodeAnnounceRequest(req, D.secretKey));
  assert.deepEqual(got.requesterPublicKey, ME.publicKey);
  assert.deepEqual(got.pingId, pingId);
  assert.deepEqual(got.searchPublicKey, ME.publicKey);
  assert.deepEqual(got.dataPublicKey, MY_DATA.publicKey);
  assert.deepEqual(got.sendback, SENDBACK);
  // S serves both directions: D's side and the requester's side agree.
  assert.deepEqual(got.shared, precompute(D.publicKey, ME.secretKey));
});

Deno.test("onion §4: a search is made with a temp key, the friend's key and a zero data key", () => {
  const temp = keyPair(22);
  const friend = keyPair(23);
  const req = encodeAnnounceRequest(
    {
      requesterPublicKey: temp.publicKey,
      pingId: zeros(32),
      searchPublicKey: friend.publicKey,
      dataPublicKey: zeros(32),
      sendback: SENDBACK,
    },
    temp.secretKey,
    D.publicKey,
    seededRandom(6),
  );
  const got = ok(decodeAnnounceRequest(req, D.secretKey));
  assert.deepEqual(got.requesterPublicKey, temp.publicKey);
  assert.deepEqual(got.searchPublicKey, friend.publicKey);
  assert.deepEqual(got.dataPublicKey, zeros(32));
});

Deno.test("onion §4: D drops an announce request of any other length, id or key", () => {
  const req = encodeAnnounceRequest(announceRequest(), ME.secretKey, D.publicKey, seededRandom(1));
  fails(decodeAnnounceRequest(req, N2.secretKey), "bad_mac", "another node's key");
  const longer = new Uint8Array(178);
  longer.set(req);
  fails(decodeAnnounceRequest(longer, D.secretKey), "wrong_length", "178 bytes");
  fails(decodeAnnounceRequest(req.subarray(0, 176), D.secretKey), "wrong_length", "176 bytes");
  const newer = req.slice();
  newer[0] = 0x87;
  fails(decodeAnnounceRequest(newer, D.secretKey), "unknown_id", "0x87");
  const tampered = req.slice();
  tampered[100] ^= 0x80;
  fails(decodeAnnounceRequest(tampered, D.secretKey), "bad_mac", "tampered");
});

Deno.test("onion §4: the announce request encoder checks every field's size", () => {
  const good = announceRequest();
  const bad = [
    { ...good, requesterPublicKey: zeros(31) },
    { ...good, pingId: zeros(33) },
    { ...good, searchPublicKey: zeros(0) },
    { ...good, dataPublicKey: zeros(16) },
    { ...good, sendback: zeros(7) },
  ];
  for (const r of bad) {
    assert.throws(
      () => encodeAnnounceRequest(r, ME.secretKey, D.publicKey, seededRandom(1)),
      EncodeError,
    );
  }
});

const V4: PackedNode = { transport: "udp", host: "192.0.2.1", port: 33445, publicKey: seq(1, 32) };
const FOUR: PackedNode[] = [
  V4,
  { transport: "udp", host: "2001:db8::2", port: 1, publicKey: seq(2, 32) },
  { transport: "udp", host: "198.51.100.3", port: 65535, publicKey: seq(3, 32) },
  { transport: "udp", host: "2001:db8::4", port: 443, publicKey: seq(4, 32) },
];

/** D's side and the requester's side of an announce response. */
function answer(isStored: IsStored, pingIdOrKey: Uint8Array, nodes: readonly PackedNode[]) {
  const dShared = precompute(ME.publicKey, D.secretKey);
  const packet = encodeAnnounceResponse(
    SENDBACK,
    dShared,
    { isStored, pingIdOrKey, nodes },
    seededRandom(30 + isStored),
  );
  return { packet, shared: precompute(D.publicKey, ME.secretKey) };
}

Deno.test("onion §4.2: an announce response with no nodes is 82 bytes, laid out as the spec says", () => {
  const ping = seq(0x70, 32);
  const { packet, shared } = answer(0, ping, []);
  assert.equal(packet.length, 82);
  assert.equal(packet[0], 0x84);
  assert.deepEqual(packet.subarray(1, 9), SENDBACK);
  assert.deepEqual(packet.subarray(9, 33), seededRandom(30)(24));
  const plain = open(shared, packet.subarray(9, 33), packet.subarray(33));
  assert.ok(plain !== null);
  assert.equal(toHex(plain), "00" + toHex(ping));
  assert.deepEqual(ok(announceResponseSendback(packet)), SENDBACK);
  assert.deepEqual(ok(openAnnounceResponse(packet, shared)), {
    isStored: 0,
    pingIdOrKey: ping,
    nodes: [],
  });
});

Deno.test("onion §4.2: is_stored 0, 1 and 2 with 0 and 4 nodes round-trip", () => {
  for (const isStored of [0, 1, 2] as const) {
    for (const nodes of [[], FOUR]) {
      const value = seq(isStored * 40, 32);
      const { packet, shared } = answer(isStored, value, nodes);
      assert.equal(packet.length, 82 + encodePackedNodes(nodes).length);
      assert.deepEqual(ok(announceResponseSendback(packet)), SENDBACK);
      const got = ok(openAnnounceResponse(packet, shared), `is_stored ${isStored}`);
      assert.equal(got.isStored, isStored);
      assert.deepEqual(got.pingIdOrKey, value);
      assert.deepEqual(got.nodes, nodes);
    }
  }
  assert.equal(answer(2, zeros(32), FOUR).packet.length, 82 + 2 * 39 + 2 * 51);
});

Deno.test("onion §4.2: is_stored 3 is refused", () => {
  const shared = precompute(D.publicKey, ME.secretKey);
  const nonce = seq(9, 24);
  const plain = new Uint8Array(33);
  plain[0] = 3;
  const packet = new Uint8Array([0x84, ...SENDBACK, ...nonce, ...seal(shared, nonce, plain)]);
  assert.equal(packet.length, 82);
  fails(openAnnounceResponse(packet, shared), "out_of_range", "is_stored 3");
});

Deno.test("onion §4.2: announce response limits and damage", () => {
  const { packet, shared } = answer(0, zeros(32), []);
  fails(announceResponseSendback(packet.subarray(0, 81)), "too_short", "81 bytes");
  fails(openAnnounceResponse(packet.subarray(0, 81), shared), "too_short", "81 bytes");
  const huge = new Uint8Array(ONION_ANNOUNCE_RESPONSE_MAX_SIZE + 1);
  huge[0] = 0x84;
  fails(announceResponseSendback(huge), "too_long", "627 bytes");
  const notOurs = packet.slice();
  notOurs[0] = 0x86;
  fails(announceResponseSendback(notOurs), "unknown_id", "0x86");
  // The requester's other key (a search key for a self-announce) cannot open it.
  fails(openAnnounceResponse(packet, precompute(D.publicKey, MY_DATA.secretKey)), "bad_mac", "key");
  assert.throws(() => answer(0, zeros(32), [...FOUR, V4]), EncodeError, "5 nodes");
  assert.throws(
    () =>
      encodeAnnounceResponse(
        zeros(7),
        shared,
        { isStored: 0, pingIdOrKey: zeros(32), nodes: [] },
        seededRandom(1),
      ),
    EncodeError,
  );
  assert.throws(
    () =>
      encodeAnnounceResponse(
        SENDBACK,
        shared,
        { isStored: 0, pingIdOrKey: zeros(31), nodes: [] },
        seededRandom(1),
      ),
    EncodeError,
  );
});

Deno.test("onion §4.2: nodes in a response must unpack, with nothing after them", () => {
  const shared = precompute(D.publicKey, ME.secretKey);
  const make = (tail: Uint8Array) => {
    const nonce = seq(3, 24);
    const plain = new Uint8Array([2, ...seq(0, 32), ...tail]);
    return new Uint8Array([0x84, ...SENDBACK, ...nonce, ...seal(shared, nonce, plain)]);
  };
  const one = encodePackedNodes([V4]);
  assert.deepEqual(ok(openAnnounceResponse(make(one), shared)).nodes, [V4]);
  fails(
    openAnnounceResponse(make(new Uint8Array([...one, 0])), shared),
    "malformed",
    "a byte after",
  );
  fails(openAnnounceResponse(make(one.subarray(0, 38)), shared), "too_short", "a cut node");
  const five = encodePackedNodes([...FOUR, V4]);
  fails(openAnnounceResponse(make(five), shared), "malformed", "five nodes");
  const typed = one.slice();
  typed[0] = 7;
  fails(openAnnounceResponse(make(typed), shared), "malformed", "type 7");
});

// ---- §5: onion data ----------------------------------------------------------------------------

const ALICE = keyPair(40);
const BOB = keyPair(41);
const BOB_DATA = keyPair(42);
const MALLORY = keyPair(43);

function dataRequest(payload: Uint8Array, from = ALICE, claimed = from.publicKey, seed = 50) {
  return encodeDataRequest(
    BOB.publicKey,
    BOB_DATA.publicKey,
    claimed,
    from.secretKey,
    payload,
    seededRandom(seed),
    keyPairs(seed + 1),
  );
}

Deno.test("onion §5: 0x85 layout, both boxes under the same nonce", () => {
  const payload = seq(0x9c, 80);
  const req = dataRequest(payload);
  const nonce = seededRandom(50)(24);
  const e = keyPairs(51)();
  assert.equal(req.length, 105 + 48 + 80);
  assert.equal(req[0], 0x85);
  assert.deepEqual(req.subarray(1, 33), BOB.publicKey);
  assert.deepEqual(req.subarray(33, 57), nonce);
  assert.deepEqual(req.subarray(57, 89), e.publicKey);
  const inner = open(precompute(e.publicKey, BOB_DATA.secretKey), nonce, req.subarray(89));
  assert.ok(inner !== null);
  assert.deepEqual(inner.subarray(0, 32), ALICE.publicKey);
  const plain = open(precompute(ALICE.publicKey, BOB.secretKey), nonce, inner.subarray(32));
  assert.deepEqual(plain, payload);
});

Deno.test("onion §5: D turns the 0x85 into the 0x86 it sends back: the key goes, the rest stays", () => {
  const req = dataRequest(seq(1, 10));
  const d = ok(decodeDataRequest(req));
  assert.deepEqual(d.destination, BOB.publicKey);
  assert.equal(d.response.length, req.length - 32);
  assert.equal(d.response[0], 0x86);
  assert.deepEqual(d.response.subarray(1), req.subarray(33));
});

Deno.test("onion §5: data request → response → the sender's real key and the payload", () => {
  for (const n of [1, 80, 500, ONION_DATA_MAX_ACCEPTED]) {
    const payload = seq(n, n);
    const { response } = ok(decodeDataRequest(dataRequest(payload)));
    const got = ok(openDataResponse(response, BOB_DATA.secretKey, BOB.secretKey), `${n} bytes`);
    assert.deepEqual(got.sender, ALICE.publicKey);
    assert.deepEqual(got.payload, payload);
  }
});

Deno.test("onion §5: the inner box proves the sender: a lie about the real key fails", () => {
  // Mallory claims Alice's key but can only seal with her own secret.
  const lie = dataRequest(seq(1, 30), MALLORY, ALICE.publicKey);
  const { response } = ok(decodeDataRequest(lie));
  fails(openDataResponse(response, BOB_DATA.secretKey, BOB.secretKey), "bad_mac", "the lie");
  // Honest Mallory is Mallory.
  const honest = ok(decodeDataRequest(dataRequest(seq(1, 30), MALLORY))).response;
  const got = ok(openDataResponse(honest, BOB_DATA.secretKey, BOB.secretKey));
  assert.deepEqual(got.sender, MALLORY.publicKey);
});

Deno.test("onion §5: the wrong data key or real key cannot open a response", () => {
  const { response } = ok(decodeDataRequest(dataRequest(seq(1, 30))));
  fails(
    openDataResponse(response, BOB.secretKey, BOB.secretKey),
    "bad_mac",
    "real key as data key",
  );
  fails(openDataResponse(response, BOB_DATA.secretKey, BOB_DATA.secretKey), "bad_mac", "inner");
  const notOurs = response.slice();
  notOurs[0] = 0x84;
  fails(openDataResponse(notOurs, BOB_DATA.secretKey, BOB.secretKey), "unknown_id", "0x84");
  fails(
    openDataResponse(response.subarray(0, 121), BOB_DATA.secretKey, BOB.secretKey),
    "too_short",
    "121 bytes",
  );
});

Deno.test("onion §5: a friend request 'hello' is a 131-byte 0x86", () => {
  const payload = encodeFriendRequest(seq(0xa0, 4), new TextEncoder().encode("hello"));
  assert.equal(payload.length, 10);
  const req = dataRequest(payload);
  assert.equal(req.length, 163);
  const { response } = ok(decodeDataRequest(req));
  assert.equal(response.length, 131);
  const got = ok(openDataResponse(response, BOB_DATA.secretKey, BOB.secretKey));
  const fr = ok(decodeFriendRequest(got.payload));
  assert.deepEqual(fr.nospam, seq(0xa0, 4));
  assert.equal(new TextDecoder().decode(fr.message), "hello");
});

Deno.test("onion §5/§6: an 80-byte DHT-PK is a 233-byte 0x85, a 410-byte body, a 201-byte 0x86", () => {
  const dht = keyPair(60);
  const relay: PackedNode = {
    transport: "tcp",
    host: "127.0.0.1",
    port: 33445,
    publicKey: keyPair(61).publicKey,
  };
  const payload = encodeDhtPk({
    noReplay: 1_790_000_000n,
    dhtPublicKey: dht.publicKey,
    nodes: [relay],
  });
  assert.equal(payload.length, 80);
  const req = dataRequest(payload);
  assert.equal(req.length, 233);
  const body = sendThrough(req);
  assert.equal(body.length, 410);
  assert.deepEqual(peel(body).l3.rest, req);
  const { response } = ok(decodeDataRequest(peel(body).l3.rest));
  assert.equal(response.length, 201);
  const got = ok(openDataResponse(response, BOB_DATA.secretKey, BOB.secretKey));
  assert.deepEqual(ok(decodeDhtPk(got.payload)), {
    noReplay: 1_790_000_000n,
    dhtPublicKey: dht.publicKey,
    nodes: [relay],
    nodesError: null,
  });
});

Deno.test("onion §5: a receiver accepts 948 payload bytes (a 1069-byte 0x86), not 949 (1070)", () => {
  const at = ok(decodeDataRequest(dataRequest(seq(0, ONION_DATA_MAX_ACCEPTED)))).response;
  assert.equal(at.length, MAX_DATA_REQUEST_SIZE);
  ok(openDataResponse(at, BOB_DATA.secretKey, BOB.secretKey), "1069 bytes");
  const over = ok(decodeDataRequest(dataRequest(seq(0, ONION_DATA_MAX_ACCEPTED + 1)))).response;
  assert.equal(over.length, 1070);
  fails(openDataResponse(over, BOB_DATA.secretKey, BOB.secretKey), "too_long", "1070 bytes");
});

Deno.test("onion §5: a sender builds 1..1021 payload bytes, the largest a 1174-byte 0x85", () => {
  const max = dataRequest(seq(0, ONION_CLIENT_MAX_DATA_SIZE));
  assert.equal(max.length, ONION_MAX_DATA_SIZE);
  assert.equal(sendThrough(max).length, ONION_MAX_DATA_SIZE + 177);
  for (const n of [0, ONION_CLIENT_MAX_DATA_SIZE + 1]) {
    assert.throws(() => dataRequest(seq(0, n)), EncodeError, `${n} bytes`);
  }
});

Deno.test("onion §5: D's view of a 0x85: too short, not a 0x85", () => {
  fails(decodeDataRequest(new Uint8Array(104).fill(0x85)), "too_short", "104 bytes");
  const req = dataRequest(seq(1, 10)).slice();
  req[0] = 0x83;
  fails(decodeDataRequest(req), "unknown_id", "0x83");
});

// decodeDataRequest's bounds are handle_data_request's: c-toxcore drops a 0x85 only when
// 0x85 + RETURN_3 ≤ 105 + 177 or > 1400, i.e. it takes 106..1223 bytes, and a TCP relay's
// onion_send_1 lets up to 1182 through.
Deno.test("onion §5: D's bounds on a 0x85 are handle_data_request's: 106..1223 bytes", () => {
  const sized = (n: number) => {
    const b = new Uint8Array(n);
    b[0] = 0x85;
    return b;
  };
  // An outer box with no plaintext, only a MAC: c-toxcore drops it.
  fails(decodeDataRequest(sized(105)), "too_short", "105 bytes");
  assert.equal(ok(decodeDataRequest(sized(106))).response.length, 74);
  // What a relay carries past ONION_MAX_DATA_SIZE still reaches the announced peer.
  assert.equal(ok(decodeDataRequest(sized(1182)), "1182 bytes").response.length, 1150);
  assert.equal(ok(decodeDataRequest(sized(1223)), "1223 bytes").response.length, 1191);
  fails(decodeDataRequest(sized(1224)), "too_long", "1224 bytes");
});

// ---- §6: DHT-PK --------------------------------------------------------------------------------

const DHT = keyPair(70);
const TCP4: PackedNode = {
  transport: "tcp",
  host: "127.0.0.1",
  port: 33445,
  publicKey: seq(5, 32),
};
const TCP6: PackedNode = {
  transport: "tcp",
  host: "2001:db8::9",
  port: 3389,
  publicKey: seq(6, 32),
};

Deno.test("onion §6: DHT-PK layout, no_replay as a big-endian u64", () => {
  const b = encodeDhtPk({
    noReplay: 0x0102030405060708n,
    dhtPublicKey: DHT.publicKey,
    nodes: [TCP4],
  });
  assert.equal(
    toHex(b),
    "9c" + "0102030405060708" + toHex(DHT.publicKey) + toHex(encodePackedNodes([TCP4])),
  );
  assert.equal(b.length, 41 + 39);
  const max = encodeDhtPk({
    noReplay: 0xffff_ffff_ffff_ffffn,
    dhtPublicKey: DHT.publicKey,
    nodes: [],
  });
  assert.equal(toHex(max.subarray(1, 9)), "ff".repeat(8));
  assert.equal(ok(decodeDhtPk(max)).noReplay, 0xffff_ffff_ffff_ffffn);
  for (const noReplay of [-1n, 0x1_0000_0000_0000_0000n]) {
    assert.throws(
      () => encodeDhtPk({ noReplay, dhtPublicKey: DHT.publicKey, nodes: [] }),
      EncodeError,
    );
  }
  assert.throws(
    () => encodeDhtPk({ noReplay: 1n, dhtPublicKey: zeros(31), nodes: [] }),
    EncodeError,
  );
});

Deno.test("onion §6: DHT-PK with 0 to 4 nodes round-trips; a fifth is not read", () => {
  const all = [TCP4, TCP6, V4, FOUR[1]];
  for (let n = 0; n <= 4; n++) {
    const p = { noReplay: BigInt(1000 + n), dhtPublicKey: DHT.publicKey, nodes: all.slice(0, n) };
    const b = encodeDhtPk(p);
    assert.equal(b.length, 41 + encodePackedNodes(p.nodes).length);
    assert.deepEqual(ok(decodeDhtPk(b), `${n} nodes`), { ...p, nodesError: null });
  }
  assert.throws(
    () => encodeDhtPk({ noReplay: 1n, dhtPublicKey: DHT.publicKey, nodes: [...all, TCP4] }),
    EncodeError,
  );
  const five = new Uint8Array([
    ...encodeDhtPk({ noReplay: 1n, dhtPublicKey: DHT.publicKey, nodes: all }),
    ...encodePackedNodes([TCP4]),
  ]);
  const got = ok(decodeDhtPk(five), "five nodes");
  assert.deepEqual(got.nodes, all, "unpack_nodes stops at MAX_SENT_NODES");
  assert.equal(got.nodesError, null);
  fails(decodeDhtPk(new Uint8Array(266).fill(0x9c)), "too_long", "over DHTPK_DATA_MAX_LENGTH");
});

Deno.test("onion §6: DHT-PK with nodes that do not unpack still gives the key; short and other ids refused", () => {
  const b = encodeDhtPk({ noReplay: 7n, dhtPublicKey: DHT.publicKey, nodes: [TCP4] });
  for (const [tail, what] of [[[0xff], "a junk byte"], [[130, 1, 2], "a cut node"]] as const) {
    const got = ok(decodeDhtPk(new Uint8Array([...b, ...tail])), what);
    assert.deepEqual(got.dhtPublicKey, DHT.publicKey, `${what}: the key is handed on`);
    assert.deepEqual(got.nodes, [], `${what}: no node is used`);
    assert.ok(got.nodesError !== null);
  }
  fails(decodeDhtPk(b.subarray(0, 40)), "too_short", "40 bytes");
  const other = b.slice();
  other[0] = 0x20;
  fails(decodeDhtPk(other), "unknown_id", "0x20");
});

Deno.test("onion §6: DHT-PK decodes from the middle of a larger buffer", () => {
  const b = encodeDhtPk({ noReplay: 0x1122334455667788n, dhtPublicKey: DHT.publicKey, nodes: [] });
  const big = new Uint8Array(b.length + 13);
  big.set(b, 13);
  const got = ok(decodeDhtPk(big.subarray(13)));
  assert.equal(got.noReplay, 0x1122334455667788n);
  assert.deepEqual(got.dhtPublicKey, DHT.publicKey);
});

// ---- friend request payload ----------------------------------------------------------------------

const NOSPAM = seq(0xd0, 4);

Deno.test("onion friend request: 0x20 ‖ nospam ‖ message", () => {
  const b = encodeFriendRequest(NOSPAM, new TextEncoder().encode("Hi"));
  assert.equal(toHex(b), "20" + "d0d1d2d3" + "4869");
  assert.deepEqual(ok(decodeFriendRequest(b)), {
    nospam: NOSPAM,
    message: new TextEncoder().encode("Hi"),
  });
});

Deno.test("onion friend request: a message of 1..1016 bytes, 1021 in all", () => {
  assert.throws(() => encodeFriendRequest(NOSPAM, zeros(0)), EncodeError, "empty");
  assert.throws(() => encodeFriendRequest(seq(0, 3), seq(0, 4)), EncodeError, "3-byte nospam");
  const max = encodeFriendRequest(NOSPAM, seq(0, MAX_FRIEND_REQUEST_DATA_SIZE));
  assert.equal(max.length, ONION_CLIENT_MAX_DATA_SIZE);
  assert.equal(ok(decodeFriendRequest(max)).message.length, 1016);
  assert.throws(
    () => encodeFriendRequest(NOSPAM, seq(0, MAX_FRIEND_REQUEST_DATA_SIZE + 1)),
    EncodeError,
  );
  fails(
    decodeFriendRequest(encodeFriendRequest(NOSPAM, seq(0, 1)).subarray(0, 5)),
    "too_short",
    "5 bytes",
  );
  const over = new Uint8Array(1022);
  over[0] = 0x20;
  fails(decodeFriendRequest(over), "too_long", "1022 bytes");
  const other = encodeFriendRequest(NOSPAM, seq(0, 3)).slice();
  other[0] = 0x9c;
  fails(decodeFriendRequest(other), "unknown_id", "0x9c");
});

Deno.test("onion friend request: a 943-byte message reaches a c-toxcore peer, 944 does not", () => {
  const arrives = encodeFriendRequest(NOSPAM, seq(0, MAX_FRIEND_REQUEST_DELIVERED));
  const r1 = ok(decodeDataRequest(dataRequest(arrives))).response;
  assert.equal(r1.length, 1069);
  const got = ok(openDataResponse(r1, BOB_DATA.secretKey, BOB.secretKey));
  assert.equal(ok(decodeFriendRequest(got.payload)).message.length, 943);
  const dropped = encodeFriendRequest(NOSPAM, seq(0, MAX_FRIEND_REQUEST_DELIVERED + 1));
  const r2 = ok(decodeDataRequest(dataRequest(dropped))).response;
  fails(openDataResponse(r2, BOB_DATA.secretKey, BOB.secretKey), "too_long", "944-byte message");
});

Deno.test("onion: every decoder's keys are copies, not views of the packet", () => {
  const req = encodeAnnounceRequest(announceRequest(), ME.secretKey, D.publicKey, seededRandom(1));
  const a = ok(decodeAnnounceRequest(req, D.secretKey));
  req.fill(0, 25, 57);
  assert.ok(bytesEqual(a.requesterPublicKey, ME.publicKey));
  const d = dataRequest(seq(1, 10));
  const dd = ok(decodeDataRequest(d));
  d.fill(0);
  assert.deepEqual(dd.destination, BOB.publicKey);
  assert.equal(dd.response[0], 0x86);
});

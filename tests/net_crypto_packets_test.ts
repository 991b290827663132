/**
 * daemon/core/net_crypto/packets.ts against spec/net_crypto.md: the §13 worked example byte for byte,
 * the cookie (§4), cookie request/response (§3, §5), handshake (§6), data packets and their
 * nonce trick (§8), the inner plaintext (§8.1) and the request packet (§8.3).
 */
import assert from "node:assert/strict";
import { sha512 } from "@noble/hashes/sha2.js";
import { EncodeError } from "../daemon/core/common/codec.ts";
import {
  CryptoError,
  fromHex,
  incrementNonce,
  incrementNonceNumber,
  newKeyPair,
  open,
  precompute,
  publicKeyOf,
  seal,
  toHex,
} from "../daemon/core/common/crypto.ts";
import {
  advanceRecvNonce,
  COOKIE_LENGTH,
  COOKIE_REQUEST_LENGTH,
  COOKIE_RESPONSE_LENGTH,
  COOKIE_TIMEOUT,
  cookieRequestSender,
  createCookie,
  CRYPTO_MAX_PADDING,
  CRYPTO_PACKET_BUFFER_SIZE,
  DATA_NUM_THRESHOLD,
  decodeDataPlain,
  encodeCookieRequest,
  encodeCookieResponse,
  encodeDataPlain,
  encodeHandshake,
  encodeRequestPacket,
  HANDSHAKE_PACKET_LENGTH,
  type HandshakeArgs,
  MAX_CRYPTO_DATA_SIZE,
  MAX_CRYPTO_PACKET_SIZE,
  NET_PACKET_COOKIE_REQUEST,
  NET_PACKET_COOKIE_RESPONSE,
  NET_PACKET_CRYPTO_DATA,
  NET_PACKET_CRYPTO_HS,
  openCookie,
  openCookieRequest,
  openCookieResponse,
  openDataPacket,
  openHandshake,
  PACKET_ID_KILL,
  PACKET_ID_PADDING,
  PACKET_ID_RANGE_LOSSLESS_END,
  PACKET_ID_RANGE_LOSSLESS_START,
  PACKET_ID_RANGE_LOSSY_END,
  PACKET_ID_RANGE_LOSSY_START,
  PACKET_ID_REQUEST,
  sealDataPacket,
  walkRequestPacket,
} from "../daemon/core/net_crypto/packets.ts";
import { seededUnit as prng } from "../tools/testbed/seeded_random.ts";
import { fails, ok } from "./support/decoded.ts";

const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => (start + i) & 0xff);
const fill = (byte: number, n: number) => new Uint8Array(n).fill(byte);
const hexOf = (dump: string) => dump.replace(/^[0-9a-f]{4} /gm, "").replace(/\s+/g, "");

/** Flip one bit of a copy. */
function flipped(b: Uint8Array, at: number): Uint8Array {
  const c = b.slice();
  c[at] ^= 0x01;
  return c;
}

// ---- constants (§2, §4, §8) ----

Deno.test("net_crypto §2/§4/§8: packet ids, sizes and limits are c-toxcore's", () => {
  assert.deepEqual(
    [
      NET_PACKET_COOKIE_REQUEST,
      NET_PACKET_COOKIE_RESPONSE,
      NET_PACKET_CRYPTO_HS,
      NET_PACKET_CRYPTO_DATA,
    ],
    [0x18, 0x19, 0x1a, 0x1b],
  );
  assert.equal(COOKIE_REQUEST_LENGTH, 1 + 32 + 24 + 72 + 16);
  assert.equal(COOKIE_RESPONSE_LENGTH, 1 + 24 + 112 + 8 + 16);
  assert.equal(HANDSHAKE_PACKET_LENGTH, 1 + 112 + 24 + 24 + 32 + 64 + 112 + 16);
  assert.equal(COOKIE_LENGTH, 24 + 8 + 64 + 16);
  assert.equal(COOKIE_TIMEOUT, 15);
  assert.equal(MAX_CRYPTO_PACKET_SIZE, 1400);
  assert.equal(MAX_CRYPTO_DATA_SIZE, 1400 - (1 + 2 + 4 + 4 + 16));
  assert.equal(CRYPTO_MAX_PADDING, 8);
  assert.equal(DATA_NUM_THRESHOLD, 21845);
  assert.equal(CRYPTO_PACKET_BUFFER_SIZE, 32768);
  assert.deepEqual([PACKET_ID_PADDING, PACKET_ID_REQUEST, PACKET_ID_KILL], [0, 1, 2]);
  assert.deepEqual(
    [
      PACKET_ID_RANGE_LOSSLESS_START,
      PACKET_ID_RANGE_LOSSLESS_END,
      PACKET_ID_RANGE_LOSSY_START,
      PACKET_ID_RANGE_LOSSY_END,
    ],
    [16, 191, 192, 254],
  );
});

// ---- §13 worked example ----

const A_DHT_SK = seq(0x01, 32);
const A_REAL_SK = seq(0x21, 32);
const B_DHT_SK = seq(0x41, 32);
const A_DHT_PK = publicKeyOf(A_DHT_SK);
const A_REAL_PK = publicKeyOf(A_REAL_SK);
const B_DHT_PK = publicKeyOf(B_DHT_SK);
const ECHO = fromHex("0807060504030201");
const B_COOKIE_KEY = fill(0xaa, 32);
const COOKIE_TIME = 1700000000;

const REQUEST_13 = hexOf(`
0000  18 07 a3 7c bc 14 20 93 c8 b7 55 dc 1b 10 e8 6c
0010  b4 26 37 4a d1 6a a8 53 ed 0b df c0 b2 b8 6d 1c
0020  7c 80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e
0030  8f 90 91 92 93 94 95 96 97 c3 51 0f a9 44 09 db
0040  29 c8 30 25 99 87 09 49 d3 83 90 25 bf 61 c4 f6
0050  97 40 11 eb 63 72 5c 9e 6b 55 76 b8 e3 62 4e f7
0060  49 be d2 5c b6 70 16 37 af 4c 17 56 b8 e9 a7 9d
0070  36 9c f7 fe ef f3 ee 07 3c 02 4e 54 75 94 4b 04
0080  fb b3 e2 56 48 86 97 b4 0f ef 70 1d 7f 03 71 2a
0090  aa
`);

const RESPONSE_13 = hexOf(`
0000  19 c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce
0010  cf d0 d1 d2 d3 d4 d5 d6 d7 55 e9 10 37 c9 38 35
0020  04 9c a5 5b bc 48 e3 3f b6 0d af a8 dd 41 27 74
0030  d0 0d 34 78 2f d3 ee 35 ef a5 34 d8 82 02 d7 b3
0040  b5 70 ca 9b d9 a5 bd 18 33 f3 94 c4 92 11 51 94
0050  69 7d 4b 8a da 68 c9 59 10 a5 69 c8 3f ab ec c9
0060  0d d4 97 74 1f 5c 50 16 4e 1f e3 28 7f 87 f6 21
0070  bb 8c 59 31 91 d2 49 2d c9 99 77 86 83 9a 0a 31
0080  60 ff 79 df a4 04 a0 33 fc 92 ca 5c 68 b2 e1 b5
0090  12 14 4f fc c8 9a 8b 9c 35 a1 c7 4c 8a 13 d0 db
00a0  88
`);

Deno.test("net_crypto §13: the example keys and K_dht", () => {
  assert.equal(toHex(A_DHT_PK), "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c");
  assert.equal(
    toHex(A_REAL_PK),
    "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b",
  );
  assert.equal(toHex(B_DHT_PK), "64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466");
  const kDht = "f8d48c0771b2fab0580110626883f7671e7d0001a6823f3ad9e93d8ef177e8fc";
  assert.equal(toHex(precompute(B_DHT_PK, A_DHT_SK)), kDht);
  assert.equal(toHex(precompute(A_DHT_PK, B_DHT_SK)), kDht, "both sides derive the same K_dht");
});

Deno.test("net_crypto §13: the 145-byte cookie request, byte for byte", () => {
  const kDht = precompute(B_DHT_PK, A_DHT_SK);
  const req = encodeCookieRequest(
    kDht,
    { senderDhtPublicKey: A_DHT_PK, senderRealPublicKey: A_REAL_PK, echoId: ECHO },
    seq(0x80, 24),
  );
  assert.equal(req.length, COOKIE_REQUEST_LENGTH);
  assert.equal(toHex(req), REQUEST_13);

  // B's side: the plaintext sender key picks K_dht, which then opens the request.
  const sender = ok(cookieRequestSender(req));
  assert.deepEqual(sender, A_DHT_PK);
  const opened = ok(openCookieRequest(req, precompute(sender, B_DHT_SK)));
  assert.deepEqual(opened.senderDhtPublicKey, A_DHT_PK);
  assert.deepEqual(opened.senderRealPublicKey, A_REAL_PK);
  assert.deepEqual(opened.echoId, ECHO);
});

Deno.test("net_crypto §13: the 161-byte cookie response, byte for byte", () => {
  const kDht = precompute(A_DHT_PK, B_DHT_SK);
  const cookie = createCookie(
    B_COOKIE_KEY,
    { time: COOKIE_TIME, realPublicKey: A_REAL_PK, dhtPublicKey: A_DHT_PK },
    seq(0xa0, 24),
  );
  assert.equal(cookie.length, COOKIE_LENGTH);
  assert.deepEqual(cookie.subarray(0, 24), seq(0xa0, 24), "cookie = nonce ‖ box");
  const resp = encodeCookieResponse(kDht, { cookie, echoId: ECHO }, seq(0xc0, 24));
  assert.equal(resp.length, COOKIE_RESPONSE_LENGTH);
  assert.equal(toHex(resp), RESPONSE_13);

  // A's side: opens with its K_dht, gets the cookie back, which only B can open.
  const opened = ok(openCookieResponse(resp, precompute(B_DHT_PK, A_DHT_SK)));
  assert.deepEqual(opened.cookie, cookie);
  assert.deepEqual(opened.echoId, ECHO);
  const contents = ok(openCookie(opened.cookie, B_COOKIE_KEY, COOKIE_TIME + 15));
  assert.equal(contents.time, COOKIE_TIME);
  assert.deepEqual(contents.realPublicKey, A_REAL_PK);
  assert.deepEqual(contents.dhtPublicKey, A_DHT_PK);
  // The contents start with the time as u64 little-endian (00f1536500000000).
  const plain = open(B_COOKIE_KEY, cookie.subarray(0, 24), cookie.subarray(24));
  assert.ok(plain !== null);
  assert.equal(toHex(plain.subarray(0, 8)), "00f1536500000000");
});

// ---- cookie (§4) ----

const CK = seq(0x50, 32);
const RPK = seq(0x10, 32);
const DPK = seq(0x30, 32);
const NONCE = seq(0x70, 24);

function cookieAt(time: number, key = CK): Uint8Array {
  return createCookie(key, { time, realPublicKey: RPK, dhtPublicKey: DPK }, NONCE);
}

Deno.test("net_crypto §4: a cookie round-trips and its contents are copies", () => {
  const cookie = cookieAt(1000);
  const c = ok(openCookie(cookie, CK, 1000));
  assert.deepEqual(c, { time: 1000, realPublicKey: RPK, dhtPublicKey: DPK });
  assert.equal(c.realPublicKey.byteOffset, 0);
  assert.equal(c.realPublicKey.buffer.byteLength, 32);
});

Deno.test("net_crypto §4: a cookie is valid for exactly 15 s, never before its time", () => {
  const cookie = cookieAt(1000);
  ok(openCookie(cookie, CK, 1000), "same second");
  ok(openCookie(cookie, CK, 1015), "15 s later");
  ok(openCookie(cookie, CK, 1015.999), "a fraction past 15 s counts as 15 (whole seconds)");
  assert.match(fails(openCookie(cookie, CK, 1016), "expired", "16 s later"), /16 s ago/);
  assert.match(fails(openCookie(cookie, CK, 999), "expired", "1 s before"), /future/);
  fails(openCookie(cookie, CK, 0), "expired", "long before");
});

Deno.test("net_crypto §4: the cookie time is a u64 little-endian, large values included", () => {
  const time = 2 ** 40 + 0x01020304;
  const cookie = cookieAt(time);
  const plain = open(CK, cookie.subarray(0, 24), cookie.subarray(24));
  assert.ok(plain !== null);
  assert.equal(toHex(plain.subarray(0, 8)), "0403020100010000");
  assert.equal(ok(openCookie(cookie, CK, time + 3)).time, time);
  // A forged time beyond 2^53 (we never write one) is simply in the future.
  const far = new Uint8Array(72);
  far.fill(0xff, 0, 8);
  const forged = new Uint8Array(112);
  forged.set(NONCE);
  forged.set(seal(CK, NONCE, far), 24);
  fails(openCookie(forged, CK, 1e12), "expired", "time 2^64-1");
});

Deno.test("net_crypto §4: a cookie of the wrong length, key or content fails", () => {
  const cookie = cookieAt(1000);
  fails(openCookie(cookie.subarray(0, 111), CK, 1000), "wrong_length", "111 bytes");
  fails(openCookie(new Uint8Array(113), CK, 1000), "wrong_length", "113 bytes");
  fails(openCookie(new Uint8Array(0), CK, 1000), "wrong_length", "empty");
  fails(openCookie(cookie, seq(0x51, 32), 1000), "bad_mac", "another cookie key");
  for (const at of [0, 23, 24, 40, 111]) {
    fails(openCookie(flipped(cookie, at), CK, 1000), "bad_mac", `bit flipped at ${at}`);
  }
});

Deno.test("net_crypto §4: createCookie refuses bad keys, nonces and times", () => {
  const c = { time: 1, realPublicKey: RPK, dhtPublicKey: DPK };
  assert.throws(() => createCookie(seq(0, 31), c, NONCE), EncodeError);
  assert.throws(() => createCookie(CK, c, seq(0, 23)), EncodeError);
  assert.throws(() => createCookie(CK, { ...c, realPublicKey: seq(0, 33) }, NONCE), EncodeError);
  assert.throws(() => createCookie(CK, { ...c, dhtPublicKey: seq(0, 0) }, NONCE), EncodeError);
  for (const time of [-1, 1.5, NaN, 2 ** 53]) {
    assert.throws(() => createCookie(CK, { ...c, time }, NONCE), EncodeError, `time ${time}`);
  }
});

// ---- cookie request / response (§3, §5) ----

const K = seq(0x90, 32);
const REQ = { senderDhtPublicKey: DPK, senderRealPublicKey: RPK, echoId: seq(1, 8) };

Deno.test("net_crypto §3: cookie request layout: id, clear DHT key, nonce, box of 88", () => {
  const req = encodeCookieRequest(K, REQ, NONCE);
  assert.equal(req[0], 0x18);
  assert.deepEqual(req.subarray(1, 33), DPK);
  assert.deepEqual(req.subarray(33, 57), NONCE);
  const plain = open(K, NONCE, req.subarray(57));
  assert.ok(plain !== null);
  assert.equal(toHex(plain), toHex(RPK) + "00".repeat(32) + "0102030405060708");
  assert.deepEqual(ok(openCookieRequest(req, K)), REQ);
});

Deno.test("net_crypto §3: the cookie request padding is ignored on receipt", () => {
  const plain = new Uint8Array(72);
  plain.set(RPK);
  plain.fill(0xee, 32, 64);
  plain.set(REQ.echoId, 64);
  const req = new Uint8Array(145);
  req[0] = 0x18;
  req.set(DPK, 1);
  req.set(NONCE, 33);
  req.set(seal(K, NONCE, plain), 57);
  assert.deepEqual(ok(openCookieRequest(req, K)), REQ);
});

Deno.test("net_crypto §3: cookie request length, id and MAC errors", () => {
  const req = encodeCookieRequest(K, REQ, NONCE);
  for (const bad of [req.subarray(0, 144), new Uint8Array([...req, 0]), new Uint8Array(0)]) {
    fails(cookieRequestSender(bad), "wrong_length", `sender of ${bad.length} bytes`);
    fails(openCookieRequest(bad, K), "wrong_length", `${bad.length} bytes`);
  }
  const wrongId = req.slice();
  wrongId[0] = 0x19;
  fails(cookieRequestSender(wrongId), "unknown_id", "sender with id 0x19");
  fails(openCookieRequest(wrongId, K), "unknown_id", "id 0x19");
  fails(openCookieRequest(req, seq(0x91, 32)), "bad_mac", "another K_dht");
  // The clear DHT key is not under the MAC: flipping it only changes which K_dht gets picked.
  for (const at of [33, 56, 57, 72, 73, 144]) {
    fails(openCookieRequest(flipped(req, at), K), "bad_mac", `bit flipped at ${at}`);
  }
  assert.deepEqual(ok(cookieRequestSender(flipped(req, 1))), flipped(DPK, 0));
});

Deno.test("net_crypto §3: encodeCookieRequest refuses wrong field sizes", () => {
  assert.throws(() => encodeCookieRequest(seq(0, 16), REQ, NONCE), EncodeError);
  assert.throws(() => encodeCookieRequest(K, REQ, seq(0, 8)), EncodeError);
  assert.throws(() => encodeCookieRequest(K, { ...REQ, echoId: seq(0, 7) }, NONCE), EncodeError);
  assert.throws(
    () => encodeCookieRequest(K, { ...REQ, senderDhtPublicKey: seq(0, 31) }, NONCE),
    EncodeError,
  );
  assert.throws(
    () => encodeCookieRequest(K, { ...REQ, senderRealPublicKey: seq(0, 31) }, NONCE),
    EncodeError,
  );
});

Deno.test("net_crypto §5: cookie response round trip, length, id and MAC errors", () => {
  const cookie = cookieAt(1000);
  const resp = encodeCookieResponse(K, { cookie, echoId: seq(9, 8) }, NONCE);
  assert.equal(resp[0], 0x19);
  assert.deepEqual(resp.subarray(1, 25), NONCE);
  assert.deepEqual(ok(openCookieResponse(resp, K)), { cookie, echoId: seq(9, 8) });
  fails(openCookieResponse(resp.subarray(0, 160), K), "wrong_length", "160 bytes");
  fails(openCookieResponse(new Uint8Array([...resp, 0]), K), "wrong_length", "162 bytes");
  fails(openCookieResponse(new Uint8Array(0), K), "wrong_length", "empty");
  const wrongId = resp.slice();
  wrongId[0] = 0x18;
  fails(openCookieResponse(wrongId, K), "unknown_id", "id 0x18");
  fails(openCookieResponse(resp, seq(0x91, 32)), "bad_mac", "another K_dht");
  for (const at of [1, 24, 25, 41, 160]) {
    fails(openCookieResponse(flipped(resp, at), K), "bad_mac", `bit flipped at ${at}`);
  }
  assert.throws(() => encodeCookieResponse(K, { cookie: seq(0, 111), echoId: seq(9, 8) }, NONCE));
  assert.throws(() => encodeCookieResponse(K, { cookie, echoId: seq(9, 9) }, NONCE), EncodeError);
  assert.throws(() => encodeCookieResponse(seq(0, 1), { cookie, echoId: seq(9, 8) }, NONCE));
});

// ---- handshake (§6) ----

interface Party {
  readonly real: { publicKey: Uint8Array; secretKey: Uint8Array };
  readonly dht: { publicKey: Uint8Array; secretKey: Uint8Array };
  readonly cookieKey: Uint8Array;
  readonly session: { publicKey: Uint8Array; secretKey: Uint8Array };
  readonly baseNonce: Uint8Array;
}

function party(seed: number): Party {
  const rnd = (n: number) => seq(seed++ * 7, n);
  return {
    real: newKeyPair(rnd),
    dht: newKeyPair(rnd),
    cookieKey: rnd(32),
    session: newKeyPair(rnd),
    baseNonce: rnd(24),
  };
}

const NOW = 1_700_000_100;
const ALICE = party(1);
const BOB = party(40);

/** `from`'s handshake to `to`, presenting `outer` (a cookie `to` made for `from`). */
function handshake(from: Party, to: Party, outer: Uint8Array, nonce = seq(0xe0, 24)): Uint8Array {
  return encodeHandshake({
    receiverCookie: outer,
    sharedKey: precompute(to.real.publicKey, from.real.secretKey),
    nonce,
    baseNonce: from.baseNonce,
    sessionPublicKey: from.session.publicKey,
    newCookie: createCookie(
      from.cookieKey,
      { time: NOW, realPublicKey: to.real.publicKey, dhtPublicKey: to.dht.publicKey },
      seq(0xb0, 24),
    ),
  });
}

/** What Bob's cookie response gave Alice: a cookie naming Alice, sealed with Bob's key. */
function bobsCookieForAlice(time = NOW): Uint8Array {
  return createCookie(
    BOB.cookieKey,
    { time, realPublicKey: ALICE.real.publicKey, dhtPublicKey: ALICE.dht.publicKey },
    seq(0x11, 24),
  );
}

const bobOpens = (packet: Uint8Array, extra: Partial<Parameters<typeof openHandshake>[1]> = {}) =>
  openHandshake(packet, {
    cookieKey: BOB.cookieKey,
    nowSeconds: NOW,
    realSecretKey: BOB.real.secretKey,
    ...extra,
  });

Deno.test("net_crypto §6: handshakes both ways; each side learns the other's session", () => {
  const outer = bobsCookieForAlice();
  const hs = handshake(ALICE, BOB, outer);
  assert.equal(hs.length, HANDSHAKE_PACKET_LENGTH);
  assert.equal(hs[0], 0x1a);
  assert.deepEqual(hs.subarray(1, 113), outer, "the receiver's cookie travels in clear");
  assert.deepEqual(hs.subarray(113, 137), seq(0xe0, 24));

  const atBob = ok(bobOpens(hs));
  assert.deepEqual(atBob.peerRealPublicKey, ALICE.real.publicKey);
  assert.deepEqual(atBob.peerDhtPublicKey, ALICE.dht.publicKey);
  assert.deepEqual(atBob.baseNonce, ALICE.baseNonce);
  assert.deepEqual(atBob.sessionPublicKey, ALICE.session.publicKey);
  assert.equal(atBob.cookie.length, COOKIE_LENGTH);

  // Bob answers with Alice's new cookie as his outer cookie; Alice expects Bob.
  const reply = handshake(BOB, ALICE, atBob.cookie);
  const atAlice = ok(
    openHandshake(reply, {
      cookieKey: ALICE.cookieKey,
      nowSeconds: NOW + 3,
      realSecretKey: ALICE.real.secretKey,
      expectedRealPublicKey: BOB.real.publicKey,
    }),
  );
  assert.deepEqual(atAlice.peerRealPublicKey, BOB.real.publicKey);
  assert.deepEqual(atAlice.peerDhtPublicKey, BOB.dht.publicKey);
  assert.deepEqual(atAlice.baseNonce, BOB.baseNonce);
  assert.deepEqual(atAlice.sessionPublicKey, BOB.session.publicKey);

  // Both derive the same data key from the sessions (§7).
  assert.deepEqual(
    precompute(atBob.sessionPublicKey, BOB.session.secretKey),
    precompute(atAlice.sessionPublicKey, ALICE.session.secretKey),
  );
});

Deno.test("net_crypto §6: box = base nonce, session pk, SHA-512(outer cookie), new cookie", () => {
  const outer = bobsCookieForAlice();
  const hs = handshake(ALICE, BOB, outer);
  const key = precompute(ALICE.real.publicKey, BOB.real.secretKey);
  const plain = open(key, hs.subarray(113, 137), hs.subarray(137));
  assert.ok(plain !== null);
  assert.equal(plain.length, 232);
  assert.deepEqual(plain.subarray(0, 24), ALICE.baseNonce);
  assert.deepEqual(plain.subarray(24, 56), ALICE.session.publicKey);
  assert.deepEqual(plain.subarray(56, 120), sha512(outer));
  const inner = ok(openCookie(plain.subarray(120), ALICE.cookieKey, NOW));
  assert.deepEqual(inner.realPublicKey, BOB.real.publicKey);
  assert.deepEqual(inner.dhtPublicKey, BOB.dht.publicKey);
});

Deno.test("net_crypto §6: the peer must be the expected one", () => {
  const hs = handshake(ALICE, BOB, bobsCookieForAlice());
  ok(bobOpens(hs, { expectedRealPublicKey: ALICE.real.publicKey }), "expected Alice");
  fails(
    bobOpens(hs, { expectedRealPublicKey: ALICE.dht.publicKey }),
    "unexpected_key",
    "expected someone else",
  );
});

Deno.test("net_crypto §6: an authentic box bound to another cookie is refused", () => {
  // Alice seals the hash of cookie X but presents cookie Y (both valid Bob cookies).
  const x = bobsCookieForAlice(NOW - 1);
  const y = bobsCookieForAlice(NOW);
  const good = handshake(ALICE, BOB, x);
  const spliced = good.slice();
  spliced.set(y, 1);
  assert.match(fails(bobOpens(spliced), "bad_mac", "cookie swapped"), /SHA-512/);
});

Deno.test("net_crypto §6: expired or foreign outer cookies are refused", () => {
  const hs = handshake(ALICE, BOB, bobsCookieForAlice(NOW - 16));
  assert.match(fails(bobOpens(hs), "expired", "16 s old cookie"), /outer cookie/);
  ok(bobOpens(handshake(ALICE, BOB, bobsCookieForAlice(NOW - 15))), "15 s old cookie");
  fails(bobOpens(handshake(ALICE, BOB, bobsCookieForAlice(NOW + 1))), "expired", "future");
  // A cookie Alice made herself does not open with Bob's cookie key.
  const own = createCookie(
    ALICE.cookieKey,
    { time: NOW, realPublicKey: ALICE.real.publicKey, dhtPublicKey: ALICE.dht.publicKey },
    seq(0x11, 24),
  );
  fails(bobOpens(handshake(ALICE, BOB, own)), "bad_mac", "cookie not Bob's");
});

Deno.test("net_crypto §6: tampering anywhere in a handshake is detected", () => {
  const hs = handshake(ALICE, BOB, bobsCookieForAlice());
  for (const at of [1, 24, 60, 112, 113, 136, 137, 153, 200, 384]) {
    fails(bobOpens(flipped(hs, at)), "bad_mac", `bit flipped at ${at}`);
  }
  fails(bobOpens(hs, { realSecretKey: ALICE.real.secretKey }), "bad_mac", "wrong real key");
});

Deno.test("net_crypto §6: handshake length and id errors", () => {
  const hs = handshake(ALICE, BOB, bobsCookieForAlice());
  fails(bobOpens(hs.subarray(0, 384)), "wrong_length", "384 bytes");
  fails(bobOpens(new Uint8Array([...hs, 0])), "wrong_length", "386 bytes");
  fails(bobOpens(new Uint8Array(0)), "wrong_length", "empty");
  const wrongId = hs.slice();
  wrongId[0] = 0x1b;
  fails(bobOpens(wrongId), "unknown_id", "id 0x1b");
});

Deno.test("net_crypto §6: a low-order peer key is an error, never a throw", () => {
  // A cookie request may carry any real key; we would have put it in our cookie as is.
  const cookie = createCookie(
    BOB.cookieKey,
    { time: NOW, realPublicKey: new Uint8Array(32), dhtPublicKey: ALICE.dht.publicKey },
    seq(0x11, 24),
  );
  const hs = encodeHandshake({
    receiverCookie: cookie,
    sharedKey: seq(0, 32),
    nonce: seq(0, 24),
    baseNonce: seq(0, 24),
    sessionPublicKey: seq(0, 32),
    newCookie: seq(0, 112),
  });
  assert.match(fails(bobOpens(hs), "malformed", "all-zero real key"), /low order/);
  const viaCache = bobOpens(hs, {
    sharedKey: () => {
      throw new CryptoError("cached: low order");
    },
  });
  fails(viaCache, "malformed", "CryptoError from the cache");
  // Any other exception is a caller bug and propagates.
  assert.throws(() =>
    bobOpens(hs, {
      sharedKey: () => {
        throw new TypeError("bug");
      },
    }), TypeError);
});

Deno.test("net_crypto §6: the shared-key cache is asked for the cookie's real key", () => {
  const hs = handshake(ALICE, BOB, bobsCookieForAlice());
  const asked: string[] = [];
  const r = bobOpens(hs, {
    sharedKey: (pk) => {
      asked.push(toHex(pk));
      return precompute(pk, BOB.real.secretKey);
    },
  });
  ok(r);
  assert.deepEqual(asked, [toHex(ALICE.real.publicKey)]);
});

Deno.test("net_crypto §6: encodeHandshake refuses wrong field sizes", () => {
  const good: HandshakeArgs = {
    receiverCookie: seq(0, 112),
    sharedKey: seq(0, 32),
    nonce: seq(0, 24),
    baseNonce: seq(0, 24),
    sessionPublicKey: seq(0, 32),
    newCookie: seq(0, 112),
  };
  assert.equal(encodeHandshake(good).length, 385);
  for (const [field, n] of Object.entries(good).map(([k, v]) => [k, v.length] as const)) {
    assert.throws(
      () => encodeHandshake({ ...good, [field]: seq(0, n - 1) }),
      EncodeError,
      `${field} short`,
    );
  }
});

// ---- data packets (§8) ----

const DK = seq(0x33, 32);

function plainOf(n: number, id = 0x10): Uint8Array {
  return encodeDataPlain(7, 9, new Uint8Array(n).fill(0x61).fill(id, 0, 1));
}

Deno.test("net_crypto §8: a data packet is 0x1b, the nonce's low 2 bytes, then the box", () => {
  const nonce = seq(0x40, 24);
  const before = nonce.slice();
  const plain = plainOf(20);
  const packet = sealDataPacket(DK, nonce, plain);
  assert.deepEqual(nonce, before, "sealDataPacket leaves the nonce alone");
  assert.equal(packet.length, 1 + 2 + 16 + plain.length);
  assert.equal(
    toHex(packet),
    "1b" + toHex(nonce.subarray(22)) + toHex(seal(DK, nonce, plain)),
    "independently built packet",
  );
  const r = ok(openDataPacket(packet, DK, nonce));
  assert.deepEqual(r.plain, plain);
  assert.equal(r.diff, 0);
  assert.deepEqual(nonce, before, "openDataPacket leaves recvNonce alone");
  assert.equal(packet.buffer.byteLength, packet.length + 13, "sealed in place, not copied");
});

Deno.test("net_crypto §8: the 2-byte nonce trick across a 16-bit wrap, in any order", () => {
  const base = fromHex("000102030405060708090a0b0c0d0e0f10111213ff00fffe");
  const sent = base.slice();
  const packets: Uint8Array[] = [];
  for (let i = 0; i < 5; i++) {
    packets.push(sealDataPacket(DK, sent, plainOf(10 + i)));
    incrementNonce(sent);
  }
  assert.equal(toHex(sent), "000102030405060708090a0b0c0d0e0f10111213ff010003");
  assert.deepEqual([...packets[2].subarray(1, 3)], [0x00, 0x00], "low bytes wrapped to 0000");
  const recv = base.slice();
  for (const i of [4, 0, 2, 1, 3, 2]) {
    const r = ok(openDataPacket(packets[i], DK, recv), `packet ${i}`);
    assert.equal(r.diff, i);
    assert.deepEqual(r.plain, plainOf(10 + i));
    advanceRecvNonce(recv, r.diff);
  }
  assert.deepEqual(recv, base, "small diffs never move recvNonce");
});

Deno.test("net_crypto §8: recvNonce creeps by 21845 once a packet is over 43690 ahead", () => {
  const base = fromHex("aa".repeat(20) + "0000fff0");
  const at = (ahead: number) => {
    const n = base.slice();
    incrementNonceNumber(n, ahead);
    return sealDataPacket(DK, n, plainOf(12));
  };
  const recv = base.slice();
  const r1 = ok(openDataPacket(at(2 * DATA_NUM_THRESHOLD), DK, recv));
  assert.equal(r1.diff, 43690);
  advanceRecvNonce(recv, r1.diff);
  assert.deepEqual(recv, base, "exactly 2 × threshold: no move");

  const r2 = ok(openDataPacket(at(2 * DATA_NUM_THRESHOLD + 1), DK, recv));
  assert.equal(r2.diff, 43691);
  advanceRecvNonce(recv, r2.diff);
  const expected = base.slice();
  incrementNonceNumber(expected, DATA_NUM_THRESHOLD);
  assert.deepEqual(recv, expected, "moved by 21845 (with a carry past the low 16 bits)");
  assert.equal(toHex(recv.subarray(20)), "00015545");

  // Still in the window after the move: a packet 21846 past base, and the 43691 one again.
  assert.equal(ok(openDataPacket(at(DATA_NUM_THRESHOLD + 1), DK, recv)).diff, 1);
  assert.equal(ok(openDataPacket(at(43691), DK, recv)).diff, 43691 - DATA_NUM_THRESHOLD);
  // A packet from just before the new recvNonce reads as 65535 ahead and no longer opens.
  fails(openDataPacket(at(DATA_NUM_THRESHOLD - 1), DK, recv), "bad_mac", "fell out of window");
});

Deno.test("net_crypto §8: data packet length, id and MAC errors", () => {
  const nonce = seq(0x40, 24);
  const full = sealDataPacket(DK, nonce, encodeDataPlain(1, 2, fill(0x10, MAX_CRYPTO_DATA_SIZE)));
  assert.equal(full.length, MAX_CRYPTO_PACKET_SIZE, "a full payload makes a 1400-byte packet");
  assert.equal(ok(openDataPacket(full, DK, nonce)).plain.length, 1381);
  fails(openDataPacket(new Uint8Array([...full, 0]), DK, nonce), "too_long", "1401 bytes");
  fails(openDataPacket(full.subarray(0, 19), DK, nonce), "too_short", "19 bytes");
  fails(openDataPacket(new Uint8Array(0), DK, nonce), "too_short", "empty");
  // 20 bytes passes the length check (one byte of ciphertext) and fails on the MAC.
  fails(openDataPacket(full.subarray(0, 20), DK, nonce), "bad_mac", "20 bytes");
  const small = sealDataPacket(DK, nonce, plainOf(1));
  const wrongId = small.slice();
  wrongId[0] = 0x1a;
  fails(openDataPacket(wrongId, DK, nonce), "unknown_id", "id 0x1a");
  fails(openDataPacket(small, seq(0x34, 32), nonce), "bad_mac", "another key");
  fails(openDataPacket(small, DK, seq(0x41, 24)), "bad_mac", "another recvNonce");
  for (const at of [1, 2, 3, 18, 19, small.length - 1]) {
    fails(openDataPacket(flipped(small, at), DK, nonce), "bad_mac", `bit flipped at ${at}`);
  }
});

Deno.test("net_crypto §8: sealDataPacket refuses plaintexts the receiver would drop", () => {
  const nonce = seq(0x40, 24);
  assert.throws(() => sealDataPacket(DK, nonce, new Uint8Array(8)), EncodeError);
  assert.throws(() => sealDataPacket(DK, nonce, new Uint8Array(1382)), EncodeError);
  assert.throws(() => sealDataPacket(DK, seq(0, 23), new Uint8Array(9)), EncodeError);
  assert.equal(sealDataPacket(DK, nonce, new Uint8Array(9)).length, 28);
  assert.equal(sealDataPacket(DK, nonce, new Uint8Array(1381)).length, 1400);
});

// ---- data plaintext (§8.1) ----

Deno.test("net_crypto §8.1: padding is (1373 - length) % 8 zeros after the header", () => {
  const cases: [number, number][] = [
    [1373, 0],
    [1372, 1],
    [1366, 7],
    [1365, 0],
    [100, 1],
    [2, 3],
    [1, 4],
  ];
  for (const [len, pad] of cases) {
    const payload = fill(0x42, len);
    payload[0] = 0x10;
    const plain = encodeDataPlain(0x01020304, 0x0a0b0c0d, payload);
    assert.equal(plain.length, 8 + pad + len, `payload ${len}`);
    assert.equal(toHex(plain.subarray(0, 8)), "010203040a0b0c0d");
    assert.ok(plain.subarray(8, 8 + pad).every((b) => b === 0), `zeros for ${len}`);
    const d = ok(decodeDataPlain(plain));
    assert.deepEqual(d, { bufferStart: 0x01020304, packetNumber: 0x0a0b0c0d, payload });
  }
  // The request packet c-toxcore sends first: [0x01] with 4 padding bytes, 13 bytes in all.
  assert.equal(toHex(encodeDataPlain(0, 0, Uint8Array.of(1))), "00000000000000000000000001");
});

Deno.test("net_crypto §8.1: buffer_start and packet_number are u32 BE, taken mod 2^32", () => {
  const p = Uint8Array.of(0x10);
  assert.equal(
    toHex(encodeDataPlain(0xfffffffe, 2 ** 32 + 5, p).subarray(0, 8)),
    "fffffffe00000005",
  );
  assert.equal(toHex(encodeDataPlain(-1, 0, p).subarray(0, 8)), "ffffffff00000000");
  const d = ok(decodeDataPlain(encodeDataPlain(0xffffffff, 0x80000000, p)));
  assert.equal(d.bufferStart, 0xffffffff);
  assert.equal(d.packetNumber, 0x80000000);
  assert.throws(() => encodeDataPlain(1.5, 0, p), EncodeError);
  assert.throws(() => encodeDataPlain(0, NaN, p), EncodeError);
});

Deno.test("net_crypto §8.1: payloads that cannot be sent are refused", () => {
  assert.throws(() => encodeDataPlain(0, 0, new Uint8Array(0)), EncodeError, "empty");
  assert.throws(() => encodeDataPlain(0, 0, Uint8Array.of(0, 5)), EncodeError, "id 0");
  assert.throws(() => encodeDataPlain(0, 0, fill(0x10, 1374)), EncodeError, "1374 bytes");
});

Deno.test("net_crypto §8.1: decoding strips any run of zeros and rejects all-zero bodies", () => {
  fails(decodeDataPlain(new Uint8Array(8)), "too_short", "header only");
  fails(decodeDataPlain(new Uint8Array(0)), "too_short", "empty");
  fails(decodeDataPlain(new Uint8Array(9)), "malformed", "one zero");
  fails(decodeDataPlain(new Uint8Array(40)), "malformed", "32 zeros");
  const extra = new Uint8Array(8 + 20 + 2);
  extra.set([0x12, 0x34], 28);
  assert.deepEqual([...ok(decodeDataPlain(extra)).payload], [0x12, 0x34], "20 zeros stripped");
  assert.deepEqual([...ok(decodeDataPlain(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 2))).payload], [
    2,
  ]);
});

// ---- request packet (§8.3) ----

const missingFrom = (missing: readonly number[]) => {
  const set = new Set(missing.map((n) => n >>> 0));
  return (n: number) => !set.has(n);
};

Deno.test("net_crypto §8.3: an empty window or max length 1 gives just the id byte", () => {
  assert.deepEqual([...encodeRequestPacket(5, 5, () => false)], [1]);
  assert.deepEqual([...encodeRequestPacket(0, 100, () => false, 1)], [1]);
  const w = ok(walkRequestPacket(Uint8Array.of(1), 10, 20));
  assert.deepEqual(w, { requested: [], end: 10 }, "an empty body acknowledges nothing");
});

Deno.test("net_crypto §8.3: each byte steps from the last listed position", () => {
  const body = encodeRequestPacket(10, 20, missingFrom([10, 12, 13, 19]));
  assert.deepEqual([...body], [1, 1, 2, 1, 6]);
  assert.deepEqual(ok(walkRequestPacket(body, 10, 20)), { requested: [10, 12, 13, 19], end: 20 });
  // Received packets after the last missing one are not listed: end stops short of them.
  const tail = encodeRequestPacket(0, 10, missingFrom([3]));
  assert.deepEqual([...tail], [1, 4]);
  assert.deepEqual(ok(walkRequestPacket(tail, 0, 10)), { requested: [3], end: 4 });
});

Deno.test("net_crypto §8.3: gaps of 255 and more use 0 skip markers", () => {
  const a = encodeRequestPacket(0, 400, missingFrom([0, 300]));
  assert.deepEqual([...a], [1, 1, 0, 45]);
  assert.deepEqual(ok(walkRequestPacket(a, 0, 400)), { requested: [0, 300], end: 301 });

  const b = encodeRequestPacket(0, 400, missingFrom([0, 255]));
  assert.deepEqual([...b], [1, 1, 255], "a step of exactly 255 lands on a missing packet");
  assert.deepEqual(ok(walkRequestPacket(b, 0, 400)), { requested: [0, 255], end: 256 });

  const c = encodeRequestPacket(1000, 1000 + 600, () => true);
  assert.deepEqual([...c], [1, 0, 0], "all received: a marker every 255");
  assert.deepEqual(ok(walkRequestPacket(c, 1000, 1600)), { requested: [], end: 1510 });

  const d = encodeRequestPacket(0, 1000, missingFrom([900]));
  assert.deepEqual([...d], [1, 0, 0, 0, 136]);
  assert.deepEqual(ok(walkRequestPacket(d, 0, 1000)), { requested: [900], end: 901 });
});

Deno.test("net_crypto §8.3: the body is truncated at maxLength", () => {
  const all = encodeRequestPacket(0, 100, () => false, 10);
  assert.deepEqual([...all], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(ok(walkRequestPacket(all, 0, 100)), {
    requested: [0, 1, 2, 3, 4, 5, 6, 7, 8],
    end: 9,
  });
  const big = encodeRequestPacket(0, 5000, () => false);
  assert.equal(big.length, MAX_CRYPTO_DATA_SIZE, "default limit is 1373 bytes");
  assert.equal(ok(walkRequestPacket(big, 0, 5000)).end, 1372);
  assert.throws(() => encodeRequestPacket(0, 1, () => true, 0), EncodeError);
  assert.throws(() => encodeRequestPacket(0, 1, () => true, 1374), EncodeError);
});

Deno.test("net_crypto §8.3: packet numbers wrap at 2^32", () => {
  const start = 0xfffffff0;
  const end = 0x10;
  const missing = [0xfffffff5, 0xffffffff, 0, 3];
  const asked: number[] = [];
  const body = encodeRequestPacket(start, end, (n) => {
    asked.push(n);
    return missingFrom(missing)(n);
  });
  assert.equal(asked.length, 32, "walked 0xfffffff0 .. 0x0f");
  assert.equal(asked[16], 0);
  assert.deepEqual([...body], [1, 6, 10, 1, 3]);
  assert.deepEqual(ok(walkRequestPacket(body, start, end)), { requested: missing, end: 4 });
  // Inputs outside u32 are reduced mod 2^32 on both sides.
  assert.deepEqual([...encodeRequestPacket(-16, 16, missingFrom(missing))], [...body]);
  assert.deepEqual(ok(walkRequestPacket(body, -16, 2 ** 32 + 16)).requested, missing);
});

Deno.test("net_crypto §8.3: the sender's walk stops at its own buffer end", () => {
  const body = encodeRequestPacket(0, 100, missingFrom([5, 50, 90]));
  assert.deepEqual(ok(walkRequestPacket(body, 0, 60)), { requested: [5, 50], end: 60 });
  assert.deepEqual(ok(walkRequestPacket(body, 0, 0)), { requested: [], end: 0 });
});

Deno.test("net_crypto §8.3: a request payload must start with id 1", () => {
  fails(walkRequestPacket(new Uint8Array(0), 0, 10), "too_short", "empty");
  fails(walkRequestPacket(Uint8Array.of(2, 1), 0, 10), "unknown_id", "id 2");
  fails(walkRequestPacket(Uint8Array.of(0x10), 0, 10), "unknown_id", "id 16");
});

Deno.test("net_crypto §8.3: walk(encode) names exactly the missing packets (randomized)", () => {
  const rnd = prng(0x5eed);
  const densities = [0, 0.0005, 0.004, 0.05, 0.3, 0.9, 1];
  let truncated = 0;
  for (let run = 0; run < 400; run++) {
    const start = rnd() < 0.3
      ? (0xffffffff - Math.floor(rnd() * 3000)) >>> 0
      : Math.floor(rnd() * 2 ** 32);
    const size = Math.floor(rnd() * 3000);
    const end = (start + size) >>> 0;
    const p = densities[run % densities.length];
    const missing = new Set<number>();
    for (let k = 0; k < size; k++) if (rnd() < p) missing.add((start + k) >>> 0);
    const maxLength = rnd() < 0.25 ? 1 + Math.floor(rnd() * 40) : MAX_CRYPTO_DATA_SIZE;
    const what = `run ${run}: start ${start} size ${size} p ${p} max ${maxLength}`;

    const body = encodeRequestPacket(start, end, (n) => !missing.has(n), maxLength);
    assert.ok(body.length >= 1 && body.length <= maxLength, what);
    const w = ok(walkRequestPacket(body, start, end), what);
    const walked = (w.end - start) >>> 0;
    assert.ok(walked <= size, `${what}: end inside the window`);
    const expected: number[] = [];
    for (let k = 0; k < walked; k++) {
      if (missing.has((start + k) >>> 0)) expected.push((start + k) >>> 0);
    }
    assert.deepEqual(w.requested, expected, `${what}: requested = missing before end`);
    if (body.length < maxLength) {
      // Not truncated: nothing missing is left after end, all of [end, bufferEnd) was received.
      assert.equal(w.requested.length, missing.size, `${what}: every missing packet listed`);
    } else {
      truncated++;
    }
  }
  assert.ok(truncated > 50 && truncated < 350, `both cases exercised (${truncated} truncated)`);
});

/**
 * daemon/core/tcp_common/handshake.ts and the first frames of a session, against the worked example of
 * spec/tcp.md §11 (verified with libsodium 1.0.18 and noble), byte for byte.
 */
import assert from "node:assert/strict";
import {
  fromHex,
  type KeyPair,
  publicKeyOf,
  type RandomBytes,
  toHex,
} from "../daemon/core/common/crypto.ts";
import {
  acceptClientHandshake,
  CLIENT_HANDSHAKE_SIZE,
  completeClientHandshake,
  createClientHandshake,
  HANDSHAKE_PLAIN_SIZE,
  parseClientHandshake,
  SERVER_HANDSHAKE_SIZE,
} from "../daemon/core/tcp_common/handshake.ts";
import { openFrame, sealFrame } from "../daemon/core/tcp_common/framing.ts";
import { decodeRelayPacket, encodeRelayPacket } from "../daemon/core/tcp_common/packets.ts";

// ---- §11 fixed inputs ----
const fill = (byte: number, n: number) => new Uint8Array(n).fill(byte);
const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => start + i);

const CLIENT_SK = fill(0x11, 32);
const RELAY_SK = fill(0x22, 32);
const CLIENT_TEMP_SK = fill(0x33, 32);
const SERVER_TEMP_SK = fill(0x44, 32);
const HANDSHAKE_NONCE = fill(0x55, 24);
const CLIENT_BASE_NONCE = seq(0xa0, 24);
const RESPONSE_NONCE = fill(0x66, 24);
const SERVER_BASE_NONCE = seq(0xc0, 24);

const CLIENT_PK = "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13";
const RELAY_PK = "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20";
const CLIENT_TEMP_PK = "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14";
const SERVER_TEMP_PK = "ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b";
const K_HS = "8abe7c8ae6800b76d4f5986b04b77f6e9b4f332403c90df02428336e8bd9b525";
const SESSION_KEY = "c512924888c2212f68dd352e9c1e6ac75632b3ceef30b26fa3cdecbf041e2107";

const CLIENT_HANDSHAKE = CLIENT_PK +
  "555555555555555555555555555555555555555555555555" +
  "6294093e5fa52b8afc3dae350af75c2f" +
  "528b3f7639365d91ed629d52473008b0a077e3f4a91d2dc781aed46dadaf2c85" +
  "80f1c909977a7c73e85c2bf91c03e17375daee512fa1fd51";

const SERVER_RESPONSE = "666666666666666666666666666666666666666666666666" +
  "facc402daf6a72509a4d4aeef104ef2c" +
  "fc0ba6db4b71f7fa615682bf2cbe240c723f43434507730add53812605fb68dc" +
  "9af8b5dfe9192b1ab8e9b0c88855db326a3b752174c946e5";

const FRAME_PING = "0019" + "cc5f79cf0b69ee1a335143a3667803a1" + "f4d0fc943b7be792b2";
const FRAME_ROUTING_REQUEST = "0031" + "772f4eead3d692e33f25b0dd4bfa97f7" +
  "0f37ce187ff855ed05841ae819b70761d512fa31687c7457a5ffbba6ac750df348";
const FRAME_DATA = "0016bdb96dec388fc68fb257178853045a650a12358006fa";
const FRAME_ROUTING_RESPONSE = "0032" + "b66d2067b0e4eb0505a1c20c7c669b87" +
  "c902a5de5c0992fab026f303f20034ab66b1b5386042990a986b531f8310c21b3523";

// ---- helpers ----

/**
 * A RandomBytes that hands out the given byte strings in order, checking each requested
 * size, and fails the test if asked for more. Each call gets a fresh copy.
 */
function scripted(...script: Uint8Array[]): RandomBytes & { readonly remaining: () => number } {
  let i = 0;
  const f = (n: number) => {
    assert.ok(i < script.length, `unexpected random(${n}) call #${i + 1}`);
    const next = script[i++];
    assert.equal(n, next.length, `random call #${i} asked for ${n} bytes`);
    return next.slice();
  };
  return Object.assign(f, { remaining: () => script.length - i });
}

function keyPair(sk: Uint8Array): KeyPair {
  return { publicKey: publicKeyOf(sk), secretKey: sk.slice() };
}

/** createClientHandshake draws: temp secret key (32), base nonce (24), handshake nonce (24). */
function clientRandom() {
  return scripted(CLIENT_TEMP_SK, CLIENT_BASE_NONCE, HANDSHAKE_NONCE);
}

/** acceptClientHandshake draws: temp secret key (32), server base nonce (24), response nonce (24). */
function serverRandom() {
  return scripted(SERVER_TEMP_SK, SERVER_BASE_NONCE, RESPONSE_NONCE);
}

function startClient() {
  const random = clientRandom();
  const hs = createClientHandshake(keyPair(CLIENT_SK), fromHex(RELAY_PK), random);
  assert.equal(random.remaining(), 0);
  return hs;
}

function acceptServer(packet: Uint8Array) {
  const random = serverRandom();
  const accepted = acceptClientHandshake(keyPair(RELAY_SK), packet, random);
  assert.notEqual(accepted, null);
  assert.equal(random.remaining(), 0);
  return accepted!;
}

/** Both ends of the example session, fully established. */
function establish() {
  const { packet, pending } = startClient();
  const server = acceptServer(packet);
  const client = completeClientHandshake(pending, server.response);
  assert.notEqual(client, null);
  return { client: client!, server: server.session };
}

// ---- §11 inputs ----

Deno.test("tcp §11: the fixed keys have the example's public keys", () => {
  assert.equal(toHex(publicKeyOf(CLIENT_SK)), CLIENT_PK);
  assert.equal(toHex(publicKeyOf(RELAY_SK)), RELAY_PK);
  assert.equal(toHex(publicKeyOf(CLIENT_TEMP_SK)), CLIENT_TEMP_PK);
  assert.equal(toHex(publicKeyOf(SERVER_TEMP_SK)), SERVER_TEMP_PK);
});

Deno.test("tcp §3 sizes: 56-byte plain, 96-byte response, 128-byte client handshake", () => {
  assert.equal(HANDSHAKE_PLAIN_SIZE, 56);
  assert.equal(SERVER_HANDSHAKE_SIZE, 96);
  assert.equal(CLIENT_HANDSHAKE_SIZE, 128);
});

// ---- §3.1 client → relay ----

Deno.test("tcp §11 / §3.1: client handshake is the example's 128 bytes", () => {
  const { packet, pending } = startClient();
  assert.equal(packet.length, 128);
  assert.equal(toHex(packet.subarray(0, 32)), CLIENT_PK, "client DHT pk");
  assert.equal(toHex(packet.subarray(32, 56)), "55".repeat(24), "N_hs");
  assert.equal(toHex(packet.subarray(56, 72)), "6294093e5fa52b8afc3dae350af75c2f", "MAC");
  assert.equal(toHex(packet), CLIENT_HANDSHAKE);
  // What the client keeps for the answer.
  assert.equal(toHex(pending.handshakeKey), K_HS);
  assert.equal(toHex(pending.tempKeys.publicKey), CLIENT_TEMP_PK);
  assert.equal(toHex(pending.sendNonce), toHex(CLIENT_BASE_NONCE));
});

Deno.test("tcp §3.1: parseClientHandshake splits pk · nonce · box", () => {
  const r = parseClientHandshake(fromHex(CLIENT_HANDSHAKE));
  assert.ok(r.ok);
  assert.equal(toHex(r.value.clientPublicKey), CLIENT_PK);
  assert.equal(toHex(r.value.nonce), "55".repeat(24));
  assert.equal(r.value.box.length, 72);
  assert.equal(toHex(r.value.box), CLIENT_HANDSHAKE.slice(112));
});

Deno.test("tcp §3.2: parseClientHandshake wants exactly 128 bytes", () => {
  const full = fromHex(CLIENT_HANDSHAKE);
  for (const len of [0, 1, 56, 96, 127, 129, 256]) {
    const b = new Uint8Array(len);
    b.set(full.subarray(0, Math.min(len, 128)));
    const r = parseClientHandshake(b);
    assert.ok(!r.ok, `${len} bytes`);
    assert.equal(r.error.code, "wrong_length");
  }
});

// ---- §3.2 relay → client ----

Deno.test("tcp §11 / §3.2: relay accepts the handshake and answers with the example's 96 bytes", () => {
  const accepted = acceptServer(fromHex(CLIENT_HANDSHAKE));
  assert.equal(toHex(accepted.clientPublicKey), CLIENT_PK);
  assert.equal(accepted.response.length, 96);
  assert.equal(toHex(accepted.response.subarray(0, 24)), "66".repeat(24), "N_r");
  assert.equal(toHex(accepted.response.subarray(24, 40)), "facc402daf6a72509a4d4aeef104ef2c");
  assert.equal(toHex(accepted.response), SERVER_RESPONSE);
  // Server session: same key; sends from its base nonce, receives from the client's.
  assert.equal(toHex(accepted.session.sharedKey), SESSION_KEY);
  assert.equal(toHex(accepted.session.sendNonce), toHex(SERVER_BASE_NONCE));
  assert.equal(toHex(accepted.session.recvNonce), toHex(CLIENT_BASE_NONCE));
});

Deno.test("tcp §3.2: acceptClientHandshake returns null for a tampered box", () => {
  const good = fromHex(CLIENT_HANDSHAKE);
  for (const i of [56, 71, 72, 100, 127]) { // MAC first and last byte, ciphertext
    const bad = good.slice();
    bad[i] ^= 0x01;
    const random = serverRandom();
    assert.equal(acceptClientHandshake(keyPair(RELAY_SK), bad, random), null, `byte ${i}`);
    assert.equal(random.remaining(), 3, "no randomness spent on a rejected handshake");
  }
});

Deno.test("tcp §3.2: acceptClientHandshake returns null for a tampered nonce or client key", () => {
  const good = fromHex(CLIENT_HANDSHAKE);
  for (const i of [0, 31, 32, 55]) {
    const bad = good.slice();
    bad[i] ^= 0x01;
    assert.equal(acceptClientHandshake(keyPair(RELAY_SK), bad, serverRandom()), null, `byte ${i}`);
  }
});

Deno.test("tcp §3.2: acceptClientHandshake returns null for a wrong length", () => {
  const good = fromHex(CLIENT_HANDSHAKE);
  assert.equal(
    acceptClientHandshake(keyPair(RELAY_SK), good.subarray(0, 127), serverRandom()),
    null,
  );
  assert.equal(
    acceptClientHandshake(keyPair(RELAY_SK), Uint8Array.of(...good, 0), serverRandom()),
    null,
  );
});

Deno.test("tcp §3.2: a relay with a different secret key cannot open the handshake", () => {
  assert.equal(
    acceptClientHandshake(keyPair(fill(0x23, 32)), fromHex(CLIENT_HANDSHAKE), serverRandom()),
    null,
  );
});

Deno.test("crypto.md §3: acceptClientHandshake returns null (no throw) for an all-zero client key", () => {
  const bad = fromHex(CLIENT_HANDSHAKE);
  bad.fill(0, 0, 32);
  assert.equal(acceptClientHandshake(keyPair(RELAY_SK), bad, serverRandom()), null);
});

// ---- §3.3 client completes ----

Deno.test("tcp §11 / §3.3: completeClientHandshake gives session key c512… and the nonces", () => {
  const { pending } = startClient();
  const session = completeClientHandshake(pending, fromHex(SERVER_RESPONSE));
  assert.notEqual(session, null);
  assert.equal(toHex(session!.sharedKey), SESSION_KEY);
  assert.equal(toHex(session!.sendNonce), toHex(CLIENT_BASE_NONCE));
  assert.equal(toHex(session!.recvNonce), toHex(SERVER_BASE_NONCE));
  // §3.3: the temp secret key is wiped once the session key exists.
  assert.equal(toHex(pending.tempKeys.secretKey), "00".repeat(32));
});

Deno.test("tcp §3.3: wrong relay key → completeClientHandshake returns null", () => {
  // The client was told a different relay key than the one the relay holds.
  const wrongRelayPk = publicKeyOf(fill(0x23, 32));
  const { pending } = createClientHandshake(keyPair(CLIENT_SK), wrongRelayPk, clientRandom());
  assert.equal(completeClientHandshake(pending, fromHex(SERVER_RESPONSE)), null);
});

Deno.test("tcp §3.3: truncated or extended responses → null", () => {
  const full = fromHex(SERVER_RESPONSE);
  for (const len of [0, 24, 40, 95]) {
    const { pending } = startClient();
    assert.equal(completeClientHandshake(pending, full.subarray(0, len)), null, `${len} bytes`);
  }
  for (const extra of [1, 2, 32]) {
    const { pending } = startClient();
    const longer = new Uint8Array(96 + extra);
    longer.set(full);
    assert.equal(completeClientHandshake(pending, longer), null, `${96 + extra} bytes`);
  }
});

Deno.test("tcp §3.3: a flipped bit anywhere in the response → null", () => {
  const full = fromHex(SERVER_RESPONSE);
  for (const i of [0, 23, 24, 39, 40, 95]) {
    const { pending } = startClient();
    const bad = full.slice();
    bad[i] ^= 0x80;
    assert.equal(completeClientHandshake(pending, bad), null, `byte ${i}`);
  }
});

Deno.test("tcp §3: client and relay functions agree end to end", () => {
  const { client, server } = establish();
  assert.equal(toHex(client.sharedKey), toHex(server.sharedKey));
  assert.equal(toHex(client.sendNonce), toHex(server.recvNonce));
  assert.equal(toHex(client.recvNonce), toHex(server.sendNonce));
});

// ---- §11 frames ----

Deno.test("tcp §11 frame 1: PING 04 0102030405060708 under nonce a0…b7", () => {
  const { client } = establish();
  const plain = encodeRelayPacket({ kind: "ping", pingId: 0x0102030405060708n });
  assert.equal(toHex(plain), "040102030405060708");
  assert.equal(toHex(sealFrame(client, plain)), FRAME_PING);
  assert.equal(toHex(client.sendNonce), toHex(CLIENT_BASE_NONCE).slice(0, 46) + "b8");
});

Deno.test("tcp §11 frames 1–3: PING, ROUTING_REQUEST, DATA with the nonce +1 per frame", () => {
  const { client, server } = establish();
  const frames = [
    encodeRelayPacket({ kind: "ping", pingId: 0x0102030405060708n }),
    encodeRelayPacket({ kind: "routing_request", publicKey: fill(0x77, 32) }),
    encodeRelayPacket({ kind: "data", connectionId: 16, data: new TextEncoder().encode("hello") }),
  ].map((p) => sealFrame(client, p));
  assert.equal(toHex(frames[0]), FRAME_PING);
  assert.equal(toHex(frames[1]), FRAME_ROUTING_REQUEST);
  assert.equal(toHex(frames[2]), FRAME_DATA);
  assert.equal(toHex(client.sendNonce), toHex(CLIENT_BASE_NONCE).slice(0, 46) + "ba");

  // The relay opens them in order.
  const plains = frames.map((f) => openFrame(server, f.subarray(2)));
  assert.equal(toHex(plains[0]!), "040102030405060708");
  assert.equal(toHex(plains[1]!), "00" + "77".repeat(32));
  assert.equal(toHex(plains[2]!), "1068656c6c6f");
  assert.equal(toHex(server.recvNonce), toHex(CLIENT_BASE_NONCE).slice(0, 46) + "ba");
});

Deno.test('tcp §11 frame 3 byte by byte: DATA on conn_id 16, "hello"', () => {
  const { client } = establish();
  sealFrame(client, fromHex("040102030405060708"));
  sealFrame(client, fromHex("00" + "77".repeat(32)));
  const f = sealFrame(client, fromHex("1068656c6c6f"));
  assert.equal(f.length, 24);
  assert.equal(toHex(f.subarray(0, 2)), "0016", "length = 6 + 16, big-endian");
  assert.equal(toHex(f.subarray(2, 18)), "bdb96dec388fc68fb257178853045a65", "MAC");
  assert.equal(toHex(f.subarray(18, 19)), "0a", "encrypted conn_id");
  assert.equal(toHex(f.subarray(19, 24)), "12358006fa", 'encrypted "hello"');
});

Deno.test("tcp §11: the server's first frame, ROUTING_RESPONSE rpid 0x10 pk 77×32", () => {
  const { client, server } = establish();
  const plain = encodeRelayPacket({
    kind: "routing_response",
    connectionId: 0x10,
    publicKey: fill(0x77, 32),
  });
  assert.equal(toHex(plain), "0110" + "77".repeat(32));
  const frame = sealFrame(server, plain);
  assert.equal(toHex(frame), FRAME_ROUTING_RESPONSE);

  // The client opens it under the server base nonce and decodes it.
  const opened = openFrame(client, frame.subarray(2));
  assert.notEqual(opened, null);
  const packet = decodeRelayPacket(opened!);
  assert.ok(packet.ok);
  assert.equal(packet.value.kind, "routing_response");
  if (packet.value.kind === "routing_response") {
    assert.equal(packet.value.connectionId, 16);
    assert.equal(toHex(packet.value.publicKey), "77".repeat(32));
  }
  assert.equal(toHex(client.recvNonce), toHex(SERVER_BASE_NONCE).slice(0, 46) + "d8");
});

Deno.test("tcp §3.4: a client frame does not open in the relay→client direction", () => {
  const { client } = establish();
  const frame = sealFrame(client, fromHex("040102030405060708"));
  // The client's own receive nonce is the server base nonce: its own frame must not open.
  assert.equal(openFrame(client, frame.subarray(2)), null);
});

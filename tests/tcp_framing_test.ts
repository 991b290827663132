/**
 * daemon/core/tcp_common/framing.ts against spec/tcp.md §4: length (uint16 BE, = plaintext + 16) · MAC ·
 * ciphertext, one counter nonce per direction, and a stream reader that copes with any split.
 */
import assert from "node:assert/strict";
import { fromHex, incrementNonce, toHex } from "../daemon/core/common/crypto.ts";
import type { SecureSession } from "../daemon/core/tcp_common/handshake.ts";
import {
  FRAME_HEADER_SIZE,
  type FrameRead,
  FrameReader,
  frameSize,
  MAX_FRAME_SIZE,
  newFrameScratch,
  openFrame,
  sealFrame,
  sealFrameInto,
} from "../daemon/core/tcp_common/framing.ts";
import { MAX_PLAIN_SIZE } from "../daemon/core/tcp_common/packets.ts";

// The §11 session key and base nonces (client → relay direction).
const SESSION_KEY = "c512924888c2212f68dd352e9c1e6ac75632b3ceef30b26fa3cdecbf041e2107";
const CLIENT_BASE = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7";
const SERVER_BASE = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7";

/** The two ends of one session: the client's sendNonce is the relay's recvNonce, and so on. */
function pair(): { client: SecureSession; relay: SecureSession } {
  return {
    client: {
      sharedKey: fromHex(SESSION_KEY),
      sendNonce: fromHex(CLIENT_BASE),
      recvNonce: fromHex(SERVER_BASE),
    },
    relay: {
      sharedKey: fromHex(SESSION_KEY),
      sendNonce: fromHex(SERVER_BASE),
      recvNonce: fromHex(CLIENT_BASE),
    },
  };
}

const seq = (start: number, n: number) => new Uint8Array(n).map((_, i) => (start + i) & 0xff);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Drain a reader: frame bodies (copied) until need_more; fails on error. */
function drain(r: FrameReader): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (;;) {
    const f = r.next();
    if (f.kind === "need_more") return out;
    if (f.kind === "error") assert.fail(`unexpected error ${f.error.code}: ${f.error.message}`);
    out.push(f.box.slice());
  }
}

function expectError(f: FrameRead, code: string): void {
  assert.equal(f.kind, "error");
  if (f.kind === "error") assert.equal(f.error.code, code, f.error.message);
}

/** A frame header for length `len`, followed by `len` bytes of `fillByte`. */
function rawFrame(len: number, fillByte = 0x5a): Uint8Array {
  const out = new Uint8Array(2 + len).fill(fillByte);
  out[0] = len >>> 8;
  out[1] = len & 0xff;
  return out;
}

// Plaintexts of various sizes, including the smallest and the largest a frame can carry.
const PLAINS = [
  fromHex("040102030405060708"),
  Uint8Array.of(0x10),
  fromHex("00" + "77".repeat(32)),
  seq(0x10, 300),
  seq(0x80, MAX_PLAIN_SIZE),
  fromHex("1068656c6c6f"),
];

function sealedStream(): { stream: Uint8Array; bodies: Uint8Array[] } {
  const { client } = pair();
  const frames = PLAINS.map((p) => sealFrame(client, p));
  return { stream: concat(frames), bodies: frames.map((f) => f.subarray(2)) };
}

// ---- sizes ----

Deno.test("tcp §4: header 2, max frame 2050, frameSize = 2 + 16 + plain", () => {
  assert.equal(FRAME_HEADER_SIZE, 2);
  assert.equal(MAX_FRAME_SIZE, 2050);
  assert.equal(frameSize(1), 19);
  assert.equal(frameSize(MAX_PLAIN_SIZE), 2050);
  assert.ok(newFrameScratch().length >= 2048 + 32);
});

// ---- sealing ----

Deno.test("tcp §4: sealFrame writes the big-endian length of MAC + ciphertext", () => {
  const { client } = pair();
  for (const p of PLAINS) {
    const f = sealFrame(client, p);
    assert.equal(f.length, frameSize(p.length));
    assert.equal((f[0] << 8) | f[1], p.length + 16);
  }
});

Deno.test("tcp §11: sealFrame reproduces the example's PING frame under the client base nonce", () => {
  const { client } = pair();
  assert.equal(
    toHex(sealFrame(client, fromHex("040102030405060708"))),
    "0019cc5f79cf0b69ee1a335143a3667803a1f4d0fc943b7be792b2",
  );
});

Deno.test("tcp §4/§3.4: sealFrame/openFrame round trip, both nonces advancing in step", () => {
  const { client, relay } = pair();
  const expected = fromHex(CLIENT_BASE);
  for (const p of PLAINS) {
    const f = sealFrame(client, p);
    incrementNonce(expected);
    assert.equal(toHex(client.sendNonce), toHex(expected), "sender +1 after each frame");
    const plain = openFrame(relay, f.subarray(2));
    assert.notEqual(plain, null);
    assert.deepEqual(plain, p);
    assert.equal(toHex(relay.recvNonce), toHex(expected), "receiver +1 after each frame");
  }
  // Nothing else moved.
  assert.equal(toHex(client.recvNonce), SERVER_BASE);
  assert.equal(toHex(relay.sendNonce), SERVER_BASE);

  // The other direction is independent.
  const back = sealFrame(relay, Uint8Array.of(5, 1, 2, 3, 4, 5, 6, 7, 8));
  assert.deepEqual(openFrame(client, back.subarray(2)), Uint8Array.of(5, 1, 2, 3, 4, 5, 6, 7, 8));
  assert.equal(toHex(client.sendNonce), toHex(expected));
});

Deno.test("tcp §4: openFrame with a wrong nonce returns null and does not advance the nonce", () => {
  const { client, relay } = pair();
  sealFrame(client, fromHex("040102030405060708")); // frame 1 never delivered
  const f2 = sealFrame(client, fromHex("00" + "77".repeat(32)));
  assert.equal(openFrame(relay, f2.subarray(2)), null, "relay expects nonce +0, frame has +1");
  assert.equal(toHex(relay.recvNonce), CLIENT_BASE, "nonce unchanged after the failure");
});

Deno.test("tcp §4: openFrame rejects a flipped bit, a short box and the wrong key; nonce stays", () => {
  const { client, relay } = pair();
  const body = sealFrame(client, fromHex("1068656c6c6f")).subarray(2);
  for (const i of [0, 15, 16, body.length - 1]) {
    const bad = body.slice();
    bad[i] ^= 1;
    assert.equal(openFrame(relay, bad), null, `byte ${i}`);
  }
  assert.equal(openFrame(relay, body.subarray(0, 16)), null);
  assert.equal(openFrame(relay, new Uint8Array(0)), null);
  const other = { ...relay, sharedKey: new Uint8Array(32).fill(1) };
  assert.equal(openFrame(other, body), null);
  assert.equal(toHex(relay.recvNonce), CLIENT_BASE);
  // Untouched it still opens, at the same nonce.
  assert.equal(toHex(openFrame(relay, body)!), "1068656c6c6f");
});

Deno.test("tcp §4: openFrame with a scratch buffer gives the same plaintext", () => {
  const { client, relay } = pair();
  const scratch = newFrameScratch();
  for (const p of PLAINS) {
    const body = sealFrame(client, p).subarray(2);
    assert.deepEqual(openFrame(relay, body, scratch), p);
  }
});

Deno.test("tcp §4: sealFrameInto writes at an offset and returns the bytes written", () => {
  const a = pair().client;
  const b = pair().client;
  const scratch = newFrameScratch();
  const dest = new Uint8Array(100).fill(0xee);
  const plain = fromHex("040102030405060708");
  const n = sealFrameInto(a, plain, dest, 7, scratch);
  assert.equal(n, frameSize(plain.length));
  assert.deepEqual(dest.subarray(7, 7 + n), sealFrame(b, plain));
  assert.ok(dest.subarray(0, 7).every((x) => x === 0xee), "bytes before untouched");
  assert.ok(dest.subarray(7 + n).every((x) => x === 0xee), "bytes after untouched");
  assert.equal(toHex(a.sendNonce), toHex(b.sendNonce));
});

Deno.test("tcp §4: sealFrameInto refuses empty and > 2032-byte plaintexts, nonce unchanged", () => {
  const { client } = pair();
  const dest = new Uint8Array(4096);
  const scratch = new Uint8Array(4096);
  assert.throws(() => sealFrameInto(client, new Uint8Array(0), dest, 0, scratch), RangeError);
  assert.throws(
    () => sealFrameInto(client, new Uint8Array(MAX_PLAIN_SIZE + 1), dest, 0, scratch),
    RangeError,
  );
  assert.throws(() => sealFrame(client, new Uint8Array(0)), RangeError);
  assert.throws(() => sealFrame(client, new Uint8Array(MAX_PLAIN_SIZE + 1)), RangeError);
  assert.equal(toHex(client.sendNonce), CLIENT_BASE);
  // 2032 is fine: a 2050-byte frame whose length field says 2048.
  const f = sealFrameInto(client, new Uint8Array(MAX_PLAIN_SIZE), dest, 0, scratch);
  assert.equal(f, 2050);
  assert.equal((dest[0] << 8) | dest[1], 2048);
});

// ---- FrameReader ----

Deno.test("tcp §4: FrameReader returns whole frames from one push", () => {
  const { stream, bodies } = sealedStream();
  const r = new FrameReader();
  r.push(stream);
  assert.equal(r.buffered, stream.length);
  assert.deepEqual(drain(r), bodies);
  assert.equal(r.buffered, 0);
});

Deno.test("tcp §4: FrameReader, stream split in two at every byte boundary", () => {
  const { stream, bodies } = sealedStream();
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new FrameReader();
    const got: Uint8Array[] = [];
    r.push(stream.subarray(0, cut));
    got.push(...drain(r));
    r.push(stream.subarray(cut));
    got.push(...drain(r));
    assert.equal(got.length, bodies.length, `cut at ${cut}`);
    assert.deepEqual(got, bodies, `cut at ${cut}`);
  }
});

Deno.test("tcp §4: FrameReader, stream split in three at many boundary pairs", () => {
  const { stream, bodies } = sealedStream();
  // Every pair of cuts inside the first frames plus a stride over the rest.
  const cuts: number[] = [];
  for (let i = 0; i <= 80; i++) cuts.push(i);
  for (let i = 81; i <= stream.length; i += 37) cuts.push(i);
  cuts.push(stream.length - 1, stream.length);
  for (const a of cuts) {
    for (const b of cuts) {
      if (b < a) continue;
      const r = new FrameReader();
      const got: Uint8Array[] = [];
      for (const part of [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]) {
        r.push(part);
        got.push(...drain(r));
      }
      assert.deepEqual(got, bodies, `cuts ${a}, ${b}`);
    }
  }
});

Deno.test("tcp §4: FrameReader fed one byte at a time", () => {
  const { stream, bodies } = sealedStream();
  const r = new FrameReader();
  const got: Uint8Array[] = [];
  for (let i = 0; i < stream.length; i++) {
    r.push(stream.subarray(i, i + 1));
    got.push(...drain(r));
  }
  assert.deepEqual(got, bodies);
  assert.equal(r.buffered, 0);
});

Deno.test("tcp §4: FrameReader with a reused read buffer (the usual socket loop)", () => {
  const { stream, bodies } = sealedStream();
  for (const size of [1, 2, 3, 7, 18, 19, 64, 1000, 2050, 4096]) {
    const r = new FrameReader();
    const readBuf = new Uint8Array(size);
    const { relay } = pair();
    const plains: Uint8Array[] = [];
    for (let off = 0; off < stream.length; off += size) {
      const n = Math.min(size, stream.length - off);
      readBuf.set(stream.subarray(off, off + n));
      r.push(readBuf.subarray(0, n));
      for (;;) {
        const f = r.next();
        if (f.kind === "need_more") break;
        assert.equal(f.kind, "frame");
        if (f.kind === "frame") plains.push(openFrame(relay, f.box)!.slice());
      }
      readBuf.fill(0xcc); // the socket overwrites its buffer with the next read
    }
    assert.deepEqual(plains, PLAINS, `read size ${size}`);
    assert.equal(bodies.length, plains.length);
  }
});

Deno.test("tcp §4: FrameReader keeps its own copy of a partial frame", () => {
  const { stream, bodies } = sealedStream();
  const firstLen = bodies[0].length + 2;
  // Chunk = all of frame 1 plus the first 10 bytes of frame 2.
  const chunk = stream.slice(0, firstLen + 10);
  const r = new FrameReader();
  r.push(chunk);
  const f1 = r.next();
  assert.equal(f1.kind, "frame");
  if (f1.kind === "frame") assert.deepEqual(f1.box, bodies[0]);
  assert.equal(r.next().kind, "need_more");
  chunk.fill(0xaa); // the caller reuses its buffer
  r.push(stream.slice(firstLen + 10, firstLen + bodies[1].length + 2));
  const f2 = r.next();
  assert.equal(f2.kind, "frame");
  if (f2.kind === "frame") assert.deepEqual(f2.box, bodies[1]);
});

Deno.test("tcp §4: FrameReader keeps its own copy of a partial length header", () => {
  const { stream, bodies } = sealedStream();
  const chunk = stream.slice(0, 1); // just len_hi
  const r = new FrameReader();
  r.push(chunk);
  assert.equal(r.next().kind, "need_more");
  chunk[0] = 0xff;
  r.push(stream.slice(1));
  assert.deepEqual(drain(r), bodies);
});

Deno.test("tcp §4: length 0 frames are consumed and skipped", () => {
  const { stream, bodies } = sealedStream();
  const zero = Uint8Array.of(0, 0);
  const withZeros = concat([
    zero,
    zero,
    stream.subarray(0, bodies[0].length + 2),
    zero,
    stream
      .subarray(bodies[0].length + 2),
    zero,
  ]);
  const r = new FrameReader();
  r.push(withZeros);
  assert.deepEqual(drain(r), bodies);
  assert.equal(r.buffered, 0);

  // Also byte by byte.
  const r2 = new FrameReader();
  const got: Uint8Array[] = [];
  for (let i = 0; i < withZeros.length; i++) {
    r2.push(withZeros.subarray(i, i + 1));
    got.push(...drain(r2));
  }
  assert.deepEqual(got, bodies);
});

Deno.test("tcp §4: length > 2048 is error too_long (as soon as the header is in)", () => {
  for (const len of [2049, 4096, 0xffff]) {
    const r = new FrameReader();
    r.push(Uint8Array.of(len >>> 8, len & 0xff));
    expectError(r.next(), "too_long");
  }
  // 2048 itself is fine.
  const r = new FrameReader();
  r.push(rawFrame(2048));
  const f = r.next();
  assert.equal(f.kind, "frame");
  if (f.kind === "frame") assert.equal(f.box.length, 2048);
});

Deno.test("tcp §4: length ≤ 16 is error too_short; 17 is a frame", () => {
  for (const len of [1, 2, 15, 16]) {
    const r = new FrameReader();
    r.push(rawFrame(len));
    expectError(r.next(), "too_short");
  }
  const r = new FrameReader();
  r.push(rawFrame(17));
  const f = r.next();
  assert.equal(f.kind, "frame");
  if (f.kind === "frame") assert.equal(f.box.length, 17);
});

Deno.test("tcp §4: a bad length after good frames still yields the good frames first", () => {
  const { stream, bodies } = sealedStream();
  const r = new FrameReader();
  r.push(concat([stream, Uint8Array.of(0x08, 0x01)]));
  for (const b of bodies) {
    const f = r.next();
    assert.equal(f.kind, "frame");
    if (f.kind === "frame") assert.deepEqual(f.box, b);
  }
  expectError(r.next(), "too_long");
});

Deno.test("tcp §4: a frame is not returned until all of its bytes are in", () => {
  const frame = rawFrame(100);
  const r = new FrameReader();
  r.push(frame.subarray(0, 101));
  assert.equal(r.next().kind, "need_more");
  assert.equal(r.buffered, 101);
  r.push(frame.subarray(101));
  const f = r.next();
  assert.equal(f.kind, "frame");
  assert.equal(r.next().kind, "need_more");
});

Deno.test("tcp §3.3: takeRaw reads the unframed 96-byte response, then frames follow", () => {
  const response = seq(0x30, 96);
  const { stream, bodies } = sealedStream();
  const all = concat([response, stream]);
  for (const split of [1, 50, 95, 96, 97, 120, all.length]) {
    const r = new FrameReader();
    const first = all.slice(0, split);
    r.push(first);
    let raw = r.takeRaw(96);
    if (split < 96) {
      assert.equal(raw, null, `split ${split}`);
      assert.equal(r.buffered, split, "nothing consumed");
      first.fill(0); // after a refusal the reader holds its own copy
      r.push(all.subarray(split));
      raw = r.takeRaw(96);
    } else {
      if (split === 96) first.fill(0); // nothing left in the reader; raw must be a copy
      r.push(all.subarray(split));
    }
    assert.deepEqual(raw, response, `split ${split}`);
    assert.deepEqual(drain(r), bodies, `split ${split}`);
  }
});

Deno.test("tcp §3.3: takeRaw(n) with exactly n bytes, with 0, and more than buffered", () => {
  const r = new FrameReader();
  assert.equal(r.takeRaw(1), null);
  assert.deepEqual(r.takeRaw(0), new Uint8Array(0));
  r.push(Uint8Array.of(1, 2, 3));
  assert.equal(r.takeRaw(4), null);
  assert.deepEqual(r.takeRaw(2), Uint8Array.of(1, 2));
  assert.deepEqual(r.takeRaw(1), Uint8Array.of(3));
  assert.equal(r.buffered, 0);
  assert.equal(r.takeRaw(1), null);
});

Deno.test("tcp §4: the reader ignores empty pushes", () => {
  const { stream, bodies } = sealedStream();
  const r = new FrameReader();
  r.push(new Uint8Array(0));
  assert.equal(r.next().kind, "need_more");
  r.push(stream.subarray(0, 5));
  r.push(new Uint8Array(0));
  r.push(stream.subarray(5));
  assert.deepEqual(drain(r), bodies);
});

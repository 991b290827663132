/**
 * daemon/core/common/crypto.ts against spec/crypto.md: the three libsodium-verified vectors of §6, the
 * extra checks listed after them, and the toxcore edge rules of §2 and §4.
 */
import assert from "node:assert/strict";
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import {
  bytesEqual,
  CryptoError,
  fromHex,
  incrementNonce,
  incrementNonceNumber,
  MAC_SIZE,
  newKeyPair,
  NONCE_SIZE,
  open,
  precompute,
  publicKeyOf,
  seal,
  toHex,
} from "../daemon/core/common/crypto.ts";

interface Vector {
  readonly name: string;
  readonly skA: string;
  readonly pkA: string;
  readonly skB: string;
  readonly pkB: string;
  readonly beforenm: string;
  readonly nonce: string;
  readonly plaintext: string;
  readonly ct: string;
  readonly noncePlus1: string;
  readonly ctPlus1: string;
}

// crypto.md §6, copied verbatim.
const VECTORS: readonly Vector[] = [
  {
    name: "vector 1 (sequential bytes)",
    skA: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    pkA: "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f",
    skB: "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
    pkB: "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254",
    beforenm: "429b61f5d96e37268dfc5114849d599c9ceabffdb68c1f52cd0499af30f5b377",
    nonce: "000102030405060708090a0b0c0d0e0f1011121314151617",
    plaintext: "546f78205443502072656c6179",
    ct: "d7222acfa4c0a5677027b0c31be0ff3437bdc710283b188f3316da905d",
    noncePlus1: "000102030405060708090a0b0c0d0e0f1011121314151618",
    ctPlus1: "f2f88f4e382869907e0eddce32dfa20713123f17ff1352134ee6c86577",
  },
  {
    name: "vector 2 (RFC 7748 Alice & Bob)",
    skA: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    pkA: "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    skB: "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    pkB: "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    beforenm: "1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389",
    nonce: "69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37",
    plaintext: "040102030405060708",
    ct: "355b930bb47b9eadb4fa3d54987d3cfe349f665970ece6a105",
    noncePlus1: "69696ee955b62b73cd62bda875fc73d68219e0036b7a0b38",
    ctPlus1: "3ec1382cb4bf33bd1ed836393e11b2f8e2a416ac8c20a8e5f3",
  },
  {
    name: "vector 3 (unclamped ff secret, nonce carry)",
    skA: "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    pkA: "847c0d2c375234f365e660955187a3735a0f7613d1609d3a6a4d8c53aeaa5a22",
    skB: "4242424242424242424242424242424242424242424242424242424242424242",
    pkB: "132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472",
    beforenm: "7f63e3fe5cdf7e1bbe974d6d6d6c11f23bc03d7d072858c4a924f33d53f7cd2c",
    nonce: "00000000000000000000000000000000000000000000ffff",
    plaintext: "106802030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021",
    ct: "6b1ebfa4383cd373dc6c2e51cdc4dff686c3de7e729cb7aa58cb9fa175451071c038da14857f6788137e6afe" +
      "79408de1d659",
    noncePlus1: "000000000000000000000000000000000000000000010000",
    ctPlus1:
      "e2c906f9e6dbd304441101392f9e81d3b808b22cfec460116f56ec9d44ef99513562ac7f090228c2e85144" +
      "831a6bd9e4f72a",
  },
];

const h = (s: string) => fromHex(s);

for (const v of VECTORS) {
  Deno.test(`crypto §6 ${v.name}: public keys from secret keys`, () => {
    assert.equal(toHex(publicKeyOf(h(v.skA))), v.pkA);
    assert.equal(toHex(publicKeyOf(h(v.skB))), v.pkB);
  });

  Deno.test(`crypto §6 ${v.name}: precompute == beforenm in both directions`, () => {
    assert.equal(toHex(precompute(h(v.pkB), h(v.skA))), v.beforenm);
    assert.equal(toHex(precompute(h(v.pkA), h(v.skB))), v.beforenm);
  });

  Deno.test(`crypto §6 ${v.name}: seal == ct, MAC first, length plain + 16`, () => {
    const ct = seal(h(v.beforenm), h(v.nonce), h(v.plaintext));
    assert.equal(toHex(ct), v.ct);
    assert.equal(ct.length, h(v.plaintext).length + MAC_SIZE);
  });

  Deno.test(`crypto §6 ${v.name}: incrementNonce(nonce) == nonce+1, seal under it == ct+1`, () => {
    const n = h(v.nonce);
    incrementNonce(n);
    assert.equal(toHex(n), v.noncePlus1);
    assert.equal(toHex(seal(h(v.beforenm), n, h(v.plaintext))), v.ctPlus1);
  });

  Deno.test(`crypto §6 ${v.name}: open round-trips ct and ct+1, with either side's key`, () => {
    const kB = precompute(h(v.pkA), h(v.skB)); // the receiver's own computation
    assert.equal(toHex(open(kB, h(v.nonce), h(v.ct))!), v.plaintext);
    assert.equal(toHex(open(kB, h(v.noncePlus1), h(v.ctPlus1))!), v.plaintext);
    // ct under the wrong nonce does not open.
    assert.equal(open(kB, h(v.noncePlus1), h(v.ct)), null);
  });
}

Deno.test("crypto §6 extra: clamping — pub(ff..ff) == pub(clamp(ff..ff))", () => {
  const sk = new Uint8Array(32).fill(0xff);
  const clamped = sk.slice();
  clamped[0] &= 0xf8;
  clamped[31] &= 0x7f;
  clamped[31] |= 0x40;
  assert.equal(toHex(publicKeyOf(sk)), toHex(publicKeyOf(clamped)));
  assert.equal(toHex(publicKeyOf(sk)), VECTORS[2].pkA);
  // The secret key is used unclamped and left as it was.
  assert.ok(sk.every((b) => b === 0xff));
});

Deno.test("crypto §6 extra: bit 255 of the public key is ignored", () => {
  const sk = new Uint8Array(32).fill(0x42);
  const pk = new Uint8Array(32).map((_, i) => 0x20 + i); // 20 21 .. 3f, bit 255 clear
  const pkHigh = pk.slice();
  pkHigh[31] |= 0x80;
  const expected = "0164f1762b3e6cd45fccb92d8ea31252a154bab74e92dd549fedd3158daa16ba";
  assert.equal(toHex(precompute(pk, sk)), expected);
  assert.equal(toHex(precompute(pkHigh, sk)), expected);
});

Deno.test("crypto §6 extra: all-zero public key → CryptoError", () => {
  const sk = new Uint8Array(32).fill(0x42);
  assert.throws(() => precompute(new Uint8Array(32), sk), CryptoError);
});

Deno.test("crypto §3: precompute refuses keys that are not 32 bytes", () => {
  const k = new Uint8Array(32).fill(0x42);
  assert.throws(() => precompute(new Uint8Array(31), k), CryptoError);
  assert.throws(() => precompute(h(VECTORS[0].pkB), new Uint8Array(33)), CryptoError);
});

Deno.test("crypto §6 extra: incrementNonce(ff×24) == 00×24 (silent wrap)", () => {
  const n = new Uint8Array(NONCE_SIZE).fill(0xff);
  incrementNonce(n);
  assert.equal(toHex(n), "00".repeat(24));
});

Deno.test("crypto §4: incrementNonce is big-endian (+1 lands in byte 23)", () => {
  const n = new Uint8Array(NONCE_SIZE);
  incrementNonce(n);
  assert.equal(toHex(n), "00".repeat(23) + "01");
});

Deno.test("crypto §2: open() rejects a flipped bit anywhere in the MAC or ciphertext", () => {
  const v = VECTORS[0];
  const k = h(v.beforenm);
  const ct = h(v.ct);
  for (let i = 0; i < ct.length; i++) {
    for (const bit of [0x01, 0x80]) {
      const bad = ct.slice();
      bad[i] ^= bit;
      assert.equal(open(k, h(v.nonce), bad), null, `byte ${i} bit ${bit.toString(16)}`);
    }
  }
  // ... and a truncated or extended box.
  assert.equal(open(k, h(v.nonce), ct.subarray(0, ct.length - 1)), null);
  assert.equal(open(k, h(v.nonce), Uint8Array.of(...ct, 0)), null);
  // Untouched, it still opens.
  assert.equal(toHex(open(k, h(v.nonce), ct)!), v.plaintext);
});

Deno.test("crypto §2: open() returns null for boxes of 16 bytes or fewer", () => {
  const k = h(VECTORS[0].beforenm);
  const n = h(VECTORS[0].nonce);
  for (let len = 0; len <= MAC_SIZE; len++) {
    assert.equal(open(k, n, new Uint8Array(len)), null, `${len} zero bytes`);
  }
  // Even a genuine 16-byte box (a valid MAC over the empty message) is refused, like
  // decrypt_data_symmetric's `length <= crypto_box_BOXZEROBYTES` check.
  const emptyBox = xsalsa20poly1305(k, n).encrypt(new Uint8Array(0));
  assert.equal(emptyBox.length, 16);
  assert.equal(open(k, n, emptyBox), null);
});

Deno.test("crypto §2: seal refuses an empty plaintext", () => {
  const v = VECTORS[0];
  assert.throws(() => seal(h(v.beforenm), h(v.nonce), new Uint8Array(0)), CryptoError);
});

Deno.test("crypto §2: seal/open with caller scratch give the same bytes", () => {
  const v = VECTORS[2];
  const plain = h(v.plaintext);
  const scratch = new Uint8Array(plain.length + 32);
  const box = seal(h(v.beforenm), h(v.nonce), plain, scratch);
  assert.equal(toHex(box), v.ct);
  const scratch2 = new Uint8Array(box.length + 32);
  assert.equal(toHex(open(h(v.beforenm), h(v.nonce), box.slice(), scratch2)!), v.plaintext);
});

Deno.test("crypto §4: incrementNonceNumber adds a 32-bit number big-endian with carry", () => {
  // Hand computed:
  //   ..00 00 ff ff ff f0 + 0x00000020 = ..00 01 00 00 00 10
  const n = fromHex("0102030405060708090a0b0c0d0e0f10111213" + "00fffffff0", 24);
  incrementNonceNumber(n, 0x20);
  assert.equal(toHex(n), "0102030405060708090a0b0c0d0e0f10111213" + "0100000010");
  //   ..00 ff ff ff ff + 0xffffffff = ..01 ff ff ff fe
  const m = fromHex("00".repeat(19) + "00ffffffff", 24);
  incrementNonceNumber(m, 0xffffffff);
  assert.equal(toHex(m), "00".repeat(19) + "01fffffffe");
  //   carry through every byte: ff×24 + 1 wraps to 0, like incrementNonce
  const w = new Uint8Array(24).fill(0xff);
  incrementNonceNumber(w, 1);
  assert.equal(toHex(w), "00".repeat(24));
  //   adding 0 changes nothing; adding 0x01020304 to zero writes the last four bytes
  const z = new Uint8Array(24);
  incrementNonceNumber(z, 0);
  assert.equal(toHex(z), "00".repeat(24));
  incrementNonceNumber(z, 0x01020304);
  assert.equal(toHex(z), "00".repeat(20) + "01020304");
});

Deno.test("crypto §4: incrementNonceNumber(n, 1) == incrementNonce(n) (vector 3 nonce)", () => {
  const a = h(VECTORS[2].nonce);
  incrementNonceNumber(a, 1);
  assert.equal(toHex(a), VECTORS[2].noncePlus1);
});

Deno.test("fromHex: accepts even-length hex of either case, checks expected length", () => {
  assert.deepEqual(fromHex(""), new Uint8Array(0));
  assert.deepEqual(fromHex("00ffAb"), Uint8Array.of(0x00, 0xff, 0xab));
  assert.deepEqual(fromHex("0a0B", 2), Uint8Array.of(0x0a, 0x0b));
  assert.equal(toHex(fromHex(VECTORS[0].pkA, 32)), VECTORS[0].pkA);
});

Deno.test("fromHex: odd length, non-hex characters and wrong length throw TypeError", () => {
  for (const bad of ["0", "abc", "0g", "zz", "0x00", " 00", "00 ", "+1", "-1", "0\n", "é0"]) {
    assert.throws(() => fromHex(bad), TypeError, JSON.stringify(bad));
  }
  assert.throws(() => fromHex("0011", 3), TypeError);
  assert.throws(() => fromHex("0011", 1), TypeError);
  assert.throws(() => fromHex(VECTORS[0].pkA.slice(2), 32), TypeError);
});

Deno.test("newKeyPair: secret is the random bytes unclamped, public key matches", () => {
  const sk = new Uint8Array(32).fill(0xff);
  const kp = newKeyPair(() => sk.slice());
  assert.equal(toHex(kp.secretKey), "ff".repeat(32));
  assert.equal(toHex(kp.publicKey), VECTORS[2].pkA);
});

Deno.test("bytesEqual: equal, different, different lengths", () => {
  assert.ok(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2)));
  assert.ok(!bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3)));
  assert.ok(!bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2, 3)));
});

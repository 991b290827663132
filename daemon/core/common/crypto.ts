/**
 * NaCl crypto_box as c-toxcore uses it (crypto_core.c), built on noble.
 *
 * precompute = crypto_box_beforenm (X25519 then HSalsa20 over 16 zero bytes),
 * seal/open = XSalsa20-Poly1305 secretbox with the MAC first on the wire.
 * Checked against libsodium 1.0.18 vectors in tests/crypto_test.ts (spec/crypto.md §6).
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { hsalsa, xsalsa20poly1305 } from "@noble/ciphers/salsa.js";

export const PUBLIC_KEY_SIZE = 32;
export const SECRET_KEY_SIZE = 32;
export const SHARED_KEY_SIZE = 32;
export const NONCE_SIZE = 24;
export const MAC_SIZE = 16;

/** Injected randomness: tests pass a deterministic source, the shell passes the OS one. */
export type RandomBytes = (n: number) => Uint8Array;

export const systemRandom: RandomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));

export interface KeyPair {
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
}

/** A fresh key pair. Like libsodium, the secret is stored unclamped; clamping happens per use. */
export function newKeyPair(random: RandomBytes = systemRandom): KeyPair {
  const secretKey = random(SECRET_KEY_SIZE);
  return { publicKey: x25519.getPublicKey(secretKey), secretKey };
}

export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secretKey);
}

// "expand 32-byte k" as little-endian words.
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

export class CryptoError extends Error {
  override name = "CryptoError";
}

/**
 * crypto_box_beforenm(theirPublic, ourSecret). Throws CryptoError for a low-order public key,
 * where libsodium returns -1 (c-toxcore ignores that return; we refuse the peer instead).
 */
export function precompute(theirPublic: Uint8Array, ourSecret: Uint8Array): Uint8Array {
  if (theirPublic.length !== PUBLIC_KEY_SIZE || ourSecret.length !== SECRET_KEY_SIZE) {
    throw new CryptoError("precompute: keys must be 32 bytes");
  }
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(ourSecret, theirPublic);
  } catch {
    throw new CryptoError("precompute: public key is of low order (no shared secret)");
  }
  // hsalsa works on 32-bit words; copy into an aligned buffer of our own.
  const keyWords = new Uint32Array(8);
  new Uint8Array(keyWords.buffer).set(shared);
  shared.fill(0);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, keyWords, new Uint32Array(4), out);
  keyWords.fill(0);
  return new Uint8Array(out.buffer);
}

/**
 * seal(k, n, m) = MAC(16) || ciphertext. An empty plaintext is refused, as c-toxcore's
 * encrypt_data_symmetric does, so we never produce a box the other side would reject.
 * `scratch`, when given, must be exactly m.length + 32 bytes; the result is a view into it.
 */
export function seal(
  key: Uint8Array,
  nonce: Uint8Array,
  plain: Uint8Array,
  scratch?: Uint8Array,
): Uint8Array {
  if (plain.length === 0) throw new CryptoError("seal: empty plaintext");
  return xsalsa20poly1305(key, nonce).encrypt(plain, scratch);
}

/**
 * open(k, n, box) → plaintext, or null when the box is too short or the MAC fails.
 * `scratch`, when given, must be exactly box.length + 32 bytes; the result is a view into it.
 */
export function open(
  key: Uint8Array,
  nonce: Uint8Array,
  box: Uint8Array,
  scratch?: Uint8Array,
): Uint8Array | null {
  if (box.length <= MAC_SIZE) return null;
  try {
    return xsalsa20poly1305(key, nonce).decrypt(box, scratch);
  } catch {
    return null;
  }
}

/** increment_nonce: the 24 bytes are one big-endian integer; +1 with carry, wrapping. */
export function incrementNonce(nonce: Uint8Array): void {
  for (let i = nonce.length - 1; i >= 0; i--) {
    if (++nonce[i] !== 256) {
      return;
    }
    nonce[i] = 0;
  }
}

/** increment_nonce_number: add a 32-bit number, big-endian, with carry (used by net_crypto). */
export function incrementNonceNumber(nonce: Uint8Array, n: number): void {
  let carry = n >>> 0;
  for (let i = nonce.length - 1; i >= 0 && carry !== 0; i--) {
    const sum = nonce[i] + (carry & 0xff);
    nonce[i] = sum & 0xff;
    carry = (carry >>> 8) + (sum >>> 8);
  }
}

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Lower-case hex. Keys are named by their hex on every packet's path (relay routes, peers,
 * sessions), so this is a table lookup per byte rather than a number formatted per byte.
 */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX_BYTE[bytes[i]];
  return s;
}

/** Strict hex decoding: even length, hex digits only, optional exact length. */
export function fromHex(hex: string, expectedBytes?: number): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not a hex string: ${JSON.stringify(hex.slice(0, 80))}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  if (expectedBytes !== undefined && out.length !== expectedBytes) {
    throw new TypeError(`expected ${expectedBytes} bytes of hex, got ${out.length}`);
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

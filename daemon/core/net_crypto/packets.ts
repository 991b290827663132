/**
 * net_crypto wire codec (net_crypto.c of c-toxcore 0.2.18; spec/net_crypto.md §3-§8): cookies,
 * cookie request/response, the handshake, data packets with the 2-byte nonce trick, the inner
 * data plaintext and the request (resend / ack) list.
 *
 * Pure functions: nonces, cookie keys and clocks come from the caller, so every byte is
 * reproducible in tests. Decoders return typed errors and never throw on bad input; encoders
 * throw EncodeError for arguments the protocol cannot carry (a caller bug).
 */
import { sha512 } from "@noble/hashes/sha2.js";
import { codecError, type Decoded, decoded, EncodeError } from "../common/codec.ts";
import {
  bytesEqual,
  CryptoError,
  incrementNonceNumber,
  MAC_SIZE,
  NONCE_SIZE,
  open,
  precompute,
  PUBLIC_KEY_SIZE,
  seal,
  SHARED_KEY_SIZE,
} from "../common/crypto.ts";

export const NET_PACKET_COOKIE_REQUEST = 0x18;
export const NET_PACKET_COOKIE_RESPONSE = 0x19;
export const NET_PACKET_CRYPTO_HS = 0x1a;
export const NET_PACKET_CRYPTO_DATA = 0x1b;

export const COOKIE_REQUEST_LENGTH = 145;
export const COOKIE_RESPONSE_LENGTH = 161;
export const HANDSHAKE_PACKET_LENGTH = 385;
export const COOKIE_LENGTH = 112;
/** Seconds a cookie stays valid after its creation time. */
export const COOKIE_TIMEOUT = 15;

export const MAX_CRYPTO_PACKET_SIZE = 1400;
/** Largest data payload including its id byte: 1400 - (1 + 2 + 4 + 4 + 16). */
export const MAX_CRYPTO_DATA_SIZE = 1373;
export const CRYPTO_MAX_PADDING = 8;
/** The receive nonce creeps forward by this much once a packet is more than twice as far ahead. */
export const DATA_NUM_THRESHOLD = 21845;
export const CRYPTO_PACKET_BUFFER_SIZE = 32768;

export const PACKET_ID_PADDING = 0;
export const PACKET_ID_REQUEST = 1;
export const PACKET_ID_KILL = 2;
export const PACKET_ID_RANGE_LOSSLESS_START = 16;
export const PACKET_ID_RANGE_LOSSLESS_END = 191;
export const PACKET_ID_RANGE_LOSSY_START = 192;
export const PACKET_ID_RANGE_LOSSY_END = 254;

const SHA512_SIZE = 64;
const ECHO_ID_SIZE = 8;
/** Cookie plaintext: u64 time ‖ real pk ‖ DHT pk. */
const COOKIE_CONTENTS_LENGTH = 8 + 2 * PUBLIC_KEY_SIZE;
/** Cookie request plaintext: real pk ‖ 32 bytes of padding ‖ echo id. */
const COOKIE_REQUEST_PLAIN_LENGTH = 2 * PUBLIC_KEY_SIZE + ECHO_ID_SIZE;
const COOKIE_RESPONSE_PLAIN_LENGTH = COOKIE_LENGTH + ECHO_ID_SIZE;
/** Handshake plaintext: base nonce ‖ session pk ‖ SHA-512(outer cookie) ‖ new cookie. */
const HANDSHAKE_PLAIN_LENGTH = NONCE_SIZE + PUBLIC_KEY_SIZE + SHA512_SIZE + COOKIE_LENGTH;
/** id ‖ 2 nonce bytes ‖ MAC: a data packet must be longer than this. */
const DATA_PACKET_OVERHEAD = 1 + 2 + MAC_SIZE;
/** u32 buffer_start ‖ u32 packet_number ahead of the padding and payload. */
const DATA_HEADER_SIZE = 8;
const MAX_DATA_PLAIN = MAX_CRYPTO_PACKET_SIZE - DATA_PACKET_OVERHEAD;
const TWO_POW_32 = 0x1_0000_0000;

// ---------------------------------------------------------------------------------------------
// Helpers

function checkLength(bytes: Uint8Array, n: number, what: string): void {
  if (bytes.length !== n) {
    throw new EncodeError(`${what} must be ${n} bytes, got ${bytes.length}`);
  }
}

/** Exact length first (the id byte may not even exist), then the id. */
function checkPacket<T>(
  packet: Uint8Array,
  length: number,
  id: number,
  name: string,
): Decoded<T> | null {
  if (packet.length !== length) {
    return codecError(
      "wrong_length",
      `${name}: ${packet.length} bytes, expected exactly ${length}`,
    );
  }
  if (packet[0] !== id) {
    return codecError("unknown_id", `${name}: packet id ${packet[0]}, expected ${id}`);
  }
  return null;
}

function readU32be(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function writeU32be(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

// ---------------------------------------------------------------------------------------------
// Cookie (§4)

export interface CookieContents {
  /** Creation time, whole seconds; u64 little-endian on the wire (c-toxcore copies host order). */
  readonly time: number;
  readonly realPublicKey: Uint8Array;
  readonly dhtPublicKey: Uint8Array;
}

/** nonce ‖ sbox(cookieKey, nonce, time ‖ real pk ‖ DHT pk): 112 bytes only its maker can open. */
export function createCookie(
  cookieKey: Uint8Array,
  contents: CookieContents,
  nonce: Uint8Array,
): Uint8Array {
  checkLength(cookieKey, SHARED_KEY_SIZE, "cookie key");
  checkLength(nonce, NONCE_SIZE, "cookie nonce");
  checkLength(contents.realPublicKey, PUBLIC_KEY_SIZE, "cookie real public key");
  checkLength(contents.dhtPublicKey, PUBLIC_KEY_SIZE, "cookie DHT public key");
  const time = contents.time;
  if (!Number.isSafeInteger(time) || time < 0) {
    throw new EncodeError(`cookie time must be a non-negative integer of seconds, got ${time}`);
  }
  const plain = new Uint8Array(COOKIE_CONTENTS_LENGTH);
  const view = new DataView(plain.buffer);
  view.setUint32(0, time % TWO_POW_32, true);
  view.setUint32(4, Math.floor(time / TWO_POW_32), true);
  plain.set(contents.realPublicKey, 8);
  plain.set(contents.dhtPublicKey, 8 + PUBLIC_KEY_SIZE);
  const cookie = new Uint8Array(COOKIE_LENGTH);
  cookie.set(nonce, 0);
  cookie.set(seal(cookieKey, nonce, plain), NONCE_SIZE);
  return cookie;
}

/**
 * Open one of our own cookies. Valid from its creation second through 15 s later, both ends
 * included; a time ahead of `nowSeconds` is refused too. `nowSeconds` is floored to whole
 * seconds, as c-toxcore compares whole seconds of its clock.
 */
export function openCookie(
  cookie: Uint8Array,
  cookieKey: Uint8Array,
  nowSeconds: number,
): Decoded<CookieContents> {
  if (cookie.length !== COOKIE_LENGTH) {
    return codecError(
      "wrong_length",
      `cookie: ${cookie.length} bytes, expected exactly ${COOKIE_LENGTH}`,
    );
  }
  const plain = open(cookieKey, cookie.subarray(0, NONCE_SIZE), cookie.subarray(NONCE_SIZE));
  if (plain === null) return codecError("bad_mac", "cookie: not made with our cookie key");
  const view = new DataView(plain.buffer, plain.byteOffset, plain.length);
  // Beyond 2^53 the sum is inexact, but such a time is in the future anyway.
  const time = view.getUint32(4, true) * TWO_POW_32 + view.getUint32(0, true);
  const now = Math.floor(nowSeconds);
  if (time + COOKIE_TIMEOUT < now) {
    return codecError("expired", `cookie: made ${now - time} s ago (valid ${COOKIE_TIMEOUT} s)`);
  }
  if (now < time) {
    return codecError("expired", `cookie: made ${time - now} s in the future`);
  }
  return decoded({
    time,
    realPublicKey: plain.slice(8, 8 + PUBLIC_KEY_SIZE),
    dhtPublicKey: plain.slice(8 + PUBLIC_KEY_SIZE, COOKIE_CONTENTS_LENGTH),
  });
}

// ---------------------------------------------------------------------------------------------
// Cookie request (§3)

export interface CookieRequest {
  readonly senderDhtPublicKey: Uint8Array;
  readonly senderRealPublicKey: Uint8Array;
  /** 8 opaque bytes the responder echoes (c-toxcore: a random u64 in host order). */
  readonly echoId: Uint8Array;
}

/** 0x18 ‖ sender DHT pk ‖ nonce ‖ sbox(K_dht, nonce, real pk ‖ 32 zeros ‖ echo id): 145 bytes. */
export function encodeCookieRequest(
  sharedKey: Uint8Array,
  req: CookieRequest,
  nonce: Uint8Array,
): Uint8Array {
  checkLength(sharedKey, SHARED_KEY_SIZE, "cookie request key");
  checkLength(nonce, NONCE_SIZE, "cookie request nonce");
  checkLength(req.senderDhtPublicKey, PUBLIC_KEY_SIZE, "cookie request DHT public key");
  checkLength(req.senderRealPublicKey, PUBLIC_KEY_SIZE, "cookie request real public key");
  checkLength(req.echoId, ECHO_ID_SIZE, "cookie request echo id");
  const plain = new Uint8Array(COOKIE_REQUEST_PLAIN_LENGTH);
  plain.set(req.senderRealPublicKey, 0);
  plain.set(req.echoId, 2 * PUBLIC_KEY_SIZE);
  const out = new Uint8Array(COOKIE_REQUEST_LENGTH);
  out[0] = NET_PACKET_COOKIE_REQUEST;
  out.set(req.senderDhtPublicKey, 1);
  out.set(nonce, 1 + PUBLIC_KEY_SIZE);
  out.set(seal(sharedKey, nonce, plain), 1 + PUBLIC_KEY_SIZE + NONCE_SIZE);
  return out;
}

/**
 * The plaintext sender DHT key of a cookie request (a copy), after the length and id checks:
 * the responder needs it to pick K_dht before it can open the rest.
 */
export function cookieRequestSender(packet: Uint8Array): Decoded<Uint8Array> {
  const bad = checkPacket<Uint8Array>(
    packet,
    COOKIE_REQUEST_LENGTH,
    NET_PACKET_COOKIE_REQUEST,
    "cookie request",
  );
  return bad ?? decoded(packet.slice(1, 1 + PUBLIC_KEY_SIZE));
}

/** Open a cookie request with K_dht. The 32 padding bytes are ignored, as c-toxcore does. */
export function openCookieRequest(
  packet: Uint8Array,
  sharedKey: Uint8Array,
): Decoded<CookieRequest> {
  const bad = checkPacket<CookieRequest>(
    packet,
    COOKIE_REQUEST_LENGTH,
    NET_PACKET_COOKIE_REQUEST,
    "cookie request",
  );
  if (bad !== null) return bad;
  const nonceAt = 1 + PUBLIC_KEY_SIZE;
  const plain = open(
    sharedKey,
    packet.subarray(nonceAt, nonceAt + NONCE_SIZE),
    packet.subarray(nonceAt + NONCE_SIZE),
  );
  if (plain === null) return codecError("bad_mac", "cookie request: does not open with K_dht");
  return decoded({
    senderDhtPublicKey: packet.slice(1, 1 + PUBLIC_KEY_SIZE),
    senderRealPublicKey: plain.slice(0, PUBLIC_KEY_SIZE),
    echoId: plain.slice(2 * PUBLIC_KEY_SIZE, COOKIE_REQUEST_PLAIN_LENGTH),
  });
}

// ---------------------------------------------------------------------------------------------
// Cookie response (§5)

export interface CookieResponse {
  readonly cookie: Uint8Array;
  readonly echoId: Uint8Array;
}

/** 0x19 ‖ nonce ‖ sbox(K_dht, nonce, cookie ‖ echo id): 161 bytes. */
export function encodeCookieResponse(
  sharedKey: Uint8Array,
  resp: CookieResponse,
  nonce: Uint8Array,
): Uint8Array {
  checkLength(sharedKey, SHARED_KEY_SIZE, "cookie response key");
  checkLength(nonce, NONCE_SIZE, "cookie response nonce");
  checkLength(resp.cookie, COOKIE_LENGTH, "cookie response cookie");
  checkLength(resp.echoId, ECHO_ID_SIZE, "cookie response echo id");
  const plain = new Uint8Array(COOKIE_RESPONSE_PLAIN_LENGTH);
  plain.set(resp.cookie, 0);
  plain.set(resp.echoId, COOKIE_LENGTH);
  const out = new Uint8Array(COOKIE_RESPONSE_LENGTH);
  out[0] = NET_PACKET_COOKIE_RESPONSE;
  out.set(nonce, 1);
  out.set(seal(sharedKey, nonce, plain), 1 + NONCE_SIZE);
  return out;
}

/** Open a cookie response with K_dht; comparing the echo id is the caller's business. */
export function openCookieResponse(
  packet: Uint8Array,
  sharedKey: Uint8Array,
): Decoded<CookieResponse> {
  const bad = checkPacket<CookieResponse>(
    packet,
    COOKIE_RESPONSE_LENGTH,
    NET_PACKET_COOKIE_RESPONSE,
    "cookie response",
  );
  if (bad !== null) return bad;
  const plain = open(
    sharedKey,
    packet.subarray(1, 1 + NONCE_SIZE),
    packet.subarray(1 + NONCE_SIZE),
  );
  if (plain === null) return codecError("bad_mac", "cookie response: does not open with K_dht");
  return decoded({
    cookie: plain.slice(0, COOKIE_LENGTH),
    echoId: plain.slice(COOKIE_LENGTH, COOKIE_RESPONSE_PLAIN_LENGTH),
  });
}

// ---------------------------------------------------------------------------------------------
// Handshake (§6)

export interface HandshakeArgs {
  /** The receiver's cookie (112): sent in clear at offset 1, its SHA-512 goes inside the box. */
  readonly receiverCookie: Uint8Array;
  /** precompute(receiverRealPk, senderRealSk). */
  readonly sharedKey: Uint8Array;
  readonly nonce: Uint8Array;
  /** The sender's first data nonce (its sent_nonce). */
  readonly baseNonce: Uint8Array;
  readonly sessionPublicKey: Uint8Array;
  /** A cookie the sender made for the receiver (112), for the receiver's own handshake. */
  readonly newCookie: Uint8Array;
}

/** 0x1a ‖ receiver cookie ‖ nonce ‖ box(base nonce ‖ session pk ‖ SHA-512 ‖ new cookie): 385. */
export function encodeHandshake(a: HandshakeArgs): Uint8Array {
  checkLength(a.receiverCookie, COOKIE_LENGTH, "handshake receiver cookie");
  checkLength(a.sharedKey, SHARED_KEY_SIZE, "handshake key");
  checkLength(a.nonce, NONCE_SIZE, "handshake nonce");
  checkLength(a.baseNonce, NONCE_SIZE, "handshake base nonce");
  checkLength(a.sessionPublicKey, PUBLIC_KEY_SIZE, "handshake session public key");
  checkLength(a.newCookie, COOKIE_LENGTH, "handshake new cookie");
  const plain = new Uint8Array(HANDSHAKE_PLAIN_LENGTH);
  plain.set(a.baseNonce, 0);
  plain.set(a.sessionPublicKey, NONCE_SIZE);
  plain.set(sha512(a.receiverCookie), NONCE_SIZE + PUBLIC_KEY_SIZE);
  plain.set(a.newCookie, NONCE_SIZE + PUBLIC_KEY_SIZE + SHA512_SIZE);
  const out = new Uint8Array(HANDSHAKE_PACKET_LENGTH);
  out[0] = NET_PACKET_CRYPTO_HS;
  out.set(a.receiverCookie, 1);
  out.set(a.nonce, 1 + COOKIE_LENGTH);
  out.set(seal(a.sharedKey, a.nonce, plain), 1 + COOKIE_LENGTH + NONCE_SIZE);
  return out;
}

export interface OpenedHandshake {
  readonly peerRealPublicKey: Uint8Array;
  readonly peerDhtPublicKey: Uint8Array;
  /** The peer's first data nonce: becomes our recv_nonce. */
  readonly baseNonce: Uint8Array;
  readonly sessionPublicKey: Uint8Array;
  /** The peer's new cookie: the outer cookie of our own handshake to it. */
  readonly cookie: Uint8Array;
}

export interface OpenHandshakeOptions {
  /** Our cookie key: the outer cookie must be one we made. */
  readonly cookieKey: Uint8Array;
  readonly nowSeconds: number;
  /** Our real (long-term) secret key. */
  readonly realSecretKey: Uint8Array;
  /** For an existing connection: the real key the handshake must come from. */
  readonly expectedRealPublicKey?: Uint8Array;
  /** A cache of precompute(peerRealPk, realSecretKey); may throw CryptoError for a bad key. */
  readonly sharedKey?: (peerRealPublicKey: Uint8Array) => Uint8Array;
}

/**
 * Check a handshake in c-toxcore's order: exact length and id; our outer cookie opens and is
 * fresh; the peer is the expected one; the box opens with the real key from the cookie; the
 * SHA-512 inside matches the outer cookie. Every field returned is a fresh copy.
 */
export function openHandshake(
  packet: Uint8Array,
  opts: OpenHandshakeOptions,
): Decoded<OpenedHandshake> {
  const bad = checkPacket<OpenedHandshake>(
    packet,
    HANDSHAKE_PACKET_LENGTH,
    NET_PACKET_CRYPTO_HS,
    "handshake",
  );
  if (bad !== null) return bad;
  const outerCookie = packet.subarray(1, 1 + COOKIE_LENGTH);
  const cookie = openCookie(outerCookie, opts.cookieKey, opts.nowSeconds);
  if (!cookie.ok) {
    return codecError(cookie.error.code, `handshake: outer ${cookie.error.message}`);
  }
  const peerRealPublicKey = cookie.value.realPublicKey;
  const expected = opts.expectedRealPublicKey;
  if (expected !== undefined && !bytesEqual(peerRealPublicKey, expected)) {
    return codecError(
      "unexpected_key",
      "handshake: our cookie names another real public key than this connection's peer",
    );
  }
  let key: Uint8Array;
  try {
    key = opts.sharedKey !== undefined
      ? opts.sharedKey(peerRealPublicKey)
      : precompute(peerRealPublicKey, opts.realSecretKey);
  } catch (e) {
    if (!(e instanceof CryptoError)) throw e;
    return codecError("malformed", `handshake: unusable peer real public key (${e.message})`);
  }
  const nonceAt = 1 + COOKIE_LENGTH;
  const plain = open(
    key,
    packet.subarray(nonceAt, nonceAt + NONCE_SIZE),
    packet.subarray(nonceAt + NONCE_SIZE),
  );
  if (plain === null) {
    return codecError("bad_mac", "handshake: box does not open with the cookie's real key");
  }
  const hashAt = NONCE_SIZE + PUBLIC_KEY_SIZE;
  if (!bytesEqual(plain.subarray(hashAt, hashAt + SHA512_SIZE), sha512(outerCookie))) {
    // The box is authentic but was made for another cookie: a replay onto a fresh cookie.
    return codecError("bad_mac", "handshake: inner SHA-512 does not match the outer cookie");
  }
  return decoded({
    peerRealPublicKey,
    peerDhtPublicKey: cookie.value.dhtPublicKey,
    baseNonce: plain.slice(0, NONCE_SIZE),
    sessionPublicKey: plain.slice(NONCE_SIZE, hashAt),
    cookie: plain.slice(hashAt + SHA512_SIZE, HANDSHAKE_PLAIN_LENGTH),
  });
}

// ---------------------------------------------------------------------------------------------
// Data packets (§8)

/**
 * 0x1b ‖ sentNonce[22..24] ‖ sbox(sharedKey, sentNonce, plain). The caller increments its
 * sent nonce afterwards (one per packet sent, resends included). The result is a view into a
 * buffer 13 bytes larger: the box is sealed in place behind the header, no copy.
 */
export function sealDataPacket(
  sharedKey: Uint8Array,
  sentNonce: Uint8Array,
  plain: Uint8Array,
): Uint8Array {
  // The receiver drops plaintexts of 8 bytes or less (no room for header + payload).
  if (plain.length <= DATA_HEADER_SIZE || plain.length > MAX_DATA_PLAIN) {
    throw new EncodeError(
      `data packet plaintext must be ${DATA_HEADER_SIZE + 1}..${MAX_DATA_PLAIN} bytes, ` +
        `got ${plain.length}`,
    );
  }
  checkLength(sentNonce, NONCE_SIZE, "data packet nonce");
  // seal() with scratch puts MAC ‖ ciphertext at offset 16 of a buffer 32 bytes longer than
  // the plaintext; the 3 header bytes fit right in front of it.
  const scratch = new Uint8Array(plain.length + 32);
  const box = seal(sharedKey, sentNonce, plain, scratch);
  let packet: Uint8Array;
  if (box.buffer === scratch.buffer && box.byteOffset === scratch.byteOffset + 16) {
    packet = scratch.subarray(13);
  } else {
    packet = new Uint8Array(3 + box.length);
    packet.set(box, 3);
  }
  packet[0] = NET_PACKET_CRYPTO_DATA;
  packet[1] = sentNonce[NONCE_SIZE - 2];
  packet[2] = sentNonce[NONCE_SIZE - 1];
  return packet;
}

/**
 * Open a data packet with the "2-byte nonce trick": the packet carries the low 16 bits of its
 * nonce, and diff = (those - recvNonce's low 16 bits) mod 65536 is how far ahead of recvNonce it
 * is. recvNonce is not changed; after a packet opens, the caller passes diff to
 * advanceRecvNonce. `plain` is freshly allocated (not a view into `packet`).
 */
export function openDataPacket(
  packet: Uint8Array,
  sharedKey: Uint8Array,
  recvNonce: Uint8Array,
): Decoded<{ readonly plain: Uint8Array; readonly diff: number }> {
  if (packet.length <= DATA_PACKET_OVERHEAD) {
    return codecError(
      "too_short",
      `data packet: ${packet.length} bytes, must be more than ${DATA_PACKET_OVERHEAD}`,
    );
  }
  if (packet.length > MAX_CRYPTO_PACKET_SIZE) {
    return codecError(
      "too_long",
      `data packet: ${packet.length} bytes, the maximum is ${MAX_CRYPTO_PACKET_SIZE}`,
    );
  }
  if (packet[0] !== NET_PACKET_CRYPTO_DATA) {
    return codecError(
      "unknown_id",
      `data packet: packet id ${packet[0]}, expected ${NET_PACKET_CRYPTO_DATA}`,
    );
  }
  const ours = (recvNonce[NONCE_SIZE - 2] << 8) | recvNonce[NONCE_SIZE - 1];
  const diff = (((packet[1] << 8) | packet[2]) - ours) & 0xffff;
  const nonce = recvNonce.slice();
  incrementNonceNumber(nonce, diff);
  const plain = open(sharedKey, nonce, packet.subarray(3));
  if (plain === null) {
    return codecError("bad_mac", `data packet: does not open (nonce ${diff} ahead)`);
  }
  return decoded({ plain, diff });
}

/**
 * After a data packet opened: once packets arrive more than 2 × 21845 ahead, move recvNonce
 * forward by 21845. It only creeps, so late and duplicate packets within the window still open.
 */
export function advanceRecvNonce(recvNonce: Uint8Array, diff: number): void {
  if (diff > 2 * DATA_NUM_THRESHOLD) incrementNonceNumber(recvNonce, DATA_NUM_THRESHOLD);
}

// ---------------------------------------------------------------------------------------------
// Data plaintext (§8.1)

export interface DataPlain {
  /** The sender's recv_array.buffer_start: it has everything below this. */
  readonly bufferStart: number;
  readonly packetNumber: number;
  /** Payload starting with its id byte (never 0). */
  readonly payload: Uint8Array;
}

function checkU32Input(n: number, what: string): void {
  if (!Number.isInteger(n)) throw new EncodeError(`${what} must be an integer, got ${n}`);
}

/**
 * u32 BE buffer_start ‖ u32 BE packet_number ‖ (1373 - len) % 8 zeros ‖ payload. The padding
 * rounds every packet to one of 8 sizes modulo the maximum, hiding exact lengths a little.
 */
export function encodeDataPlain(
  bufferStart: number,
  packetNumber: number,
  payload: Uint8Array,
): Uint8Array {
  checkU32Input(bufferStart, "buffer_start");
  checkU32Input(packetNumber, "packet number");
  if (payload.length === 0 || payload.length > MAX_CRYPTO_DATA_SIZE) {
    throw new EncodeError(
      `data payload must be 1..${MAX_CRYPTO_DATA_SIZE} bytes, got ${payload.length}`,
    );
  }
  // A leading 0 would be eaten as padding by the receiver.
  if (payload[0] === PACKET_ID_PADDING) throw new EncodeError("data payload id may not be 0");
  const pad = (MAX_CRYPTO_DATA_SIZE - payload.length) % CRYPTO_MAX_PADDING;
  const out = new Uint8Array(DATA_HEADER_SIZE + pad + payload.length);
  writeU32be(out, 0, bufferStart >>> 0);
  writeU32be(out, 4, packetNumber >>> 0);
  out.set(payload, DATA_HEADER_SIZE + pad);
  return out;
}

/**
 * Split a data plaintext. Any run of zero bytes after the header is padding (c-toxcore strips
 * as many as there are). `payload` is a view into `plain`.
 */
export function decodeDataPlain(plain: Uint8Array): Decoded<DataPlain> {
  if (plain.length <= DATA_HEADER_SIZE) {
    return codecError(
      "too_short",
      `data plaintext: ${plain.length} bytes, must be more than ${DATA_HEADER_SIZE}`,
    );
  }
  let at = DATA_HEADER_SIZE;
  while (at < plain.length && plain[at] === PACKET_ID_PADDING) at++;
  if (at === plain.length) return codecError("malformed", "data plaintext: nothing but padding");
  return decoded({
    bufferStart: readU32be(plain, 0),
    packetNumber: readU32be(plain, 4),
    payload: plain.subarray(at),
  });
}

// ---------------------------------------------------------------------------------------------
// Request packet (§8.3)

/**
 * The request payload (id 1 ‖ body) for the receive window [bufferStart, bufferEnd), u32
 * modular. Each body byte is a step from the previous listed position (bufferStart - 1 at
 * first): a non-zero step lands on a missing packet; 0 steps 255 over received ones, written
 * whenever 255 received packets pass without a missing one. Stops at maxLength bytes.
 * Cost is bounded by 255 × maxLength calls of `has`, whatever the window size.
 */
export function encodeRequestPacket(
  bufferStart: number,
  bufferEnd: number,
  has: (packetNumber: number) => boolean,
  maxLength: number = MAX_CRYPTO_DATA_SIZE,
): Uint8Array {
  if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > MAX_CRYPTO_DATA_SIZE) {
    throw new EncodeError(`request packet max length must be 1..${MAX_CRYPTO_DATA_SIZE}`);
  }
  const out = new Uint8Array(maxLength);
  out[0] = PACKET_ID_REQUEST;
  let length = 1;
  const end = bufferEnd >>> 0;
  let step = 1;
  for (let i = bufferStart >>> 0; i !== end && length < maxLength; i = (i + 1) >>> 0) {
    if (!has(i)) {
      out[length++] = step;
      step = 0;
    } else if (step === 255) {
      out[length++] = 0;
      step = 0;
    }
    step++;
  }
  return out.subarray(0, length);
}

/**
 * The sender's reading of a request payload (c-toxcore handle_request_packet), walking its
 * send window from bufferStart while i != bufferEnd and body bytes remain. `requested` are the
 * packets the peer misses; every other number in [bufferStart, end) it has received. Numbers
 * from `end` on are not covered by this request.
 */
export function walkRequestPacket(
  payload: Uint8Array,
  bufferStart: number,
  bufferEnd: number,
): Decoded<{ readonly requested: number[]; readonly end: number }> {
  if (payload.length === 0) return codecError("too_short", "request packet: empty payload");
  if (payload[0] !== PACKET_ID_REQUEST) {
    return codecError(
      "unknown_id",
      `request packet: payload id ${payload[0]}, expected ${PACKET_ID_REQUEST}`,
    );
  }
  const requested: number[] = [];
  const stop = bufferEnd >>> 0;
  let at = 1;
  let step = 1;
  let i = bufferStart >>> 0;
  for (; i !== stop && at < payload.length; i = (i + 1) >>> 0) {
    if (payload[at] === step) {
      requested.push(i);
      at++;
      step = 0;
    }
    if (step === 255) {
      // Unreachable with byte-sized steps (a non-zero byte is matched by the time the step
      // gets to it); kept to mirror c-toxcore's -1 should the format ever change.
      if (payload[at] !== 0) {
        return codecError("malformed", `request packet: byte ${at} should be a 0 skip marker`);
      }
      at++;
      step = 1;
    } else {
      step++;
    }
  }
  return decoded({ requested, end: i });
}

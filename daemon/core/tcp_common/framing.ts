/**
 * Encrypted framing after the handshake (spec/tcp.md §4; TCP_common.c):
 *   length (uint16 big-endian, = plaintext + 16) · MAC(16) · ciphertext
 * Each direction has its own counter nonce, incremented after every frame.
 */
import { type CodecError, fault } from "../common/codec.ts";
import { incrementNonce, MAC_SIZE, open, seal } from "../common/crypto.ts";
import type { SecureSession } from "./handshake.ts";
import { MAX_PACKET_SIZE, MAX_PLAIN_SIZE } from "./packets.ts";

export const FRAME_HEADER_SIZE = 2;
/** Largest frame on the wire: 2 + 2048. */
export const MAX_FRAME_SIZE = FRAME_HEADER_SIZE + MAX_PACKET_SIZE;

/** Bytes a frame carrying `plainLength` bytes takes on the wire. */
export function frameSize(plainLength: number): number {
  return FRAME_HEADER_SIZE + MAC_SIZE + plainLength;
}

/** A scratch buffer big enough for any frame's seal or open. */
export function newFrameScratch(): Uint8Array {
  return new Uint8Array(MAX_PACKET_SIZE + 32);
}

/**
 * Seal `plain` as the next frame of `session` into `dest` at `offset`; returns the bytes
 * written. Advances the send nonce, so frames must reach the socket in the order sealed.
 */
export function sealFrameInto(
  session: SecureSession,
  plain: Uint8Array,
  dest: Uint8Array,
  offset: number,
  scratch: Uint8Array,
): number {
  if (plain.length < 1 || plain.length > MAX_PLAIN_SIZE) {
    throw new RangeError(`frame plaintext must be 1..${MAX_PLAIN_SIZE} bytes, got ${plain.length}`);
  }
  // Checked before sealing: a nonce spent on a frame that is never written desynchronises
  // the stream for good.
  if (offset + frameSize(plain.length) > dest.length || scratch.length < plain.length + 32) {
    throw new RangeError("sealFrameInto: destination or scratch too small");
  }
  const box = seal(
    session.sharedKey,
    session.sendNonce,
    plain,
    scratch.subarray(0, plain.length + 32),
  );
  incrementNonce(session.sendNonce);
  dest[offset] = box.length >>> 8;
  dest[offset + 1] = box.length & 0xff;
  dest.set(box, offset + FRAME_HEADER_SIZE);
  return FRAME_HEADER_SIZE + box.length;
}

/** Seal one frame into a buffer of its own. */
export function sealFrame(session: SecureSession, plain: Uint8Array): Uint8Array {
  const out = new Uint8Array(frameSize(plain.length));
  sealFrameInto(session, plain, out, 0, new Uint8Array(plain.length + 32));
  return out;
}

/**
 * Open the next frame body of `session` (without its 2-byte length). null = MAC failure:
 * for the TCP relay protocol the connection must be dropped, the nonce is left as it was.
 * The result is a view into `scratch` (or a fresh buffer when none is given).
 */
export function openFrame(
  session: SecureSession,
  box: Uint8Array,
  scratch?: Uint8Array,
): Uint8Array | null {
  if (scratch !== undefined && scratch.length < box.length + 32) {
    throw new RangeError("openFrame: scratch too small"); // a caller bug, not a bad MAC
  }
  const plain = open(
    session.sharedKey,
    session.recvNonce,
    box,
    scratch?.subarray(0, box.length + 32),
  );
  if (plain !== null) incrementNonce(session.recvNonce);
  return plain;
}

export type FrameRead =
  | { readonly kind: "frame"; readonly box: Uint8Array }
  | { readonly kind: "need_more" }
  | { readonly kind: "error"; readonly error: CodecError };

const NEED_MORE: FrameRead = { kind: "need_more" };

/**
 * Splits a byte stream into frame bodies, whatever the read sizes (down to one byte).
 * Returned boxes may be views into the pushed chunk: use each before reusing that buffer.
 * The reader keeps its own copy of any partial frame, so the caller may reuse its read
 * buffer once next() says need_more.
 */
export class FrameReader {
  #buf: Uint8Array = new Uint8Array(0);
  #off = 0;
  #owned = true;

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#buf.length - this.#off;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#off >= this.#buf.length) {
      this.#buf = chunk;
      this.#owned = false;
    } else {
      const rest = this.#buf.length - this.#off;
      const merged = new Uint8Array(rest + chunk.length);
      merged.set(this.#buf.subarray(this.#off), 0);
      merged.set(chunk, rest);
      this.#buf = merged;
      this.#owned = true;
    }
    this.#off = 0;
  }

  /** Take the leading bytes as raw (the handshake reply is not framed). */
  takeRaw(n: number): Uint8Array | null {
    if (this.buffered < n) {
      this.#needMore();
      return null;
    }
    const out = this.#buf.slice(this.#off, this.#off + n);
    this.#off += n;
    return out;
  }

  next(): FrameRead {
    for (;;) {
      const avail = this.#buf.length - this.#off;
      if (avail < FRAME_HEADER_SIZE) return this.#needMore();
      const len = (this.#buf[this.#off] << 8) | this.#buf[this.#off + 1];
      if (len === 0) {
        // c-toxcore consumes a zero length as "no packet"; it never sends one itself.
        this.#off += FRAME_HEADER_SIZE;
        continue;
      }
      if (len > MAX_PACKET_SIZE) {
        return {
          kind: "error",
          error: fault("too_long", `frame length ${len} exceeds ${MAX_PACKET_SIZE}`),
        };
      }
      if (len <= MAC_SIZE) {
        return {
          kind: "error",
          error: fault("too_short", `frame length ${len} leaves no room for a packet`),
        };
      }
      if (avail < FRAME_HEADER_SIZE + len) return this.#needMore();
      const start = this.#off + FRAME_HEADER_SIZE;
      this.#off = start + len;
      return { kind: "frame", box: this.#buf.subarray(start, start + len) };
    }
  }

  #needMore(): FrameRead {
    if (!this.#owned) {
      this.#buf = this.#buf.slice(this.#off);
      this.#off = 0;
      this.#owned = true;
    }
    return NEED_MORE;
  }
}

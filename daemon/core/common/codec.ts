/**
 * Shared result and error types for every wire codec: decoders never throw on bad input,
 * they return a typed error naming what was wrong, so callers can attribute the fault.
 */

export type CodecErrorCode =
  | "too_short"
  | "too_long"
  | "wrong_length"
  | "out_of_range"
  | "unknown_id"
  | "reserved_id"
  | "bad_mac"
  | "malformed"
  /** Authentic but outside its validity window (a cookie older than 15 s, or from the future). */
  | "expired"
  /** Authentic but from another party than the one the caller expected. */
  | "unexpected_key";

/** Whose fault a closed session or a refused input is: ours, the other end's, or the path between. */
export type Fault = "local" | "peer" | "network";

export interface CodecError {
  readonly code: CodecErrorCode;
  readonly message: string;
}

export type Decoded<T> = { readonly ok: true; readonly value: T } | {
  readonly ok: false;
  readonly error: CodecError;
};

export function decoded<T>(value: T): Decoded<T> {
  return { ok: true, value };
}

export function codecError<T = never>(code: CodecErrorCode, message: string): Decoded<T> {
  return { ok: false, error: { code, message } };
}

export function fault(code: CodecErrorCode, message: string): CodecError {
  return { code, message };
}

/** Thrown by encoders when asked to produce something the protocol forbids (a caller bug). */
export class EncodeError extends RangeError {
  override name = "EncodeError";
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  return concatAll(parts);
}

/** concatBytes for a list of any length (a spread of 100k arguments overflows the stack). */
export function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Assertions on codec results (daemon/core/common/codec.ts Decoded), shared by the codec tests. */
import assert from "node:assert/strict";
import type { Decoded } from "../../daemon/core/common/codec.ts";

/** The decoded value; fails the test with the codec's own error otherwise. */
export function ok<T>(r: Decoded<T>, what = "decode"): T {
  if (!r.ok) assert.fail(`${what} failed: ${r.error.code} ${r.error.message}`);
  return r.value;
}

/** The result is the error `code` (with a message); returns the message. */
export function fails<T>(r: Decoded<T>, code: string, what: string): string {
  assert.ok(!r.ok, `${what}: expected ${code}, but it decoded`);
  assert.equal(r.error.code, code, `${what}: ${r.error.message}`);
  assert.ok(r.error.message.length > 0);
  return r.error.message;
}

/**
 * Per-client rate limits of the relay, as token buckets. c-toxcore answers and forwards every
 * OOB_SEND, PING and route change; we bound them so one flooding client cannot cost the relay
 * a decryption and a queued answer per packet for ever (why the limits sit where they do:
 * relay_server.ts, config.ts). Pure arithmetic on a bucket: what to do about a verdict
 * (count it, close the client) is the relay's.
 */

/**
 * A token bucket: `burst` packets at once, refilled at `perSecond`. Each packet past it is
 * dropped and still costs a token; a client whose bucket sinks to `closeAfter` below zero is
 * closed. So a burst is forgiven, a client a little over the rate loses the excess, and only
 * one that keeps flooding (about closeAfter / (its rate − perSecond) seconds) is closed.
 */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
  readonly closeAfter: number;
}

/** No limit at all. */
export const UNLIMITED: RateLimit = { perSecond: Infinity, burst: Infinity, closeAfter: Infinity };

export interface Bucket {
  tokens: number;
  /** When tokens was last brought up to date. */
  at: number;
}

/** Take one token: "pass", "drop" (over the rate), or "abuse" (closeAfter below zero). */
export function spend(b: Bucket, limit: RateLimit, now: number): "pass" | "drop" | "abuse" {
  const elapsed = now - b.at;
  if (elapsed > 0) {
    b.tokens = Math.min(limit.burst, b.tokens + elapsed * limit.perSecond / 1000);
    b.at = now;
  }
  b.tokens -= 1;
  if (b.tokens >= 0) return "pass";
  return b.tokens <= -limit.closeAfter ? "abuse" : "drop";
}

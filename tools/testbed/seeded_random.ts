/**
 * Deterministic randomness for tests, fixtures and benchmarks (mulberry32): the same seed,
 * the same run, so a failing case can be replayed. Never for keys that protect anything.
 */
import type { RandomBytes } from "../../daemon/core/common/crypto.ts";

/** The next 32-bit output of a mulberry32 generator seeded with `seed`, per call. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Uniform in [0, 1), like Math.random. */
export function seededUnit(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/** A RandomBytes source: one generator step per byte. */
export function seededRandom(seed: number): RandomBytes {
  const next = mulberry32(seed);
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = next() & 0xff;
    return out;
  };
}

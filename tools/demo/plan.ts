/**
 * What the demo does, as data: the chat messages, the two custom packet flows, and the bound
 * (ms) on every wait. Kept apart so the steps, the decode check and the clean-up agree on them.
 */

/** Every wait has a bound (ms). */
export const LIMIT = {
  relayListening: 20_000,
  daemonUp: 20_000,
  relayConfirmed: 15_000,
  request: 5_000,
  online: 20_000,
  message: 10_000,
  custom: 15_000,
  lossyTail: 2_000,
  offline: 5_000,
  stopGrace: 5_000,
  decode: 30_000,
} as const;

export const MESSAGES = [
  { from: "alice", to: "bob", text: "hello bob", kind: "normal" },
  { from: "bob", to: "alice", text: "hi alice! 👋", kind: "normal" },
  { from: "alice", to: "bob", text: "waves from 127.0.0.1", kind: "action" },
  { from: "bob", to: "alice", text: "the receipts are on me", kind: "normal" },
] as const;

/** Custom packet requests in flight at once. */
export const SEND_WINDOW = 32;

export const LOSSLESS = { from: "alice", to: "bob", id: 160, count: 100, size: 64 } as const;
export const LOSSY = { from: "bob", to: "alice", id: 200, count: 20, size: 48 } as const;

export type Name = "alice" | "bob";

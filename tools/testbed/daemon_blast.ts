/**
 * Bulk through the daemons as a program sees it: two daemons on one relay, made friends with
 * ctl; the program pipelines numbered `send.lossless` requests on alice's control socket
 * (resending what is refused, in order) and counts bob's `custom_packet` events, checking order.
 */
import { toHex } from "../../daemon/core/common/crypto.ts";
import { ControlClient } from "../ctl.ts";
import type { Bootstrapd } from "./harness.ts";
import { befriend, privateDir, startPair } from "./daemon_process.ts";

export interface BlastResult {
  readonly received: number;
  readonly inOrder: boolean;
  /** Requests answered with an error (and sent again). */
  readonly refused: number;
  readonly ms: number;
}

/** `count` packets of `size` bytes, at most `window` requests unanswered at once. */
export async function daemonBlast(
  relay: Bootstrapd,
  count: number,
  size: number,
  window = 256,
): Promise<BlastResult> {
  const dir = await privateDir("toxtcp-blast-");
  const pair = await startPair(dir, relay);
  const { sa, sb } = pair;
  const sub = await ControlClient.connect(sb);
  const blaster = await ControlClient.connect(sa);
  try {
    const { b: selfB } = await befriend(sa, sb, relay);
    await sub.request("subscribe");
    let received = 0;
    let inOrder = true;
    let last = performance.now();
    const counting = (async () => {
      for await (const e of sub.events()) {
        if (e.event !== "custom_packet") continue;
        if (parseInt(String(e.data).slice(2, 10), 16) !== received) inOrder = false;
        received++;
        last = performance.now();
        if (received >= count) return;
      }
    })();
    const filler = toHex(new Uint8Array(Math.max(0, size - 5)).fill(0x5a));
    const packet = (seq: number) => `a0${seq.toString(16).padStart(8, "0")}${filler}`;
    const t0 = performance.now();
    let refused = 0;
    let next = 0; // the first packet not yet accepted
    let sent = 0; // the first packet not yet requested
    const inflight = new Set<Promise<void>>();
    while (next < count) {
      while (inflight.size < window && sent < count) {
        const seq = sent++;
        const p = blaster.request("send.lossless", {
          public_key: selfB.public_key,
          data: packet(seq),
        }, { timeoutMs: 30_000 }).then((r) => {
          if (r.ok) next = Math.max(next, seq + 1);
          else if (seq < sent) {
            // Refused: it and everything after it go again. Requests after it that were already
            // on their way may have been taken (the control protocol has no epoch), so a refusal
            // can reorder or repeat packets at the receiver: `inOrder` reports it, it is not hidden.
            refused++;
            sent = Math.min(sent, seq);
          }
        }).finally(() => inflight.delete(p));
        inflight.add(p);
      }
      if (inflight.size === 0) await new Promise((r) => setTimeout(r, 5));
      else await Promise.race(inflight);
    }
    await Promise.all(inflight);
    await Promise.race([counting, new Promise((r) => setTimeout(r, 30_000))]);
    return { received, inOrder, refused, ms: last - t0 };
  } finally {
    await Promise.all([sub.close(), blaster.close()]);
    await pair[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
}

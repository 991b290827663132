/**
 * The custom packet step: one flow of numbered custom packets (lossless or lossy) from one daemon
 * to the other, pipelined through the control socket, counted and checked for order on arrival.
 * Lossless must all arrive in order; lossy is now or never, so at least one must arrive.
 */
import type { ControlClient, ControlEvent } from "../ctl.ts";
import { request, type SelfInfo } from "./control.ts";
import type { EventLog } from "./event_log.ts";
import { StepError } from "./failure.ts";
import { ms1, type Narrative, round1 } from "./output.ts";
import { LIMIT, LOSSLESS, LOSSY, type Name, SEND_WINDOW } from "./plan.ts";

const hexByte = (n: number) => n.toString(16).padStart(2, "0");

/** A custom packet: its id, a 16-bit sequence number, then filler up to `size` bytes. */
function customPacket(id: number, seq: number, size: number): string {
  let s = hexByte(id) + hexByte(seq >> 8) + hexByte(seq & 0xff);
  for (let i = 3; i < size; i++) s += hexByte((seq + i) & 0xff);
  return s;
}

function seqOf(hex: string): number {
  return parseInt(hex.slice(2, 6), 16);
}

/** Sends `flow` and waits for it to arrive; the flow's JSON summary. */
export async function customFlow(
  flow: typeof LOSSLESS | typeof LOSSY,
  lossless: boolean,
  selves: Record<Name, SelfInfo>,
  clients: Record<Name, ControlClient>,
  logs: Record<Name, EventLog>,
  narrative: Narrative,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const from = flow.from as Name;
  const to = flow.to as Name;
  const toIdx = logs[to].length;
  const cmd = lossless ? "send.lossless" : "send.lossy";
  const idHex = hexByte(flow.id);
  const matches = (e: ControlEvent) =>
    e.event === "custom_packet" && e.public_key === selves[from].public_key &&
    e.lossless === lossless && typeof e.data === "string" && e.data.startsWith(idHex);
  const start = narrative.now();
  // Pipelined, at most SEND_WINDOW requests in flight: the daemon answers (and queues) them in
  // order. A full queue (`queue_full`) cannot happen at these counts; if it does, the step fails.
  let sent = 0;
  let failed: unknown = null;
  const window: Promise<void>[] = [];
  for (let seq = 0; seq < flow.count && failed === null; seq++) {
    const params = {
      public_key: selves[to].public_key,
      data: customPacket(flow.id, seq, flow.size),
    };
    window.push(
      request<{ sent: boolean }>(clients[from], from, `${cmd} #${seq}`, signal, params, cmd)
        .then((r) => {
          if (r.sent) sent++;
        }, (e) => {
          failed ??= e;
        }),
    );
    if (window.length >= SEND_WINDOW) await window.shift();
  }
  await Promise.all(window);
  if (failed !== null) throw failed;
  const sentAt = narrative.now();
  const got = await logs[to].waitForCount(matches, lossless ? flow.count : sent, {
    from: toIdx,
    ms: lossless ? LIMIT.custom : LIMIT.lossyTail,
    what: `${to} receives ${flow.from}'s ${lossless ? "lossless" : "lossy"} packets`,
    signal,
    soft: !lossless,
  });
  const seqs = got.map((s) => seqOf(s.e.data as string));
  const inOrder = seqs.every((s, i) => i === 0 || s > seqs[i - 1]);
  const allInOrder = lossless ? seqs.every((s, i) => s === i) : inOrder;
  const doneAt = got.length > 0 ? got[got.length - 1].at : sentAt;
  const elapsed = doneAt - start;
  const kind = lossless ? "lossless" : "lossy";
  const result = {
    from,
    to,
    id: flow.id,
    size: flow.size,
    count: flow.count,
    sent,
    received: got.length,
    in_order: allInOrder,
    all_arrived: got.length === flow.count,
    ms: round1(elapsed),
    packets_per_s: elapsed > 0 ? Math.round(got.length / (elapsed / 1000)) : null,
  };
  if (lossless && !allInOrder) {
    throw new StepError(`lossless packets arrived out of order: ${seqs.slice(0, 20).join(",")}…`);
  }
  if (!lossless && got.length === 0) {
    throw new StepError(`none of ${sent} lossy packets arrived within ${LIMIT.lossyTail} ms`);
  }
  narrative.at(
    start,
    `custom ${kind}: ${flow.count} packets of ${flow.size} B, id ${flow.id}, ${from} → ${to}: ` +
      (lossless
        ? `all ${got.length} arrived in order`
        : `${sent} sent, ${got.length} arrived${inOrder ? " (in order)" : ""}`) +
      ` (${ms1(elapsed)}` +
      (result.packets_per_s !== null ? `, ${result.packets_per_s} packets/s)` : ")"),
  );
  return result;
}

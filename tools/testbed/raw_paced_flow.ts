/**
 * The anchor for the relay data lane: what a relay carries for a plain paced client that is
 * not ours. Two raw clients on one relay; one writes whole DATA frames every millisecond at a
 * rate ramped linearly from 1.5 MB/s to a target over `rampMs`, then held (the method of
 * spec/relay_load.md's addendum); the other counts arrivals. No pacing logic of ours is
 * involved, so the figure says what the relay itself can take from a smooth sender.
 */
import { RawRelayClient, writeAll } from "./raw_relay_client.ts";

export interface RawPacedOptions {
  readonly count: number;
  readonly size: number;
  /** Bytes/s reached at the end of the ramp. */
  readonly targetRate: number;
  readonly rampMs: number;
  /** A write that does not finish, or nothing arriving, for this long is a stall. */
  readonly stallMs?: number;
}

export interface RawPacedResult {
  readonly sent: number;
  readonly received: number;
  readonly stalled: boolean;
  /** Payload bytes per second from the first write to the last arrival. */
  readonly bytesPerSec: number;
}

export async function rawPacedFlow(
  relay: { port: number; publicKey: Uint8Array },
  opts: RawPacedOptions,
): Promise<RawPacedResult> {
  const stallMs = opts.stallMs ?? 3_000;
  const [a, b] = await Promise.all([
    RawRelayClient.connect(relay.port, relay.publicKey),
    RawRelayClient.connect(relay.port, relay.publicKey),
  ]);
  try {
    await Promise.all([a.ping(), b.ping()]);
    await a.send({ kind: "routing_request", publicKey: b.keys.publicKey });
    await b.send({ kind: "routing_request", publicKey: a.keys.publicKey });
    await a.until(
      () => a.inbox.some((p) => p.kind === "connection_notification"),
      5_000,
      "the peer online",
    );
    const note = a.inbox.find((p) => p.kind === "connection_notification") as {
      connectionId: number;
    };
    let received = 0;
    let last = performance.now();
    // Both answer the relay's pings, as any client must (it resets silent ones after 40 s).
    b.onPacket = (p) => {
      if (p.kind === "data") {
        received++;
        last = performance.now();
      } else if (p.kind === "ping") void b.send({ kind: "pong", pingId: p.pingId });
    };
    a.onPacket = (p) => {
      if (p.kind === "ping") void a.send({ kind: "pong", pingId: p.pingId });
    };
    const data = new Uint8Array(opts.size);
    const r0 = Math.min(1_500_000, opts.targetRate / 10);
    const ramp = opts.rampMs / 1000;
    const allowedBy = (t: number) =>
      t < ramp
        ? r0 * t + ((opts.targetRate - r0) * t * t) / (2 * ramp)
        : r0 * ramp + ((opts.targetRate - r0) * ramp) / 2 + opts.targetRate * (t - ramp);
    let sent = 0;
    let stalled = false;
    const t0 = performance.now();
    while (sent < opts.count && !stalled) {
      const due = Math.min(
        opts.count,
        Math.floor(allowedBy((performance.now() - t0) / 1000) / opts.size),
      ) - sent;
      if (due > 0) {
        const frames = Array.from(
          { length: due },
          () => a.frame({ kind: "data", connectionId: note.connectionId, data }),
        );
        const chunk = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
        let o = 0;
        for (const f of frames) {
          chunk.set(f, o);
          o += f.length;
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const done = await Promise.race([
          writeAll(a.conn, chunk).then(() => true),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(false), stallMs))),
        ]).finally(() => clearTimeout(timer));
        if (!done) stalled = true;
        else sent += due;
      }
      if (received < sent && performance.now() - last > stallMs) stalled = true;
      await new Promise((r) => setTimeout(r, 1));
    }
    const end = performance.now() + stallMs;
    while (!stalled && received < sent && performance.now() < end) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (received < sent) stalled = true;
    return {
      sent,
      received,
      stalled,
      bytesPerSec: (received * opts.size) / Math.max(0.001, (last - t0) / 1000),
    };
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

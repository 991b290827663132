/**
 * The control socket's flow control (daemon/shell/control_server.ts): a client whose queue
 * passes the high mark is "behind" (the daemon then holds friends' lossless packets), catching
 * up below the low mark ends it; a client behind for too long is told why, then dropped.
 */
import assert from "node:assert/strict";
import {
  CLIENT_QUEUE_HIGH,
  CLIENT_QUEUE_LOW,
  ControlServer,
} from "../daemon/shell/control_server.ts";
import { Logger } from "../daemon/shell/log.ts";
import { withTempDir } from "./support/temp_dir.ts";

const EVENT = JSON.stringify({ event: "custom_packet", data: "ab".repeat(1000) }) + "\n";

async function subscribed(path: string): Promise<Deno.UnixConn> {
  const conn = await Deno.connect({ transport: "unix", path });
  await conn.write(new TextEncoder().encode(`{"id":1,"cmd":"subscribe"}\n`));
  const buf = new Uint8Array(256);
  const n = await conn.read(buf);
  assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /"subscribed":true/);
  return conn;
}

/** Reads everything until the daemon closes the socket; the text read. */
async function readToEnd(conn: Deno.UnixConn): Promise<string> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(256 * 1024);
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
    parts.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(
    parts.reduce((a, b) => {
      const c = new Uint8Array(a.length + b.length);
      c.set(a);
      c.set(b, a.length);
      return c;
    }, new Uint8Array(0)),
  );
}

/**
 * A server that answers every request with ok, its log lines, the hold changes it reported
 * (`onBehind`), and one subscriber that has read nothing while events well past HIGH were
 * broadcast (the kernel's socket buffers fill first, then our queue).
 */
async function behindSubscriber(dir: string, opts: { behindMaxMs?: number } = {}) {
  const logs: string[] = [];
  const server = await ControlServer.open(
    `${dir}/s/c.sock`,
    new Logger("info", (l) => logs.push(l)),
    opts,
  );
  const seen: boolean[] = [];
  server.onBehind((b) => seen.push(b));
  server.serve(() => Promise.resolve({ ok: true, result: null }));
  const conn = await subscribed(server.path);
  for (let i = 0; i * EVENT.length < CLIENT_QUEUE_HIGH * 8; i++) server.broadcast(EVENT);
  return { server, logs, seen, conn };
}

Deno.test("control server: a subscriber that falls behind is reported, and again when it catches up", async () => {
  await withTempDir("toxtcp-ctl-", async (dir) => {
    const { server, logs, seen, conn } = await behindSubscriber(dir);
    try {
      // Nothing read: the queue passed HIGH.
      assert.deepEqual(seen, [true]);
      assert.ok(server.behind);
      assert.ok(logs.some((l) => /is behind .* holding friends' lossless packets/.test(l)));
      // Reading drains it below LOW: the hold ends, once.
      const buf = new Uint8Array(1 << 20);
      const t0 = performance.now();
      while (server.behind && performance.now() - t0 < 5_000) await conn.read(buf);
      assert.deepEqual(seen, [true, false]);
      assert.ok(CLIENT_QUEUE_LOW < CLIENT_QUEUE_HIGH);
    } finally {
      conn.close();
      await server.close();
    }
  });
});

Deno.test("control server: a subscriber behind for too long is told why, then dropped", async () => {
  await withTempDir("toxtcp-ctl-", async (dir) => {
    const { server, logs, seen, conn } = await behindSubscriber(dir, { behindMaxMs: 300 });
    try {
      assert.deepEqual(seen, [true]);
      await new Promise((r) => setTimeout(r, 700));
      // Dropping it released the hold at once, whether or not it ever reads the reason.
      assert.deepEqual(seen, [true, false]);
      assert.ok(logs.some((l) => /control client \d+ dropped: this client read none/.test(l)));
      const text = await readToEnd(conn);
      const last = JSON.parse(text.trimEnd().split("\n").at(-1)!);
      assert.equal(last.event, "dropped");
      assert.match(last.reason, /read none of its \d+ queued bytes of events for \d+ s/);
    } finally {
      conn.close();
      await server.close();
    }
  });
});

Deno.test("control server: pipelined send.lossless requests reach the handler as one batch, replies in order", async () => {
  await withTempDir("toxtcp-ctl-", async (dir) => {
    const server = await ControlServer.open(`${dir}/s/c.sock`, new Logger("error"));
    const batches: number[] = [];
    const singles: string[] = [];
    server.serve(
      (c) => {
        singles.push(c.cmd);
        return Promise.resolve({ ok: true, result: { single: c.cmd } });
      },
      (cs) => {
        batches.push(cs.length);
        // The first three go, the rest are refused: a prefix, as the coordinator takes them.
        return Promise.resolve(
          cs.map((_, i) =>
            i < 3
              ? { ok: true as const, result: { sent: true } }
              : { ok: false as const, error: { code: "failed" as const, message: "window full" } }
          ),
        );
      },
    );
    const conn = await Deno.connect({ transport: "unix", path: server.path });
    try {
      const key = "ab".repeat(32);
      const lossless = (id: number) =>
        `{"id":${id},"cmd":"send.lossless","public_key":"${key}","data":"a0${
          id.toString(16).padStart(2, "0")
        }"}`;
      const lines = [
        `{"id":1,"cmd":"status"}`,
        ...[2, 3, 4, 5, 6].map(lossless),
        `{"id":7,"cmd":"relays"}`,
        ...[8, 9].map(lossless),
      ];
      await conn.write(new TextEncoder().encode(lines.join("\n") + "\n"));
      let text = "";
      const buf = new Uint8Array(64 * 1024);
      while (text.split("\n").length <= lines.length) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      const replies = text.trimEnd().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(replies.map((r) => r.id), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.deepEqual(replies.map((r) => r.ok), [
        true,
        true,
        true,
        true,
        false,
        false,
        true,
        true,
        true,
      ]);
      assert.deepEqual(batches, [5, 2]);
      assert.deepEqual(singles, ["status", "relays"]);
    } finally {
      conn.close();
      await server.close();
    }
  });
});

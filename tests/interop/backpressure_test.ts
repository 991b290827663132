/**
 * Lossless stays lossless up to the program: a program subscribed to the daemon's events that
 * stops reading for a while must slow its friend down, never lose what the friend sent. Two
 * daemons on one tox-bootstrapd; alice blasts numbered custom lossless packets at bob while
 * bob's subscriber does not read its socket; then it reads, and every packet is there, once,
 * in order. Bob's log shows the hold; no client was dropped.
 */
import assert from "node:assert/strict";
import { ControlClient } from "../../tools/ctl.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import { befriend, privateDir, startPair } from "../../tools/testbed/daemon_process.ts";

/** More than alice may have unacknowledged (8192) plus what bob's window holds: she must wait. */
const COUNT = 10_000;
const SIZE = 1_000;

/** A 1000-byte custom lossless packet (id 0xa0) carrying its number. */
function packetHex(seq: number): string {
  const p = new Uint8Array(SIZE).fill(seq & 0xff);
  p[0] = 0xa0;
  new DataView(p.buffer).setUint32(1, seq);
  return Array.from(p, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A subscriber on a raw socket, so the test decides when its bytes are read. */
class PausableSubscriber {
  readonly #conn: Deno.UnixConn;
  #buffered = "";
  readonly #decoder = new TextDecoder();

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  static async subscribe(path: string): Promise<PausableSubscriber> {
    const s = new PausableSubscriber(await Deno.connect({ transport: "unix", path }));
    await s.#conn.write(new TextEncoder().encode(`{"id":1,"cmd":"subscribe"}\n`));
    const reply = await s.nextLine(5_000);
    assert.match(reply, /"ok":true/);
    return s;
  }

  /** The next line, reading the socket only now. */
  async nextLine(ms: number): Promise<string> {
    const end = performance.now() + ms;
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const nl = this.#buffered.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffered.slice(0, nl);
        this.#buffered = this.#buffered.slice(nl + 1);
        return line;
      }
      const left = end - performance.now();
      if (left <= 0) throw new Error(`no line within ${ms} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.#conn.read(buf),
        new Promise<"late">((r) => (timer = setTimeout(() => r("late"), left))),
      ]).finally(() => clearTimeout(timer));
      if (n === "late") throw new Error(`no line within ${ms} ms`);
      if (n === null) throw new Error("the daemon closed the subscriber");
      this.#buffered += this.#decoder.decode(buf.subarray(0, n), { stream: true });
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

interopTest(
  "backpressure: a subscriber that stops reading slows the friend down; it loses nothing",
  ["tox-bootstrapd"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await privateDir();
    try {
      await using pair = await startPair(dir, relay);
      const { sa, sb, b } = pair;
      const blaster = await ControlClient.connect(sa);
      let sub: PausableSubscriber | null = null;
      try {
        const { b: selfB } = await befriend(sa, sb, relay);
        sub = await PausableSubscriber.subscribe(sb);
        // Alice sends everything, retrying what her side refuses while bob holds (her window to
        // bob closes: that refusal is the backpressure). Bob's subscriber reads nothing yet.
        let refusals = 0;
        const blast = (async () => {
          for (let seq = 0; seq < COUNT;) {
            const r = await blaster.request("send.lossless", {
              public_key: selfB.public_key,
              data: packetHex(seq),
            }, { timeoutMs: 10_000 });
            if (r.ok) seq++;
            else {
              refusals++;
              await new Promise((res) => setTimeout(res, 20));
            }
          }
        })();
        // Until alice is refused (her window to bob is full), bob's subscriber reads nothing.
        const until = performance.now() + 40_000;
        while (refusals === 0 && performance.now() < until) {
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(refusals > 0, "alice's sends were held back while bob's program was behind");
        assert.match(b.log, /is behind .* holding friends' lossless packets/);

        // Now it reads: every packet, once, in order.
        let next = 0;
        while (next < COUNT) {
          const line = await sub.nextLine(30_000);
          const e = JSON.parse(line);
          assert.notEqual(e.event, "dropped", `dropped: ${e.reason}`);
          if (e.event !== "custom_packet") continue;
          const seq = parseInt(e.data.slice(2, 10), 16);
          assert.equal(seq, next, `packet ${seq} arrived where ${next} was due`);
          next++;
        }
        await blast;
        assert.match(b.log, /caught up/);
        assert.doesNotMatch(b.log, /dropped/);
      } finally {
        sub?.close();
        await blaster.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

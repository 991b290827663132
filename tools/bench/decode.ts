/**
 * `deno task bench` decode section: `deno task decode` on a capture of 100,000+ packets
 * (tools/testbed/capture_fixture.ts: two clients chatting through a relay, as the daemon records
 * it), without keys and with the key log, beside `tshark -r` on the same file in the same
 * run, and beside the crypto ceiling (noble's xsalsa20poly1305 opens per second at the same
 * sizes, one core): a keyed message costs two opens (relay frame, net_crypto packet).
 *
 * Both tools run as processes from start to exit, output to /dev/null; the in-process rate
 * of the decode pipeline alone (no printing) is shown too.
 */
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { buildCaptureFixture } from "../testbed/capture_fixture.ts";
import { KeyStore, parseKeylog } from "../../daemon/core/capture/keylog.ts";
import { CaptureReader } from "../../daemon/core/capture/pcap_reader.ts";
import { DecodePipeline } from "../../daemon/core/capture/pipeline.ts";

type Row = Record<string, string | number>;

const ROOT = new URL("../../", import.meta.url).pathname;

/** Opens per second of `size`-byte boxes, one core. */
function openCeiling(size: number, ms = 1_000): number {
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(24);
  const box = xsalsa20poly1305(key, nonce).encrypt(new Uint8Array(size));
  const run = (budget: number) => {
    let n = 0;
    const t = performance.now();
    while (performance.now() - t < budget) {
      for (let i = 0; i < 100; i++) xsalsa20poly1305(key, nonce).decrypt(box);
      n += 100;
    }
    return n;
  };
  run(200);
  const t0 = performance.now();
  const n = run(ms);
  return n / ((performance.now() - t0) / 1000);
}

async function timeProcess(cmd: string, args: string[]): Promise<{ ms: number; code: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { ms: performance.now() - t0, code: out.code };
}

function inProcessRate(file: Uint8Array, keylog: string | null): { pps: number; records: number } {
  const keys = new KeyStore();
  if (keylog !== null) keys.addAll(parseKeylog(keylog).entries);
  const t0 = performance.now();
  const reader = new CaptureReader();
  const pipeline = new DecodePipeline({ keys });
  let records = 0;
  const CHUNK = 1 << 20;
  for (let off = 0; off < file.length; off += CHUNK) {
    reader.push(file.subarray(off, off + CHUNK));
    if (off + CHUNK >= file.length) reader.end();
    for (let r = reader.next(); r !== null; r = reader.next()) {
      if (r.kind === "packet") pipeline.packet(r.packet);
      else if (r.kind === "secrets") pipeline.secrets(r.secrets);
    }
    records += pipeline.take().length;
  }
  pipeline.finish();
  records += pipeline.take().length;
  const s = (performance.now() - t0) / 1000;
  return { pps: pipeline.totals().packets / s, records };
}

async function tsharkAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("tshark", { args: ["-v"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

export async function benchDecode(quick: boolean): Promise<{ rows: Row[]; summary: Row }> {
  const messages = quick ? 10_000 : 50_000;
  const dir = await Deno.makeTempDir({ prefix: "toxtcp-bench-decode-" });
  const rows: Row[] = [];
  const summary: Row = {};
  const haveTshark = await tsharkAvailable();
  try {
    for (const [label, padding] of [["small", 0], ["1 KB", 1000]] as const) {
      const fx = buildCaptureFixture({ messages, padding, seed: 3 });
      const cap = `${dir}/${padding}.pcapng`;
      const log = `${dir}/${padding}.log`;
      await Deno.writeFile(cap, fx.pcapng);
      await Deno.writeTextFile(log, fx.keylog);
      const mb = fx.pcapng.length / 1e6;
      const decodeArgs = ["run", "--no-check", "--allow-read", `${ROOT}tools/decode.ts`, cap];
      const plain = await timeProcess(Deno.execPath(), [...decodeArgs, "--no-progress"]);
      const keyed = await timeProcess(Deno.execPath(), [
        ...decodeArgs,
        "--no-progress",
        "--keylog",
        log,
      ]);
      const tshark = haveTshark ? await timeProcess("tshark", ["-r", cap]) : null;
      const inPlain = inProcessRate(fx.pcapng, null);
      const inKeyed = inProcessRate(fx.pcapng, fx.keylog);
      // Message frames are most of the file: size of a relay frame's box and of its packet.
      const frameBytes = padding + 60;
      const ceilingOpens = openCeiling(frameBytes);
      const ceilingPps = ceilingOpens / 2;
      const pps = (ms: number) => Math.round(fx.packets / (ms / 1000));
      const row: Row = {
        capture: label,
        packets: fx.packets,
        MB: Number(mb.toFixed(1)),
        "decode pkt/s": pps(plain.ms),
        "decode MB/s": Number((mb / (plain.ms / 1000)).toFixed(1)),
        "keyed pkt/s": pps(keyed.ms),
        "keyed MB/s": Number((mb / (keyed.ms / 1000)).toFixed(1)),
        "tshark pkt/s": tshark ? pps(tshark.ms) : "n/a",
        "decode/tshark": tshark ? Number((tshark.ms / plain.ms).toFixed(1)) : "n/a",
        "pipeline pkt/s": Math.round(inPlain.pps),
        "pipeline keyed pkt/s": Math.round(inKeyed.pps),
        "ceiling pkt/s (2 opens)": Math.round(ceilingPps),
        "keyed/ceiling": Number((inKeyed.pps / ceilingPps).toFixed(2)),
      };
      if (plain.code !== 0 || keyed.code !== 0 || (tshark && tshark.code !== 0)) {
        row.error = `exit codes decode ${plain.code}, keyed ${keyed.code}, tshark ${tshark?.code}`;
      }
      rows.push(row);
      summary[`${label}: decode ÷ tshark (×, higher is faster)`] = row["decode/tshark"];
      summary[`${label}: keyed ÷ crypto ceiling (target ≥ 0.5)`] = row["keyed/ceiling"];
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return { rows, summary };
}

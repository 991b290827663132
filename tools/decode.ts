/**
 * `deno task decode FILE`: every Tox layer of a capture (pcap or pcapng, the daemon's own or
 * tcpdump's), decrypted as far as the key logs allow. The work is done by the sans-I/O
 * pipeline (daemon/core/capture/pipeline.ts); this file reads files, writes lines, draws the
 * progress bar and turns problems into exit codes.
 */
import { parseArgs } from "node:util";
import { KeyStore, parseKeylog } from "../daemon/core/capture/keylog.ts";
import { readCaptureFile } from "../daemon/shell/capture_file.ts";
import { DecodePipeline } from "../daemon/core/capture/pipeline.ts";
import { FilterError, parseFilter, type RecordFilter } from "../daemon/core/capture/filter.ts";
import {
  formatNoticeLine,
  formatRecordDetail,
  formatRecordLine,
  noticeJson,
  recordJson,
} from "../daemon/core/capture/format.ts";
import { CaptureStats } from "../daemon/core/capture/stats.ts";
import { secondsBetween, type Timestamp } from "../daemon/core/capture/types.ts";
import type { ToxOutput } from "../daemon/core/capture/tox_records.ts";

export const USAGE = `usage: deno task decode FILE [options]

  --keylog FILE     a key log written by the daemon's --keylog (repeatable); keys inside a
                    pcapng (Decryption Secrets Blocks) are used too
  --filter EXPR     only what matches, e.g. "type=message", "stream=0 dir=s2c",
                    "peer=3f1c time=2..5", "type=ping|pong" (see tools/README.md: decode)
  --json            one JSON object per line instead of text
  --stats           a summary: streams, packets and bytes per type, ping RTTs, routing events,
                    handshake and first-data times (with --json: one JSON object)
  --follow N        stream N only, every layer and field of every packet
  --relay-port P    also treat TCP port P as a relay port (repeatable; 33445, 443 and 3389
                    are, and streams are recognised by the handshake's shape anyway)
  --no-progress     no progress bar on stderr
  --help            this text

exit: 0 decoded; 1 error (file unreadable, bad arguments to a file); 2 the capture is damaged
(truncated or corrupt: everything before the damage was printed); 64 usage`;

export const EXIT = { ok: 0, error: 1, damaged: 2, usage: 64 } as const;

export interface DecodeIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is a terminal (the progress bar). */
  stderrIsTty?: boolean;
}

class UsageError extends Error {}

interface Options {
  file: string;
  keylogs: string[];
  filter: RecordFilter | null;
  json: boolean;
  stats: boolean;
  follow: number | null;
  relayPorts: number[];
  progress: boolean;
}

function parseOptions(args: string[]): Options | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        keylog: { type: "string", multiple: true },
        filter: { type: "string" },
        json: { type: "boolean" },
        stats: { type: "boolean" },
        follow: { type: "string" },
        "relay-port": { type: "string", multiple: true },
        "no-progress": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (parsed.positionals.length !== 1) {
    throw new UsageError(
      parsed.positionals.length === 0 ? "no capture file given" : "one capture file at a time",
    );
  }
  const num = (s: string, what: string, max: number): number => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n > max) throw new UsageError(`${what}: "${s}" is not 0..${max}`);
    return n;
  };
  let filter: RecordFilter | null = null;
  try {
    filter = v.filter === undefined ? null : parseFilter(v.filter);
  } catch (e) {
    if (e instanceof FilterError) throw new UsageError(`--filter: ${e.message}`);
    throw e;
  }
  const follow = v.follow === undefined ? null : num(v.follow, "--follow", 2 ** 31);
  if (follow !== null && v.stats) throw new UsageError("--follow and --stats do not mix");
  return {
    file: parsed.positionals[0],
    keylogs: v.keylog ?? [],
    filter,
    json: v.json === true,
    stats: v.stats === true,
    follow,
    relayPorts: (v["relay-port"] ?? []).map((p) => num(p, "--relay-port", 65535)),
    progress: v["no-progress"] !== true,
  };
}

/** Lines go out in chunks: one write per line would dominate the run time. */
class Out {
  #buf: string[] = [];
  #size = 0;
  constructor(readonly write: (s: string) => void) {}
  line(s: string): void {
    this.#buf.push(s);
    this.#size += s.length + 1;
    if (this.#size > 64 * 1024) this.flush();
  }
  flush(): void {
    if (this.#buf.length === 0) return;
    const text = this.#buf.join("\n") + "\n";
    this.#buf = [];
    this.#size = 0;
    this.write(text);
  }
}

class Progress {
  #last = 0;
  #shown = false;
  constructor(readonly io: DecodeIo, readonly enabled: boolean) {}
  update(read: number, total: number, packets: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.#last < 200) return;
    this.#last = now;
    this.#shown = true;
    const pct = total > 0 ? Math.floor((read / total) * 100) : 0;
    const width = 30;
    const fill = Math.round((pct / 100) * width);
    this.io.stderr(
      `\r[${"#".repeat(fill)}${" ".repeat(width - fill)}] ${pct}% ` +
        `${(read / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB ${packets} packets`,
    );
  }
  clear(): void {
    if (this.#shown) this.io.stderr("\r\x1b[K");
    this.#shown = false;
  }
}

/** Worth a progress bar: a file that takes more than a moment. */
const PROGRESS_MIN_BYTES = 16 * 1024 * 1024;

export async function main(args: string[], io: DecodeIo = processIo()): Promise<number> {
  let opts: Options | "help";
  try {
    opts = parseOptions(args);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`decode: ${e.message}\n\n${USAGE}\n`);
      return EXIT.usage;
    }
    throw e;
  }
  if (opts === "help") {
    io.stdout(USAGE + "\n");
    return EXIT.ok;
  }

  const keys = new KeyStore();
  for (const path of opts.keylogs) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      io.stderr(`decode: cannot read key log ${path}: ${(e as Error).message}\n`);
      return EXIT.error;
    }
    const parsed = parseKeylog(text);
    keys.addAll(parsed.entries);
    for (const p of parsed.problems.slice(0, 10)) {
      io.stderr(`decode: ${path}:${p.line}: ${p.message} (line skipped)\n`);
    }
    if (parsed.problems.length > 10) {
      io.stderr(`decode: ${path}: ${parsed.problems.length - 10} more bad lines skipped\n`);
    }
  }

  let size = 0;
  let format = "?";
  try {
    size = (await Deno.stat(opts.file)).size;
    format = await formatOf(opts.file);
  } catch (e) {
    io.stderr(`decode: cannot read ${opts.file}: ${(e as Error).message}\n`);
    return EXIT.error;
  }

  const pipeline = new DecodePipeline({ keys, relayPorts: opts.relayPorts });
  const filter = opts.follow !== null ? parseFilter(`stream=${opts.follow}`) : opts.filter;
  const stats = opts.stats ? new CaptureStats() : null;
  const out = new Out(io.stdout);
  const progress = new Progress(
    io,
    opts.progress && io.stderrIsTty === true && size >= PROGRESS_MIN_BYTES,
  );
  let start: Timestamp | null = null;
  let damaged: string | null = null;
  let secretsSeen = 0;

  const emit = (outputs: readonly ToxOutput[]) => {
    for (const o of outputs) {
      start ??= pipeline.firstTimestamp;
      const s0 = start!;
      if (o.kind === "record") {
        const r = o.record;
        const info = pipeline.stream(r.stream)!;
        const rel = secondsBetween(s0, r.ts);
        if (filter !== null && !filter.record(r, rel, pipeline.sessionKeysOf(r))) continue;
        if (stats !== null) stats.record(r, info, s0);
        else if (opts.follow !== null) out.line(formatRecordDetail(r, info, s0));
        else if (opts.json) out.line(JSON.stringify(recordJson(r, info, s0)));
        else out.line(formatRecordLine(r, info, s0));
      } else {
        const n = o.notice;
        if (filter !== null && !filter.notice(n, secondsBetween(s0, n.ts))) continue;
        if (stats !== null) stats.notice(n, pipeline.stream(n.stream));
        else if (opts.json) out.line(JSON.stringify(noticeJson(n, s0)));
        else out.line(formatNoticeLine(n, s0));
      }
    }
  };

  if (opts.follow !== null && !opts.json) out.line(`follow: stream ${opts.follow}`);
  try {
    for await (
      const rec of readCaptureFile(opts.file, {
        onProgress: (read, total) => progress.update(read, total, pipeline.totals().packets),
      })
    ) {
      if (rec.kind === "packet") pipeline.packet(rec.packet);
      else if (rec.kind === "secrets") {
        secretsSeen++;
        pipeline.secrets(rec.secrets);
      } else {
        damaged = `${rec.code} at byte ${rec.fileOffset}: ${rec.message}`;
        break;
      }
      emit(pipeline.take());
    }
  } catch (e) {
    progress.clear();
    out.flush();
    io.stderr(`decode: reading ${opts.file}: ${(e as Error).message}\n`);
    return EXIT.error;
  }
  pipeline.finish();
  emit(pipeline.take());
  progress.clear();

  const totals = { ...pipeline.totals(), file: opts.file, format, damaged };
  if (stats !== null) {
    out.line(opts.json ? JSON.stringify(stats.toJson(totals)) : stats.toText(totals));
  }
  out.flush();
  for (const w of pipeline.keyProblems()) io.stderr(`decode: secrets in capture: ${w}\n`);
  if (totals.packets === 0 && damaged === null) io.stderr(`decode: ${opts.file}: no packets\n`);
  if (keys.size === 0 && secretsSeen === 0 && pipeline.toxStreams > 0 && !opts.json) {
    io.stderr("decode: no key log given: frames are shown encrypted (see --keylog)\n");
  }
  if (damaged !== null) {
    io.stderr(`decode: ${opts.file} is damaged: ${damaged}; everything before it was decoded\n`);
    return EXIT.damaged;
  }
  return EXIT.ok;
}

/** The file's format by its magic number, for the stats header. */
async function formatOf(path: string): Promise<string> {
  const f = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(8);
    const n = (await f.read(head)) ?? 0;
    const magic = n >= 4 ? new DataView(head.buffer).getUint32(0, false) : 0;
    if (magic === 0x0a0d0d0a) return "pcapng";
    if (magic === 0xa1b2c3d4 || magic === 0xd4c3b2a1) return "pcap (µs)";
    if (magic === 0xa1b23c4d || magic === 0x4d3cb2a1) return "pcap (ns)";
    return "unknown";
  } finally {
    f.close();
  }
}

function processIo(): DecodeIo {
  const encoder = new TextEncoder();
  const writer = (file: { writeSync(p: Uint8Array): number }) => (s: string) => {
    let bytes = encoder.encode(s);
    while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
  };
  return {
    stdout: writer(Deno.stdout),
    stderr: writer(Deno.stderr),
    stderrIsTty: Deno.stderr.isTerminal(),
  };
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    // A reader that went away (decode … | head) is not an error.
    if (e instanceof Deno.errors.BrokenPipe) Deno.exit(EXIT.ok);
    throw e;
  }
}

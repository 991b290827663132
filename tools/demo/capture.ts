/**
 * The last step: alice's capture decoded with her key log by tools/decode.ts (in this process),
 * summed up in a few narrative lines plus a handful of decoded lines that tell the story, and
 * checked: every chat message's text must be visible in the decrypted capture.
 */
import { main as decodeMain } from "../decode.ts";
import { StepError, within } from "./failure.ts";
import { ms1, type Narrative, round1 } from "./output.ts";
import { LIMIT, MESSAGES } from "./plan.ts";

/** Decodes `capture` (stats, then every line); the capture's JSON summary. */
export async function decodeCapture(
  capture: string,
  keylog: string,
  relayEndpoint: string,
  narrative: Narrative,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const run = async (args: string[]) => {
    let out = "";
    let err = "";
    const code = await within(
      decodeMain([capture, "--keylog", keylog, ...args], {
        stdout: (s) => (out += s),
        stderr: (s) => (err += s),
      }),
      LIMIT.decode,
      "decode",
      signal,
    );
    if (code !== 0) throw new StepError(`decode ${args.join(" ")}: exit ${code}: ${err.trim()}`);
    return out;
  };
  const started = narrative.now();
  const stats = JSON.parse(await run(["--stats", "--json"])) as {
    capture: { packets: number; bytes: number; duration_s: number; tox_streams: number };
    streams: { stream: number; keyed: boolean; handshake_ms: number | null }[];
    types: { type: string; from: string; packets: number }[];
    sessions: { data_packets: number; decrypted: number; handshake_ms: number | null }[];
  };
  const lines = (await run([])).split("\n").filter((l) => l !== "");
  const decodeMs = narrative.now() - started;
  const size = (await Deno.stat(capture)).size;
  const keylogLines = (await Deno.readTextFile(keylog)).split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#")).length;

  const visible = MESSAGES.filter((m) =>
    lines.some((l) => /\b(MESSAGE|ACTION)\b/.test(l) && l.includes(JSON.stringify(m.text)))
  ).map((m) => m.text);
  const keyed = stats.streams.filter((s) => s.keyed).length;
  const dataPackets = stats.sessions.reduce((a, s) => a + s.data_packets, 0);
  const decrypted = stats.sessions.reduce((a, s) => a + s.decrypted, 0);
  const c = stats.capture;
  narrative.at(
    started,
    `capture: ${c.packets} packets (${size} bytes) in ${capture}, decoded with the key log` +
      ` (${keylogLines} lines) in ${ms1(decodeMs)}:`,
  );
  narrative.line(
    `           ${c.tox_streams} relay stream${c.tox_streams === 1 ? "" : "s"} (${keyed} keyed),` +
      ` ${stats.sessions.length} net_crypto session${stats.sessions.length === 1 ? "" : "s"},` +
      ` ${decrypted} of ${dataPackets} data packets decrypted, ${visible.length} of ${MESSAGES.length}` +
      " message texts visible",
  );
  const byType = new Map<string, number>();
  for (const t of stats.types) byType.set(t.type, (byType.get(t.type) ?? 0) + t.packets);
  const top = [...byType].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([t, n]) => `${t} ×${n}`);
  if (top.length > 0) narrative.line(`           most frequent: ${top.join(", ")}`);
  const shown = pickLines(lines).map((l) => compact(l, relayEndpoint));
  for (const l of shown) narrative.line(`    ${l}`);

  if (visible.length !== MESSAGES.length) {
    const missing = MESSAGES.map((m) => m.text).filter((t) => !visible.includes(t));
    throw new StepError(`the decoded capture does not show ${JSON.stringify(missing)}`);
  }
  return {
    file: capture,
    keylog,
    bytes: size,
    packets: c.packets,
    duration_s: c.duration_s,
    tox_streams: c.tox_streams,
    keyed_streams: keyed,
    sessions: stats.sessions.length,
    data_packets: dataPackets,
    decrypted,
    keylog_lines: keylogLines,
    messages_visible: visible,
    decode_ms: round1(decodeMs),
    lines: shown,
  };
}

/**
 * A few decoded lines that tell the story: alice's relay handshake, the route to bob, the
 * net_crypto cookie and handshakes, both ONLINEs, every chat message (receipts have no packet
 * of their own: they follow `buffer_start`), the first custom packets, bob's KILL, the close.
 */
function pickLines(lines: string[]): string[] {
  const out: string[] = [];
  const seen = new Map<string, number>();
  const want: [RegExp, number][] = [
    [/TOX-HS .*Handshake request/, 1],
    [/TOX-HS .*Handshake response/, 1],
    [/ROUTING_RESPONSE/, 1],
    [/CONNECTION_NOTIFICATION/, 1],
    [/COOKIE_REQUEST/, 1],
    [/NET-CRYPTO .*HANDSHAKE/, 2],
    [/\bONLINE\b/, 2],
    [/\b(MESSAGE|ACTION) "/, MESSAGES.length],
    [/\bCUSTOM_LOSSLESS\b/, 2],
    [/\bCUSTOM_LOSSY\b/, 1],
    [/\bKILL\b/, 1],
    [/\*\* .*closed/, 1],
  ];
  for (const l of lines) {
    const i = want.findIndex(([re]) => re.test(l));
    if (i < 0) continue;
    const n = seen.get(String(i)) ?? 0;
    if (n >= want[i][1]) continue;
    seen.set(String(i), n + 1);
    out.push(l);
  }
  return out;
}

/**
 * A decoded line for the narrative: single spaces, long hex cut short, and the endpoints named
 * (the capture is alice's: the relay's address is "relay", her side of each stream "alice").
 */
function compact(line: string, relayEndpoint: string): string {
  const endpoint = /(\S+:\d+) → (\S+:\d+)/;
  const name = (e: string) => (e === relayEndpoint ? "relay" : "alice");
  return line.replace(/\s+/g, " ").trim()
    .replace(endpoint, (_, a: string, b: string) => `${name(a)} → ${name(b)}`)
    .replace(/\b([0-9a-f]{16})[0-9a-f]{8,}\b/g, "$1…");
}

/**
 * deno task probe --relay HOST:PORT:PUBKEY [--relay ...] [--nodes nodes.json]
 *                 [--proxy socks5://h:p|http://h:p] [--json] [--timeout S]
 *
 * Connects to each relay in its own relay Worker, does the handshake, pings, and prints per
 * relay: ok, handshake time, ping RTT, or the error. Exit code 0 only if every relay answered.
 */
import { parseArgs } from "node:util";
import { newKeyPair } from "../daemon/core/common/crypto.ts";
import {
  formatRelayAddress,
  parseNodesJson,
  parseRelaySpec,
  type RelayAddress,
} from "../daemon/core/common/relay_address.ts";
import { parseProxyUrl, type ProxyConfig } from "../daemon/core/relay_client/proxy.ts";
import { RelayWorkerHandle } from "../workers/relay_handle.ts";

export interface ProbeResult {
  relay: string;
  pk: string;
  ok: boolean;
  handshake_ms: number | null;
  rtt_ms: number | null;
  error: string | null;
}

const USAGE = `usage: deno task probe --relay HOST:PORT:PUBKEY [--relay ...] [--nodes FILE]
                       [--proxy socks5://HOST:PORT|http://HOST:PORT] [--json] [--timeout S]`;

const round = (x: number) => Math.round(x * 10) / 10;

/** Probe one relay: handshake, then the first PING's round trip, within `timeoutMs`. */
export function probeRelay(
  relay: RelayAddress,
  opts: { proxy?: ProxyConfig; timeoutMs: number },
): Promise<ProbeResult> {
  const result: ProbeResult = {
    relay: formatRelayAddress(relay),
    pk: relay.publicKey,
    ok: false,
    handshake_ms: null,
    rtt_ms: null,
    error: null,
  };
  return new Promise((resolve) => {
    let settled = false;
    const finish = (error: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      result.ok = error === null;
      result.error = error;
      handle.close().then(() => resolve(result));
    };
    const handle = new RelayWorkerHandle(
      { relay, self: newKeyPair(), proxy: opts.proxy, reconnectOnStall: false },
      (events) => {
        for (const e of events) {
          if (e.type === "confirmed") result.handshake_ms = round(e.handshakeMs);
          else if (e.type === "pong") {
            result.rtt_ms = round(e.rttMs);
            finish(null);
          } else if (e.type === "closed") finish(`${e.reason}: ${e.message}`);
          else if (e.type === "bad_command" || e.type === "crashed") finish(e.message);
        }
      },
    );
    const timer = setTimeout(
      () =>
        finish(
          result.handshake_ms === null
            ? `timeout: no handshake within ${opts.timeoutMs} ms`
            : `timeout: no PONG within ${opts.timeoutMs} ms`,
        ),
      opts.timeoutMs,
    );
  });
}

/** Run up to `limit` probes at a time, results in input order. */
async function probeAll(
  relays: RelayAddress[],
  opts: { proxy?: ProxyConfig; timeoutMs: number },
  limit = 16,
): Promise<ProbeResult[]> {
  const results: ProbeResult[] = new Array(relays.length);
  let next = 0;
  const lane = async () => {
    while (next < relays.length) {
      const i = next++;
      results[i] = await probeRelay(relays[i], opts);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, relays.length) }, lane));
  return results;
}

function table(results: ProbeResult[]): string {
  const rows = [["relay", "public key", "result", "handshake", "rtt", "error"]];
  for (const r of results) {
    rows.push([
      r.relay,
      r.pk.slice(0, 16) + "…",
      r.ok ? "ok" : "FAIL",
      r.handshake_ms === null ? "-" : `${r.handshake_ms} ms`,
      r.rtt_ms === null ? "-" : `${r.rtt_ms} ms`,
      r.error ?? "",
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd())
    .join("\n");
}

export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        relay: { type: "string", multiple: true },
        nodes: { type: "string" },
        proxy: { type: "string" },
        json: { type: "boolean" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`probe: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let relays: RelayAddress[];
  let proxy: ProxyConfig | undefined;
  let timeoutMs: number;
  try {
    relays = (values.relay ?? []).map(parseRelaySpec);
    if (values.nodes) relays.push(...parseNodesJson(await Deno.readTextFile(values.nodes)));
    if (values.proxy) proxy = parseProxyUrl(values.proxy);
    const t = values.timeout === undefined ? 10 : Number(values.timeout);
    if (!Number.isFinite(t) || t <= 0 || t > 600) {
      throw new TypeError(`--timeout ${values.timeout}: seconds in (0, 600]`);
    }
    timeoutMs = t * 1000;
  } catch (e) {
    console.error(`probe: ${(e as Error).message}`);
    return 2;
  }
  if (relays.length === 0) {
    console.error(`probe: no relays given\n${USAGE}`);
    return 2;
  }
  const results = await probeAll(relays, { proxy, timeoutMs });
  if (values.json) { for (const r of results) console.log(JSON.stringify(r)); }
  else console.log(table(results));
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

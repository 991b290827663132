/**
 * `deno task relay`: our TCP relay as a program. Prints one JSON line on stdout once it
 * listens, `{"event":"listening","host":…,"port":…,"public_key":…}`, and `{"event":"stopped",…}`
 * after SIGINT/SIGTERM; logs go to stderr.
 *
 * The relay's key pair lives in `--keys FILE` (JSON {"public_key","secret_key"}, 0600,
 * created on first run) so clients can keep trusting the same key; without it a new key is
 * made for this run only.
 */
import { parseArgs } from "node:util";
import { fromHex, type KeyPair, newKeyPair, publicKeyOf, toHex } from "../core/common/crypto.ts";
import { LOG_LEVELS, Logger, type LogLevel } from "./log.ts";
import { startRoutingRelay } from "./relay_host.ts";
import { writeNewPrivateFile } from "./private_file.ts";

export const USAGE = `usage: deno task relay [options]

  --host ADDR        listen address (default 127.0.0.1; 0.0.0.0 or :: for every interface)
  --port N           TCP port (default 33445; 0 = any free port, printed at start)
  --keys FILE        the relay's key pair (JSON, mode 0600), created on first run; without it
                     a new key for this run only
  --max-conns N      client connections at most (default 4096); more are closed at accept
  --log-level LEVEL  error | warn | info | debug (default info)
  --help             this text`;

export class RelayStartError extends Error {
  override name = "RelayStartError";
}

export interface RelayOptions {
  readonly host: string;
  readonly port: number;
  readonly keysFile: string | null;
  readonly maxConnections: number;
  readonly logLevel: LogLevel;
}

export function parseRelayFlags(args: string[]): RelayOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        keys: { type: "string" },
        "max-conns": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new RelayStartError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const int = (s: string | undefined, what: string, dflt: number, min: number, max: number) => {
    if (s === undefined) return dflt;
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < min || n > max) {
      throw new RelayStartError(`${what}: "${s}" is not a number in ${min}..${max}`);
    }
    return n;
  };
  const level = v["log-level"] ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new RelayStartError(`--log-level: one of ${LOG_LEVELS.join(", ")}`);
  }
  return {
    host: v.host ?? "127.0.0.1",
    port: int(v.port, "--port", 33445, 0, 65535),
    keysFile: v.keys ?? null,
    maxConnections: int(v["max-conns"], "--max-conns", 4096, 1, 1_000_000),
    logLevel: level as LogLevel,
  };
}

/** The key file's pair; a missing file is created (0600). A damaged one is never replaced. */
export async function loadRelayKeys(path: string): Promise<{ keys: KeyPair; created: boolean }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new RelayStartError(`cannot read ${path}: ${(e as Error).message}`);
    }
    const keys = newKeyPair();
    const doc = { public_key: toHex(keys.publicKey), secret_key: toHex(keys.secretKey) };
    try {
      await writeNewPrivateFile(path, new TextEncoder().encode(JSON.stringify(doc) + "\n"));
    } catch (e2) {
      throw new RelayStartError(`cannot create ${path}: ${(e2 as Error).message}`);
    }
    return { keys, created: true };
  }
  try {
    const doc = JSON.parse(text) as { public_key?: unknown; secret_key?: unknown };
    if (typeof doc.secret_key !== "string") throw new Error('no "secret_key"');
    const secretKey = fromHex(doc.secret_key, 32);
    const publicKey = publicKeyOf(secretKey);
    if (typeof doc.public_key === "string" && doc.public_key.toLowerCase() !== toHex(publicKey)) {
      throw new Error('"public_key" does not belong to "secret_key"');
    }
    return { keys: { publicKey, secretKey }, created: false };
  } catch (e) {
    throw new RelayStartError(`${path} is damaged (${(e as Error).message}); it was left as is`);
  }
}

async function main(args: string[]): Promise<number> {
  let opts: RelayOptions | "help";
  try {
    opts = parseRelayFlags(args);
  } catch (e) {
    console.error(`relay: ${(e as Error).message}\n\n${USAGE}`);
    return 64;
  }
  if (opts === "help") {
    console.log(USAGE);
    return 0;
  }
  const log = new Logger(opts.logLevel);
  let keys: KeyPair;
  try {
    if (opts.keysFile === null) keys = newKeyPair();
    else {
      const loaded = await loadRelayKeys(opts.keysFile);
      keys = loaded.keys;
      if (loaded.created) log.info(`created a new relay key in ${opts.keysFile}`);
    }
  } catch (e) {
    console.error(`relay: ${(e as Error).message}`);
    return 1;
  }
  let relay;
  try {
    relay = startRoutingRelay({
      host: opts.host,
      port: opts.port,
      keys,
      maxConnections: opts.maxConnections,
      onEvents: (events) => {
        for (const e of events) {
          if (e.type === "closed" && e.fault === "peer") {
            log.debug(`client ${e.id} dropped: ${e.reason} (${e.message})`);
          }
        }
      },
    });
  } catch (e) {
    console.error(`relay: cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`);
    return 1;
  }
  // Before the listening line: a supervisor may signal as soon as it reads it.
  const stop = Promise.withResolvers<string>();
  const onInt = () => stop.resolve("SIGINT");
  const onTerm = () => stop.resolve("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  console.log(JSON.stringify({
    event: "listening",
    host: relay.host,
    port: relay.port,
    public_key: relay.publicKeyHex,
  }));
  log.info(`relay ${relay.publicKeyHex} listening on ${relay.host}:${relay.port}`);
  const why = await stop.promise;
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  const stats = relay.server.stats();
  await relay.stop();
  console.log(JSON.stringify({ event: "stopped", signal: why, stats }));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

/**
 * The daemon's settings: command-line flags over `<data dir>/config.json` over defaults.
 * Parsing is pure (args, file text and environment in; a config or a message out) so every
 * rule is tested without starting anything.
 *
 * There is no built-in list of public relays: relays come from `--relay`, `--nodes` (the
 * community nodes.json format), the config file, and those added at run time (saved state).
 */
import { parseArgs } from "node:util";
import {
  parseNodesJson,
  parseNodesJsonUdp,
  parseRelaySpec,
  type RelayAddress,
} from "../core/common/relay_address.ts";
import { isIpLiteral } from "../core/onion/packets.ts";
import { parseProxyUrl, type ProxyConfig } from "../core/relay_client/proxy.ts";
import { LOG_LEVELS, type LogLevel } from "./log.ts";
import { MAX_NAME_LENGTH } from "../core/messenger/messenger.ts";
import { ConfigError, defaultSocketPath, type Env } from "./paths.ts";

export { ConfigError, defaultDataDir, defaultSocketPath, type Env } from "./paths.ts";

export interface DaemonConfig {
  readonly dataDir: string;
  readonly socketPath: string;
  /** From flags or the config file (not the ones added at run time, which live in state). */
  readonly relays: readonly RelayAddress[];
  /**
   * Onion bootstrap nodes: DHT key and UDP address (as the relays reach it). Relays are tried
   * as nodes too, at their TCP port; these are for nodes whose UDP port differs.
   */
  readonly bootstrap: readonly RelayAddress[];
  readonly nodesFile: string | null;
  /** With a proxy set, every relay connection goes through it; never directly. */
  readonly proxy: ProxyConfig | null;
  /** Overrides the saved profile name at start (and is saved). */
  readonly name: string | null;
  readonly logLevel: LogLevel;
  /** pcapng of every relay socket (`--capture`); flags only, never from config.json. */
  readonly capturePath: string | null;
  /** Session secrets for decrypting captures (`--keylog`); flags only. */
  readonly keylogPath: string | null;
  /** Also put the key log inside the capture, as Decryption Secrets Blocks. */
  readonly captureSecrets: boolean;
}

export const USAGE = `usage: deno task daemon [options]

  --data-dir DIR      keys, friends, relays and config.json (default
                      $XDG_DATA_HOME/toxtcp or ~/.local/share/toxtcp)
  --relay H:P:PUBKEY  a TCP relay to use (repeatable; IPv6 as [::1]:33445:PUBKEY)
  --nodes FILE        relays from a nodes.json file (the community list format), and its
                      UDP addresses as onion bootstrap nodes
  --bootstrap H:P:PUBKEY
                      an onion bootstrap node: its DHT key and UDP port (repeatable); each
                      relay is also tried as one at its TCP port
  --proxy URL         socks5://HOST:PORT or http://HOST:PORT; relays are then reached only
                      through it
  --socket PATH       the control socket (default $TOXTCP_SOCKET, else
                      $XDG_RUNTIME_DIR/toxtcp/control.sock, else <data dir>/control.sock)
  --name NAME         our nickname (saved)
  --log-level LEVEL   error | warn | info | debug (default info)
  --capture FILE      record every relay connection's bytes to FILE (pcapng, mode 0600);
                      read it with "deno task decode FILE", tshark or Wireshark
  --keylog FILE       append the session secrets that decrypt those connections to FILE
                      (mode 0600): whoever holds it can read the recorded sessions
  --capture-secrets   also write the session secrets into the --capture file itself
  --help              this text

config.json in the data dir may hold "relays" (a list of HOST:PORT:PUBKEY), "bootstrap"
(the same), "nodes", "proxy",
"socket", "name" and "log_level"; flags win over it. Capture and key log are flags only, so
that a forgotten config file never records anyone.`;

export interface Flags {
  readonly help: boolean;
  readonly dataDir?: string;
  readonly relays?: readonly RelayAddress[];
  readonly bootstrap?: readonly RelayAddress[];
  readonly nodesFile?: string;
  readonly proxy?: ProxyConfig;
  readonly socketPath?: string;
  readonly name?: string;
  readonly logLevel?: LogLevel;
  readonly capturePath?: string;
  readonly keylogPath?: string;
  readonly captureSecrets?: boolean;
}

function logLevel(v: unknown, what: string): LogLevel {
  if (typeof v !== "string" || !(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new ConfigError(`${what}: log level must be one of ${LOG_LEVELS.join(", ")}`);
  }
  return v as LogLevel;
}

function name(v: unknown, what: string): string {
  if (typeof v !== "string") throw new ConfigError(`${what}: name must be a string`);
  if (new TextEncoder().encode(v).length > MAX_NAME_LENGTH) {
    throw new ConfigError(`${what}: name is longer than ${MAX_NAME_LENGTH} bytes`);
  }
  return v;
}

/** An onion node: HOST:PORT:PUBKEY with an IP address (an onion layer cannot carry a name). */
function bootstrapSpec(spec: string): RelayAddress {
  const r = parseRelaySpec(spec);
  if (!isIpLiteral(r.host)) {
    throw new TypeError(
      `${r.host} is a name: an onion bootstrap node needs an IP address (onion layers carry ` +
        `addresses, and the relay resolves nothing for us)`,
    );
  }
  return r;
}

/** Run `f`; whatever it throws becomes a ConfigError saying where (`what`). */
function wrap<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new ConfigError(`${what}: ${(e as Error).message}`);
  }
}

/** Command-line flags; throws ConfigError with a message fit for the user. */
export function parseFlags(args: string[]): Flags {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        "data-dir": { type: "string" },
        relay: { type: "string", multiple: true },
        bootstrap: { type: "string", multiple: true },
        nodes: { type: "string" },
        proxy: { type: "string" },
        socket: { type: "string" },
        name: { type: "string" },
        "log-level": { type: "string" },
        capture: { type: "string" },
        keylog: { type: "string" },
        "capture-secrets": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const v = parsed.values;
  for (const k of ["capture", "keylog"] as const) {
    if (v[k] === "") throw new ConfigError(`--${k} needs a file name`);
  }
  if (v.capture !== undefined && v.capture === v.keylog) {
    throw new ConfigError("--capture and --keylog must be different files");
  }
  if (v["capture-secrets"] === true && v.capture === undefined) {
    throw new ConfigError("--capture-secrets needs --capture FILE");
  }
  return {
    help: v.help === true,
    dataDir: v["data-dir"],
    relays: v.relay?.map((r) => wrap("--relay", () => parseRelaySpec(r))),
    bootstrap: v.bootstrap?.map((r) => wrap("--bootstrap", () => bootstrapSpec(r))),
    nodesFile: v.nodes,
    proxy: v.proxy === undefined ? undefined : wrap("--proxy", () => parseProxyUrl(v.proxy!)),
    socketPath: v.socket,
    name: v.name === undefined ? undefined : name(v.name, "--name"),
    logLevel: v["log-level"] === undefined ? undefined : logLevel(v["log-level"], "--log-level"),
    capturePath: v.capture,
    keylogPath: v.keylog,
    captureSecrets: v["capture-secrets"] === true,
  };
}

/** What config.json may set: the flags but the data dir and the capture ones. */
export type FileSettings = Omit<
  Flags,
  "help" | "dataDir" | "capturePath" | "keylogPath" | "captureSecrets"
>;

/** config.json's text (same settings as the flags, snake_case). */
export function parseConfigFile(text: string, path: string): FileSettings {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not JSON: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`${path} must hold a JSON object`);
  }
  const o = doc as Record<string, unknown>;
  const known = ["relays", "bootstrap", "nodes", "proxy", "socket", "name", "log_level"];
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      throw new ConfigError(`${path}: unknown setting "${k}" (known: ${known.join(", ")})`);
    }
  }
  const str = (k: string): string | undefined => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== "string") throw new ConfigError(`${path}: "${k}" must be a string`);
    return o[k] as string;
  };
  const specs = (k: "relays" | "bootstrap") => {
    if (o[k] !== undefined && !Array.isArray(o[k])) {
      throw new ConfigError(`${path}: "${k}" must be a list of "HOST:PORT:PUBKEY" strings`);
    }
    return (o[k] as unknown[] | undefined)?.map((r, i) =>
      wrap(`${path}: ${k}[${i}]`, () => {
        if (typeof r !== "string") throw new TypeError(`must be a "HOST:PORT:PUBKEY" string`);
        return k === "bootstrap" ? bootstrapSpec(r) : parseRelaySpec(r);
      })
    );
  };
  const relays = specs("relays");
  const bootstrap = specs("bootstrap");
  const proxy = str("proxy");
  return {
    relays,
    bootstrap,
    nodesFile: str("nodes"),
    proxy: proxy === undefined ? undefined : wrap(`${path}: proxy`, () => parseProxyUrl(proxy)),
    socketPath: str("socket"),
    name: o.name === undefined ? undefined : name(o.name, `${path}: name`),
    logLevel: o.log_level === undefined ? undefined : logLevel(o.log_level, `${path}: log_level`),
  };
}

/** Flags over file over defaults. */
export function resolveConfig(
  flags: Flags,
  file: FileSettings,
  dataDir: string,
  env: Env,
): DaemonConfig {
  return {
    dataDir,
    socketPath: flags.socketPath ?? file.socketPath ?? defaultSocketPath(env, dataDir),
    relays: flags.relays ?? file.relays ?? [],
    bootstrap: flags.bootstrap ?? file.bootstrap ?? [],
    nodesFile: flags.nodesFile ?? file.nodesFile ?? null,
    proxy: flags.proxy ?? file.proxy ?? null,
    name: flags.name ?? file.name ?? null,
    logLevel: flags.logLevel ?? file.logLevel ?? "info",
    capturePath: flags.capturePath ?? null,
    keylogPath: flags.keylogPath ?? null,
    captureSecrets: flags.captureSecrets ?? false,
  };
}

/** Relays of a nodes.json file, with the file named in any error. */
export function relaysOfNodesFile(text: string, path: string): RelayAddress[] {
  return wrap(path, () => parseNodesJson(text));
}

/** The UDP (DHT) addresses of a nodes.json file: onion bootstrap nodes. */
export function bootstrapOfNodesFile(text: string, path: string): RelayAddress[] {
  return wrap(path, () => parseNodesJsonUdp(text));
}

/**
 * Our own TCP relay as a subprocess, exactly as `deno task relay` runs it (`deno run` with the
 * task's permissions, daemon/shell/relay_main.ts), for interop tests that put real c-toxcore peers
 * and our clients behind it. Shaped like harness.ts's Bootstrapd where that makes sense
 * (`.relay`, `.publicKeyHex`, `stop()`, `kill()`), so helpers that only need `.relay` take
 * either.
 *
 * Ready once the relay printed its one `{"event":"listening",…}` line (bounded); stopped with
 * SIGTERM (SIGKILL after a grace), reaped, pipes drained (tools/testbed/processes.ts, as the demo). Registered with the harness so an
 * interopTest that times out stops it. Listens on 127.0.0.1 only, on a port the OS picks.
 */
import { fromHex } from "../../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import type { RelayServerStats } from "../../daemon/core/relay_server/stats.ts";
import { ManagedProcess } from "./processes.ts";
import { LOCALHOST, trackHarnessProcess } from "./harness.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** The permissions of `deno task relay` (deno.json): no more. */
const RELAY_FLAGS = ["--allow-net", "--allow-read", "--allow-write"];
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const LOG_LIMIT_CHARS = 1 << 20;

export interface OwnRelayOptions {
  /** `--keys FILE`: the relay keeps its key pair there (created on first run). */
  readonly keysFile?: string;
  /** `--max-conns N`. */
  readonly maxConns?: number;
  /** `--log-level` (default debug: client drops are logged, nothing per packet). */
  readonly logLevel?: "error" | "warn" | "info" | "debug";
  /** More argv for relay_main.ts, after ours (a later flag wins). */
  readonly extraArgs?: readonly string[];
  /** Bound for the listening line (default 10 s). */
  readonly startTimeoutMs?: number;
}

/** What the relay printed on SIGINT/SIGTERM. */
export interface OwnRelayStopped {
  readonly event: "stopped";
  readonly signal: string;
  readonly stats: RelayServerStats;
}

export interface OwnRelay extends AsyncDisposable {
  readonly host: string;
  readonly port: number;
  /** The relay's public key (what clients are given with host:port). */
  readonly publicKey: Uint8Array;
  /** Lower-case hex. */
  readonly publicKeyHex: string;
  /** host:port:key, what clients and tox_peer are given. */
  readonly relay: RelayAddress;
  readonly pid: number;
  /** stdout + stderr so far (bounded, keeps the tail). */
  log(): string;
  /** The exit status once it has exited, else null. */
  readonly exitStatus: Deno.CommandStatus | null;
  /** The `stopped` line (with the relay's counters) once it has exited cleanly, else null. */
  readonly stopped: OwnRelayStopped | null;
  /** SIGTERM, SIGKILL after a grace period, reap, drain the pipes. Idempotent, never throws. */
  stop(): Promise<void>;
  /** SIGKILL now, reap (a relay that dies without a word). Idempotent. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a relay that stops reading altogether. */
  pause(): void;
  resume(): void;
  describe(): string;
}

/** Every relay process still running, SIGKILLed if the test process unloads. */
const live = new Set<Deno.ChildProcess>();
let unloadHook = false;

function installUnloadHook(): void {
  if (unloadHook) return;
  unloadHook = true;
  globalThis.addEventListener("unload", () => {
    for (const c of live) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
    }
  });
}

class OwnRelayProcess implements OwnRelay {
  readonly #proc: ManagedProcess;
  readonly args: readonly string[];
  host = LOCALHOST;
  port = 0;
  publicKeyHex = "";
  publicKey: Uint8Array = new Uint8Array(32);
  #stopping: Promise<void> | null = null;
  readonly #untrack: () => void;

  constructor(args: string[]) {
    installUnloadHook();
    this.args = args;
    this.#proc = ManagedProcess.spawn({
      name: "our relay",
      args,
      env: { NO_COLOR: "1" },
      maxLogChars: LOG_LIMIT_CHARS,
    });
    live.add(this.#proc.child);
    this.#proc.exited.then(() => live.delete(this.#proc.child));
    this.#untrack = trackHarnessProcess(this);
  }

  get pid(): number {
    return this.#proc.pid;
  }

  get exitStatus(): Deno.CommandStatus | null {
    return this.#proc.status;
  }

  /** Printed on SIGINT/SIGTERM, so known once the process has exited cleanly. */
  get stopped(): OwnRelayStopped | null {
    const line = this.#proc.stdoutLines.find((l) => l.startsWith('{"event":"stopped"'));
    return line === undefined ? null : JSON.parse(line) as OwnRelayStopped;
  }

  get relay(): RelayAddress {
    return { host: this.host, port: this.port, publicKey: this.publicKeyHex };
  }

  log(): string {
    return this.#proc.log;
  }

  describe(): string {
    return `own relay pid ${this.pid} on ${this.host}:${this.port}`;
  }

  /** Resolves once listening; rejects (after killing it) if it exits or takes too long. */
  async ready(timeoutMs: number): Promise<void> {
    try {
      const line = await this.#proc.waitForLine(
        (l) => l.startsWith('{"event":"listening"'),
        timeoutMs,
      );
      const doc = JSON.parse(line) as Record<string, unknown>;
      const key = String(doc.public_key ?? "");
      if (
        typeof doc.host !== "string" || typeof doc.port !== "number" ||
        !/^[0-9a-f]{64}$/i.test(key)
      ) {
        throw new Error(`a malformed listening line: ${line}`);
      }
      this.host = doc.host;
      this.port = doc.port;
      this.publicKeyHex = key.toLowerCase();
      this.publicKey = fromHex(this.publicKeyHex, 32);
    } catch (e) {
      await this.kill();
      throw new Error(
        `our relay did not start (${(e as Error).message}): ${Deno.execPath()} ${
          this.args.join(" ")
        }\n${this.#proc.tail(40).join("\n")}`,
      );
    }
  }

  #signal(sig: Deno.Signal): void {
    if (this.#proc.status !== null) return;
    try {
      this.#proc.child.kill(sig);
    } catch { /* exited meanwhile */ }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const done = this.#proc.stop("SIGTERM", STOP_GRACE_MS);
      this.#signal("SIGCONT"); // if it was paused, so it can act on SIGTERM
      await done;
    })().finally(() => this.#untrack());
    return this.#stopping;
  }

  kill(): Promise<void> {
    this.#stopping ??= this.#proc.stop("SIGKILL", 0).then(() => {}).finally(() => this.#untrack());
    return this.#stopping;
  }

  pause(): void {
    this.#signal("SIGSTOP");
  }

  resume(): void {
    this.#signal("SIGCONT");
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** The argv (after the deno binary) that runs our relay as `deno task relay` does. */
export function ownRelayArgs(opts: OwnRelayOptions = {}): string[] {
  return [
    "run",
    "--no-check",
    ...RELAY_FLAGS,
    `${ROOT}daemon/shell/relay_main.ts`,
    "--host",
    LOCALHOST,
    "--port",
    "0",
    "--log-level",
    opts.logLevel ?? "debug",
    ...(opts.keysFile !== undefined ? ["--keys", opts.keysFile] : []),
    ...(opts.maxConns !== undefined ? ["--max-conns", String(opts.maxConns)] : []),
    ...(opts.extraArgs ?? []),
  ];
}

/** Start our relay (`deno task relay --host 127.0.0.1 --port 0 …`) and wait until it listens. */
export async function startOwnRelay(opts: OwnRelayOptions = {}): Promise<OwnRelay> {
  const r = new OwnRelayProcess(ownRelayArgs(opts));
  await r.ready(opts.startTimeoutMs ?? START_TIMEOUT_MS);
  return r;
}

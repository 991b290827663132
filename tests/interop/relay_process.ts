/**
 * Our own TCP relay as a subprocess, exactly as `deno task relay` runs it (`deno run` with the
 * task's permissions, daemon/relay_main.ts), for interop tests that put real c-toxcore peers
 * and our clients behind it. Shaped like harness.ts's Bootstrapd where that makes sense
 * (`.relay`, `.publicKeyHex`, `stop()`, `kill()`), so helpers that only need `.relay` take
 * either.
 *
 * Ready once the relay printed its one `{"event":"listening",…}` line (bounded); stopped with
 * SIGTERM (SIGKILL after a grace), reaped, pipes drained. Registered with the harness so an
 * interopTest that times out stops it. Listens on 127.0.0.1 only, on a port the OS picks.
 */
import { fromHex } from "../../daemon/crypto.ts";
import type { RelayAddress } from "../../daemon/relay_address.ts";
import type { RelayServerStats } from "../../daemon/tcp/relay_server.ts";
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

/** A timer raced against `p`; true if `p` settled first. The timer is always cleared. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

class OwnRelayProcess implements OwnRelay {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly args: readonly string[];
  host = LOCALHOST;
  port = 0;
  publicKeyHex = "";
  publicKey: Uint8Array = new Uint8Array(32);
  exitStatus: Deno.CommandStatus | null = null;
  stopped: OwnRelayStopped | null = null;
  readonly done: Promise<Deno.CommandStatus>;
  #log = "";
  #dropped = 0;
  readonly #listening = Promise.withResolvers<void>();
  readonly #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  readonly #drains: Promise<void>[];
  #stopping: Promise<void> | null = null;
  readonly #untrack: () => void;

  constructor(args: string[]) {
    installUnloadHook();
    this.args = args;
    this.child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.pid = this.child.pid;
    live.add(this.child);
    this.done = this.child.status.then((s) => {
      this.exitStatus = s;
      live.delete(this.child);
      this.#listening.reject(
        new Error(`the relay ${s.signal ? `was killed by ${s.signal}` : `exited (${s.code})`}`),
      );
      return s;
    });
    this.#listening.promise.catch(() => {}); // rejected after a normal exit too: not a fault
    this.#drains = [
      this.#drain(this.child.stdout, (line) => this.#stdoutLine(line)),
      this.#drain(this.child.stderr, () => {}),
    ];
    this.#untrack = trackHarnessProcess(this);
  }

  get relay(): RelayAddress {
    return { host: this.host, port: this.port, publicKey: this.publicKeyHex };
  }

  log(): string {
    return (this.#dropped > 0 ? "[... earlier output dropped ...]\n" : "") + this.#log;
  }

  describe(): string {
    return `own relay pid ${this.pid} on ${this.host}:${this.port}`;
  }

  #append(text: string): void {
    this.#log += text;
    if (this.#log.length > 2 * LOG_LIMIT_CHARS) {
      const cut = this.#log.length - LOG_LIMIT_CHARS;
      this.#dropped += cut;
      this.#log = this.#log.slice(cut);
    }
  }

  #stdoutLine(line: string): void {
    if (!line.startsWith("{")) return;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line);
    } catch {
      return;
    }
    if (doc.event === "listening") {
      const key = String(doc.public_key ?? "");
      if (
        typeof doc.host !== "string" || typeof doc.port !== "number" ||
        !/^[0-9a-f]{64}$/i.test(key)
      ) {
        this.#listening.reject(new Error(`a malformed listening line: ${line}`));
        return;
      }
      this.host = doc.host;
      this.port = doc.port;
      this.publicKeyHex = key.toLowerCase();
      this.publicKey = fromHex(this.publicKeyHex, 32);
      this.#listening.resolve();
    } else if (doc.event === "stopped") {
      this.stopped = doc as unknown as OwnRelayStopped;
    }
  }

  async #drain(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    const reader = stream.getReader();
    this.#readers.push(reader);
    const dec = new TextDecoder();
    let partial = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        partial += dec.decode(value, { stream: true });
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          this.#append(line + "\n");
          onLine(line);
        }
      }
    } catch {
      // cancelled: nothing more to read
    } finally {
      partial += dec.decode();
      if (partial !== "") {
        this.#append(partial + "\n");
        onLine(partial);
      }
      try {
        reader.releaseLock();
      } catch { /* released */ }
    }
  }

  /** Resolves once listening; rejects (after killing it) if it exits or takes too long. */
  async ready(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no listening line within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#listening.promise, late]);
    } catch (e) {
      await this.kill();
      throw new Error(
        `our relay did not start (${(e as Error).message}): ${Deno.execPath()} ${
          this.args.join(" ")
        }\n${this.log().split("\n").slice(-40).join("\n")}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  #signal(sig: Deno.Signal): void {
    if (this.exitStatus !== null) return;
    try {
      this.child.kill(sig);
    } catch { /* exited meanwhile */ }
  }

  async #terminate(graceMs: number): Promise<void> {
    if (this.exitStatus === null) {
      if (graceMs > 0) {
        this.#signal("SIGTERM");
        this.#signal("SIGCONT"); // if it was paused, so it can act on SIGTERM
        if (!(await settlesWithin(this.done, graceMs))) this.#signal("SIGKILL");
      } else {
        this.#signal("SIGKILL");
      }
    }
    await this.done;
    const drains = Promise.all(this.#drains);
    if (!(await settlesWithin(drains, 1_000))) {
      await Promise.allSettled(this.#readers.map((r) => r.cancel()));
    }
    await drains;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#terminate(STOP_GRACE_MS).finally(() => this.#untrack());
    return this.#stopping;
  }

  kill(): Promise<void> {
    this.#stopping ??= this.#terminate(0).finally(() => this.#untrack());
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
    `${ROOT}daemon/relay_main.ts`,
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

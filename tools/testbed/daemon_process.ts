/**
 * The real daemon as a subprocess (`deno run … daemon/shell/main.ts`, the flags of `deno task
 * daemon`), and `ctl` as one: what the daemon tests drive, only through the socket and the
 * command line, as a user or a script would.
 */
import { type Bootstrapd, trackHarnessProcess } from "./harness.ts";
import { ManagedProcess, type StopResult } from "./processes.ts";
import {
  type ControlClient,
  ControlClient as ControlClientImpl,
  type ControlEvent,
} from "../ctl.ts";

/** A relay as `--relay` and `ctl relay add` take it. */
export const spec = (b: Bootstrapd) => `${b.relay.host}:${b.relay.port}:${b.relay.publicKey}`;

const ROOT = new URL("../../", import.meta.url).pathname;
/**
 * The daemon's flags exactly as `deno task daemon` gives them (read from deno.json), so tests
 * and the bench run the daemon with the permissions and V8 settings a user's daemon has.
 */
const DAEMON_FLAGS: readonly string[] = (() => {
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks as Record<
    string,
    string
  >;
  const words = tasks.daemon.split(/\s+/);
  return words.slice(words.indexOf("run") + 1, words.indexOf("daemon/shell/main.ts"));
})();
/** The permissions of `deno task ctl` (deno.json): no more. */
const CTL_FLAGS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env"];

export interface DaemonOptions {
  readonly dataDir: string;
  readonly socket: string;
  readonly relays?: readonly string[];
  readonly name?: string;
  readonly extra?: readonly string[];
  /** Deno flags before the script, after the task's own (e.g. `--cpu-prof` to profile). */
  readonly denoFlags?: readonly string[];
}

export class DaemonProcess {
  readonly opts: DaemonOptions;
  readonly #proc: ManagedProcess;
  readonly #untrack: () => void;

  private constructor(opts: DaemonOptions) {
    this.opts = opts;
    const args = [
      "run",
      "--no-check",
      ...DAEMON_FLAGS,
      ...(opts.denoFlags ?? []),
      `${ROOT}daemon/shell/main.ts`,
      "--data-dir",
      opts.dataDir,
      "--socket",
      opts.socket,
      "--log-level",
      "debug",
      ...(opts.relays ?? []).flatMap((r) => ["--relay", r]),
      ...(opts.name ? ["--name", opts.name] : []),
      ...(opts.extra ?? []),
    ];
    this.#proc = ManagedProcess.spawn({ name: "daemon", args, env: { NO_COLOR: "1" } });
    this.#untrack = trackHarnessProcess(this);
  }

  /** Start and wait until the control socket answers (or the daemon exits: an error). */
  static async start(opts: DaemonOptions, timeoutMs = 15_000): Promise<DaemonProcess> {
    const d = new DaemonProcess(opts);
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && d.#proc.status === null) {
      try {
        const c = await Deno.connect({ transport: "unix", path: opts.socket });
        c.close();
        return d;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const exited = d.#proc.status !== null;
    await d.kill("SIGKILL");
    throw new Error(`daemon did not come up (${exited ? "it exited" : "timeout"}):\n${d.log}`);
  }

  get pid(): number {
    return this.#proc.pid;
  }

  get log(): string {
    return this.#proc.log;
  }

  describe(): string {
    return `daemon pid ${this.pid} (${this.opts.dataDir})`;
  }

  /**
   * Send `signal`, wait for the exit (SIGKILL after `graceMs`), finish the pipes. Only the
   * first kill or stop acts; later ones return its result.
   */
  async kill(signal: Deno.Signal, graceMs = 5_000): Promise<StopResult> {
    const r = await this.#proc.stop(signal, graceMs);
    this.#untrack();
    return r;
  }

  stop(): Promise<void> {
    return this.kill("SIGTERM").then(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A fresh temp dir only we may enter (the daemon refuses a socket dir open to others). */
export async function privateDir(prefix = "toxtcp-daemon-test-"): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.chmod(dir, 0o700);
  return dir;
}

/** Run `deno run tools/ctl.ts --socket S …args`: exit code, stdout, stderr. */
export async function ctl(
  socket: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", ...CTL_FLAGS, `${ROOT}tools/ctl.ts`, "--socket", socket, ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `ctl --json …` that must succeed: its result. */
export async function ctlJson<T = unknown>(socket: string, ...args: string[]): Promise<T> {
  const r = await ctl(socket, "--json", ...args);
  if (r.code !== 0) throw new Error(`ctl ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** What `ctl self` says of a daemon. */
export interface DaemonSelf {
  readonly address: string;
  readonly public_key: string;
  readonly dht_public_key: string;
}

/** Alice and bob: two daemons on one relay, with sockets and data under `dir`. */
export interface DaemonPair extends AsyncDisposable {
  readonly a: DaemonProcess;
  readonly b: DaemonProcess;
  readonly sa: string;
  readonly sb: string;
}

/** Start alice, then bob (alice is stopped if bob does not come up); disposing stops both. */
export async function startPair(dir: string, relay: Bootstrapd): Promise<DaemonPair> {
  const sa = `${dir}/a.sock`;
  const sb = `${dir}/b.sock`;
  const start = (who: "a" | "b", socket: string, name: string) =>
    DaemonProcess.start({ dataDir: `${dir}/${who}`, socket, relays: [spec(relay)], name });
  const a = await start("a", sa, "alice");
  let b: DaemonProcess;
  try {
    b = await start("b", sb, "bob");
  } catch (e) {
    await a.stop();
    throw e;
  }
  return {
    a,
    b,
    sa,
    sb,
    [Symbol.asyncDispose]: async () => {
      await Promise.all([a.stop(), b.stop()]);
    },
  };
}

/**
 * Make two running daemons friends as users would with ctl: b adds a's Tox ID, a adds b's with
 * the hint (b's DHT key and relay); resolves once a sees b online.
 */
export async function befriend(
  sa: string,
  sb: string,
  relay: Bootstrapd,
): Promise<{ a: DaemonSelf; b: DaemonSelf }> {
  const watch = await ControlClientImpl.connect(sa);
  try {
    const subscribed = await watch.request("subscribe");
    if (!subscribed.ok) throw new Error(`subscribe: ${JSON.stringify(subscribed)}`);
    const a = await ctlJson<DaemonSelf>(sa, "self");
    const b = await ctlJson<DaemonSelf>(sb, "self");
    const online = nextEvent(watch, (e) => e.event === "friend_online", 15_000, "friend online");
    const added = await ctl(sb, "friend", "add", a.address);
    if (added.code !== 0) throw new Error(`ctl friend add: ${added.stderr}`);
    const hinted = await ctl(
      sa,
      ...["friend", "add", b.address, "--dht", b.dht_public_key, "--relay", spec(relay)],
    );
    if (hinted.code !== 0) throw new Error(`ctl friend add --dht: ${hinted.stderr}`);
    await online;
    return { a, b };
  } finally {
    await watch.close();
  }
}

/** Run the daemon with `args` to completion (for start-up refusals): exit code and output. */
export async function daemonOnce(args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", ...DAEMON_FLAGS, `${ROOT}daemon/shell/main.ts`, ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** The first event matching `pred`, within `ms`. */
export async function nextEvent(
  client: ControlClient,
  pred: (e: ControlEvent) => boolean,
  ms: number,
  what: string,
): Promise<ControlEvent> {
  const it = client.events();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    while (true) {
      const r = await Promise.race([it.next(), late]);
      if (r.done) throw new Error(`${what}: the event stream ended`);
      if (pred(r.value)) return r.value;
    }
  } finally {
    clearTimeout(timer);
  }
}

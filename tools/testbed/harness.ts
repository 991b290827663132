/**
 * Test support for interop tests against real peers: tox-bootstrapd (a c-toxcore TCP relay),
 * microsocks (SOCKS5) and tinyproxy (HTTP CONNECT). No tests live here.
 *
 * Everything binds or connects to 127.0.0.1 only (tox-bootstrapd itself listens on 0.0.0.0:
 * it has no bind-address option), every wait is bounded, and every child process is reaped and
 * its pipes drained, so the helpers can be used inside Deno.test with the sanitizers on.
 *
 * Needs --allow-run --allow-read --allow-write --allow-net --allow-env (as `deno task test`).
 */
import { newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";

export const LOCALHOST = "127.0.0.1";

/** Debian package that provides each peer binary (used in the CI failure message). */
export const APT_PACKAGES: Readonly<Record<string, string>> = {
  "tox-bootstrapd": "toxcore-utils",
  "microsocks": "microsocks",
  "tinyproxy": "tinyproxy",
  "tshark": "tshark",
  "tcpdump": "tcpdump",
  "gcc": "gcc",
};

const DEFAULT_TEST_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 5_000;
const STOP_GRACE_MS = 2_000;
const LOG_LIMIT_CHARS = 1 << 20;
const START_ATTEMPTS = 8;

// ---------------------------------------------------------------------------------------------
// Binaries on PATH and the Deno.test wrapper

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

function isExecutableFile(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && (st.mode === null || (st.mode & 0o111) !== 0);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied) {
      return false;
    }
    throw e; // e.g. NotCapable: missing --allow-read is a setup error, not a missing binary
  }
}

/** Which of `bins` cannot be found as executables on PATH (a name with a "/" is a path). */
export function requirePeers(bins: string[]): { ok: boolean; missing: string[] } {
  const dirs = (envGet("PATH") ?? "").split(":").filter((d) => d !== "");
  const missing = bins.filter((bin) =>
    bin.includes("/") ? !isExecutableFile(bin) : !dirs.some((d) => isExecutableFile(`${d}/${bin}`))
  );
  return { ok: missing.length === 0, missing };
}

function installHint(missing: string[]): string {
  const pkgs = [...new Set(missing.map((b) => APT_PACKAGES[b] ?? b))];
  return `apt-get install -y ${pkgs.join(" ")}`;
}

export interface InteropTestOptions {
  /** Fail the test (instead of hanging) after this many ms. Default 120000; 0 disables. */
  timeout?: number;
  ignore?: boolean;
  only?: boolean;
}

export type InteropTestFn = (
  t: Deno.TestContext,
  signal: AbortSignal,
) => void | Promise<void>;

/**
 * Deno.test for tests that need peer binaries. Missing binaries make the test fail under
 * CI=true and skip (ignore, reason in the name) otherwise. Sanitizers stay on. `signal` aborts
 * when the timeout fires. Harness processes still running when fn ends (or times out) are
 * stopped; if fn returned normally while one was still running, the test fails.
 */
export function interopTest(
  name: string,
  bins: string[],
  fn: InteropTestFn,
  opts: InteropTestOptions = {},
): void {
  const { missing } = requirePeers(bins);
  if (missing.length > 0) {
    const what = `missing ${missing.join(", ")} on PATH (${installHint(missing)})`;
    if (envGet("CI") === "true") {
      Deno.test({
        name,
        ignore: opts.ignore,
        only: opts.only,
        fn() {
          throw new Error(`interop peers ${what}; CI=true, so this is a failure, not a skip`);
        },
      });
    } else {
      Deno.test({ name: `${name} [skipped: ${what}]`, ignore: true, fn() {} });
    }
    return;
  }
  const timeoutMs = opts.timeout ?? DEFAULT_TEST_TIMEOUT_MS;
  Deno.test({
    name,
    ignore: opts.ignore,
    only: opts.only,
    async fn(t) {
      const before = new Set(running);
      const ac = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stopStragglers = async (): Promise<string[]> => {
        const stragglers = [...running].filter((r) => !before.has(r));
        await Promise.allSettled(stragglers.map((r) => r.stop()));
        return stragglers.map((r) => r.describe());
      };
      try {
        const work = Promise.resolve().then(() => fn(t, ac.signal));
        if (timeoutMs > 0) {
          const expired = new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              ac.abort(new Error(`timed out after ${timeoutMs} ms`));
              reject(new Error(`interop test "${name}" timed out after ${timeoutMs} ms`));
            }, timeoutMs);
          });
          await Promise.race([work, expired]);
        } else {
          await work;
        }
      } catch (e) {
        await stopStragglers();
        throw e;
      } finally {
        clearTimeout(timer);
      }
      const leaked = await stopStragglers();
      if (leaked.length > 0) {
        throw new Error(
          `test left harness processes running (missing stop()/await using?): ${leaked.join("; ")}`,
        );
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/** A timer that can be cancelled, so a race against it never leaks a pending timer op. */
function delay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  let resolveFn: () => void = () => {};
  const promise = new Promise<void>((resolve) => {
    resolveFn = resolve;
    id = setTimeout(resolve, ms);
  });
  return {
    promise,
    cancel() {
      clearTimeout(id);
      resolveFn();
    },
  };
}

function sleep(ms: number): Promise<void> {
  return delay(ms).promise;
}

/** Resolves true if `p` settles within ms, false otherwise; the timer is always cleared. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const d = delay(ms);
  try {
    return await Promise.race([p.then(() => true, () => true), d.promise.then(() => false)]);
  } finally {
    d.cancel();
  }
}

async function canConnect(port: number, host = LOCALHOST): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: host, port, transport: "tcp" });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Wait (bounded) until host:port accepts a TCP connection. */
export async function waitForPort(
  port: number,
  host = LOCALHOST,
  timeoutMs = START_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await canConnect(port, host))) {
    if (Date.now() >= deadline) {
      throw new Error(`${host}:${port} did not accept a TCP connection within ${timeoutMs} ms`);
    }
    await sleep(25);
  }
}

/**
 * Deno 2 refuses /proc paths unless run with --allow-all (NotCapable), even with --allow-read,
 * so fall back to a coreutils child (`deno task test` grants --allow-run). Null if neither works.
 */
function procText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    return e instanceof Deno.errors.NotCapable ? commandText("cat", [path]) : null;
  }
}

function commandText(cmd: string, args: string[]): string | null {
  try {
    const out = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/** Whether process `pid` exists and is not a zombie (Linux /proc, works without --allow-all). */
export function processAlive(pid: number): boolean {
  const stat = procText(`/proc/${pid}/stat`);
  if (stat === null) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** Local ports of sockets in /proc/net/{udp,udp6} (Linux), keyed by inode. */
function procUdpSockets(): Map<number, number> | null {
  const out = new Map<number, number>();
  let any = false;
  for (const f of ["/proc/net/udp", "/proc/net/udp6"]) {
    const text = procText(f);
    if (text === null) continue;
    any = true;
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const port = parseInt(cols[1].split(":").pop() ?? "", 16);
      const inode = parseInt(cols[9], 10);
      if (Number.isFinite(port) && Number.isFinite(inode)) out.set(inode, port);
    }
  }
  return any ? out : null;
}

function udpPortInUse(port: number): boolean {
  const listenDatagram = (Deno as any).listenDatagram as
    | ((o: { hostname: string; port: number; transport: "udp" }) => { close(): void })
    | undefined;
  if (typeof listenDatagram === "function") { // only with --unstable-net
    try {
      listenDatagram({ hostname: LOCALHOST, port, transport: "udp" }).close();
    } catch {
      return true;
    }
  }
  const socks = procUdpSockets();
  return socks !== null && [...socks.values()].includes(port);
}

/** UDP ports bound by process `pid` (Linux /proc; null when it cannot be determined). */
function udpPortsOfPid(pid: number): number[] | null {
  const socks = procUdpSockets();
  if (socks === null) return null;
  // `ls -l` prints "... 3 -> socket:[12345]" per fd; fine for the direct path too.
  const dir = `/proc/${pid}/fd`;
  let listing = "";
  try {
    for (const e of Deno.readDirSync(dir)) {
      try {
        listing += `-> ${Deno.readLinkSync(`${dir}/${e.name}`)}\n`;
      } catch {
        // fd closed meanwhile
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotCapable)) return null;
    const text = commandText("ls", ["-l", dir]);
    if (text === null) return null;
    listing = text;
  }
  const ports: number[] = [];
  for (const m of listing.matchAll(/-> socket:\[(\d+)\]/g)) {
    const port = socks.get(parseInt(m[1], 10));
    if (port !== undefined) ports.push(port);
  }
  return ports;
}

const recentPorts: number[] = [];

/**
 * A port that is currently free for TCP on 127.0.0.1 and (checked via Deno.listenDatagram when
 * --unstable-net is on, else /proc/net/udp) for UDP. Ports handed out recently by this module are
 * not repeated. Another process may still grab it before use: callers retry.
 */
export function freePort(): number {
  for (let attempt = 0; attempt < 100; attempt++) {
    const l = Deno.listen({ hostname: LOCALHOST, port: 0, transport: "tcp" });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    if (recentPorts.includes(port) || udpPortInUse(port)) continue;
    recentPorts.push(port);
    if (recentPorts.length > 256) recentPorts.shift();
    return port;
  }
  throw new Error("freePort: no free TCP+UDP port found on 127.0.0.1 after 100 attempts");
}

// ---------------------------------------------------------------------------------------------
// Child processes

/** Bounded, line-oriented log of a process's stdout and stderr (keeps the tail). */
class OutputLog {
  #text = "";
  #dropped = 0;
  constructor(readonly limit = LOG_LIMIT_CHARS) {}
  /** Total characters ever appended (an offset for since()). */
  get total(): number {
    return this.#dropped + this.#text.length;
  }
  append(s: string): void {
    this.#text += s;
    if (this.#text.length > 2 * this.limit) {
      const cut = this.#text.length - this.limit;
      this.#dropped += cut;
      this.#text = this.#text.slice(cut);
    }
  }
  /** What was appended since offset `total` (as much of it as is still kept). */
  since(total: number): string {
    return this.#text.slice(Math.max(0, total - this.#dropped));
  }
  text(): string {
    return (this.#dropped > 0 ? "[... earlier output dropped ...]\n" : "") + this.#text;
  }
}

export interface Stoppable {
  stop(): Promise<void>;
  describe(): string;
}

/** Harness objects with a live process, for timeout cleanup and the unload hook. */
const running = new Set<Stoppable>();
const liveProcesses = new Set<ManagedProcess>();
let unloadHookInstalled = false;

/**
 * Register a process owned elsewhere (e.g. tox_peer.ts) so interopTest stops it on timeout and
 * reports it if a test leaks it. Returns the function to call once it is stopped.
 */
export function trackHarnessProcess(p: Stoppable): () => void {
  running.add(p);
  return () => {
    running.delete(p);
  };
}

function installUnloadHook(): void {
  if (unloadHookInstalled) return;
  unloadHookInstalled = true;
  globalThis.addEventListener("unload", () => {
    for (const p of liveProcesses) p.signal("SIGKILL");
  });
}

class ManagedProcess {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly done: Promise<Deno.CommandStatus>;
  exitStatus: Deno.CommandStatus | null = null;
  #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  #drains: Promise<void>[] = [];

  constructor(readonly cmd: string, args: string[], readonly log: OutputLog) {
    installUnloadHook();
    this.child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.child.pid;
    liveProcesses.add(this);
    this.done = this.child.status.then((s) => {
      this.exitStatus = s;
      liveProcesses.delete(this);
      return s;
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      const reader = stream.getReader();
      this.#readers.push(reader);
      this.#drains.push(this.#drain(reader));
    }
  }

  async #drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let partial = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        partial += dec.decode(value, { stream: true });
        const nl = partial.lastIndexOf("\n");
        if (nl >= 0) {
          this.log.append(partial.slice(0, nl + 1));
          partial = partial.slice(nl + 1);
        }
      }
    } catch {
      // cancelled or broken pipe: nothing more to read
    } finally {
      partial += dec.decode();
      if (partial !== "") this.log.append(partial + "\n");
      try {
        reader.releaseLock();
      } catch {
        // already released
      }
    }
  }

  get alive(): boolean {
    return this.exitStatus === null;
  }

  signal(sig: Deno.Signal): boolean {
    if (this.exitStatus !== null) return false;
    try {
      this.child.kill(sig);
      return true;
    } catch {
      return false; // exited in the meantime
    }
  }

  /** SIGTERM (+SIGCONT in case it is stopped), SIGKILL after graceMs; reap; finish the pipes. */
  async terminate(graceMs = STOP_GRACE_MS): Promise<Deno.CommandStatus> {
    if (this.alive) {
      if (graceMs > 0) {
        this.signal("SIGTERM");
        this.signal("SIGCONT");
        if (!(await settlesWithin(this.done, graceMs))) this.signal("SIGKILL");
      } else {
        this.signal("SIGKILL");
      }
    }
    const status = await this.done;
    await this.closePipes();
    return status;
  }

  /** Wait for the drains to hit EOF; if a grandchild keeps a pipe open, cancel after 1 s. */
  async closePipes(): Promise<void> {
    const all = Promise.all(this.#drains);
    if (!(await settlesWithin(all, 1_000))) {
      await Promise.allSettled(this.#readers.map((r) => r.cancel()));
    }
    await all;
  }
}

function exitText(p: ManagedProcess): string {
  const s = p.exitStatus;
  if (s === null) return "still running";
  return s.signal ? `killed by ${s.signal}` : `exited with code ${s.code}`;
}

function tail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines).join("\n");
}

/**
 * Spawn and wait until `ready` returns true (polled), bounded by timeoutMs. On failure the
 * process is killed and reaped and the error says whether it exited (e.g. port in use).
 */
async function spawnUntilReady(
  cmd: string,
  args: string[],
  log: OutputLog,
  ready: (p: ManagedProcess) => Promise<boolean>,
  timeoutMs: number,
): Promise<{ proc: ManagedProcess } | { error: string; exited: boolean }> {
  const proc = new ManagedProcess(cmd, args, log);
  const deadline = Date.now() + timeoutMs;
  try {
    while (true) {
      if (!proc.alive) {
        await proc.terminate(0);
        return { error: `${cmd} ${exitText(proc)} during startup`, exited: true };
      }
      if (await ready(proc)) return { proc };
      if (Date.now() >= deadline) {
        await proc.terminate(0);
        return { error: `${cmd} not ready within ${timeoutMs} ms`, exited: false };
      }
      await settlesWithin(proc.done, 25);
    }
  } catch (e) {
    await proc.terminate(0);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// tox-bootstrapd

export interface BootstrapdOptions {
  /** TCP relay ports; the first is also the UDP (DHT) port. Default: one free port, retried. */
  tcpPorts?: number[];
  /** Startup deadline per attempt in ms (default 5000). */
  startTimeoutMs?: number;
}

export interface Bootstrapd {
  readonly host: "127.0.0.1";
  /** First TCP relay port. */
  readonly port: number;
  readonly tcpPorts: readonly number[];
  /** UDP port the DHT actually bound (toxcore silently moves up if the asked one is taken). */
  readonly udpPort: number;
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;
  /** host:port:key as a RelayAddress (lower-case key), what clients are given. */
  readonly relay: RelayAddress;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** stdout+stderr of all runs so far (bounded). */
  log(): string;
  /** SIGTERM, SIGKILL after 2 s, reap, close pipes, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL now and reap; keeps keys/config so restart() works. */
  kill(): Promise<void>;
  /** SIGSTOP. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Start again with the same ports and keys (after kill/stop; kills a running one first). */
  restart(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

function libconfigString(s: string): string {
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

class BootstrapdImpl implements Bootstrapd, Stoppable {
  readonly host = LOCALHOST;
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;
  readonly #secretKey: Uint8Array;
  readonly #log = new OutputLog();
  readonly #startTimeoutMs: number;
  #tcpPorts: number[] = [];
  #udpPort = 0;
  #dir: string | null = null;
  #proc: ManagedProcess | null = null;
  #stopping: Promise<void> | null = null;

  constructor(opts: BootstrapdOptions) {
    const kp = newKeyPair();
    this.publicKey = kp.publicKey;
    this.#secretKey = kp.secretKey;
    this.publicKeyHex = toHex(kp.publicKey).toUpperCase();
    this.#startTimeoutMs = opts.startTimeoutMs ?? START_TIMEOUT_MS;
  }

  get port(): number {
    return this.#tcpPorts[0];
  }
  get relay(): RelayAddress {
    return { host: this.host, port: this.port, publicKey: this.publicKeyHex.toLowerCase() };
  }
  get tcpPorts(): readonly number[] {
    return this.#tcpPorts;
  }
  get udpPort(): number {
    return this.#udpPort;
  }
  get pid(): number {
    return this.#proc?.pid ?? -1;
  }
  log(): string {
    return this.#log.text();
  }
  describe(): string {
    return `tox-bootstrapd pid ${this.pid} on ${this.host}:${this.port}`;
  }

  async #writeFiles(): Promise<string> {
    if (this.#dir === null) {
      this.#dir = await Deno.makeTempDir({ prefix: "tox-bootstrapd-" });
      const keys = new Uint8Array(64);
      keys.set(this.publicKey, 0);
      keys.set(this.#secretKey, 32);
      await Deno.writeFile(`${this.#dir}/keys`, keys, { mode: 0o600 });
    }
    const dir = this.#dir;
    const config = [
      `port = ${this.#tcpPorts[0]}`,
      `keys_file_path = ${libconfigString(`${dir}/keys`)}`,
      `pid_file_path = ${libconfigString(`${dir}/pid`)}`,
      `enable_ipv6 = false`,
      `enable_ipv4_fallback = true`,
      `enable_lan_discovery = false`,
      `enable_tcp_relay = true`,
      `tcp_relay_ports = [${this.#tcpPorts.join(", ")}]`,
      `enable_motd = false`,
      `bootstrap_nodes = ()`,
      ``,
    ].join("\n");
    const path = `${dir}/config`;
    await Deno.writeTextFile(path, config);
    return path;
  }

  /** One start attempt on the current ports. */
  async #attempt(): Promise<{ ok: true } | { ok: false; error: string; portProblem: boolean }> {
    const configPath = await this.#writeFiles();
    const logStart = this.#log.total;
    const want = this.publicKeyHex;
    let keySeen = false;
    const r = await spawnUntilReady(
      "tox-bootstrapd",
      [`--config=${configPath}`, "--foreground", "--log-backend=stdout"],
      this.#log,
      async () => {
        if (!keySeen) {
          const out = this.#log.since(logStart);
          const m = /Public Key: ([0-9A-Fa-f]{64})/.exec(out);
          if (!m) return false;
          if (m[1].toUpperCase() !== want) {
            throw new Error(`tox-bootstrapd reports Public Key ${m[1]}, expected ${want}`);
          }
          keySeen = true;
        }
        for (const port of this.#tcpPorts) if (!(await canConnect(port))) return false;
        return true;
      },
      this.#startTimeoutMs,
    );
    if ("error" in r) {
      const out = this.#log.since(logStart);
      const portProblem = r.exited &&
        /Couldn't initialize (Tox TCP server|networking)|Address already in use/i.test(out);
      return { ok: false, error: `${r.error}\n${tail(out)}`, portProblem };
    }
    this.#proc = r.proc;
    const udp = udpPortsOfPid(r.proc.pid);
    this.#udpPort = udp === null || udp.length === 0 ? this.#tcpPorts[0] : udp[0];
    return { ok: true };
  }

  async start(fixedPorts: number[] | undefined): Promise<void> {
    let lastError = "";
    try {
      for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        this.#tcpPorts = fixedPorts ? [...fixedPorts] : [freePort()];
        const r = await this.#attempt();
        if (r.ok) {
          if (fixedPorts || this.#udpPort === this.#tcpPorts[0]) {
            running.add(this);
            return;
          }
          // UDP port was taken and toxcore silently moved up: try a fresh port instead.
          lastError = `UDP port ${this.#tcpPorts[0]} taken (bound ${this.#udpPort})`;
          await this.#halt(0);
          continue;
        }
        lastError = r.error;
        if (fixedPorts || !r.portProblem) break;
      }
    } catch (e) {
      await this.#removeDir();
      throw e;
    }
    await this.#removeDir();
    throw new Error(`tox-bootstrapd failed to start: ${lastError}`);
  }

  async #halt(graceMs: number): Promise<void> {
    const p = this.#proc;
    if (p) await p.terminate(graceMs);
  }

  async #removeDir(): Promise<void> {
    if (this.#dir === null) return;
    const dir = this.#dir;
    this.#dir = null;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  stop(): Promise<void> {
    if (this.#stopping === null) {
      this.#stopping = (async () => {
        await this.#halt(STOP_GRACE_MS);
        await this.#removeDir();
        running.delete(this);
      })();
    }
    return this.#stopping;
  }

  async kill(): Promise<void> {
    await this.#halt(0);
  }

  pause(): void {
    this.#proc?.signal("SIGSTOP");
  }

  resume(): void {
    this.#proc?.signal("SIGCONT");
  }

  async restart(): Promise<void> {
    if (this.#stopping) await this.#stopping;
    await this.#halt(0);
    this.#stopping = null;
    this.#log.append(`--- harness: restarting tox-bootstrapd ---\n`);
    // Same ports: retry for a while in case the old sockets are still going away.
    const deadline = Date.now() + this.#startTimeoutMs;
    while (true) {
      const r = await this.#attempt();
      if (r.ok) {
        running.add(this);
        return;
      }
      if (!r.portProblem || Date.now() >= deadline) {
        throw new Error(`tox-bootstrapd restart failed: ${r.error}`);
      }
      await sleep(100);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** Start a private tox-bootstrapd (TCP relay on, no bootstrap nodes, no LAN discovery). */
export async function startBootstrapd(opts: BootstrapdOptions = {}): Promise<Bootstrapd> {
  const b = new BootstrapdImpl(opts);
  await b.start(opts.tcpPorts?.length ? opts.tcpPorts : undefined);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Proxies

export interface Proxy {
  /** "socks5://127.0.0.1:PORT" or "http://127.0.0.1:PORT". */
  readonly url: string;
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly pid: number;
  /** Process output (and, for tinyproxy, its log file). */
  log(): string;
  /** SIGTERM, SIGKILL after 2 s, reap, remove temp files. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

class ProxyImpl implements Proxy, Stoppable {
  readonly host = LOCALHOST;
  #stopping: Promise<void> | null = null;

  constructor(
    readonly name: string,
    readonly scheme: string,
    readonly port: number,
    readonly proc: ManagedProcess,
    readonly dir: string | null,
    readonly logFile: string | null,
  ) {
    running.add(this);
  }

  get url(): string {
    return `${this.scheme}://${this.host}:${this.port}`;
  }
  get pid(): number {
    return this.proc.pid;
  }
  #fileLog = "";
  log(): string {
    let file = this.#fileLog;
    if (this.logFile && this.#stopping === null) {
      try {
        file = Deno.readTextFileSync(this.logFile);
      } catch {
        // not written yet
      }
    }
    return this.proc.log.text() + (file ? `--- ${this.logFile} ---\n${file}` : "");
  }
  describe(): string {
    return `${this.name} pid ${this.pid} on ${this.url}`;
  }

  stop(): Promise<void> {
    if (this.#stopping === null) {
      this.#stopping = (async () => {
        await this.proc.terminate(STOP_GRACE_MS);
        if (this.logFile) {
          try {
            this.#fileLog = await Deno.readTextFile(this.logFile);
          } catch {
            // never written
          }
        }
        if (this.dir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
        running.delete(this);
      })();
    }
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

async function startProxy(
  name: string,
  scheme: string,
  prepare: (
    port: number,
  ) => Promise<{ args: string[]; dir: string | null; logFile: string | null }>,
): Promise<Proxy> {
  let lastError = "";
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = freePort();
    const { args, dir, logFile } = await prepare(port);
    const log = new OutputLog();
    let r: Awaited<ReturnType<typeof spawnUntilReady>>;
    try {
      r = await spawnUntilReady(name, args, log, () => canConnect(port), START_TIMEOUT_MS);
    } catch (e) {
      if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw e;
    }
    if ("proc" in r) return new ProxyImpl(name, scheme, port, r.proc, dir, logFile);
    let fileText = "";
    if (logFile) fileText = await Deno.readTextFile(logFile).catch(() => "");
    if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    lastError = `${r.error}\n${tail(log.text() + fileText)}`;
    if (!r.exited) break; // hung rather than port clash: retrying will not help
  }
  throw new Error(`${name} failed to start: ${lastError}`);
}

/** microsocks (SOCKS5, no auth) on 127.0.0.1:<free port>. */
export function startMicrosocks(): Promise<Proxy> {
  return startProxy("microsocks", "socks5", (port) =>
    Promise.resolve({
      args: ["-i", LOCALHOST, "-p", String(port)],
      dir: null,
      logFile: null,
    }));
}

/** The tinyproxy.conf used by startTinyproxy (no ConnectPort lines = CONNECT to any port). */
export function tinyproxyConfig(port: number, dir: string): string {
  return [
    `Port ${port}`,
    `Listen ${LOCALHOST}`,
    `Timeout 600`,
    `MaxClients 100`,
    `Allow ${LOCALHOST}`,
    `LogLevel Info`,
    `LogFile "${dir}/tinyproxy.log"`,
    `PidFile "${dir}/tinyproxy.pid"`,
    ``,
  ].join("\n");
}

/** tinyproxy (HTTP proxy, CONNECT allowed to any port) on 127.0.0.1:<free port>, foreground. */
export function startTinyproxy(): Promise<Proxy> {
  return startProxy("tinyproxy", "http", async (port) => {
    const dir = await Deno.makeTempDir({ prefix: "tinyproxy-" });
    const conf = `${dir}/tinyproxy.conf`;
    await Deno.writeTextFile(conf, tinyproxyConfig(port, dir));
    return { args: ["-d", "-c", conf], dir, logFile: `${dir}/tinyproxy.log` };
  });
}

// ---------------------------------------------------------------------------------------------
// tcpdump

export interface Tcpdump {
  readonly pid: number;
  readonly file: string;
  log(): string;
  /** SIGTERM (tcpdump then writes out what it holds), reap. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * tcpdump on the loopback interface writing `file` (pcap), in immediate mode and
 * packet-buffered (-U) so the file is complete once it exits, for `filter` (a BPF expression such as "tcp port 33445").
 * Ready once it says it is listening.
 */
export async function startTcpdump(file: string, filter: string): Promise<Tcpdump> {
  const log = new OutputLog();
  // --immediate-mode: each packet is handed over as it comes. Without it packets wait in the
  // kernel's ring for a block to fill or time out, and a stop soon after the traffic loses
  // them all ("0 packets captured, 174 received by filter").
  const args = ["-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-w", file, filter];
  const r = await spawnUntilReady(
    "tcpdump",
    args,
    log,
    () => Promise.resolve(/listening on/.test(log.text())),
    START_TIMEOUT_MS,
  );
  if (!("proc" in r)) throw new Error(`tcpdump failed to start: ${r.error}\n${tail(log.text())}`);
  const proc = r.proc;
  let stopping: Promise<void> | null = null;
  const t: Tcpdump & Stoppable = {
    pid: proc.pid,
    file,
    log: () => log.text(),
    describe: () => `tcpdump pid ${proc.pid} writing ${file}`,
    stop() {
      stopping ??= proc.terminate(STOP_GRACE_MS).then(() => void running.delete(t));
      return stopping;
    },
    [Symbol.asyncDispose]() {
      return this.stop();
    },
  };
  running.add(t);
  return t;
}

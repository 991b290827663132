/**
 * `deno task demo`: the whole stack on 127.0.0.1 in a few seconds, nothing from the internet.
 *
 * Our relay (daemon/shell/relay_main.ts) and two daemons, alice and bob, each with a fresh private
 * data directory in one temp dir. They become friends through their control sockets (alice adds
 * bob with his DHT key and the relay as the hint; bob adds alice by her Tox ID), exchange chat
 * messages with receipts and custom lossless and lossy packets, and stop with SIGTERM. Alice
 * records her relay connections (`--capture`, `--keylog`); the capture is then decoded with the
 * key log (tools/decode.ts). A short narrative with timings is printed as it goes.
 *
 * Everything is cleaned up always: processes by pid (SIGTERM, SIGKILL after a grace period),
 * then the temp dir — on success, on failure (the failing step and each process's last log
 * lines are printed; exit 1) and on Ctrl-C (exit 130). Every wait is bounded.
 */
import { parseArgs } from "node:util";
import { ControlClient, type ControlEvent } from "./ctl.ts";
import { main as decodeMain } from "./decode.ts";
import {
  ManagedProcess,
  pidAlive,
  sleep,
  statusText,
  type StopResult,
} from "./testbed/processes.ts";

export const USAGE = `usage: deno task demo [--keep] [--json]

Starts our TCP relay and two daemons (alice and bob) on 127.0.0.1 with temporary data dirs,
makes them friends, exchanges messages (with receipts) and custom lossless/lossy packets,
records alice's relay connections with a key log, stops everything (SIGTERM) and decodes the
capture. Needs nothing but Deno; nothing leaves this machine.

  --keep   keep the temp dir (data dirs, capture, key log, each process's log) and print its path
  --json   a JSON summary at the end on stdout (the narrative then goes to stderr)
  --help   this text

exit: 0 done; 1 a step failed (it is named, with the last lines of each process's log);
130 interrupted (Ctrl-C; 143 for SIGTERM), after the same clean-up; 64 usage`;

export const EXIT = { ok: 0, failed: 1, interrupted: 130, terminated: 143, usage: 64 } as const;

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** Every wait has a bound (ms). */
const LIMIT = {
  relayListening: 20_000,
  daemonUp: 20_000,
  relayConfirmed: 15_000,
  request: 5_000,
  online: 20_000,
  message: 10_000,
  custom: 15_000,
  lossyTail: 2_000,
  offline: 5_000,
  stopGrace: 5_000,
  decode: 30_000,
} as const;

const MESSAGES = [
  { from: "alice", to: "bob", text: "hello bob", kind: "normal" },
  { from: "bob", to: "alice", text: "hi alice! 👋", kind: "normal" },
  { from: "alice", to: "bob", text: "waves from 127.0.0.1", kind: "action" },
  { from: "bob", to: "alice", text: "the receipts are on me", kind: "normal" },
] as const;

/** Custom packet requests in flight at once. */
const SEND_WINDOW = 32;

const LOSSLESS = { from: "alice", to: "bob", id: 160, count: 100, size: 64 } as const;
const LOSSY = { from: "bob", to: "alice", id: 200, count: 20, size: 48 } as const;

type Name = "alice" | "bob";

interface SelfInfo {
  address: string;
  public_key: string;
  dht_public_key: string;
  name: string;
}

class Interrupted extends Error {
  override readonly name = "Interrupted";
  constructor(readonly signal: Deno.Signal) {
    super(`interrupted (${signal})`);
  }
}

class StepError extends Error {
  override readonly name = "StepError";
}

// ---------------------------------------------------------------------------------------------
// Events of one daemon, kept from the moment we subscribed, with the time each arrived.

interface Stamped {
  readonly at: number;
  readonly e: ControlEvent;
}

class EventLog {
  readonly items: Stamped[] = [];
  #waiters = new Set<() => void>();
  #ended = false;
  readonly done: Promise<void>;

  constructor(readonly name: string, client: ControlClient, readonly clock: () => number) {
    this.done = (async () => {
      try {
        for await (const e of client.events()) {
          this.items.push({ at: clock(), e });
          this.#wake();
        }
      } catch {
        // the daemon sent garbage: the waits below time out with a clear message
      } finally {
        this.#ended = true;
        this.#wake();
      }
    })();
  }

  get length(): number {
    return this.items.length;
  }

  filter(pred: (e: ControlEvent) => boolean, from = 0): Stamped[] {
    return this.items.slice(from).filter((s) => pred(s.e));
  }

  /** The first event from index `from` on that `pred` accepts, within `ms`. */
  async waitFor(
    pred: (e: ControlEvent) => boolean,
    opts: { from?: number; ms: number; what: string; signal: AbortSignal },
  ): Promise<Stamped> {
    const end = performance.now() + opts.ms;
    let i = opts.from ?? 0;
    while (true) {
      for (; i < this.items.length; i++) if (pred(this.items[i].e)) return this.items[i];
      throwIfAborted(opts.signal);
      if (this.#ended) throw new StepError(`${opts.what}: ${this.name}'s event stream ended`);
      const left = end - performance.now();
      if (left <= 0) throw new StepError(`${opts.what}: not within ${opts.ms} ms`);
      await this.#next(left, opts.signal);
    }
  }

  /** Waits until `count(pred)` from `from` reaches `n`, within `ms`; returns them. */
  async waitForCount(
    pred: (e: ControlEvent) => boolean,
    n: number,
    opts: { from?: number; ms: number; what: string; signal: AbortSignal; soft?: boolean },
  ): Promise<Stamped[]> {
    const end = performance.now() + opts.ms;
    while (true) {
      const got = this.filter(pred, opts.from ?? 0);
      if (got.length >= n) return got;
      throwIfAborted(opts.signal);
      const left = end - performance.now();
      if (left <= 0 || this.#ended) {
        if (opts.soft) return got;
        throw new StepError(
          `${opts.what}: ${got.length} of ${n} ${
            this.#ended ? "before the event stream ended" : `within ${opts.ms} ms`
          }`,
        );
      }
      await this.#next(left, opts.signal);
    }
  }

  #next(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        signal.removeEventListener("abort", wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiters.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason;
}

/** `p` within `ms`, or a StepError naming `what`; an abort rejects with its reason at once. */
function within<T>(p: Promise<T>, ms: number, what: string, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => finish(() => reject(signal.reason));
    const timer = setTimeout(
      () => finish(() => reject(new StepError(`${what}: not within ${ms} ms`))),
      ms,
    );
    let settled = false;
    function finish(f: () => void) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      f();
    }
    signal.addEventListener("abort", onAbort, { once: true });
    p.then((v) => finish(() => resolve(v)), (e) => finish(() => reject(e)));
  });
}

// ---------------------------------------------------------------------------------------------
// Output helpers

const short = (hex: string, n = 8) => `${hex.slice(0, n)}…`;
const ms1 = (ms: number) => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const round1 = (x: number) => Math.round(x * 10) / 10;
const hexByte = (n: number) => n.toString(16).padStart(2, "0");

/** A custom packet: its id, a 16-bit sequence number, then filler up to `size` bytes. */
function customPacket(id: number, seq: number, size: number): string {
  let s = hexByte(id) + hexByte(seq >> 8) + hexByte(seq & 0xff);
  for (let i = 3; i < size; i++) s += hexByte((seq + i) & 0xff);
  return s;
}

function seqOf(hex: string): number {
  return parseInt(hex.slice(2, 6), 16);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------
// The run

interface Options {
  keep: boolean;
  json: boolean;
}

interface ProcInfo {
  proc: ManagedProcess;
  /** Set once we decided to stop it: its exit is then expected. */
  stopping: boolean;
  stop?: StopResult;
}

export interface DemoIo {
  /** The narrative (stdout, or stderr with --json). */
  say: (line: string) => void;
  /** The JSON summary (stdout). */
  stdout: (text: string) => void;
  /** Failures and warnings. */
  stderr: (text: string) => void;
}

class Demo {
  readonly t0 = performance.now();
  readonly abort = new AbortController();
  readonly procs = new Map<string, ProcInfo>();
  readonly clients: ControlClient[] = [];
  readonly narrative: string[] = [];
  readonly summary: Record<string, unknown> = {};
  step = "starting";
  tmp: string | null = null;
  interrupted: Interrupted | null = null;

  constructor(readonly opts: Options, readonly io: DemoIo) {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  now(): number {
    return performance.now() - this.t0;
  }

  /** The next step (named in a failure); a Ctrl-C that came in between stops here. */
  enter(step: string): void {
    this.step = step;
    throwIfAborted(this.signal);
  }

  /** A narrative line stamped with the time since the start. */
  at(ms: number, text: string): void {
    this.line(`${secs(ms).padStart(7)}  ${text}`);
  }

  line(text: string): void {
    this.narrative.push(text);
    this.io.say(text);
  }

  interrupt(signal: Deno.Signal): void {
    if (this.interrupted !== null) {
      // A second Ctrl-C: no more grace periods.
      for (const p of this.procs.values()) p.proc.forceKill();
      return;
    }
    this.interrupted = new Interrupted(signal);
    this.abort.abort(this.interrupted);
  }

  spawn(name: string, args: string[]): ManagedProcess {
    const proc = ManagedProcess.spawn({ name, args, env: { NO_COLOR: "1" } });
    const info: ProcInfo = { proc, stopping: false };
    this.procs.set(name, info);
    proc.exited.then((s) => {
      if (!info.stopping && !this.signal.aborted) {
        this.abort.abort(
          new StepError(`${name} (pid ${proc.pid}) exited on its own: ${statusText(s)}`),
        );
      }
    });
    return proc;
  }

  async stopProc(name: string, signal: Deno.Signal = "SIGTERM"): Promise<StopResult> {
    const info = this.procs.get(name)!;
    info.stopping = true;
    info.stop = await info.proc.stop(signal, LIMIT.stopGrace);
    return info.stop;
  }

  /** A request that must succeed (`what` names it in errors; `cmd` by default). */
  async request<T>(
    client: ControlClient,
    who: string,
    what: string,
    params = {},
    cmd = what,
  ): Promise<T> {
    const r = await within(
      client.request(cmd, params, { timeoutMs: LIMIT.request }),
      LIMIT.request + 500,
      `${who}: ${what}`,
      this.signal,
    );
    if (!r.ok) throw new StepError(`${who}: ${what}: ${r.error.code}: ${r.error.message}`);
    return r.result as T;
  }

  async run(): Promise<void> {
    const { signal } = this;
    this.line("toxtcp demo — everything on 127.0.0.1, nothing from the internet");

    this.enter("creating the temp dir");
    const tmp = await Deno.makeTempDir({ prefix: "toxtcp-demo-" });
    this.tmp = tmp;
    await Deno.chmod(tmp, 0o700);
    this.summary.temp_dir = tmp;
    const capture = `${tmp}/alice.pcapng`;
    const keylog = `${tmp}/alice.keys.log`;

    // -- the relay
    this.enter("starting the relay");
    const relay = this.spawn("relay", [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      `${ROOT}daemon/shell/relay_main.ts`,
      "--port",
      "0",
    ]);
    const listening = JSON.parse(
      await relay.waitForLine(
        (l) => l.includes('"listening"'),
        LIMIT.relayListening,
        signal,
      ),
    ) as { host: string; port: number; public_key: string };
    const relayUp = this.now();
    const relaySpec = `${listening.host}:${listening.port}:${listening.public_key}`;
    this.summary.relay = { ...listening, pid: relay.pid, listening_ms: round1(relayUp) };
    this.at(
      relayUp,
      `relay ${short(listening.public_key)} listening on ${listening.host}:${listening.port}` +
        ` (our relay, pid ${relay.pid})`,
    );

    // -- the daemons
    this.enter("starting the daemons");
    const daemonArgs = (name: Name, extra: string[] = []) => [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-net",
      "--allow-env",
      `${ROOT}daemon/shell/main.ts`,
      "--data-dir",
      `${tmp}/${name}`,
      "--socket",
      `${tmp}/${name}.sock`,
      "--relay",
      relaySpec,
      "--name",
      name,
      "--log-level",
      "debug",
      ...extra,
    ];
    const procs = {
      alice: this.spawn("alice", daemonArgs("alice", ["--capture", capture, "--keylog", keylog])),
      bob: this.spawn("bob", daemonArgs("bob")),
    };
    const daemonStart = this.now();
    const clients = {} as Record<Name, ControlClient>;
    const logs = {} as Record<Name, EventLog>;
    const selves = {} as Record<Name, SelfInfo>;
    const upAt = {} as Record<Name, number>;
    await Promise.all((["alice", "bob"] as const).map(async (name) => {
      const client = await this.connect(`${tmp}/${name}.sock`, name);
      this.clients.push(client);
      clients[name] = client;
      logs[name] = new EventLog(name, client, () => this.now());
      await this.request(client, name, "subscribe");
      selves[name] = await this.request<SelfInfo>(client, name, "self");
      upAt[name] = this.now();
    }));
    const { alice, bob } = selves;
    this.summary.daemons = Object.fromEntries((["alice", "bob"] as const).map((n) => [n, {
      pid: procs[n].pid,
      address: selves[n].address,
      public_key: selves[n].public_key,
      dht_public_key: selves[n].dht_public_key,
      up_ms: round1(upAt[n]),
    }]));
    this.at(
      Math.max(upAt.alice, upAt.bob),
      `alice up (Tox ID ${short(alice.address, 12)}), bob up (Tox ID ${short(bob.address, 12)})` +
        ` — ${ms1(upAt.alice - daemonStart)} / ${ms1(upAt.bob - daemonStart)} from spawn`,
    );

    this.enter("connecting the daemons to the relay");
    const confirmed = await Promise.all(
      (["alice", "bob"] as const).map((n) => this.relayConfirmed(clients[n], n, listening)),
    );
    this.at(
      Math.max(...confirmed),
      `both on the relay (confirmed: alice at ${secs(confirmed[0])},` +
        ` bob at ${secs(confirmed[1])})`,
    );

    // -- friends
    this.enter("adding friends");
    const fromA = logs.alice.length;
    const fromB = logs.bob.length;
    const addAt = this.now();
    await this.request(clients.alice, "alice", "friend.add", {
      public_key: bob.address,
      dht_public_key: bob.dht_public_key,
      relays: [relaySpec],
    });
    await this.request(clients.bob, "bob", "friend.add", { public_key: alice.address });
    this.at(
      addAt,
      "alice adds bob (with his DHT key and the relay as the hint); bob adds alice by her Tox ID",
    );

    this.enter("alice and bob coming online");
    const isOnline = (pk: string) => (e: ControlEvent) =>
      e.event === "friend_online" && e.public_key === pk;
    const [onA, onB] = await Promise.all([
      logs.alice.waitFor(isOnline(bob.public_key), {
        from: fromA,
        ms: LIMIT.online,
        what: "alice sees bob online",
        signal,
      }),
      logs.bob.waitFor(isOnline(alice.public_key), {
        from: fromB,
        ms: LIMIT.online,
        what: "bob sees alice online",
        signal,
      }),
    ]);
    const onlineAt = Math.max(onA.at, onB.at);
    const stages = logs.alice.filter(
      (e) => e.event === "friend_progress" && e.public_key === bob.public_key,
      fromA,
    ).map((s) => `${s.e.progress} +${Math.round(s.at - addAt)}`);
    this.summary.online = {
      alice_sees_bob: true,
      bob_sees_alice: true,
      alice_ms: round1(onA.at - addAt),
      bob_ms: round1(onB.at - addAt),
      alice_progress: stages,
    };
    this.at(
      onlineAt,
      `alice and bob are online to each other (${secs(onlineAt - addAt)} after the adds;` +
        ` alice saw bob at +${Math.round(onA.at - addAt)} ms, bob saw alice at +${
          Math.round(onB.at - addAt)
        } ms)`,
    );
    if (stages.length > 0) {
      this.line(`           alice's progress for bob (ms): ${stages.join(", ")}`);
    }

    // -- messages
    this.enter("exchanging messages");
    const messages: Record<string, unknown>[] = [];
    for (const m of MESSAGES) {
      const from = selves[m.from];
      const to = selves[m.to];
      const fromIdx = logs[m.from].length;
      const toIdx = logs[m.to].length;
      const sentAt = this.now();
      const { receipt } = await this.request<{ receipt: number }>(clients[m.from], m.from, "send", {
        public_key: to.public_key,
        text: m.text,
        action: m.kind === "action",
      });
      const quoted = JSON.stringify(m.text);
      const [got, rec] = await Promise.all([
        logs[m.to].waitFor(
          (e) => e.event === "message" && e.public_key === from.public_key && e.text === m.text,
          { from: toIdx, ms: LIMIT.message, what: `${m.to} receives ${quoted}`, signal },
        ),
        logs[m.from].waitFor(
          (e) => e.event === "receipt" && e.public_key === to.public_key && e.receipt === receipt,
          { from: fromIdx, ms: LIMIT.message, what: `${m.from}'s receipt for ${quoted}`, signal },
        ),
      ]);
      if (got.e.kind !== m.kind) {
        throw new StepError(`${m.to} got ${quoted} as ${got.e.kind}, not ${m.kind}`);
      }
      messages.push({
        from: m.from,
        to: m.to,
        text: m.text,
        kind: m.kind,
        receipt,
        delivered: true,
        receipt_received: true,
        delivered_ms: round1(got.at - sentAt),
        receipt_ms: round1(rec.at - sentAt),
      });
      const arrow = m.kind === "action" ? `* ${m.from} ${m.text}` : quoted;
      this.at(
        sentAt,
        `${m.from} → ${m.to} ${arrow}: delivered after ${ms1(got.at - sentAt)},` +
          ` receipt after ${ms1(rec.at - sentAt)}`,
      );
    }
    this.summary.messages = messages;

    // -- custom packets
    this.enter("sending custom lossless packets");
    this.summary.lossless = await this.customFlow(LOSSLESS, true, selves, clients, logs);
    this.enter("sending custom lossy packets");
    this.summary.lossy = await this.customFlow(LOSSY, false, selves, clients, logs);

    // -- stop: bob first, so alice sees him go
    this.enter("stopping bob");
    const aliceIdx = logs.alice.length;
    const bobStopAt = this.now();
    await clients.bob.close();
    const bobStop = await this.stopProc("bob");
    const bobStopped = this.now();
    if (bobStop.code !== 0 || bobStop.killed) {
      throw new StepError(`bob did not stop cleanly: ${statusText(bobStop)}`);
    }
    const offline = await logs.alice.waitFor(
      (e) => e.event === "friend_offline" && e.public_key === bob.public_key,
      { from: aliceIdx, ms: LIMIT.offline, what: "alice sees bob offline", signal },
    );
    this.summary.offline = {
      bob_exit_ms: round1(bobStopped - bobStopAt),
      alice_sees_bob_offline_ms: round1(offline.at - bobStopAt),
      reason: offline.e.reason ?? null,
    };
    this.at(
      bobStopAt,
      `bob stops (SIGTERM: exit 0 after ${ms1(bobStopped - bobStopAt)});` +
        ` alice sees him offline after ${ms1(offline.at - bobStopAt)}` +
        (offline.e.reason ? ` (${offline.e.reason})` : ""),
    );

    this.enter("stopping alice and the relay");
    await clients.alice.close();
    const aliceStopAt = this.now();
    const aliceStop = await this.stopProc("alice");
    if (aliceStop.code !== 0 || aliceStop.killed) {
      throw new StepError(`alice did not stop cleanly: ${statusText(aliceStop)}`);
    }
    const relayStopAt = this.now();
    const relayStop = await this.stopProc("relay");
    if (relayStop.code !== 0 || relayStop.killed) {
      throw new StepError(`the relay did not stop cleanly: ${statusText(relayStop)}`);
    }
    const relayStopped = this.now();
    const relayStats = stoppedStats(relay.stdoutLines);
    (this.summary.relay as Record<string, unknown>).stats = relayStats;
    const forwarded = typeof relayStats?.dataForwarded === "number"
      ? `; it forwarded ${relayStats.dataForwarded} DATA` +
        (typeof relayStats.oobForwarded === "number"
          ? ` and ${relayStats.oobForwarded} OOB packets`
          : " packets")
      : "";
    this.at(
      aliceStopAt,
      `alice stops (exit 0 after ${ms1(relayStopAt - aliceStopAt)}),` +
        ` the relay stops (exit 0 after ${ms1(relayStopped - relayStopAt)}${forwarded})`,
    );

    // -- decode
    this.enter("decoding the capture");
    this.summary.capture = await this.decode(
      capture,
      keylog,
      `${listening.host}:${listening.port}`,
    );
  }

  /** Connects to a daemon's control socket once it answers (bounded). */
  async connect(path: string, name: string): Promise<ControlClient> {
    const end = performance.now() + LIMIT.daemonUp;
    while (true) {
      throwIfAborted(this.signal);
      try {
        return await ControlClient.connect(path);
      } catch (e) {
        if (performance.now() > end) {
          throw new StepError(
            `${name}'s control socket: not up within ${LIMIT.daemonUp} ms (${errText(e)})`,
          );
        }
      }
      await sleep(25, this.signal);
    }
  }

  /** Polls `relays` until our relay is `confirmed`; the time it was seen so. */
  async relayConfirmed(
    client: ControlClient,
    name: string,
    relay: { public_key: string },
  ): Promise<number> {
    const end = performance.now() + LIMIT.relayConfirmed;
    let last = "?";
    while (true) {
      const relays = await this.request<{ public_key: string; state: string }[]>(
        client,
        name,
        "relays",
      );
      const ours = relays.find((r) => r.public_key === relay.public_key);
      last = ours?.state ?? "not listed";
      if (last === "confirmed") return this.now();
      if (performance.now() > end) {
        throw new StepError(
          `${name}: the relay is not confirmed within ${LIMIT.relayConfirmed} ms (state ${last})`,
        );
      }
      await sleep(25, this.signal);
      throwIfAborted(this.signal);
    }
  }

  async customFlow(
    flow: typeof LOSSLESS | typeof LOSSY,
    lossless: boolean,
    selves: Record<Name, SelfInfo>,
    clients: Record<Name, ControlClient>,
    logs: Record<Name, EventLog>,
  ): Promise<Record<string, unknown>> {
    const from = flow.from as Name;
    const to = flow.to as Name;
    const toIdx = logs[to].length;
    const cmd = lossless ? "send.lossless" : "send.lossy";
    const idHex = hexByte(flow.id);
    const matches = (e: ControlEvent) =>
      e.event === "custom_packet" && e.public_key === selves[from].public_key &&
      e.lossless === lossless && typeof e.data === "string" && e.data.startsWith(idHex);
    const start = this.now();
    // Pipelined, at most SEND_WINDOW requests in flight: the daemon answers (and queues) them in
    // order. A full queue (`queue_full`) cannot happen at these counts; if it does, the step fails.
    let sent = 0;
    let failed: unknown = null;
    const window: Promise<void>[] = [];
    for (let seq = 0; seq < flow.count && failed === null; seq++) {
      const params = {
        public_key: selves[to].public_key,
        data: customPacket(flow.id, seq, flow.size),
      };
      window.push(
        this.request<{ sent: boolean }>(clients[from], from, `${cmd} #${seq}`, params, cmd)
          .then((r) => {
            if (r.sent) sent++;
          }, (e) => {
            failed ??= e;
          }),
      );
      if (window.length >= SEND_WINDOW) await window.shift();
    }
    await Promise.all(window);
    if (failed !== null) throw failed;
    const sentAt = this.now();
    const got = await logs[to].waitForCount(matches, lossless ? flow.count : sent, {
      from: toIdx,
      ms: lossless ? LIMIT.custom : LIMIT.lossyTail,
      what: `${to} receives ${flow.from}'s ${lossless ? "lossless" : "lossy"} packets`,
      signal: this.signal,
      soft: !lossless,
    });
    const seqs = got.map((s) => seqOf(s.e.data as string));
    const inOrder = seqs.every((s, i) => i === 0 || s > seqs[i - 1]);
    const allInOrder = lossless ? seqs.every((s, i) => s === i) : inOrder;
    const doneAt = got.length > 0 ? got[got.length - 1].at : sentAt;
    const elapsed = doneAt - start;
    const kind = lossless ? "lossless" : "lossy";
    const result = {
      from,
      to,
      id: flow.id,
      size: flow.size,
      count: flow.count,
      sent,
      received: got.length,
      in_order: allInOrder,
      all_arrived: got.length === flow.count,
      ms: round1(elapsed),
      packets_per_s: elapsed > 0 ? Math.round(got.length / (elapsed / 1000)) : null,
    };
    if (lossless && !allInOrder) {
      throw new StepError(`lossless packets arrived out of order: ${seqs.slice(0, 20).join(",")}…`);
    }
    if (!lossless && got.length === 0) {
      throw new StepError(`none of ${sent} lossy packets arrived within ${LIMIT.lossyTail} ms`);
    }
    this.at(
      start,
      `custom ${kind}: ${flow.count} packets of ${flow.size} B, id ${flow.id}, ${from} → ${to}: ` +
        (lossless
          ? `all ${got.length} arrived in order`
          : `${sent} sent, ${got.length} arrived${inOrder ? " (in order)" : ""}`) +
        ` (${ms1(elapsed)}` +
        (result.packets_per_s !== null ? `, ${result.packets_per_s} packets/s)` : ")"),
    );
    return result;
  }

  async decode(
    capture: string,
    keylog: string,
    relayEndpoint: string,
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
        this.signal,
      );
      if (code !== 0) throw new StepError(`decode ${args.join(" ")}: exit ${code}: ${err.trim()}`);
      return out;
    };
    const started = this.now();
    const stats = JSON.parse(await run(["--stats", "--json"])) as {
      capture: { packets: number; bytes: number; duration_s: number; tox_streams: number };
      streams: { stream: number; keyed: boolean; handshake_ms: number | null }[];
      types: { type: string; from: string; packets: number }[];
      sessions: { data_packets: number; decrypted: number; handshake_ms: number | null }[];
    };
    const lines = (await run([])).split("\n").filter((l) => l !== "");
    const decodeMs = this.now() - started;
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
    this.at(
      started,
      `capture: ${c.packets} packets (${size} bytes) in ${capture}, decoded with the key log` +
        ` (${keylogLines} lines) in ${ms1(decodeMs)}:`,
    );
    this.line(
      `           ${c.tox_streams} relay stream${
        c.tox_streams === 1 ? "" : "s"
      } (${keyed} keyed),` +
        ` ${stats.sessions.length} net_crypto session${stats.sessions.length === 1 ? "" : "s"},` +
        ` ${decrypted} of ${dataPackets} data packets decrypted, ${visible.length} of ${MESSAGES.length}` +
        " message texts visible",
    );
    const byType = new Map<string, number>();
    for (const t of stats.types) byType.set(t.type, (byType.get(t.type) ?? 0) + t.packets);
    const top = [...byType].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([t, n]) => `${t} ×${n}`);
    if (top.length > 0) this.line(`           most frequent: ${top.join(", ")}`);
    const shown = pickLines(lines).map((l) => compact(l, relayEndpoint));
    for (const l of shown) this.line(`    ${l}`);

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

  /** Stops whatever still runs, closes the sockets, removes (or keeps) the temp dir. */
  async cleanup(): Promise<Record<string, unknown>> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
    // Daemons first (they tell friends and flush), then the relay.
    const order = [...this.procs.keys()].sort((a, b) =>
      (a === "relay" ? 1 : 0) - (b === "relay" ? 1 : 0)
    );
    const stopped: Record<string, unknown>[] = [];
    const daemons = order.filter((n) => n !== "relay");
    const stopOne = async (name: string) => {
      const info = this.procs.get(name)!;
      const r = info.stop ?? await this.stopProc(name);
      stopped.push({
        name,
        pid: info.proc.pid,
        code: r.code,
        signal: r.signal,
        killed: r.killed,
        exited_before: r.exitedBefore,
        alive: pidAlive(info.proc.pid),
      });
    };
    await Promise.all(daemons.map(stopOne));
    if (this.procs.has("relay")) await stopOne("relay");
    stopped.sort((a, b) => order.indexOf(a.name as string) - order.indexOf(b.name as string));

    let removed = false;
    let removeError: string | null = null;
    if (this.tmp !== null) {
      if (this.opts.keep) {
        for (const [name, info] of this.procs) {
          await Deno.writeTextFile(`${this.tmp}/${name}.log`, info.proc.log, { mode: 0o600 })
            .catch(() => {});
        }
      } else {
        try {
          await Deno.remove(this.tmp, { recursive: true });
          removed = true;
        } catch (e) {
          removeError = errText(e);
        }
      }
    }
    return {
      processes: stopped,
      processes_stopped: stopped.length,
      all_gone: stopped.every((p) => p.alive === false),
      temp_dir: this.tmp,
      temp_dir_removed: removed,
      temp_dir_kept: this.opts.keep && this.tmp !== null,
      remove_error: removeError,
    };
  }
}

/** The relay's counters from its `{"event":"stopped","stats":…}` line, if it printed one. */
function stoppedStats(lines: readonly string[]): Record<string, unknown> | null {
  for (const l of lines) {
    if (!l.includes('"stopped"')) continue;
    try {
      const j = JSON.parse(l);
      if (j?.event === "stopped" && j.stats !== null && typeof j.stats === "object") return j.stats;
    } catch { /* not the line we look for */ }
  }
  return null;
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

function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      keep: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  return { keep: values.keep === true, json: values.json === true };
}

function processIo(json: boolean): DemoIo {
  const encoder = new TextEncoder();
  const writer = (file: { writeSync(p: Uint8Array): number }) => (s: string) => {
    let bytes = encoder.encode(s);
    try {
      while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
    } catch {
      // a closed terminal or pipe: the demo still cleans up
    }
  };
  const out = writer(Deno.stdout);
  const err = writer(Deno.stderr);
  return { say: (l) => (json ? err : out)(l + "\n"), stdout: out, stderr: err };
}

export async function main(args: string[]): Promise<number> {
  let opts: Options | "help";
  try {
    opts = parseOptions(args);
  } catch (e) {
    console.error(`demo: ${errText(e)}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (opts === "help") {
    console.log(USAGE);
    return EXIT.ok;
  }
  const io = processIo(opts.json);
  const demo = new Demo(opts, io);
  const onInt = () => demo.interrupt("SIGINT");
  const onTerm = () => demo.interrupt("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);

  let failure: unknown = null;
  try {
    await demo.run();
  } catch (e) {
    failure = e;
    // Ctrl-C reaches the whole process group: a daemon ending on it may be noticed before our
    // own handler runs. Give the signal a moment to arrive before calling it a failure.
    if (!(e instanceof Interrupted)) await sleep(200);
  }
  if (failure !== null && demo.interrupted !== null) failure = demo.interrupted;
  if (failure instanceof Interrupted) {
    demo.line(`interrupted (${failure.signal}) during "${demo.step}": stopping everything`);
  } else if (failure !== null) {
    io.stderr(`\ndemo FAILED at step "${demo.step}": ${errText(failure)}\n`);
    if (!(failure instanceof StepError) && failure instanceof Error && failure.stack) {
      io.stderr(`${failure.stack}\n`);
    }
    for (const [name, info] of demo.procs) {
      const st = info.proc.status;
      io.stderr(
        `\n--- ${name} (pid ${info.proc.pid}, ${
          st ? statusText(st) : "running"
        }): last lines ---\n`,
      );
      io.stderr(info.proc.tail(15).map((l) => `  ${l}`).join("\n") + "\n");
    }
  }

  const cleaning = demo.now();
  let cleanup: Record<string, unknown>;
  try {
    cleanup = await demo.cleanup();
  } catch (e) {
    cleanup = { error: errText(e) };
  }
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  const n = cleanup.processes_stopped ?? 0;
  demo.at(
    cleaning,
    `cleaned up: ${n} process${n === 1 ? "" : "es"} stopped` +
      (cleanup.all_gone === false ? " (SOME STILL RUN)" : "") +
      (cleanup.temp_dir_kept
        ? `, temp dir kept: ${cleanup.temp_dir}`
        : cleanup.temp_dir_removed
        ? ", temp dir removed"
        : cleanup.remove_error
        ? `, temp dir NOT removed: ${cleanup.remove_error}`
        : ""),
  );
  const total = demo.now();
  // Ctrl-C during the clean-up of a run that went well still means "interrupted".
  if (failure === null && demo.interrupted !== null) failure = demo.interrupted;
  const cleanFailed = cleanup.all_gone === false || cleanup.remove_error != null ||
    cleanup.error !== undefined;
  if (failure === null && cleanFailed) failure = new StepError("clean-up failed");
  if (failure === null) demo.line(`done in ${secs(total)}`);
  if (cleanup.temp_dir_kept && demo.summary.capture !== undefined) {
    const t = cleanup.temp_dir;
    demo.line(`decode it again: deno task decode ${t}/alice.pcapng --keylog ${t}/alice.keys.log`);
  }

  const code = failure instanceof Interrupted
    ? (failure.signal === "SIGTERM" ? EXIT.terminated : EXIT.interrupted)
    : failure !== null
    ? EXIT.failed
    : EXIT.ok;
  if (opts.json) {
    io.stdout(
      JSON.stringify({
        ok: failure === null,
        exit_code: code,
        interrupted: failure instanceof Interrupted,
        failed_step: failure !== null && !(failure instanceof Interrupted) ? demo.step : null,
        error: failure !== null ? errText(failure) : null,
        total_ms: round1(total),
        ...demo.summary,
        cleanup,
        narrative: demo.narrative,
      }) + "\n",
    );
  }
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

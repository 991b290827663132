/**
 * Driver for tox_peer.c: a real c-toxcore 0.2.18 peer (Debian's libtoxcore) with UDP, IPv6,
 * LAN discovery and hole punching off, fresh keys each run, driven over a line protocol on its
 * stdin/stdout. Used by the interop tests and the benchmark (nothing here depends on Deno.test).
 *
 * Line grammar (one line each, binary as lower-case hex; <n> is a friend number, <ms> is
 * milliseconds since the peer started on its monotonic clock, with 3 decimals):
 *
 * commands (stdin)                  reply (stdout)
 *   add <real_pk_hex>                 ok add <n>          (tox_friend_add_norequest, no request)
 *   request <address_hex> <msg_hex>   ok request <n> <real_pk_hex>
 *                                     error request <TOX_ERR_FRIEND_ADD_*> | bad_address
 *                                     (tox_friend_add: a friend request to a 76-hex Tox ID;
 *                                      no <msg_hex> = empty message, refused by toxcore)
 *   accept <real_pk_hex>              ok accept <n>
 *                                     error accept no_request | <TOX_ERR_FRIEND_ADD_*>
 *                                     (tox_friend_add_norequest of a key that sent us a
 *                                      friend_request not yet accepted; nothing is auto-accepted)
 *   send <n> <normal|action> <hex>    ok send <message_id>
 *   name <hex>                        ok name
 *   status_message <hex>              ok status_message
 *   user_status <0|1|2>               ok user_status
 *   typing <n> <0|1>                  ok typing
 *   lossless <n> <hex>                ok lossless          (one custom lossless packet, id 160..191)
 *   lossy <n> <hex>                   ok lossy             (one custom lossy packet, id 200..254)
 *   burst <n> <count> <size> <id>     ok burst <count> <elapsed_ms> <sendq_retries>
 *                                     error burst <ERR> <sent_so_far>
 *                                     (while it runs, once a second:
 *                                      burst_progress <n> <sent> <count> <elapsed_ms> <sendq_retries>)
 *   stats <n>                         stats <n> <received> <in_order> <out_of_order> <first_ms>
 *                                       <last_ms> <duplicates> <gaps> <short> <sent_seq>
 *   verbose <0|1>                     ok verbose <0|1>
 *   dht_id                            ok dht_id <dht_id_hex>
 *   ping                              ok ping <now_ms>
 *   quit                              ok quit, then tox_kill and exit 0 (EOF on stdin = quit)
 *   anything else                     error <cmd> unknown_command
 * Every command gets exactly one reply, in order: `ok <cmd> ...`, `error <cmd> <reason>` (a
 * TOX_ERR_* name, or usage / bad_number / bad_hex / bad_key_length / bad_size / ...), or for
 * `stats` the `stats` line. A line over 64 KiB is answered with `error line too_long`.
 *
 * events (stdout)
 *   ready <real_pk_hex> <dht_id_hex> <tox_address_hex> <ms>   once, first line; <ms>: tox_new
 *                                                             returned
 *   self <none|tcp|udp> <ms>
 *   friend <n> <none|tcp|udp> <ms>
 *   friend_request <real_pk_hex> <message_hex> <ms>
 *   message <n> <normal|action> <text_hex>
 *   receipt <n> <message_id>
 *   name <n> <hex>
 *   status_message <n> <hex>
 *   user_status <n> <0|1|2>
 *   typing <n> <0|1>
 *   lossy <n> <hex>
 *   lossless <n> <hex>             only after `verbose 1`; always counted for `stats`
 *
 * Custom lossless packets carry [id][u32 BE sequence][filler]; per friend the peer counts
 * received, in order (seq == next expected), out of order (duplicates: seq below the next
 * expected; gaps: numbers skipped by a jump ahead), short packets (< 5 bytes, not sequenced) and
 * the first and last arrival times. `burst` numbers its packets per friend from 0, continuing
 * across bursts, and retries on TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ while iterating toxcore.
 */
import { fromHex, toHex } from "../../daemon/core/common/crypto.ts";
import { type Bootstrapd, startBootstrapd, trackHarnessProcess } from "./harness.ts";

const SOURCE_URL = new URL("./tox_peer.c", import.meta.url);
const TARGET_DIR_URL = new URL("../../target/", import.meta.url);
const BINARY_URL = new URL("./tox_peer", TARGET_DIR_URL);

const READY_TIMEOUT_MS = 5_000;
const COMMAND_TIMEOUT_MS = 10_000;
const QUIT_GRACE_MS = 2_000;
const TERM_GRACE_MS = 1_000;
const EVENT_HISTORY_LIMIT = 50_000;
const RECENT_LINES = 60;
const STDERR_LIMIT_CHARS = 64 * 1024;

const path = (u: URL) => decodeURIComponent(u.pathname);

// ---------------------------------------------------------------------------------------------
// Build

let building: Promise<string> | null = null;
/** The source mtime the build in `building` was started for. */
let buildingFor: number | null = null;

function mtime(p: string): number | null {
  try {
    return Deno.statSync(p).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function toxcoreFlags(): Promise<string[]> {
  try {
    const out = await new Deno.Command("pkg-config", {
      args: ["--cflags", "--libs", "toxcore"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (out.success) {
      const flags = new TextDecoder().decode(out.stdout).trim().split(/\s+/).filter((f) => f);
      if (flags.length > 0) return flags;
    }
  } catch {
    // no pkg-config: fall back
  }
  return ["-ltoxcore"];
}

async function compile(): Promise<string> {
  const src = path(SOURCE_URL);
  const bin = path(BINARY_URL);
  const srcTime = mtime(src);
  if (srcTime === null) throw new Error(`tox_peer: source ${src} not found`);
  const binTime = mtime(bin);
  if (binTime !== null && binTime >= srcTime) return bin;
  await Deno.mkdir(path(TARGET_DIR_URL), { recursive: true });
  // Build next to the target and rename, so concurrent builds never see a half-written binary.
  const tmp = `${bin}.${Deno.pid}.${Date.now()}.tmp`;
  const args = ["-Wall", "-Wextra", "-O2", "-o", tmp, src, ...(await toxcoreFlags())];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("gcc", { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .output();
  } catch (e) {
    throw new Error(`tox_peer: cannot run gcc: ${e instanceof Error ? e.message : e}`);
  }
  const dec = new TextDecoder();
  if (!out.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(
      `tox_peer: gcc ${args.join(" ")} failed (code ${out.code}):\n` +
        dec.decode(out.stdout) + dec.decode(out.stderr),
    );
  }
  await Deno.rename(tmp, bin);
  return bin;
}

/** Compile tox_peer.c into target/tox_peer (once per process, again if the .c is newer). */
export function buildToxPeer(): Promise<string> {
  const bin = path(BINARY_URL);
  const srcTime = mtime(path(SOURCE_URL));
  const binTime = mtime(bin);
  const fresh = srcTime !== null && binTime !== null && binTime >= srcTime;
  // A build already under way for this source is shared: two peers started together would
  // otherwise compile twice and the first one would wait for both.
  if (building === null || (!fresh && buildingFor !== srcTime)) {
    const p = compile();
    building = p;
    buildingFor = srcTime;
    p.catch(() => {
      if (building === p) building = null;
    });
  }
  return building;
}

// ---------------------------------------------------------------------------------------------
// Events

export type ToxConnection = "none" | "tcp" | "udp";

export interface ToxPeerStats {
  friend: number;
  received: number;
  inOrder: number;
  outOfOrder: number;
  /** ms since the peer started (its monotonic clock); -1 before the first packet. */
  firstMs: number;
  lastMs: number;
  duplicates: number;
  gaps: number;
  shortPackets: number;
  /** The next sequence number our bursts to this friend will use (= packets burst so far). */
  sentSeq: number;
}

interface EventBase {
  /** Position in this peer's event stream (0 = ready). */
  seq: number;
  /** performance.now() when the line was read. */
  at: number;
  line: string;
}

export type ToxPeerEvent =
  & EventBase
  & (
    | {
      type: "ready";
      realPublicKey: string;
      dhtPublicKey: string;
      /** The Tox ID: public key, nospam, checksum (76 hex). */
      address: string;
      /** The peer's clock when tox_new returned. */
      toxNewMs: number;
    }
    // peerMs: the peer's own clock (ms since it started) when toxcore called back.
    | { type: "self"; connection: ToxConnection; peerMs: number }
    | { type: "friend"; friend: number; connection: ToxConnection; peerMs: number }
    | {
      type: "friend_request";
      publicKey: string;
      data: Uint8Array;
      text: string;
      peerMs: number;
    }
    | {
      type: "message";
      friend: number;
      kind: "normal" | "action";
      data: Uint8Array;
      text: string;
    }
    | { type: "receipt"; friend: number; messageId: number }
    | { type: "name"; friend: number; data: Uint8Array; text: string }
    | { type: "status_message"; friend: number; data: Uint8Array; text: string }
    | { type: "user_status"; friend: number; status: 0 | 1 | 2 }
    | { type: "typing"; friend: number; typing: boolean }
    | { type: "lossy"; friend: number; data: Uint8Array }
    | { type: "lossless"; friend: number; data: Uint8Array }
    | {
      type: "burst_progress";
      friend: number;
      sent: number;
      count: number;
      elapsedMs: number;
      sendqRetries: number;
    }
    | { type: "ok"; command: string; args: string[] }
    | { type: "error"; command: string; reason: string; args: string[] }
    | { type: "stats"; stats: ToxPeerStats }
    | { type: "unknown" }
  );

export type ToxPeerEventType = ToxPeerEvent["type"];

export type FriendRequestEvent = Extract<ToxPeerEvent, { type: "friend_request" }>;

const utf8 = new TextDecoder();

function num(s: string | undefined): number {
  const n = Number(s);
  if (s === undefined || s === "" || !Number.isFinite(n)) throw new TypeError(`bad number ${s}`);
  return n;
}

function conn(s: string | undefined): ToxConnection {
  if (s === "none" || s === "tcp" || s === "udp") return s;
  throw new TypeError(`bad connection ${s}`);
}

type EventBody = ToxPeerEvent extends infer E ? E extends EventBase ? Omit<E, keyof EventBase>
  : never
  : never;

/** Parse one stdout line of tox_peer (unparseable lines become { type: "unknown" }). */
export function parseToxPeerLine(line: string, seq = 0, at = 0): ToxPeerEvent {
  const base = { seq, at, line };
  try {
    return { ...base, ...parseBody(line.split(" ")) } as ToxPeerEvent;
  } catch {
    return { ...base, type: "unknown" };
  }
}

function parseBody(w: string[]): EventBody {
  const hex = (s: string | undefined) => fromHex(s ?? "");
  switch (w[0]) {
    case "ready":
      if (w.length !== 5) break;
      return {
        type: "ready",
        realPublicKey: w[1],
        dhtPublicKey: w[2],
        address: w[3],
        toxNewMs: num(w[4]),
      };
    case "self":
      return { type: "self", connection: conn(w[1]), peerMs: num(w[2]) };
    case "friend":
      return { type: "friend", friend: num(w[1]), connection: conn(w[2]), peerMs: num(w[3]) };
    case "friend_request": {
      if (!/^[0-9a-f]{64}$/.test(w[1] ?? "")) break;
      const data = hex(w[2]);
      return {
        type: "friend_request",
        publicKey: w[1],
        data,
        text: utf8.decode(data),
        peerMs: num(w[3]),
      };
    }
    case "message": {
      const data = hex(w[3]);
      if (w[2] !== "normal" && w[2] !== "action") break;
      return { type: "message", friend: num(w[1]), kind: w[2], data, text: utf8.decode(data) };
    }
    case "receipt":
      return { type: "receipt", friend: num(w[1]), messageId: num(w[2]) };
    case "name":
    case "status_message": {
      const data = hex(w[2]);
      return { type: w[0], friend: num(w[1]), data, text: utf8.decode(data) };
    }
    case "user_status": {
      const status = num(w[2]);
      if (status !== 0 && status !== 1 && status !== 2) break;
      return { type: "user_status", friend: num(w[1]), status };
    }
    case "typing":
      return { type: "typing", friend: num(w[1]), typing: w[2] === "1" };
    case "lossy":
    case "lossless":
      return { type: w[0], friend: num(w[1]), data: hex(w[2]) };
    case "burst_progress":
      return {
        type: "burst_progress",
        friend: num(w[1]),
        sent: num(w[2]),
        count: num(w[3]),
        elapsedMs: num(w[4]),
        sendqRetries: num(w[5]),
      };
    case "ok":
      return { type: "ok", command: w[1] ?? "", args: w.slice(2) };
    case "error":
      return { type: "error", command: w[1] ?? "", reason: w[2] ?? "", args: w.slice(3) };
    case "stats":
      if (w.length < 11) break;
      return {
        type: "stats",
        stats: {
          friend: num(w[1]),
          received: num(w[2]),
          inOrder: num(w[3]),
          outOfOrder: num(w[4]),
          firstMs: num(w[5]),
          lastMs: num(w[6]),
          duplicates: num(w[7]),
          gaps: num(w[8]),
          shortPackets: num(w[9]),
          sentSeq: num(w[10]),
        },
      };
  }
  return { type: "unknown" };
}

// ---------------------------------------------------------------------------------------------
// Small timing helpers (every timer is cleared, for the sanitizers)

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    id = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(id);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// The peer

export interface RelaySpec {
  host: string;
  port: number;
  /** The relay's DHT public key, hex. */
  publicKey: string;
}

export interface ToxPeerOptions {
  relays: RelaySpec[];
  name?: string;
  /** Extra argv for tox_peer (e.g. "--log", "--no-bootstrap", "--no-tcp-relay"). */
  extraArgs?: string[];
  /** Deadline for the `ready` line (default 5000 ms). */
  readyTimeoutMs?: number;
}

export class ToxPeerError extends Error {}

/** An `error <command> <reason> ...` reply to a command sent with commandOk or a helper. */
export class ToxPeerCommandError extends ToxPeerError {
  constructor(
    message: string,
    readonly command: string,
    /** A TOX_ERR_* name or the peer's own reason (bad_address, no_request, ...). */
    readonly reason: string,
    readonly reply: string,
  ) {
    super(message);
  }
}

/** When something happened at a peer, on our clock and on its own. */
export interface PeerTime {
  /** performance.now() when the line was read. */
  at: number;
  /** From spawning the process (peer.startedAt) to `at`, on our clock. */
  sinceStartMs: number;
  /**
   * From tox_new returning to the callback, on the peer's clock: free of process start-up and
   * of the delay in reading its output.
   */
  sinceToxNewMs: number;
}

type TimedEvent = Extract<ToxPeerEvent, { peerMs: number }>;

interface Pending {
  command: string;
  resolve: (line: string) => void;
  reject: (e: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
  /** Timed out: the reply, if it ever comes, is consumed and dropped. */
  abandoned: boolean;
}

interface Waiter {
  pred: (e: ToxPeerEvent) => boolean;
  resolve: (e: ToxPeerEvent) => void;
  reject: (e: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
}

const livePeers = new Set<ToxPeer>();
let unloadHookInstalled = false;

function installUnloadHook(): void {
  if (unloadHookInstalled) return;
  unloadHookInstalled = true;
  globalThis.addEventListener("unload", () => {
    for (const p of livePeers) p.kill();
  });
}

export class ToxPeer {
  readonly pid: number;
  readonly name: string;
  /** Filled in from the `ready` line (hex, lower case). */
  realPublicKey = "";
  dhtPublicKey = "";
  /** Our Tox ID (76 hex): what a friend request is sent to. */
  address = "";
  /** performance.now() at spawn. */
  readonly startedAt = performance.now();
  /** The peer's clock when tox_new returned (from `ready`). */
  toxNewMs = 0;
  /** The first time the peer reported itself connected (`self tcp|udp`); null until then. */
  selfOnline: PeerTime | null = null;
  readonly #friendOnline = new Map<number, PeerTime>();
  /** Set once the process has exited. */
  exitStatus: Deno.CommandStatus | null = null;

  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #writeChain: Promise<void> = Promise.resolve();
  readonly #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  readonly #drains: Promise<void>[] = [];
  readonly #events: ToxPeerEvent[] = [];
  #eventCount = 0;
  readonly #recent: string[] = [];
  #stderr = "";
  readonly #pending: Pending[] = [];
  readonly #waiters = new Set<Waiter>();
  #stopping: Promise<void> | null = null;
  readonly #untrack: () => void;

  constructor(bin: string, args: string[], name: string) {
    installUnloadHook();
    this.name = name;
    this.#child = new Deno.Command(bin, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    livePeers.add(this);
    this.#untrack = trackHarnessProcess(this);
    this.#writer = this.#child.stdin.getWriter();
    this.#status = this.#child.status.then((s) => {
      this.exitStatus = s;
      livePeers.delete(this);
      return s;
    });
    const out = this.#child.stdout.getReader();
    const err = this.#child.stderr.getReader();
    this.#readers.push(out, err);
    this.#drains.push(
      this.#readLines(out, (l) => this.#onLine(l)),
      this.#readLines(err, (l) => this.#onStderr(l)),
    );
    // When stdout ends (process gone), nothing can answer any more.
    this.#drains[0].then(() => this.#failAll(`tox_peer ${this.name} closed its stdout`));
  }

  /** Everything parsed so far (the oldest are dropped past 50000 events). */
  get events(): readonly ToxPeerEvent[] {
    return this.#events;
  }

  /** The seq the next event will get (pass to waitFor to ignore what came before). */
  get nextSeq(): number {
    return this.#eventCount;
  }

  get alive(): boolean {
    return this.exitStatus === null;
  }

  /**
   * Per friend number, the first time the friend came online (later drops and reconnects are
   * in `events`): from startedAt, this is "start to friend online".
   */
  get friendOnline(): ReadonlyMap<number, PeerTime> {
    return this.#friendOnline;
  }

  /** An event that carries the peer's clock, on both clocks. */
  timeOf(e: TimedEvent): PeerTime {
    return {
      at: e.at,
      sinceStartMs: e.at - this.startedAt,
      sinceToxNewMs: e.peerMs - this.toxNewMs,
    };
  }

  describe(): string {
    return `tox_peer ${this.name} pid ${this.pid}`;
  }

  /** The last stdout lines and stderr, for error messages. */
  recentOutput(): string {
    const err = this.#stderr.split("\n").slice(-20).join("\n");
    return `--- ${this.describe()} stdout (last ${this.#recent.length} lines) ---\n` +
      this.#recent.join("\n") + (err.trim() ? `\n--- stderr ---\n${err}` : "");
  }

  stderr(): string {
    return this.#stderr;
  }

  async #readLines(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    onLine: (line: string) => void,
  ): Promise<void> {
    const dec = new TextDecoder();
    let partial = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        partial += dec.decode(value, { stream: true });
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          onLine(partial.slice(0, nl));
          partial = partial.slice(nl + 1);
        }
      }
    } catch {
      // cancelled or broken pipe
    } finally {
      partial += dec.decode();
      if (partial !== "") onLine(partial);
      try {
        reader.releaseLock();
      } catch {
        // already released
      }
    }
  }

  #onStderr(line: string): void {
    this.#stderr += line + "\n";
    if (this.#stderr.length > 2 * STDERR_LIMIT_CHARS) {
      this.#stderr = this.#stderr.slice(-STDERR_LIMIT_CHARS);
    }
  }

  #onLine(line: string): void {
    this.#recent.push(line.length > 300 ? `${line.slice(0, 300)}…` : line);
    if (this.#recent.length > RECENT_LINES) this.#recent.shift();
    const ev = parseToxPeerLine(line, this.#eventCount++, performance.now());
    if (ev.type === "ready") {
      this.realPublicKey = ev.realPublicKey;
      this.dhtPublicKey = ev.dhtPublicKey;
      this.address = ev.address;
      this.toxNewMs = ev.toxNewMs;
    } else if (ev.type === "self" && ev.connection !== "none") {
      this.selfOnline ??= this.timeOf(ev);
    } else if (ev.type === "friend" && ev.connection !== "none") {
      if (!this.#friendOnline.has(ev.friend)) this.#friendOnline.set(ev.friend, this.timeOf(ev));
    }
    this.#events.push(ev);
    if (this.#events.length > EVENT_HISTORY_LIMIT) {
      this.#events.splice(0, this.#events.length - EVENT_HISTORY_LIMIT);
    }
    if (ev.type === "ok" || ev.type === "error" || ev.type === "stats") {
      const p = this.#pending.shift();
      if (p !== undefined) {
        clearTimeout(p.timer);
        if (!p.abandoned) p.resolve(line);
      }
    }
    for (const w of this.#waiters) {
      let hit = false;
      try {
        hit = w.pred(ev);
      } catch (e) {
        this.#waiters.delete(w);
        clearTimeout(w.timer);
        w.reject(e instanceof Error ? e : new Error(String(e)));
        continue;
      }
      if (hit) {
        this.#waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(ev);
      }
    }
  }

  #failAll(why: string): void {
    const err = () => new ToxPeerError(`${why}\n${this.recentOutput()}`);
    for (const p of this.#pending.splice(0)) {
      clearTimeout(p.timer);
      if (!p.abandoned) p.reject(err());
    }
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(err());
    }
    this.#waiters.clear();
  }

  #write(text: string): Promise<void> {
    const data = new TextEncoder().encode(text);
    const next = this.#writeChain.then(() => this.#writer.write(data));
    this.#writeChain = next.catch(() => {});
    return next;
  }

  /**
   * Send one command line and resolve with its reply line (`ok ...`, `error ...` or `stats ...`;
   * an `error` reply resolves too). Rejects on timeout or if the peer exits.
   */
  command(line: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    if (line.includes("\n")) return Promise.reject(new TypeError("command contains a newline"));
    const command = line.trim().split(/\s+/)[0];
    if (command === "") return Promise.reject(new TypeError("empty command"));
    if (!this.alive || this.#stopping !== null) {
      return Promise.reject(
        new ToxPeerError(`${this.describe()} is not running (command ${command})`),
      );
    }
    return new Promise<string>((resolve, reject) => {
      const p: Pending = { command, resolve, reject, abandoned: false };
      p.timer = setTimeout(() => {
        p.abandoned = true;
        reject(
          new ToxPeerError(
            `${this.describe()}: no reply to "${line.slice(0, 100)}" within ${timeoutMs} ms\n` +
              this.recentOutput(),
          ),
        );
      }, timeoutMs);
      this.#pending.push(p);
      this.#write(line + "\n").catch((e) => {
        // The process is gone; #failAll will reject (or already did).
        if (!p.abandoned && this.#pending.includes(p)) {
          this.#pending.splice(this.#pending.indexOf(p), 1);
          clearTimeout(p.timer);
          reject(new ToxPeerError(`${this.describe()}: cannot write "${command}": ${e}`));
        }
      });
    });
  }

  /** As command, but an `error` reply throws; resolves with the words after `ok <cmd>`. */
  async commandOk(line: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string[]> {
    const reply = await this.command(line, timeoutMs);
    const w = reply.split(" ");
    if (w[0] === "error") {
      throw new ToxPeerCommandError(
        `${this.describe()}: "${line.slice(0, 100)}" failed: ${reply}`,
        w[1] ?? "",
        w[2] ?? "",
        reply,
      );
    }
    return w[0] === "ok" ? w.slice(2) : w.slice(1);
  }

  /**
   * The first event (at or after `fromSeq`, default: anything still in the history) for which
   * `pred` holds. Rejects after timeoutMs with the recent output, or when the peer exits.
   */
  waitFor<T extends ToxPeerEvent>(
    pred: (e: ToxPeerEvent) => e is T,
    timeoutMs: number,
    fromSeq?: number,
  ): Promise<T>;
  waitFor(
    pred: (e: ToxPeerEvent) => boolean,
    timeoutMs: number,
    fromSeq?: number,
  ): Promise<ToxPeerEvent>;
  waitFor(
    pred: (e: ToxPeerEvent) => boolean,
    timeoutMs: number,
    fromSeq = 0,
  ): Promise<ToxPeerEvent> {
    for (const e of this.#events) if (e.seq >= fromSeq && pred(e)) return Promise.resolve(e);
    if (!this.alive || this.#stopping !== null) {
      return Promise.reject(
        new ToxPeerError(`${this.describe()} is not running\n${this.recentOutput()}`),
      );
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { pred, resolve, reject };
      w.timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(
          new ToxPeerError(
            `${this.describe()}: awaited event not seen within ${timeoutMs} ms\n` +
              this.recentOutput(),
          ),
        );
      }, timeoutMs);
      this.#waiters.add(w);
    });
  }

  // --- helpers --------------------------------------------------------------------------------

  /** tox_friend_add_norequest; resolves with the friend number. */
  async addFriend(realPublicKeyHex: string): Promise<number> {
    const [n] = await this.commandOk(`add ${realPublicKeyHex}`);
    return num(n);
  }

  /**
   * tox_friend_add: a friend request to a Tox ID (76 hex); resolves with the friend number,
   * rejects with a ToxPeerCommandError whose `reason` is the TOX_ERR_FRIEND_ADD_* name (e.g.
   * TOX_ERR_FRIEND_ADD_BAD_CHECKSUM) or bad_address (not 76 hex).
   */
  async sendFriendRequest(address: string, message: string): Promise<number> {
    const [n] = await this.commandOk(
      `request ${address} ${toHex(new TextEncoder().encode(message))}`,
    );
    return num(n);
  }

  /**
   * The first friend_request event at or after `fromSeq` (from `publicKeyHex` if given);
   * timeOf(event) says when it came.
   */
  waitForFriendRequest(
    timeoutMs: number,
    fromSeq = 0,
    publicKeyHex?: string,
  ): Promise<FriendRequestEvent> {
    const want = publicKeyHex?.toLowerCase();
    return this.waitFor(
      (e): e is FriendRequestEvent =>
        e.type === "friend_request" && (want === undefined || e.publicKey === want),
      timeoutMs,
      fromSeq,
    );
  }

  /**
   * `accept`: tox_friend_add_norequest of a key that sent us a request; resolves with the
   * friend number. Rejects (reason no_request) if that key has not asked.
   */
  async acceptFriendRequest(publicKeyHex: string): Promise<number> {
    const [n] = await this.commandOk(`accept ${publicKeyHex}`);
    return num(n);
  }

  /** Resolves with the message id (match it against `receipt` events). */
  async sendMessage(
    friend: number,
    text: string | Uint8Array,
    kind: "normal" | "action" = "normal",
  ): Promise<number> {
    const data = typeof text === "string" ? new TextEncoder().encode(text) : text;
    const [id] = await this.commandOk(`send ${friend} ${kind} ${toHex(data)}`);
    return num(id);
  }

  async setName(name: string): Promise<void> {
    await this.commandOk(`name ${toHex(new TextEncoder().encode(name))}`);
  }

  async setStatusMessage(text: string): Promise<void> {
    await this.commandOk(`status_message ${toHex(new TextEncoder().encode(text))}`);
  }

  async setUserStatus(status: 0 | 1 | 2): Promise<void> {
    await this.commandOk(`user_status ${status}`);
  }

  async sendLossless(friend: number, data: Uint8Array): Promise<void> {
    await this.commandOk(`lossless ${friend} ${toHex(data)}`);
  }

  async sendLossy(friend: number, data: Uint8Array): Promise<void> {
    await this.commandOk(`lossy ${friend} ${toHex(data)}`);
  }

  async setVerbose(on: boolean): Promise<void> {
    await this.commandOk(`verbose ${on ? 1 : 0}`);
  }

  /**
   * Queue `count` custom lossless packets of `size` bytes ([id][u32 BE seq][filler]) to
   * `friend`. Resolves when toxcore accepted all of them (not when they arrived), with the
   * sender-side elapsed time and how often toxcore answered SENDQ. The peer handles no other
   * command until the burst is done (their replies queue up behind it).
   */
  async burst(
    friend: number,
    count: number,
    size: number,
    id = 160,
    timeoutMs = 30_000,
  ): Promise<{ count: number; ms: number; sendqRetries: number }> {
    const [c, ms, q] = await this.commandOk(`burst ${friend} ${count} ${size} ${id}`, timeoutMs);
    return { count: num(c), ms: num(ms), sendqRetries: num(q) };
  }

  async stats(friend: number, timeoutMs = COMMAND_TIMEOUT_MS): Promise<ToxPeerStats> {
    const reply = await this.command(`stats ${friend}`, timeoutMs);
    const ev = parseToxPeerLine(reply);
    if (ev.type !== "stats") throw new ToxPeerError(`${this.describe()}: stats: ${reply}`);
    return ev.stats;
  }

  /** Wait until `friend <n> tcp|udp` (bounded). Resolves with the event. */
  waitForFriendOnline(friend: number, timeoutMs: number, fromSeq = 0): Promise<ToxPeerEvent> {
    return this.waitFor(
      (e) => e.type === "friend" && e.friend === friend && e.connection !== "none",
      timeoutMs,
      fromSeq,
    );
  }

  /**
   * performance.now() minus this peer's clock (ms since its start), from a `ping` round trip,
   * so peer times (stats firstMs/lastMs) can be put on our clock: ours = theirs + offset.
   */
  async clockOffset(): Promise<number> {
    const t0 = performance.now();
    const [theirs] = await this.commandOk("ping");
    const t1 = performance.now();
    return (t0 + t1) / 2 - num(theirs);
  }

  /** SIGKILL now, without waiting (for unload hooks). */
  kill(): void {
    if (!this.alive) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  #signal(sig: Deno.Signal): void {
    if (!this.alive) return;
    try {
      this.#child.kill(sig);
    } catch {
      // exited meanwhile
    }
  }

  /**
   * `quit`, then SIGTERM after 2 s and SIGKILL 1 s later; reap; close the pipes. Idempotent,
   * never throws; pending commands and waiters are rejected.
   */
  stop(): Promise<void> {
    if (this.#stopping === null) {
      this.#stopping = (async () => {
        if (this.alive) {
          // Bounded: a peer that stopped reading must not block us.
          await settlesWithin(this.#write("quit\n").catch(() => {}), 500);
        }
        await settlesWithin(this.#writer.close().catch(() => {}), 500);
        if (!(await settlesWithin(this.#status, QUIT_GRACE_MS))) {
          this.#signal("SIGTERM");
          this.#signal("SIGCONT");
          if (!(await settlesWithin(this.#status, TERM_GRACE_MS))) this.#signal("SIGKILL");
        }
        await this.#status;
        // The writer's pending ops settle once the pipe is broken.
        await this.#writeChain;
        await this.#writer.abort().catch(() => {});
        const drains = Promise.all(this.#drains);
        if (!(await settlesWithin(drains, 1_000))) {
          await Promise.allSettled(this.#readers.map((r) => r.cancel()));
        }
        await drains;
        this.#failAll(`${this.describe()} stopped`);
        livePeers.delete(this);
        this.#untrack();
      })();
    }
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** Build if needed, spawn tox_peer and resolve once it printed `ready`. */
export async function startToxPeer(opts: ToxPeerOptions): Promise<ToxPeer> {
  const bin = await buildToxPeer();
  const args: string[] = [];
  for (const r of opts.relays) args.push("--relay", `${r.host}:${r.port}:${r.publicKey}`);
  if (opts.name !== undefined) args.push("--name", opts.name);
  args.push(...(opts.extraArgs ?? []));
  const peer = new ToxPeer(bin, args, opts.name ?? "peer");
  try {
    await peer.waitFor((e) => e.type === "ready", opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
  } catch (e) {
    await peer.stop();
    throw new ToxPeerError(
      `tox_peer did not start: ${e instanceof Error ? e.message : e}\n` +
        `exit: ${JSON.stringify(peer.exitStatus)}\n${peer.recentOutput()}`,
    );
  }
  return peer;
}

// ---------------------------------------------------------------------------------------------
// Two C peers: online time and custom lossless throughput

/**
 * Polls a C peer's stream counter for one friend (one `stats` at a time), so a sender's
 * done() can read how much has arrived without awaiting.
 */
export function watchReceived(c: ToxPeer, friend: number, everyMs = 20): {
  received: number;
  stop(): Promise<void>;
} {
  let running = true;
  const w = {
    received: 0,
    stop: async () => {
      running = false;
      await loop;
    },
  };
  const loop = (async () => {
    while (running) {
      w.received = (await c.stats(friend)).received;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return w;
}

export interface CToCOptions {
  /** A running tox-bootstrapd to use (both peers get it as TCP relay and bootstrap node). */
  bootstrapd?: Bootstrapd;
  /** Or an explicit relay. Neither: a private tox-bootstrapd is started and stopped. */
  relay?: RelaySpec;
  /** Packets to burst from A to B (measured). */
  count: number;
  /** Bytes per packet (5..1373). */
  size: number;
  /** Custom lossless packet id (160..191), default 160. */
  id?: number;
  /**
   * Packets sent first in the same burst and left out of ms/packetsPerSecond (default 0).
   * net_crypto's congestion control starts at a low send rate and ramps up, so a cold burst
   * measures mostly the ramp; a warmup measures closer to the steady state.
   */
  warmup?: number;
  /** Bound for the whole run (online + burst + delivery). */
  timeoutMs: number;
  /** Extra argv for both peers. */
  extraArgs?: string[];
}

export interface CToCResult {
  /** From both `add` replies to both peers reporting the friend online. */
  onlineMs: number;
  /** Packets toxcore accepted on the sender (warmup + count). */
  sent: number;
  /** Of those, how many reached the receiver before the deadline. */
  received: number;
  /** Of those, how many arrived in order. */
  inOrder: number;
  complete: boolean;
  /**
   * Why the burst did not complete: the `error burst ...` reply, or its timeout (c-toxcore's
   * congestion control can fall to 4 packets/s and stay there); null if it completed.
   */
  error: string | null;
  /** Sender-side time for the burst command (all packets accepted by toxcore); NaN if not. */
  sendMs: number;
  /** Times toxcore answered SENDQ during the burst; NaN if it did not complete. */
  sendqRetries: number;
  /** Packets in the measured window (about `count`; exactly `count` without warmup). */
  measured: number;
  /**
   * The measured window: without warmup from just before the burst command to the last arrival;
   * with warmup from the first stats poll that saw the warmup delivered to the last arrival
   * (receiver clock mapped to ours).
   */
  ms: number;
  /** measured / ms. */
  packetsPerSecond: number;
}

/**
 * Start two C peers on one relay, make them friends (no request), wait until both see the other
 * online, burst `warmup + count` custom lossless packets from A to B and measure their delivery.
 * Stops everything it started. Throws if the peers do not start or get online in time; a burst
 * that fails or is not delivered in time is returned with complete: false and `error`.
 */
export async function measureCToC(opts: CToCOptions): Promise<CToCResult> {
  const deadline = performance.now() + opts.timeoutMs;
  const left = () => Math.max(1, deadline - performance.now());
  const warmup = opts.warmup ?? 0;
  const total = warmup + opts.count;
  let own: Bootstrapd | null = null;
  let a: ToxPeer | null = null;
  let b: ToxPeer | null = null;
  try {
    let relay = opts.relay;
    if (relay === undefined) {
      if (opts.bootstrapd === undefined) own = await startBootstrapd();
      relay = (opts.bootstrapd ?? own!).relay;
    }
    const relays = [relay];
    const started = await Promise.allSettled([
      startToxPeer({ relays, name: "c-a", extraArgs: opts.extraArgs }),
      startToxPeer({ relays, name: "c-b", extraArgs: opts.extraArgs }),
    ]);
    a = started[0].status === "fulfilled" ? started[0].value : null;
    b = started[1].status === "fulfilled" ? started[1].value : null;
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const [pa, pb] = [a!, b!];
    const [fa, fb] = await Promise.all([
      pa.addFriend(pb.realPublicKey),
      pb.addFriend(pa.realPublicKey),
    ]);
    const t0 = performance.now();
    await Promise.all([pa.waitForFriendOnline(fa, left()), pb.waitForFriendOnline(fb, left())]);
    const onlineMs = performance.now() - t0;

    const offset = await pb.clockOffset();
    const before = await pb.stats(fb, Math.min(COMMAND_TIMEOUT_MS, left()));
    const got = (st: ToxPeerStats) => st.received - before.received;
    const start = performance.now();
    // Raw command: an `error burst <ERR> <sent>` or a timeout is a result, not an exception.
    let reply: string | null = null;
    let error: string | null = null;
    const burst = pa.command(`burst ${fa} ${total} ${opts.size} ${opts.id ?? 160}`, left()).then(
      (line) => {
        reply = line;
        if (line.startsWith("error")) error = line;
      },
      (e) => {
        error = (e instanceof Error ? e.message : String(e)).split("\n")[0];
      },
    );
    // The receiver is not blocked by the burst: poll it meanwhile.
    let mark: ToxPeerStats | null = warmup === 0 ? before : null;
    let st = before;
    while (got(st) < total && error === null && performance.now() < deadline) {
      await sleep(Math.min(20, left()));
      st = await pb.stats(fb, Math.min(COMMAND_TIMEOUT_MS, left()));
      if (mark === null && got(st) >= warmup) mark = st;
    }
    await burst;
    const words = (reply ?? "").split(" ");
    let sent: number;
    let sendMs = NaN;
    let sendqRetries = NaN;
    if (words[0] === "ok") {
      sent = num(words[2]);
      sendMs = num(words[3]);
      sendqRetries = num(words[4]);
    } else if (words[0] === "error") {
      sent = Number(words[3]) || 0;
    } else {
      // timed out while still bursting: the last progress report is the best we know
      const progress = pa.events.findLast((e) => e.type === "burst_progress");
      sent = progress?.type === "burst_progress" ? progress.sent : got(st);
    }
    const received = got(st);
    let measured = 0;
    let ms = performance.now() - start;
    if (mark !== null && st.received > mark.received) {
      measured = st.received - mark.received;
      ms = warmup === 0 ? st.lastMs + offset - start : st.lastMs - mark.lastMs;
    }
    return {
      onlineMs,
      sent,
      received,
      inOrder: st.inOrder - before.inOrder,
      complete: error === null && received >= total,
      error,
      sendMs,
      sendqRetries,
      measured,
      ms,
      packetsPerSecond: ms > 0 ? measured / (ms / 1000) : 0,
    };
  } finally {
    await Promise.all([a?.stop(), b?.stop()]);
    await own?.stop();
  }
}

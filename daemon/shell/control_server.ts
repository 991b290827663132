/**
 * The control socket's I/O shell: a Unix socket (mode 0600, in a directory only we can
 * enter), one read loop and one bounded write queue per client. What the bytes mean is
 * daemon/shell/control.ts's business; what a command does is the handler's.
 *
 * A stale socket file from a crashed run is replaced; a live one (another daemon answers)
 * or anything that is not a socket is left alone and refused.
 */
import {
  type ControlCommand,
  type ControlError,
  errorReply,
  LineSplitter,
  okReply,
  type ParsedRequest,
  parseRequest,
  type RequestId,
} from "./control.ts";
import type { Logger } from "./log.ts";

export type HandlerResult =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly error: ControlError };

export type ControlHandler = (command: ControlCommand) => Promise<HandlerResult>;

/** A custom packet request (one variant carries both; only send.lossless is batched). */
export type CustomPacketCommand = Extract<ControlCommand, { cmd: "send.lossless" | "send.lossy" }>;

/** Custom packets a client pipelined, handled together: one result per command, in order. */
export type LosslessBatchHandler = (
  commands: readonly CustomPacketCommand[],
) => Promise<HandlerResult[]>;

/** The most pipelined send.lossless requests handled as one batch. */
const MAX_BATCH = 1024;

/** Clients at once; one more is told so and closed. */
const MAX_CLIENTS = 64;
/**
 * Bytes queued for one client. Above HIGH the client is "behind": the daemon holds friends'
 * lossless packets in net_crypto (their senders slow down) until every client is below LOW
 * again, so a slow reader costs speed, never packets. MAX bounds what may still arrive while
 * held (packets in flight, messages, status lines); a client past it, or behind for longer
 * than BEHIND_MAX_MS, is told why and dropped.
 */
export const CLIENT_QUEUE_HIGH = 256 * 1024;
export const CLIENT_QUEUE_LOW = 64 * 1024;
export const CLIENT_QUEUE_MAX = 32 << 20;
export const BEHIND_MAX_MS = 20_000;
const READ_BUFFER = 16 * 1024;

export class ControlServerError extends Error {}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

const encoder = new TextEncoder();

interface ClientHooks {
  /** The client's queue crossed HIGH (true), or it is no longer behind (false: why, if it read). */
  readonly onBehind: (client: Client, behind: boolean, why?: "caught up") => void;
  readonly onClose: (client: Client) => void;
}

class Client {
  readonly #conn: Deno.UnixConn;
  readonly #hooks: ClientHooks;
  #queue: Uint8Array[] = [];
  #pending = 0;
  #writing = false;
  #closed = false;
  /** Set once the client is being dropped: its last line is queued, nothing more is. */
  #ending = false;
  #behindSince: number | null = null;
  subscribed = false;

  constructor(conn: Deno.UnixConn, readonly id: number, hooks: ClientHooks) {
    this.#conn = conn;
    this.#hooks = hooks;
  }

  get conn(): Deno.UnixConn {
    return this.#conn;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get pendingBytes(): number {
    return this.#pending;
  }

  /** Since when the client has been behind (performance.now()), or null. */
  get behindSince(): number | null {
    return this.#behindSince;
  }

  /** Queue a line; false if the client is gone or being dropped. */
  send(line: string): boolean {
    if (this.#closed || this.#ending) return false;
    const bytes = encoder.encode(line);
    if (this.#pending + bytes.length > CLIENT_QUEUE_MAX) {
      this.drop(
        `${this.#pending} bytes of replies and events are waiting for this client to read ` +
          `them (limit ${CLIENT_QUEUE_MAX})`,
      );
      return false;
    }
    this.#enqueue(bytes);
    return true;
  }

  #enqueue(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#pending += bytes.length;
    if (this.#behindSince === null && this.#pending > CLIENT_QUEUE_HIGH) {
      this.#behindSince = performance.now();
      this.#hooks.onBehind(this, true);
    }
    if (!this.#writing) this.#drain();
  }

  /**
   * Drop the client, saying why first: an `{"event":"dropped"}` line after what is queued,
   * then the socket closes once that is written (or after a short grace, if it never is).
   */
  drop(reason: string): void {
    if (this.#closed || this.#ending) return;
    this.#ending = true;
    // What it never reads is its own: it no longer holds friends back.
    if (this.#behindSince !== null) {
      this.#behindSince = null;
      this.#hooks.onBehind(this, false);
    }
    const last = encoder.encode(JSON.stringify({ event: "dropped", reason }) + "\n");
    this.#queue.push(last);
    this.#pending += last.length;
    if (!this.#writing) this.#drain();
    const grace = setTimeout(() => this.close(), 2_000);
    Deno.unrefTimer(grace);
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#queue[0];
        let off = 0;
        while (off < chunk.length) off += await this.#conn.write(chunk.subarray(off));
        this.#queue.shift();
        this.#pending -= chunk.length;
        if (this.#behindSince !== null && this.#pending < CLIENT_QUEUE_LOW) {
          this.#behindSince = null;
          this.#hooks.onBehind(this, false, "caught up");
        }
      }
      if (this.#ending) this.close();
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#pending = 0;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    if (this.#behindSince !== null) {
      this.#behindSince = null;
      this.#hooks.onBehind(this, false);
    }
    this.#hooks.onClose(this);
  }
}

export class ControlServer {
  readonly path: string;
  readonly #listener: Deno.UnixListener;
  readonly #log: Logger;
  readonly #clients = new Set<Client>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #behind = new Set<Client>();
  #behindTimer: ReturnType<typeof setInterval> | undefined;
  #onBehind: (behind: boolean) => void = () => {};
  #nextId = 1;
  #closed = false;
  readonly #hooks: ClientHooks = {
    onBehind: (c, behind, why) => this.#clientBehind(c, behind, why),
    onClose: (c) => this.#clients.delete(c),
  };

  readonly #behindMaxMs: number;

  private constructor(
    path: string,
    listener: Deno.UnixListener,
    log: Logger,
    behindMaxMs: number,
  ) {
    this.path = path;
    this.#listener = listener;
    this.#log = log;
    this.#behindMaxMs = behindMaxMs;
  }

  /** Listen on `path`: private directory, stale file replaced, live daemon refused. */
  static async open(
    path: string,
    log: Logger,
    opts: { readonly behindMaxMs?: number } = {},
  ): Promise<ControlServer> {
    const dir = dirname(path);
    await ensurePrivateDir(dir);
    await clearStaleSocket(path, log);
    let listener: Deno.UnixListener;
    try {
      listener = Deno.listen({ transport: "unix", path });
    } catch (e) {
      throw new ControlServerError(`cannot listen on ${path}: ${(e as Error).message}`);
    }
    await Deno.chmod(path, 0o600);
    return new ControlServer(path, listener, log, opts.behindMaxMs ?? BEHIND_MAX_MS);
  }

  get clients(): number {
    return this.#clients.size;
  }

  /**
   * Called with true when a client falls behind (nothing else was behind) and with false when
   * the last one catches up or leaves: the daemon holds friends' lossless packets meanwhile.
   */
  onBehind(fn: (behind: boolean) => void): void {
    this.#onBehind = fn;
  }

  /** Whether some client is behind now (its queue passed CLIENT_QUEUE_HIGH, not yet LOW). */
  get behind(): boolean {
    return this.#behind.size > 0;
  }

  /**
   * Answer every client with `handler`. With `batch`, a run of send.lossless requests that a
   * client pipelined (read in one go) is handed over at once, so a program that streams custom
   * packets costs one trip to the coordinator per run, not per packet; replies keep their order.
   */
  serve(handler: ControlHandler, batch?: LosslessBatchHandler): void {
    this.#track(this.#accept(handler, batch));
  }

  /** An event line to every subscribed client. */
  broadcast(line: string): void {
    for (const c of this.#clients) if (c.subscribed) c.send(line);
  }

  #clientBehind(c: Client, behind: boolean, why?: "caught up"): void {
    const was = this.#behind.size > 0;
    if (behind) {
      this.#behind.add(c);
      this.#log.info(
        `control client ${c.id} is behind (${c.pendingBytes} bytes queued): holding friends' ` +
          `lossless packets until it reads`,
      );
    } else if (this.#behind.delete(c) && why === "caught up") {
      this.#log.info(`control client ${c.id} caught up`);
    }
    const now = this.#behind.size > 0;
    if (now && this.#behindTimer === undefined) {
      this.#behindTimer = setInterval(() => this.#dropStuck(), Math.min(1_000, this.#behindMaxMs));
    } else if (!now && this.#behindTimer !== undefined) {
      clearInterval(this.#behindTimer);
      this.#behindTimer = undefined;
    }
    if (now !== was) this.#onBehind(now);
  }

  /** A client behind for too long holds every friend back: it is told why and dropped. */
  #dropStuck(): void {
    const t = performance.now();
    for (const c of [...this.#behind]) {
      const since = c.behindSince;
      if (since === null || t - since < this.#behindMaxMs) continue;
      const reason = `this client read none of its ${c.pendingBytes} queued bytes of events ` +
        `for ${Math.round((t - since) / 1000)} s; friends' packets were held for it meanwhile`;
      this.#log.warn(`control client ${c.id} dropped: ${reason}`);
      c.drop(reason);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const c of [...this.#clients]) c.close();
    if (this.#behindTimer !== undefined) clearInterval(this.#behindTimer);
    this.#behindTimer = undefined;
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    await Deno.remove(this.path).catch(() => {});
  }

  #track(p: Promise<void>): void {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  async #accept(handler: ControlHandler, batch?: LosslessBatchHandler): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#closed) {
          conn.close();
          break;
        }
        if (this.#clients.size >= MAX_CLIENTS) {
          const c = new Client(conn, 0, { onBehind: () => {}, onClose: () => {} });
          c.send(errorReply(null, { code: "failed", message: "too many control clients" }));
          setTimeout(() => c.close(), 100);
          continue;
        }
        const client = new Client(conn, this.#nextId++, this.#hooks);
        this.#clients.add(client);
        this.#log.debug(`control client ${client.id} connected`);
        this.#track(this.#serveClient(client, handler, batch));
      }
    } catch (e) {
      if (!this.#closed) this.#log.error(`control socket stopped accepting: ${e}`);
    }
  }

  async #serveClient(
    client: Client,
    handler: ControlHandler,
    batch?: LosslessBatchHandler,
  ): Promise<void> {
    const lines = new LineSplitter();
    const buf = new Uint8Array(READ_BUFFER);
    try {
      while (!client.closed) {
        const n = await client.conn.read(buf);
        if (n === null) break;
        const got = lines.push(buf.subarray(0, n));
        for (let i = 0; i < got.length && !client.closed;) {
          const r = got[i];
          if (!r.ok) {
            client.send(errorReply(null, r.error));
            i++;
            continue;
          }
          if (r.line.trim() === "") {
            i++;
            continue;
          }
          const req = parseRequest(r.line);
          if (batch !== undefined && req.ok && req.command.cmd === "send.lossless") {
            // The run of parsed send.lossless requests from here on, as one batch.
            const run: { id: RequestId; command: CustomPacketCommand }[] = [];
            let j = i;
            for (; j < got.length && run.length < MAX_BATCH; j++) {
              const rj = got[j];
              if (!rj.ok) break;
              const pj = j === i ? req : parseRequest(rj.line);
              if (!pj.ok || pj.command.cmd !== "send.lossless") break;
              run.push({ id: pj.id, command: pj.command });
            }
            await this.#batch(client, run, batch);
            i = j;
            continue;
          }
          await this.#request(client, req, handler);
          i++;
        }
      }
    } catch (e) {
      if (!client.closed) this.#log.debug(`control client ${client.id}: ${e}`);
    } finally {
      client.close();
      this.#log.debug(`control client ${client.id} left`);
    }
  }

  async #batch(
    client: Client,
    run: readonly { id: RequestId; command: CustomPacketCommand }[],
    batch: LosslessBatchHandler,
  ): Promise<void> {
    let results: HandlerResult[];
    try {
      results = await batch(run.map((r) => r.command));
    } catch (e) {
      this.#log.error(`control command send.lossless failed: ${(e as Error).stack ?? e}`);
      const error = { code: "failed" as const, message: `internal error: ${e}` };
      results = run.map(() => ({ ok: false, error }));
    }
    for (let k = 0; k < run.length; k++) {
      const r = results[k];
      client.send(r.ok ? okReply(run[k].id, r.result) : errorReply(run[k].id, r.error));
    }
  }

  async #request(client: Client, req: ParsedRequest, handler: ControlHandler): Promise<void> {
    if (!req.ok) {
      client.send(errorReply(req.id, req.error));
      return;
    }
    const cmd = req.command.cmd;
    if (cmd === "subscribe" || cmd === "unsubscribe") {
      client.subscribed = cmd === "subscribe";
      client.send(okReply(req.id, { subscribed: client.subscribed }));
      return;
    }
    let r: HandlerResult;
    try {
      r = await handler(req.command);
    } catch (e) {
      // A daemon bug, not the client's: say so and keep serving.
      this.#log.error(`control command ${cmd} failed: ${(e as Error).stack ?? e}`);
      r = { ok: false, error: { code: "failed", message: `internal error: ${e}` } };
    }
    client.send(r.ok ? okReply(req.id, r.result) : errorReply(req.id, r.error));
  }
}

async function ensurePrivateDir(dir: string): Promise<void> {
  let info: Deno.FileInfo | null = null;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new ControlServerError(`cannot use ${dir}: ${(e as Error).message}`);
    }
  }
  if (info === null) {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.chmod(dir, 0o700);
    return;
  }
  if (!info.isDirectory) throw new ControlServerError(`${dir} is not a directory`);
  const mode = (info.mode ?? 0) & 0o777;
  if (mode & 0o077) {
    throw new ControlServerError(
      `the control socket's directory ${dir} is open to other users (mode ${
        mode.toString(8).padStart(4, "0")
      }); use a private directory (mode 0700) for --socket`,
    );
  }
}

async function clearStaleSocket(path: string, log: Logger): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new ControlServerError(`cannot use ${path}: ${(e as Error).message}`);
  }
  if (!info.isSocket) {
    throw new ControlServerError(`${path} exists and is not a socket; not touching it`);
  }
  let live = false;
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    live = true;
  } catch {
    // Nobody listening: a crashed run's leftover.
  }
  if (live) {
    throw new ControlServerError(`another daemon is listening on ${path}`);
  }
  log.warn(`removing stale control socket ${path} (a previous run did not exit cleanly)`);
  await Deno.remove(path);
}

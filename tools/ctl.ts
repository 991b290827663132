/**
 * deno task ctl [--socket PATH] [--json] [--timeout MS] <command> [args]
 *
 * The command-line client of the daemon's local control socket: a Unix stream socket speaking
 * JSON lines. A request is `{"id":N,"cmd":"name",...params}`, its reply
 * `{"id":N,"ok":true,"result":...}` or `{"id":N,"ok":false,"error":{"code","message"}}`; after
 * `subscribe` the daemon also sends event lines `{"event":"name",...}` without an id.
 *
 * Exit codes: 0 done; 1 the daemon answered with an error (or the connection broke, or it sent
 * something that is not the protocol); 2 cannot connect to the socket; 3 no reply within
 * `--timeout`; 64 bad usage.
 *
 * Also a library: `ControlClient` (used by the daemon's subprocess tests), and `main`
 * (testable without spawning). The default socket path is daemon/shell/paths.ts's, the daemon's own.
 */
import { parseArgs } from "node:util";
import { parseRelaySpec } from "../daemon/core/common/relay_address.ts";
import { defaultSocketPath } from "../daemon/shell/paths.ts";

// ---------------------------------------------------------------------------------------------
// Client

export interface ReplyError {
  code: string;
  message: string;
  [field: string]: unknown;
}

/** A reply line; `id` is the request's. */
export type Reply =
  | { id: number; ok: true; result: unknown; [field: string]: unknown }
  | { id: number; ok: false; error: ReplyError; [field: string]: unknown };

/** An event line (after `subscribe`): `event` names it; other fields vary and are kept. */
export type ControlEvent = { event: string; [field: string]: unknown };

/**
 * Why a request or the event stream failed on the client side (a daemon's error reply is not
 * this: it is a `Reply` with `ok: false`).
 * - `connect`: the socket could not be connected (`cause` holds the system error);
 * - `timeout`: no reply within the request's `timeoutMs`;
 * - `closed`: the connection ended (or `close()` was called) before the reply;
 * - `protocol`: the daemon sent a line that is not JSON or too long a line;
 * - `too_large`: the request line is over the daemon's 64 KiB limit.
 */
export class ControlClientError extends Error {
  override readonly name = "ControlClientError";
  constructor(
    readonly kind: "connect" | "timeout" | "closed" | "protocol" | "too_large",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The daemon caps request lines at 64 KiB; we count the newline in, to be on the safe side. */
export const MAX_REQUEST_LINE = 64 * 1024;
/** Replies (a long friend list) may be longer than requests, but not without bound. */
export const MAX_REPLY_LINE = 16 * 1024 * 1024;

const encoder = new TextEncoder();

interface Pending {
  cmd: string;
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * One connection to the control socket. Requests may overlap: replies are matched by id, in any
 * order. Event lines are queued from the start and read with `events()`. Always `close()` it.
 */
export class ControlClient {
  readonly path: string;
  #conn: Deno.UnixConn;
  #nextId = 1;
  #pending = new Map<string, Pending>();
  #events: ControlEvent[] = [];
  #eventWaiters: (() => void)[] = [];
  #writes: Promise<void> = Promise.resolve();
  #reading: Promise<void>;
  #connClosed = false;
  #closing = false;
  #ended = false;
  #failure: ControlClientError | undefined;

  private constructor(path: string, conn: Deno.UnixConn) {
    this.path = path;
    this.#conn = conn;
    this.#reading = this.#readLoop();
  }

  /** Connects, or throws a `ControlClientError` of kind `connect` naming `path`. */
  static async connect(path: string): Promise<ControlClient> {
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch (e) {
      throw new ControlClientError("connect", connectMessage(path, e), { cause: e });
    }
    return new ControlClient(path, conn);
  }

  /**
   * Sends `{"id", "cmd", ...params}` and resolves with its reply, `ok` or not. Rejects with a
   * `ControlClientError` if no reply comes (`timeout`, `closed`, `protocol`, `too_large`).
   */
  request(
    cmd: string,
    params: Record<string, unknown> = {},
    opts: { timeoutMs?: number } = {},
  ): Promise<Reply> {
    const message: Record<string, unknown> = { id: 0, cmd, ...params };
    message.id = this.#nextId++;
    message.cmd = cmd;
    return this.#send(message, cmd, opts.timeoutMs);
  }

  /** Sends one request object as given, with an `id` added if it has none. */
  requestRaw(message: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<Reply> {
    const m = "id" in message ? message : { id: this.#nextId++, ...message };
    return this.#send(m, typeof m.cmd === "string" ? m.cmd : "request", opts.timeoutMs);
  }

  /**
   * The event lines, in order, from the start of the connection (so none is missed between the
   * `subscribe` reply and the first call). Ends when the connection ends or `close()` is called;
   * throws a `ControlClientError` of kind `protocol` if the daemon sent garbage.
   */
  async *events(): AsyncIterableIterator<ControlEvent> {
    while (true) {
      const next = this.#events.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#ended) {
        if (this.#failure?.kind === "protocol") throw this.#failure;
        return;
      }
      await new Promise<void>((resolve) => this.#eventWaiters.push(resolve));
    }
  }

  /** Closes the connection; pending requests reject with `closed`. Safe to call twice. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#closeConn();
    await this.#reading;
    await this.#writes;
  }

  #send(message: Record<string, unknown>, cmd: string, timeoutMs?: number): Promise<Reply> {
    const line = encoder.encode(JSON.stringify(message) + "\n");
    if (line.length > MAX_REQUEST_LINE) {
      return Promise.reject(
        new ControlClientError(
          "too_large",
          `the request is ${line.length} bytes; the daemon accepts at most ${MAX_REQUEST_LINE}`,
        ),
      );
    }
    if (this.#ended) return Promise.reject(this.#endError(cmd));
    const key = idKey(message.id);
    if (this.#pending.has(key)) {
      return Promise.reject(new TypeError(`a request with id ${key} is already waiting`));
    }
    return new Promise<Reply>((resolve, reject) => {
      const p: Pending = { cmd, resolve, reject };
      if (timeoutMs !== undefined && timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.#pending.delete(key);
          reject(
            new ControlClientError(
              "timeout",
              `no reply to ${JSON.stringify(cmd)} within ${timeoutMs} ms from ${this.path}`,
            ),
          );
        }, timeoutMs);
      }
      this.#pending.set(key, p);
      this.#writes = this.#writes.then(() => this.#writeAll(line)).catch((e) => {
        if (this.#pending.get(key) !== p) return;
        this.#settle(key, p);
        reject(
          this.#closing
            ? this.#endError(cmd)
            : new ControlClientError("closed", `cannot send to ${this.path}: ${errText(e)}`, {
              cause: e,
            }),
        );
      });
    });
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    while (bytes.length > 0) bytes = bytes.subarray(await this.#conn.write(bytes));
  }

  async #readLoop(): Promise<void> {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let partial: Uint8Array[] = [];
    let partialLength = 0;
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        let chunk = buf.subarray(0, n);
        for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10)) {
          let bytes: Uint8Array = chunk.subarray(0, nl);
          if (partialLength > 0) {
            partial.push(bytes);
            bytes = concat(partial, partialLength + bytes.length);
            partial = [];
            partialLength = 0;
          }
          if (bytes.length > MAX_REPLY_LINE) throw tooLong();
          this.#onLine(decoder.decode(bytes));
          chunk = chunk.subarray(nl + 1);
        }
        if (chunk.length > 0) {
          partial.push(chunk.slice());
          partialLength += chunk.length;
          if (partialLength > MAX_REPLY_LINE) throw tooLong();
        }
      }
      // A last line without its newline is cut short: it is dropped.
    } catch (e) {
      if (e instanceof ControlClientError) this.#failure = e;
      else if (!this.#closing) {
        this.#failure = new ControlClientError(
          "closed",
          `reading from ${this.path} failed: ${errText(e)}`,
          { cause: e },
        );
      }
    } finally {
      this.#ended = true;
      this.#closeConn();
      for (const [key, p] of [...this.#pending]) {
        this.#settle(key, p);
        p.reject(this.#endError(p.cmd));
      }
      for (const wake of this.#eventWaiters.splice(0)) wake();
    }
  }

  #onLine(text: string): void {
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (text.trim() === "") return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      throw new ControlClientError(
        "protocol",
        `${this.path} sent a line that is not JSON: ${JSON.stringify(text.slice(0, 200))}`,
      );
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      throw new ControlClientError(
        "protocol",
        `${this.path} sent a line that is not a JSON object: ${text.slice(0, 200)}`,
      );
    }
    const m = msg as Record<string, unknown>;
    if (typeof m.event === "string" && m.id === undefined) {
      this.#events.push(m as ControlEvent);
      for (const wake of this.#eventWaiters.splice(0)) wake();
      return;
    }
    if (!("ok" in m)) return; // neither reply nor event: a newer daemon's line, ignored
    let key = idKey(m.id);
    // A request the daemon could not parse is answered with `"id": null`: with a single
    // request waiting, it is that one's answer.
    if (!this.#pending.has(key) && (m.id === null || m.id === undefined)) {
      if (this.#pending.size === 1) key = [...this.#pending.keys()][0];
    }
    const p = this.#pending.get(key);
    if (p === undefined) return; // a late reply to a request that timed out
    this.#settle(key, p);
    p.resolve(normalizeReply(m));
  }

  #settle(key: string, p: Pending): void {
    clearTimeout(p.timer);
    this.#pending.delete(key);
  }

  #endError(cmd: string): ControlClientError {
    if (this.#failure) return this.#failure;
    return new ControlClientError(
      "closed",
      this.#closing
        ? `the connection to ${this.path} was closed before the reply to ${JSON.stringify(cmd)}`
        : `${this.path} closed the connection before replying to ${JSON.stringify(cmd)}`,
    );
  }

  #closeConn(): void {
    if (this.#connClosed) return;
    this.#connClosed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

function tooLong(): ControlClientError {
  return new ControlClientError(
    "protocol",
    `a line from the daemon is over ${MAX_REPLY_LINE} bytes`,
  );
}

function idKey(id: unknown): string {
  return JSON.stringify(id ?? null);
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function normalizeReply(m: Record<string, unknown>): Reply {
  if (m.ok === true) return { ...m, ok: true, result: m.result ?? null } as Reply;
  const e = m.error;
  const error: ReplyError = e !== null && typeof e === "object" && !Array.isArray(e)
    ? { ...e as Record<string, unknown>, code: "", message: "" }
    : { code: "", message: "" };
  const raw = (e ?? {}) as Record<string, unknown>;
  error.code = typeof raw.code === "string" ? raw.code : "unknown";
  error.message = typeof raw.message === "string"
    ? raw.message
    : typeof e === "string"
    ? e
    : JSON.stringify(e ?? null);
  return { ...m, ok: false, error } as Reply;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function connectMessage(path: string, e: unknown): string {
  const base = `cannot connect to the control socket ${path}`;
  if (e instanceof Deno.errors.NotFound) {
    return `${base}: it does not exist. Is the daemon running? Start it with \`deno task daemon\`.`;
  }
  if (e instanceof Deno.errors.ConnectionRefused) {
    return `${base}: connection refused (a stale socket?). Is the daemon running? ` +
      "Start it with `deno task daemon`.";
  }
  if (e instanceof Deno.errors.NotCapable) {
    return `${base}: Deno lacks the permission (${errText(e)}); run it with ` +
      "--allow-read --allow-write --allow-net, as `deno task ctl` does.";
  }
  return `${base}: ${errText(e)}`;
}

// ---------------------------------------------------------------------------------------------
// Command line

export interface MainIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Environment lookup for the default socket path; `Deno.env.get` when absent. */
  env?: (name: string) => string | undefined;
  /** Ends `events` like SIGINT does; when absent, `events` listens for SIGINT itself. */
  signal?: AbortSignal;
}

export const USAGE = `usage: deno task ctl [--socket PATH] [--json] [--timeout MS] <command> [args]

commands:
  self | status | relays | friends     show them
  relay add HOST:PORT:PUBKEY           use a relay
  relay remove PUBKEY                  stop using a relay
  friend add TOXID MESSAGE...          send a friend request (found through the onion; a
                                       message starting with '-' goes after '--')
  friend add PK|TOXID [--dht HEX] [--relay HOST:PORT:PUBKEY]...
                                       add without a request (they added us, or will)
  friend remove PK
  requests                             friend requests waiting for an answer
  friend accept PK | friend refuse PK  answer one
  send PK TEXT... [--action]           a chat message (words joined by spaces; text
                                       starting with '-' goes after '--')
  send-lossless PK HEX | send-lossy PK HEX   a custom packet, first byte its id
  name NAME | status-message TEXT      set our profile
  events                               print events until the daemon closes or Ctrl-C
  raw JSON                             send one request object, print the reply as is
  help

options:
  --socket PATH  the control socket (default: $TOXTCP_SOCKET, else
                 $XDG_RUNTIME_DIR/toxtcp/control.sock, else
                 \${XDG_DATA_HOME:-~/.local/share}/toxtcp/control.sock)
  --json         print the result as one JSON line (errors as JSON on stderr)
  --timeout MS   how long to wait for a reply (default 10000)

exit: 0 ok, 1 error reply, 2 cannot connect, 3 timeout, 64 usage`;

const SHORT_USAGE =
  "usage: deno task ctl [--socket PATH] [--json] [--timeout MS] <command> [args]  (ctl help)";

export const EXIT = { ok: 0, error: 1, connect: 2, timeout: 3, usage: 64 } as const;

class UsageError extends Error {}

interface Job {
  cmd: string;
  params: Record<string, unknown>;
  /** Human output of the result. */
  show: (result: unknown) => string;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const HEX64_OR_76 = /^(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{76})$/;

function publicKey(arg: string, what = "public key"): string {
  if (!HEX64.test(arg)) throw new UsageError(`${what} must be 64 hex digits: ${arg}`);
  return arg;
}

function relaySpec(arg: string): string {
  try {
    parseRelaySpec(arg);
  } catch (e) {
    throw new UsageError(errText(e));
  }
  return arg;
}

function hexData(arg: string): string {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(arg)) {
    throw new UsageError(`packet must be hex bytes (an even number of hex digits): ${arg}`);
  }
  return arg;
}

function arity(args: string[], n: number, form: string): void {
  if (args.length !== n) throw new UsageError(`expected: ${form}`);
}

function confirm(text: string): (result: unknown) => string {
  return (result) => {
    const r = result as Record<string, unknown> | null;
    const receipt = r !== null && typeof r === "object" ? r.receipt : undefined;
    return typeof receipt === "number" ? `${text}, receipt ${receipt}` : text;
  };
}

/** The request for a sub-command and its words, or a `UsageError`. */
function buildJob(
  command: string,
  rest: string[],
  opts: { dht?: string; relay?: string[]; action?: boolean },
): Job {
  const sub = `${command} ${rest[0] ?? ""}`.trim();
  if ((opts.dht !== undefined || opts.relay !== undefined) && sub !== "friend add") {
    throw new UsageError("--dht and --relay go with `friend add`");
  }
  if (opts.action && command !== "send") throw new UsageError("--action goes with `send`");
  switch (command) {
    case "self":
      arity(rest, 0, "self");
      return { cmd: "self", params: {}, show: showSelf };
    case "status":
      arity(rest, 0, "status");
      return { cmd: "status", params: {}, show: showStatus };
    case "relays":
      arity(rest, 0, "relays");
      return { cmd: "relays", params: {}, show: showRelays };
    case "friends":
      arity(rest, 0, "friends");
      return { cmd: "friends", params: {}, show: showFriends };
    case "requests":
      arity(rest, 0, "requests");
      return { cmd: "requests", params: {}, show: showRequests };
    case "relay":
      if (rest[0] === "add") {
        arity(rest, 2, "relay add HOST:PORT:PUBKEY");
        return { cmd: "relay.add", params: { relay: relaySpec(rest[1]) }, show: confirm("added") };
      }
      if (rest[0] === "remove") {
        arity(rest, 2, "relay remove PUBKEY");
        return {
          cmd: "relay.remove",
          params: { public_key: publicKey(rest[1], "relay public key") },
          show: confirm("removed"),
        };
      }
      throw new UsageError("expected: relay add HOST:PORT:PUBKEY | relay remove PUBKEY");
    case "friend":
      if (rest[0] === "add") {
        if (rest.length < 2) {
          throw new UsageError(
            "expected: friend add TOXID MESSAGE... | friend add PK|TOXID [--dht HEX] [--relay ...]",
          );
        }
        if (!HEX64_OR_76.test(rest[1])) {
          throw new UsageError(
            `friend must be a public key (64 hex digits) or Tox ID (76): ${rest[1]}`,
          );
        }
        const params: Record<string, unknown> = { public_key: rest[1] };
        if (rest.length > 2) {
          if (rest[1].length !== 76) {
            throw new UsageError(
              "a friend request needs the friend's Tox ID (76 hex digits), not a public key",
            );
          }
          params.message = rest.slice(2).join(" ");
        }
        if (opts.dht !== undefined) params.dht_public_key = publicKey(opts.dht, "--dht");
        if (opts.relay !== undefined) params.relays = opts.relay.map(relaySpec);
        return {
          cmd: "friend.add",
          params,
          show: confirm(
            rest.length > 2
              ? "friend added; the request goes out as soon as the onion finds them"
              : "friend added",
          ),
        };
      }
      if (rest[0] === "accept" || rest[0] === "refuse") {
        arity(rest, 2, `friend ${rest[0]} PK`);
        return {
          cmd: `friend.${rest[0]}`,
          params: { public_key: publicKey(rest[1]) },
          show: confirm(rest[0] === "accept" ? "accepted: now a friend" : "refused"),
        };
      }
      if (rest[0] === "remove") {
        arity(rest, 2, "friend remove PK");
        return {
          cmd: "friend.remove",
          params: { public_key: publicKey(rest[1]) },
          show: confirm("friend removed"),
        };
      }
      throw new UsageError(
        "expected: friend add TOXID MESSAGE... | friend add PK|TOXID ... | friend remove PK | " +
          "friend accept PK | friend refuse PK",
      );
    case "send": {
      if (rest.length < 2) throw new UsageError("expected: send PK TEXT... [--action]");
      const params: Record<string, unknown> = {
        public_key: publicKey(rest[0]),
        text: rest.slice(1).join(" "),
      };
      if (opts.action) params.action = true;
      return { cmd: "send", params, show: confirm("sent") };
    }
    case "send-lossless":
    case "send-lossy":
      arity(rest, 2, `${command} PK HEX`);
      return {
        cmd: command === "send-lossless" ? "send.lossless" : "send.lossy",
        params: { public_key: publicKey(rest[0]), data: hexData(rest[1]) },
        show: confirm("sent"),
      };
    case "name":
      arity(rest, 1, "name NAME (quote it if it has spaces)");
      return { cmd: "profile.set", params: { name: rest[0] }, show: confirm("name set") };
    case "status-message":
      if (rest.length === 0) throw new UsageError("expected: status-message TEXT");
      return {
        cmd: "profile.set",
        params: { status_message: rest.join(" ") },
        show: confirm("status message set"),
      };
    default:
      throw new UsageError(`unknown command: ${command}`);
  }
}

/** Runs the CLI; resolves with the exit code. Output goes to `io` (the process's by default). */
export async function main(args: string[], io: MainIo = processIo()): Promise<number> {
  const env = io.env ?? ((name: string) => Deno.env.get(name));
  let json = false;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: {
        socket: { type: "string" },
        json: { type: "boolean" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" },
        dht: { type: "string" },
        relay: { type: "string", multiple: true },
        action: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    });
    json = values.json === true;
    const [command, ...rest] = positionals;
    if (values.help || command === "help") {
      io.stdout(USAGE + "\n");
      return EXIT.ok;
    }
    if (command === undefined) throw new UsageError("no command given");
    let timeoutMs = 10_000;
    if (values.timeout !== undefined) {
      if (!/^\d{1,9}$/.test(values.timeout) || Number(values.timeout) === 0) {
        throw new UsageError(`--timeout must be a positive number of milliseconds`);
      }
      timeoutMs = Number(values.timeout);
    }
    if (values.socket === "") throw new UsageError("--socket must not be empty");

    let run: (client: ControlClient) => Promise<number>;
    if (command === "events") {
      if (values.dht !== undefined || values.relay !== undefined || values.action) {
        throw new UsageError("events takes no options but --socket, --json, --timeout");
      }
      arity(rest, 0, "events");
      run = (client) => runEvents(client, { json, timeoutMs, io });
    } else if (command === "raw") {
      if (values.dht !== undefined || values.relay !== undefined || values.action) {
        throw new UsageError("raw takes no options but --socket, --json, --timeout");
      }
      arity(rest, 1, "raw '{\"cmd\":...}'");
      const request = parseRawRequest(rest[0]);
      run = async (client) => {
        const reply = await client.requestRaw(request, { timeoutMs });
        io.stdout(JSON.stringify(reply) + "\n");
        return reply.ok ? EXIT.ok : EXIT.error;
      };
    } else {
      const job = buildJob(command, rest, values);
      run = async (client) => {
        const reply = await client.request(job.cmd, job.params, { timeoutMs });
        if (!reply.ok) {
          io.stderr(
            json
              ? JSON.stringify(reply.error) + "\n"
              : `error ${safe(reply.error.code)}: ${safe(reply.error.message)}\n`,
          );
          return EXIT.error;
        }
        io.stdout((json ? JSON.stringify(reply.result) : job.show(reply.result)) + "\n");
        return EXIT.ok;
      };
    }

    const path = values.socket ?? defaultSocketPath(env);
    const client = await ControlClient.connect(path);
    try {
      return await run(client);
    } finally {
      await client.close();
    }
  } catch (e) {
    return reportFailure(e, json, io);
  }
}

function reportFailure(e: unknown, json: boolean, io: MainIo): number {
  if (e instanceof UsageError || isParseArgsError(e)) {
    io.stderr(`ctl: ${errText(e)}\n${SHORT_USAGE}\n`);
    return EXIT.usage;
  }
  if (e instanceof Deno.errors.BrokenPipe) return EXIT.ok; // `ctl events | head`
  let code: number;
  let name: string;
  if (e instanceof ControlClientError) {
    code = e.kind === "connect" ? EXIT.connect : e.kind === "timeout" ? EXIT.timeout : EXIT.error;
    name = {
      connect: "cannot_connect",
      timeout: "timeout",
      closed: "connection_closed",
      protocol: "protocol_error",
      too_large: "request_too_large",
    }[e.kind];
  } else if (e instanceof Deno.errors.NotCapable) {
    code = EXIT.connect;
    name = "no_permission";
    e = new Error(
      `${errText(e)}; run it as \`deno task ctl\`, or grant --allow-env --allow-read --allow-write`,
    );
  } else if (e instanceof Error && e.message.startsWith("cannot choose the control socket")) {
    code = EXIT.connect;
    name = "no_socket_path";
  } else {
    io.stderr(`ctl: unexpected error: ${e instanceof Error ? e.stack : String(e)}\n`);
    return EXIT.error;
  }
  const message = errText(e);
  io.stderr(json ? JSON.stringify({ code: name, message }) + "\n" : `ctl: ${message}\n`);
  return code;
}

function isParseArgsError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof TypeError && typeof code === "string" && code.startsWith("ERR_PARSE_ARGS");
}

function parseRawRequest(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`raw: not JSON: ${errText(e)}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new UsageError("raw: the request must be a JSON object");
  }
  return v as Record<string, unknown>;
}

async function runEvents(
  client: ControlClient,
  opts: { json: boolean; timeoutMs: number; io: MainIo },
): Promise<number> {
  const { io } = opts;
  let stopped = false;
  const stop = () => {
    stopped = true;
    void client.close();
  };
  const useSigint = io.signal === undefined;
  if (useSigint) Deno.addSignalListener("SIGINT", stop);
  else if (io.signal!.aborted) stopped = true;
  else io.signal!.addEventListener("abort", stop, { once: true });
  try {
    if (stopped) return EXIT.ok;
    let reply: Reply;
    try {
      reply = await client.request("subscribe", {}, { timeoutMs: opts.timeoutMs });
    } catch (e) {
      if (stopped) return EXIT.ok;
      throw e;
    }
    if (!reply.ok) {
      io.stderr(
        opts.json
          ? JSON.stringify(reply.error) + "\n"
          : `error ${safe(reply.error.code)}: ${safe(reply.error.message)}\n`,
      );
      return EXIT.error;
    }
    for await (const event of client.events()) {
      io.stdout((opts.json ? JSON.stringify(event) : formatEvent(event)) + "\n");
    }
    return EXIT.ok;
  } finally {
    if (useSigint) Deno.removeSignalListener("SIGINT", stop);
    else io.signal!.removeEventListener("abort", stop);
  }
}

// ---------------------------------------------------------------------------------------------
// Human output

// Names, messages and status texts come from remote peers: no terminal control in our output.
const UNSAFE_CHARS = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069";
const UNSAFE = new RegExp(`[${UNSAFE_CHARS}]`, "g");
/** A string that can be printed bare as `key=value`. */
const BARE = new RegExp(`^[^\\s"'=\\\\${UNSAFE_CHARS}]+$`);

/** `s` with control and bidi-override characters written as `\uXXXX`. */
export function safe(s: string): string {
  return s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function text(v: unknown): string {
  if (v === undefined || v === null || v === "") return "-";
  return typeof v === "string" ? safe(v) : safe(JSON.stringify(v));
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/** `HH:MM:SS event key=value ...`: every field but `event` and `time`, keys in received order. */
export function formatEvent(e: Record<string, unknown>): string {
  let at = typeof e.time === "string" ? new Date(e.time) : new Date();
  if (Number.isNaN(at.getTime())) at = new Date();
  const clock = `${pad2(at.getHours())}:${pad2(at.getMinutes())}:${pad2(at.getSeconds())}`;
  const parts = [clock, text(e.event)];
  for (const [k, v] of Object.entries(e)) {
    if (k === "event" || k === "time") continue;
    parts.push(`${safe(k)}=${fieldValue(v)}`);
  }
  return parts.join(" ");
}

function fieldValue(v: unknown): string {
  if (typeof v === "string") {
    return BARE.test(v) ? v : safe(JSON.stringify(v));
  }
  return v === undefined ? "null" : safe(JSON.stringify(v));
}

/** Aligned `key: value` lines. */
function keyValues(rows: [string, unknown][]): string {
  const width = Math.max(0, ...rows.map(([k]) => k.length + 1));
  return rows.map(([k, v]) => `${(k + ":").padEnd(width)} ${text(v)}`).join("\n");
}

function asObject(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v)
    ? v as Record<string, unknown>
    : {};
}

function asArray(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(asObject) : [];
}

/** A table with a header line; columns two spaces apart, no trailing blanks. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows]
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  "))
    .join("\n");
}

const SELF_KEYS = ["address", "public_key", "dht_public_key", "name", "status_message"];

function showSelf(result: unknown): string {
  const self = asObject(result);
  const keys = [...SELF_KEYS, ...Object.keys(self).filter((k) => !SELF_KEYS.includes(k))];
  return keyValues(keys.map((k) => [k, k === "onion" ? onionLine(self[k]) : self[k]]));
}

function rtt(v: unknown): string {
  return typeof v === "number" ? `${Math.round(v * 10) / 10} ms` : "-";
}

function showRelays(result: unknown): string {
  const relays = asArray(result);
  if (relays.length === 0) return "no relays";
  return table(
    ["host", "port", "state", "rtt", "public key"],
    relays.map((
      r,
    ) => [text(r.host), text(r.port), text(r.state), rtt(r.rtt_ms), text(r.public_key)]),
  );
}

function showFriends(result: unknown): string {
  const friends = asArray(result);
  if (friends.length === 0) return "no friends";
  return table(
    ["public key", "online", "progress", "name", "relays", "onion"],
    friends.map((f) => [
      text(f.public_key),
      f.online === true ? "yes" : "no",
      text(f.progress),
      text(f.name),
      Array.isArray(f.relays) ? String(f.relays.length) : "-",
      onionColumn(f),
    ]),
  );
}

/** Why an offline friend is not online yet, as far as the onion goes. */
function onionColumn(f: Record<string, unknown>): string {
  const parts: string[] = [];
  const o = f.onion === null || f.onion === undefined ? null : asObject(f.onion);
  if (o !== null) {
    const found = typeof o.announced_at === "number" && o.announced_at > 0;
    parts.push(found ? `found at ${o.announced_at} of ${o.search_nodes}` : "searching");
  }
  const r = f.request === null || f.request === undefined ? null : asObject(f.request);
  if (r !== null) {
    parts.push(
      typeof r.attempts === "number" && r.attempts > 0
        ? `request sent ${r.attempts}x`
        : "request waiting",
    );
  }
  return parts.length > 0 ? parts.join(", ") : "-";
}

function showRequests(result: unknown): string {
  const requests = asArray(result);
  if (requests.length === 0) return "no friend requests";
  return table(
    ["public key", "received", "message"],
    requests.map((r) => [text(r.public_key), text(r.received_at), text(r.text)]),
  );
}

/** `announced (stored at 1 of 1 nodes, 2 paths)` or why not. */
function onionLine(v: unknown): string {
  if (v === null || v === undefined) return "-";
  const o = asObject(v);
  // `self` gives counts, `status` the lists.
  const count = (v: unknown) => (Array.isArray(v) ? v.length : typeof v === "number" ? v : 0);
  const nodes = count(o.announce_nodes ?? o.nodes);
  const paths = count(o.paths);
  const where = `stored at ${text(o.stored_at)} of ${nodes} nodes, ${paths} paths, ` +
    `${text(o.bootstrap_nodes)} bootstrap nodes`;
  return `${o.announced === true ? "announced" : "not announced"} (${where})`;
}

function duration(v: unknown): string {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) return "-";
  let s = Math.floor(v);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m ${s}s`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

function showStatus(result: unknown): string {
  const st = asObject(result);
  const self = asObject(st.self);
  const relays = asArray(st.relays);
  const friends = asArray(st.friends);
  const rows: [string, unknown][] = [["address", self.address]];
  if (typeof self.name === "string" && self.name !== "") rows.push(["name", self.name]);
  rows.push(
    ["relays", `${relays.filter((r) => r.state === "confirmed").length} up of ${relays.length}`],
    ["friends", `${friends.filter((f) => f.online === true).length} online of ${friends.length}`],
    ["onion", onionLine(st.onion)],
    ["uptime", duration(st.uptime_s)],
  );
  if (st.version !== undefined) rows.push(["version", st.version]);
  return keyValues(rows);
}

// ---------------------------------------------------------------------------------------------

function processIo(): MainIo {
  const writer = (file: { writeSync(p: Uint8Array): number }) => (s: string) => {
    let bytes = encoder.encode(s);
    while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
  };
  return { stdout: writer(Deno.stdout), stderr: writer(Deno.stderr) };
}

if (import.meta.main) Deno.exit(await main(Deno.args));

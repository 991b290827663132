/**
 * The I/O shell around one RelayClient: a Deno TCP socket (to the relay, or to the proxy
 * when one is set: then never to the relay directly), a read loop, one write in flight at a
 * time (partial writes are fed back to the core), and one timer for the core's deadlines.
 * Runs inside the relay Worker; kept apart from the Worker entry so tests and benchmarks
 * can drive it in-thread too.
 */
import { fromHex, systemRandom } from "../daemon/core/common/crypto.ts";
import { RelayClient } from "../daemon/core/relay_client/relay_client.ts";
import { formatProxyUrl } from "../daemon/core/relay_client/proxy.ts";
import { DeadlineTimer } from "./deadline_timer.ts";
import type { TcpSessionKeys } from "../daemon/core/tcp_common/handshake.ts";
import type { CaptureEvent, RelayLinkEvent, RelaySendItem, ToRelayWorker } from "./messages.ts";

type ConnectCommand = Extract<ToRelayWorker, { t: "connect" }>;

/** The opt-in capture and key log (`--capture`, `--keylog`): off unless given. */
export interface RelayObserver {
  readonly capture?: (events: CaptureEvent[]) => void;
  readonly keylog?: (entry: TcpSessionKeys) => void;
}

/** Epoch milliseconds with sub-millisecond precision, for capture timestamps. */
function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

const READ_BUFFER = 64 * 1024;

export class RelayConnection {
  readonly #cmd: ConnectCommand;
  readonly #emit: (events: RelayLinkEvent[]) => void;
  readonly #clock: () => number;
  readonly #relayPk: Uint8Array;
  #client: RelayClient | null = null;
  #conn: Deno.TcpConn | null = null;
  #writing = false;
  readonly #timer = new DeadlineTimer();
  #outbox: RelayLinkEvent[] = [];
  #flushQueued = false;
  #attempt = 0;
  #closedByOwner = false;
  /** dataPacketsSent of the current client already reported as credit. */
  #creditedSent = 0;
  #tasks = new Set<Promise<unknown>>();
  readonly #observer: RelayObserver | undefined;
  #captureBox: CaptureEvent[] = [];
  /** Sockets opened so far; the open one's number while the capture sees it open. */
  #sockets = 0;
  #captured: number | null = null;

  constructor(
    cmd: ConnectCommand,
    emit: (events: RelayLinkEvent[]) => void,
    clock: () => number = () => performance.now(),
    observer?: RelayObserver,
  ) {
    this.#observer = observer;
    this.#cmd = cmd;
    this.#emit = emit;
    this.#clock = clock;
    this.#relayPk = fromHex(cmd.relay.publicKey, 32);
  }

  get client(): RelayClient | null {
    return this.#client;
  }

  start(routes: Uint8Array[] = []): void {
    this.#attempt++;
    const client = new RelayClient({
      self: this.#cmd.self,
      relayPublicKey: this.#relayPk,
      random: systemRandom,
      now: this.#clock(),
      proxy: this.#cmd.proxy
        ? {
          kind: this.#cmd.proxy.kind,
          target: { host: this.#cmd.relay.host, port: this.#cmd.relay.port },
        }
        : undefined,
      config: this.#cmd.config,
    });
    this.#client = client;
    this.#creditedSent = 0;
    for (const pk of routes) client.route(pk);
    const dest = this.#cmd.proxy ?? this.#cmd.relay;
    this.#push({
      type: "connecting",
      attempt: this.#attempt,
      via: this.#cmd.proxy ? formatProxyUrl(this.#cmd.proxy) : "direct",
    });
    this.#track(this.#open(client, dest.host, dest.port));
    this.#afterCore();
  }

  async #open(client: RelayClient, host: string, port: number): Promise<void> {
    const t0 = this.#clock();
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: host, port, transport: "tcp" });
    } catch (e) {
      if (client === this.#client) {
        client.transportClosed(`connect to ${host}:${port}: ${errorText(e)}`);
        this.#afterCore();
      }
      return;
    }
    if (client !== this.#client || client.state === "disconnected") {
      conn.close(); // timed out or closed while connecting
      return;
    }
    conn.setNoDelay(true);
    this.#conn = conn;
    this.#captureOpen(conn);
    this.#push({ type: "tcp_connected", connectMs: this.#clock() - t0 });
    client.transportConnected(this.#clock());
    this.#afterCore();
    await this.#readLoop(conn, client);
  }

  async #readLoop(conn: Deno.TcpConn, client: RelayClient): Promise<void> {
    const buf = new Uint8Array(READ_BUFFER);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (client !== this.#client || client.state === "disconnected") return;
        if (n === null) {
          this.#captureClose("server", false);
          client.transportClosed();
          this.#afterCore();
          return;
        }
        if (this.#captured !== null) this.#captureData("server", buf.subarray(0, n));
        client.receive(buf.subarray(0, n), this.#clock());
        this.#afterCore();
      }
    } catch (e) {
      if (client === this.#client && client.state !== "disconnected") {
        this.#captureClose("server", true);
        client.transportClosed(`read: ${errorText(e)}`);
        this.#afterCore();
      }
    }
  }

  #pump(): void {
    const client = this.#client;
    const conn = this.#conn;
    if (this.#writing || client === null || conn === null) return;
    const chunk = client.pollTransmit(this.#clock());
    if (chunk === null) return;
    this.#writing = true;
    this.#track(
      conn.write(chunk).then(
        (n) => {
          this.#writing = false;
          if (this.#captured !== null && conn === this.#conn) {
            this.#captureData("client", chunk.subarray(0, n));
          }
          if (client !== this.#client) return;
          client.written(n, this.#clock());
          this.#afterCore();
        },
        (e) => {
          this.#writing = false;
          if (client === this.#client && client.state !== "disconnected") {
            client.transportClosed(`write: ${errorText(e)}`);
            this.#afterCore();
          }
        },
      ),
    );
  }

  /** Collect the core's events, act on a close, write what may be written, re-arm the timer. */
  #afterCore(): void {
    const client = this.#client;
    if (client === null) return;
    const events = client.takeEvents();
    let closed: Extract<RelayLinkEvent, { type: "closed" }> | null = null;
    for (const e of events) {
      if (e.type === "closed") closed = e;
    }
    if (events.length > 0) this.#push(...events);
    if (this.#observer?.keylog && events.some((e) => e.type === "confirmed")) {
      const keys = client.sessionKeys();
      if (keys !== null) this.#observer.keylog(keys);
    }
    if (closed !== null) {
      this.#dropSocket();
      if (
        closed.reason === "stalled" && !this.#closedByOwner && this.#cmd.reconnectOnStall !== false
      ) {
        const routes = client.wantedRoutes();
        this.#push({ type: "reconnecting", attempt: this.#attempt + 1, routes: routes.length });
        this.start(routes);
      } else {
        this.#timer.disarm();
      }
      return;
    }
    this.#pump();
    this.#arm(client);
    if (client.dataPacketsSent !== this.#creditedSent) this.#scheduleFlush();
  }

  #arm(client: RelayClient): void {
    const now = this.#clock();
    const at = Math.min(client.nextDeadline(now), client.nextTransmitTime(now));
    this.#timer.arm(at, now, () => {
      if (client !== this.#client) return;
      client.tick(this.#clock());
      this.#afterCore();
    });
  }

  #dropSocket(): void {
    const conn = this.#conn;
    this.#conn = null;
    if (conn) this.#captureClose("client", false);
    if (conn) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  #push(...events: RelayLinkEvent[]): void {
    for (const e of events) this.#outbox.push(e);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  // ---- the opt-in capture: what this socket really carried, copied as it goes ----------

  #captureOpen(conn: Deno.TcpConn): void {
    this.#sockets++;
    if (this.#observer?.capture === undefined) return;
    const l = conn.localAddr as Deno.NetAddr;
    const r = conn.remoteAddr as Deno.NetAddr;
    this.#captured = this.#sockets;
    this.#captureBox.push({
      c: "open",
      conn: this.#sockets,
      local: { addr: l.hostname, port: l.port },
      remote: { addr: r.hostname, port: r.port },
      at: wallClock(),
    });
    this.#scheduleFlush();
  }

  #captureData(from: "client" | "server", bytes: Uint8Array): void {
    if (this.#captured === null || bytes.length === 0) return;
    this.#captureBox.push({
      c: "data",
      conn: this.#captured,
      from,
      bytes: bytes.slice(),
      at: wallClock(),
    });
    this.#scheduleFlush();
  }

  #captureClose(by: "client" | "server", reset: boolean): void {
    if (this.#captured === null) return;
    this.#captureBox.push({ c: "close", conn: this.#captured, by, reset, at: wallClock() });
    this.#captured = null;
    this.#scheduleFlush();
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#captureBox.length > 0) {
      const box = this.#captureBox;
      this.#captureBox = [];
      this.#observer?.capture?.(box);
    }
    const sent = this.#client?.dataPacketsSent ?? 0;
    if (sent !== this.#creditedSent) {
      this.#outbox.push({ type: "sent", packets: sent - this.#creditedSent });
      this.#creditedSent = sent;
    }
    if (this.#outbox.length === 0) return;
    const batch = this.#outbox;
    this.#outbox = [];
    this.#emit(batch);
  }

  #track(p: Promise<unknown>): void {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  // ---- commands from the owner ----------------------------------------------------------

  route(publicKey: Uint8Array): void {
    const r = this.#client?.route(publicKey);
    if (r && !r.ok) {
      this.#push({ type: "route_refused", publicKey });
    }
    this.#afterCore();
  }

  unroute(publicKey: Uint8Array): void {
    this.#client?.unroute(publicKey);
    this.#afterCore();
  }

  send(items: readonly RelaySendItem[]): void {
    const client = this.#client;
    if (client === null) return;
    let refused: RelaySendItem[] | null = null;
    let last: { reason: string; message: string } | null = null;
    for (const item of items) {
      const r = item.kind === "data"
        ? client.sendData(item.publicKey, item.data)
        : item.kind === "oob"
        ? client.sendOob(item.publicKey, item.data)
        : client.sendOnion(item.data);
      if (!r.ok) {
        // Group consecutive refusals with the same reason into one event.
        if (refused !== null && last !== null && last.reason !== r.reason) {
          this.#pushRefused(refused, last);
          refused = null;
        }
        (refused ??= []).push(item);
        last = r;
      }
    }
    if (refused !== null && last !== null) this.#pushRefused(refused, last);
    this.#afterCore();
  }

  #pushRefused(items: RelaySendItem[], r: { reason: string; message: string }): void {
    this.#push({
      type: "refused",
      reason: r.reason as Extract<RelayLinkEvent, { type: "refused" }>["reason"],
      message: r.message,
      items,
    });
  }

  requestStats(): void {
    if (this.#client) this.#push({ type: "stats", stats: this.#client.stats() });
  }

  /**
   * Close for good; resolves when the socket's pending reads and writes have settled. With
   * `lingerMs` what is queued (a shutdown's KILL packets) may first be written for that long.
   */
  async close(lingerMs = 0): Promise<void> {
    this.#closedByOwner = true;
    const client = this.#client;
    const end = this.#clock() + Math.min(Math.max(lingerMs, 0), 5_000);
    while (
      client !== null && client === this.#client && client.isConfirmed &&
      client.hasPendingOutput && this.#clock() < end
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (client && client.state !== "disconnected") {
      client.close();
      this.#afterCore();
    }
    this.#dropSocket();
    this.#timer.disarm();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    this.#flush();
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

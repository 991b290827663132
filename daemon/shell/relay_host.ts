/**
 * Our TCP relay's I/O shell: the RelayServer core (daemon/core/relay_server/relay_server.ts) behind a Deno
 * listener and its sockets. `deno task relay` runs it (relay_main.ts); tests run it in-thread,
 * with two switches for deliberate faults: drop every DATA packet, or stop reading every
 * socket (a relay wedged as tox-bootstrapd wedges, relay_load.md §1).
 *
 * One read loop per socket, one write in flight per socket (partial writes go back to the
 * core), one timer for the core's deadline. stop() resolves only once the listener, every
 * socket, every pending read/write and the timer are gone, so tests pass Deno's sanitizers.
 *
 * Under load: a client that stops reading only ever has its own write pending (each socket's
 * write is its own promise, nobody awaits it in line), so its backlog stays in the core, where
 * its queue bound drops DATA to it; every other socket keeps being read and written. A read
 * buffer starts small and grows only for a client that fills it, so a thousand idle clients
 * do not pin 64 KiB each. The timer is armed on a grid (`timerResolutionMs`), so thousands of
 * clients' PINGs due within the same second are handled by one tick, not one timer each.
 */
import {
  type KeyPair,
  newKeyPair,
  type RandomBytes,
  systemRandom,
  toHex,
} from "../core/common/crypto.ts";
import type { ForwardPolicy, RelayServerConfig } from "../core/relay_server/config.ts";
import type { ConnectionNumber, RelayServerEvent } from "../core/relay_server/events.ts";
import { RelayServer } from "../core/relay_server/relay_server.ts";
import { DeadlineTimer } from "../../workers/deadline_timer.ts";

export interface RoutingRelayOptions {
  /** Where to listen. Default 127.0.0.1, on a port of the system's choosing (0). */
  readonly host?: string;
  readonly port?: number;
  /** Client sockets at most; one more is closed as it is accepted (counted). Default 4096. */
  readonly maxConnections?: number;
  /** Default: a fresh key pair. */
  readonly keys?: KeyPair;
  /** Default: the OS random source. */
  readonly random?: RandomBytes;
  readonly config?: Partial<RelayServerConfig>;
  /** Asked after setDropData's rule, for packets that rule lets through. */
  readonly forward?: ForwardPolicy;
  /** Every batch of core events, as they happen (they are also kept in `events`). */
  readonly onEvents?: (events: readonly RelayServerEvent[]) => void;
  /**
   * How many of the latest core events `events` keeps (default 10,000): a relay that runs
   * for weeks must not keep every connection's history. 0 keeps none.
   */
  readonly keepEvents?: number;
  /**
   * The timer fires on multiples of this (ms), late by less than one step. Default: 1 s,
   * or a tenth of the shortest of the core's ping and handshake timers when that is shorter.
   */
  readonly timerResolutionMs?: number;
}

export interface RoutingRelay extends AsyncDisposable {
  readonly host: string;
  readonly port: number;
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;
  /** The core, for its stats and connection info. */
  readonly server: RelayServer;
  /** Core events, oldest first: all of them, or at least the latest `keepEvents`. */
  readonly events: readonly RelayServerEvent[];
  /** true: DATA between routed clients is dropped silently (routing, PING, OOB still work). */
  setDropData(drop: boolean): void;
  /**
   * false: no socket is read any more, as a relay that stopped reading (its clients' writes
   * back up in the kernel). A read already in flight may still take up to 64 KiB per socket;
   * those bytes are held, not processed, until reading resumes. Timers and writes go on.
   */
  setReading(reading: boolean): void;
  /** Confirmed clients. */
  clients(): number;
  /** Sockets closed at accept because `maxConnections` were open. */
  readonly refused: number;
  /** Close the listener and every socket; resolves when all of it has settled. */
  stop(): Promise<void>;
}

/** A socket's first read buffer: a few frames; grown (×4) each time one read fills it. */
const READ_BUFFER_MIN = 4 * 1024;
const READ_BUFFER_MAX = 64 * 1024;

interface Socket {
  readonly id: ConnectionNumber;
  readonly conn: Deno.TcpConn;
  writing: boolean;
  closed: boolean;
  /** Bytes read while reading was switched off. */
  held: Uint8Array[];
}

/** Start a relay listening (by default on 127.0.0.1, on a port of the system's choosing). */
export function startRoutingRelay(opts: RoutingRelayOptions = {}): RoutingRelay {
  return new RoutingRelayShell(opts);
}

class RoutingRelayShell implements RoutingRelay {
  readonly host: string;
  readonly port: number;
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;
  readonly server: RelayServer;
  readonly events: RelayServerEvent[] = [];

  readonly #listener: Deno.TcpListener;
  readonly #onEvents: ((events: readonly RelayServerEvent[]) => void) | undefined;
  readonly #sockets = new Map<ConnectionNumber, Socket>();
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #acceptLoop: Promise<void>;
  #dropData = false;
  #reading = true;
  #resume: { promise: Promise<void>; resolve: () => void } | null = null;
  readonly #timer = new DeadlineTimer();
  #stopping = false;
  #stopped: Promise<void> | null = null;
  readonly #maxConnections: number;
  readonly #keepEvents: number;
  readonly #timerStep: number;
  /** Sockets closed at accept because the relay was full. */
  refused = 0;

  constructor(opts: RoutingRelayOptions) {
    const keys = opts.keys ?? newKeyPair();
    const forward = opts.forward;
    this.server = new RelayServer({
      keys,
      random: opts.random ?? systemRandom,
      config: opts.config,
      forward: (from, to, packet, now) => {
        if (this.#dropData && packet.kind === "data") return false;
        return forward === undefined || forward(from, to, packet, now);
      },
    });
    this.publicKey = keys.publicKey;
    this.publicKeyHex = toHex(keys.publicKey);
    this.#onEvents = opts.onEvents;
    this.host = opts.host ?? "127.0.0.1";
    this.#maxConnections = opts.maxConnections ?? 4096;
    this.#keepEvents = opts.keepEvents ?? 10_000;
    const c = this.server.config;
    this.#timerStep = opts.timerResolutionMs ?? Math.max(
      1,
      Math.min(
        1_000,
        Math.floor(Math.min(c.pingIntervalMs, c.pingTimeoutMs, c.handshakeTimeoutMs) / 10),
      ),
    );
    this.#listener = Deno.listen({ hostname: this.host, port: opts.port ?? 0, transport: "tcp" });
    this.port = this.#listener.addr.port;
    this.#acceptLoop = this.#accept();
  }

  setDropData(drop: boolean): void {
    this.#dropData = drop;
  }

  setReading(reading: boolean): void {
    if (reading === this.#reading) return;
    this.#reading = reading;
    if (!reading) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#resume = { promise, resolve };
      return;
    }
    // Held bytes first, before any read loop is let go, so each stream stays in order.
    for (const s of this.#sockets.values()) {
      const held = s.held;
      s.held = [];
      for (const bytes of held) {
        if (!s.closed) this.server.receive(s.id, bytes, now());
      }
    }
    this.#afterCore();
    this.#resume?.resolve();
    this.#resume = null;
  }

  clients(): number {
    return this.server.stats().confirmed;
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const id of [...this.#sockets.keys()]) this.server.close(id, "the relay is stopping");
    this.#afterCore();
    for (const s of this.#sockets.values()) this.#drop(s);
    this.#resume?.resolve();
    this.#resume = null;
    this.#timer.disarm();
    await this.#acceptLoop;
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    this.#timer.disarm();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#stopping) {
          conn.close();
          continue;
        }
        if (this.#sockets.size >= this.#maxConnections) {
          this.refused++;
          conn.close();
          continue;
        }
        conn.setNoDelay(true);
        const id = this.server.accept(now());
        const s: Socket = { id, conn, writing: false, closed: false, held: [] };
        this.#sockets.set(id, s);
        this.#track(this.#readLoop(s));
        this.#afterCore();
      }
    } catch { /* the listener was closed */ }
  }

  async #readLoop(s: Socket): Promise<void> {
    let buf = new Uint8Array(READ_BUFFER_MIN);
    try {
      for (;;) {
        if (this.#resume !== null) await this.#resume.promise;
        if (s.closed) return;
        const n = await s.conn.read(buf);
        if (s.closed) return;
        if (n === null) {
          // A relay that is not reading does not see the end of the stream either.
          if (this.#resume !== null) await this.#resume.promise;
          if (s.closed) return;
          this.server.closed(s.id);
          this.#afterCore();
          return;
        }
        if (!this.#reading) {
          s.held.push(buf.slice(0, n));
          continue;
        }
        this.server.receive(s.id, buf.subarray(0, n), now());
        this.#afterCore();
        // The core keeps no view into buf past receive(), so a new one is safe at once.
        if (n === buf.length && buf.length < READ_BUFFER_MAX) {
          buf = new Uint8Array(Math.min(READ_BUFFER_MAX, buf.length * 4));
        }
      }
    } catch (e) {
      if (!s.closed) {
        this.server.closed(s.id, `read: ${errorText(e)}`);
        this.#afterCore();
      }
    }
  }

  #pump(s: Socket): void {
    if (s.writing || s.closed) return;
    const chunk = this.server.pollTransmit(s.id);
    if (chunk === null) return;
    s.writing = true;
    this.#track(
      s.conn.write(chunk).then(
        (n) => {
          s.writing = false;
          if (s.closed) return;
          this.server.written(s.id, n);
          this.#pump(s);
          this.#afterCore();
        },
        (e) => {
          s.writing = false;
          if (s.closed) return;
          this.server.closed(s.id, `write: ${errorText(e)}`);
          this.#afterCore();
        },
      ),
    );
  }

  /** Act on the core's events, start the writes it asks for, re-arm the timer. */
  #afterCore(): void {
    const events = this.server.takeEvents();
    if (events.length > 0) {
      for (const e of events) {
        if (this.#keepEvents > 0) this.events.push(e);
        if (e.type === "closed") {
          const s = this.#sockets.get(e.id);
          if (s !== undefined) this.#drop(s);
        }
      }
      // Trimmed in batches, so keeping the latest N costs O(1) per event.
      if (this.events.length > 2 * this.#keepEvents) {
        this.events.splice(0, this.events.length - this.#keepEvents);
      }
      this.#onEvents?.(events);
    }
    for (const id of this.server.takeWritable()) {
      const s = this.#sockets.get(id);
      if (s !== undefined) this.#pump(s);
    }
    this.#arm();
  }

  #drop(s: Socket): void {
    s.closed = true;
    s.held = [];
    this.#sockets.delete(s.id);
    try {
      s.conn.close();
    } catch { /* already closed */ }
  }

  #arm(): void {
    const next = this.#stopping ? Infinity : this.server.nextDeadline();
    // On the grid: deadlines within one step share a timer, which is then left alone.
    const at = next === Infinity ? Infinity : Math.ceil(next / this.#timerStep) * this.#timerStep;
    this.#timer.arm(at, now(), () => {
      this.server.tick(now());
      this.#afterCore();
    });
  }

  #track(p: Promise<unknown>): void {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }
}

function now(): number {
  return performance.now();
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

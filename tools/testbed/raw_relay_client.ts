/**
 * A bare TCP relay client for socket-level relay tests: the real client codecs (handshake,
 * framing, packets) over one Deno.TcpConn, with none of RelayClient's rules, so a test can
 * open a thousand of them in one thread, send what an honest client never would, or stop
 * reading on purpose. The relay's 96-byte answer and each frame are read as they arrive.
 */
import {
  type KeyPair,
  newKeyPair,
  type RandomBytes,
  systemRandom,
} from "../../daemon/core/common/crypto.ts";
import {
  completeClientHandshake,
  createClientHandshake,
  type SecureSession,
  SERVER_HANDSHAKE_SIZE,
} from "../../daemon/core/tcp_common/handshake.ts";
import { FrameReader, openFrame, sealFrame } from "../../daemon/core/tcp_common/framing.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  type RelayPacket,
} from "../../daemon/core/tcp_common/packets.ts";

export interface RawRelayClientOptions {
  readonly host?: string;
  /** Default: a fresh key pair. */
  readonly keys?: KeyPair;
  readonly random?: RandomBytes;
  /** Read buffer per client (default 16 KiB). */
  readonly readBuffer?: number;
  /** Time for connect + handshake (default 5 s). */
  readonly timeoutMs?: number;
}

/** How the relay ended the stream: EOF, or an error such as a reset. */
export interface Ended {
  readonly error: string | null;
}

/** Write all of `bytes` (Deno's write may take part of it). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let o = 0; o < bytes.length;) o += await conn.write(bytes.subarray(o));
}

/** `p`, or a rejection naming `what` after `ms`; the timer never outlives the call. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Read `conn` until the other side ends it (EOF or reset): "eof" / "reset", or "timeout"
 * after `ms` (the socket is then closed here). Whatever arrives before is discarded.
 */
export async function untilClosed(
  conn: Deno.Conn,
  ms: number,
): Promise<"eof" | "reset" | "timeout"> {
  const buf = new Uint8Array(4096);
  const loop = (async () => {
    try {
      while ((await conn.read(buf)) !== null) { /* discard */ }
      return "eof" as const;
    } catch {
      return "reset" as const;
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  const r = await Promise.race([loop, timeout]);
  clearTimeout(timer);
  if (r === "timeout") {
    try {
      conn.close();
    } catch { /* already closed */ }
    await loop;
  }
  return r;
}

export class RawRelayClient {
  readonly keys: KeyPair;
  readonly conn: Deno.TcpConn;
  readonly session: SecureSession;
  /** Packets received and not yet taken by next(); unused while onPacket is set. */
  readonly inbox: RelayPacket[] = [];
  /** Called for each packet instead of queueing it in the inbox. */
  onPacket: ((p: RelayPacket) => void) | null = null;
  /** Set once the relay ends the stream (or we close it). */
  ended: Ended | null = null;

  readonly #reader: FrameReader;
  readonly #bufSize: number;
  #waiters: (() => void)[] = [];
  #paused: PromiseWithResolvers<void> | null = null;
  #closed = false;
  #loop: Promise<void> | null = null;

  private constructor(
    keys: KeyPair,
    conn: Deno.TcpConn,
    session: SecureSession,
    reader: FrameReader,
    bufSize: number,
  ) {
    this.keys = keys;
    this.conn = conn;
    this.session = session;
    this.#reader = reader;
    this.#bufSize = bufSize;
  }

  /** TCP connect and the 128/96-byte handshake; not yet confirmed (send a frame for that). */
  static async connect(
    port: number,
    relayPublicKey: Uint8Array,
    opts: RawRelayClientOptions = {},
  ): Promise<RawRelayClient> {
    const keys = opts.keys ?? newKeyPair();
    const conn = await Deno.connect({ hostname: opts.host ?? "127.0.0.1", port });
    try {
      const hs = createClientHandshake(keys, relayPublicKey, opts.random ?? systemRandom);
      await writeAll(conn, hs.packet);
      const reader = new FrameReader();
      const buf = new Uint8Array(opts.readBuffer ?? 16 * 1024);
      const reply = await within(
        (async () => {
          for (;;) {
            const r = reader.takeRaw(SERVER_HANDSHAKE_SIZE);
            if (r !== null) return r;
            const n = await conn.read(buf);
            if (n === null) throw new Error("the relay closed during the handshake");
            reader.push(buf.subarray(0, n));
          }
        })(),
        opts.timeoutMs ?? 5_000,
        "handshake",
      );
      const session = completeClientHandshake(hs.pending, reply);
      if (session === null) throw new Error("the relay's handshake answer did not open");
      const c = new RawRelayClient(keys, conn, session, reader, buf.length);
      c.#loop = c.#readLoop();
      return c;
    } catch (e) {
      try {
        conn.close();
      } catch { /* already closed */ }
      throw e;
    }
  }

  /** The sealed frame for `p` (advances the send nonce: write it, in order). */
  frame(p: RelayPacket): Uint8Array {
    return sealFrame(this.session, encodeRelayPacket(p));
  }

  /** A frame for any plaintext, even one the encoder would refuse. */
  framePlain(plain: Uint8Array): Uint8Array {
    return sealFrame(this.session, plain);
  }

  send(p: RelayPacket): Promise<void> {
    return writeAll(this.conn, this.frame(p));
  }

  /** Bytes as they are: frames glued together, or garbage. */
  sendRaw(bytes: Uint8Array): Promise<void> {
    return writeAll(this.conn, bytes);
  }

  /** The next packet (waits up to `ms`); null once the stream has ended. */
  async next(ms = 5_000): Promise<RelayPacket | null> {
    await this.#waitFor(() => this.inbox.length > 0 || this.ended !== null, ms, "next packet");
    return this.inbox.shift() ?? null;
  }

  /** Wait up to `ms` until `pred` holds (checked on every batch of packets and at the end). */
  async until(pred: () => boolean, ms = 5_000, what = "condition"): Promise<void> {
    await this.#waitFor(() => pred() || this.ended !== null, ms, what);
    if (!pred()) throw new Error(`${what}: the relay ended the stream first`);
  }

  /** PING and wait for its PONG (the relay confirms a client on its first frame). */
  async ping(id = 1n, ms = 5_000): Promise<void> {
    await this.send({ kind: "ping", pingId: id });
    for (;;) {
      const p = await this.next(ms);
      if (p === null) throw new Error("the relay ended the stream before the PONG");
      if (p.kind === "pong" && p.pingId === id) return;
    }
  }

  /** Stop reading: the relay's frames back up in the kernel, then in the relay. */
  pause(): void {
    this.#paused ??= Promise.withResolvers<void>();
  }

  resume(): void {
    this.#paused?.resolve();
    this.#paused = null;
  }

  /** Wait up to `ms` for the relay to end the stream. */
  async closedByRelay(ms = 5_000): Promise<Ended> {
    await this.#waitFor(() => this.ended !== null, ms, "relay close");
    return this.ended!;
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.conn.close();
      } catch { /* already closed */ }
      this.resume();
    }
    await this.#loop;
  }

  /**
   * Until `check` holds, woken by the read loop; rejects after `ms`. A timed-out wait leaves
   * nothing behind that could take a packet meant for a later call.
   */
  async #waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
    try {
      while (!check()) {
        const woken = new Promise<void>((r) => this.#waiters.push(r));
        if ((await Promise.race([woken, expired])) === "timeout") {
          throw new Error(`${what}: nothing within ${ms} ms`);
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const r of w) r();
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(this.#bufSize);
    let error: string | null = null;
    try {
      // Frames that came with the handshake answer first.
      this.#drain();
      for (;;) {
        if (this.#paused !== null) await this.#paused.promise;
        if (this.#closed) break;
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#reader.push(buf.subarray(0, n));
        this.#drain();
      }
    } catch (e) {
      if (!this.#closed) error = e instanceof Error ? e.message : String(e);
    }
    this.ended = { error };
    this.#wake();
  }

  #drain(): void {
    for (;;) {
      const r = this.#reader.next();
      if (r.kind === "need_more") break;
      if (r.kind === "error") throw new Error(`relay sent a bad frame: ${r.error.message}`);
      const plain = openFrame(this.session, r.box);
      if (plain === null) throw new Error("a relay frame did not open");
      const d = decodeRelayPacket(plain);
      if (!d.ok) throw new Error(`relay sent a bad packet: ${d.error.message}`);
      const p = d.value;
      if (this.onPacket !== null) this.onPacket(p);
      else this.inbox.push(p);
    }
    this.#wake();
  }
}

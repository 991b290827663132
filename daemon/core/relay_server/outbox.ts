/**
 * What the relay owes its clients on the wire, and the bounds on it: the handshake answer, the
 * queued packets (sealed in order when handed to the socket), the chunk the socket is
 * writing, and the bytes owed to all clients together. c-toxcore lets the kernel's send
 * buffers hold this backlog; we hold it ourselves so that it is bounded and counted.
 *
 * One FIFO per connection: c-toxcore writes each frame at once, so what a client sees is
 * frames in the order the relay produced them; a FIFO here keeps that order (a
 * DISCONNECT_NOTIFICATION never overtakes DATA forwarded before it). A client's queued bytes
 * are what the relay still owes it on the wire: every queued frame at its sealed size, plus
 * the unwritten part of the chunk handed to the socket. The bounds stand in for "the socket is
 * busy" (relay_load.md §1):
 * - DATA and OOB_RECV are dropped silently (counted) once the client is owed `dataQueueMax`
 *   bytes: c-toxcore drops non-priority packets when the receiver's socket is busy. They are
 *   also dropped (counted apart) while all clients together are owed `totalQueueMax`: a few
 *   hundred slow readers cannot make the relay grow without bound.
 * - Everything else (routing response, notifications, PING, PONG) is always queued, up to
 *   `queueMax`; past that the client is not reading what it asks for (a PING flood it never
 *   reads the PONGs of, say) and its connection is closed as its fault (`queue_overflow`).
 *   c-toxcore queues those without bound. Control packets ignore `totalQueueMax` (dropping
 *   one would break the protocol); `queueMax` per client bounds them.
 *
 * An overflowing client is only marked (doomed) here, never closed: the caller may be halfway
 * through updating that client's peers. The relay closes it once the update is done.
 */
import { frameSize, newFrameScratch, sealFrameInto } from "../tcp_common/framing.ts";
import { packetName } from "../tcp_common/packets.ts";
import type { RelayServerConfig } from "./config.ts";
import type { Conn } from "./connection.ts";
import type { ConnectionNumber } from "./events.ts";

export class Outbox {
  readonly #config: RelayServerConfig;
  readonly #writable = new Set<ConnectionNumber>();
  readonly #doomed: Conn[] = [];
  readonly #scratchOut = newFrameScratch();
  #owed = 0;
  #peakOwed = 0;
  #droppedQueueFull = 0;
  #droppedTotalFull = 0;

  constructor(config: RelayServerConfig) {
    this.#config = config;
  }

  /** Bytes owed to all clients now, and the most ever at once. */
  get owed(): number {
    return this.#owed;
  }
  get peakOwed(): number {
    return this.#peakOwed;
  }
  /** DATA or OOB_RECV dropped at a receiver's dataQueueMax, and at totalQueueMax. */
  get droppedQueueFull(): number {
    return this.#droppedQueueFull;
  }
  get droppedTotalFull(): number {
    return this.#droppedTotalFull;
  }

  /** The 96-byte handshake answer: it goes out before any frame. */
  answerHandshake(c: Conn, response: Uint8Array): void {
    c.handshakeResponse = response;
    this.#owe(c, response.length);
    this.#writable.add(c.id);
  }

  /** A control packet: always queued, unless the client has stopped reading (then closed). */
  sendPriority(c: Conn, plain: Uint8Array): boolean {
    if (c.status === "closed" || c.doomed !== null) return false;
    const cost = frameSize(plain.length);
    if (c.owed + cost > this.#config.queueMax) {
      // Not closed here: the caller may be halfway through updating this client's peers.
      c.doomed = {
        reason: "queue_overflow",
        message:
          `${c.owed} bytes queued for a client that does not read them; limit ${this.#config.queueMax} (${
            packetName(plain[0])
          } refused)`,
      };
      this.#doomed.push(c);
      return false;
    }
    c.queue.push(plain, plain[0]);
    this.#owe(c, cost);
    this.#writable.add(c.id);
    return true;
  }

  /**
   * DATA or OOB_RECV (first byte `id`): dropped silently while the client's queue is at its
   * data bound, or all queues together at theirs.
   */
  sendData(c: Conn, plain: Uint8Array, id = plain[0]): boolean {
    if (c.status === "closed" || c.doomed !== null) return false;
    const cost = frameSize(plain.length);
    if (c.owed + cost > this.#config.dataQueueMax) {
      c.droppedQueueFull++;
      this.#droppedQueueFull++;
      return false;
    }
    if (this.#owed + cost > this.#config.totalQueueMax) {
      this.#droppedTotalFull++;
      return false;
    }
    c.queue.push(plain, id);
    this.#owe(c, cost);
    this.#writable.add(c.id);
    return true;
  }

  #owe(c: Conn, n: number): void {
    c.owed += n;
    if (c.owed > c.peakOwed) c.peakOwed = c.owed;
    this.#owed += n;
    if (this.#owed > this.#peakOwed) this.#peakOwed = this.#owed;
  }

  /** RelayServer.pollTransmit for `c`: an unfinished chunk first, else a newly sealed one. */
  poll(c: Conn): Uint8Array | null {
    if (c.out !== null) return c.out.subarray(c.outOff);
    if (c.handshakeResponse !== null) {
      c.out = c.handshakeResponse;
      c.handshakeResponse = null;
      return c.out;
    }
    if (c.queue.length === 0) return null;
    const { count, size } = c.queue.plan(this.#config.maxWriteChunk);
    const chunk = new Uint8Array(size);
    let o = 0;
    // Sealing moves bytes from the queue to the chunk at the same size: owed is unchanged.
    for (let i = 0; i < count; i++) {
      o += sealFrameInto(c.session!, c.queue.shift(), chunk, o, this.#scratchOut);
    }
    c.out = chunk;
    c.outOff = 0;
    return chunk;
  }

  /** RelayServer.written for `c`. */
  written(c: Conn, n: number): void {
    if (c.out === null) return;
    if (!Number.isInteger(n) || n < 0 || c.outOff + n > c.out.length) {
      throw new RangeError(`written(${c.id}, ${n}): only ${c.out.length - c.outOff} bytes pending`);
    }
    c.outOff += n;
    c.bytesOut += n;
    c.owed -= n;
    this.#owed -= n;
    if (c.outOff === c.out.length) {
      c.out = null;
      c.outOff = 0;
    }
  }

  /** Connections that got something new to write since the last call. */
  takeWritable(): ConnectionNumber[] {
    const ids = [...this.#writable];
    this.#writable.clear();
    return ids;
  }

  /** The next client that overflowed and still has to be closed, if any. */
  nextDoomed(): Conn | undefined {
    return this.#doomed.shift();
  }

  /** `c` closed: all it was owed is lost. Returns how many packets it never got. */
  release(c: Conn): number {
    this.#writable.delete(c.id);
    const unsent = c.queue.length + (c.handshakeResponse !== null ? 1 : 0);
    this.#owed -= c.owed;
    c.owed = 0;
    c.queue.clear();
    c.out = null;
    c.handshakeResponse = null;
    return unsent;
  }
}

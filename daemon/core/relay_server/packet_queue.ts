/**
 * The packets owed to one client, not yet sealed: a FIFO of plaintexts in one growable
 * buffer. Sealing waits until the bytes go to the socket, so frames leave in nonce order;
 * packing them back to back keeps a slow reader's backlog as cheap as the bytes it holds (the
 * bounds on it are the outbox's, outbox.ts).
 */
import { frameSize } from "../tcp_common/framing.ts";

const EMPTY = new Uint8Array(0);
/** A queue that empties keeps a buffer this big for the next burst; a bigger one is freed. */
const KEEP_BUFFER = 16 * 1024;

/**
 * The plaintexts owed to one client, back to back in one growable buffer as
 * length (u16) · plaintext: no object per packet, so a slow reader's queue of 2-byte DATA
 * costs what it holds, not 100-odd bytes of heap per packet, and forwarding allocates nothing.
 */
export class PacketQueue {
  #buf: Uint8Array = EMPTY;
  #head = 0;
  #tail = 0;
  /** Packets queued. */
  length = 0;

  /** Copy `plain` in, with `first` as its first byte (the forwarded DATA's connection id). */
  push(plain: Uint8Array, first: number): void {
    const need = 2 + plain.length;
    if (this.#tail + need > this.#buf.length) this.#makeRoom(need);
    const b = this.#buf;
    const t = this.#tail;
    b[t] = plain.length >>> 8;
    b[t + 1] = plain.length & 0xff;
    b.set(plain, t + 2);
    b[t + 2] = first;
    this.#tail = t + need;
    this.length++;
  }

  /** How many packets from the head fit in `max` bytes as frames, and their size. */
  plan(max: number): { count: number; size: number } {
    const b = this.#buf;
    let size = 0;
    let count = 0;
    for (let o = this.#head; count < this.length; count++) {
      const len = (b[o] << 8) | b[o + 1];
      const f = frameSize(len);
      if (size + f > max) break;
      size += f;
      o += 2 + len;
    }
    return { count, size };
  }

  /** The head packet, removed; a view that holds only until the next push. */
  shift(): Uint8Array {
    if (this.length === 0) throw new RangeError("PacketQueue.shift: empty");
    const b = this.#buf;
    const len = (b[this.#head] << 8) | b[this.#head + 1];
    const start = this.#head + 2;
    this.#head = start + len;
    if (--this.length === 0) {
      this.#head = 0;
      this.#tail = 0;
      if (b.length > KEEP_BUFFER) this.#buf = EMPTY; // the view keeps the old buffer alive
    }
    return b.subarray(start, start + len);
  }

  clear(): void {
    this.#buf = EMPTY;
    this.#head = 0;
    this.#tail = 0;
    this.length = 0;
  }

  /** Compact when at most half would be in use after, else grow: amortised O(1) per byte. */
  #makeRoom(need: number): void {
    const live = this.#tail - this.#head;
    if (live + need <= this.#buf.length / 2) {
      this.#buf.copyWithin(0, this.#head, this.#tail);
    } else {
      // Twice what it holds: the buffer never outgrows twice the client's queue bound.
      const grown = new Uint8Array(Math.max(512, 2 * (live + need)));
      grown.set(this.#buf.subarray(this.#head, this.#tail));
      this.#buf = grown;
    }
    this.#head = 0;
    this.#tail = live;
  }
}

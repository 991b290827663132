/**
 * net_crypto's two packet arrays (c-toxcore Packets_Array): what we sent and the peer has not
 * acknowledged, and what the peer sent that arrived out of order. Packet numbers are u32 and
 * wrap; every comparison is a modular distance from buffer_start.
 *
 * Both are bounded: the send array by a packet count the layer above must respect (a full
 * array refuses, it never grows), the receive array by a byte budget (packets past it are
 * dropped and asked for again later, so a hostile peer cannot make us buffer 32768 × 1.4 KB).
 */
import { CRYPTO_PACKET_BUFFER_SIZE } from "./packets.ts";

/** (a - b) mod 2^32: how far a is past b. */
export function u32Distance(a: number, b: number): number {
  return (a - b) >>> 0;
}

export function u32Add(a: number, n: number): number {
  return (a + n) >>> 0;
}

export interface SentPacket {
  readonly payload: Uint8Array;
  /** When it last left (ms), or 0 when it waits to be (re)sent. */
  sentAt: number;
  sends: number;
}

/**
 * Our lossless packets from buffer_start (lowest unacknowledged) to buffer_end (next number).
 * Packets the peer confirmed out of order (request packets skip them) are removed early.
 */
export class SendArray {
  bufferStart = 0;
  bufferEnd = 0;
  readonly #packets = new Map<number, SentPacket>();
  readonly capacity: number;

  constructor(capacity: number) {
    if (capacity < 1 || capacity > CRYPTO_PACKET_BUFFER_SIZE) {
      throw new RangeError(
        `send array capacity ${capacity} not in 1..${CRYPTO_PACKET_BUFFER_SIZE}`,
      );
    }
    this.capacity = capacity;
  }

  /** Packet numbers in use (acknowledged holes included): what bounds the array. */
  get span(): number {
    return u32Distance(this.bufferEnd, this.bufferStart);
  }

  /** Packets still held (sent or waiting). */
  get size(): number {
    return this.#packets.size;
  }

  get full(): boolean {
    return this.span >= this.capacity;
  }

  push(payload: Uint8Array): number {
    if (this.full) throw new RangeError("send array full");
    const n = this.bufferEnd;
    this.#packets.set(n, { payload, sentAt: 0, sends: 0 });
    this.bufferEnd = u32Add(n, 1);
    return n;
  }

  get(n: number): SentPacket | undefined {
    return this.#packets.get(n);
  }

  delete(n: number): SentPacket | undefined {
    const p = this.#packets.get(n);
    if (p) this.#packets.delete(n);
    return p;
  }

  /**
   * The peer acknowledged everything below `start`. Returns the packets freed, or null when
   * `start` is outside (bufferStart, bufferEnd]: the peer acknowledged what we never sent.
   */
  clearUntil(start: number): SentPacket[] | null {
    const d = u32Distance(start, this.bufferStart);
    if (d > this.span) return null;
    const freed: SentPacket[] = [];
    for (let i = 0; i < d; i++) {
      const n = u32Add(this.bufferStart, i);
      const p = this.#packets.get(n);
      if (p) {
        this.#packets.delete(n);
        freed.push(p);
      }
    }
    this.bufferStart = start >>> 0;
    return freed;
  }

  clear(): void {
    this.#packets.clear();
    this.bufferStart = this.bufferEnd;
  }
}

/**
 * The peer's lossless packets: buffer_start is the next one to deliver, buffer_end one past
 * the highest number we know exists (from its packets or its request packet).
 */
export class RecvArray {
  bufferStart = 0;
  bufferEnd = 0;
  readonly #held = new Map<number, Uint8Array>();
  #heldBytes = 0;
  readonly maxBytes: number;
  /** Packets refused because the byte budget was spent (asked for again later). */
  overBudget = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get heldPackets(): number {
    return this.#held.size;
  }

  get heldBytes(): number {
    return this.#heldBytes;
  }

  has(n: number): boolean {
    return this.#held.has(n);
  }

  /**
   * Store packet n. Returns "stored", "duplicate" (already had it, or it is below
   * buffer_start), "out_of_window" (≥ buffer_start + 32768, as c-toxcore rejects), or
   * "over_budget".
   */
  add(n: number, payload: Uint8Array): "stored" | "duplicate" | "out_of_window" | "over_budget" {
    const d = u32Distance(n, this.bufferStart);
    if (d >= CRYPTO_PACKET_BUFFER_SIZE) {
      // Numbers just below buffer_start are resends of what we delivered already.
      return u32Distance(this.bufferStart, n) <= CRYPTO_PACKET_BUFFER_SIZE
        ? "duplicate"
        : "out_of_window";
    }
    if (this.#held.has(n)) return "duplicate";
    // The next packet in order is always taken: it is delivered (and freed) at once.
    if (d !== 0 && this.#heldBytes + payload.length > this.maxBytes) {
      this.overBudget++;
      return "over_budget";
    }
    this.#held.set(n, payload);
    this.#heldBytes += payload.length;
    if (u32Distance(n, this.bufferStart) >= u32Distance(this.bufferEnd, this.bufferStart)) {
      this.bufferEnd = u32Add(n, 1);
    }
    return "stored";
  }

  /** The run of packets from buffer_start on, removed and in order. */
  takeInOrder(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (;;) {
      const p = this.#held.get(this.bufferStart);
      if (p === undefined) break;
      this.#held.delete(this.bufferStart);
      this.#heldBytes -= p.length;
      out.push(p);
      this.bufferStart = u32Add(this.bufferStart, 1);
    }
    return out;
  }

  /**
   * set_buffer_end: the peer says its next lossless number is n. Ignored when it would move
   * the end backwards or past the window.
   */
  setBufferEnd(n: number): void {
    const d = u32Distance(n, this.bufferStart);
    if (d > CRYPTO_PACKET_BUFFER_SIZE) return;
    if (d > u32Distance(this.bufferEnd, this.bufferStart)) this.bufferEnd = n >>> 0;
  }

  /** Whether anything between buffer_start and buffer_end is missing. */
  get hasHoles(): boolean {
    return this.bufferEnd !== this.bufferStart;
  }

  clear(): void {
    this.#held.clear();
    this.#heldBytes = 0;
  }
}

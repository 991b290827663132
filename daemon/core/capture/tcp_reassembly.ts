/**
 * TCP stream reassembly for the decoder: TcpSegments in capture order in, StreamEvents out
 * (open, in-order data, gaps, close). Sans-I/O and synchronous: push() and finish() queue
 * events, takeEvents() hands them over.
 *
 * Model, per direction of a stream: byte offsets count from 0 at the first byte after the
 * SYN (or at the first sequence number seen when the capture starts mid-stream), as JS
 * numbers, so streams longer than 4 GiB keep counting. A sequence number becomes an offset
 * by serial arithmetic against the next offset to deliver, which makes the 2^32 wrap free.
 *
 * A hole is waited for while it can still be filled: a retransmission may yet bring it. It
 * becomes a gap once that can no longer happen or no longer matters: the receiver has
 * acknowledged past it (the bytes crossed the network, the capture missed them), the bytes
 * buffered beyond it exceed the bound, a snapped segment could not hold them, or the stream
 * is reset, superseded, evicted or the capture ends. FIN does not end the wait by itself: a
 * lost segment is commonly retransmitted after the FIN, and the peer's ACK of the FIN
 * settles the question a moment later anyway.
 *
 * Hot path (an in-order segment, nothing buffered): one key string, one Map lookup, one
 * event, the payload handed on as it is (a view, never copied) and a copy into the small
 * history ring that conflicting retransmissions are checked against. Out-of-order bytes are
 * copied when buffered: the capture reader's views pin whole read buffers.
 */
import {
  type Direction,
  type Endpoint,
  type StreamEvent,
  type StreamInfo,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
  type Timestamp,
} from "./types.ts";

export interface TcpReassemblerOptions {
  /** Out-of-order bytes held per direction before the hole in front of them is given up. */
  readonly maxBufferedBytesPerDirection?: number;
  /** Streams remembered (open and closed); beyond it the oldest closed ones are forgotten. */
  readonly maxStreams?: number;
  /**
   * Recently delivered bytes kept per direction to tell a retransmission that differs from
   * the original (a conflict); 0 turns the check off. Rounded up to a power of two.
   */
  readonly historyBytesPerDirection?: number;
}

export interface ReassemblyStats {
  /** Every segment pushed. */
  readonly segments: number;
  /** Streams opened (the next stream id). */
  readonly streams: number;
  /** Streams remembered right now (open or closed). */
  readonly trackedStreams: number;
  /** Segments carrying at least one byte already delivered or buffered. */
  readonly retransmissions: number;
  /** Segments whose new bytes start beyond a hole. */
  readonly outOfOrder: number;
  /** Bytes seen again (the first copy won). */
  readonly duplicateBytes: number;
  /** Retransmissions whose bytes differ from the first copy still held to compare. */
  readonly conflicts: number;
  readonly gaps: number;
  readonly gapBytes: number;
  /** Bytes that arrived after their hole had been reported as a gap (dropped). */
  readonly lateBytes: number;
  /** Bytes past a FIN (dropped). */
  readonly afterFinBytes: number;
  /** Segments of a stream already closed (dropped). */
  readonly afterCloseSegments: number;
  /** Segments too far from the expected sequence numbers to belong to the stream (dropped). */
  readonly outOfWindowSegments: number;
  /** Open streams closed early (how "end") to respect maxStreams. */
  readonly evictedOpenStreams: number;
  readonly deliveredBytes: number;
}

const DEFAULT_MAX_BUFFERED = 4 * 1024 * 1024;
const DEFAULT_MAX_STREAMS = 100_000;
const DEFAULT_HISTORY = 32 * 1024;
const MIN_RING = 1024;
/**
 * The largest window TCP can advertise (65535 << 14, rounded up): data or an ACK further from
 * the expected offset than this is not of this connection (or the capture lost gigabytes).
 */
const MAX_WINDOW = 2 ** 30;
/** What a marker for snapped-off bytes counts against the buffer bound: it holds no bytes. */
const MARKER_COST = 64;
const NO_EVENTS: readonly StreamEvent[] = Object.freeze([]);

/** Buffered out-of-order bytes [off, end), or snapped-off bytes (a gap to be) when null. */
class Piece {
  constructor(
    readonly off: number,
    readonly end: number,
    readonly bytes: Uint8Array | null,
  ) {}
}

/** One direction of a stream. Offsets are relative to `base` (the sequence number of 0). */
class Half {
  baseKnown = false;
  base = 0;
  /** Offset of the next byte to deliver: everything before it was delivered or gapped. */
  next = 0;
  /** Offset the FIN occupies; -1 until one is seen. */
  fin = -1;
  /** The highest offset the peer acknowledged (may be fin + 1); -1 when none. */
  acked = -1;
  /** Sorted, disjoint, every piece beyond `next` (pieces at `next` are delivered at once). */
  pending: Piece[] = [];
  /** Bytes held in `pending` (plus MARKER_COST per marker). */
  buffered = 0;
  /** The last gap, to tell late bytes from duplicates. */
  gapStart = 0;
  gapEnd = 0;
  /** Delivered bytes [histStart, next); ringPos is where offset `next` goes. */
  ring: Uint8Array | null = null;
  ringPos = 0;
  histStart = 0;

  constructor(readonly dir: Direction) {}
}

class Stream {
  readonly c2s = new Half("c2s");
  readonly s2c = new Half("s2c");
  closed = false;
  /** Who sent the first FIN. */
  firstFin: Direction | undefined = undefined;
  lastTs: Timestamp;
  lastFrame: number;

  constructor(readonly key: string, readonly info: StreamInfo, ts: Timestamp, frame: number) {
    this.lastTs = ts;
    this.lastFrame = frame;
  }
}

/** One key for both directions: the lower endpoint (port first: cheaper) goes first. */
function streamKey(a: Endpoint, b: Endpoint): string {
  return a.port < b.port || (a.port === b.port && a.addr <= b.addr)
    ? a.addr + "|" + a.port + "|" + b.addr + "|" + b.port
    : b.addr + "|" + b.port + "|" + a.addr + "|" + a.port;
}

/** The offset of sequence number `seq` in h: the one within ±2^31 of h.next. */
function offsetOf(h: Half, seq: number): number {
  return h.next + ((seq - ((h.base + h.next) >>> 0)) | 0);
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export class TcpReassembler {
  readonly #maxBuffered: number;
  readonly #maxStreams: number;
  readonly #maxHistory: number;
  readonly #streams = new Map<string, Stream>();
  /** Closed streams, oldest first, from #closedHead on: the order they are forgotten in. */
  #closed: Stream[] = [];
  #closedHead = 0;
  #events: StreamEvent[] = [];
  #nextId = 0;
  /** Set by the byte comparisons of the segment being handled. */
  #conflict = false;

  #segments = 0;
  #retransmissions = 0;
  #outOfOrder = 0;
  #duplicateBytes = 0;
  #conflicts = 0;
  #gaps = 0;
  #gapBytes = 0;
  #lateBytes = 0;
  #afterFinBytes = 0;
  #afterCloseSegments = 0;
  #outOfWindowSegments = 0;
  #evictedOpenStreams = 0;
  #deliveredBytes = 0;

  constructor(opts: TcpReassemblerOptions = {}) {
    this.#maxBuffered = Math.max(0, opts.maxBufferedBytesPerDirection ?? DEFAULT_MAX_BUFFERED);
    this.#maxStreams = Math.max(1, opts.maxStreams ?? DEFAULT_MAX_STREAMS);
    const h = opts.historyBytesPerDirection ?? DEFAULT_HISTORY;
    this.#maxHistory = h > 0 ? pow2AtLeast(Math.max(h, MIN_RING)) : 0;
  }

  /** One segment, in capture order; `frame` is the capture's 1-based frame number. */
  push(seg: TcpSegment, ts: Timestamp, frame: number): void {
    this.#segments++;
    const flags = seg.flags;
    const syn = (flags & TCP_SYN) !== 0;
    const hasAck = (flags & TCP_ACK) !== 0;
    const key = streamKey(seg.src, seg.dst);
    let st = this.#streams.get(key);
    if (st !== undefined && syn && !hasAck && this.#isNewConnection(st, seg)) {
      // The 4-tuple is reused: whatever the old stream still waits for will not come.
      if (!st.closed) this.#closeNow(st, st.firstFin ? "fin" : "end", st.firstFin, ts, frame);
      st = undefined;
    }
    if (st === undefined) st = this.#open(key, seg, syn, hasAck, ts, frame);
    else if (st.closed) {
      this.#afterCloseSegments++;
      return;
    }
    st.lastTs = ts;
    st.lastFrame = frame;

    const client = st.info.client;
    const fromClient = seg.src.port === client.port && seg.src.addr === client.addr;
    const h = fromClient ? st.c2s : st.s2c;
    const peer = fromClient ? st.s2c : st.c2s;

    let seq = seg.seq;
    if (syn) {
      // The SYN takes one sequence number: data starts at ISN + 1.
      seq = (seq + 1) >>> 0;
      if (!h.baseKnown) {
        h.base = seq;
        h.baseKnown = true;
      }
      // A SYN-ACK acknowledges the client's ISN + 1: offset 0 even if its SYN was not seen.
      if (hasAck && !peer.baseKnown) {
        peer.base = seg.ack >>> 0;
        peer.baseKnown = true;
      }
    } else if (!h.baseKnown) {
      h.base = seq >>> 0;
      h.baseKnown = true;
    }

    if ((flags & TCP_RST) !== 0) {
      // Nothing more will come either way; a RST's payload is diagnostics, not stream data.
      this.#closeNow(st, "rst", h.dir, ts, frame);
      return;
    }
    if (hasAck && peer.baseKnown) this.#onAck(st, peer, seg.ack, ts, frame);
    const length = seg.payloadLength;
    if (length > 0) this.#onData(st, h, seq, seg.payload, length, ts, frame);
    if ((flags & TCP_FIN) !== 0) this.#onFin(st, h, seq, length, ts, frame);
    if (
      st.firstFin !== undefined && st.c2s.fin >= 0 && st.s2c.fin >= 0 &&
      st.c2s.next === st.c2s.fin && st.s2c.next === st.s2c.fin
    ) {
      this.#emitClose(st, "fin", st.firstFin, ts, frame);
    }
  }

  /**
   * End of the capture: holes become gaps (up to what the peer acknowledged or the FIN), and
   * every open stream is closed, in stream id order: how "fin" when a FIN was seen, else "end".
   * `ts` defaults to each stream's last segment; the frame is each stream's last one.
   */
  finish(ts?: Timestamp): void {
    const open: Stream[] = [];
    for (const st of this.#streams.values()) if (!st.closed) open.push(st);
    open.sort((a, b) => a.info.id - b.info.id);
    for (const st of open) {
      this.#closeNow(st, st.firstFin ? "fin" : "end", st.firstFin, ts ?? st.lastTs, st.lastFrame);
    }
  }

  /** The events queued since the last call, in capture order. */
  takeEvents(): readonly StreamEvent[] {
    if (this.#events.length === 0) return NO_EVENTS;
    const ev = this.#events;
    this.#events = [];
    return ev;
  }

  stats(): ReassemblyStats {
    return {
      segments: this.#segments,
      streams: this.#nextId,
      trackedStreams: this.#streams.size,
      retransmissions: this.#retransmissions,
      outOfOrder: this.#outOfOrder,
      duplicateBytes: this.#duplicateBytes,
      conflicts: this.#conflicts,
      gaps: this.#gaps,
      gapBytes: this.#gapBytes,
      lateBytes: this.#lateBytes,
      afterFinBytes: this.#afterFinBytes,
      afterCloseSegments: this.#afterCloseSegments,
      outOfWindowSegments: this.#outOfWindowSegments,
      evictedOpenStreams: this.#evictedOpenStreams,
      deliveredBytes: this.#deliveredBytes,
    };
  }

  // ---- streams ----------------------------------------------------------------------------

  /** A SYN (no ACK) on a known 4-tuple: a new connection, or the old one's SYN again? */
  #isNewConnection(st: Stream, seg: TcpSegment): boolean {
    if (st.closed || st.firstFin !== undefined) return true;
    const c = st.info.client;
    const h = seg.src.port === c.port && seg.src.addr === c.addr ? st.c2s : st.s2c;
    return h.baseKnown && h.base !== ((seg.seq + 1) >>> 0);
  }

  #open(
    key: string,
    seg: TcpSegment,
    syn: boolean,
    hasAck: boolean,
    ts: Timestamp,
    frame: number,
  ): Stream {
    // A SYN-ACK seen first (its SYN was not captured) still says who the server is.
    const fromServer = syn && hasAck;
    const info: StreamInfo = {
      id: this.#nextId++,
      client: fromServer ? seg.dst : seg.src,
      server: fromServer ? seg.src : seg.dst,
      sawSyn: syn,
      firstTs: ts,
    };
    const st = new Stream(key, info, ts, frame);
    this.#streams.set(key, st);
    this.#events.push({ kind: "open", stream: info, ts, frame });
    if (this.#streams.size > this.#maxStreams) this.#evict(st, ts, frame);
    return st;
  }

  /** Forget the oldest closed streams; with none left, close and forget the oldest open. */
  #evict(keep: Stream, ts: Timestamp, frame: number): void {
    const map = this.#streams;
    while (map.size > this.#maxStreams) {
      if (this.#closedHead < this.#closed.length) {
        const old = this.#closed[this.#closedHead++];
        if (map.get(old.key) === old) map.delete(old.key);
        continue;
      }
      // Every remembered stream is open: Map order is creation order, the first is oldest.
      let victim: Stream | undefined;
      for (const s of map.values()) {
        if (s !== keep && !s.closed) {
          victim = s;
          break;
        }
      }
      if (victim === undefined) break;
      this.#evictedOpenStreams++;
      this.#closeNow(victim, victim.firstFin ? "fin" : "end", victim.firstFin, ts, frame);
      map.delete(victim.key);
    }
    if (this.#closedHead > 1024 && this.#closedHead * 2 > this.#closed.length) {
      this.#closed = this.#closed.slice(this.#closedHead);
      this.#closedHead = 0;
    }
  }

  /** Give up on every hole of both directions, then close. */
  #closeNow(
    st: Stream,
    how: "fin" | "rst" | "end",
    by: Direction | undefined,
    ts: Timestamp,
    frame: number,
  ): void {
    this.#flush(st, st.c2s, ts, frame);
    this.#flush(st, st.s2c, ts, frame);
    this.#emitClose(st, how, by, ts, frame);
  }

  #emitClose(
    st: Stream,
    how: "fin" | "rst" | "end",
    by: Direction | undefined,
    ts: Timestamp,
    frame: number,
  ): void {
    st.closed = true;
    for (const h of [st.c2s, st.s2c]) {
      h.ring = null;
      h.pending = [];
      h.buffered = 0;
    }
    this.#closed.push(st);
    // Streams superseded on a reused 4-tuple left the map but not the queue: drop them now
    // and then, or a busy tuple would grow the queue without bound under the stream cap.
    if (this.#closed.length - this.#closedHead > 2 * this.#maxStreams + 1024) {
      const map = this.#streams;
      this.#closed = this.#closed.slice(this.#closedHead).filter((s) => map.get(s.key) === s);
      this.#closedHead = 0;
    }
    this.#events.push(
      by === undefined
        ? { kind: "close", stream: st.info, how, ts, frame }
        : { kind: "close", stream: st.info, how, by, ts, frame },
    );
  }

  // ---- one direction ----------------------------------------------------------------------

  #onData(
    st: Stream,
    h: Half,
    seq: number,
    payload: Uint8Array,
    length: number,
    ts: Timestamp,
    frame: number,
  ): void {
    const s = offsetOf(h, seq);
    let e = s + length;
    if (s - h.next > MAX_WINDOW || h.next - e > MAX_WINDOW) {
      this.#outOfWindowSegments++;
      return;
    }
    if (h.fin >= 0 && e > h.fin) {
      this.#afterFinBytes += e - Math.max(s, h.fin);
      e = h.fin;
      if (e <= s) return;
    }
    const captured = Math.min(payload.length, length);

    // The common case: exactly the next bytes, nothing waiting.
    if (s === h.next && h.pending.length === 0 && captured >= e - s) {
      this.#emitData(
        st,
        h,
        e - s === payload.length ? payload : payload.subarray(0, e - s),
        ts,
        frame,
      );
      return;
    }

    this.#conflict = false;
    let dup = 0;
    let from = s;
    if (s < h.next) {
      const oldEnd = Math.min(e, h.next);
      dup += this.#seenAgain(h, s, oldEnd, payload, Math.min(s + captured, oldEnd));
      from = oldEnd;
    }
    if (from < e) {
      if (from > h.next) this.#outOfOrder++;
      const capEnd = Math.min(s + captured, e);
      if (from < capEnd) dup += this.#insert(h, from, capEnd, payload, s);
      // Snapped off: these bytes are missing for good, a gap as soon as it is reached.
      if (Math.max(from, capEnd) < e) dup += this.#insert(h, Math.max(from, capEnd), e, null, s);
      this.#deliverRun(st, h, ts, frame);
      this.#resolveByAck(st, h, ts, frame);
      while (h.buffered > this.#maxBuffered && h.pending.length > 0) {
        this.#emitGap(st, h, h.next, h.pending[0].off, ts, frame);
        this.#deliverRun(st, h, ts, frame);
      }
    }
    if (dup > 0) this.#retransmissions++;
    if (this.#conflict) this.#conflicts++;
  }

  /**
   * Bytes [a, b) < next arrived again: duplicates, or late when they fall in the last gap.
   * The captured ones (< capEnd) still in the history ring are compared with what was
   * delivered. Returns how many were seen again.
   */
  #seenAgain(h: Half, a: number, b: number, payload: Uint8Array, capEnd: number): number {
    const late = Math.max(0, Math.min(b, h.gapEnd) - Math.max(a, h.gapStart));
    this.#lateBytes += late;
    this.#duplicateBytes += b - a - late;
    const ring = h.ring;
    const from = Math.max(a, h.histStart);
    if (ring !== null && from < capEnd) {
      const mask = ring.length - 1;
      // `a` is the offset of payload[0] whenever a is below next (it is the segment start).
      let pos = (h.ringPos - (h.next - from)) & mask;
      for (let o = from; o < capEnd; o++) {
        if (ring[pos] !== payload[o - a]) {
          this.#conflict = true;
          break;
        }
        pos = (pos + 1) & mask;
      }
    }
    return b - a - late;
  }

  /**
   * Buffer [from, to) (bytes from `payload`, whose first byte is at offset `pOff`; null for
   * snapped-off bytes) where nothing is buffered yet: the first copy wins. Returns how many
   * bytes were already buffered.
   */
  #insert(h: Half, from: number, to: number, payload: Uint8Array | null, pOff: number): number {
    const pend = h.pending;
    // Usually the new bytes go after everything buffered.
    let i = pend.length;
    if (i > 0 && pend[i - 1].end > from) {
      let lo = 0;
      let hi = i - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (pend[mid].end > from) hi = mid;
        else lo = mid + 1;
      }
      i = lo;
    }
    let dup = 0;
    let cur = from;
    while (cur < to) {
      const q = i < pend.length ? pend[i] : undefined;
      if (q === undefined || q.off >= to) {
        this.#addPiece(h, i, cur, to, payload, pOff);
        break;
      }
      if (q.off > cur) {
        this.#addPiece(h, i, cur, q.off, payload, pOff);
        i++;
        cur = q.off;
      }
      const oEnd = Math.min(to, q.end);
      if (payload !== null && q.bytes !== null) {
        dup += oEnd - cur;
        const qb = q.bytes;
        for (let o = cur; o < oEnd; o++) {
          if (qb[o - q.off] !== payload[o - pOff]) {
            this.#conflict = true;
            break;
          }
        }
      }
      cur = oEnd;
      i++;
    }
    this.#duplicateBytes += dup;
    return dup;
  }

  #addPiece(
    h: Half,
    i: number,
    from: number,
    to: number,
    payload: Uint8Array | null,
    pOff: number,
  ): void {
    let bytes: Uint8Array | null = null;
    if (payload !== null) {
      bytes = payload.subarray(from - pOff, to - pOff);
      // Bytes at `next` are delivered before push() returns; the rest may wait long.
      if (from !== h.next) bytes = bytes.slice();
      h.buffered += to - from;
    } else h.buffered += MARKER_COST;
    const p = new Piece(from, to, bytes);
    if (i === h.pending.length) h.pending.push(p);
    else h.pending.splice(i, 0, p);
  }

  /** Deliver the buffered pieces that now start at `next`. */
  #deliverRun(st: Stream, h: Half, ts: Timestamp, frame: number): void {
    const pend = h.pending;
    let k = 0;
    while (k < pend.length && pend[k].off === h.next) {
      const q = pend[k++];
      if (q.bytes === null) {
        h.buffered -= MARKER_COST;
        this.#emitGap(st, h, q.off, q.end, ts, frame);
      } else {
        h.buffered -= q.end - q.off;
        this.#emitData(st, h, q.bytes, ts, frame);
      }
    }
    if (k === pend.length) pend.length = 0;
    else if (k > 0) pend.splice(0, k);
  }

  /** The peer acknowledged up to `ack` of h's sequence space. */
  #onAck(st: Stream, h: Half, ack: number, ts: Timestamp, frame: number): void {
    const a = offsetOf(h, ack);
    if (a <= h.acked || a - h.next > MAX_WINDOW) return;
    h.acked = a;
    if (a > h.next) this.#resolveByAck(st, h, ts, frame);
  }

  /**
   * Holes the peer acknowledged are gaps: the receiver got those bytes, the capture did not.
   * Only holes before bytes or a FIN we have: an ACK may show up in the capture before the
   * data it acknowledges, and that data will come.
   */
  #resolveByAck(st: Stream, h: Half, ts: Timestamp, frame: number): void {
    const limit = h.fin >= 0 ? Math.min(h.acked, h.fin) : h.acked;
    while (h.next < limit) {
      if (h.pending.length > 0) {
        this.#emitGap(st, h, h.next, Math.min(limit, h.pending[0].off), ts, frame);
        this.#deliverRun(st, h, ts, frame);
      } else if (h.fin >= 0) {
        this.#emitGap(st, h, h.next, limit, ts, frame);
      } else break;
    }
  }

  #onFin(st: Stream, h: Half, seq: number, length: number, ts: Timestamp, frame: number): void {
    if (h.fin >= 0) return; // a retransmitted FIN
    const at = offsetOf(h, seq) + length;
    if (at - h.next > MAX_WINDOW) {
      this.#outOfWindowSegments++;
      return;
    }
    // A FIN cannot come before bytes already delivered: trust what was delivered.
    h.fin = Math.max(at, h.next);
    st.firstFin ??= h.dir;
    // Bytes buffered past the FIN were never part of the stream.
    const pend = h.pending;
    while (pend.length > 0 && pend[pend.length - 1].end > h.fin) {
      const q = pend.pop()!;
      const kept = Math.max(q.off, h.fin);
      if (q.bytes === null) h.buffered -= MARKER_COST;
      else {
        h.buffered -= q.end - q.off;
        this.#afterFinBytes += q.end - kept;
      }
      if (kept > q.off) {
        const p = new Piece(
          q.off,
          kept,
          q.bytes === null ? null : q.bytes.subarray(0, kept - q.off),
        );
        h.buffered += p.bytes === null ? MARKER_COST : kept - q.off;
        pend.push(p);
        break;
      }
    }
    this.#resolveByAck(st, h, ts, frame);
  }

  /** Every hole becomes a gap: up to the FIN, or else up to what the peer acknowledged. */
  #flush(st: Stream, h: Half, ts: Timestamp, frame: number): void {
    while (h.pending.length > 0) {
      this.#emitGap(st, h, h.next, h.pending[0].off, ts, frame);
      this.#deliverRun(st, h, ts, frame);
    }
    const end = h.fin >= 0 ? h.fin : h.acked;
    if (h.next < end) this.#emitGap(st, h, h.next, end, ts, frame);
  }

  #emitData(st: Stream, h: Half, bytes: Uint8Array, ts: Timestamp, frame: number): void {
    const offset = h.next;
    if (this.#maxHistory > 0) this.#remember(h, bytes);
    h.next = offset + bytes.length;
    this.#deliveredBytes += bytes.length;
    this.#events.push({ kind: "data", stream: st.info, dir: h.dir, bytes, offset, ts, frame });
  }

  /** A gap [from, to) at `next`; adjacent gaps of one segment are reported as one. */
  #emitGap(st: Stream, h: Half, from: number, to: number, ts: Timestamp, frame: number): void {
    if (to <= from) return;
    this.#gapBytes += to - from;
    h.next = to;
    h.histStart = to;
    const events = this.#events;
    const last = events.length > 0 ? events[events.length - 1] : undefined;
    if (
      last !== undefined && last.kind === "gap" && last.stream === st.info && last.dir === h.dir &&
      last.frame === frame && last.offset + last.length === from
    ) {
      h.gapEnd = to;
      events[events.length - 1] = { ...last, length: to - last.offset };
      return;
    }
    this.#gaps++;
    h.gapStart = from;
    h.gapEnd = to;
    events.push({
      kind: "gap",
      stream: st.info,
      dir: h.dir,
      offset: from,
      length: to - from,
      ts,
      frame,
    });
  }

  /** Copy delivered bytes into h's history ring, growing it up to the configured size. */
  #remember(h: Half, bytes: Uint8Array): void {
    const n = bytes.length;
    let ring = h.ring;
    const want = h.next + n - h.histStart;
    if (ring === null || (want > ring.length && ring.length < this.#maxHistory)) {
      ring = this.#growRing(h, want);
    }
    const cap = ring.length;
    if (n >= cap) {
      ring.set(n === cap ? bytes : bytes.subarray(n - cap));
      h.ringPos = 0;
    } else {
      const first = cap - h.ringPos;
      if (n <= first) ring.set(bytes, h.ringPos);
      else {
        ring.set(bytes.subarray(0, first), h.ringPos);
        ring.set(bytes.subarray(first), 0);
      }
      h.ringPos = (h.ringPos + n) & (cap - 1);
    }
    const end = h.next + n;
    if (end - h.histStart > cap) h.histStart = end - cap;
  }

  #growRing(h: Half, want: number): Uint8Array {
    const cap = Math.min(this.#maxHistory, pow2AtLeast(Math.max(want, MIN_RING)));
    const ring = new Uint8Array(cap);
    const old = h.ring;
    const kept = old === null ? 0 : h.next - h.histStart;
    if (old !== null && kept > 0) {
      // Lay the kept bytes out from 0; kept <= old.length < cap.
      const start = (h.ringPos - kept) & (old.length - 1);
      const first = Math.min(kept, old.length - start);
      ring.set(old.subarray(start, start + first), 0);
      if (first < kept) ring.set(old.subarray(0, kept - first), first);
    }
    h.ring = ring;
    h.ringPos = kept & (cap - 1);
    if (old === null) h.histStart = h.next;
    return ring;
  }
}

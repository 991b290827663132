/**
 * daemon/core/capture/tcp_reassembly.ts: segments built by hand (no capture files), events checked
 * byte for byte — order, offsets, gaps, lifecycles and the bounds on memory.
 */
import { strict as assert } from "node:assert";
import {
  TcpReassembler,
  type TcpReassemblerOptions,
} from "../daemon/core/capture/tcp_reassembly.ts";
import {
  type Direction,
  type Endpoint,
  type StreamEvent,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
  type Timestamp,
} from "../daemon/core/capture/types.ts";
import { seededUnit as prng } from "../tools/testbed/seeded_random.ts";

const EMPTY = new Uint8Array(0);
const CLIENT: Endpoint = { addr: "192.0.2.10", port: 50000 };
const SERVER: Endpoint = { addr: "198.51.100.7", port: 33445 };

function randomBytes(n: number, rand: () => number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

function shuffle<T>(a: T[], rand: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
}

function segment(
  src: Endpoint,
  dst: Endpoint,
  seq: number,
  ack: number,
  flags: number,
  payload: Uint8Array = EMPTY,
  payloadLength = payload.length,
): TcpSegment {
  return {
    ipVersion: src.addr.includes(":") ? 6 : 4,
    src,
    dst,
    seq: seq >>> 0,
    ack: ack >>> 0,
    flags,
    window: 65535,
    payload,
    payloadLength,
  };
}

/** One side of a connection: its endpoint and the sequence number of its next byte. */
class Peer {
  constructor(readonly ep: Endpoint, public seq: number) {}
}

/** A connection whose segments are built in order; each returns its segment without pushing. */
class Conn {
  readonly c: Peer;
  readonly s: Peer;
  constructor(client: Endpoint, server: Endpoint, clientIsn: number, serverIsn: number) {
    this.c = new Peer(client, clientIsn);
    this.s = new Peer(server, serverIsn);
  }
  #pair(from: "c" | "s"): [Peer, Peer] {
    return from === "c" ? [this.c, this.s] : [this.s, this.c];
  }
  syn(): TcpSegment {
    const seg = segment(this.c.ep, this.s.ep, this.c.seq, 0, TCP_SYN);
    this.c.seq = (this.c.seq + 1) >>> 0;
    return seg;
  }
  synAck(): TcpSegment {
    const seg = segment(this.s.ep, this.c.ep, this.s.seq, this.c.seq, TCP_SYN | TCP_ACK);
    this.s.seq = (this.s.seq + 1) >>> 0;
    return seg;
  }
  ack(from: "c" | "s"): TcpSegment {
    const [a, b] = this.#pair(from);
    return segment(a.ep, b.ep, a.seq, b.seq, TCP_ACK);
  }
  /** The three-way handshake. */
  open(): TcpSegment[] {
    return [this.syn(), this.synAck(), this.ack("c")];
  }
  data(from: "c" | "s", bytes: Uint8Array, payloadLength = bytes.length): TcpSegment {
    const [a, b] = this.#pair(from);
    const seg = segment(a.ep, b.ep, a.seq, b.seq, TCP_ACK | TCP_PSH, bytes, payloadLength);
    a.seq = (a.seq + payloadLength) >>> 0;
    return seg;
  }
  /** `bytes` cut into segments of `size` (the last may be shorter). */
  chunks(from: "c" | "s", bytes: Uint8Array, size: number): TcpSegment[] {
    const out: TcpSegment[] = [];
    for (let i = 0; i < bytes.length; i += size) {
      out.push(this.data(from, bytes.subarray(i, Math.min(i + size, bytes.length))));
    }
    return out;
  }
  fin(from: "c" | "s"): TcpSegment {
    const [a, b] = this.#pair(from);
    const seg = segment(a.ep, b.ep, a.seq, b.seq, TCP_FIN | TCP_ACK);
    a.seq = (a.seq + 1) >>> 0;
    return seg;
  }
  rst(from: "c" | "s"): TcpSegment {
    const [a, b] = this.#pair(from);
    return segment(a.ep, b.ep, a.seq, b.seq, TCP_RST | TCP_ACK);
  }
}

function tsOf(frame: number): Timestamp {
  return { sec: 1_700_000_000 + frame, nsec: frame * 1000 };
}

/** A reassembler fed frame 1, 2, 3...; `events` gathers everything it said. */
class Sim {
  readonly r: TcpReassembler;
  frame = 0;
  readonly events: StreamEvent[] = [];
  constructor(opts?: TcpReassemblerOptions) {
    this.r = new TcpReassembler(opts);
  }
  /** Push segments; returns the events they produced. */
  push(...segs: TcpSegment[]): StreamEvent[] {
    const out: StreamEvent[] = [];
    for (const s of segs) {
      this.frame++;
      this.r.push(s, tsOf(this.frame), this.frame);
      out.push(...this.r.takeEvents());
    }
    this.events.push(...out);
    return out;
  }
  finish(ts?: Timestamp): StreamEvent[] {
    this.r.finish(ts);
    const out = [...this.r.takeEvents()];
    this.events.push(...out);
    return out;
  }
}

interface Assembled {
  bytes: Uint8Array;
  gaps: { offset: number; length: number }[];
}

/**
 * One direction's data and gaps, checking on the way that they tile the stream from offset 0
 * with neither overlap nor hole.
 */
function assemble(events: readonly StreamEvent[], id: number, dir: Direction): Assembled {
  const parts: Uint8Array[] = [];
  const gaps: { offset: number; length: number }[] = [];
  let cursor = 0;
  for (const ev of events) {
    if (ev.stream.id !== id) continue;
    if (ev.kind === "data" && ev.dir === dir) {
      assert.equal(ev.offset, cursor, `data at ${ev.offset}, expected ${cursor}`);
      assert.ok(ev.bytes.length > 0, "empty data event");
      parts.push(ev.bytes.slice());
      cursor += ev.bytes.length;
    } else if (ev.kind === "gap" && ev.dir === dir) {
      assert.equal(ev.offset, cursor, `gap at ${ev.offset}, expected ${cursor}`);
      assert.ok(ev.length > 0, "empty gap");
      gaps.push({ offset: ev.offset, length: ev.length });
      cursor += ev.length;
    }
  }
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, gaps };
}

/** The data bytes with the gaps cut out of `whole`: what a lossy delivery must equal. */
function without(whole: Uint8Array, gaps: { offset: number; length: number }[]): Uint8Array {
  const keep: number[] = [];
  let cursor = 0;
  for (const g of gaps) {
    for (let i = cursor; i < g.offset; i++) keep.push(whole[i]);
    cursor = g.offset + g.length;
  }
  for (let i = cursor; i < whole.length; i++) keep.push(whole[i]);
  return Uint8Array.from(keep);
}

function kinds(events: readonly StreamEvent[]): string[] {
  return events.map((e) => e.kind === "close" ? `close:${e.how}:${e.by ?? "-"}` : e.kind);
}

function bytesOf(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

Deno.test("in order: open, data in both directions, FIN both ways, close", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1000, 900_000);
  sim.push(...conn.open());
  const hello = sim.push(conn.data("c", bytesOf("hello ")), conn.data("c", bytesOf("world")));
  assert.deepEqual(kinds(hello), ["data", "data"]);
  assert.equal(hello[0].frame, 4);
  assert.deepEqual(hello[0].ts, tsOf(4));
  sim.push(conn.data("s", bytesOf("pong")), conn.ack("c"));
  sim.push(conn.fin("c"), conn.ack("s"));
  const closing = sim.push(conn.fin("s"));
  assert.deepEqual(kinds(closing), ["close:fin:c2s"]);
  assert.equal(closing[0].frame, sim.frame);
  assert.deepEqual(sim.push(conn.ack("c")), [], "the last ACK belongs to the closed stream");

  const open = sim.events[0];
  assert.equal(open.kind, "open");
  assert.equal(open.stream.id, 0);
  assert.deepEqual(open.stream.client, CLIENT);
  assert.deepEqual(open.stream.server, SERVER);
  assert.equal(open.stream.sawSyn, true);
  assert.deepEqual(open.stream.firstTs, tsOf(1));
  assert.deepEqual(assemble(sim.events, 0, "c2s"), { bytes: bytesOf("hello world"), gaps: [] });
  assert.deepEqual(assemble(sim.events, 0, "s2c"), { bytes: bytesOf("pong"), gaps: [] });
  assert.equal(sim.events.filter((e) => e.kind === "close").length, 1);
  assert.deepEqual(sim.finish(), [], "nothing left open");

  const st = sim.r.stats();
  assert.equal(st.segments, 11);
  assert.equal(st.streams, 1);
  assert.equal(st.gapBytes, 0);
  assert.equal(st.retransmissions, 0);
  assert.equal(st.outOfOrder, 0);
  assert.equal(st.deliveredBytes, 15);
  assert.equal(st.afterCloseSegments, 1);
});

Deno.test("in-order data is handed on as the payload itself, not a copy", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 5, 6);
  sim.push(...conn.open());
  const seg = conn.data("c", bytesOf("zero copy"));
  const [ev] = sim.push(seg);
  assert.equal(ev.kind, "data");
  assert.equal(ev.kind === "data" && ev.bytes, seg.payload);
});

Deno.test("reordering: a shuffled 100 KB stream comes out byte for byte", () => {
  for (const seed of [1, 2, 3]) {
    const rand = prng(seed);
    const whole = randomBytes(100_000, rand);
    const conn = new Conn(CLIENT, SERVER, (rand() * 2 ** 32) >>> 0, 77);
    const sim = new Sim();
    sim.push(...conn.open());
    const segs: TcpSegment[] = [];
    for (let i = 0; i < whole.length;) {
      const n = Math.min(1 + Math.floor(rand() * 1460), whole.length - i);
      segs.push(conn.data("c", whole.subarray(i, i + n)));
      i += n;
    }
    // Some duplicates too: each copy carries the same bytes, so nothing conflicts.
    for (let i = 0; i < 20; i++) segs.push(segs[Math.floor(rand() * segs.length)]);
    shuffle(segs, rand);
    sim.push(...segs);
    const out = assemble(sim.events, 0, "c2s");
    assert.deepEqual(out.gaps, [], `seed ${seed}`);
    assert.equal(out.bytes.length, whole.length);
    assert.deepEqual(out.bytes, whole, `seed ${seed}`);
    const st = sim.r.stats();
    assert.ok(st.outOfOrder > 0);
    assert.ok(st.duplicateBytes > 0);
    assert.equal(st.retransmissions, 20);
    assert.equal(st.conflicts, 0);
    assert.equal(st.deliveredBytes, whole.length);
  }
});

Deno.test("buffered bytes are delivered with the frame that filled the hole", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 10, 20);
  sim.push(...conn.open());
  const [a, b, c] = conn.chunks("c", bytesOf("aaaabbbbcccc"), 4);
  assert.deepEqual(sim.push(c), []);
  assert.deepEqual(sim.push(b), []);
  const filled = sim.push(a);
  assert.deepEqual(kinds(filled), ["data", "data", "data"]);
  for (const ev of filled) {
    assert.equal(ev.frame, sim.frame);
    assert.deepEqual(ev.ts, tsOf(sim.frame));
  }
  assert.deepEqual(filled.map((e) => e.kind === "data" ? e.offset : -1), [0, 4, 8]);
  assert.equal(sim.r.stats().outOfOrder, 2);
});

Deno.test("retransmissions and partial overlaps: new bytes only, first copy wins", () => {
  const whole = randomBytes(400, prng(7));
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 4000, 1);
  sim.push(...conn.open());
  const base = conn.c.seq;
  const at = (from: number, to: number, bytes = whole.subarray(from, to)) =>
    segment(CLIENT, SERVER, base + from, conn.s.seq, TCP_ACK, bytes);

  sim.push(at(0, 100));
  assert.deepEqual(sim.push(at(0, 100)), [], "an exact retransmission delivers nothing");
  const overlap = sim.push(at(50, 150));
  assert.equal(overlap.length, 1);
  assert.equal(overlap[0].kind === "data" && overlap[0].offset, 100);
  assert.equal(overlap[0].kind === "data" && overlap[0].bytes.length, 50);
  // Out of order, then overlapping what is buffered on both sides.
  sim.push(at(200, 300));
  sim.push(at(250, 350));
  sim.push(at(180, 260));
  sim.push(at(140, 400));
  const out = assemble(sim.events, 0, "c2s");
  assert.deepEqual(out.gaps, []);
  assert.deepEqual(out.bytes, whole);
  const st = sim.r.stats();
  // 100 (exact) + 50 + 50 (over [250, 300)) + 60 ([200, 260)) + 10 + 170 ([180, 350)).
  assert.equal(st.duplicateBytes, 100 + 50 + 50 + 60 + 10 + 170);
  assert.equal(st.retransmissions, 5);
  assert.equal(st.conflicts, 0);
});

Deno.test("a retransmission with different bytes counts as a conflict; the first copy stays", () => {
  const whole = randomBytes(300, prng(9));
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 0xffffff00, 1);
  sim.push(...conn.open());
  const base = conn.c.seq;
  const at = (from: number, bytes: Uint8Array) =>
    segment(CLIENT, SERVER, base + from, conn.s.seq, TCP_ACK, bytes);
  const forged = whole.slice();
  forged[20] ^= 0xff;
  forged[250] ^= 0xff;

  sim.push(at(0, whole.subarray(0, 100)));
  sim.push(at(0, forged.subarray(0, 100))); // against delivered bytes (the history)
  assert.equal(sim.r.stats().conflicts, 1);
  sim.push(at(200, whole.subarray(200, 300)));
  sim.push(at(200, forged.subarray(200, 300))); // against buffered bytes
  assert.equal(sim.r.stats().conflicts, 2);
  sim.push(at(100, whole.subarray(100, 200)));
  sim.push(at(0, whole.subarray(0, 300))); // the same bytes again: no conflict
  assert.deepEqual(assemble(sim.events, 0, "c2s").bytes, whole);
  assert.equal(sim.r.stats().conflicts, 2);

  // Without a history nothing delivered can be compared, and nothing breaks.
  const blind = new Sim({ historyBytesPerDirection: 0 });
  const c2 = new Conn(CLIENT, SERVER, 0, 0);
  blind.push(...c2.open());
  blind.push(segment(CLIENT, SERVER, 1, 1, TCP_ACK, whole.subarray(0, 100)));
  blind.push(segment(CLIENT, SERVER, 1, 1, TCP_ACK, forged.subarray(0, 100)));
  assert.equal(blind.r.stats().conflicts, 0);
  assert.equal(blind.r.stats().duplicateBytes, 100);
});

Deno.test("the history ring checks a retransmission far behind and across its wrap", () => {
  const rand = prng(11);
  const whole = randomBytes(10_000, rand);
  const sim = new Sim({ historyBytesPerDirection: 4096 });
  const conn = new Conn(CLIENT, SERVER, 123, 456);
  sim.push(...conn.open());
  sim.push(...conn.chunks("c", whole, 700));
  const base = 124;
  const forged = whole.slice(7000, 9000);
  sim.push(segment(CLIENT, SERVER, base + 7000, 457, TCP_ACK, whole.subarray(7000, 9000)));
  assert.equal(sim.r.stats().conflicts, 0);
  forged[1500] ^= 1;
  sim.push(segment(CLIENT, SERVER, base + 7000, 457, TCP_ACK, forged));
  assert.equal(sim.r.stats().conflicts, 1);
  // Too old for the 4 KiB ring: counted as duplicate, not compared.
  const old = whole.slice(0, 100);
  old[0] ^= 1;
  sim.push(segment(CLIENT, SERVER, base, 457, TCP_ACK, old));
  assert.equal(sim.r.stats().conflicts, 1);
  assert.deepEqual(assemble(sim.events, 0, "c2s").bytes, whole);
});

Deno.test("a segment that never comes: one gap of its offset and length, the rest delivered", () => {
  const whole = randomBytes(1000, prng(3));
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 77, 88);
  sim.push(...conn.open());
  const segs = conn.chunks("c", whole, 100);
  sim.push(...segs.slice(0, 3), ...segs.slice(4));
  assert.equal(sim.events.filter((e) => e.kind === "gap").length, 0, "still waiting");
  const end = sim.finish({ sec: 1_800_000_000, nsec: 5 });
  assert.deepEqual(kinds(end), [
    "gap",
    "data",
    "data",
    "data",
    "data",
    "data",
    "data",
    "close:end:-",
  ]);
  assert.deepEqual(end[0].ts, { sec: 1_800_000_000, nsec: 5 });
  assert.equal(end[0].frame, sim.frame, "the stream's last frame");
  const out = assemble(sim.events, 0, "c2s");
  assert.deepEqual(out.gaps, [{ offset: 300, length: 100 }]);
  assert.deepEqual(out.bytes, without(whole, out.gaps));
  assert.equal(sim.r.stats().gapBytes, 100);
  assert.equal(sim.r.stats().gaps, 1);
});

Deno.test("a hole the receiver acknowledged is a gap at once", () => {
  const whole = randomBytes(500, prng(4));
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 2 ** 31, 5);
  sim.push(...conn.open());
  const segs = conn.chunks("c", whole, 100);
  sim.push(segs[0], segs[2], segs[3]);
  assert.equal(sim.events.filter((e) => e.kind === "gap").length, 0);
  // The server acknowledges up to 250: part of the hole [100, 200) and beyond.
  const partial = sim.push(segment(SERVER, CLIENT, conn.s.seq, 2 ** 31 + 1 + 150, TCP_ACK));
  assert.deepEqual(kinds(partial), ["gap"]);
  assert.equal(partial[0].kind === "gap" && partial[0].offset, 100);
  assert.equal(partial[0].kind === "gap" && partial[0].length, 50);
  // [150, 200) may still be retransmitted... until the ACK covers it too.
  const rest = sim.push(segment(SERVER, CLIENT, conn.s.seq, 2 ** 31 + 1 + 400, TCP_ACK));
  assert.deepEqual(kinds(rest), ["gap", "data", "data"]);
  assert.equal(rest[0].frame, sim.frame);
  sim.push(segs[4]);
  const out = assemble(sim.events, 0, "c2s");
  assert.deepEqual(out.gaps, [{ offset: 100, length: 50 }, { offset: 150, length: 50 }]);
  assert.deepEqual(out.bytes, without(whole, out.gaps));
  // The lost segment shows up after all: late, dropped, not a duplicate.
  sim.push(segs[1]);
  assert.equal(sim.r.stats().lateBytes, 50);
  assert.equal(sim.r.stats().duplicateBytes, 50);
});

Deno.test("an ACK for bytes not seen yet waits for data beyond them, then gaps", () => {
  const whole = randomBytes(300, prng(5));
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1, 1);
  sim.push(...conn.open());
  const segs = conn.chunks("c", whole, 100);
  sim.push(segs[0]);
  // The capture may show an ACK before the data it acknowledges: no gap yet.
  assert.deepEqual(sim.push(segment(SERVER, CLIENT, conn.s.seq, 2 + 200, TCP_ACK)), []);
  assert.deepEqual(kinds(sim.push(segs[1])), ["data"]);
  // Here [200, 300) is acknowledged and never seen: the FIN beyond it settles it.
  sim.push(segment(SERVER, CLIENT, conn.s.seq, 2 + 300, TCP_ACK));
  const fin = sim.push(segment(CLIENT, SERVER, 2 + 300, conn.s.seq, TCP_FIN | TCP_ACK));
  assert.deepEqual(kinds(fin), ["gap"]);
  assert.deepEqual(assemble(sim.events, 0, "c2s").gaps, [{ offset: 200, length: 100 }]);
});

Deno.test("sequence numbers wrap around 2^32", () => {
  const rand = prng(12);
  const whole = randomBytes(3000, rand);
  for (const shuffled of [false, true]) {
    const sim = new Sim();
    const conn = new Conn(CLIENT, SERVER, 2 ** 32 - 1234, 2 ** 32 - 1);
    sim.push(...conn.open());
    assert.equal(conn.s.seq, 0, "the server's SYN itself wraps to 0");
    const segs = conn.chunks("c", whole, 250);
    const reply = conn.chunks("s", whole.subarray(0, 600), 200);
    if (shuffled) shuffle(segs, rand);
    sim.push(...segs, ...reply);
    assert.ok(conn.c.seq < 3000, "the client's sequence numbers wrapped");
    assert.deepEqual(assemble(sim.events, 0, "c2s"), { bytes: whole, gaps: [] });
    assert.deepEqual(assemble(sim.events, 0, "s2c"), { bytes: whole.subarray(0, 600), gaps: [] });
  }
  // A hole across the wrap, found by the ACK.
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 2 ** 32 - 150, 9);
  sim.push(...conn.open());
  const segs = conn.chunks("c", whole.subarray(0, 400), 100);
  sim.push(segs[0], segs[2], segs[3]);
  sim.push(conn.ack("s"));
  assert.deepEqual(assemble(sim.events, 0, "c2s").gaps, [{ offset: 100, length: 100 }]);
});

Deno.test("offsets keep counting past 4 GiB of one direction", () => {
  // 2^32 + 100 bytes in 64 KiB segments is a lot; instead start mid-stream and move the
  // offset along with gaps acknowledged by the peer, then deliver across the 2^32 mark.
  const sim = new Sim({ historyBytesPerDirection: 0 });
  const chunk = new Uint8Array(1000);
  let seq = 0;
  sim.push(segment(CLIENT, SERVER, seq, 1, TCP_ACK, chunk));
  seq += 1000;
  let offset = 1000;
  while (offset < 2 ** 32 + 10_000) {
    // Lose 2^29 bytes, then one segment beyond, which the ACK below declares a gap before.
    seq = (seq + 2 ** 29) >>> 0;
    offset += 2 ** 29;
    sim.push(segment(CLIENT, SERVER, seq, 1, TCP_ACK, chunk));
    sim.push(segment(SERVER, CLIENT, 1, (seq + 1000) >>> 0, TCP_ACK));
    seq = (seq + 1000) >>> 0;
    offset += 1000;
  }
  const last = sim.events.filter((e) => e.kind === "data").at(-1)!;
  assert.equal(last.kind === "data" && last.offset + last.bytes.length, offset);
  assert.ok(offset > 2 ** 32);
  assemble(sim.events, 0, "c2s");
});

Deno.test("mid-stream start: the first sender is the client, first seqs are offset 0", () => {
  const sim = new Sim();
  // The server speaks first in this capture: it becomes the "client", without a SYN.
  const first = sim.push(segment(SERVER, CLIENT, 123_456, 999, TCP_ACK | TCP_PSH, bytesOf("abc")));
  assert.deepEqual(kinds(first), ["open", "data"]);
  assert.equal(first[0].stream.sawSyn, false);
  assert.deepEqual(first[0].stream.client, SERVER);
  assert.deepEqual(first[0].stream.server, CLIENT);
  assert.equal(first[1].kind === "data" && first[1].dir, "c2s");
  assert.equal(first[1].kind === "data" && first[1].offset, 0);
  const back = sim.push(segment(CLIENT, SERVER, 999, 123_459, TCP_ACK, bytesOf("xy")));
  assert.equal(back[0].kind === "data" && back[0].dir, "s2c");
  assert.equal(back[0].kind === "data" && back[0].offset, 0);
  sim.push(segment(SERVER, CLIENT, 123_459, 1001, TCP_ACK, bytesOf("def")));
  assert.deepEqual(assemble(sim.events, 0, "c2s").bytes, bytesOf("abcdef"));
  assert.deepEqual(assemble(sim.events, 0, "s2c").bytes, bytesOf("xy"));
  assert.deepEqual(kinds(sim.finish()), ["close:end:-"]);

  // A SYN-ACK without its SYN still tells who the server is, and where the client starts.
  const sim2 = new Sim();
  const conn = new Conn(CLIENT, SERVER, 500, 600);
  conn.syn(); // not captured
  const ev = sim2.push(conn.synAck(), conn.data("c", bytesOf("hi")));
  assert.equal(ev[0].stream.sawSyn, true);
  assert.deepEqual(ev[0].stream.client, CLIENT);
  assert.equal(ev[1].kind === "data" && ev[1].dir, "c2s");
  assert.equal(ev[1].kind === "data" && ev[1].offset, 0);
});

Deno.test("RST closes at once, naming who sent it; later segments are dropped", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1, 2);
  sim.push(...conn.open(), conn.data("c", bytesOf("x")));
  const reset = sim.push(conn.rst("s"));
  assert.deepEqual(kinds(reset), ["close:rst:s2c"]);
  assert.deepEqual(sim.push(conn.data("c", bytesOf("y"))), []);
  assert.equal(sim.r.stats().afterCloseSegments, 1);
  // A hole is reported before the close.
  const sim2 = new Sim();
  const c2 = new Conn(CLIENT, SERVER, 1, 2);
  sim2.push(...c2.open());
  c2.data("c", bytesOf("lost"));
  sim2.push(c2.data("c", bytesOf("kept")));
  assert.deepEqual(kinds(sim2.push(c2.rst("c"))), ["gap", "data", "close:rst:c2s"]);
  assert.deepEqual(assemble(sim2.events, 0, "c2s").gaps, [{ offset: 0, length: 4 }]);
});

Deno.test("a new SYN on a closed 4-tuple is a new stream; a repeated SYN is not", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1000, 2000);
  const syn = conn.syn();
  sim.push(syn, syn); // retransmitted SYN: same stream
  sim.push(conn.synAck(), conn.ack("c"), conn.data("c", bytesOf("one")));
  sim.push(conn.fin("c"), conn.fin("s"), conn.ack("c"));
  const again = new Conn(CLIENT, SERVER, 777_777, 888_888);
  const second = sim.push(...again.open(), again.data("c", bytesOf("two")));
  assert.deepEqual(kinds(second), ["open", "data"]);
  assert.equal(second[0].stream.id, 1);
  assert.equal(second[1].kind === "data" && second[1].offset, 0);
  sim.push(again.rst("c"));
  const third = new Conn(CLIENT, SERVER, 5, 6);
  sim.push(...third.open(), third.data("s", bytesOf("three")));
  assert.deepEqual(assemble(sim.events, 0, "c2s").bytes, bytesOf("one"));
  assert.deepEqual(assemble(sim.events, 1, "c2s").bytes, bytesOf("two"));
  assert.deepEqual(assemble(sim.events, 2, "s2c").bytes, bytesOf("three"));
  assert.deepEqual(
    sim.events.filter((e) => e.kind === "open").map((e) => e.stream.id),
    [0, 1, 2],
  );
  assert.deepEqual(kinds(sim.events.filter((e) => e.kind === "close")), [
    "close:fin:c2s",
    "close:rst:c2s",
  ]);
  assert.equal(sim.r.stats().streams, 3);
});

Deno.test("FIN: data after it is dropped, a hole before it waits, close comes once", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 10, 20);
  sim.push(...conn.open());
  const lost = conn.data("s", bytesOf("lost!"));
  sim.push(conn.data("s", bytesOf("after")));
  sim.push(conn.fin("s"));
  // Bytes past the FIN are not part of the stream.
  sim.push(segment(SERVER, CLIENT, conn.s.seq, conn.c.seq, TCP_ACK, bytesOf("junk")));
  assert.equal(sim.r.stats().afterFinBytes, 4);
  // The client's FIN does not close yet: [0, 5) may still be retransmitted.
  // (Its ACK is the server's first sequence number: it acknowledges none of the server's bytes.)
  const clientFin = segment(CLIENT, SERVER, conn.c.seq, 21, TCP_FIN | TCP_ACK);
  assert.deepEqual(kinds(sim.push(clientFin)), []);
  conn.c.seq++;
  // ...and it is: delivered, then the close.
  assert.deepEqual(kinds(sim.push(lost)), ["data", "data", "close:fin:s2c"]);
  assert.deepEqual(assemble(sim.events, 0, "s2c"), { bytes: bytesOf("lost!after"), gaps: [] });

  // The same, but the client's FIN acknowledges the server's: the hole is lost for good.
  const sim2 = new Sim();
  const c2 = new Conn(CLIENT, SERVER, 10, 20);
  sim2.push(...c2.open());
  c2.data("s", bytesOf("lost!"));
  sim2.push(c2.data("s", bytesOf("after")), c2.fin("s"));
  assert.deepEqual(kinds(sim2.push(c2.fin("c"))), ["gap", "data", "close:fin:s2c"]);
  assert.deepEqual(assemble(sim2.events, 0, "s2c").gaps, [{ offset: 0, length: 5 }]);
  assert.deepEqual(sim2.push(c2.ack("s")), []);
});

Deno.test("finish: a half-closed stream closes as fin, an open one as end, in id order", () => {
  const sim = new Sim();
  const a = new Conn(CLIENT, SERVER, 1, 2);
  const b = new Conn({ addr: "192.0.2.11", port: 50001 }, SERVER, 3, 4);
  sim.push(...b.open(), ...a.open(), a.fin("c"), b.data("c", bytesOf("b")));
  const end = sim.finish();
  assert.deepEqual(kinds(end), ["close:end:-", "close:fin:c2s"]);
  assert.deepEqual(end.map((e) => e.stream.id), [0, 1]);
  assert.deepEqual(end[0].ts, tsOf(8), "the stream's last segment when no ts is given");
});

Deno.test("a SYN after a FIN on the same 4-tuple supersedes the half-closed stream", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1, 2);
  sim.push(...conn.open(), conn.fin("c"));
  const next = new Conn(CLIENT, SERVER, 99_999, 5);
  const ev = sim.push(next.syn());
  assert.deepEqual(kinds(ev), ["close:fin:c2s", "open"]);
  assert.equal(ev[1].stream.id, 1);
});

Deno.test("snapped payloads: what was captured is delivered, the rest is a gap at once", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1, 2);
  sim.push(...conn.open());
  const whole = randomBytes(100, prng(8));
  const snapped = sim.push(conn.data("c", whole.subarray(0, 60), 100));
  assert.deepEqual(kinds(snapped), ["data", "gap"]);
  assert.equal(snapped[1].kind === "gap" && snapped[1].offset, 60);
  assert.equal(snapped[1].kind === "gap" && snapped[1].length, 40);
  // Headers only: all of it is a gap.
  assert.deepEqual(kinds(sim.push(conn.data("c", EMPTY, 50))), ["gap"]);
  // Out of order and snapped: the gap waits for its turn.
  const hole = conn.data("c", bytesOf("0123456789"));
  const ahead = conn.data("c", bytesOf("abcd"), 8);
  assert.deepEqual(sim.push(ahead), []);
  assert.deepEqual(kinds(sim.push(hole)), ["data", "data", "gap"]);
  sim.push(conn.data("c", bytesOf("end")));
  const out = assemble(sim.events, 0, "c2s");
  // The snapped tail and the headers-only segment come from two frames: reported apart.
  assert.deepEqual(out.gaps.map((g) => [g.offset, g.length]), [[60, 40], [100, 50], [164, 4]]);
  assert.deepEqual(
    out.bytes,
    Uint8Array.from([...whole.subarray(0, 60), ...bytesOf("0123456789abcdend")]),
  );
});

Deno.test("the buffer bound turns a hole into a gap instead of holding more", () => {
  const max = 1000;
  const sim = new Sim({ maxBufferedBytesPerDirection: max });
  const conn = new Conn(CLIENT, SERVER, 1, 2);
  sim.push(...conn.open());
  const whole = randomBytes(3000, prng(10));
  const segs = conn.chunks("c", whole, 100);
  let gapFrame = 0;
  for (const s of segs.slice(1)) {
    for (const ev of sim.push(s)) if (ev.kind === "gap") gapFrame = ev.frame;
  }
  // The 11th buffered segment took it past 1000 bytes.
  assert.equal(gapFrame, 3 + 11);
  const out = assemble(sim.events, 0, "c2s");
  assert.deepEqual(out.gaps, [{ offset: 0, length: 100 }]);
  assert.deepEqual(out.bytes, whole.subarray(100));
  // A flood of holes never holds more than the bound.
  const sim2 = new Sim({ maxBufferedBytesPerDirection: max });
  const c2 = new Conn(CLIENT, SERVER, 1, 2);
  sim2.push(...c2.open());
  const many = c2.chunks("c", randomBytes(100_000, prng(6)), 100);
  let held = 0;
  for (let i = 0; i < many.length; i++) {
    if (i % 2 === 0) continue; // every other segment is lost
    sim2.push(many[i]);
    held += 100;
    const delivered = sim2.r.stats().deliveredBytes;
    assert.ok(held - delivered <= max + 100, `holding ${held - delivered} bytes`);
  }
  assert.equal(sim2.r.stats().gaps, 490, "the last ten holes still wait");
  sim2.finish();
  assert.equal(sim2.r.stats().gaps, 500);
});

Deno.test("two interleaved streams: ids 0 and 1 in order of first appearance", () => {
  const sim = new Sim();
  const v6client: Endpoint = { addr: "2001:db8::1", port: 50000 };
  const v6server: Endpoint = { addr: "2001:db8::2", port: 443 };
  const a = new Conn(v6client, v6server, 100, 200);
  const b = new Conn(CLIENT, SERVER, 300, 400);
  const [aSyn, aSynAck, aAck] = a.open();
  const [bSyn, bSynAck, bAck] = b.open();
  sim.push(bSyn, aSyn, aSynAck, bSynAck, bAck, aAck);
  sim.push(
    a.data("c", bytesOf("A1")),
    b.data("s", bytesOf("B1")),
    a.data("s", bytesOf("a1")),
    b.data("c", bytesOf("b1")),
    a.data("c", bytesOf("A2")),
    b.data("s", bytesOf("B2")),
  );
  const opens = sim.events.filter((e) => e.kind === "open");
  assert.deepEqual(opens.map((e) => [e.stream.id, e.stream.client.addr]), [
    [0, CLIENT.addr],
    [1, v6client.addr],
  ]);
  assert.deepEqual(assemble(sim.events, 1, "c2s").bytes, bytesOf("A1A2"));
  assert.deepEqual(assemble(sim.events, 1, "s2c").bytes, bytesOf("a1"));
  assert.deepEqual(assemble(sim.events, 0, "s2c").bytes, bytesOf("B1B2"));
  assert.deepEqual(assemble(sim.events, 0, "c2s").bytes, bytesOf("b1"));
  // Every event of a stream comes after its open.
  const seen = new Set<number>();
  for (const ev of sim.events) {
    if (ev.kind === "open") seen.add(ev.stream.id);
    else assert.ok(seen.has(ev.stream.id));
  }
  // Same ports, other address: another stream.
  const c = new Conn({ addr: "192.0.2.99", port: 50000 }, SERVER, 1, 1);
  assert.equal(sim.push(c.syn())[0].stream.id, 2);
});

Deno.test("the stream cap forgets the oldest closed streams, then closes the oldest open", () => {
  const sim = new Sim({ maxStreams: 2 });
  const ep = (i: number): Endpoint => ({ addr: "192.0.2.1", port: 40000 + i });
  const conns = [0, 1, 2].map((i) => new Conn(ep(i), SERVER, i * 1000, 5));
  for (const c of conns) sim.push(...c.open(), c.rst("c"));
  assert.equal(sim.r.stats().trackedStreams, 2);
  // Stream 0 was forgotten: its late segment opens a new stream (as an unknown mid-stream one).
  const late = sim.push(conns[0].data("c", bytesOf("late")));
  assert.deepEqual(kinds(late), ["open", "data"]);
  assert.equal(late[0].stream.id, 3);
  assert.equal(late[0].stream.sawSyn, false);
  // Stream 2 was still remembered (closed): its late segment is dropped.
  assert.deepEqual(sim.push(conns[2].data("c", bytesOf("late"))), []);

  // All open: the oldest open one is closed to make room.
  const sim2 = new Sim({ maxStreams: 2 });
  const open = [0, 1, 2].map((i) => new Conn(ep(i), SERVER, 1, 1));
  sim2.push(...open[0].open(), ...open[1].open());
  const made = sim2.push(open[2].syn());
  assert.deepEqual(kinds(made), ["open", "close:end:-"]);
  assert.equal(made[1].stream.id, 0);
  assert.equal(sim2.r.stats().evictedOpenStreams, 1);
  assert.equal(sim2.r.stats().trackedStreams, 2);
});

Deno.test("garbage does not throw: absurd seqs, acks, FINs and empty segments", () => {
  const sim = new Sim({ maxBufferedBytesPerDirection: 500 });
  const rand = prng(99);
  const eps = [CLIENT, SERVER, { addr: "::1", port: 1 }];
  for (let i = 0; i < 5000; i++) {
    const a = eps[Math.floor(rand() * 3)];
    const b = eps[Math.floor(rand() * 3)];
    const n = Math.floor(rand() * 40);
    const payload = randomBytes(n, rand);
    sim.push(
      segment(
        a,
        b,
        (rand() * 2 ** 32) >>> 0,
        (rand() * 2 ** 32) >>> 0,
        Math.floor(rand() * 32),
        payload,
        n + (rand() < 0.1 ? 10 : 0),
      ),
    );
  }
  sim.finish();
  const ids = new Set(sim.events.map((e) => e.stream.id));
  for (const id of ids) {
    assemble(sim.events, id, "c2s");
    assemble(sim.events, id, "s2c");
  }
});

Deno.test("buffered bytes are copies: the capture's buffers may be reused meanwhile", () => {
  const sim = new Sim();
  const conn = new Conn(CLIENT, SERVER, 1, 2);
  sim.push(...conn.open());
  const first = conn.data("c", bytesOf("first"));
  const reused = bytesOf("later");
  sim.push(conn.data("c", reused));
  reused.set(bytesOf("XXXXX"));
  sim.push(first);
  assert.deepEqual(assemble(sim.events, 0, "c2s").bytes, bytesOf("firstlater"));
});

Deno.test("gaps of different frames stay apart even when events are taken late", () => {
  const r = new TcpReassembler();
  const conn = new Conn(CLIENT, SERVER, 1, 2);
  let frame = 0;
  for (const s of [...conn.open(), conn.data("c", EMPTY, 10), conn.data("c", EMPTY, 20)]) {
    frame++;
    r.push(s, tsOf(frame), frame);
  }
  const gaps = r.takeEvents().filter((e) => e.kind === "gap");
  assert.deepEqual(gaps.map((g) => g.kind === "gap" && [g.offset, g.length, g.frame]), [
    [0, 10, 4],
    [10, 20, 5],
  ]);
  assert.deepEqual(r.takeEvents(), []);
});

Deno.test("one 4-tuple reused many times under a small stream cap", () => {
  const sim = new Sim({ maxStreams: 3 });
  for (let i = 0; i < 3000; i++) {
    const conn = new Conn(CLIENT, SERVER, i * 7919, i);
    sim.push(...conn.open(), conn.data("c", bytesOf("x")), conn.rst("s"));
  }
  const st = sim.r.stats();
  assert.equal(st.streams, 3000);
  assert.equal(st.trackedStreams, 1);
  assert.equal(sim.events.filter((e) => e.kind === "close").length, 3000);
});

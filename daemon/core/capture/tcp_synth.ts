/**
 * A believable TCP connection as Ethernet frames, around bytes a socket really carried: the
 * daemon cannot capture packets without privileges, but it knows what each relay socket read
 * and wrote. The frames are what a loopback capture of that connection could have shown, so
 * tshark, Wireshark and our own decoder follow the stream as if it were captured.
 *
 * Believable means: a three-way handshake, sequence and acknowledgement numbers that add up,
 * correct IP and TCP checksums, segments no larger than the MSS, and a pure ACK from the
 * receiver before the sender would run past the 65535-byte window (we advertise no window
 * scaling), so analysers see no "window full" or "previous segment not captured".
 */
import { systemRandom } from "../common/crypto.ts";
import { type Endpoint, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from "./types.ts";

export interface SyntheticTcpOptions {
  readonly client: Endpoint;
  readonly server: Endpoint;
  /** Initial sequence numbers; random when not given, as a real stack's are. */
  readonly clientIsn?: number;
  readonly serverIsn?: number;
  /** Largest payload per segment; default 65483, what Linux loopback (MTU 65536) would use. */
  readonly mss?: number;
}

export type Side = "client" | "server";

const CLIENT_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x01);
const SERVER_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x02);
const WINDOW = 65535;
const TTL = 64;
const DEFAULT_MSS = 65483;
/** The IPv4 total length and the IPv6 payload length are 16-bit. */
const MAX_MSS_V4 = 65535 - 20 - 20;
const MAX_MSS_V6 = 65535 - 20;

interface Half {
  readonly mac: Uint8Array;
  readonly addr: Uint8Array;
  readonly port: number;
  /** Sequence number of the next byte (or SYN/FIN) this side sends. */
  nextSeq: number;
  /** What this side acknowledges: the next sequence number it expects from the other. */
  rcvNext: number;
  /** Bytes this side sent that the other has not acknowledged yet. */
  unacked: number;
  ipId: number;
}

export class SyntheticTcpStream {
  readonly #client: Half;
  readonly #server: Half;
  readonly #v6: boolean;
  readonly #mss: number;
  #state: "new" | "open" | "closed" = "new";

  constructor(opts: SyntheticTcpOptions) {
    let c = parseAddress(opts.client.addr);
    let s = parseAddress(opts.server.addr);
    // Mixed families (a dual-stack socket reporting one side mapped): both as IPv6.
    if (c.length !== s.length) {
      c = c.length === 4 ? mapV4(c) : c;
      s = s.length === 4 ? mapV4(s) : s;
    }
    this.#v6 = c.length === 16;
    const max = this.#v6 ? MAX_MSS_V6 : MAX_MSS_V4;
    const mss = opts.mss ?? Math.min(DEFAULT_MSS, max);
    if (!Number.isInteger(mss) || mss < 1 || mss > max) {
      throw new RangeError(`mss ${mss}: must be an integer from 1 to ${max}`);
    }
    this.#mss = mss;
    const cIsn = (opts.clientIsn ?? randomU32()) >>> 0;
    const sIsn = (opts.serverIsn ?? randomU32()) >>> 0;
    this.#client = {
      mac: CLIENT_MAC,
      addr: c,
      port: opts.client.port,
      nextSeq: cIsn,
      rcvNext: 0,
      unacked: 0,
      ipId: cIsn >>> 16,
    };
    this.#server = {
      mac: SERVER_MAC,
      addr: s,
      port: opts.server.port,
      nextSeq: sIsn,
      rcvNext: 0,
      unacked: 0,
      ipId: sIsn >>> 16,
    };
  }

  /** SYN, SYN-ACK, ACK. Only the first call has anything to say. */
  open(): Uint8Array[] {
    if (this.#state !== "new") return [];
    this.#state = "open";
    const c = this.#client;
    const s = this.#server;
    const frames = [this.#segment(c, s, TCP_SYN, EMPTY, true)];
    c.nextSeq = (c.nextSeq + 1) >>> 0;
    s.rcvNext = c.nextSeq;
    frames.push(this.#segment(s, c, TCP_SYN | TCP_ACK, EMPTY, true));
    s.nextSeq = (s.nextSeq + 1) >>> 0;
    c.rcvNext = s.nextSeq;
    frames.push(this.#segment(c, s, TCP_ACK, EMPTY, false));
    return frames;
  }

  /**
   * What `from` wrote, as segments of at most the MSS (PSH on the last one, as a stack sets
   * it at the end of a write). Before open(), the handshake comes first; after close, nothing.
   */
  data(from: Side, bytes: Uint8Array): Uint8Array[] {
    if (this.#state === "closed" || bytes.length === 0) return [];
    const frames = this.#state === "new" ? this.open() : [];
    const [tx, rx] = this.#sides(from);
    // Sending acknowledges everything received so far.
    rx.unacked = 0;
    for (let off = 0; off < bytes.length; off += this.#mss) {
      const chunk = bytes.subarray(off, Math.min(bytes.length, off + this.#mss));
      if (tx.unacked + chunk.length >= WINDOW) {
        frames.push(this.#segment(rx, tx, TCP_ACK, EMPTY, false));
        tx.unacked = 0;
      }
      const last = off + this.#mss >= bytes.length;
      frames.push(this.#segment(tx, rx, last ? TCP_PSH | TCP_ACK : TCP_ACK, chunk, false));
      tx.nextSeq = (tx.nextSeq + chunk.length) >>> 0;
      rx.rcvNext = tx.nextSeq;
      tx.unacked += chunk.length;
    }
    return frames;
  }

  /** FIN-ACK from `by`, FIN-ACK back, the last ACK. */
  close(by: Side): Uint8Array[] {
    if (this.#state === "closed") return [];
    const frames = this.#state === "new" ? this.open() : [];
    this.#state = "closed";
    const [a, b] = this.#sides(by);
    frames.push(this.#segment(a, b, TCP_FIN | TCP_ACK, EMPTY, false));
    a.nextSeq = (a.nextSeq + 1) >>> 0;
    b.rcvNext = a.nextSeq;
    frames.push(this.#segment(b, a, TCP_FIN | TCP_ACK, EMPTY, false));
    b.nextSeq = (b.nextSeq + 1) >>> 0;
    a.rcvNext = b.nextSeq;
    frames.push(this.#segment(a, b, TCP_ACK, EMPTY, false));
    return frames;
  }

  /** One RST-ACK from `by`. */
  reset(by: Side): Uint8Array[] {
    if (this.#state === "closed") return [];
    const frames = this.#state === "new" ? this.open() : [];
    this.#state = "closed";
    const [a, b] = this.#sides(by);
    frames.push(this.#segment(a, b, TCP_RST | TCP_ACK, EMPTY, false));
    return frames;
  }

  #sides(from: Side): [Half, Half] {
    return from === "client" ? [this.#client, this.#server] : [this.#server, this.#client];
  }

  /** Ethernet + IP + TCP around `payload`, from `tx` to `rx`, at tx's current numbers. */
  #segment(tx: Half, rx: Half, flags: number, payload: Uint8Array, syn: boolean): Uint8Array {
    const ipLen = this.#v6 ? 40 : 20;
    const tcpLen = syn ? 24 : 20;
    const frame = new Uint8Array(14 + ipLen + tcpLen + payload.length);
    frame.set(rx.mac, 0);
    frame.set(tx.mac, 6);
    const ip = 14;
    const t = ip + ipLen;
    const segLen = tcpLen + payload.length;
    let pseudo: number;
    if (this.#v6) {
      put16(frame, 12, 0x86dd);
      frame[ip] = 0x60;
      put16(frame, ip + 4, segLen);
      frame[ip + 6] = 6;
      frame[ip + 7] = TTL;
      frame.set(tx.addr, ip + 8);
      frame.set(rx.addr, ip + 24);
      pseudo = sum16(frame, ip + 8, ip + 40, 6 + segLen);
    } else {
      put16(frame, 12, 0x0800);
      frame[ip] = 0x45;
      put16(frame, ip + 2, 20 + segLen);
      put16(frame, ip + 4, tx.ipId);
      tx.ipId = (tx.ipId + 1) & 0xffff;
      put16(frame, ip + 6, 0x4000); // don't fragment
      frame[ip + 8] = TTL;
      frame[ip + 9] = 6;
      frame.set(tx.addr, ip + 12);
      frame.set(rx.addr, ip + 16);
      put16(frame, ip + 10, ~fold(sum16(frame, ip, ip + 20, 0)) & 0xffff);
      pseudo = sum16(frame, ip + 12, ip + 20, 6 + segLen);
    }
    put16(frame, t, tx.port);
    put16(frame, t + 2, rx.port);
    put32(frame, t + 4, tx.nextSeq);
    put32(frame, t + 8, flags & TCP_ACK ? tx.rcvNext : 0);
    frame[t + 12] = (tcpLen / 4) << 4;
    frame[t + 13] = flags;
    put16(frame, t + 14, WINDOW);
    if (syn) {
      frame[t + 20] = 2; // MSS option
      frame[t + 21] = 4;
      put16(frame, t + 22, this.#mss);
    }
    frame.set(payload, t + tcpLen);
    put16(frame, t + 16, ~fold(sum16(frame, t, frame.length, pseudo)) & 0xffff);
    return frame;
  }
}

const EMPTY = new Uint8Array(0);

/** An initial sequence number, when the caller gives none (the recorder does not). */
function randomU32(): number {
  return new DataView(systemRandom(4).buffer).getUint32(0);
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** One's-complement sum of the big-endian 16-bit words of b[from..to), added to `acc`. */
function sum16(b: Uint8Array, from: number, to: number, acc: number): number {
  let i = from;
  for (; i + 1 < to; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (i < to) acc += b[i] << 8;
  // Folded once at the end: a frame has under 2^16 words, so the sum stays below 2^32.
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

function mapV4(a: Uint8Array): Uint8Array {
  const m = new Uint8Array(16);
  m[10] = 0xff;
  m[11] = 0xff;
  m.set(a, 12);
  return m;
}

/**
 * An address as the socket reported it → 4 or 16 bytes. A name or garbage (never expected
 * from a socket) becomes 0.0.0.0 or :: rather than an error: the capture must go on.
 */
export function parseAddress(text: string): Uint8Array {
  let a = text.trim();
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (a.includes(":")) return parseV6(a) ?? new Uint8Array(16);
  return parseV4(a) ?? new Uint8Array(4);
}

function parseV4(a: string): Uint8Array | null {
  const parts = a.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseV6(a: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const halves = a.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string): number[] | null => {
    if (s === "") return [];
    const r: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseV4(p);
        if (v4 === null) return null;
        r.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) r.push(parseInt(p, 16));
      else return null;
    }
    return r;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  for (let i = 0; i < 8; i++) put16(out, 2 * i, all[i]);
  return out;
}

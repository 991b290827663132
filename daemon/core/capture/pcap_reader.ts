/**
 * Reads classic pcap and pcapng, incrementally and sans-I/O: push bytes as they come, pull
 * records. A damaged file yields everything before the damage, then one terminal error
 * record saying where and why; no input makes the reader throw.
 *
 * Record data (packet bytes, secrets) are views into the reader's buffers, not copies: per
 * packet a copy would cost more than the rest of the reading. The reader never writes over
 * bytes it has handed out (a full buffer is replaced, not compacted in place), so a view stays
 * valid for as long as it is kept; keeping one pins its whole buffer (about 2 chunks), so
 * slice() what is kept for long. push() copies the chunk: the caller may reuse it.
 *
 * Formats: pcap (draft-ietf-opsawg-pcap) and pcapng (draft-ietf-opsawg-pcapng).
 */
import type { CaptureRecord, Timestamp } from "./types.ts";

/** Larger captured lengths are taken as corruption: no link layer we read has such frames. */
export const MAX_CAPLEN = 256 * 1024;
/** Blocks are buffered whole before they are checked; a larger one is taken as corruption. */
export const MAX_BLOCK_LENGTH = 64 * 1024 * 1024;

const MIN_BUFFER = 64 * 1024;

const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_IDB = 0x00000001;
const PCAPNG_PB = 0x00000002; // obsolete Packet Block, still written by old tools
const PCAPNG_SPB = 0x00000003;
const PCAPNG_EPB = 0x00000006;
const PCAPNG_DSB = 0x0000000a;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const IF_TSRESOL = 9;
const IF_TSOFFSET = 14;

const BLOCK_NAMES: Record<number, string> = {
  [PCAPNG_SHB]: "section header",
  [PCAPNG_IDB]: "interface description",
  [PCAPNG_PB]: "packet",
  [PCAPNG_SPB]: "simple packet",
  4: "name resolution",
  5: "interface statistics",
  [PCAPNG_EPB]: "enhanced packet",
  [PCAPNG_DSB]: "decryption secrets",
};

/** Where the reader is in the file. */
const State = { Magic: 0, PcapHeader: 1, PcapRecord: 2, Block: 3, Done: 4 } as const;
type State = typeof State[keyof typeof State];

/** A block that carried nothing for the caller (interfaces, statistics, unknown types). */
const SKIPPED = Symbol("skipped");

/** How an interface's timestamp units become seconds and nanoseconds. */
interface Interface {
  readonly linkType: number;
  /** 0: no limit. */
  readonly snaplen: number;
  /** Units per second when it divides 10^9 (10^0..10^9): the exact fast path; else 0. */
  readonly perSec: number;
  /** 2^shift units per second, shift 10..32: the power-of-two fast path; else -1. */
  readonly shift: number;
  /** Anything else (10^12, 2^40...): exact with BigInt. */
  readonly perSecBig: bigint;
  /** if_tsoffset, seconds. */
  readonly offset: number;
}

const TWO32 = 0x1_0000_0000;
const ZERO_TS: Timestamp = { sec: 0, nsec: 0 };

function hex32(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}

function blockName(type: number): string {
  const name = BLOCK_NAMES[type];
  return name !== undefined ? `${name} block` : `block of type ${hex32(type)}`;
}

function makeInterface(
  linkType: number,
  snaplen: number,
  resol: number,
  offset: number,
): Interface {
  const pow2 = (resol & 0x80) !== 0;
  const exp = resol & 0x7f;
  let perSec = 0;
  let shift = -1;
  if (!pow2 && exp <= 9) perSec = 10 ** exp;
  else if (pow2 && exp <= 9) perSec = 2 ** exp;
  else if (pow2 && exp <= 32) shift = exp;
  const perSecBig = pow2 ? 1n << BigInt(exp) : 10n ** BigInt(exp);
  return { linkType, snaplen, perSec, shift, perSecBig, offset };
}

/**
 * 64-bit count of units → {sec, nsec}, exact (fractions below a nanosecond are dropped).
 * The count passes 2^53 for nanoseconds since 1970, so the division runs on 16-bit limbs.
 */
function unitsToTimestamp(iface: Interface, high: number, low: number): Timestamp {
  const d = iface.perSec;
  if (d !== 0) {
    const qh = Math.floor(high / d);
    const t1 = (high - qh * d) * 65536 + (low >>> 16);
    const q1 = Math.floor(t1 / d);
    const t2 = (t1 - q1 * d) * 65536 + (low & 0xffff);
    const q2 = Math.floor(t2 / d);
    const r = t2 - q2 * d;
    // perSec = 2^k (k <= 9) divides 10^9 as well, so both kinds scale exactly.
    return { sec: qh * TWO32 + q1 * 65536 + q2 + iface.offset, nsec: r * (1_000_000_000 / d) };
  }
  const s = iface.shift;
  if (s >= 0) {
    // frac < 2^s <= 2^32 and 1953125 < 2^21: the product stays below 2^53; 10^9 = 1953125 * 2^9.
    const sec = s === 32 ? high : high * 2 ** (32 - s) + Math.floor(low / 2 ** s);
    const frac = s === 32 ? low : low % 2 ** s;
    return { sec: sec + iface.offset, nsec: Math.floor(frac * 1953125 / 2 ** (s - 9)) };
  }
  const units = (BigInt(high) << 32n) | BigInt(low);
  const per = iface.perSecBig;
  return {
    sec: Number(units / per) + iface.offset,
    nsec: Number((units % per) * 1_000_000_000n / per),
  };
}

export class CaptureReader {
  /** Bytes from #start to #end are pushed and not yet consumed; #buf[0] is at file #base. */
  #buf = new Uint8Array(0);
  #view = new DataView(this.#buf.buffer);
  #start = 0;
  #end = 0;
  #base = 0;
  #ended = false;
  #state: State = State.Magic;
  #format: "pcap" | "pcapng" | null = null;
  #le = true;
  /** Classic pcap: the unit of the second timestamp field, and the link type of all frames. */
  #pcapNs = false;
  #pcapLinkType = 0;
  #interfaces: Interface[] = [];
  #index = 0;
  #lastTs: Timestamp = ZERO_TS;

  get format(): "pcap" | "pcapng" | null {
    return this.#format;
  }

  /** File offset up to which everything was read into records (or skipped). */
  get bytesConsumed(): number {
    return this.#base + this.#start;
  }

  /** Copies the chunk in; pushes after end() or after an error are ignored. */
  push(chunk: Uint8Array): void {
    if (this.#ended || this.#state === State.Done || chunk.length === 0) return;
    const n = chunk.length;
    if (this.#end + n <= this.#buf.length) {
      this.#buf.set(chunk, this.#end);
      this.#end += n;
      return;
    }
    // A new buffer rather than compacting: views handed out must keep their bytes.
    const live = this.#end - this.#start;
    const buf = new Uint8Array(Math.max(MIN_BUFFER, 2 * (live + n)));
    buf.set(this.#buf.subarray(this.#start, this.#end));
    buf.set(chunk, live);
    this.#base += this.#start;
    this.#buf = buf;
    this.#view = new DataView(buf.buffer);
    this.#start = 0;
    this.#end = live + n;
  }

  /** No more bytes will come: what is left inside a record becomes a "truncated" error. */
  end(): void {
    this.#ended = true;
  }

  /** The next record, or null: more bytes are needed, or (after end()) there are no more. */
  next(): CaptureRecord | null {
    if (this.#state === State.Done) return null;
    try {
      return this.#step();
    } catch (e) {
      // Not reached by any input the tests know of; kept so a bug cannot become a throw.
      return this.#fail("corrupt", this.bytesConsumed, `internal error: ${String(e)}`);
    }
  }

  #step(): CaptureRecord | null {
    for (;;) {
      switch (this.#state) {
        case State.Magic: {
          if (this.#end - this.#start < 4) {
            if (this.#ended && this.#end === this.#start) {
              return this.#fail("truncated", 0, "truncated at byte 0: the file is empty");
            }
            return this.#short(4, "the file header (magic number)");
          }
          if (!this.#magic()) return this.#failed!;
          continue;
        }
        case State.PcapHeader: {
          if (this.#end - this.#start < 24) return this.#short(24, "the pcap file header");
          if (!this.#pcapHeader()) return this.#failed!;
          continue;
        }
        case State.PcapRecord:
          return this.#pcapRecord();
        case State.Block: {
          const r = this.#block();
          if (r !== SKIPPED) return r;
          continue;
        }
        case State.Done:
          return null;
      }
    }
  }

  #failed: CaptureRecord | null = null;

  #fail(code: "truncated" | "corrupt" | "unsupported", at: number, message: string): CaptureRecord {
    this.#state = State.Done;
    this.#failed = { kind: "error", fileOffset: at, code, message };
    return this.#failed;
  }

  #corrupt(at: number, message: string): CaptureRecord {
    return this.#fail("corrupt", at, `corrupt at byte ${at}: ${message}`);
  }

  /** Fewer than `need` bytes at the start of a record: wait, or after end() report it. */
  #short(need: number, what: string): CaptureRecord | null {
    const avail = this.#end - this.#start;
    if (!this.#ended) return null;
    if (avail === 0 && this.#state !== State.Magic && this.#state !== State.PcapHeader) {
      this.#state = State.Done;
      return null;
    }
    const at = this.bytesConsumed;
    return this.#fail(
      "truncated",
      at,
      `truncated at byte ${at}: ${what} needs ${need} bytes, ${avail} remain`,
    );
  }

  #magic(): boolean {
    const s = this.#start;
    const v = this.#view.getUint32(s, false);
    switch (v) {
      case 0xa1b2c3d4:
      case 0xa1b23c4d:
        this.#le = false;
        break;
      case 0xd4c3b2a1:
      case 0x4d3cb2a1:
        this.#le = true;
        break;
      case PCAPNG_SHB:
        this.#format = "pcapng";
        this.#state = State.Block;
        return true;
      default: {
        const hint = v === 0xa1b2cd34 || v === 0x34cdb2a1
          ? " (the modified pcap format of old Linux patches)"
          : "";
        this.#fail("unsupported", 0, `not a pcap or pcapng file: magic ${hex32(v)}${hint}`);
        return false;
      }
    }
    this.#pcapNs = v === 0xa1b23c4d || v === 0x4d3cb2a1;
    this.#format = "pcap";
    this.#state = State.PcapHeader;
    return true;
  }

  #pcapHeader(): boolean {
    const s = this.#start;
    const major = this.#view.getUint16(s + 4, this.#le);
    const minor = this.#view.getUint16(s + 6, this.#le);
    if (major !== 2) {
      this.#fail("unsupported", 0, `pcap version ${major}.${minor} (only 2.x is known)`);
      return false;
    }
    // Only the low 16 bits name the link type; the upper ones carry the FCS length and flags.
    this.#pcapLinkType = this.#view.getUint32(s + 20, this.#le) & 0xffff;
    this.#start += 24;
    this.#state = State.PcapRecord;
    return true;
  }

  #pcapRecord(): CaptureRecord | null {
    const avail = this.#end - this.#start;
    if (avail < 16) return this.#short(16, "a packet record header");
    const s = this.#start;
    const view = this.#view;
    const le = this.#le;
    const caplen = view.getUint32(s + 8, le);
    const at = this.#base + s;
    if (caplen > MAX_CAPLEN) {
      return this.#corrupt(
        at,
        `packet record claims ${caplen} captured bytes (limit ${MAX_CAPLEN})`,
      );
    }
    if (avail < 16 + caplen) {
      if (!this.#ended) return null;
      return this.#fail(
        "truncated",
        at,
        `truncated at byte ${at}: packet record claims ${caplen} bytes, ${avail - 16} remain`,
      );
    }
    let sec = view.getUint32(s, le);
    let frac = view.getUint32(s + 4, le);
    // A fraction of a second or more does not occur in sane files; carrying keeps nsec in range.
    const perSec = this.#pcapNs ? 1_000_000_000 : 1_000_000;
    if (frac >= perSec) {
      const carry = Math.floor(frac / perSec);
      sec += carry;
      frac -= carry * perSec;
    }
    const ts: Timestamp = { sec, nsec: this.#pcapNs ? frac : frac * 1000 };
    this.#start = s + 16 + caplen;
    this.#lastTs = ts;
    return {
      kind: "packet",
      packet: {
        index: ++this.#index,
        fileOffset: at,
        ts,
        linkType: this.#pcapLinkType,
        interfaceId: 0,
        data: this.#buf.subarray(s + 16, s + 16 + caplen),
        originalLength: view.getUint32(s + 12, le),
      },
    };
  }

  /** One pcapng block: a record, null (need bytes / done), an error, or SKIPPED. */
  #block(): CaptureRecord | null | typeof SKIPPED {
    const avail = this.#end - this.#start;
    const s = this.#start;
    const at = this.#base + s;
    const view = this.#view;
    if (avail < 8) return this.#short(8, "a block header");
    const type = view.getUint32(s, this.#le);
    if (type === PCAPNG_SHB) {
      // The section's byte order is only known from its byte-order magic.
      if (avail < 12) return this.#short(12, "a section header");
      const bom = view.getUint32(s + 8, true);
      if (bom === BYTE_ORDER_MAGIC) this.#le = true;
      else if (bom === 0x4d3c2b1a) this.#le = false;
      else {
        return this.#corrupt(
          at,
          `section header byte-order magic is ${hex32(bom)}, not ${hex32(BYTE_ORDER_MAGIC)}`,
        );
      }
    }
    const le = this.#le;
    const len = view.getUint32(s + 4, le);
    if (len < 12 || len % 4 !== 0) {
      return this.#corrupt(
        at,
        `${blockName(type)} length ${len} is not a multiple of 4 of 12 or more`,
      );
    }
    if (len > MAX_BLOCK_LENGTH) {
      return this.#corrupt(
        at,
        `${blockName(type)} claims ${len} bytes (limit ${MAX_BLOCK_LENGTH})`,
      );
    }
    if (avail < len) {
      if (!this.#ended) return null;
      return this.#fail(
        "truncated",
        at,
        `truncated at byte ${at}: ${blockName(type)} claims ${len} bytes, ${avail} remain`,
      );
    }
    const trailing = view.getUint32(s + len - 4, le);
    if (trailing !== len) {
      return this.#corrupt(
        at,
        `${blockName(type)} length ${len} and trailing length ${trailing} differ`,
      );
    }
    switch (type) {
      case PCAPNG_SHB: {
        if (len < 28) return this.#corrupt(at, `section header block of ${len} bytes is too short`);
        const major = view.getUint16(s + 12, le);
        if (major !== 1) {
          const minor = view.getUint16(s + 14, le);
          return this.#fail(
            "unsupported",
            at,
            `section at byte ${at} is pcapng version ${major}.${minor} (only 1.x is known)`,
          );
        }
        this.#interfaces = [];
        break;
      }
      case PCAPNG_IDB: {
        if (len < 20) return this.#corrupt(at, `interface description block of ${len} bytes`);
        const r = this.#interface(s, len);
        if (r !== null) return r;
        break;
      }
      case PCAPNG_EPB:
      case PCAPNG_PB: {
        if (len < 32) return this.#corrupt(at, `${blockName(type)} of ${len} bytes is too short`);
        const ifId = type === PCAPNG_EPB ? view.getUint32(s + 8, le) : view.getUint16(s + 8, le);
        const iface = this.#interfaces[ifId];
        if (iface === undefined) {
          return this.#corrupt(
            at,
            `${blockName(type)} names interface ${ifId}, but ${this.#interfaces.length} ` +
              `are described in this section`,
          );
        }
        const caplen = view.getUint32(s + 20, le);
        if (caplen > MAX_CAPLEN || caplen > len - 32) {
          return this.#corrupt(
            at,
            `${blockName(type)} claims ${caplen} captured bytes in a block of ${len}`,
          );
        }
        const ts = unitsToTimestamp(iface, view.getUint32(s + 12, le), view.getUint32(s + 16, le));
        this.#start = s + len;
        this.#lastTs = ts;
        return {
          kind: "packet",
          packet: {
            index: ++this.#index,
            fileOffset: at,
            ts,
            linkType: iface.linkType,
            interfaceId: ifId,
            data: this.#buf.subarray(s + 28, s + 28 + caplen),
            originalLength: view.getUint32(s + 24, le),
          },
        };
      }
      case PCAPNG_SPB: {
        if (len < 16) return this.#corrupt(at, `simple packet block of ${len} bytes is too short`);
        const iface = this.#interfaces[0];
        if (iface === undefined) {
          return this.#corrupt(at, "simple packet block, but no interface is described");
        }
        const orig = view.getUint32(s + 8, le);
        let caplen = Math.min(orig, len - 16);
        if (iface.snaplen !== 0) caplen = Math.min(caplen, iface.snaplen);
        this.#start = s + len;
        return {
          kind: "packet",
          packet: {
            index: ++this.#index,
            fileOffset: at,
            // No timestamp in the block: the previous packet's is the best guess there is.
            ts: this.#lastTs,
            linkType: iface.linkType,
            interfaceId: 0,
            data: this.#buf.subarray(s + 12, s + 12 + caplen),
            originalLength: orig,
          },
        };
      }
      case PCAPNG_DSB: {
        if (len < 20) return this.#corrupt(at, `decryption secrets block of ${len} bytes`);
        const secretsType = view.getUint32(s + 8, le);
        const n = view.getUint32(s + 12, le);
        if (n > len - 20) {
          return this.#corrupt(
            at,
            `decryption secrets block claims ${n} bytes in a block of ${len}`,
          );
        }
        this.#start = s + len;
        return {
          kind: "secrets",
          secrets: { fileOffset: at, secretsType, data: this.#buf.subarray(s + 16, s + 16 + n) },
        };
      }
      default:
        // Name resolution, statistics, custom and unknown blocks: nothing we use.
        break;
    }
    this.#start = s + len;
    return SKIPPED;
  }

  /** Interface Description Block at s: appended to the section's interfaces, or an error. */
  #interface(s: number, len: number): CaptureRecord | null {
    const view = this.#view;
    const le = this.#le;
    const at = this.#base + s;
    const linkType = view.getUint16(s + 8, le);
    const snaplen = view.getUint32(s + 12, le);
    let resol = 6;
    let offset = 0;
    const end = s + len - 4;
    for (let o = s + 16; o + 4 <= end;) {
      const code = view.getUint16(o, le);
      const olen = view.getUint16(o + 2, le);
      if (code === 0) break;
      if (o + 4 + olen > end) {
        return this.#corrupt(at, `interface description option ${code} overruns the block`);
      }
      if (code === IF_TSRESOL && olen >= 1) resol = this.#buf[o + 4];
      else if (code === IF_TSOFFSET && olen >= 8) {
        offset = Number(view.getBigInt64(o + 4, le));
      }
      o += 4 + ((olen + 3) & ~3);
    }
    this.#interfaces.push(makeInterface(linkType, snaplen, resol, offset));
    return null;
  }
}

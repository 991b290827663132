/**
 * pcapng blocks for the daemon's own capture (`--capture`), as bytes: the caller writes them
 * in order (SHB, IDB, then EPBs and DSBs). Little-endian, the byte order tools on our
 * platforms write and expect. Every block is padded to 32 bits, options end with
 * opt_endofopt, and the total length is repeated at the end so a reader can walk backwards.
 */
import type { Timestamp } from "./types.ts";

const SHB_TYPE = 0x0a0d0d0a;
const IDB_TYPE = 0x00000001;
const EPB_TYPE = 0x00000006;
const DSB_TYPE = 0x0000000a;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const OPT_ENDOFOPT = 0;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_TSRESOL = 9;

/** What Wireshark and tcpdump use when nothing else is asked: larger than any frame we make. */
const DEFAULT_SNAPLEN = 262_144;

const encoder = new TextEncoder();

function pad4(n: number): number {
  return (n + 3) & ~3;
}

interface Option {
  readonly code: number;
  readonly value: Uint8Array;
}

function optionsSize(opts: readonly Option[]): number {
  if (opts.length === 0) return 0;
  let n = 4; // opt_endofopt
  for (const o of opts) n += 4 + pad4(o.value.length);
  return n;
}

function writeOptions(bytes: Uint8Array, view: DataView, at: number, opts: readonly Option[]) {
  if (opts.length === 0) return;
  let o = at;
  for (const opt of opts) {
    view.setUint16(o, opt.code, true);
    view.setUint16(o + 2, opt.value.length, true);
    bytes.set(opt.value, o + 4);
    o += 4 + pad4(opt.value.length);
  }
  view.setUint16(o, OPT_ENDOFOPT, true);
  view.setUint16(o + 2, 0, true);
}

/** A block with `fixed` bytes of body after the 8-byte header, then options; body is zeroed. */
function block(
  type: number,
  fixed: number,
  opts: readonly Option[],
): { bytes: Uint8Array; view: DataView; optAt: number } {
  const total = 8 + pad4(fixed) + optionsSize(opts) + 4;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, total, true);
  view.setUint32(total - 4, total, true);
  const optAt = 8 + pad4(fixed);
  writeOptions(bytes, view, optAt, opts);
  return { bytes, view, optAt };
}

/** Section Header Block, version 1.0, section length unknown (-1), shb_userappl "toxtcp". */
export function sectionHeaderBlock(): Uint8Array {
  const { bytes, view } = block(SHB_TYPE, 16, [
    { code: SHB_USERAPPL, value: encoder.encode("toxtcp") },
  ]);
  view.setUint32(8, BYTE_ORDER_MAGIC, true);
  view.setUint16(12, 1, true);
  view.setUint16(14, 0, true);
  // -1: we stream the file and never come back to fill the length in.
  view.setUint32(16, 0xffffffff, true);
  view.setUint32(20, 0xffffffff, true);
  return bytes;
}

export interface InterfaceOptions {
  /** Default 262144. 0 means "no limit" in pcapng. */
  readonly snaplen?: number;
  readonly name?: string;
  /** Nanosecond timestamps (if_tsresol = 9); without it readers assume microseconds. */
  readonly tsresolNs?: boolean;
}

/** Interface Description Block; interfaces are numbered from 0 in the order they are written. */
export function interfaceDescriptionBlock(
  linkType: number,
  opts: InterfaceOptions = {},
): Uint8Array {
  const options: Option[] = [];
  if (opts.name !== undefined) options.push({ code: IF_NAME, value: encoder.encode(opts.name) });
  if (opts.tsresolNs) options.push({ code: IF_TSRESOL, value: Uint8Array.of(9) });
  const { bytes, view } = block(IDB_TYPE, 8, options);
  view.setUint16(8, linkType, true);
  view.setUint16(10, 0, true);
  view.setUint32(12, opts.snaplen ?? DEFAULT_SNAPLEN, true);
  return bytes;
}

/**
 * Enhanced Packet Block. The timestamp is written in the unit of the interface: pass the
 * same `tsresolNs` the interface was described with (nanoseconds by default, as the daemon
 * describes its interface that way). Timestamps before 1970 are written as 0.
 */
export function enhancedPacketBlock(
  interfaceId: number,
  ts: Timestamp,
  data: Uint8Array,
  originalLength: number = data.length,
  tsresolNs = true,
): Uint8Array {
  const { bytes, view } = block(EPB_TYPE, 20 + data.length, []);
  view.setUint32(8, interfaceId, true);
  const [high, low] = tsresolNs
    ? timestampUnits(ts.sec, ts.nsec, 1_000_000_000)
    : timestampUnits(ts.sec, Math.floor(ts.nsec / 1000), 1_000_000);
  view.setUint32(12, high, true);
  view.setUint32(16, low, true);
  view.setUint32(20, data.length, true);
  view.setUint32(24, originalLength, true);
  bytes.set(data, 28);
  return bytes;
}

/**
 * sec * perSec + frac as two u32 halves, exactly: the product passes 2^53 for nanoseconds
 * since 1970, so it is built from 16-bit pieces that stay exact in a double (BigInt only for
 * seconds past 2106, which no clock gives us today).
 */
function timestampUnits(sec: number, frac: number, perSec: number): [number, number] {
  if (!(sec >= 0 && sec < 0x1_0000_0000 && Number.isInteger(sec))) {
    if (!(sec >= 0) || !Number.isFinite(sec)) return [0, 0];
    const t = BigInt.asUintN(64, BigInt(Math.floor(sec)) * BigInt(perSec) + BigInt(frac));
    return [Number(t >> 32n), Number(t & 0xffffffffn)];
  }
  const a = Math.floor(sec / 65536);
  const b = sec - a * 65536;
  const x = a * perSec; // < 2^16 * 1e9 < 2^53
  const xh = Math.floor(x / 65536);
  const z = (x - xh * 65536) * 65536 + b * perSec + frac; // < 2^32 + 2^47: exact
  const carry = Math.floor(z / 0x1_0000_0000);
  return [(xh + carry) >>> 0, z - carry * 0x1_0000_0000];
}

/** Decryption Secrets Block: keys that apply to the packets after it. */
export function decryptionSecretsBlock(secretsType: number, data: Uint8Array): Uint8Array {
  const { bytes, view } = block(DSB_TYPE, 8 + data.length, []);
  view.setUint32(8, secretsType, true);
  view.setUint32(12, data.length, true);
  bytes.set(data, 16);
  return bytes;
}

/**
 * daemon/core/capture/pcap_reader.ts, pcapng_writer.ts and tcp_synth.ts: files are built here,
 * byte by byte, from the pcap and pcapng definitions (not with the writer under test), then
 * read whole, in pieces, cut at every byte and mutated at random; the writer's output is read
 * back; and when tshark is there, it must open the daemon-style capture without a complaint
 * and follow its TCP streams to the exact bytes.
 */
import assert from "node:assert/strict";
import { CaptureReader, MAX_CAPLEN } from "../daemon/core/capture/pcap_reader.ts";
import { readCaptureFile } from "../daemon/shell/capture_file.ts";
import {
  decryptionSecretsBlock,
  enhancedPacketBlock,
  interfaceDescriptionBlock,
  sectionHeaderBlock,
} from "../daemon/core/capture/pcapng_writer.ts";
import { SyntheticTcpStream } from "../daemon/core/capture/tcp_synth.ts";
import type { CapturePacket, CaptureRecord, Timestamp } from "../daemon/core/capture/types.ts";
import { seededUnit as rng } from "../tools/testbed/seeded_random.ts";

// ---------------------------------------------------------------------------------------------
// Builders

class Bytes {
  readonly parts: Uint8Array[] = [];
  /** File offset where each part starts; parts are records/blocks (or the pcap header). */
  readonly starts: number[] = [];
  length = 0;

  add(p: Uint8Array): this {
    this.starts.push(this.length);
    this.parts.push(p);
    this.length += p.length;
    return this;
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** Where each part ends: the lengths at which a prefix of the file is not cut. */
  ends(): number[] {
    return this.starts.map((s, i) => s + this.parts[i].length);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const b = new Bytes();
  for (const p of parts) b.add(p);
  return b.bytes();
}

const enc = new TextEncoder();

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

function pcapHeader(le: boolean, ns: boolean, linkType: number, snaplen = 65535): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint32(0, ns ? 0xa1b23c4d : 0xa1b2c3d4, le);
  v.setUint16(4, 2, le);
  v.setUint16(6, 4, le);
  v.setUint32(16, snaplen, le);
  v.setUint32(20, linkType, le);
  return b;
}

function pcapRecord(
  le: boolean,
  sec: number,
  frac: number,
  data: Uint8Array,
  orig = data.length,
): Uint8Array {
  const b = new Uint8Array(16 + data.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, sec, le);
  v.setUint32(4, frac, le);
  v.setUint32(8, data.length, le);
  v.setUint32(12, orig, le);
  b.set(data, 16);
  return b;
}

const pad4 = (n: number) => (n + 3) & ~3;

function ngBlock(le: boolean, type: number, body: Uint8Array): Uint8Array {
  const len = 12 + pad4(body.length);
  const b = new Uint8Array(len);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, le);
  v.setUint32(4, len, le);
  b.set(body, 8);
  v.setUint32(len - 4, len, le);
  return b;
}

interface Opt {
  code: number;
  value: Uint8Array;
}

function ngOptions(le: boolean, opts: Opt[]): Uint8Array {
  if (opts.length === 0) return new Uint8Array(0);
  const b = new Bytes();
  for (const o of opts) {
    const h = new Uint8Array(4 + pad4(o.value.length));
    const v = new DataView(h.buffer);
    v.setUint16(0, o.code, le);
    v.setUint16(2, o.value.length, le);
    h.set(o.value, 4);
    b.add(h);
  }
  b.add(new Uint8Array(4));
  return b.bytes();
}

function shb(le: boolean, opts: Opt[] = []): Uint8Array {
  const body = new Uint8Array(16);
  const v = new DataView(body.buffer);
  v.setUint32(0, 0x1a2b3c4d, le);
  v.setUint16(4, 1, le);
  v.setBigInt64(8, -1n, le);
  return ngBlock(le, 0x0a0d0d0a, concat(body, ngOptions(le, opts)));
}

function idb(le: boolean, linkType: number, snaplen: number, opts: Opt[] = []): Uint8Array {
  const body = new Uint8Array(8);
  const v = new DataView(body.buffer);
  v.setUint16(0, linkType, le);
  v.setUint32(4, snaplen, le);
  return ngBlock(le, 1, concat(body, ngOptions(le, opts)));
}

function tsresol(v: number): Opt {
  return { code: 9, value: Uint8Array.of(v) };
}

function tsoffset(le: boolean, seconds: bigint): Opt {
  const value = new Uint8Array(8);
  new DataView(value.buffer).setBigInt64(0, seconds, le);
  return { code: 14, value };
}

function epb(le: boolean, ifId: number, units: bigint, data: Uint8Array, orig = data.length) {
  const body = new Uint8Array(20 + pad4(data.length));
  const v = new DataView(body.buffer);
  v.setUint32(0, ifId, le);
  v.setUint32(4, Number(units >> 32n), le);
  v.setUint32(8, Number(units & 0xffffffffn), le);
  v.setUint32(12, data.length, le);
  v.setUint32(16, orig, le);
  body.set(data, 20);
  return ngBlock(le, 6, concat(body, ngOptions(le, [{ code: 1, value: enc.encode("c") }])));
}

/** The obsolete Packet Block (type 2): 16-bit interface id and drop count. */
function pb(le: boolean, ifId: number, units: bigint, data: Uint8Array) {
  const body = new Uint8Array(20 + pad4(data.length));
  const v = new DataView(body.buffer);
  v.setUint16(0, ifId, le);
  v.setUint16(2, 0, le);
  v.setUint32(4, Number(units >> 32n), le);
  v.setUint32(8, Number(units & 0xffffffffn), le);
  v.setUint32(12, data.length, le);
  v.setUint32(16, data.length, le);
  body.set(data, 20);
  return ngBlock(le, 2, body);
}

function spb(le: boolean, orig: number, data: Uint8Array): Uint8Array {
  const body = new Uint8Array(4 + data.length);
  new DataView(body.buffer).setUint32(0, orig, le);
  body.set(data, 4);
  return ngBlock(le, 3, body);
}

function dsb(le: boolean, type: number, data: Uint8Array): Uint8Array {
  const body = new Uint8Array(8 + data.length);
  const v = new DataView(body.buffer);
  v.setUint32(0, type, le);
  v.setUint32(4, data.length, le);
  body.set(data, 8);
  return ngBlock(le, 10, body);
}

/** The reference conversion, in BigInt: units of 10^-e (or 2^-e) seconds → {sec, nsec}. */
function refTs(units: bigint, resol: number, offset = 0n): Timestamp {
  const per = resol & 0x80 ? 1n << BigInt(resol & 0x7f) : 10n ** BigInt(resol);
  return {
    sec: Number(units / per + offset),
    nsec: Number((units % per) * 1_000_000_000n / per),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading helpers

/** Everything a reader yields for `bytes`, pushed in `chunks` pieces (sizes cycle). */
function readAll(bytes: Uint8Array, chunks: number[] = [bytes.length || 1]): CaptureRecord[] {
  const r = new CaptureReader();
  const out: CaptureRecord[] = [];
  let i = 0;
  for (let o = 0; o < bytes.length; i++) {
    const n = Math.max(1, chunks[i % chunks.length]);
    r.push(bytes.subarray(o, o + n));
    o += n;
    for (let rec = r.next(); rec !== null; rec = r.next()) out.push(rec);
  }
  r.end();
  for (let rec = r.next(); rec !== null; rec = r.next()) out.push(rec);
  assert.equal(r.next(), null);
  return out;
}

function packets(recs: CaptureRecord[]): CapturePacket[] {
  return recs.flatMap((r) => (r.kind === "packet" ? [r.packet] : []));
}

/** Records as plain data (byte arrays as arrays) to compare with deepEqual. */
function plain(recs: CaptureRecord[]): unknown[] {
  return recs.map((r) => {
    if (r.kind === "packet") return { ...r.packet, data: [...r.packet.data] };
    if (r.kind === "secrets") return { ...r.secrets, data: [...r.secrets.data] };
    return r;
  });
}

function offsetOf(r: CaptureRecord): number {
  return r.kind === "packet"
    ? r.packet.fileOffset
    : r.kind === "secrets"
    ? r.secrets.fileOffset
    : r.fileOffset;
}

function errorOf(recs: CaptureRecord[]) {
  const last = recs.at(-1);
  assert.ok(last !== undefined && last.kind === "error", "ends in an error");
  assert.equal(recs.filter((r) => r.kind === "error").length, 1, "exactly one error");
  return last;
}

// ---------------------------------------------------------------------------------------------
// Classic pcap

for (const le of [true, false]) {
  for (const ns of [false, true]) {
    Deno.test(`pcap ${le ? "little" : "big"}-endian, ${ns ? "ns" : "µs"}: records and timestamps`, () => {
      const perSec = ns ? 1_000_000_000 : 1_000_000;
      const f = new Bytes()
        // FCS length 4 and its flag in the upper bits: the link type is still Ethernet.
        .add(pcapHeader(le, ns, 0x40000001 | 0x04000000))
        .add(pcapRecord(le, 1_700_000_000, 123, pattern(60)))
        .add(pcapRecord(le, 1_700_000_001, perSec - 1, pattern(1514, 2), 1600))
        .add(pcapRecord(le, 0xffffffff, 0, new Uint8Array(0), 0));
      const bytes = f.bytes();
      const r = new CaptureReader();
      assert.equal(r.format, null);
      r.push(bytes);
      const recs: CaptureRecord[] = [];
      for (let x = r.next(); x !== null; x = r.next()) recs.push(x);
      assert.equal(r.format, "pcap");
      assert.equal(r.bytesConsumed, bytes.length);
      r.end();
      assert.equal(r.next(), null, "a file that ends at a record boundary is not an error");
      const ps = packets(recs);
      assert.equal(recs.length, 3);
      assert.deepEqual(ps.map((p) => p.index), [1, 2, 3]);
      assert.deepEqual(ps.map((p) => p.fileOffset), f.starts.slice(1));
      assert.deepEqual(ps.map((p) => p.linkType), [1, 1, 1]);
      assert.deepEqual(ps.map((p) => p.interfaceId), [0, 0, 0]);
      assert.deepEqual(ps.map((p) => p.ts), [
        { sec: 1_700_000_000, nsec: ns ? 123 : 123_000 },
        { sec: 1_700_000_001, nsec: ns ? 999_999_999 : 999_999_000 },
        { sec: 0xffffffff, nsec: 0 },
      ]);
      assert.deepEqual([...ps[1].data], [...pattern(1514, 2)]);
      assert.equal(ps[1].originalLength, 1600);
      assert.equal(ps[2].data.length, 0);
    });
  }
}

Deno.test("pcap: problems in the file header and records", () => {
  const ok = pcapRecord(true, 1, 2, pattern(10));
  const cases: [string, Uint8Array, string, number, number][] = [
    ["unknown magic", concat(enc.encode("GIF89a"), new Uint8Array(40)), "unsupported", 0, 0],
    [
      "modified pcap magic",
      concat(Uint8Array.of(0x34, 0xcd, 0xb2, 0xa1), new Uint8Array(20)),
      "unsupported",
      0,
      0,
    ],
    [
      "version 3",
      (() => {
        const h = pcapHeader(true, false, 1);
        h[4] = 3;
        return h;
      })(),
      "unsupported",
      0,
      0,
    ],
    [
      "caplen over 256 KiB",
      concat(pcapHeader(true, false, 1), ok, pcapRecord(true, 1, 2, new Uint8Array(0), 0)),
      "corrupt",
      24 + ok.length,
      1,
    ],
  ];
  // Patch the second record's caplen to MAX_CAPLEN + 1.
  new DataView(cases[3][1].buffer).setUint32(24 + ok.length + 8, MAX_CAPLEN + 1, true);
  for (const [what, bytes, code, at, before] of cases) {
    const recs = readAll(bytes);
    const err = errorOf(recs);
    assert.equal(err.code, code, what);
    assert.equal(err.fileOffset, at, what);
    assert.equal(recs.length, before + 1, `${what}: the records before are yielded`);
    assert.match(err.message, /\S/);
  }
  const e = errorOf(readAll(cases[3][1]));
  assert.match(e.message, new RegExp(`byte ${24 + ok.length}.*${MAX_CAPLEN + 1}`));
});

Deno.test("pcap: the truncation message names the offset and what was expected", () => {
  const f = concat(pcapHeader(true, false, 1), pcapRecord(true, 1, 0, pattern(1514)));
  const recs = readAll(f.subarray(0, 24 + 16 + 200));
  const e = errorOf(recs);
  assert.equal(e.code, "truncated");
  assert.equal(e.fileOffset, 24);
  assert.equal(e.message, "truncated at byte 24: packet record claims 1514 bytes, 200 remain");
  const empty = errorOf(readAll(new Uint8Array(0)));
  assert.equal(empty.code, "truncated");
  assert.equal(empty.fileOffset, 0);
});

// ---------------------------------------------------------------------------------------------
// pcapng

/** A pcapng file with every kind of block, in one byte order, and what reading it must give. */
function ngSample(le: boolean) {
  const ns = 1_700_000_000_123_456_789n;
  const f = new Bytes()
    .add(shb(le, [{ code: 4, value: enc.encode("test") }]))
    .add(idb(le, 1, 0, [tsresol(9), { code: 2, value: enc.encode("eth0") }]))
    .add(idb(le, 101, 1000)) // default resolution: microseconds
    .add(idb(le, 113, 0, [tsresol(0x80 | 20), tsoffset(le, 1000n)]))
    .add(epb(le, 0, ns, pattern(61)))
    .add(epb(le, 1, 1_700_000_000_999_999n, pattern(40, 3), 1400))
    .add(ngBlock(le, 0x00000bad, pattern(13))) // custom block
    .add(ngBlock(le, 4, new Uint8Array(4))) // name resolution, empty
    .add(dsb(le, 0x544f584b, enc.encode("TCP_SESSION 00\n")))
    .add(epb(le, 2, (5n << 20n) + 3n, pattern(20, 4)))
    .add(ngBlock(le, 5, new Uint8Array(12))) // interface statistics
    .add(pb(le, 0, ns + 1n, pattern(7, 5)))
    .add(spb(le, 3000, pattern(1000, 6))); // snaplen 0 on interface 0: the block decides
  const expected = [
    { index: 1, ifId: 0, link: 1, ts: refTs(ns, 9), len: 61, orig: 61 },
    { index: 2, ifId: 1, link: 101, ts: refTs(1_700_000_000_999_999n, 6), len: 40, orig: 1400 },
    { index: 3, ifId: 2, link: 113, ts: refTs((5n << 20n) + 3n, 0x80 | 20, 1000n), len: 20 },
    { index: 4, ifId: 0, link: 1, ts: refTs(ns + 1n, 9), len: 7, orig: 7 },
    // No timestamp in an SPB: the previous packet's.
    { index: 5, ifId: 0, link: 1, ts: refTs(ns + 1n, 9), len: 1000, orig: 3000 },
  ];
  return { f, expected };
}

for (const le of [true, false]) {
  Deno.test(`pcapng ${le ? "little" : "big"}-endian: every block kind, exact timestamps`, () => {
    const { f, expected } = ngSample(le);
    const r = new CaptureReader();
    r.push(f.bytes());
    r.end();
    const recs: CaptureRecord[] = [];
    for (let x = r.next(); x !== null; x = r.next()) recs.push(x);
    assert.equal(r.format, "pcapng");
    assert.equal(r.bytesConsumed, f.length);
    assert.deepEqual(recs.map((x) => x.kind), [
      "packet",
      "packet",
      "secrets",
      "packet",
      "packet",
      "packet",
    ]);
    const ps = packets(recs);
    assert.deepEqual(
      ps.map((p) => ({
        index: p.index,
        ifId: p.interfaceId,
        link: p.linkType,
        ts: p.ts,
        len: p.data.length,
      })),
      expected.map(({ orig: _, ...e }) => e),
    );
    assert.equal(ps[1].originalLength, 1400);
    assert.equal(ps[4].originalLength, 3000);
    assert.deepEqual([...ps[0].data], [...pattern(61)]);
    assert.deepEqual([...ps[4].data], [...pattern(1000, 6)]);
    assert.deepEqual(ps.map((p) => p.fileOffset), [4, 5, 9, 11, 12].map((i) => f.starts[i]));
    const s = recs[2];
    assert.ok(s.kind === "secrets");
    assert.equal(s.secrets.secretsType, 0x544f584b);
    assert.equal(s.secrets.fileOffset, f.starts[8]);
    assert.equal(new TextDecoder().decode(s.secrets.data), "TCP_SESSION 00\n");
  });
}

Deno.test("pcapng: if_tsresol powers of 10 and 2, if_tsoffset, converted exactly", () => {
  const unitsList = [
    0n,
    1n,
    999_999_999n,
    1_700_000_000_123_456_789n,
    0xffffffffffffffffn,
    0xfffffffe00000001n,
    (1n << 53n) + 1n,
    1_234_567_890_123n,
  ];
  const resols = [0, 1, 3, 6, 9, 12, 15, 19, 0x80, 0x80 | 1, 0x80 | 9, 0x80 | 10, 0x80 | 20];
  resols.push(0x80 | 30, 0x80 | 32, 0x80 | 33, 0x80 | 40, 0x80 | 63, 0x80 | 64);
  for (const le of [true, false]) {
    for (const res of resols) {
      for (const offset of [0n, -5n, 86400n]) {
        const f = new Bytes().add(shb(le));
        const opts = res === 6 ? [] : [tsresol(res)];
        if (offset !== 0n) opts.push(tsoffset(le, offset));
        f.add(idb(le, 1, 0, opts));
        for (const u of unitsList) f.add(epb(le, 0, u, new Uint8Array(1)));
        const ps = packets(readAll(f.bytes()));
        assert.equal(ps.length, unitsList.length);
        const what = `le=${le} resol=0x${res.toString(16)} offset=${offset}`;
        for (let i = 0; i < ps.length; i++) {
          const want = refTs(unitsList[i], res, offset);
          const got = ps[i].ts;
          assert.equal(got.nsec, want.nsec, `${what} units=${unitsList[i]}`);
          // Past 2^53 seconds (units of whole seconds) a double cannot be exact: close is all.
          if (Number.isSafeInteger(refTs(unitsList[i], res).sec)) {
            assert.equal(got.sec, want.sec, what);
          } else assert.ok(Math.abs(got.sec - want.sec) / want.sec < 1e-15, what);
          assert.ok(Number.isInteger(got.nsec) && got.nsec >= 0 && got.nsec < 1e9);
        }
      }
    }
  }
});

Deno.test("pcapng: two sections, one per byte order, each with its own interfaces", () => {
  const a = new Bytes()
    .add(shb(true))
    .add(idb(true, 1, 0, [tsresol(9)]))
    .add(idb(true, 101, 0))
    .add(epb(true, 1, 7_000_001n, pattern(5)))
    .add(shb(false))
    .add(idb(false, 113, 0, [tsresol(3)]))
    .add(epb(false, 0, 7_001n, pattern(6)))
    .add(spb(false, 6, pattern(6)));
  const ps = packets(readAll(a.bytes()));
  assert.deepEqual(ps.map((p) => [p.index, p.linkType, p.interfaceId, p.ts.sec, p.ts.nsec]), [
    [1, 101, 1, 7, 1000],
    [2, 113, 0, 7, 1_000_000],
    [3, 113, 0, 7, 1_000_000],
  ]);
  // The second section forgot the first one's interfaces: interface 1 is gone.
  const b = new Bytes()
    .add(shb(true))
    .add(idb(true, 1, 0))
    .add(idb(true, 1, 0))
    .add(epb(true, 1, 1n, pattern(5)))
    .add(shb(true))
    .add(idb(true, 1, 0))
    .add(epb(true, 1, 1n, pattern(5)));
  const recs = readAll(b.bytes());
  const e = errorOf(recs);
  assert.equal(recs.length, 2);
  assert.equal(e.code, "corrupt");
  assert.equal(e.fileOffset, b.starts[6]);
  assert.match(e.message, /interface 1/);
});

Deno.test("pcapng: corrupt structures stop the reading with everything before yielded", () => {
  const head = () =>
    new Bytes().add(shb(true)).add(idb(true, 1, 0)).add(epb(true, 0, 1n, pattern(9)));
  const cases: [string, (f: Bytes) => void, string, RegExp][] = [
    [
      "block length not a multiple of 4",
      (f) => {
        const blk = ngBlock(true, 0x0bad, new Uint8Array(4));
        new DataView(blk.buffer).setUint32(4, 18, true);
        f.add(blk);
      },
      "corrupt",
      /multiple of 4/,
    ],
    [
      "block length under 12",
      (f) => {
        const blk = ngBlock(true, 0x0bad, new Uint8Array(0));
        new DataView(blk.buffer).setUint32(4, 8, true);
        f.add(blk);
      },
      "corrupt",
      /length 8/,
    ],
    [
      "trailing length differs",
      (f) => {
        const blk = epb(true, 0, 2n, pattern(8));
        new DataView(blk.buffer).setUint32(blk.length - 4, blk.length + 4, true);
        f.add(blk);
      },
      "corrupt",
      /trailing length/,
    ],
    [
      "epb on an unknown interface",
      (f) => f.add(epb(true, 3, 2n, pattern(8))),
      "corrupt",
      /interface 3/,
    ],
    [
      "epb caplen past the block",
      (f) => {
        const blk = epb(true, 0, 2n, pattern(8));
        new DataView(blk.buffer).setUint32(20, 400, true);
        f.add(blk);
      },
      "corrupt",
      /400 captured bytes/,
    ],
    [
      "epb caplen over 256 KiB",
      (f) => {
        const blk = epb(true, 0, 2n, new Uint8Array(MAX_CAPLEN + 4));
        new DataView(blk.buffer).setUint32(20, MAX_CAPLEN + 1, true);
        f.add(blk);
      },
      "corrupt",
      /262145/,
    ],
    [
      "dsb length past the block",
      (f) => {
        const blk = dsb(true, 1, pattern(8));
        new DataView(blk.buffer).setUint32(12, 9, true);
        f.add(blk);
      },
      "corrupt",
      /claims 9 bytes/,
    ],
    [
      "section with a bad byte-order magic",
      (f) => {
        const blk = shb(true);
        blk[8] = 0x99;
        f.add(blk);
      },
      "corrupt",
      /byte-order magic/,
    ],
    [
      "section of version 2",
      (f) => {
        const blk = shb(true);
        blk[12] = 2;
        f.add(blk);
      },
      "unsupported",
      /version 2\.0/,
    ],
    [
      "interface option overruns its block",
      (f) => {
        const blk = idb(true, 1, 0, [{ code: 2, value: enc.encode("abcd") }]);
        new DataView(blk.buffer).setUint16(18, 200, true);
        f.add(blk);
      },
      "corrupt",
      /option 2 overruns/,
    ],
  ];
  for (const [what, mutate, code, message] of cases) {
    const f = head();
    mutate(f);
    f.add(epb(true, 0, 3n, pattern(4)));
    const recs = readAll(f.bytes());
    const e = errorOf(recs);
    assert.equal(e.code, code, what);
    assert.equal(e.fileOffset, f.starts[3], what);
    assert.match(e.message, message, `${what}: ${e.message}`);
    assert.equal(recs.length, 2, `${what}: the packet before it is yielded`);
  }
  const noIface = errorOf(readAll(concat(shb(true), spb(true, 4, pattern(4)))));
  assert.equal(noIface.code, "corrupt");
  assert.match(noIface.message, /no interface/);
});

// ---------------------------------------------------------------------------------------------
// Truncation, chunking, fuzzing

function smallFiles(): [string, Bytes][] {
  const pcap = new Bytes()
    .add(pcapHeader(false, true, 1))
    .add(pcapRecord(false, 10, 20, pattern(30)))
    .add(pcapRecord(false, 11, 21, pattern(0)))
    .add(pcapRecord(false, 12, 22, pattern(17)));
  const ng = new Bytes()
    .add(shb(true, [{ code: 4, value: enc.encode("x") }]))
    .add(idb(true, 1, 0, [tsresol(9)]))
    .add(epb(true, 0, 5n, pattern(13)))
    .add(dsb(true, 7, pattern(5)))
    .add(ngBlock(true, 0x40000bad, pattern(3)))
    .add(spb(true, 9, pattern(9)))
    .add(shb(false))
    .add(idb(false, 101, 0))
    .add(epb(false, 0, 77n, pattern(6)));
  return [["pcap", pcap], ["pcapng", ng]];
}

Deno.test("truncated at every byte: the records before, then one error at the right offset", () => {
  for (const [name, f] of smallFiles()) {
    const bytes = f.bytes();
    const whole = readAll(bytes);
    assert.ok(whole.every((r) => r.kind !== "error"), `${name} reads whole`);
    const ends = f.ends();
    for (let cut = 0; cut < bytes.length; cut++) {
      let recs: CaptureRecord[] = [];
      assert.doesNotThrow(() => {
        recs = readAll(bytes.subarray(0, cut));
      });
      // Parts that fit whole; the first one cut is where the error points.
      const wholeParts = ends.filter((e) => e <= cut).length;
      const yielded: CaptureRecord[] = whole.filter((r) =>
        ends[f.starts.indexOf(offsetOf(r))] <= cut
      );
      if (cut > 0 && ends.includes(cut)) {
        assert.deepEqual(plain(recs), plain(yielded), `${name} cut at a boundary ${cut}`);
        continue;
      }
      const e = errorOf(recs);
      assert.equal(e.code, "truncated", `${name} cut ${cut}: ${e.message}`);
      assert.equal(e.fileOffset, f.starts[wholeParts], `${name} cut ${cut}`);
      assert.ok(e.message.includes(`byte ${e.fileOffset}`), e.message);
      assert.deepEqual(plain(recs.slice(0, -1)), plain(yielded), `${name} cut ${cut}`);
    }
  }
});

Deno.test("chunked pushing gives the records of one push; views stay valid", () => {
  const rand = rng(7);
  const files = [...smallFiles().map(([, f]) => f.bytes()), ngSample(true).f.bytes()];
  files.push(ngSample(false).f.bytes());
  for (const bytes of files) {
    const once = plain(readAll(bytes));
    assert.deepEqual(plain(readAll(bytes, [1])), once, "1-byte chunks");
    for (let k = 0; k < 20; k++) {
      const sizes = Array.from({ length: 7 }, () => 1 + Math.floor(rand() * 300));
      // plain() runs after all pushes: earlier records' data must not have been overwritten.
      assert.deepEqual(plain(readAll(bytes, sizes)), once, `chunks ${sizes}`);
    }
  }
  // A caller reusing its chunk buffer does not disturb records already read.
  const bytes = files[1];
  const r = new CaptureReader();
  const chunk = new Uint8Array(10);
  const recs: CaptureRecord[] = [];
  for (let o = 0; o < bytes.length; o += 10) {
    const n = Math.min(10, bytes.length - o);
    chunk.set(bytes.subarray(o, o + n));
    r.push(chunk.subarray(0, n));
    chunk.fill(0xee);
    for (let x = r.next(); x !== null; x = r.next()) recs.push(x);
  }
  r.end();
  for (let x = r.next(); x !== null; x = r.next()) recs.push(x);
  assert.deepEqual(plain(recs), plain(readAll(bytes)));
});

Deno.test("fuzz: mutated files never throw, always end, at most one error and it is last", () => {
  const rand = rng(0x70c7c9);
  const int = (n: number) => Math.floor(rand() * n);
  const bases = [
    ...smallFiles().map(([, f]) => f.bytes()),
    ngSample(true).f.bytes(),
    ngSample(false).f.bytes(),
    concat(
      pcapHeader(true, false, 1),
      pcapRecord(true, 1, 999_999, pattern(40)),
      pcapRecord(true, 2, 0, pattern(3)),
    ),
  ];
  const interesting = [0, 1, 3, 4, 8, 11, 12, 13, 16, 28, 0x7fffffff, 0xffffffff, 0x0a0d0d0a];
  const started = performance.now();
  let cases = 0;
  let errors = 0;
  while (cases < 4000 && performance.now() - started < 15_000) {
    cases++;
    const base = bases[int(bases.length)];
    let b: Uint8Array = base.slice();
    const rounds = 1 + int(4);
    for (let m = 0; m < rounds; m++) {
      const kind = int(6);
      if (b.length < 4) break;
      const at = int(b.length - 3);
      if (kind === 0) b[at] ^= 1 << int(8);
      else if (kind === 1) b[at] = int(256);
      else if (kind === 2) {
        new DataView(b.buffer, b.byteOffset).setUint32(
          at,
          interesting[int(interesting.length)],
          rand() < 0.5,
        );
      } else if (kind === 3) b = b.subarray(0, at);
      else if (kind === 4) {
        const len = int(64);
        b = concat(b.subarray(0, at), b.subarray(at, at + len), b.subarray(at));
      } else {
        const junk = new Uint8Array(int(16)).map(() => int(256));
        b = concat(b.subarray(0, at), junk, b.subarray(at));
      }
    }
    const sizes = rand() < 0.5 ? [b.length || 1] : [1 + int(50), 1 + int(7)];
    let recs: CaptureRecord[] = [];
    try {
      recs = readAll(b, sizes);
    } catch (e) {
      throw new Error(`case ${cases} threw: ${e}\n${[...b].join(",")}`);
    }
    assert.ok(recs.length <= b.length + 1, "terminates with a bounded number of records");
    const errs = recs.filter((r) => r.kind === "error");
    assert.ok(errs.length <= 1);
    if (errs.length === 1) {
      errors++;
      assert.equal(recs.at(-1)?.kind, "error");
      assert.ok(!errs[0].message.startsWith("internal error"), errs[0].message);
      assert.ok(errs[0].fileOffset >= 0 && errs[0].fileOffset <= b.length);
    }
    for (const p of packets(recs)) {
      assert.ok(p.data.length <= MAX_CAPLEN);
      assert.ok(Number.isInteger(p.ts.nsec) && p.ts.nsec >= 0 && p.ts.nsec < 1e9, `${p.ts.nsec}`);
    }
  }
  assert.ok(cases >= 1000, `only ${cases} cases in the time given`);
  assert.ok(errors > cases / 10, "the mutations do reach the error paths");
});

// ---------------------------------------------------------------------------------------------
// Writer

Deno.test("pcapng writer: padded blocks, options, read back exactly", () => {
  const shbBytes = sectionHeaderBlock();
  const dv = new DataView(shbBytes.buffer);
  assert.equal(dv.getUint32(0, true), 0x0a0d0d0a);
  assert.equal(dv.getUint32(8, true), 0x1a2b3c4d);
  assert.equal(dv.getUint32(shbBytes.length - 4, true), shbBytes.length);
  // Options after the 24-byte fixed part: shb_userappl "toxtcp", then opt_endofopt.
  assert.equal(dv.getUint16(24, true), 4);
  assert.equal(
    new TextDecoder().decode(shbBytes.subarray(28, 28 + dv.getUint16(26, true))),
    "toxtcp",
  );
  assert.deepEqual([...shbBytes.subarray(36, 40)], [0, 0, 0, 0]);

  const times: Timestamp[] = [
    { sec: 0, nsec: 0 },
    { sec: 1_700_000_000, nsec: 999_999_999 },
    { sec: 1_700_000_001, nsec: 1 },
    { sec: 0xffffffff, nsec: 999_999_999 },
    { sec: 4_000_000_000, nsec: 123_456_789 },
  ];
  const f = new Bytes()
    .add(shbBytes)
    .add(interfaceDescriptionBlock(1, { name: "toxtcp relays", tsresolNs: true }))
    .add(interfaceDescriptionBlock(101, { snaplen: 100, name: "µs" }));
  for (let i = 0; i < times.length; i++) {
    f.add(enhancedPacketBlock(0, times[i], pattern(i * 3 + 1, i)));
    f.add(enhancedPacketBlock(1, times[i], pattern(i, i), 1000 + i, false));
  }
  f.add(decryptionSecretsBlock(0x544f584b, enc.encode("keys!")));
  for (const p of f.parts) {
    assert.equal(p.length % 4, 0);
    assert.equal(new DataView(p.buffer).getUint32(p.length - 4, true), p.length);
  }
  const recs = readAll(f.bytes());
  const ps = packets(recs);
  assert.equal(ps.length, times.length * 2);
  for (let i = 0; i < times.length; i++) {
    const [a, b] = [ps[2 * i], ps[2 * i + 1]];
    assert.deepEqual(a.ts, times[i]);
    assert.deepEqual(b.ts, { sec: times[i].sec, nsec: Math.floor(times[i].nsec / 1000) * 1000 });
    assert.deepEqual([...a.data], [...pattern(i * 3 + 1, i)]);
    assert.equal(a.linkType, 1);
    assert.equal(b.linkType, 101);
    assert.equal(b.originalLength, 1000 + i);
  }
  const s = recs.at(-1);
  assert.ok(s?.kind === "secrets");
  assert.equal(s.secrets.secretsType, 0x544f584b);
  assert.equal(new TextDecoder().decode(s.secrets.data), "keys!");
});

Deno.test("readCaptureFile: chunks, progress, early stop closes the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "toxtcp-pcap-test-" });
  try {
    const { f } = ngSample(true);
    const bytes = f.bytes();
    const path = `${dir}/a.pcapng`;
    await Deno.writeFile(path, bytes);
    const progress: [number, number][] = [];
    const recs: CaptureRecord[] = [];
    for await (
      const r of readCaptureFile(path, {
        chunkSize: 37,
        onProgress: (a, b) => progress.push([a, b]),
      })
    ) recs.push(r);
    assert.deepEqual(plain(recs), plain(readAll(bytes)));
    assert.deepEqual(progress.at(-1), [bytes.length, bytes.length]);
    assert.ok(progress.length >= Math.floor(bytes.length / 37));
    // Stopping early: the generator's finally closes the file (the sanitizer would see a leak).
    for await (const r of readCaptureFile(path)) {
      assert.equal(r.kind, "packet");
      break;
    }
    // A damaged file: the records, then the error, then the end.
    await Deno.writeFile(`${dir}/cut.pcapng`, bytes.subarray(0, bytes.length - 3));
    const cut: CaptureRecord[] = [];
    for await (const r of readCaptureFile(`${dir}/cut.pcapng`, { chunkSize: 64 })) cut.push(r);
    assert.equal(errorOf(cut).code, "truncated");
    assert.equal(cut.length, 6);
    await assert.rejects(async () => {
      for await (const _ of readCaptureFile(`${dir}/missing.pcap`)) { /* nothing */ }
    }, Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// tshark: the daemon's capture as it writes it

function hasTshark(): boolean {
  try {
    const r = new Deno.Command("which", { args: ["tshark"], stdout: "null", stderr: "null" })
      .outputSync();
    return r.success;
  } catch {
    return false;
  }
}

/** tshark prints this on every run as root (a container); it says nothing about the file. */
function tsharkComplaints(stderr: string): string {
  return stderr.split("\n").filter((l) => l.trim() !== "" && !/^Running as user "root"/.test(l))
    .join("\n");
}

/** `-z follow,tcp,raw,N` output → the chunks in order, [0 = client→server | 1, hex]. */
function followChunks(out: string): [number, string][] {
  const lines = out.split("\n");
  const start = lines.findIndex((l) => l.startsWith("Node 1:"));
  assert.ok(start >= 0, out);
  const chunks: [number, string][] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith("=====")) break;
    if (l.trim() === "") continue;
    const dir = l.startsWith("\t") ? 1 : 0;
    const hex = l.trim();
    const last = chunks.at(-1);
    if (last !== undefined && last[0] === dir) last[1] += hex;
    else chunks.push([dir, hex]);
  }
  return chunks;
}

const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

const TSHARK = hasTshark();
const TSHARK_NAME = "tshark opens the daemon-style capture cleanly and follows both streams";
Deno.test({
  name: TSHARK || Deno.env.get("CI") === "true"
    ? TSHARK_NAME
    : `${TSHARK_NAME} [skipped: tshark not on PATH (apt-get install tshark)]`,
  ignore: !TSHARK && Deno.env.get("CI") !== "true",
  async fn() {
    if (!TSHARK) throw new Error("tshark is not on PATH; CI=true, so this is a failure");
    const dir = await Deno.makeTempDir({ prefix: "toxtcp-tshark-test-" });
    try {
      const rand = rng(42);
      const blob = (n: number) => new Uint8Array(n).map(() => Math.floor(rand() * 256));
      const v4 = new SyntheticTcpStream({
        client: { addr: "127.0.0.1", port: 41000 },
        server: { addr: "127.0.0.1", port: 33445 },
        clientIsn: 0xfffffff0, // wraps during the stream
        serverIsn: 12345,
      });
      const v6 = new SyntheticTcpStream({
        client: { addr: "2001:db8::1", port: 41001 },
        server: { addr: "2001:db8:0:0:1::2", port: 3389 },
        mss: 1440,
      });
      const f = new Bytes()
        .add(sectionHeaderBlock())
        .add(interfaceDescriptionBlock(1, { name: "toxtcp relays", tsresolNs: true }));
      let t = 0;
      const write = (frames: Uint8Array[]) => {
        for (const fr of frames) {
          f.add(
            enhancedPacketBlock(0, { sec: 1_700_000_000 + Math.floor(t / 1e9), nsec: t % 1e9 }, fr),
          );
          t += 1_234_567;
        }
      };
      const exchanges: { v4: [number, Uint8Array][]; v6: [number, Uint8Array][] } = {
        v4: [],
        v6: [],
      };
      write(v4.open());
      write(v6.open());
      f.add(decryptionSecretsBlock(0x544f584b, enc.encode("TCP_SESSION 00 11 22 33 44\n")));
      const plan: ["v4" | "v6", "client" | "server", number][] = [
        ["v4", "client", 128],
        ["v6", "client", 5000],
        ["v4", "server", 96],
        ["v4", "client", 70_000],
        ["v6", "server", 3],
        ["v4", "server", 150_000],
        ["v4", "server", 10],
        ["v6", "client", 100],
        ["v4", "client", 1],
      ];
      for (const [which, from, n] of plan) {
        const bytes = blob(n);
        write((which === "v4" ? v4 : v6).data(from, bytes));
        const list = exchanges[which];
        const dirN = from === "client" ? 0 : 1;
        const last = list.at(-1);
        if (last !== undefined && last[0] === dirN) last[1] = concat(last[1], bytes);
        else list.push([dirN, bytes]);
      }
      write(v4.close("client"));
      write(v6.close("server"));
      const path = `${dir}/own.pcapng`;
      await Deno.writeFile(path, f.bytes());

      const run = async (...args: string[]) => {
        const out = await new Deno.Command("tshark", { args, stdin: "null" }).output();
        const dec = new TextDecoder();
        return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
      };
      const checks = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"];
      const plainRun = await run("-r", path, ...checks);
      assert.equal(plainRun.code, 0, plainRun.stderr);
      assert.equal(tsharkComplaints(plainRun.stderr), "", "nothing on stderr");
      assert.doesNotMatch(plainRun.stdout, /Malformed|[Cc]hecksum|Bad|\[TCP (?!segment of a)/);
      const expert = await run("-r", path, "-q", "-z", "expert,warn", ...checks);
      assert.equal(expert.code, 0);
      assert.doesNotMatch(expert.stdout, /Warns|Errors/, expert.stdout);

      for (const [index, which] of [[0, "v4"], [1, "v6"]] as const) {
        const follow = await run("-r", path, "-q", "-z", `follow,tcp,raw,${index}`);
        assert.equal(follow.code, 0, follow.stderr);
        assert.equal(tsharkComplaints(follow.stderr), "");
        const want = exchanges[which].map(([d, b]) => [d, toHex(b)]);
        assert.deepEqual(followChunks(follow.stdout), want, `stream ${index} (${which})`);
      }
      // And our own reader agrees on the count.
      const ps = packets(readAll(f.bytes()));
      assert.equal(ps.length, f.parts.length - 3);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

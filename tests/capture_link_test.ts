/**
 * daemon/core/capture/link.ts: frames of every link type we read, built here byte by byte, down to
 * the TCP segment; VLAN tags, IPv4 options, IPv6 extension headers, fragments, non-TCP and
 * garbage (never a throw); RFC 5952 address text. And the frames tcp_synth.ts makes decode to
 * the numbers they claim, with checksums that verify.
 */
import assert from "node:assert/strict";
import {
  decodeLinkFrame,
  formatIPv6,
  type LinkDecodeResult,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_LOOP,
  LINKTYPE_NULL,
  LINKTYPE_RAW,
} from "../daemon/core/capture/link.ts";
import { parseAddress, SyntheticTcpStream } from "../daemon/core/capture/tcp_synth.ts";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
} from "../daemon/core/capture/types.ts";
import { concatBytes as concat } from "../daemon/core/common/codec.ts";

const u16 = (v: number) => Uint8Array.of(v >> 8, v & 0xff);
const enc = new TextEncoder();

function tcpHeader(o: {
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  options?: Uint8Array;
} = {}): Uint8Array {
  const opts = o.options ?? new Uint8Array(0);
  const h = new Uint8Array(20 + opts.length);
  const v = new DataView(h.buffer);
  v.setUint16(0, o.sport ?? 40000);
  v.setUint16(2, o.dport ?? 33445);
  v.setUint32(4, o.seq ?? 1000);
  v.setUint32(8, o.ack ?? 2000);
  h[12] = (h.length / 4) << 4;
  h[13] = o.flags ?? (TCP_PSH | TCP_ACK);
  v.setUint16(14, o.window ?? 512);
  h.set(opts, 20);
  return h;
}

function ipv4(payload: Uint8Array, o: {
  proto?: number;
  options?: Uint8Array;
  fragment?: number;
  total?: number;
  src?: number[];
  dst?: number[];
} = {}): Uint8Array {
  const opts = o.options ?? new Uint8Array(0);
  const h = new Uint8Array(20 + opts.length);
  const v = new DataView(h.buffer);
  h[0] = 0x40 | (h.length / 4);
  v.setUint16(2, o.total ?? h.length + payload.length);
  v.setUint16(6, o.fragment ?? 0x4000);
  h[8] = 64;
  h[9] = o.proto ?? 6;
  h.set(o.src ?? [10, 0, 0, 1], 12);
  h.set(o.dst ?? [192, 168, 200, 254], 16);
  h.set(opts, 20);
  return concat(h, payload);
}

/** IPv6 with the extension headers given as [type, bytes] (bytes with their next-header 0). */
function ipv6(payload: Uint8Array, o: {
  next?: number;
  ext?: [number, Uint8Array][];
  src?: Uint8Array;
  dst?: Uint8Array;
  plen?: number;
} = {}): Uint8Array {
  const ext = o.ext ?? [];
  const h = new Uint8Array(40);
  const v = new DataView(h.buffer);
  h[0] = 0x60;
  const chain = ext.map(([, b], i) => {
    const c = b.slice();
    c[0] = i + 1 < ext.length ? ext[i + 1][0] : o.next ?? 6;
    return c;
  });
  const body = concat(...chain, payload);
  v.setUint16(4, o.plen ?? body.length);
  h[6] = ext.length > 0 ? ext[0][0] : o.next ?? 6;
  h[7] = 64;
  h.set(o.src ?? parseAddress("2001:db8::1"), 8);
  h.set(o.dst ?? parseAddress("2001:db8::2"), 24);
  return concat(h, body);
}

/** dst, src, then for each tag its TPID and TCI, then the type, then the payload. */
function buildEthernet(type: number, payload: Uint8Array, tags: number[]): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array(12).fill(0xaa)];
  tags.forEach((tpid, i) => parts.push(u16(tpid), u16(100 + i)));
  parts.push(u16(type), payload);
  return concat(...parts);
}

function ok(r: LinkDecodeResult): TcpSegment {
  if (!r.ok) throw new Error(`expected a segment, got: ${r.reason}`);
  return r.segment;
}

function refused(r: LinkDecodeResult): { reason: string; notTcp?: boolean } {
  assert.equal(r.ok, false);
  return r as { reason: string; notTcp?: boolean };
}

const PAYLOAD = enc.encode("hello, relay");
const TCP = concat(tcpHeader(), PAYLOAD);

function checkDefault(s: TcpSegment, v: 4 | 6): void {
  assert.equal(s.ipVersion, v);
  assert.deepEqual(s.src, { addr: v === 4 ? "10.0.0.1" : "2001:db8::1", port: 40000 });
  assert.deepEqual(s.dst, { addr: v === 4 ? "192.168.200.254" : "2001:db8::2", port: 33445 });
  assert.equal(s.seq, 1000);
  assert.equal(s.ack, 2000);
  assert.equal(s.flags, TCP_PSH | TCP_ACK);
  assert.equal(s.window, 512);
  assert.deepEqual([...s.payload], [...PAYLOAD]);
  assert.equal(s.payloadLength, PAYLOAD.length);
}

Deno.test("every link type carries IPv4 and IPv6 TCP", () => {
  const v4 = ipv4(TCP);
  const v6 = ipv6(TCP);
  const le32 = (n: number) => Uint8Array.of(n, 0, 0, 0);
  const be32 = (n: number) => Uint8Array.of(0, 0, 0, n);
  const sll = (proto: number) => concat(new Uint8Array(14).fill(3), u16(proto));
  const sll2 = (proto: number) => concat(u16(proto), new Uint8Array(18).fill(4));
  const cases: [string, number, Uint8Array, 4 | 6][] = [
    ["ethernet v4", LINKTYPE_ETHERNET, buildEthernet(0x0800, v4, []), 4],
    ["ethernet v6", LINKTYPE_ETHERNET, buildEthernet(0x86dd, v6, []), 6],
    ["sll v4", LINKTYPE_LINUX_SLL, concat(sll(0x0800), v4), 4],
    ["sll v6", LINKTYPE_LINUX_SLL, concat(sll(0x86dd), v6), 6],
    ["sll2 v4", LINKTYPE_LINUX_SLL2, concat(sll2(0x0800), v4), 4],
    ["sll2 v6", LINKTYPE_LINUX_SLL2, concat(sll2(0x86dd), v6), 6],
    ["raw 101 v4", LINKTYPE_RAW, v4, 4],
    ["raw 101 v6", LINKTYPE_RAW, v6, 6],
    ["raw 12 v4", 12, v4, 4],
    ["raw 12 v6", 12, v6, 6],
    ["raw 14 v6", 14, v6, 6],
    ["ipv4 228", LINKTYPE_IPV4, v4, 4],
    ["ipv6 229", LINKTYPE_IPV6, v6, 6],
    ["null le v4", LINKTYPE_NULL, concat(le32(2), v4), 4],
    ["null be v4", LINKTYPE_NULL, concat(be32(2), v4), 4],
    ["null linux v6", LINKTYPE_NULL, concat(le32(10), v6), 6],
    ["null bsd v6", LINKTYPE_NULL, concat(le32(24), v6), 6],
    ["null freebsd v6", LINKTYPE_NULL, concat(be32(28), v6), 6],
    ["null darwin v6", LINKTYPE_NULL, concat(le32(30), v6), 6],
    ["loop v4", LINKTYPE_LOOP, concat(be32(2), v4), 4],
    ["loop v6", LINKTYPE_LOOP, concat(be32(30), v6), 6],
  ];
  for (const [what, lt, frame, v] of cases) {
    const r = decodeLinkFrame(lt, frame);
    assert.ok(r.ok, `${what}: ${r.ok ? "" : r.reason}`);
    checkDefault(r.segment, v);
  }
  // The wrong IP version for the link type, and families that are not IP.
  assert.equal(decodeLinkFrame(LINKTYPE_IPV4, v6).ok, false);
  assert.equal(decodeLinkFrame(LINKTYPE_IPV6, v4).ok, false);
  assert.equal(refused(decodeLinkFrame(LINKTYPE_NULL, concat(le32(7), v4))).notTcp, true);
  assert.equal(refused(decodeLinkFrame(LINKTYPE_LOOP, concat(le32(2), v4))).notTcp, true);
  assert.match(refused(decodeLinkFrame(147, v4)).reason, /unsupported link type 147/);
});

Deno.test("ethernet: 802.1Q, 802.1ad and stacked VLAN tags; padding after the packet", () => {
  const v4 = ipv4(TCP);
  for (const tags of [[0x8100], [0x88a8, 0x8100], [0x9100, 0x8100], [0x8100, 0x8100, 0x8100]]) {
    const frame = concat(
      new Uint8Array(12),
      ...tags.flatMap((t) => [u16(t), u16(5)]),
      u16(0x0800),
      v4,
    );
    checkDefault(ok(decodeLinkFrame(LINKTYPE_ETHERNET, frame)), 4);
  }
  // VLAN inside Linux cooked capture.
  const sll = concat(new Uint8Array(14), u16(0x8100), u16(7), u16(0x86dd), ipv6(TCP));
  checkDefault(ok(decodeLinkFrame(LINKTYPE_LINUX_SLL, sll)), 6);
  // Minimum-size frame padding and a trailing FCS: the IP total length decides.
  const tiny = concat(tcpHeader({ flags: TCP_ACK }));
  const padded = concat(
    buildEthernet(0x0800, ipv4(tiny), []),
    new Uint8Array(6),
    Uint8Array.of(1, 2, 3, 4),
  );
  const s = ok(decodeLinkFrame(LINKTYPE_ETHERNET, padded));
  assert.equal(s.payload.length, 0);
  assert.equal(s.payloadLength, 0);
  assert.equal(s.flags, TCP_ACK);
  // A tag cut short.
  const cut = concat(new Uint8Array(12), u16(0x8100), u16(5));
  assert.match(refused(decodeLinkFrame(LINKTYPE_ETHERNET, cut)).reason, /truncated vlan/);
});

Deno.test("ipv4: options, fragments, total length, snapped payloads, TSO", () => {
  // 12 bytes of options: IHL 8.
  const opts = Uint8Array.of(0x94, 4, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0);
  checkDefault(ok(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { options: opts }))), 4);
  // More fragments (first fragment), an offset (later fragments), both.
  for (const frag of [0x2000, 0x0001, 0x00b9, 0x2010, 0x6000]) {
    const r = refused(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { fragment: frag })));
    assert.equal(r.reason, "ip fragment", `fragment field 0x${frag.toString(16)}`);
    assert.equal(r.notTcp, undefined);
  }
  // DF alone or nothing: not a fragment.
  ok(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { fragment: 0 })));
  // Snapped: the frame ends 5 bytes into the payload, the IP header still says 12.
  const full = ipv4(TCP);
  const snapped = ok(decodeLinkFrame(LINKTYPE_RAW, full.subarray(0, 20 + 20 + 5)));
  assert.deepEqual([...snapped.payload], [...PAYLOAD.subarray(0, 5)]);
  assert.equal(snapped.payloadLength, PAYLOAD.length);
  // Total length 0: a segmentation-offloaded send captured before the NIC split it.
  const tso = ok(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { total: 0 })));
  assert.equal(tso.payloadLength, PAYLOAD.length);
  // Nonsense lengths.
  assert.match(
    refused(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { total: 19 }))).reason,
    /total length/,
  );
  assert.match(
    refused(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { total: 30 }))).reason,
    /tcp header/,
  );
  const badIhl = ipv4(TCP);
  badIhl[0] = 0x44;
  assert.match(refused(decodeLinkFrame(LINKTYPE_RAW, badIhl)).reason, /header length/);
  const longIhl = ipv4(new Uint8Array(0));
  longIhl[0] = 0x4f;
  assert.match(refused(decodeLinkFrame(LINKTYPE_RAW, longIhl)).reason, /truncated ipv4/);
});

Deno.test("ipv6: extension headers, fragments, no next header", () => {
  const ext8 = () => new Uint8Array(8);
  const ext16 = () => {
    const b = new Uint8Array(16);
    b[1] = 1;
    return b;
  };
  const frag = (offM: number) => {
    const b = new Uint8Array(8);
    b[2] = offM >> 8;
    b[3] = offM & 0xff;
    return b;
  };
  const ah = () => {
    const b = new Uint8Array(12);
    b[1] = 1; // (1 + 2) * 4 = 12 bytes
    return b;
  };
  const chains: [string, [number, Uint8Array][]][] = [
    ["hop-by-hop", [[0, ext8()]]],
    ["routing", [[43, ext16()]]],
    ["destination options", [[60, ext8()]]],
    ["hop-by-hop, routing, destination", [[0, ext8()], [43, ext16()], [60, ext16()]]],
    ["authentication header", [[51, ah()]]],
    ["atomic fragment", [[44, frag(0)]]],
  ];
  for (const [what, ext] of chains) {
    const r = decodeLinkFrame(LINKTYPE_RAW, ipv6(TCP, { ext }));
    assert.ok(r.ok, `${what}: ${r.ok ? "" : r.reason}`);
    checkDefault(r.segment, 6);
  }
  for (const offM of [1, 8, 9, 0x1238]) {
    const r = refused(
      decodeLinkFrame(LINKTYPE_RAW, ipv6(TCP, { ext: [[0, ext8()], [44, frag(offM)]] })),
    );
    assert.equal(r.reason, "ip fragment");
  }
  const none = refused(decodeLinkFrame(LINKTYPE_RAW, ipv6(new Uint8Array(0), { next: 59 })));
  assert.equal(none.notTcp, true);
  const udp = refused(
    decodeLinkFrame(LINKTYPE_RAW, ipv6(new Uint8Array(8), { next: 17, ext: [[60, ext8()]] })),
  );
  assert.equal(udp.notTcp, true);
  assert.match(udp.reason, /udp/);
  // An extension header longer than the packet.
  const long = ext8();
  long[1] = 200;
  assert.match(
    refused(decodeLinkFrame(LINKTYPE_RAW, ipv6(TCP, { ext: [[0, long]] }))).reason,
    /extension header/,
  );
  // Snapped inside the extension headers.
  const withExt = ipv6(TCP, { ext: [[0, ext8()], [60, ext8()]] });
  assert.match(refused(decodeLinkFrame(LINKTYPE_RAW, withExt.subarray(0, 49))).reason, /truncated/);
});

Deno.test("tcp: data offset, flags, unsigned seq/ack, header problems", () => {
  const mss = Uint8Array.of(2, 4, 0x05, 0xb4, 1, 1, 4, 2); // MSS 1460, NOP, NOP, SACK-permitted
  const hdr = tcpHeader({
    seq: 0xfffffffe,
    ack: 0x80000000,
    flags: TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST | 0x80,
    window: 65535,
    options: mss,
    sport: 65535,
    dport: 1,
  });
  const s = ok(decodeLinkFrame(LINKTYPE_RAW, ipv4(concat(hdr, PAYLOAD))));
  assert.equal(s.seq, 0xfffffffe);
  assert.equal(s.ack, 0x80000000);
  assert.equal(s.flags, TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST | 0x80);
  assert.equal(s.window, 65535);
  assert.equal(s.src.port, 65535);
  assert.equal(s.dst.port, 1);
  assert.deepEqual([...s.payload], [...PAYLOAD]);
  const badOff = tcpHeader();
  badOff[12] = 0x40;
  assert.match(refused(decodeLinkFrame(LINKTYPE_RAW, ipv4(badOff))).reason, /data offset/);
  const past = tcpHeader();
  past[12] = 0xf0; // 60 bytes of header in a 20-byte segment
  assert.match(refused(decodeLinkFrame(LINKTYPE_RAW, ipv4(past))).reason, /does not fit/);
  // Snapped inside the options: the header is not all there.
  const opt = ipv4(concat(tcpHeader({ options: mss }), PAYLOAD));
  assert.match(
    refused(decodeLinkFrame(LINKTYPE_RAW, opt.subarray(0, 20 + 22))).reason,
    /truncated tcp/,
  );
});

Deno.test("not TCP: ARP, UDP, ICMP, 802.3, IPX", () => {
  const cases: [number, Uint8Array, RegExp][] = [
    [LINKTYPE_ETHERNET, buildEthernet(0x0806, new Uint8Array(28), []), /ethertype 0x0806/],
    [LINKTYPE_ETHERNET, buildEthernet(0x0800, ipv4(new Uint8Array(8), { proto: 17 }), []), /udp/],
    [LINKTYPE_ETHERNET, buildEthernet(0x0800, ipv4(new Uint8Array(8), { proto: 1 }), []), /icmp/],
    [LINKTYPE_ETHERNET, buildEthernet(0x86dd, ipv6(new Uint8Array(8), { next: 58 }), []), /icmpv6/],
    [LINKTYPE_ETHERNET, buildEthernet(0x0040, new Uint8Array(46), []), /802\.3/],
    [LINKTYPE_ETHERNET, buildEthernet(0x8137, new Uint8Array(46), [0x8100]), /ethertype 0x8137/],
    [LINKTYPE_RAW, ipv4(new Uint8Array(8), { proto: 17, fragment: 0x2000 }), /udp/],
  ];
  for (const [lt, frame, reason] of cases) {
    const r = refused(decodeLinkFrame(lt, frame));
    assert.equal(r.notTcp, true, r.reason);
    assert.match(r.reason, reason);
  }
});

Deno.test("short and garbage frames are refused, never thrown", () => {
  const frame = buildEthernet(0x0800, ipv4(TCP), []);
  const types = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 9999];
  for (const lt of types) {
    for (let n = 0; n < frame.length; n++) {
      const r = decodeLinkFrame(lt, frame.subarray(0, n));
      if (r.ok) assert.ok(r.segment.payload.length <= r.segment.payloadLength);
      else assert.ok(r.reason.length > 0);
    }
  }
  // Random bytes, and random bytes behind valid headers.
  let seed = 99;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 16;
  };
  const prefixes = [
    new Uint8Array(0),
    buildEthernet(0x0800, new Uint8Array(0), []),
    buildEthernet(0x86dd, new Uint8Array(0), []),
    Uint8Array.of(0x45),
    Uint8Array.of(0x60),
  ];
  for (let i = 0; i < 20_000; i++) {
    const junk = new Uint8Array(rand() % 120).map(() => rand() & 0xff);
    const prefix = prefixes[i % prefixes.length];
    const f = concat(prefix, junk);
    // Bias the random IP headers toward TCP so the deeper paths are reached too.
    if (f.length > 23 && f[0] >> 4 === 4) f[9] = 6;
    const r = decodeLinkFrame(types[i % types.length], f);
    if (r.ok) {
      assert.ok(r.segment.payload.length <= r.segment.payloadLength);
      assert.ok(r.segment.seq >= 0 && r.segment.ack >= 0);
    }
  }
});

Deno.test("addresses: RFC 5952 text, IPv4 dotted, cache does not mix them up", () => {
  const cases: [string, string][] = [
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"], // first of equal runs
    ["2001:0db8:0000:0001:0000:0000:0000:0001", "2001:db8:0:1::1"], // longest run
    ["2001:0db8:0000:0001:0001:0001:0001:0001", "2001:db8:0:1:1:1:1:1"], // one zero: kept
    ["0000:0000:0000:0000:0000:0000:0000:0000", "::"],
    ["0000:0000:0000:0000:0000:0000:0000:0001", "::1"],
    ["fe80:0000:0000:0000:0000:0000:0000:0000", "fe80::"],
    ["2001:0DB8:ABCD:0012:0000:0000:0000:0000", "2001:db8:abcd:12::"],
    ["0000:0000:0000:0000:0000:ffff:c000:0280", "::ffff:192.0.2.128"],
    ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ["0001:0000:0000:0002:0000:0000:0000:0003", "1:0:0:2::3"],
  ];
  const hex = (s: string) =>
    Uint8Array.from(s.replaceAll(":", "").match(/../g)!.map((x) => parseInt(x, 16)));
  for (const [full, want] of cases) {
    const b = hex(full);
    assert.equal(formatIPv6(b), want, full);
    assert.equal(formatIPv6(concat(Uint8Array.of(9, 9), b), 2), want, `${full} at an offset`);
    // Through the decoder (and its cache), twice.
    for (let k = 0; k < 2; k++) {
      const s = ok(decodeLinkFrame(LINKTYPE_RAW, ipv6(TCP, { src: b, dst: hex(cases[0][0]) })));
      assert.equal(s.src.addr, want);
      assert.equal(s.dst.addr, "2001:db8::1");
    }
  }
  for (const a of [[0, 0, 0, 0], [255, 255, 255, 255], [127, 0, 0, 1], [1, 2, 3, 4]]) {
    const s = ok(
      decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { src: a, dst: [a[3], a[2], a[1], a[0]] })),
    );
    assert.equal(s.src.addr, a.join("."));
    assert.equal(s.dst.addr, [...a].reverse().join("."));
  }
  // Many distinct addresses: the cache fills, clears, and stays right.
  for (let i = 0; i < 10_000; i += 7) {
    const a = [10, (i >> 16) & 255, (i >> 8) & 255, i & 255];
    const b6 = new Uint8Array(16);
    b6[0] = 0x20;
    b6[14] = i >> 8;
    b6[15] = i & 255;
    assert.equal(ok(decodeLinkFrame(LINKTYPE_RAW, ipv4(TCP, { src: a }))).src.addr, a.join("."));
    const six = ok(decodeLinkFrame(LINKTYPE_RAW, ipv6(TCP, { src: b6 }))).src.addr;
    assert.equal(six, formatIPv6(b6));
  }
});

/** Internet checksum over the pseudo-header + TCP segment: 0 (0xffff folded) when right. */
function verifyChecksums(frame: Uint8Array): void {
  const sum = (b: Uint8Array, acc = 0) => {
    for (let i = 0; i < b.length; i += 2) acc += (b[i] << 8) | (b[i + 1] ?? 0);
    while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
    return acc;
  };
  const ip = frame.subarray(14);
  if (ip[0] >> 4 === 4) {
    assert.equal(sum(ip.subarray(0, 20)), 0xffff, "ipv4 header checksum");
    const tcp = ip.subarray(20);
    const pseudo = concat(ip.subarray(12, 20), Uint8Array.of(0, 6), u16(tcp.length));
    assert.equal(sum(tcp, sum(pseudo)), 0xffff, "tcp checksum (v4)");
  } else {
    const tcp = ip.subarray(40);
    const pseudo = concat(
      ip.subarray(8, 40),
      Uint8Array.of(0, 0),
      u16(tcp.length),
      Uint8Array.of(0, 0, 0, 6),
    );
    assert.equal(sum(tcp, sum(pseudo)), 0xffff, "tcp checksum (v6)");
  }
}

Deno.test("tcp_synth: handshake, data, close and reset decode to consistent numbers", () => {
  for (
    const [c, s] of [["10.1.2.3", "198.51.100.7"], ["::1", "2001:db8::77"], ["127.0.0.1", "::1"]]
  ) {
    const st = new SyntheticTcpStream({
      client: { addr: c, port: 50000 },
      server: { addr: s, port: 33445 },
      clientIsn: 0xfffffff0,
      serverIsn: 100,
      mss: 1000,
    });
    const dec = (fs: Uint8Array[]) =>
      fs.map((f) => {
        verifyChecksums(f);
        const seg = ok(decodeLinkFrame(LINKTYPE_ETHERNET, f));
        // Locally administered MACs: ...:01 for the client, ...:02 for the server.
        const [src, dst] = seg.src.port === 50000 ? [1, 2] : [2, 1];
        assert.deepEqual([...f.subarray(0, 12)], [2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src]);
        return seg;
      });
    const hs = dec(st.open());
    assert.deepEqual(hs.map((x) => x.flags), [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK]);
    assert.deepEqual(hs.map((x) => [x.seq, x.ack]), [[0xfffffff0, 0], [100, 0xfffffff1], [
      0xfffffff1,
      101,
    ]]);
    const v = c.includes(":") || s.includes(":") ? 6 : 4;
    assert.ok(hs.every((x) => x.ipVersion === v));
    assert.equal(hs[0].src.port, 50000);
    assert.equal(hs[1].src.port, 33445);
    if (c === "127.0.0.1" && v === 6) assert.equal(hs[0].src.addr, "::ffff:127.0.0.1");
    assert.deepEqual(st.open(), [], "open() twice says nothing more");

    const first = new Uint8Array(2500).map((_, i) => i);
    const d1 = dec(st.data("client", first));
    assert.deepEqual(d1.map((x) => x.payload.length), [1000, 1000, 500]);
    assert.deepEqual(d1.map((x) => x.flags), [TCP_ACK, TCP_ACK, TCP_PSH | TCP_ACK]);
    // Sequence numbers wrap past 2^32.
    assert.deepEqual(d1.map((x) => x.seq), [
      0xfffffff1,
      (0xfffffff1 + 1000) >>> 0,
      (0xfffffff1 + 2000) >>> 0,
    ]);
    assert.ok(d1.every((x) => x.ack === 101));
    assert.deepEqual([...concat(...d1.map((x) => x.payload))], [...first]);
    const d2 = dec(st.data("server", enc.encode("pong")));
    assert.equal(d2.length, 1);
    assert.deepEqual([d2[0].seq, d2[0].ack, d2[0].flags], [
      101,
      (0xfffffff1 + 2500) >>> 0,
      TCP_PSH | TCP_ACK,
    ]);
    assert.deepEqual(st.data("client", new Uint8Array(0)), []);

    const end = dec(st.close("server"));
    assert.deepEqual(end.map((x) => x.flags), [TCP_FIN | TCP_ACK, TCP_FIN | TCP_ACK, TCP_ACK]);
    const cNext = (0xfffffff1 + 2500) >>> 0;
    assert.deepEqual(end.map((x) => [x.src.port, x.seq, x.ack]), [
      [33445, 105, cNext],
      [50000, cNext, 106],
      [33445, 106, (cNext + 1) >>> 0],
    ]);
    assert.deepEqual(st.data("client", PAYLOAD), [], "nothing after the close");
    assert.deepEqual(st.reset("client"), []);
  }
});

Deno.test("tcp_synth: the window is respected with pure ACKs; reset; MSS limits", () => {
  const st = new SyntheticTcpStream({
    client: { addr: "127.0.0.1", port: 1 },
    server: { addr: "127.0.0.1", port: 2 },
    clientIsn: 0,
    serverIsn: 0,
  });
  // data() before open(): the handshake comes first.
  const frames = st.data("client", new Uint8Array(300_000)).map((f) => ok(decodeLinkFrame(1, f)));
  assert.deepEqual(frames.slice(0, 3).map((x) => x.flags), [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK]);
  let inFlight = 0;
  let total = 0;
  for (const x of frames.slice(3)) {
    if (x.src.port === 1) {
      assert.ok(x.payload.length <= 65483);
      inFlight += x.payload.length;
      total += x.payload.length;
      assert.ok(inFlight < 65535, "never fills the window");
    } else {
      assert.equal(x.flags, TCP_ACK);
      assert.equal(x.payload.length, 0);
      assert.equal(x.ack, 1 + total, "the ACK covers everything sent");
      inFlight = 0;
    }
  }
  assert.equal(total, 300_000);
  const rst = st.reset("server").map((f) => ok(decodeLinkFrame(1, f)));
  assert.equal(rst.length, 1);
  assert.equal(rst[0].flags, TCP_RST | TCP_ACK);
  assert.equal(rst[0].ack, 1 + 300_000);
  assert.deepEqual(st.close("client"), []);

  assert.throws(
    () =>
      new SyntheticTcpStream({
        client: { addr: "1.1.1.1", port: 1 },
        server: { addr: "2.2.2.2", port: 2 },
        mss: 65496,
      }),
    RangeError,
  );
  assert.throws(
    () =>
      new SyntheticTcpStream({
        client: { addr: "1.1.1.1", port: 1 },
        server: { addr: "2.2.2.2", port: 2 },
        mss: 0,
      }),
    RangeError,
  );
  const big6 = new SyntheticTcpStream({
    client: { addr: "::1", port: 1 },
    server: { addr: "::2", port: 2 },
    mss: 65515,
  });
  const seg = ok(decodeLinkFrame(1, big6.data("client", new Uint8Array(65515)).at(-1)!));
  assert.equal(seg.payloadLength, 65515);
});

Deno.test("tcp_synth: address parsing", () => {
  const cases: [string, string][] = [
    ["127.0.0.1", "7f000001"],
    ["::1", "00000000000000000000000000000001"],
    ["[::1]", "00000000000000000000000000000001"],
    ["fe80::1%eth0", "fe800000000000000000000000000001"],
    ["::ffff:192.0.2.1", "00000000000000000000ffffc0000201"],
    ["2001:db8:1:2:3:4:5:6", "20010db8000100020003000400050006"],
    ["2001:db8::", "20010db8000000000000000000000000"],
    ["localhost", "00000000"],
    ["1.2.3.256", "00000000"],
    ["1::2::3", "00000000000000000000000000000000"],
    ["1:2:3:4:5:6:7:8:9", "00000000000000000000000000000000"],
  ];
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  for (const [text, want] of cases) assert.equal(hex(parseAddress(text)), want, text);
});

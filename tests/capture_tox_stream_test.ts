/**
 * daemon/core/capture/tox_stream.ts: real relay streams built with the real codecs (handshake,
 * frames, relay packets, net_crypto data packets, friend packets), fed as StreamEvents cut
 * anywhere, decoded without keys, with TCP_SESSION keys and with NET_CRYPTO keys; proxies,
 * wrong keys, gaps, non-Tox streams and garbage.
 */
import assert from "node:assert/strict";
import {
  incrementNonce,
  type KeyPair,
  newKeyPair,
  type RandomBytes,
  toHex,
} from "../daemon/core/common/crypto.ts";
import {
  encodeFriendPacket,
  type FriendPacket,
} from "../daemon/core/friend_connection/friend_packets.ts";
import {
  KeyStore,
  type NetCryptoKeys,
  type TcpSessionKeys,
} from "../daemon/core/capture/keylog.ts";
import { ToxStreamDecoder } from "../daemon/core/capture/tox_stream.ts";
import type { StreamSummary } from "../daemon/core/capture/tox_stream/stream_state.ts";
import { infoOf, protocolOf } from "../daemon/core/capture/format.ts";
import { parseFilter } from "../daemon/core/capture/filter.ts";
import type {
  FriendLayer,
  Layer,
  NetCryptoLayer,
  OnionLayer,
  ProxyLayer,
  RelayLayer,
  TcpFrameLayer,
  TcpHandshakeLayer,
  ToxNotice,
  ToxOutput,
  ToxRecord,
} from "../daemon/core/capture/tox_records.ts";
import {
  type Direction,
  type StreamEvent,
  type StreamInfo,
  type Timestamp,
  timestampFromMs,
} from "../daemon/core/capture/types.ts";
import {
  encodeCookieRequest,
  encodeDataPlain,
  encodeRequestPacket,
  sealDataPacket,
} from "../daemon/core/net_crypto/packets.ts";
import { sealFrame } from "../daemon/core/tcp_common/framing.ts";
import {
  acceptClientHandshake,
  completeClientHandshake,
  createClientHandshake,
  type SecureSession,
} from "../daemon/core/tcp_common/handshake.ts";
import { encodeRelayPacket, type RelayPacket } from "../daemon/core/tcp_common/packets.ts";
import {
  createOnionPath,
  decodeDataRequest,
  encodeAnnounceRequest,
  encodeAnnounceResponse,
  encodeDataRequest,
  encodeFriendRequest,
  encodeOnionRequestTcp,
} from "../daemon/core/onion/packets.ts";
import { seededRandom } from "../tools/testbed/fake_relay.ts";

// ---- building captures ------------------------------------------------------------------------

type Op =
  | { kind: "data"; info: StreamInfo; dir: Direction; bytes: Uint8Array; ms: number }
  | { kind: "gap"; info: StreamInfo; dir: Direction; length: number; ms: number }
  | { kind: "close"; info: StreamInfo; how: "fin" | "rst" | "end"; by?: Direction; ms: number };

/** How each data op is cut into events: whole, byte by byte, or at random points. */
type Split = "whole" | "bytes" | { seed: number };

/** A capture under construction: ops on any number of streams, in capture order. */
class Trace {
  readonly ops: Op[] = [];
  ms = 1_700_000_000_000;

  stream(id: number, serverPort: number, sawSyn = true): StreamInfo {
    return {
      id,
      client: { addr: "10.0.0.2", port: 40000 + id },
      server: { addr: "10.0.0.1", port: serverPort },
      sawSyn,
      firstTs: timestampFromMs(this.ms),
    };
  }

  wait(ms: number): void {
    this.ms += ms;
  }

  data(info: StreamInfo, dir: Direction, bytes: Uint8Array): void {
    this.ms += 1;
    this.ops.push({ kind: "data", info, dir, bytes, ms: this.ms });
  }

  gap(info: StreamInfo, dir: Direction, length: number): void {
    this.ms += 1;
    this.ops.push({ kind: "gap", info, dir, length, ms: this.ms });
  }

  close(info: StreamInfo, how: "fin" | "rst" | "end", by?: Direction): void {
    this.ms += 1;
    this.ops.push(
      by === undefined
        ? { kind: "close", info, how, ms: this.ms }
        : { kind: "close", info, how, by, ms: this.ms },
    );
  }

  /** Every chunk of one op shares the op's frame number and time, as one captured frame. */
  events(split: Split = "whole"): StreamEvent[] {
    const rnd = typeof split === "object" ? seededRandom(split.seed) : null;
    const out: StreamEvent[] = [];
    const offsets = new Map<string, number>();
    const opened = new Set<number>();
    let frame = 0;
    for (const op of this.ops) {
      frame++;
      const ts = timestampFromMs(op.ms);
      const stream = op.info;
      if (!opened.has(stream.id)) {
        opened.add(stream.id);
        out.push({ kind: "open", stream, ts, frame });
      }
      if (op.kind === "close") {
        out.push(
          op.by === undefined
            ? { kind: "close", stream, how: op.how, ts, frame }
            : { kind: "close", stream, how: op.how, by: op.by, ts, frame },
        );
        continue;
      }
      const key = `${stream.id}${op.dir}`;
      let offset = offsets.get(key) ?? 0;
      if (op.kind === "gap") {
        out.push({ kind: "gap", stream, dir: op.dir, offset, length: op.length, ts, frame });
        offsets.set(key, offset + op.length);
        continue;
      }
      let at = 0;
      while (at < op.bytes.length) {
        let n = op.bytes.length - at;
        if (split === "bytes") n = 1;
        else if (rnd !== null) n = Math.min(n, 1 + (rnd(2)[0] * 256 + rnd(1)[0]) % 700);
        // A fresh copy per event: the decoder must not depend on the caller keeping bytes.
        const bytes = op.bytes.slice(at, at + n);
        out.push({ kind: "data", stream, dir: op.dir, bytes, offset, ts, frame });
        offset += n;
        at += n;
      }
      offsets.set(key, offset);
    }
    return out;
  }
}

/** One client ↔ relay connection: the real handshake, then frames sealed both ways. */
class RelayConn {
  readonly info: StreamInfo;
  client: SecureSession | null = null;
  relay: SecureSession | null = null;
  tcpKeys: TcpSessionKeys | null = null;

  constructor(
    readonly trace: Trace,
    id: number,
    readonly self: KeyPair,
    readonly relayKeys: KeyPair,
    readonly random: RandomBytes,
    port = 33445,
  ) {
    this.info = trace.stream(id, port);
  }

  handshake(): this {
    const { packet, pending } = createClientHandshake(
      this.self,
      this.relayKeys.publicKey,
      this.random,
    );
    const clientNonce = pending.sendNonce.slice();
    const accepted = acceptClientHandshake(this.relayKeys, packet, this.random)!;
    const relayNonce = accepted.session.sendNonce.slice();
    this.relay = accepted.session;
    this.client = completeClientHandshake(pending, accepted.response)!;
    this.tcpKeys = {
      kind: "tcp_session",
      handshakeNonce: packet.slice(32, 56),
      relayPublicKey: this.relayKeys.publicKey,
      sessionKey: this.client.sharedKey,
      clientNonce,
      relayNonce,
    };
    this.trace.data(this.info, "c2s", packet);
    this.trace.data(this.info, "s2c", accepted.response);
    return this;
  }

  c2s(p: RelayPacket): void {
    this.trace.data(this.info, "c2s", sealFrame(this.client!, encodeRelayPacket(p)));
  }

  s2c(p: RelayPacket): void {
    this.trace.data(this.info, "s2c", sealFrame(this.relay!, encodeRelayPacket(p)));
  }

  raw(dir: Direction, bytes: Uint8Array): void {
    this.trace.data(this.info, dir, bytes);
  }
}

/** A net_crypto session between DHT keys a and b, past its handshake. */
class NcSession {
  readonly key: Uint8Array;
  readonly aNonce: Uint8Array;
  readonly bNonce: Uint8Array;
  readonly aBase: Uint8Array;
  readonly bBase: Uint8Array;

  constructor(
    readonly a: KeyPair,
    readonly b: KeyPair,
    readonly aReal: KeyPair,
    readonly bReal: KeyPair,
    random: RandomBytes,
    aNonce?: Uint8Array,
  ) {
    this.key = random(32);
    this.aNonce = aNonce ?? random(24);
    this.bNonce = random(24);
    this.aBase = this.aNonce.slice();
    this.bBase = this.bNonce.slice();
  }

  /** The NET_CRYPTO line a (or b, with selfIsA false) would log. */
  entry(selfIsA = true): NetCryptoKeys {
    const [s, p, sr, pr, sn, pn] = selfIsA
      ? [this.a, this.b, this.aReal, this.bReal, this.aBase, this.bBase]
      : [this.b, this.a, this.bReal, this.aReal, this.bBase, this.aBase];
    return {
      kind: "net_crypto",
      selfDhtPublicKey: s.publicKey,
      peerDhtPublicKey: p.publicKey,
      selfRealPublicKey: sr.publicKey,
      peerRealPublicKey: pr.publicKey,
      sessionKey: this.key,
      selfNonce: sn,
      peerNonce: pn,
    };
  }

  fromA(packetNumber: number, bufferStart: number, p: FriendPacket): Uint8Array {
    return this.#seal(this.aNonce, packetNumber, bufferStart, encodeFriendPacket(p));
  }

  fromB(packetNumber: number, bufferStart: number, p: FriendPacket): Uint8Array {
    return this.#seal(this.bNonce, packetNumber, bufferStart, encodeFriendPacket(p));
  }

  #seal(nonce: Uint8Array, pn: number, bs: number, payload: Uint8Array): Uint8Array {
    const pkt = sealDataPacket(this.key, nonce, encodeDataPlain(bs, pn, payload));
    incrementNonce(nonce);
    return pkt.slice();
  }
}

// ---- decoding and looking at the result -------------------------------------------------------

interface Decoded {
  readonly outputs: ToxOutput[];
  readonly records: ToxRecord[];
  readonly notices: ToxNotice[];
  readonly decoder: ToxStreamDecoder;
}

function decode(
  events: readonly StreamEvent[],
  keys = new KeyStore(),
  opts: { relayPorts?: number[]; detectByShape?: boolean } = {},
): Decoded {
  const decoder = new ToxStreamDecoder({ keys, ...opts });
  const outputs: ToxOutput[] = [];
  for (const ev of events) outputs.push(...decoder.push(ev));
  return {
    outputs,
    records: outputs.flatMap((o) => o.kind === "record" ? [o.record] : []),
    notices: outputs.flatMap((o) => o.kind === "notice" ? [o.notice] : []),
    decoder,
  };
}

function inner(r: ToxRecord): Layer {
  return r.layers[r.layers.length - 1];
}

/** A record's name: its innermost layer's kind (or protocol). */
function nameOf(r: ToxRecord): string {
  const l = inner(r);
  return "kind" in l ? `${l.proto}:${l.kind}` : l.proto;
}

function layer<P extends Layer["proto"]>(r: ToxRecord, proto: P): Extract<Layer, { proto: P }> {
  const l = r.layers.find((x) => x.proto === proto);
  assert.ok(l !== undefined, `no ${proto} layer in ${JSON.stringify(r.layers)}`);
  return l as Extract<Layer, { proto: P }>;
}

function friends(d: Decoded): FriendLayer[] {
  return d.records.flatMap((r) => {
    const l = inner(r);
    return l.proto === "friend" ? [l] : [];
  });
}

function codes(d: Decoded): string[] {
  return d.notices.map((n) => n.code);
}

const hex = (k: KeyPair) => toHex(k.publicKey);
const keysOf = (seed: number) => newKeyPair(seededRandom(seed));

const A = keysOf(1); // client DHT key
const B = keysOf(2); // the friend's DHT key
const A_REAL = keysOf(3);
const B_REAL = keysOf(4);
const R1 = keysOf(5); // relays
const R2 = keysOf(6);

const PING_ID = 0x0102030405060708n;
const text = (s: string) => new TextEncoder().encode(s);

/** The scenario most tests look at: one relay stream carrying a whole friend session. */
function chatScenario(seed = 10) {
  const random = seededRandom(seed);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  const nc = new NcSession(A, B, A_REAL, B_REAL, random);
  conn.c2s({ kind: "ping", pingId: PING_ID });
  trace.wait(30);
  conn.s2c({ kind: "pong", pingId: PING_ID });
  conn.c2s({ kind: "routing_request", publicKey: B.publicKey });
  conn.s2c({ kind: "routing_response", connectionId: 16, publicKey: B.publicKey });
  const cookieRequest = encodeCookieRequest(random(32), {
    senderDhtPublicKey: A.publicKey,
    senderRealPublicKey: A_REAL.publicKey,
    echoId: random(8),
  }, random(24));
  conn.c2s({ kind: "oob_send", publicKey: B.publicKey, data: cookieRequest });
  conn.s2c({
    kind: "oob_recv",
    publicKey: B.publicKey,
    data: Uint8Array.of(0x19, ...random(160)),
  });
  conn.c2s({ kind: "oob_send", publicKey: B.publicKey, data: Uint8Array.of(0x1a, ...random(384)) });
  // The first data packet travels by OOB before the route is online (net_crypto.md §11).
  conn.s2c({
    kind: "oob_recv",
    publicKey: B.publicKey,
    data: nc.fromB(0, 0, { kind: "request", body: new Uint8Array(0) }),
  });
  conn.s2c({ kind: "connection_notification", connectionId: 16 });
  const toB = (data: Uint8Array) => conn.c2s({ kind: "data", connectionId: 16, data });
  const toA = (data: Uint8Array) => conn.s2c({ kind: "data", connectionId: 16, data });
  toA(nc.fromB(0, 0, { kind: "online" }));
  toB(nc.fromA(0, 1, { kind: "online" }));
  toA(nc.fromB(1, 1, { kind: "nickname", name: "bob" }));
  toA(nc.fromB(2, 1, { kind: "message", text: "hello alice" }));
  toA(nc.fromB(3, 1, { kind: "custom_lossless", data: Uint8Array.of(170, 0xbe, 0xef) }));
  toA(nc.fromB(4, 1, { kind: "custom_lossy", data: Uint8Array.of(200, 1, 2, 3) }));
  toB(nc.fromA(1, 4, { kind: "message", text: "hi bob" }));
  toB(nc.fromA(2, 4, { kind: "action", text: "waves" }));
  toB(nc.fromA(3, 4, { kind: "alive" }));
  // Bob lost Alice's packet 2: it has 0, 1 and 3 (buffer_start 2, Alice's buffer_end 4).
  const request = encodeRequestPacket(2, 4, (n) => n !== 2);
  toA(nc.fromB(4, 2, { kind: "request", body: request.subarray(1) }));
  toA(nc.fromB(4, 2, { kind: "typing", typing: true }));
  toA(nc.fromB(4, 2, { kind: "user_status", status: "away" }));
  toA(nc.fromB(5, 2, {
    kind: "share_relays",
    nodes: [{ transport: "tcp", host: "192.0.2.7", port: 33445, publicKey: R2.publicKey }],
  }));
  conn.c2s({ kind: "disconnect_notification", connectionId: 16 });
  trace.close(conn.info, "fin", "c2s");
  return { trace, conn, nc };
}

function keysFor(tcp: (TcpSessionKeys | null)[], nc: NetCryptoKeys[] = []): KeyStore {
  const keys = new KeyStore();
  for (const k of tcp) if (k !== null) keys.add(k);
  keys.addAll(nc);
  return keys;
}

// ---- tests --------------------------------------------------------------------------------------

Deno.test("tox stream: without keys, the handshake and every frame with its length", () => {
  const { trace } = chatScenario();
  const d = decode(trace.events());
  assert.deepStrictEqual(codes(d), ["stream_detected", "closed"]);
  const [req, resp, ...frames] = d.records;
  assert.deepStrictEqual(req.layers, [{
    proto: "tcp_handshake",
    kind: "request",
    clientPublicKey: hex(A),
    nonce: toHex((trace.ops[0] as { bytes: Uint8Array }).bytes.subarray(32, 56)),
    keyed: false,
  }]);
  assert.equal(req.wireBytes, 128);
  assert.equal(req.sender, "client");
  assert.equal(resp.wireBytes, 96);
  assert.equal((resp.layers[0] as TcpHandshakeLayer).kind, "response");
  assert.equal(resp.dir, "s2c");
  assert.equal(resp.sender, "relay");
  // Every frame op became exactly one record, with the sealed length, in both directions.
  const frameOps = trace.ops.slice(2).filter((o) => o.kind === "data") as {
    dir: Direction;
    bytes: Uint8Array;
  }[];
  assert.equal(frames.length, frameOps.length);
  const next = { c2s: 128, s2c: 96 };
  const seqs = { c2s: 0, s2c: 0 };
  frames.forEach((r, i) => {
    const op = frameOps[i];
    assert.equal(r.dir, op.dir);
    assert.equal(r.wireBytes, op.bytes.length);
    assert.equal(r.offset, next[r.dir]);
    assert.equal(r.client, hex(A));
    assert.equal(r.relay, undefined);
    assert.deepStrictEqual(r.layers, [{
      proto: "tcp_frame",
      length: op.bytes.length - 2,
      seq: seqs[r.dir]++,
      decrypted: false,
    }]);
    next[r.dir] += op.bytes.length;
  });
  const s = d.decoder.streamSummaries()[0];
  assert.equal(s.state, "tox");
  assert.equal(s.detectedBy, "port");
  assert.equal(s.keyed, false);
  assert.equal(s.c2s.frames + s.s2c.frames, frames.length);
  assert.equal(s.handshakeMs, 1);
});

Deno.test("tox stream: with TCP keys, relay packets by name, routes, ping RTT, OOB", () => {
  const { trace, conn } = chatScenario();
  const d = decode(trace.events(), keysFor([conn.tcpKeys]));
  assert.deepStrictEqual(codes(d), ["stream_detected", "closed"]);
  assert.equal(d.records[0].relay, hex(R1));
  assert.equal(layer(d.records[0], "tcp_handshake").keyed, true);
  assert.equal(layer(d.records[0], "tcp_handshake").relayPublicKey, hex(R1));
  const relay = d.records.slice(2).map((r) => layer(r, "relay"));
  assert.deepStrictEqual(relay.slice(0, 4), [
    { proto: "relay", kind: "ping", pingId: "0102030405060708", length: 0 },
    { proto: "relay", kind: "pong", pingId: "0102030405060708", length: 0, rttMs: 31 },
    { proto: "relay", kind: "routing_request", publicKey: hex(B), length: 0 },
    { proto: "relay", kind: "routing_response", connectionId: 16, publicKey: hex(B), length: 0 },
  ]);
  const oob = d.records.slice(2).filter((r) => layer(r, "relay").kind.startsWith("oob"));
  assert.deepStrictEqual(oob.map((r) => [r.dir, nameOf(r)]), [
    ["c2s", "net_crypto:cookie_request"],
    ["s2c", "net_crypto:cookie_response"],
    ["c2s", "net_crypto:handshake"],
    ["s2c", "net_crypto:data"],
  ]);
  assert.deepStrictEqual(oob[0].layers.slice(1), [
    { proto: "relay", kind: "oob_send", publicKey: hex(B), length: 145 },
    { proto: "net_crypto", kind: "cookie_request", length: 145, senderDhtPublicKey: hex(A) },
  ]);
  // Every DATA record names the peer its connection id was routed to, both ways.
  const data = d.records.slice(2).filter((r) => layer(r, "relay").kind === "data");
  assert.equal(data.length, 13);
  for (const r of data) {
    assert.equal(layer(r, "relay").publicKey, hex(B));
    assert.equal(layer(r, "relay").connectionId, 16);
    // No NET_CRYPTO key: encrypted, without complaint.
    const nc = layer(r, "net_crypto");
    assert.equal(nc.decrypted, false);
    assert.equal(nc.error, undefined);
  }
  const last = d.records[d.records.length - 1];
  assert.deepStrictEqual(last.layers[1], {
    proto: "relay",
    kind: "disconnect_notification",
    connectionId: 16,
    publicKey: hex(B),
    length: 0,
  });
  const s = d.decoder.streamSummaries()[0];
  assert.equal(s.keyed, true);
  assert.equal(s.relayPublicKey, hex(R1));
  assert.equal(s.ping?.n, 1);
  assert.equal(s.ping?.lastMs, 31);
  assert.equal(s.routes.length, 1);
  assert.equal(s.routes[0].state, "freed");
  assert.equal(s.routes[0].dataC2s, 4);
  assert.equal(s.routes[0].dataS2c, 9);
  assert.equal(s.oobSent, 2);
  assert.equal(s.oobReceived, 2);
  assert.equal(s.c2s.decrypted, s.c2s.frames);
  assert.ok(s.firstData !== undefined && s.firstDataMs! > 0);
});

Deno.test("tox stream: with NET_CRYPTO keys, the friend session in clear", () => {
  const { trace, conn, nc } = chatScenario();
  const d = decode(trace.events(), keysFor([conn.tcpKeys], [nc.entry()]));
  const f = friends(d);
  assert.deepStrictEqual(f.map((l) => l.kind), [
    "request",
    "online",
    "online",
    "nickname",
    "message",
    "custom_lossless",
    "custom_lossy",
    "message",
    "action",
    "alive",
    "request",
    "typing",
    "user_status",
    "share_relays",
  ]);
  const byKind = (k: string) => f.filter((l) => l.kind === k);
  assert.deepStrictEqual(byKind("message").map((l) => l.text), ["hello alice", "hi bob"]);
  assert.deepStrictEqual(byKind("nickname")[0], {
    proto: "friend",
    id: 48,
    kind: "nickname",
    lossy: false,
    length: 4,
    text: "bob",
  });
  assert.equal(byKind("action")[0].text, "waves");
  assert.equal(byKind("custom_lossless")[0].preview, "aabeef");
  assert.deepStrictEqual(byKind("custom_lossy")[0], {
    proto: "friend",
    id: 200,
    kind: "custom_lossy",
    lossy: true,
    length: 4,
    preview: "c8010203",
  });
  // The OOB request was empty; Bob's later one asks for Alice's packet 2 only.
  assert.deepStrictEqual(byKind("request").map((l) => l.requested), [0, 1]);
  assert.equal(byKind("typing")[0].value, true);
  assert.equal(byKind("user_status")[0].value, "away");
  assert.deepStrictEqual(byKind("share_relays")[0].relays, [`192.0.2.7:33445:${hex(R2)}`]);
  // Packet numbers and acks come from the net_crypto layer.
  const msg = d.records.find((r) => (inner(r) as FriendLayer).text === "hello alice")!;
  const ncl = layer(msg, "net_crypto");
  assert.equal(ncl.decrypted, true);
  assert.equal(ncl.packetNumber, 2);
  assert.equal(ncl.bufferStart, 1);
  assert.equal(ncl.nonceLow, ((nc.bBase[22] << 8) | nc.bBase[23]) + 3);
  // The record a reader sees for a message, end to end.
  assert.deepStrictEqual(JSON.parse(JSON.stringify(msg)), {
    frame: msg.frame,
    ts: msg.ts,
    stream: 0,
    dir: "s2c",
    sender: "relay",
    offset: msg.offset,
    wireBytes: msg.wireBytes,
    relay: hex(R1),
    client: hex(A),
    layers: [
      { proto: "tcp_frame", length: msg.wireBytes - 2, seq: 7, decrypted: true },
      { proto: "relay", kind: "data", connectionId: 16, publicKey: hex(B), length: ncl.length },
      {
        proto: "net_crypto",
        kind: "data",
        length: ncl.length,
        nonceLow: ncl.nonceLow,
        decrypted: true,
        packetNumber: 2,
        bufferStart: 1,
      },
      { proto: "friend", id: 64, kind: "message", lossy: false, length: 12, text: "hello alice" },
    ],
  });
  assert.deepStrictEqual(
    [...d.decoder.sessionKeysOf(msg)].sort(),
    [hex(A_REAL), hex(B_REAL)].sort(),
  );
  const s = d.decoder.streamSummaries()[0];
  assert.equal(s.netCryptoData, s.netCryptoDecrypted);
  assert.equal(s.netCryptoData, 14);
});

Deno.test("tox stream: the session logged by the friend's side decodes the same", () => {
  const { trace, conn, nc } = chatScenario();
  const mine = decode(trace.events(), keysFor([conn.tcpKeys], [nc.entry(true)]));
  const theirs = decode(trace.events(), keysFor([conn.tcpKeys], [nc.entry(false)]));
  const both = decode(trace.events(), keysFor([conn.tcpKeys], [nc.entry(true), nc.entry(false)]));
  assert.deepStrictEqual(theirs.outputs, mine.outputs);
  assert.deepStrictEqual(both.outputs, mine.outputs);
});

Deno.test("tox stream: any cut of the byte streams gives the same records", () => {
  const { trace, conn, nc } = chatScenario(11);
  const keys = () => keysFor([conn.tcpKeys], [nc.entry()]);
  const whole = decode(trace.events("whole"), keys()).outputs;
  assert.ok(whole.length > 20);
  assert.deepStrictEqual(decode(trace.events("bytes"), keys()).outputs, whole);
  for (let seed = 1; seed <= 6; seed++) {
    assert.deepStrictEqual(decode(trace.events({ seed }), keys()).outputs, whole, `seed ${seed}`);
  }
  const bare = decode(trace.events("whole")).outputs;
  assert.deepStrictEqual(decode(trace.events("bytes")).outputs, bare);
  assert.deepStrictEqual(decode(trace.events({ seed: 99 })).outputs, bare);
});

Deno.test("tox stream: one session over two relays in alternation decodes throughout", () => {
  const random = seededRandom(20);
  const trace = new Trace();
  const r1 = new RelayConn(trace, 0, A, R1, random).handshake();
  const r2 = new RelayConn(trace, 1, A, R2, random, 443).handshake();
  // Alice's nonce starts just below a 16-bit boundary: the 2-byte trick must carry over it.
  const base = random(24);
  base[22] = 0xff;
  base[23] = 0xf0;
  const nc = new NcSession(A, B, A_REAL, B_REAL, random, base);
  for (const c of [r1, r2]) {
    c.c2s({ kind: "routing_request", publicKey: B.publicKey });
    c.s2c({ kind: "routing_response", connectionId: c === r1 ? 16 : 40, publicKey: B.publicKey });
    c.s2c({ kind: "connection_notification", connectionId: c === r1 ? 16 : 40 });
  }
  const n = 40;
  for (let i = 0; i < n; i++) {
    const c = i % 2 === 0 ? r1 : r2;
    const id = c === r1 ? 16 : 40;
    c.c2s({
      kind: "data",
      connectionId: id,
      data: nc.fromA(i, i, { kind: "message", text: `a${i}` }),
    });
    c.s2c({
      kind: "data",
      connectionId: id,
      data: nc.fromB(i, i + 1, { kind: "message", text: `b${i}` }),
    });
  }
  const keys = keysFor([r1.tcpKeys, r2.tcpKeys], [nc.entry()]);
  const d = decode(trace.events(), keys);
  const texts = friends(d).map((l) => l.text);
  const want: string[] = [];
  for (let i = 0; i < n; i++) want.push(`a${i}`, `b${i}`);
  assert.deepStrictEqual(texts, want);
  assert.deepStrictEqual(new Set(d.records.slice(4).map((r) => r.stream)), new Set([0, 1]));
  for (const s of d.decoder.streamSummaries()) {
    assert.equal(s.netCryptoDecrypted, n, `stream ${s.stream}`);
  }
  assert.equal(d.decoder.toxStreams, 2);
});

Deno.test("tox stream: a SOCKS5 preamble, then the relay session through it", () => {
  const random = seededRandom(30);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random, 1080);
  conn.raw("c2s", Uint8Array.of(5, 1, 0));
  conn.raw("s2c", Uint8Array.of(5, 0));
  conn.raw("c2s", Uint8Array.of(5, 1, 0, 1, 127, 0, 0, 1, 0x82, 0xa5));
  conn.raw("s2c", Uint8Array.of(5, 0, 0, 1, 0, 0, 0, 0, 0, 0));
  conn.handshake();
  conn.c2s({ kind: "ping", pingId: 7n });
  conn.s2c({ kind: "pong", pingId: 7n });
  for (const split of ["whole", "bytes"] as const) {
    const d = decode(trace.events(split), keysFor([conn.tcpKeys]));
    const proxy = d.records.filter((r) => r.layers[0].proto === "proxy");
    assert.deepStrictEqual(proxy.map((r) => r.layers[0] as ProxyLayer), [
      { proto: "proxy", kind: "socks5", step: "greeting (no auth)" },
      { proto: "proxy", kind: "socks5", step: "method no auth", ok: true },
      { proto: "proxy", kind: "socks5", step: "connect 127.0.0.1:33445" },
      { proto: "proxy", kind: "socks5", step: "reply ok", ok: true },
    ]);
    assert.deepStrictEqual(proxy.map((r) => [r.dir, r.offset, r.wireBytes]), [
      ["c2s", 0, 3],
      ["s2c", 0, 2],
      ["c2s", 3, 10],
      ["s2c", 2, 10],
    ]);
    assert.deepStrictEqual(d.records.slice(4).map(nameOf), [
      "tcp_handshake:request",
      "tcp_handshake:response",
      "relay:ping",
      "relay:pong",
    ]);
    assert.equal(d.records[4].offset, 13);
    assert.equal(d.records[5].offset, 12);
    const detected = d.notices.find((n) => n.code === "stream_detected")!;
    assert.match(detected.message, /SOCKS5 proxy to 127\.0\.0\.1:33445/);
    assert.match(detected.message, /key log/);
    const s = d.decoder.streamSummaries()[0];
    assert.deepStrictEqual(s.proxy, { kind: "socks5", target: "127.0.0.1:33445", ok: true });
  }
  // Without keys the shape alone tells (the proxy's port is no relay port).
  const bare = decode(trace.events());
  assert.equal(bare.decoder.streamSummaries()[0].detectedBy, "shape");
  assert.equal(bare.records.length, 8);
});

Deno.test("tox stream: an HTTP CONNECT preamble (c-toxcore's bare LF), then the session", () => {
  const random = seededRandom(31);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random, 3128);
  conn.raw("c2s", text("CONNECT 127.0.0.1:33445 HTTP/1.1\nHost: 127.0.0.1:33445\r\n\r\n"));
  conn.raw("s2c", text("HTTP/1.1 200 Connection established\r\nVia: tinyproxy\r\n\r\n"));
  conn.handshake();
  conn.c2s({ kind: "routing_request", publicKey: B.publicKey });
  const d = decode(trace.events("bytes"));
  assert.deepStrictEqual(d.records.slice(0, 2).map((r) => r.layers[0]), [
    { proto: "proxy", kind: "http_connect", step: "CONNECT 127.0.0.1:33445" },
    { proto: "proxy", kind: "http_connect", step: "HTTP/1.1 200 Connection established", ok: true },
  ]);
  assert.deepStrictEqual(d.records.slice(2).map(nameOf), [
    "tcp_handshake:request",
    "tcp_handshake:response",
    "tcp_frame",
  ]);
  assert.equal(d.records[2].client, hex(A));
  const refused = new Trace();
  const info = refused.stream(0, 3128);
  refused.data(info, "c2s", text("CONNECT 127.0.0.1:33445 HTTP/1.1\r\nHost: x\r\n\r\n"));
  refused.data(info, "s2c", text("HTTP/1.1 403 Forbidden\r\n\r\n\x1b[31mred"));
  refused.data(info, "c2s", new Uint8Array(128));
  refused.close(info, "fin", "s2c");
  const r = decode(refused.events());
  assert.equal(r.records.length, 2);
  assert.deepStrictEqual(r.records[1].layers[0], {
    proto: "proxy",
    kind: "http_connect",
    step: "HTTP/1.1 403 Forbidden",
    ok: false,
  });
  assert.deepStrictEqual(r.decoder.streamSummaries()[0].proxy?.ok, false);
});

Deno.test("tox stream: a wrong session key is a mac_failed notice, frames still shown", () => {
  const { trace, conn } = chatScenario();
  const wrong = { ...conn.tcpKeys!, sessionKey: new Uint8Array(32).fill(9) };
  const d = decode(trace.events(), keysFor([wrong]));
  const failed = d.notices.filter((n) => n.code === "mac_failed");
  assert.deepStrictEqual(failed.map((n) => [n.dir, n.level]), [["c2s", "warn"], ["s2c", "warn"]]);
  const frames = d.records.slice(2);
  assert.equal(frames.length, 23);
  for (const r of frames) {
    const f = r.layers[0] as TcpFrameLayer;
    assert.equal(r.layers.length, 1);
    assert.equal(f.decrypted, false);
    assert.ok(f.error !== undefined);
  }
  assert.equal((frames[0].layers[0] as TcpFrameLayer).error, "MAC failed");
  const s = d.decoder.streamSummaries()[0];
  assert.equal(s.c2s.macFailedAtFrame, 0);
  assert.equal(s.c2s.decrypted, 0);
});

Deno.test("tox stream: a gap makes the rest of that direction undecodable, once", () => {
  const random = seededRandom(40);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  conn.c2s({ kind: "ping", pingId: 1n });
  conn.s2c({ kind: "pong", pingId: 1n });
  trace.gap(conn.info, "c2s", 25);
  conn.c2s({ kind: "ping", pingId: 2n }); // sealed, but its bytes follow the hole
  conn.s2c({ kind: "pong", pingId: 2n });
  trace.gap(conn.info, "c2s", 10);
  conn.c2s({ kind: "ping", pingId: 3n });
  conn.s2c({ kind: "ping", pingId: 4n });
  trace.close(conn.info, "end");
  const d = decode(trace.events(), keysFor([conn.tcpKeys]));
  assert.deepStrictEqual(
    d.notices.map((n) => [n.code, n.dir ?? null]),
    [
      ["stream_detected", null],
      ["gap", "c2s"],
      ["undecodable", "c2s"],
      ["closed", null],
    ],
  );
  assert.deepStrictEqual(d.records.slice(2).map((r) => [r.dir, nameOf(r)]), [
    ["c2s", "relay:ping"],
    ["s2c", "relay:pong"],
    ["s2c", "relay:pong"],
    ["s2c", "relay:ping"],
  ]);
  const s = d.decoder.streamSummaries()[0];
  assert.equal(s.c2s.gaps, 2);
  assert.match(s.c2s.undecodable!, /gap/);
  assert.deepStrictEqual(s.closed, { how: "end", ts: d.notices[3].ts });
});

Deno.test("tox stream: a framing error ends that direction with an undecodable notice", () => {
  const random = seededRandom(41);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  conn.c2s({ kind: "ping", pingId: 1n });
  conn.raw("c2s", Uint8Array.of(0x00, 0x05, 1, 2, 3, 4, 5));
  conn.c2s({ kind: "ping", pingId: 2n });
  conn.s2c({ kind: "pong", pingId: 1n });
  const d = decode(trace.events(), keysFor([conn.tcpKeys]));
  assert.deepStrictEqual(codes(d), ["stream_detected", "undecodable"]);
  assert.match(d.notices[1].message, /frame length 5/);
  assert.deepStrictEqual(d.records.slice(2).map(nameOf), ["relay:ping", "relay:pong"]);
});

Deno.test("tox stream: zero-length headers are skipped, an unfinished frame is reported", () => {
  const random = seededRandom(42);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  conn.c2s({ kind: "ping", pingId: 1n });
  // c-toxcore reads a zero length as "no packet": the next frame still opens.
  conn.raw("c2s", Uint8Array.of(0, 0, 0, 0));
  conn.c2s({ kind: "ping", pingId: 2n });
  conn.raw("s2c", Uint8Array.of(0, 40, 1, 2, 3));
  trace.close(conn.info, "rst", "s2c");
  // A NET_CRYPTO line alone: the relay stream itself has no key.
  const other = new NcSession(A, B, A_REAL, B_REAL, random);
  const d = decode(trace.events("bytes"), keysFor([conn.tcpKeys], [other.entry()]));
  assert.deepStrictEqual(d.records.slice(2).map((r) => [nameOf(r), r.offset, r.wireBytes]), [
    ["relay:ping", 128, 27],
    ["relay:ping", 159, 27],
  ]);
  assert.deepStrictEqual(d.notices.map((n) => [n.code, n.dir ?? null]), [
    ["stream_detected", null],
    ["empty_frame", "c2s"],
    ["truncated", "s2c"],
    ["closed", null],
  ]);
  assert.match(d.notices[1].message, /4 bytes .* at offset 155/);
  assert.match(d.notices[2].message, /5 bytes into an unfinished frame/);
  assert.match(d.notices[3].message, /reset \(RST\) by the server/);
  const noKey = decode(trace.events(), keysFor([], [other.entry()]));
  assert.deepStrictEqual(codes(noKey).slice(0, 2), ["stream_detected", "no_key"]);
  assert.match(noKey.notices[1].message, /no TCP_SESSION entry for handshake nonce [0-9a-f]{48}/);
});

Deno.test("tox stream: keys that arrive after the handshake still open the frames", () => {
  const { trace, conn } = chatScenario();
  const keys = new KeyStore();
  const decoder = new ToxStreamDecoder({ keys });
  const events = trace.events();
  const out: ToxOutput[] = [];
  // A pcapng secrets block typically follows the handshake the daemon just completed.
  for (const ev of events.slice(0, 3)) out.push(...decoder.push(ev));
  keys.add(conn.tcpKeys!);
  for (const ev of events.slice(3)) out.push(...decoder.push(ev));
  const records = out.flatMap((o) => o.kind === "record" ? [o.record] : []);
  assert.equal(layer(records[0], "tcp_handshake").keyed, false);
  assert.deepStrictEqual(records.slice(2).map((r) => (r.layers[0] as TcpFrameLayer).decrypted), [
    ...new Array(records.length - 2).fill(true),
  ]);
  assert.equal(records[2].relay, hex(R1));
});

Deno.test("tox stream: recognised by shape on any port; not by port alone when told so", () => {
  const random = seededRandom(50);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random, 5555).handshake();
  conn.c2s({ kind: "ping", pingId: 9n });
  const d = decode(trace.events());
  assert.deepStrictEqual(d.records.map(nameOf), [
    "tcp_handshake:request",
    "tcp_handshake:response",
    "tcp_frame",
  ]);
  assert.equal(d.decoder.streamSummaries()[0].detectedBy, "shape");
  // A capture that stops between the handshake halves can wait.
  const half = decode(trace.events().slice(0, 2));
  assert.equal(half.outputs.length, 0);
  assert.equal(half.decoder.streamSummaries()[0].state, "detecting");
  const portsOnly = decode(trace.events(), new KeyStore(), { detectByShape: false });
  assert.deepStrictEqual(codes(portsOnly), ["not_tox"]);
  assert.equal(portsOnly.records.length, 0);
  const extraPort = decode(trace.events(), new KeyStore(), {
    detectByShape: false,
    relayPorts: [5555],
  });
  assert.equal(extraPort.records.length, 3);
});

Deno.test("tox stream: a relay that closes on the handshake (wrong relay key)", () => {
  const random = seededRandom(51);
  const trace = new Trace();
  const info = trace.stream(0, 33445);
  const { packet } = createClientHandshake(A, R2.publicKey, random);
  trace.data(info, "c2s", packet);
  trace.close(info, "fin", "s2c");
  const d = decode(trace.events());
  assert.deepStrictEqual(d.records.map(nameOf), ["tcp_handshake:request"]);
  assert.deepStrictEqual(codes(d), ["stream_detected", "closed"]);
  assert.match(d.notices[1].message, /by the server/);
  const s = d.decoder.streamSummaries()[0];
  assert.equal(s.handshakeResponse, undefined);
  assert.equal(s.closed?.by, "s2c");
});

Deno.test("tox stream: HTTP on port 80 and TLS on 443 are one not_tox notice each", () => {
  const trace = new Trace();
  const web = trace.stream(0, 80);
  trace.data(web, "c2s", text("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"));
  trace.data(web, "s2c", text("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"));
  trace.data(web, "c2s", text("GET /more HTTP/1.1\r\n\r\n"));
  trace.gap(web, "s2c", 100);
  trace.close(web, "fin", "c2s");
  const tls = trace.stream(1, 443);
  const hello = seededRandom(52)(517);
  hello.set([0x16, 0x03, 0x01]);
  trace.data(tls, "c2s", hello);
  trace.data(tls, "s2c", seededRandom(53)(1400));
  trace.close(tls, "rst", "s2c");
  const quiet = trace.stream(2, 33445);
  trace.close(quiet, "rst", "s2c");
  const d = decode(trace.events());
  assert.equal(d.records.length, 0);
  assert.deepStrictEqual(d.notices.map((n) => [n.stream, n.code]), [
    [0, "not_tox"],
    [1, "not_tox"],
    [2, "not_tox"],
  ]);
  assert.match(d.notices[1].message, /517 bytes .*relay port 443/);
  assert.match(d.notices[2].message, /closed before any byte/);
  assert.deepStrictEqual(d.decoder.streamSummaries().map((s: StreamSummary) => s.state), [
    "not_tox",
    "not_tox",
    "not_tox",
  ]);
  assert.equal(d.decoder.toxStreams, 0);
});

Deno.test("tox stream: garbage never throws, whatever the port, keys or cuts", () => {
  const random = seededRandom(60);
  const int = (n: number) => ((random(1)[0] << 16) | (random(1)[0] << 8) | random(1)[0]) % n;
  const ports = [33445, 443, 3389, 80, 1080, 5555];
  for (let c = 0; c < 150; c++) {
    const trace = new Trace();
    const keys = new KeyStore();
    const info = trace.stream(c % 7, ports[c % ports.length], c % 3 !== 0);
    const mode = c % 5;
    let conn: RelayConn | null = null;
    let nc: NcSession | null = null;
    if (mode >= 2) {
      conn = new RelayConn(trace, info.id, A, R1, random, info.server.port).handshake();
      keys.add(conn.tcpKeys!);
      nc = new NcSession(A, B, A_REAL, B_REAL, random);
      keys.add(nc.entry());
      conn.c2s({ kind: "routing_request", publicKey: B.publicKey });
      conn.s2c({ kind: "routing_response", connectionId: 16 + (c % 5), publicKey: B.publicKey });
    } else if (mode === 1) {
      trace.data(info, "c2s", Uint8Array.of(5, 1, 0));
      trace.data(info, "s2c", Uint8Array.of(5, int(2)));
    }
    const ops = 1 + int(25);
    for (let i = 0; i < ops; i++) {
      const dir: Direction = int(2) === 0 ? "c2s" : "s2c";
      const target = conn?.info ?? info;
      const what = int(10);
      if (what === 0) trace.gap(target, dir, int(50));
      else if (conn !== null && what < 4) {
        // Valid frames around random relay packets and random net_crypto payloads.
        const plain = random(1 + int(300));
        if (what === 1 && int(2) === 0) {
          // Onion packets: 8, or 9 led by each first byte the decoder tells apart.
          plain[0] = 8 + int(2);
          if (plain.length > 1) plain[1] = [0x84, 0x86, plain[1]][int(3)];
        }
        if (what === 2) plain[0] = 16 + (c % 5);
        if (what === 3) {
          plain[0] = int(2) === 0 ? 6 : 16 + (c % 5);
          const inner = nc!.fromA(int(5), int(5), {
            kind: "other",
            id: 120,
            name: "unknown",
            data: random(int(50)),
          });
          inner.set(random(int(4)), 3 + int(20));
          const body = Uint8Array.of(plain[0], ...(plain[0] === 6 ? B.publicKey : []), ...inner);
          trace.data(target, dir, sealFrame(dir === "c2s" ? conn.client! : conn.relay!, body));
          continue;
        }
        trace.data(target, dir, sealFrame(dir === "c2s" ? conn.client! : conn.relay!, plain));
      } else trace.data(target, dir, random(int(3000)));
    }
    if (int(3) > 0) trace.close(conn?.info ?? info, (["fin", "rst", "end"] as const)[int(3)]);
    for (const split of ["whole", { seed: c }] as const) {
      const d = decode(trace.events(split), keys);
      // Every output is plain JSON (no bigint, no bytes).
      JSON.stringify(d.outputs);
      d.decoder.streamSummaries();
      for (const r of d.records) d.decoder.sessionKeysOf(r);
    }
  }
});

Deno.test("tox stream: onion packets 8 and 9 show their next hop, sendback and one-off key", () => {
  const random = seededRandom(80);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  const node = (host: string) => ({ host, port: 33445, publicKey: newKeyPair(random).publicKey });
  const d = newKeyPair(random);
  const sendback = random(8);
  const announce = encodeAnnounceRequest(
    {
      requesterPublicKey: A_REAL.publicKey,
      pingId: new Uint8Array(32),
      searchPublicKey: A_REAL.publicKey,
      dataPublicKey: B.publicKey,
      sendback,
    },
    A_REAL.secretKey,
    d.publicKey,
    random,
  );
  const request = (n2: string) => {
    const path = createOnionPath(node(n2), node("198.51.100.3"), () => newKeyPair(random));
    conn.c2s({
      kind: "onion_request",
      data: encodeOnionRequestTcp(path, { host: "198.51.100.4", port: 33445 }, announce, random),
    });
    return toHex(path.tmpPublicKey2);
  };
  const k4 = request("198.51.100.2");
  const k6 = request("2001:db8::2");
  const shared = random(32);
  const answer = (nodes: number) =>
    conn.s2c({
      kind: "onion_response",
      data: encodeAnnounceResponse(sendback, shared, {
        isStored: 0,
        pingIdOrKey: random(32),
        nodes: Array.from({ length: nodes }, () => ({
          transport: "udp" as const,
          host: "198.51.100.9",
          port: 33445,
          publicKey: B.publicKey,
        })),
      }, random),
    });
  answer(0);
  answer(1);
  const dataResponse = decodeDataRequest(encodeDataRequest(
    A_REAL.publicKey,
    B.publicKey,
    B_REAL.publicKey,
    B_REAL.secretKey,
    encodeFriendRequest(random(4), text("hi")),
    random,
    () => newKeyPair(random),
  ));
  assert.ok(dataResponse.ok);
  const response = dataResponse.value.response;
  conn.s2c({ kind: "onion_response", data: response });
  conn.s2c({ kind: "onion_response", data: Uint8Array.of(0x8e, 1, 2, 3) });
  const dec = decode(trace.events(), keysFor([conn.tcpKeys]));
  const records = dec.records.slice(2);
  assert.deepStrictEqual(
    records.map((r) => layer(r, "onion")),
    [
      {
        proto: "onion",
        kind: "request",
        next: "198.51.100.2:33445",
        tmpPublicKey: k4,
        length: 177 + 177,
      },
      {
        proto: "onion",
        kind: "request",
        next: "[2001:db8::2]:33445",
        tmpPublicKey: k6,
        length: 177 + 177,
      },
      {
        proto: "onion",
        kind: "announce_response",
        sendback: toHex(sendback),
        length: 82,
      },
      {
        proto: "onion",
        kind: "announce_response",
        sendback: toHex(sendback),
        length: 82 + 39,
      },
      {
        proto: "onion",
        kind: "data_response",
        tmpPublicKey: toHex(response.subarray(25, 57)),
        length: response.length,
      },
      { proto: "onion", kind: "unknown", id: 0x8e, length: 4 },
    ] satisfies OnionLayer[],
  );
  // The relay layer stays, with its own kind, so type=onion_request means packet 8 only.
  assert.deepStrictEqual(records[0].layers[1], {
    proto: "relay",
    kind: "onion_request",
    length: 354,
  });
  assert.ok(records.every((r) => protocolOf(r) === "TOX-ONION"));
  assert.deepStrictEqual(records.map(infoOf), [
    `ONION_REQUEST len=354 › ONION next=198.51.100.2:33445 key=${k4.slice(0, 8)}…`,
    `ONION_REQUEST len=354 › ONION next=[2001:db8::2]:33445 key=${k6.slice(0, 8)}…`,
    `ONION_RESPONSE len=82 › ANNOUNCE_RESPONSE sendback=${toHex(sendback)} (no nodes)`,
    `ONION_RESPONSE len=121 › ANNOUNCE_RESPONSE sendback=${toHex(sendback)}`,
    `ONION_RESPONSE len=${response.length} › DATA_RESPONSE key=${
      toHex(response.subarray(25, 29))
    }…`,
    "ONION_RESPONSE len=4 › ONION id=0x8e? len=4",
  ]);
  const kept = (expr: string) => {
    const f = parseFilter(expr);
    return records.filter((r) => f.record(r, 0)).length;
  };
  assert.equal(kept("type=onion"), 6);
  assert.equal(kept("type=onion_request"), 2);
  assert.equal(kept("type=announce_response"), 2);
  assert.equal(kept("type=data_response|unknown"), 2);
  const s = dec.decoder.streamSummaries()[0];
  assert.equal(s.onionRequests, 2);
  assert.equal(s.onionResponses, 4);
  // The one-off keys are not peers: nothing else about the stream changed.
  assert.equal(s.routes.length, 0);
  assert.equal(s.oobSent + s.oobReceived, 0);
});

Deno.test("tox stream: malformed onion packets carry the error, never throw", () => {
  const random = seededRandom(81);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  const badFamily = random(200);
  badFamily[24] = 7;
  conn.c2s({ kind: "onion_request", data: badFamily });
  const sealed = (body: Uint8Array) => conn.raw("s2c", sealFrame(conn.relay!, body));
  sealed(Uint8Array.of(9, 0x84, ...random(49)));
  sealed(Uint8Array.of(9, 0x86, ...random(120)));
  sealed(Uint8Array.of(9, 0x86, ...random(1069)));
  // Too short for packet 8, and an empty packet 9: the relay codec's errors, no onion layer.
  sealed(Uint8Array.of(8, ...random(100)));
  sealed(Uint8Array.of(9));
  const dec = decode(trace.events(), keysFor([conn.tcpKeys]));
  const records = dec.records.slice(2);
  const onion = records.slice(0, 4).map((r) => layer(r, "onion"));
  assert.deepStrictEqual(onion.map((l) => [l.kind, l.length]), [
    ["request", 200],
    ["announce_response", 50],
    ["data_response", 121],
    ["data_response", 1070],
  ]);
  for (const l of onion) {
    assert.ok(l.error !== undefined, JSON.stringify(l));
    assert.equal(l.next ?? l.tmpPublicKey ?? l.sendback, undefined);
  }
  assert.match(onion[0].error!, /family 7/);
  assert.match(onion[2].error!, /121 bytes, must be 122\.\.1069/);
  assert.match(onion[3].error!, /1070 bytes, must be 122\.\.1069/);
  assert.match(infoOf(records[0]), /ONION malformed: .*family 7/);
  assert.match(infoOf(records[1]), /ANNOUNCE_RESPONSE malformed: .*50 bytes, minimum 82/);
  const [short, empty] = records.slice(4);
  assert.deepStrictEqual(short.layers.slice(1).map((l) => [l.proto, "kind" in l && l.kind]), [
    ["relay", "onion_request"],
  ]);
  assert.match(layer(short, "relay").error!, /minimum 159/);
  assert.deepStrictEqual(empty.layers.slice(1).map((l) => [l.proto, "kind" in l && l.kind]), [
    ["relay", "onion_response"],
  ]);
  // Counted as relay packets 8 and 9, decodable or not.
  const s = dec.decoder.streamSummaries()[0];
  assert.equal(s.onionRequests, 1);
  assert.equal(s.onionResponses, 3);
});

Deno.test("tox stream: friend payloads that break their rules are shown with the error", () => {
  const random = seededRandom(70);
  const trace = new Trace();
  const conn = new RelayConn(trace, 0, A, R1, random).handshake();
  const nc = new NcSession(A, B, A_REAL, B_REAL, random);
  conn.s2c({ kind: "routing_response", connectionId: 16, publicKey: B.publicKey });
  const raw = (payload: number[]) => {
    const pkt = sealDataPacket(nc.key, nc.bNonce, encodeDataPlain(0, 0, Uint8Array.of(...payload)));
    incrementNonce(nc.bNonce);
    conn.s2c({ kind: "data", connectionId: 16, data: pkt.slice() });
  };
  raw([50, 7]); // user status 7
  raw([24, 1]); // ONLINE with a body
  raw([9]); // reserved
  raw([64]); // empty message
  conn.s2c({ kind: "data", connectionId: 16, data: Uint8Array.of(0x1b, 1, 2, 3) });
  conn.s2c({ kind: "data", connectionId: 17, data: nc.fromB(1, 0, { kind: "alive" }) });
  const d = decode(trace.events(), keysFor([conn.tcpKeys], [nc.entry()]));
  const f = friends(d);
  assert.deepStrictEqual(f.map((l) => [l.kind, l.id, l.error !== undefined]), [
    ["user_status", 50, true],
    ["online", 24, true],
    ["reserved", 9, true],
    ["message", 64, true],
  ]);
  const short = layer(d.records[d.records.length - 2], "net_crypto") as NetCryptoLayer;
  assert.deepStrictEqual(short, {
    proto: "net_crypto",
    kind: "data",
    length: 4,
    nonceLow: 0x0102,
    decrypted: false,
    error: "4 bytes, must be 20..1400",
  });
  // DATA on a connection id whose route was never seen: no peer, so no session to try.
  const stray = d.records[d.records.length - 1];
  assert.equal((layer(stray, "relay") as RelayLayer).publicKey, undefined);
  assert.match(layer(stray, "net_crypto").error!, /route was not seen/);
});

Deno.test("tox stream: outputs come back per event; timestamps are the events'", () => {
  const { trace, conn } = chatScenario();
  const decoder = new ToxStreamDecoder({ keys: keysFor([conn.tcpKeys]) });
  let last: Timestamp | null = null;
  for (const ev of trace.events()) {
    for (const o of decoder.push(ev)) {
      const t = o.kind === "record" ? o.record.ts : o.notice.ts;
      assert.deepStrictEqual(t, ev.ts);
      last = t;
    }
  }
  assert.ok(last !== null);
});

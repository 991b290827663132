/**
 * A synthetic but genuine capture: two clients on one relay, every byte made by the real
 * codecs (relay handshake, framing, routing, net_crypto data with Messenger payloads), laid
 * out as the daemon's --capture does (pcapng, synthesized Ethernet/IPv4/TCP), with the key
 * log that opens it. Deterministic for a seed. The decode tests and `deno task bench` use it.
 *
 * What happens in it, in order: A and B connect and shake hands; both ask for a route to
 * the other, get connection ids and the connect notifications; A pings the relay; A announces
 * itself through the onion (relay packet 8 via N2 and N3 to an announce node D, D's 0x84 back
 * as packet 9), and B's DHT-PK reaches A as onion data (a 0x86 in packet 9); A and B exchange
 * ONLINE, then A sends `messages` MESSAGE packets "message N" to B (each relayed:
 * a DATA frame A→relay, then relay→B), B answers each tenth one; then B's stream closes.
 */
import {
  acceptClientHandshake,
  completeClientHandshake,
  createClientHandshake,
} from "../../daemon/core/tcp_common/handshake.ts";
import type { SecureSession } from "../../daemon/core/tcp_common/handshake.ts";
import { sealFrame } from "../../daemon/core/tcp_common/framing.ts";
import { encodeRelayPacket, type RelayPacket } from "../../daemon/core/tcp_common/packets.ts";
import {
  incrementNonce,
  type KeyPair,
  newKeyPair,
  precompute,
} from "../../daemon/core/common/crypto.ts";
import { encodeDataPlain, sealDataPacket } from "../../daemon/core/net_crypto/packets.ts";
import {
  encodeFriendPacket,
  type FriendPacket,
} from "../../daemon/core/friend_connection/friend_packets.ts";
import {
  createOnionPath,
  decodeDataRequest,
  encodeAnnounceRequest,
  encodeAnnounceResponse,
  encodeDataRequest,
  encodeDhtPk,
  encodeOnionRequestTcp,
} from "../../daemon/core/onion/packets.ts";
import {
  enhancedPacketBlock,
  interfaceDescriptionBlock,
  sectionHeaderBlock,
} from "../../daemon/core/capture/pcapng_writer.ts";
import { SyntheticTcpStream } from "../../daemon/core/capture/tcp_synth.ts";
import {
  formatKeylogEntry,
  KEYLOG_HEADER,
  type KeylogEntry,
} from "../../daemon/core/capture/keylog.ts";
import type { Timestamp } from "../../daemon/core/capture/types.ts";
import { concatAll } from "../../daemon/core/common/codec.ts";
import { seededRandom } from "./seeded_random.ts";

export interface FixtureOptions {
  /** MESSAGE packets from A to B (default 10). */
  readonly messages?: number;
  /** Filler added to each message's text, in characters (default 0). */
  readonly padding?: number;
  readonly seed?: number;
}

export interface Fixture {
  readonly pcapng: Uint8Array;
  readonly keylog: string;
  readonly entries: readonly KeylogEntry[];
  /** Frames (EPBs) in the file. */
  readonly packets: number;
  /** Tox records a full decode yields: handshakes + relay frames. */
  readonly toxRecords: number;
  readonly a: { readonly dht: KeyPair; readonly real: KeyPair };
  readonly b: { readonly dht: KeyPair; readonly real: KeyPair };
  readonly relay: KeyPair;
  /** What the decoder can read of A's onion packets (stream 0). */
  readonly onion: {
    /** N2 of the request, "host:port". */
    readonly next: string;
    readonly requestKey: Uint8Array;
    readonly sendback: Uint8Array;
    /** The one-off key E of the data response. */
    readonly dataKey: Uint8Array;
  };
}

const LINKTYPE_ETHERNET = 1;

class Side {
  readonly stream: SyntheticTcpStream;
  session!: SecureSession; // client's view
  relaySession!: SecureSession;
  constructor(readonly dht: KeyPair, readonly real: KeyPair, port: number) {
    this.stream = new SyntheticTcpStream({
      client: { addr: "127.0.0.1", port },
      server: { addr: "127.0.0.1", port: 33445 },
    });
  }
}

export function buildCaptureFixture(opts: FixtureOptions = {}): Fixture {
  const random = seededRandom(opts.seed ?? 1);
  const messages = opts.messages ?? 10;
  const pad = "x".repeat(opts.padding ?? 0);
  const relay = newKeyPair(random);
  const a = new Side(newKeyPair(random), newKeyPair(random), 40001);
  const b = new Side(newKeyPair(random), newKeyPair(random), 40002);
  const blocks: Uint8Array[] = [
    sectionHeaderBlock(),
    interfaceDescriptionBlock(LINKTYPE_ETHERNET, { name: "fixture", tsresolNs: true }),
  ];
  const entries: KeylogEntry[] = [];
  let packets = 0;
  let toxRecords = 0;
  let t = 1_700_000_000_000_000; // µs
  const ts = (): Timestamp => {
    t += 37;
    return { sec: Math.floor(t / 1e6), nsec: (t % 1e6) * 1000 };
  };
  const write = (frames: Uint8Array[]) => {
    for (const f of frames) {
      blocks.push(enhancedPacketBlock(0, ts(), f));
      packets++;
    }
  };

  for (const s of [a, b]) {
    write(s.stream.open());
    const hs = createClientHandshake(s.dht, relay.publicKey, random);
    write(s.stream.data("client", hs.packet));
    const acc = acceptClientHandshake(relay, hs.packet, random)!;
    write(s.stream.data("server", acc.response));
    s.session = completeClientHandshake(hs.pending, acc.response)!;
    s.relaySession = acc.session;
    toxRecords += 2;
    entries.push({
      kind: "tcp_session",
      handshakeNonce: hs.packet.slice(32, 56),
      relayPublicKey: relay.publicKey,
      sessionKey: s.session.sharedKey.slice(),
      clientNonce: s.session.sendNonce.slice(),
      relayNonce: s.session.recvNonce.slice(),
    });
  }
  const up = (s: Side, p: RelayPacket) => {
    write(s.stream.data("client", sealFrame(s.session, encodeRelayPacket(p))));
    toxRecords++;
  };
  const down = (s: Side, p: RelayPacket) => {
    write(s.stream.data("server", sealFrame(s.relaySession, encodeRelayPacket(p))));
    toxRecords++;
  };

  up(a, { kind: "routing_request", publicKey: b.dht.publicKey });
  down(a, { kind: "routing_response", connectionId: 16, publicKey: b.dht.publicKey });
  up(b, { kind: "routing_request", publicKey: a.dht.publicKey });
  down(b, { kind: "routing_response", connectionId: 16, publicKey: a.dht.publicKey });
  down(a, { kind: "connection_notification", connectionId: 16 });
  down(b, { kind: "connection_notification", connectionId: 16 });
  up(a, { kind: "ping", pingId: 0x1122334455667788n });
  down(a, { kind: "pong", pingId: 0x1122334455667788n });

  // Its own randomness: every other byte stays what it was before the onion was added.
  const onionRandom = seededRandom((opts.seed ?? 1) + 1000);
  const announceNode = newKeyPair(onionRandom);
  const aData = newKeyPair(onionRandom);
  const hop = (host: string) => ({
    host,
    port: 33445,
    publicKey: newKeyPair(onionRandom).publicKey,
  });
  const path = createOnionPath(hop("192.0.2.2"), hop("192.0.2.3"), () => newKeyPair(onionRandom));
  const sendback = onionRandom(8);
  const announce = encodeAnnounceRequest(
    {
      requesterPublicKey: a.real.publicKey,
      pingId: new Uint8Array(32),
      searchPublicKey: a.real.publicKey,
      dataPublicKey: aData.publicKey,
      sendback,
    },
    a.real.secretKey,
    announceNode.publicKey,
    onionRandom,
  );
  up(a, {
    kind: "onion_request",
    data: encodeOnionRequestTcp(path, { host: "192.0.2.4", port: 33445 }, announce, onionRandom),
  });
  down(a, {
    kind: "onion_response",
    data: encodeAnnounceResponse(
      sendback,
      precompute(a.real.publicKey, announceNode.secretKey),
      { isStored: 0, pingIdOrKey: onionRandom(32), nodes: [] },
      onionRandom,
    ),
  });
  const dataRequest = decodeDataRequest(encodeDataRequest(
    a.real.publicKey,
    aData.publicKey,
    b.real.publicKey,
    b.real.secretKey,
    encodeDhtPk({ noReplay: 1_700_000_000n, dhtPublicKey: b.dht.publicKey, nodes: [] }),
    onionRandom,
    () => newKeyPair(onionRandom),
  ));
  if (!dataRequest.ok) throw new Error(`fixture: ${dataRequest.error.message}`);
  const dataResponse = dataRequest.value.response;
  down(a, { kind: "onion_response", data: dataResponse });

  // The net_crypto session between A and B (its handshake is not part of this fixture).
  const aSess = newKeyPair(random);
  const bSess = newKeyPair(random);
  const key = precompute(bSess.publicKey, aSess.secretKey);
  const aNonce = random(24);
  const bNonce = random(24);
  entries.push({
    kind: "net_crypto",
    selfDhtPublicKey: a.dht.publicKey,
    peerDhtPublicKey: b.dht.publicKey,
    selfRealPublicKey: a.real.publicKey,
    peerRealPublicKey: b.real.publicKey,
    sessionKey: key,
    selfNonce: aNonce.slice(),
    peerNonce: bNonce.slice(),
  });
  const numbers = new Map<Side, number>([[a, 0], [b, 0]]);
  /** One net_crypto data packet from `s` to the other, relayed. */
  const send = (s: Side, p: FriendPacket) => {
    const other = s === a ? b : a;
    const n = numbers.get(s)!;
    numbers.set(s, n + 1);
    const plain = encodeDataPlain(0, n, encodeFriendPacket(p));
    const nonce = s === a ? aNonce : bNonce;
    const packet = sealDataPacket(key, nonce, plain);
    incrementNonce(nonce);
    up(s, { kind: "data", connectionId: 16, data: packet });
    down(other, { kind: "data", connectionId: 16, data: packet });
  };
  send(a, { kind: "online" });
  send(b, { kind: "online" });
  send(a, { kind: "nickname", name: "alice" });
  send(b, { kind: "nickname", name: "bob" });
  for (let i = 0; i < messages; i++) {
    send(a, { kind: "message", text: `message ${i}${pad}` });
    if (i % 10 === 9) send(b, { kind: "message", text: `reply to ${i}` });
  }
  down(a, { kind: "disconnect_notification", connectionId: 16 });
  write(b.stream.close("client"));

  const pcapng = concatAll(blocks);
  return {
    pcapng,
    keylog: KEYLOG_HEADER + entries.map(formatKeylogEntry).join(""),
    entries,
    packets,
    toxRecords,
    a: { dht: a.dht, real: a.real },
    b: { dht: b.dht, real: b.real },
    relay,
    onion: {
      next: "192.0.2.2:33445",
      requestKey: path.tmpPublicKey2,
      sendback,
      dataKey: dataResponse.slice(25, 57),
    },
  };
}

/**
 * Onion wire formats (c-toxcore 0.2.18 onion.c, onion_announce.c, onion_client.c;
 * spec/onion.md), both sides: what a client builds and opens, and what a node peels and
 * answers (the node side serves the capture decoder and the in-process test network).
 *
 * Over TCP our relay is the first hop, so a request is relay packet 8 carrying
 *   nonce ‖ ipport(N2) ‖ tmp_pk2 ‖ sbox(K2, ipport(N3) ‖ tmp_pk3 ‖ sbox(K3, ipport(D) ‖ payload))
 * with one nonce for every layer, and the answer is relay packet 9 carrying the raw 0x84 or
 * 0x86 from D.
 */
import { codecError, type Decoded, decoded, EncodeError } from "../common/codec.ts";
import {
  MAC_SIZE,
  NONCE_SIZE,
  open,
  precompute,
  PUBLIC_KEY_SIZE,
  type RandomBytes,
  seal,
} from "../common/crypto.ts";
import { formatIPv4, formatIPv6 } from "../common/ip_text.ts";
import { decodePackedNodes, encodePackedNodes, type PackedNode } from "../common/packed_node.ts";
import { parseIpLiteral } from "../common/ip_text.ts";

export const NET_PACKET_ONION_SEND_1 = 0x81;
export const NET_PACKET_ONION_SEND_2 = 0x82;
/** The announce request the onion carries in 0.2.18 (the "new" 0x87 is not forwarded). */
export const NET_PACKET_ANNOUNCE_REQUEST = 0x83;
export const NET_PACKET_ANNOUNCE_RESPONSE = 0x84;
export const NET_PACKET_ONION_DATA_REQUEST = 0x85;
export const NET_PACKET_ONION_DATA_RESPONSE = 0x86;

/** Onion data payload ids (the first byte inside a data response). */
export const ONION_DATA_FRIEND_REQ = 0x20;
export const ONION_DATA_DHTPK = 0x9c;

export const SIZE_IPPORT = 19;
export const ONION_MAX_PACKET_SIZE = 1400;
export const ONION_PING_ID_SIZE = 32;
export const ONION_ANNOUNCE_SENDBACK_DATA_LENGTH = 8;
/** ONION_SEND_BASE: one layer's overhead (key, address, MAC). */
export const ONION_SEND_BASE = PUBLIC_KEY_SIZE + SIZE_IPPORT + MAC_SIZE;
/** ONION_SEND_1: what wraps a payload from the first hop on (nonce and three layers). */
export const ONION_SEND_1 = NONCE_SIZE + 3 * ONION_SEND_BASE;
/** ONION_MAX_DATA_SIZE: the largest payload (announce or data request) a path carries. */
export const ONION_MAX_DATA_SIZE = ONION_MAX_PACKET_SIZE - (ONION_SEND_1 + 1);

export const ONION_ANNOUNCE_REQUEST_SIZE = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + ONION_PING_ID_SIZE +
  2 * PUBLIC_KEY_SIZE + ONION_ANNOUNCE_SENDBACK_DATA_LENGTH + MAC_SIZE;
export const ONION_ANNOUNCE_RESPONSE_MIN_SIZE = 2 + ONION_ANNOUNCE_SENDBACK_DATA_LENGTH +
  NONCE_SIZE + ONION_PING_ID_SIZE + MAC_SIZE;
/** ONION_MAX_EXTRA_DATA_SIZE (136) per node: more room than 4 packed nodes take. */
export const ONION_ANNOUNCE_RESPONSE_MAX_SIZE = ONION_ANNOUNCE_RESPONSE_MIN_SIZE + 136 * 4;
/** MAX_SENT_NODES: nodes in an announce response or a DHT-PK payload. */
export const MAX_SENT_NODES = 4;

export const ONION_DATA_REQUEST_MIN_SIZE = 1 + PUBLIC_KEY_SIZE + NONCE_SIZE + PUBLIC_KEY_SIZE +
  MAC_SIZE;
export const MAX_DATA_REQUEST_SIZE = ONION_MAX_DATA_SIZE - ONION_DATA_REQUEST_MIN_SIZE;
export const ONION_DATA_RESPONSE_MIN_SIZE = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE;
/** The sender's key and the inner MAC around a payload inside a data response. */
export const ONION_DATA_IN_RESPONSE_MIN_SIZE = PUBLIC_KEY_SIZE + MAC_SIZE;
/** ONION_CLIENT_MAX_DATA_SIZE: the largest payload c-toxcore will send (1021). */
export const ONION_CLIENT_MAX_DATA_SIZE = MAX_DATA_REQUEST_SIZE - ONION_DATA_IN_RESPONSE_MIN_SIZE;
/**
 * The largest payload a c-toxcore 0.2.18 receiver accepts: it drops a data response over
 * MAX_DATA_REQUEST_SIZE, and a response is 121 bytes plus the payload (948; checked on the
 * wire: a 944-byte friend-request message was dropped, 943 arrived).
 */
export const ONION_DATA_MAX_ACCEPTED = MAX_DATA_REQUEST_SIZE - ONION_DATA_RESPONSE_MIN_SIZE -
  ONION_DATA_IN_RESPONSE_MIN_SIZE;

export const DHTPK_DATA_MIN_LENGTH = 1 + 8 + PUBLIC_KEY_SIZE;
/** DHTPK_DATA_MAX_LENGTH: c-toxcore counts sizeof(Node_format), 56 bytes on x86-64, per node. */
export const DHTPK_DATA_MAX_LENGTH = DHTPK_DATA_MIN_LENGTH + 56 * 4;

/** MAX_FRIEND_REQUEST_DATA_SIZE: a request's message after its id and nospam (1016). */
export const MAX_FRIEND_REQUEST_DATA_SIZE = ONION_CLIENT_MAX_DATA_SIZE - 1 - 4;
/**
 * The longest request message a c-toxcore 0.2.18 peer receives (943): its onion data limit
 * (ONION_DATA_MAX_ACCEPTED) minus the id and nospam. Longer ones are dropped without a word.
 */
export const MAX_FRIEND_REQUEST_DELIVERED = ONION_DATA_MAX_ACCEPTED - 1 - 4;

/** A UDP address inside an onion layer (IP literal only: a layer cannot carry a name). */
export interface IpPort {
  readonly host: string;
  readonly port: number;
}

/** A DHT node the onion can route through or announce to: key and UDP address. */
export interface OnionNode extends IpPort {
  readonly publicKey: Uint8Array;
}

// ---- IP_Port in layers (ipport_pack) ---------------------------------------------------------

/** family(2 | 10) ‖ 16 address bytes (IPv4 in the first 4) ‖ port BE. */
export function encodeIpPort(a: IpPort, out = new Uint8Array(SIZE_IPPORT), at = 0): Uint8Array {
  const ip = parseIpLiteral(a.host);
  if (ip === null) throw new EncodeError(`onion: ${JSON.stringify(a.host)} is not an IP address`);
  if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) {
    throw new EncodeError(`onion: port ${a.port} is not in 1..65535`);
  }
  out.fill(0, at, at + SIZE_IPPORT);
  out[at] = ip.family === 4 ? 2 : 10;
  out.set(ip.bytes, at + 1);
  out[at + 17] = a.port >>> 8;
  out[at + 18] = a.port & 0xff;
  return out;
}

export function decodeIpPort(b: Uint8Array): Decoded<IpPort> {
  if (b.length < SIZE_IPPORT) return codecError("too_short", `ipport: ${b.length} bytes`);
  const family = b[0];
  const port = (b[17] << 8) | b[18];
  if (family === 2) return decoded({ host: formatIPv4(b, 1), port });
  if (family === 10) return decoded({ host: formatIPv6(b.subarray(1, 17)), port });
  return codecError("malformed", `ipport: family ${family} is not 2 (IPv4) or 10 (IPv6)`);
}

/** Whether a host can go into a layer. */
export function isIpLiteral(host: string): boolean {
  return parseIpLiteral(host) !== null;
}

/**
 * crypto_box_open between `theirPublicKey` and `ourSecretKey`: the plaintext and the shared
 * key, or why not (`what` names the box in the error).
 */
function openBetween(
  theirPublicKey: Uint8Array,
  ourSecretKey: Uint8Array,
  nonce: Uint8Array,
  box: Uint8Array,
  what: string,
): Decoded<{ readonly plain: Uint8Array; readonly shared: Uint8Array }> {
  let shared: Uint8Array;
  try {
    shared = precompute(theirPublicKey, ourSecretKey);
  } catch {
    return codecError("malformed", `${what}: the other key is of low order`);
  }
  const plain = open(shared, nonce, box);
  if (plain === null) return codecError("bad_mac", `${what}: MAC failed`);
  return decoded({ plain, shared });
}

/** The `id ‖ nonce ‖ public key ‖ box` layout of 0x83 and 0x86 (views, and a copied key). */
function idNonceKeyBox(packet: Uint8Array) {
  const keyAt = 1 + NONCE_SIZE;
  return {
    nonce: packet.subarray(1, keyAt),
    publicKey: packet.slice(keyAt, keyAt + PUBLIC_KEY_SIZE),
    box: packet.subarray(keyAt + PUBLIC_KEY_SIZE),
  };
}

// ---- paths and the TCP onion request ---------------------------------------------------------

/** The two UDP hops after our relay, with the one-off keys we use towards each. */
export interface OnionPath {
  readonly n2: OnionNode;
  readonly n3: OnionNode;
  readonly tmpPublicKey2: Uint8Array;
  readonly tmpPublicKey3: Uint8Array;
  readonly shared2: Uint8Array;
  readonly shared3: Uint8Array;
}

/** create_onion_path for TCP: fresh key pairs towards N2 and N3, shared keys precomputed. */
export function createOnionPath(
  n2: OnionNode,
  n3: OnionNode,
  newKeyPair: () => { publicKey: Uint8Array; secretKey: Uint8Array },
): OnionPath {
  const k2 = newKeyPair();
  const k3 = newKeyPair();
  const path = {
    n2,
    n3,
    tmpPublicKey2: k2.publicKey,
    tmpPublicKey3: k3.publicKey,
    shared2: precompute(n2.publicKey, k2.secretKey),
    shared3: precompute(n3.publicKey, k3.secretKey),
  };
  k2.secretKey.fill(0);
  k3.secretKey.fill(0);
  return path;
}

/**
 * create_onion_packet_tcp: the body of relay packet 8 sending `payload` to `dest` along
 * `path`. Throws EncodeError for a payload the path cannot carry.
 */
export function encodeOnionRequestTcp(
  path: OnionPath,
  dest: IpPort,
  payload: Uint8Array,
  random: RandomBytes,
): Uint8Array {
  if (payload.length === 0 || payload.length > ONION_MAX_DATA_SIZE) {
    throw new EncodeError(`onion: payload of ${payload.length} bytes (1..${ONION_MAX_DATA_SIZE})`);
  }
  const nonce = random(NONCE_SIZE);
  const step1 = new Uint8Array(SIZE_IPPORT + payload.length);
  encodeIpPort(dest, step1);
  step1.set(payload, SIZE_IPPORT);
  const box3 = seal(path.shared3, nonce, step1);
  const step2 = new Uint8Array(SIZE_IPPORT + PUBLIC_KEY_SIZE + box3.length);
  encodeIpPort(path.n3, step2);
  step2.set(path.tmpPublicKey3, SIZE_IPPORT);
  step2.set(box3, SIZE_IPPORT + PUBLIC_KEY_SIZE);
  const box2 = seal(path.shared2, nonce, step2);
  const out = new Uint8Array(NONCE_SIZE + SIZE_IPPORT + PUBLIC_KEY_SIZE + box2.length);
  out.set(nonce);
  encodeIpPort(path.n2, out, NONCE_SIZE);
  out.set(path.tmpPublicKey2, NONCE_SIZE + SIZE_IPPORT);
  out.set(box2, NONCE_SIZE + SIZE_IPPORT + PUBLIC_KEY_SIZE);
  return out;
}

/** What a relay reads of packet 8 in the clear: the nonce, N2, and the layer for N2. */
export interface OnionRequestTcp {
  readonly nonce: Uint8Array;
  readonly next: IpPort;
  readonly tmpPublicKey: Uint8Array;
  readonly box: Uint8Array;
}

export function decodeOnionRequestTcp(body: Uint8Array): Decoded<OnionRequestTcp> {
  const min = NONCE_SIZE + SIZE_IPPORT + PUBLIC_KEY_SIZE + MAC_SIZE + 1;
  if (body.length < min) return codecError("too_short", `onion request: ${body.length} bytes`);
  const next = decodeIpPort(body.subarray(NONCE_SIZE, NONCE_SIZE + SIZE_IPPORT));
  if (!next.ok) return next;
  const at = NONCE_SIZE + SIZE_IPPORT;
  return decoded({
    nonce: body.slice(0, NONCE_SIZE),
    next: next.value,
    tmpPublicKey: body.slice(at, at + PUBLIC_KEY_SIZE),
    box: body.subarray(at + PUBLIC_KEY_SIZE),
  });
}

/**
 * A node peels its layer: open `box` with (tmpPublicKey, node key) and the request's nonce.
 * For N2 the rest is tmp_pk3 ‖ box3; for N3 it is the payload for `next` (the destination).
 */
export function openOnionLayer(
  nonce: Uint8Array,
  tmpPublicKey: Uint8Array,
  box: Uint8Array,
  nodeSecretKey: Uint8Array,
): Decoded<{ readonly next: IpPort; readonly rest: Uint8Array }> {
  const o = openBetween(tmpPublicKey, nodeSecretKey, nonce, box, "onion layer");
  if (!o.ok) return o;
  const plain = o.value.plain;
  if (plain.length <= SIZE_IPPORT) return codecError("too_short", "onion layer: nothing inside");
  const next = decodeIpPort(plain);
  if (!next.ok) return next;
  return decoded({ next: next.value, rest: plain.subarray(SIZE_IPPORT) });
}

// ---- announce request 0x83 / response 0x84 ---------------------------------------------------

export interface AnnounceRequest {
  /** The key pair this request is made with: our real one to announce, a per-friend one to search. */
  readonly requesterPublicKey: Uint8Array;
  readonly pingId: Uint8Array;
  /** The real key announced or searched for. */
  readonly searchPublicKey: Uint8Array;
  /** Our onion data key when announcing; zeros when searching. */
  readonly dataPublicKey: Uint8Array;
  readonly sendback: Uint8Array;
}

/** create_announce_request: 177 bytes, boxed between the requester key and D's DHT key. */
export function encodeAnnounceRequest(
  r: AnnounceRequest,
  requesterSecretKey: Uint8Array,
  destPublicKey: Uint8Array,
  random: RandomBytes,
): Uint8Array {
  return encodeAnnounceRequestShared(r, precompute(destPublicKey, requesterSecretKey), random);
}

/**
 * encodeAnnounceRequest with the requester↔D shared key already computed: a client sends the
 * same node many requests (every search run, every re-announce), and the key agreement is
 * what costs (~1 ms in JavaScript, against microseconds for the box itself).
 */
export function encodeAnnounceRequestShared(
  r: AnnounceRequest,
  shared: Uint8Array,
  random: RandomBytes,
): Uint8Array {
  const sizes: [Uint8Array, number, string][] = [
    [r.requesterPublicKey, PUBLIC_KEY_SIZE, "requester key"],
    [r.pingId, ONION_PING_ID_SIZE, "ping id"],
    [r.searchPublicKey, PUBLIC_KEY_SIZE, "search key"],
    [r.dataPublicKey, PUBLIC_KEY_SIZE, "data key"],
    [r.sendback, ONION_ANNOUNCE_SENDBACK_DATA_LENGTH, "sendback"],
  ];
  for (const [b, n, what] of sizes) {
    if (b.length !== n) throw new EncodeError(`announce request: ${what} must be ${n} bytes`);
  }
  const plain = new Uint8Array(ONION_PING_ID_SIZE + 2 * PUBLIC_KEY_SIZE + 8);
  plain.set(r.pingId, 0);
  plain.set(r.searchPublicKey, 32);
  plain.set(r.dataPublicKey, 64);
  plain.set(r.sendback, 96);
  const nonce = random(NONCE_SIZE);
  const box = seal(shared, nonce, plain);
  const out = new Uint8Array(ONION_ANNOUNCE_REQUEST_SIZE);
  out[0] = NET_PACKET_ANNOUNCE_REQUEST;
  out.set(nonce, 1);
  out.set(r.requesterPublicKey, 1 + NONCE_SIZE);
  out.set(box, 1 + NONCE_SIZE + PUBLIC_KEY_SIZE);
  return out;
}

/** The node side: open a 0x83 with D's DHT secret key; `shared` answers it. */
export function decodeAnnounceRequest(
  packet: Uint8Array,
  nodeSecretKey: Uint8Array,
): Decoded<AnnounceRequest & { readonly shared: Uint8Array }> {
  if (packet.length !== ONION_ANNOUNCE_REQUEST_SIZE) {
    return codecError("wrong_length", `announce request: ${packet.length} bytes, not 177`);
  }
  if (packet[0] !== NET_PACKET_ANNOUNCE_REQUEST) {
    return codecError("unknown_id", `announce request: id ${packet[0]}`);
  }
  const { nonce, publicKey: requesterPublicKey, box } = idNonceKeyBox(packet);
  const o = openBetween(requesterPublicKey, nodeSecretKey, nonce, box, "announce request");
  if (!o.ok) return o;
  const { plain, shared } = o.value;
  return decoded({
    requesterPublicKey,
    pingId: plain.slice(0, 32),
    searchPublicKey: plain.slice(32, 64),
    dataPublicKey: plain.slice(64, 96),
    sendback: plain.slice(96, 104),
    shared,
  });
}

/** is_stored: 0 not here (a ping id follows), 1 the searched key is (its data key follows), 2 we are. */
export type IsStored = 0 | 1 | 2;

export interface AnnounceResponse {
  readonly isStored: IsStored;
  /** A ping id (is_stored 0 or 2) or the announced peer's data public key (is_stored 1). */
  readonly pingIdOrKey: Uint8Array;
  readonly nodes: readonly PackedNode[];
}

/** The node side of 0x84: sendback ‖ nonce ‖ sbox(shared, is_stored ‖ 32 ‖ packed nodes). */
export function encodeAnnounceResponse(
  sendback: Uint8Array,
  shared: Uint8Array,
  r: AnnounceResponse,
  random: RandomBytes,
): Uint8Array {
  if (sendback.length !== ONION_ANNOUNCE_SENDBACK_DATA_LENGTH || r.pingIdOrKey.length !== 32) {
    throw new EncodeError("announce response: sendback is 8 bytes, ping id or key 32");
  }
  if (r.nodes.length > MAX_SENT_NODES) {
    throw new EncodeError(`announce response: at most ${MAX_SENT_NODES} nodes`);
  }
  const nodes = encodePackedNodes(r.nodes);
  const plain = new Uint8Array(1 + 32 + nodes.length);
  plain[0] = r.isStored;
  plain.set(r.pingIdOrKey, 1);
  plain.set(nodes, 33);
  const nonce = random(NONCE_SIZE);
  const box = seal(shared, nonce, plain);
  const out = new Uint8Array(1 + 8 + NONCE_SIZE + box.length);
  out[0] = NET_PACKET_ANNOUNCE_RESPONSE;
  out.set(sendback, 1);
  out.set(nonce, 9);
  out.set(box, 9 + NONCE_SIZE);
  return out;
}

/** The sendback of a 0x84, read before we know which key opens it. */
export function announceResponseSendback(packet: Uint8Array): Decoded<Uint8Array> {
  if (packet.length < ONION_ANNOUNCE_RESPONSE_MIN_SIZE) {
    return codecError("too_short", `announce response: ${packet.length} bytes, minimum 82`);
  }
  if (packet.length > ONION_ANNOUNCE_RESPONSE_MAX_SIZE) {
    return codecError("too_long", `announce response: ${packet.length} bytes`);
  }
  if (packet[0] !== NET_PACKET_ANNOUNCE_RESPONSE) {
    return codecError("unknown_id", `announce response: id ${packet[0]}`);
  }
  return decoded(packet.subarray(1, 9));
}

/** handle_announce_response: open with precompute(D's key, the request's secret key). */
export function openAnnounceResponse(
  packet: Uint8Array,
  shared: Uint8Array,
): Decoded<AnnounceResponse> {
  const sb = announceResponseSendback(packet);
  if (!sb.ok) return sb;
  const plain = open(shared, packet.subarray(9, 9 + NONCE_SIZE), packet.subarray(9 + NONCE_SIZE));
  if (plain === null) return codecError("bad_mac", "announce response: MAC failed");
  const isStored = plain[0];
  if (isStored > 2) return codecError("out_of_range", `announce response: is_stored ${isStored}`);
  const rest = plain.subarray(33);
  let nodes: PackedNode[] = [];
  if (rest.length > 0) {
    const d = decodePackedNodes(rest, MAX_SENT_NODES);
    if (!d.ok) return d;
    if (d.value.consumed !== rest.length) {
      return codecError(
        "malformed",
        `announce response: ${rest.length - d.value.consumed} bytes after the nodes`,
      );
    }
    nodes = d.value.nodes;
  }
  return decoded({ isStored: isStored as IsStored, pingIdOrKey: plain.slice(1, 33), nodes });
}

// ---- data request 0x85 / response 0x86 --------------------------------------------------------

/**
 * create_data_request with the inner box of send_onion_data: to the friend announced at D
 * with `friendDataPublicKey`. The same nonce seals both boxes, as in c-toxcore.
 */
export function encodeDataRequest(
  friendRealPublicKey: Uint8Array,
  friendDataPublicKey: Uint8Array,
  ourRealPublicKey: Uint8Array,
  ourRealSecretKey: Uint8Array,
  payload: Uint8Array,
  random: RandomBytes,
  newKeyPair: () => { publicKey: Uint8Array; secretKey: Uint8Array },
): Uint8Array {
  if (payload.length === 0 || payload.length > ONION_CLIENT_MAX_DATA_SIZE) {
    throw new EncodeError(
      `onion data: payload of ${payload.length} bytes (1..${ONION_CLIENT_MAX_DATA_SIZE})`,
    );
  }
  const nonce = random(NONCE_SIZE);
  const innerBox = seal(precompute(friendRealPublicKey, ourRealSecretKey), nonce, payload);
  const inner = new Uint8Array(PUBLIC_KEY_SIZE + innerBox.length);
  inner.set(ourRealPublicKey);
  inner.set(innerBox, PUBLIC_KEY_SIZE);
  const e = newKeyPair();
  const outerBox = seal(precompute(friendDataPublicKey, e.secretKey), nonce, inner);
  e.secretKey.fill(0);
  const out = new Uint8Array(1 + PUBLIC_KEY_SIZE + NONCE_SIZE + PUBLIC_KEY_SIZE + outerBox.length);
  out[0] = NET_PACKET_ONION_DATA_REQUEST;
  out.set(friendRealPublicKey, 1);
  out.set(nonce, 1 + PUBLIC_KEY_SIZE);
  out.set(e.publicKey, 1 + PUBLIC_KEY_SIZE + NONCE_SIZE);
  out.set(outerBox, 1 + 2 * PUBLIC_KEY_SIZE + NONCE_SIZE);
  return out;
}

/** ONION_RETURN_3: what the last hop appends for the way back. */
export const ONION_RETURN_3 = 3 * (NONCE_SIZE + SIZE_IPPORT + MAC_SIZE);

/**
 * The node side (handle_data_request): whom a 0x85 is for, and the 0x86 it becomes
 * (nonce ‖ E_pk ‖ box). D sees it with RETURN_3 appended and takes 106..1223 bytes of it: an
 * outer box must hold more than its MAC, and the whole must fit ONION_MAX_PACKET_SIZE.
 */
export function decodeDataRequest(
  packet: Uint8Array,
): Decoded<{ readonly destination: Uint8Array; readonly response: Uint8Array }> {
  if (packet.length <= ONION_DATA_REQUEST_MIN_SIZE) {
    return codecError("too_short", `data request: ${packet.length} bytes`);
  }
  if (packet.length > ONION_MAX_PACKET_SIZE - ONION_RETURN_3) {
    return codecError("too_long", `data request: ${packet.length} bytes`);
  }
  if (packet[0] !== NET_PACKET_ONION_DATA_REQUEST) {
    return codecError("unknown_id", `data request: id ${packet[0]}`);
  }
  const response = new Uint8Array(packet.length - PUBLIC_KEY_SIZE);
  response[0] = NET_PACKET_ONION_DATA_RESPONSE;
  response.set(packet.subarray(1 + PUBLIC_KEY_SIZE), 1);
  return decoded({ destination: packet.slice(1, 1 + PUBLIC_KEY_SIZE), response });
}

/**
 * What a 0x86 shows without keys: the sender's one-off key E, within the receiver's length
 * limits (c-toxcore drops a data response outside 122..1069 bytes).
 */
export function dataResponseKey(packet: Uint8Array): Decoded<Uint8Array> {
  const min = ONION_DATA_RESPONSE_MIN_SIZE + ONION_DATA_IN_RESPONSE_MIN_SIZE + 1;
  if (packet.length < min || packet.length > MAX_DATA_REQUEST_SIZE) {
    return codecError(
      packet.length < min ? "too_short" : "too_long",
      `data response: ${packet.length} bytes, must be ${min}..${MAX_DATA_REQUEST_SIZE}`,
    );
  }
  if (packet[0] !== NET_PACKET_ONION_DATA_RESPONSE) {
    return codecError("unknown_id", `data response: id ${packet[0]}`);
  }
  return decoded(idNonceKeyBox(packet).publicKey);
}

/**
 * handle_data_response: open the outer box with our onion data key, the inner one with our
 * real key and the sender's; `sender` is the real key the inner box proves.
 */
export function openDataResponse(
  packet: Uint8Array,
  ourDataSecretKey: Uint8Array,
  ourRealSecretKey: Uint8Array,
): Decoded<{ readonly sender: Uint8Array; readonly payload: Uint8Array }> {
  // c-toxcore's limits: a sender learns the same ones from us.
  const key = dataResponseKey(packet);
  if (!key.ok) return key;
  const { nonce, publicKey: ePk, box } = idNonceKeyBox(packet);
  const outer = openBetween(ePk, ourDataSecretKey, nonce, box, "data response (outer box)");
  if (!outer.ok) return outer;
  const inner = outer.value.plain;
  const sender = inner.slice(0, PUBLIC_KEY_SIZE);
  const innerBox = inner.subarray(PUBLIC_KEY_SIZE);
  const r = openBetween(sender, ourRealSecretKey, nonce, innerBox, "data response (inner box)");
  if (!r.ok) return r;
  return decoded({ sender, payload: r.value.plain });
}

// ---- onion data payloads ---------------------------------------------------------------------

export interface DhtPkAnnounce {
  /** Strictly increasing per sender (c-toxcore: its clock in seconds). */
  readonly noReplay: bigint;
  readonly dhtPublicKey: Uint8Array;
  /** Up to 4: our TCP relays first (types 130/138), then DHT nodes (we have none). */
  readonly nodes: readonly PackedNode[];
}

/** A received DHT-PK; `nodesError` when its nodes did not unpack (the key still counts). */
export type DhtPkReceived = DhtPkAnnounce & { readonly nodesError: string | null };

export function encodeDhtPk(p: DhtPkAnnounce): Uint8Array {
  if (p.dhtPublicKey.length !== PUBLIC_KEY_SIZE) {
    throw new EncodeError("DHT-PK: key must be 32 bytes");
  }
  if (p.nodes.length > MAX_SENT_NODES) {
    throw new EncodeError(`DHT-PK: at most ${MAX_SENT_NODES} nodes`);
  }
  if (p.noReplay < 0n || p.noReplay > 0xffff_ffff_ffff_ffffn) {
    throw new EncodeError("DHT-PK: no_replay is a u64");
  }
  const nodes = encodePackedNodes(p.nodes);
  const out = new Uint8Array(DHTPK_DATA_MIN_LENGTH + nodes.length);
  out[0] = ONION_DATA_DHTPK;
  new DataView(out.buffer).setBigUint64(1, p.noReplay, false);
  out.set(p.dhtPublicKey, 9);
  out.set(nodes, DHTPK_DATA_MIN_LENGTH);
  return out;
}

/**
 * handle_dhtpk_announce's reading: 41..265 bytes; the DHT key counts even when the nodes do
 * not unpack (c-toxcore hands the key on before it looks at them), and what follows the
 * fourth node is not read.
 */
export function decodeDhtPk(payload: Uint8Array): Decoded<DhtPkReceived> {
  if (payload.length < DHTPK_DATA_MIN_LENGTH) {
    return codecError(
      "too_short",
      `DHT-PK: ${payload.length} bytes, minimum ${DHTPK_DATA_MIN_LENGTH}`,
    );
  }
  if (payload.length > DHTPK_DATA_MAX_LENGTH) {
    return codecError("too_long", `DHT-PK: ${payload.length} bytes, over ${DHTPK_DATA_MAX_LENGTH}`);
  }
  if (payload[0] !== ONION_DATA_DHTPK) return codecError("unknown_id", `DHT-PK: id ${payload[0]}`);
  const rest = payload.subarray(DHTPK_DATA_MIN_LENGTH);
  let nodes: PackedNode[] = [];
  let nodesError: string | null = null;
  if (rest.length > 0) {
    const d = decodePackedNodes(rest, MAX_SENT_NODES);
    if (d.ok) nodes = d.value.nodes;
    else nodesError = d.error.message;
  }
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return decoded({
    noReplay: dv.getBigUint64(1, false),
    dhtPublicKey: payload.slice(9, 9 + PUBLIC_KEY_SIZE),
    nodes,
    nodesError,
  });
}

export const NOSPAM_SIZE = 4;

/** Onion data 0x20: nospam (the bytes of the Tox ID) ‖ message. */
export function encodeFriendRequest(nospam: Uint8Array, message: Uint8Array): Uint8Array {
  if (nospam.length !== NOSPAM_SIZE) throw new EncodeError("friend request: nospam is 4 bytes");
  if (message.length === 0) throw new EncodeError("friend request: the message must not be empty");
  const out = new Uint8Array(1 + NOSPAM_SIZE + message.length);
  out[0] = ONION_DATA_FRIEND_REQ;
  out.set(nospam, 1);
  out.set(message, 1 + NOSPAM_SIZE);
  if (out.length > ONION_CLIENT_MAX_DATA_SIZE) {
    throw new EncodeError(`friend request: ${message.length}-byte message is too long`);
  }
  return out;
}

/** friendreq_handlepacket's length rule: more than the nospam, at most 1021 in all. */
export function decodeFriendRequest(
  payload: Uint8Array,
): Decoded<{ readonly nospam: Uint8Array; readonly message: Uint8Array }> {
  if (payload.length <= 1 + NOSPAM_SIZE) {
    return codecError("too_short", `friend request: ${payload.length} bytes, no message`);
  }
  if (payload.length > ONION_CLIENT_MAX_DATA_SIZE) {
    return codecError("too_long", `friend request: ${payload.length} bytes`);
  }
  if (payload[0] !== ONION_DATA_FRIEND_REQ) {
    return codecError("unknown_id", `friend request: id ${payload[0]}`);
  }
  return decoded({ nospam: payload.slice(1, 5), message: payload.slice(5) });
}

/**
 * The payloads inside net_crypto data packets: net_crypto's own (padding, request, kill), the
 * friend_connection packets (ALIVE, SHARE_RELAYS, FRIEND_REQUESTS) and Messenger's (c-toxcore
 * 0.2.18 net_crypto.h, friend_connection.h, Messenger.c; spec/friend_connection.md §2, §4.1).
 * One codec for the daemon, the capture decoder and the tests.
 *
 * decodeFriendPacket applies exactly the receive rules friend_connection.ts and messenger.ts
 * apply (a packet they would ignore is a typed error here); encodeFriendPacket throws
 * EncodeError for anything those rules would refuse, so we never send what a peer drops.
 *
 * The PACKET_ID_* values of friend_connection.ts and messenger.ts are defined here and
 * re-exported by them: both modules import this one, so it must import neither (a constant
 * read at module load across an import cycle would be in its temporal dead zone).
 */
import { codecError, type Decoded, decoded, EncodeError } from "../common/codec.ts";
import {
  MAX_CRYPTO_DATA_SIZE,
  PACKET_ID_KILL,
  PACKET_ID_PADDING,
  PACKET_ID_RANGE_LOSSLESS_START,
  PACKET_ID_RANGE_LOSSY_END,
  PACKET_ID_RANGE_LOSSY_START,
  PACKET_ID_REQUEST,
} from "../net_crypto/packets.ts";
import { decodePackedNodes, encodePackedNodes, type PackedNode } from "../common/packed_node.ts";

export { PACKET_ID_KILL, PACKET_ID_PADDING, PACKET_ID_REQUEST };

// friend_connection.h
export const PACKET_ID_ALIVE = 16;
export const PACKET_ID_SHARE_RELAYS = 17;
export const PACKET_ID_FRIEND_REQUESTS = 18;
// net_crypto.h, Messenger's part
export const PACKET_ID_ONLINE = 24;
export const PACKET_ID_OFFLINE = 25;
export const PACKET_ID_NICKNAME = 48;
export const PACKET_ID_STATUSMESSAGE = 49;
export const PACKET_ID_USERSTATUS = 50;
export const PACKET_ID_TYPING = 51;
export const PACKET_ID_MESSAGE = 64;
export const PACKET_ID_ACTION = 65;
export const PACKET_ID_MSI = 69;
export const PACKET_ID_FILE_SENDREQUEST = 80;
export const PACKET_ID_FILE_CONTROL = 81;
export const PACKET_ID_FILE_DATA = 82;
export const PACKET_ID_INVITE_CONFERENCE = 96;
export const PACKET_ID_ONLINE_PACKET = 97;
export const PACKET_ID_DIRECT_CONFERENCE = 98;
export const PACKET_ID_MESSAGE_CONFERENCE = 99;
export const PACKET_ID_REJOIN_CONFERENCE = 100;
export const PACKET_ID_LOSSY_CONFERENCE = 199;

export const MAX_NAME_LENGTH = 128;
export const MAX_STATUSMESSAGE_LENGTH = 1007;
/** TOX_MAX_MESSAGE_LENGTH: a whole net_crypto payload minus the id. */
export const MAX_MESSAGE_LENGTH = MAX_CRYPTO_DATA_SIZE - 1;
export const CUSTOM_LOSSLESS_FIRST = 160;
export const CUSTOM_LOSSLESS_LAST = 191;
export const CUSTOM_LOSSY_FIRST = 200;
export const CUSTOM_LOSSY_LAST = 254;
/** MAX_SHARED_RELAYS: friend_connection's default for both sending and reading SHARE_RELAYS. */
export const MAX_SHARED_RELAYS = 3;

export type UserStatus = "none" | "away" | "busy";
/** By their wire value (USERSTATUS_NONE, _AWAY, _BUSY). */
export const USER_STATUSES: readonly UserStatus[] = ["none", "away", "busy"];

export type FriendPacket =
  | { readonly kind: "padding" }
  /** Resend request / ack list (net_crypto.md §8.3); walk it with walkRequestPacket. */
  | { readonly kind: "request"; readonly body: Uint8Array }
  | { readonly kind: "kill" }
  | { readonly kind: "alive" }
  | { readonly kind: "share_relays"; readonly nodes: readonly PackedNode[] }
  /** nospam(4) ‖ message, for the friend request module; passed on as is. */
  | { readonly kind: "friend_requests"; readonly data: Uint8Array }
  | { readonly kind: "online" }
  | { readonly kind: "offline" }
  | { readonly kind: "nickname"; readonly name: string }
  | { readonly kind: "status_message"; readonly text: string }
  | { readonly kind: "user_status"; readonly status: UserStatus }
  | { readonly kind: "typing"; readonly typing: boolean }
  | { readonly kind: "message"; readonly text: string }
  | { readonly kind: "action"; readonly text: string }
  /** The whole packet, id byte (160..191) included, as tox.h hands it to clients. */
  | { readonly kind: "custom_lossless"; readonly data: Uint8Array }
  /** The whole packet, id byte (200..254) included. */
  | { readonly kind: "custom_lossy"; readonly data: Uint8Array }
  /** Any other id in 16..254 (file transfer, conferences, A/V...): named, body after the id. */
  | {
    readonly kind: "other";
    readonly id: number;
    readonly name: string;
    readonly data: Uint8Array;
  };

export type FriendPacketKind = FriendPacket["kind"];

export interface FriendPacketOptions {
  /**
   * How many SHARE_RELAYS nodes are read, and may be sent (friend_connection's
   * maxSharedRelays); MAX_SHARED_RELAYS when absent.
   */
  readonly maxSharedRelays?: number;
}

/** Names of the ids that are neither ours to decode nor custom, by c-toxcore 0.2.18. */
const OTHER_NAMES = new Map<number, string>([
  [PACKET_ID_MSI, "msi"],
  [PACKET_ID_FILE_SENDREQUEST, "file_sendrequest"],
  [PACKET_ID_FILE_CONTROL, "file_control"],
  [PACKET_ID_FILE_DATA, "file_data"],
  [PACKET_ID_INVITE_CONFERENCE, "conference_invite"],
  [PACKET_ID_ONLINE_PACKET, "conference_online"],
  [PACKET_ID_DIRECT_CONFERENCE, "conference_direct"],
  [PACKET_ID_MESSAGE_CONFERENCE, "conference_message"],
  [PACKET_ID_REJOIN_CONFERENCE, "conference_rejoin"],
  // toxav: RTP_TYPE_AUDIO, RTP_TYPE_VIDEO, BWC_PACKET_ID
  [192, "av_audio"],
  [193, "av_video"],
  [196, "av_bandwidth"],
  [PACKET_ID_LOSSY_CONFERENCE, "conference_lossy"],
]);

const NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (let id = 0; id < 256; id++) {
    let name: string;
    if (id >= 3 && id < PACKET_ID_RANGE_LOSSLESS_START) name = "reserved";
    else if (id >= CUSTOM_LOSSLESS_FIRST && id <= CUSTOM_LOSSLESS_LAST) name = "custom_lossless";
    else if (id >= CUSTOM_LOSSY_FIRST && id <= CUSTOM_LOSSY_LAST) name = "custom_lossy";
    else name = OTHER_NAMES.get(id) ?? "unknown";
    names.push(name);
  }
  const typed: [number, FriendPacketKind][] = [
    [PACKET_ID_PADDING, "padding"],
    [PACKET_ID_REQUEST, "request"],
    [PACKET_ID_KILL, "kill"],
    [PACKET_ID_ALIVE, "alive"],
    [PACKET_ID_SHARE_RELAYS, "share_relays"],
    [PACKET_ID_FRIEND_REQUESTS, "friend_requests"],
    [PACKET_ID_ONLINE, "online"],
    [PACKET_ID_OFFLINE, "offline"],
    [PACKET_ID_NICKNAME, "nickname"],
    [PACKET_ID_STATUSMESSAGE, "status_message"],
    [PACKET_ID_USERSTATUS, "user_status"],
    [PACKET_ID_TYPING, "typing"],
    [PACKET_ID_MESSAGE, "message"],
    [PACKET_ID_ACTION, "action"],
  ];
  for (const [id, kind] of typed) names[id] = kind;
  return names;
})();

/**
 * The name of a payload id: a FriendPacket kind, one of the `other` names (msi,
 * file_sendrequest, file_control, file_data, conference_*, av_*), "reserved" (3..15) or
 * "unknown" (unassigned ids and 255).
 */
export function friendPacketName(id: number): string {
  return NAMES[id & 0xff];
}

/** Ids 192..254 travel lossy (no packet number of their own, never resent). */
export function isLossyId(id: number): boolean {
  return id >= PACKET_ID_RANGE_LOSSY_START && id <= PACKET_ID_RANGE_LOSSY_END;
}

const encoder = new TextEncoder();
// Invalid UTF-8 becomes U+FFFD, as Messenger shows it: text is for display.
const decoder = new TextDecoder();

function exactBody(name: string, body: Uint8Array, n: number): Decoded<never> | null {
  if (body.length === n) return null;
  return codecError("wrong_length", `${name}: ${body.length} body bytes, expected ${n}`);
}

function maxBody(name: string, body: Uint8Array, max: number): Decoded<never> | null {
  if (body.length <= max) return null;
  return codecError("too_long", `${name}: ${body.length} bytes, maximum ${max}`);
}

/**
 * One payload (id byte first) as delivered by net_crypto. Byte fields are views into
 * `payload`; copy them if it is reused. Rules (friend_connection.ts, messenger.ts):
 * online/offline have no body; nickname ≤ 128 and status message ≤ 1007 bytes; user status
 * is one byte < 3; typing one byte; message and action not empty; share_relays unpacks up
 * to 3 nodes (bytes after them ignored), one bad node fails it; ids 3..15 and 255 are
 * refused as net_crypto refuses them.
 */
export function decodeFriendPacket(
  payload: Uint8Array,
  opts: FriendPacketOptions = {},
): Decoded<FriendPacket> {
  if (payload.length === 0) return codecError("too_short", "friend packet: empty payload");
  if (payload.length > MAX_CRYPTO_DATA_SIZE) {
    return codecError(
      "too_long",
      `friend packet: ${payload.length} bytes, maximum ${MAX_CRYPTO_DATA_SIZE}`,
    );
  }
  const id = payload[0];
  const body = payload.subarray(1);
  switch (id) {
    case PACKET_ID_PADDING:
      return decoded({ kind: "padding" });
    case PACKET_ID_REQUEST:
      return decoded({ kind: "request", body });
    case PACKET_ID_KILL:
      return decoded({ kind: "kill" });
    case PACKET_ID_ALIVE:
      // friend_connection reads nothing after the id, so any body is accepted.
      return decoded({ kind: "alive" });
    case PACKET_ID_SHARE_RELAYS: {
      const r = decodePackedNodes(body, opts.maxSharedRelays ?? MAX_SHARED_RELAYS);
      if (!r.ok) return codecError(r.error.code, `share_relays: ${r.error.message}`);
      return decoded({ kind: "share_relays", nodes: r.value.nodes });
    }
    case PACKET_ID_FRIEND_REQUESTS:
      return decoded({ kind: "friend_requests", data: body });
    case PACKET_ID_ONLINE:
      return exactBody("online", body, 0) ?? decoded({ kind: "online" });
    case PACKET_ID_OFFLINE:
      return exactBody("offline", body, 0) ?? decoded({ kind: "offline" });
    case PACKET_ID_NICKNAME:
      return maxBody("nickname", body, MAX_NAME_LENGTH) ??
        decoded({ kind: "nickname", name: decoder.decode(body) });
    case PACKET_ID_STATUSMESSAGE:
      return maxBody("status_message", body, MAX_STATUSMESSAGE_LENGTH) ??
        decoded({ kind: "status_message", text: decoder.decode(body) });
    case PACKET_ID_USERSTATUS: {
      const bad = exactBody("user_status", body, 1);
      if (bad !== null) return bad;
      if (body[0] >= USER_STATUSES.length) {
        return codecError("out_of_range", `user_status: value ${body[0]} (0..2 are defined)`);
      }
      return decoded({ kind: "user_status", status: USER_STATUSES[body[0]] });
    }
    case PACKET_ID_TYPING:
      return exactBody("typing", body, 1) ?? decoded({ kind: "typing", typing: body[0] !== 0 });
    case PACKET_ID_MESSAGE:
    case PACKET_ID_ACTION: {
      const kind = id === PACKET_ID_MESSAGE ? "message" as const : "action" as const;
      if (body.length === 0) return codecError("too_short", `${kind}: empty text`);
      return decoded({ kind, text: decoder.decode(body) });
    }
  }
  if (id >= CUSTOM_LOSSLESS_FIRST && id <= CUSTOM_LOSSLESS_LAST) {
    return decoded({ kind: "custom_lossless", data: payload });
  }
  if (id >= CUSTOM_LOSSY_FIRST && id <= CUSTOM_LOSSY_LAST) {
    return decoded({ kind: "custom_lossy", data: payload });
  }
  if (id < PACKET_ID_RANGE_LOSSLESS_START) {
    return codecError("reserved_id", `friend packet: id ${id} is reserved for net_crypto`);
  }
  if (id > PACKET_ID_RANGE_LOSSY_END) {
    return codecError("unknown_id", `friend packet: id ${id} is invalid`);
  }
  return decoded({ kind: "other", id, name: NAMES[id], data: body });
}

function withId(id: number, body: Uint8Array): Uint8Array {
  const p = new Uint8Array(1 + body.length);
  p[0] = id;
  p.set(body, 1);
  return p;
}

function textBody(kind: string, text: string, min: number, max: number): Uint8Array {
  const body = encoder.encode(text);
  if (body.length < min || body.length > max) {
    throw new EncodeError(`${kind}: ${body.length} bytes of UTF-8, must be ${min}..${max}`);
  }
  return body;
}

function customData(kind: string, data: Uint8Array, first: number, last: number): Uint8Array {
  if (data.length === 0 || data.length > MAX_CRYPTO_DATA_SIZE) {
    throw new EncodeError(`${kind}: ${data.length} bytes, must be 1..${MAX_CRYPTO_DATA_SIZE}`);
  }
  if (data[0] < first || data[0] > last) {
    throw new EncodeError(`${kind}: id ${data[0]} is not in ${first}..${last}`);
  }
  return data.slice();
}

/**
 * The payload for `p` (id byte first), ready for net_crypto. Throws EncodeError for what
 * decodeFriendPacket would refuse: a name over 128 bytes, an empty or too long message,
 * more than 3 relays (opts.maxSharedRelays), a custom packet outside its id range, an
 * `other` id that has a kind of its own or lies outside 16..254.
 */
export function encodeFriendPacket(p: FriendPacket, opts: FriendPacketOptions = {}): Uint8Array {
  switch (p.kind) {
    case "padding":
      return Uint8Array.of(PACKET_ID_PADDING);
    case "request":
      if (1 + p.body.length > MAX_CRYPTO_DATA_SIZE) {
        throw new EncodeError(`request: body of ${p.body.length} bytes is too long`);
      }
      return withId(PACKET_ID_REQUEST, p.body);
    case "kill":
      return Uint8Array.of(PACKET_ID_KILL);
    case "alive":
      return Uint8Array.of(PACKET_ID_ALIVE);
    case "share_relays": {
      const max = opts.maxSharedRelays ?? MAX_SHARED_RELAYS;
      if (p.nodes.length > max) {
        throw new EncodeError(`share_relays: ${p.nodes.length} nodes, a peer reads at most ${max}`);
      }
      return withId(PACKET_ID_SHARE_RELAYS, encodePackedNodes(p.nodes));
    }
    case "friend_requests":
      if (1 + p.data.length > MAX_CRYPTO_DATA_SIZE) {
        throw new EncodeError(`friend_requests: ${p.data.length} bytes is too long`);
      }
      return withId(PACKET_ID_FRIEND_REQUESTS, p.data);
    case "online":
      return Uint8Array.of(PACKET_ID_ONLINE);
    case "offline":
      return Uint8Array.of(PACKET_ID_OFFLINE);
    case "nickname":
      return withId(PACKET_ID_NICKNAME, textBody(p.kind, p.name, 0, MAX_NAME_LENGTH));
    case "status_message":
      return withId(
        PACKET_ID_STATUSMESSAGE,
        textBody(p.kind, p.text, 0, MAX_STATUSMESSAGE_LENGTH),
      );
    case "user_status": {
      const n = USER_STATUSES.indexOf(p.status);
      if (n < 0) throw new EncodeError(`user_status: ${String(p.status)} is not none/away/busy`);
      return Uint8Array.of(PACKET_ID_USERSTATUS, n);
    }
    case "typing":
      return Uint8Array.of(PACKET_ID_TYPING, p.typing ? 1 : 0);
    case "message":
      return withId(PACKET_ID_MESSAGE, textBody(p.kind, p.text, 1, MAX_MESSAGE_LENGTH));
    case "action":
      return withId(PACKET_ID_ACTION, textBody(p.kind, p.text, 1, MAX_MESSAGE_LENGTH));
    case "custom_lossless":
      return customData(p.kind, p.data, CUSTOM_LOSSLESS_FIRST, CUSTOM_LOSSLESS_LAST);
    case "custom_lossy":
      return customData(p.kind, p.data, CUSTOM_LOSSY_FIRST, CUSTOM_LOSSY_LAST);
    case "other": {
      const id = p.id;
      if (!isOtherId(id)) {
        throw new EncodeError(`other: id ${id} is not a free id in 16..254 (use its own kind)`);
      }
      if (1 + p.data.length > MAX_CRYPTO_DATA_SIZE) {
        throw new EncodeError(`other: ${p.data.length} bytes is too long`);
      }
      return withId(id, p.data);
    }
  }
}

/** Ids that decode as `other`: in 16..254, neither a kind of their own nor a custom range. */
function isOtherId(id: number): boolean {
  if (!Number.isInteger(id) || id < PACKET_ID_RANGE_LOSSLESS_START) return false;
  if (id > PACKET_ID_RANGE_LOSSY_END) return false;
  return NAMES[id] === "unknown" || OTHER_NAMES.has(id);
}

/**
 * The Messenger subset (c-toxcore 0.2.18 Messenger.c) a TCP-only client needs to be seen
 * online and to talk: the ONLINE exchange, nickname, status message, user status, typing,
 * messages and actions with receipts, custom lossless (160-191) and lossy (200-254) packets.
 *
 * It sits on friend_connection and, like everything in daemon/, is sans-I/O: commands and
 * TCP_connections events in, events and relay actions (via TcpConnections) out.
 *
 * Rules that matter on the wire (spec/friend_connection.md §4):
 * - ONLINE [24] is the first lossless packet of every session; the friend is online for us
 *   only once its ONLINE arrives, and until then its other Messenger packets are dropped.
 * - A receipt is the friend's buffer_start passing the message's packet number. Messages
 *   still unconfirmed when the session dies are reported failed (c-toxcore drops them
 *   silently; the user must know to resend).
 */
import type { NetCryptoKeys } from "./capture/keylog.ts";
import { type KeyPair, type RandomBytes, toHex } from "./crypto.ts";
import type { RelayAddress } from "./relay_address.ts";
import type { TcpConnections, TcpConnectionsEvent } from "./tcp_connections.ts";
import {
  type DhtKeySource,
  type FriendConnectionConfig,
  type FriendConnectionEvent,
  FriendConnections,
  type FriendView,
} from "./friend_connection.ts";
import type { KillCause } from "./net_crypto/connection.ts";
import type { NetCryptoStats } from "./net_crypto/net_crypto.ts";
import { u32Distance } from "./net_crypto/packet_arrays.ts";
import { MAX_CRYPTO_DATA_SIZE } from "./net_crypto/packets.ts";
import { EncodeError } from "./codec.ts";
import {
  CUSTOM_LOSSLESS_FIRST,
  CUSTOM_LOSSLESS_LAST,
  CUSTOM_LOSSY_FIRST,
  CUSTOM_LOSSY_LAST,
  decodeFriendPacket,
  encodeFriendPacket,
  type FriendPacket,
  MAX_MESSAGE_LENGTH,
  MAX_NAME_LENGTH,
  MAX_STATUSMESSAGE_LENGTH,
  USER_STATUSES,
  type UserStatus,
} from "./friend_packets.ts";

// The wire constants live in the one codec (friend_packets.ts); importers of them from here
// (control.ts, config.ts, state_store.ts, the tests) keep working.
export {
  CUSTOM_LOSSLESS_FIRST,
  CUSTOM_LOSSLESS_LAST,
  CUSTOM_LOSSY_FIRST,
  CUSTOM_LOSSY_LAST,
  MAX_MESSAGE_LENGTH,
  MAX_NAME_LENGTH,
  MAX_STATUSMESSAGE_LENGTH,
  PACKET_ID_ACTION,
  PACKET_ID_MESSAGE,
  PACKET_ID_NICKNAME,
  PACKET_ID_OFFLINE,
  PACKET_ID_ONLINE,
  PACKET_ID_STATUSMESSAGE,
  PACKET_ID_TYPING,
  PACKET_ID_USERSTATUS,
} from "./friend_packets.ts";
export type { UserStatus } from "./friend_packets.ts";

export type MessageKind = "normal" | "action";

export type MessengerEvent =
  | FriendConnectionEvent
  /** Messenger-level online: the friend's ONLINE packet arrived (what tox.h reports). */
  | {
    readonly type: "friend_online";
    readonly friend: string;
  }
  | {
    readonly type: "friend_offline";
    readonly friend: string;
    readonly cause: KillCause | "offline_packet";
    readonly reason: string;
  }
  | {
    readonly type: "friend_message";
    readonly friend: string;
    readonly kind: MessageKind;
    readonly text: string;
  }
  | { readonly type: "friend_receipt"; readonly friend: string; readonly messageId: number }
  | {
    readonly type: "friend_message_failed";
    readonly friend: string;
    readonly messageIds: readonly number[];
    readonly reason: string;
  }
  | { readonly type: "friend_name"; readonly friend: string; readonly name: string }
  | {
    readonly type: "friend_status_message";
    readonly friend: string;
    readonly statusMessage: string;
  }
  | { readonly type: "friend_user_status"; readonly friend: string; readonly status: UserStatus }
  | { readonly type: "friend_typing"; readonly friend: string; readonly typing: boolean }
  | { readonly type: "friend_lossless"; readonly friend: string; readonly data: Uint8Array }
  | { readonly type: "friend_lossy"; readonly friend: string; readonly data: Uint8Array };

export type MessengerResult<T = unknown> =
  | ({ readonly ok: true } & T)
  | {
    readonly ok: false;
    readonly reason:
      | "not_friend"
      | "not_online"
      | "invalid"
      | "too_long"
      | "send_queue_full"
      | "dropped";
    readonly message: string;
  };

export interface Profile {
  readonly name: string;
  readonly statusMessage: string;
  readonly userStatus: UserStatus;
}

export interface MessengerFriendView extends FriendView {
  readonly online: boolean;
  readonly name: string;
  readonly statusMessage: string;
  readonly userStatus: UserStatus;
  readonly typing: boolean;
  readonly pendingReceipts: number;
  readonly messagesSent: number;
  readonly messagesReceived: number;
}

interface MessengerFriend {
  readonly hex: string;
  online: boolean;
  name: string;
  statusMessage: string;
  userStatus: UserStatus;
  typing: boolean;
  weAreTyping: boolean;
  nextMessageId: number;
  /** (packet number, message id), in sending order. */
  receipts: { packetNumber: number; messageId: number }[];
  messagesSent: number;
  messagesReceived: number;
}

export interface MessengerOptions {
  readonly now: number;
  readonly random: RandomBytes;
  /** Long-term key (the Tox ID's key). */
  readonly realKeys: KeyPair;
  /** The key relays know us by. */
  readonly dhtKeys: KeyPair;
  readonly tcp: TcpConnections;
  readonly profile?: Partial<Profile>;
  readonly config?: Partial<FriendConnectionConfig>;
  /** The opt-in key log (NetCryptoOptions.keylog). */
  readonly keylog?: (keys: NetCryptoKeys) => void;
}

// Only to measure user input before encoding; the codec encodes (and decodes) the text.
const encoder = new TextEncoder();

/**
 * encodeFriendPacket for a packet built from state the user commands did not check (the
 * profile given to the constructor): null instead of an EncodeError.
 */
function encodeUnchecked(p: FriendPacket): Uint8Array | null {
  try {
    return encodeFriendPacket(p);
  } catch (e) {
    if (e instanceof EncodeError) return null;
    throw e;
  }
}

export class Messenger {
  readonly #fc: FriendConnections;
  readonly #tcp: TcpConnections;
  readonly #friends = new Map<string, MessengerFriend>();
  #profile: Profile;
  #events: MessengerEvent[] = [];
  #now: number;

  constructor(opts: MessengerOptions) {
    this.#tcp = opts.tcp;
    this.#now = opts.now;
    this.#profile = {
      name: opts.profile?.name ?? "",
      statusMessage: opts.profile?.statusMessage ?? "",
      userStatus: opts.profile?.userStatus ?? "none",
    };
    this.#fc = new FriendConnections({
      now: opts.now,
      random: opts.random,
      realKeys: opts.realKeys,
      dhtKeys: opts.dhtKeys,
      tcp: opts.tcp,
      config: opts.config,
      keylog: opts.keylog,
    });
  }

  netCryptoStats(): NetCryptoStats {
    return this.#fc.netCryptoStats();
  }

  get profile(): Profile {
    return this.#profile;
  }

  takeEvents(): MessengerEvent[] {
    this.#pump();
    const e = this.#events;
    this.#events = [];
    return e;
  }

  // ---- friends ----------------------------------------------------------------------------

  /** m_addfriend_norequest. */
  addFriend(publicKey: Uint8Array, now: number): MessengerResult {
    this.#now = now;
    const r = this.#fc.add(publicKey, now);
    if (!r.ok) return { ok: false, reason: "invalid", message: r.message };
    const hex = toHex(publicKey);
    if (!this.#friends.has(hex)) {
      this.#friends.set(hex, {
        hex,
        online: false,
        name: "",
        statusMessage: "",
        userStatus: "none",
        typing: false,
        weAreTyping: false,
        nextMessageId: 1,
        receipts: [],
        messagesSent: 0,
        messagesReceived: 0,
      });
    }
    this.#pump();
    return { ok: true };
  }

  /** We are going away: every session is killed (KILL packets), friends are kept. */
  shutdown(now: number): void {
    this.#now = now;
    this.#fc.shutdown(now);
    this.#pump();
  }

  /** m_delfriend: OFFLINE first if it is online, then the session is killed. */
  removeFriend(friend: string, now: number): MessengerResult {
    this.#now = now;
    const f = this.#friends.get(friend);
    if (!f) return { ok: false, reason: "not_friend", message: "not a friend" };
    if (f.online) this.#fc.sendLossless(friend, encodeFriendPacket({ kind: "offline" }), now, true);
    this.#fc.remove(friend, now);
    this.#pump();
    this.#failReceipts(f, "friend removed");
    this.#friends.delete(friend);
    return { ok: true };
  }

  /** A friend's DHT key and relays, given by the user (until the onion finds them). */
  hint(
    friend: string,
    dhtPublicKey: Uint8Array | null,
    relays: readonly RelayAddress[],
    now: number,
    source: DhtKeySource = "hint",
  ): MessengerResult {
    this.#now = now;
    if (!this.#friends.has(friend)) return { ok: false, reason: "not_friend", message: "unknown" };
    const r = this.#fc.learn(friend, dhtPublicKey, relays, source, now);
    this.#pump();
    return r.ok ? { ok: true } : { ok: false, reason: "invalid", message: r.message };
  }

  // ---- sending ----------------------------------------------------------------------------

  /** m_send_message_generic: a receipt follows once the friend has the packet. */
  sendMessage(
    friend: string,
    text: string,
    kind: MessageKind,
    now: number,
  ): MessengerResult<{ messageId: number }> {
    const body = encoder.encode(text);
    if (body.length === 0) return { ok: false, reason: "invalid", message: "empty message" };
    if (body.length > MAX_MESSAGE_LENGTH) {
      return {
        ok: false,
        reason: "too_long",
        message: `message of ${body.length} bytes (max ${MAX_MESSAGE_LENGTH})`,
      };
    }
    const f = this.#online(friend);
    if ("reason" in f) return f;
    // 1..MAX_MESSAGE_LENGTH bytes, checked above: the codec will not refuse it.
    const payload = encodeFriendPacket({ kind: kind === "action" ? "action" : "message", text });
    const r = this.#fc.sendLossless(friend, payload, now, true);
    this.#pump();
    if (!r.ok) return this.#refusal(r.reason, r.message);
    const messageId = f.nextMessageId;
    f.nextMessageId = f.nextMessageId >= 0xffffffff ? 1 : f.nextMessageId + 1;
    f.receipts.push({ packetNumber: r.packetNumber, messageId });
    f.messagesSent++;
    return { ok: true, messageId };
  }

  /** tox_friend_send_lossless_packet: data[0] in 160..191; congestion controlled. */
  sendLossless(friend: string, data: Uint8Array, now: number): MessengerResult {
    if (
      data.length === 0 || data.length > MAX_CRYPTO_DATA_SIZE ||
      data[0] < CUSTOM_LOSSLESS_FIRST || data[0] > CUSTOM_LOSSLESS_LAST
    ) {
      return {
        ok: false,
        reason: "invalid",
        message: `custom lossless packets are 1..${MAX_CRYPTO_DATA_SIZE} bytes, id 160..191`,
      };
    }
    const f = this.#online(friend);
    if ("reason" in f) return f;
    const r = this.#fc.sendLossless(friend, data, now);
    this.#pump();
    return r.ok ? { ok: true } : this.#refusal(r.reason, r.message);
  }

  /** tox_friend_send_lossy_packet: data[0] in 200..254; dropped if it cannot go now. */
  sendLossy(friend: string, data: Uint8Array, now: number): MessengerResult {
    if (
      data.length === 0 || data.length > MAX_CRYPTO_DATA_SIZE ||
      data[0] < CUSTOM_LOSSY_FIRST || data[0] > CUSTOM_LOSSY_LAST
    ) {
      return {
        ok: false,
        reason: "invalid",
        message: `custom lossy packets are 1..${MAX_CRYPTO_DATA_SIZE} bytes, id 200..254`,
      };
    }
    const f = this.#online(friend);
    if ("reason" in f) return f;
    const ok = this.#fc.sendLossy(friend, data, now);
    this.#pump();
    return ok ? { ok: true } : { ok: false, reason: "dropped", message: "no room on the path" };
  }

  setName(name: string, now: number): MessengerResult {
    const body = encoder.encode(name);
    if (body.length > MAX_NAME_LENGTH) {
      return { ok: false, reason: "too_long", message: `name over ${MAX_NAME_LENGTH} bytes` };
    }
    this.#profile = { ...this.#profile, name };
    this.#broadcast(encodeFriendPacket({ kind: "nickname", name }), now);
    return { ok: true };
  }

  setStatusMessage(text: string, now: number): MessengerResult {
    const body = encoder.encode(text);
    if (body.length > MAX_STATUSMESSAGE_LENGTH) {
      return {
        ok: false,
        reason: "too_long",
        message: `status message over ${MAX_STATUSMESSAGE_LENGTH} bytes`,
      };
    }
    this.#profile = { ...this.#profile, statusMessage: text };
    this.#broadcast(encodeFriendPacket({ kind: "status_message", text }), now);
    return { ok: true };
  }

  setUserStatus(status: UserStatus, now: number): MessengerResult {
    if (!USER_STATUSES.includes(status)) {
      return { ok: false, reason: "invalid", message: `user status ${status}` };
    }
    this.#profile = { ...this.#profile, userStatus: status };
    this.#broadcast(encodeFriendPacket({ kind: "user_status", status }), now);
    return { ok: true };
  }

  setTyping(friend: string, typing: boolean, now: number): MessengerResult {
    const f = this.#online(friend);
    if ("reason" in f) return f;
    f.weAreTyping = typing;
    this.#fc.sendLossless(friend, encodeFriendPacket({ kind: "typing", typing }), now, true);
    this.#pump();
    return { ok: true };
  }

  // ---- inputs -----------------------------------------------------------------------------

  /**
   * TCP_connections events: net_crypto packets are consumed here; every other event (and a
   * packet that is not net_crypto's) is returned for the owner.
   */
  tcpEvents(events: readonly TcpConnectionsEvent[], now: number): TcpConnectionsEvent[] {
    this.#now = now;
    const rest: TcpConnectionsEvent[] = [];
    for (const e of events) {
      switch (e.type) {
        case "data":
          if (!this.#fc.packet(e.peer, e.data, { relay: e.relay, oob: false }, now)) rest.push(e);
          break;
        case "oob": {
          const from = toHex(e.from);
          if (!this.#fc.packet(from, e.data, { relay: e.relay, oob: true }, now)) rest.push(e);
          break;
        }
        case "peer_online":
        case "peer_registered":
          this.#fc.pathUp(e.peer, now);
          rest.push(e);
          break;
        case "writable":
          this.#fc.writable(e.peer, now);
          if (this.#fc.friendOfDht(e.peer) === undefined) rest.push(e);
          break;
        default:
          rest.push(e);
      }
    }
    this.#pump();
    return rest;
  }

  tick(now: number): void {
    this.#now = now;
    this.#fc.tick(now);
    this.#pump();
  }

  nextDeadline(): number {
    return this.#fc.nextDeadline();
  }

  friends(now: number = this.#now): MessengerFriendView[] {
    return this.#fc.views(now).map((v) => {
      const f = this.#friends.get(v.publicKey)!;
      return {
        ...v,
        online: f.online,
        name: f.name,
        statusMessage: f.statusMessage,
        userStatus: f.userStatus,
        typing: f.typing,
        pendingReceipts: f.receipts.length,
        messagesSent: f.messagesSent,
        messagesReceived: f.messagesReceived,
      };
    });
  }

  // ---- internals --------------------------------------------------------------------------

  #online(friend: string): MessengerFriend | Extract<MessengerResult, { ok: false }> {
    const f = this.#friends.get(friend);
    if (!f) return { ok: false, reason: "not_friend", message: "not a friend" };
    if (!f.online) return { ok: false, reason: "not_online", message: "friend is not online" };
    return f;
  }

  #refusal(reason: string, message: string): Extract<MessengerResult, { ok: false }> {
    if (reason === "send_queue_full") return { ok: false, reason: "send_queue_full", message };
    if (reason === "invalid") return { ok: false, reason: "invalid", message };
    return { ok: false, reason: "not_online", message };
  }

  #broadcast(payload: Uint8Array, now: number): void {
    for (const f of this.#friends.values()) {
      if (f.online) this.#fc.sendLossless(f.hex, payload, now, true);
    }
    this.#pump();
  }

  #pump(): void {
    for (const e of this.#fc.takeEvents()) this.#onFriendEvent(e);
  }

  #onFriendEvent(e: FriendConnectionEvent): void {
    const now = this.#now;
    switch (e.type) {
      case "friend_connected":
        this.#events.push(e);
        // The first lossless packet of the session, always (see the module comment).
        this.#fc.sendLossless(e.friend, encodeFriendPacket({ kind: "online" }), now, true);
        return;
      case "friend_disconnected": {
        this.#events.push(e);
        const f = this.#friends.get(e.friend);
        if (!f) return;
        this.#failReceipts(f, `session ended (${e.cause}: ${e.reason})`);
        if (f.online) {
          f.online = false;
          f.typing = false;
          this.#events.push({
            type: "friend_offline",
            friend: f.hex,
            cause: e.cause,
            reason: e.reason,
          });
        }
        return;
      }
      case "friend_packet": {
        const f = this.#friends.get(e.friend);
        if (!f) return;
        if (e.lossy) {
          if (!f.online) return;
          const r = decodeFriendPacket(e.payload);
          if (r.ok && r.value.kind === "custom_lossy") {
            this.#events.push({ type: "friend_lossy", friend: f.hex, data: r.value.data });
          }
          return;
        }
        this.#onPacket(f, e.payload, now);
        return;
      }
      case "friend_acked": {
        const f = this.#friends.get(e.friend);
        if (!f) return;
        // do_receipts: every message below the friend's buffer_start has arrived.
        while (f.receipts.length > 0) {
          const r = f.receipts[0];
          const d = u32Distance(e.bufferStart, r.packetNumber);
          if (d === 0 || d >= 0x80000000) break;
          f.receipts.shift();
          this.#events.push({ type: "friend_receipt", friend: f.hex, messageId: r.messageId });
        }
        return;
      }
      default:
        this.#events.push(e);
    }
  }

  /**
   * m_handle_packet. What the codec refuses (an ONLINE or OFFLINE with a body, a name over
   * 128 bytes, a status message over 1007, a user status that is not one byte below 3, a
   * typing flag that is not one byte, an empty message or action) is ignored.
   */
  #onPacket(f: MessengerFriend, payload: Uint8Array, now: number): void {
    const r = decodeFriendPacket(payload);
    if (!r.ok) return;
    const p = r.value;
    if (!f.online) {
      // Everything before the friend's ONLINE is dropped, as c-toxcore does.
      if (p.kind === "online") this.#cameOnline(f, now);
      return;
    }
    switch (p.kind) {
      case "offline":
        f.online = false;
        f.typing = false;
        this.#failReceipts(f, "friend went offline");
        this.#events.push({
          type: "friend_offline",
          friend: f.hex,
          cause: "offline_packet",
          reason: "the friend sent OFFLINE",
        });
        return;
      case "nickname":
        f.name = p.name;
        this.#events.push({ type: "friend_name", friend: f.hex, name: f.name });
        return;
      case "status_message":
        f.statusMessage = p.text;
        this.#events.push({
          type: "friend_status_message",
          friend: f.hex,
          statusMessage: f.statusMessage,
        });
        return;
      case "user_status":
        f.userStatus = p.status;
        this.#events.push({ type: "friend_user_status", friend: f.hex, status: f.userStatus });
        return;
      case "typing":
        f.typing = p.typing;
        this.#events.push({ type: "friend_typing", friend: f.hex, typing: f.typing });
        return;
      case "message":
      case "action":
        f.messagesReceived++;
        this.#events.push({
          type: "friend_message",
          friend: f.hex,
          kind: p.kind === "action" ? "action" : "normal",
          text: p.text,
        });
        return;
      case "custom_lossless":
        // The whole packet, id byte included (tox.h).
        this.#events.push({ type: "friend_lossless", friend: f.hex, data: p.data });
        return;
      default:
        // ONLINE again, and other ids (file transfer, conferences, A/V signalling): not ours.
        return;
    }
  }

  /** The friend's ONLINE: now it is online, and it hears who we are. */
  #cameOnline(f: MessengerFriend, now: number): void {
    f.online = true;
    this.#events.push({ type: "friend_online", friend: f.hex });
    const p = this.#profile;
    const send = (packet: FriendPacket) => {
      // setName and the like check what they take; the constructor's profile is not checked,
      // and a part of it the codec refuses (which a peer would drop) is not sent.
      const payload = encodeUnchecked(packet);
      if (payload !== null) this.#fc.sendLossless(f.hex, payload, now, true);
    };
    send({ kind: "nickname", name: p.name });
    send({ kind: "status_message", text: p.statusMessage });
    send({ kind: "user_status", status: p.userStatus });
    send({ kind: "typing", typing: f.weAreTyping });
  }

  #failReceipts(f: MessengerFriend, reason: string): void {
    if (f.receipts.length === 0) return;
    const ids = f.receipts.map((r) => r.messageId);
    f.receipts = [];
    this.#events.push({ type: "friend_message_failed", friend: f.hex, messageIds: ids, reason });
  }
}

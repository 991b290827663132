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
import type { NetCryptoKeys } from "../net_crypto/connection.ts";
import { bytesEqual, type KeyPair, type RandomBytes, toHex } from "../common/crypto.ts";
import type { RelayAddress } from "../common/relay_address.ts";
import type { TcpConnections } from "../tcp_connections/tcp_connections.ts";
import type { TcpConnectionsEvent } from "../tcp_connections/types.ts";
import { OnionClient } from "../onion/onion_client.ts";
import type { OnionClientConfig } from "../onion/config.ts";
import type { OnionClientEvent, OnionEvent, OnionFriendView, OnionView } from "../onion/views.ts";
import { encodeFriendRequest, MAX_FRIEND_REQUEST_DATA_SIZE } from "../onion/packets.ts";
import {
  type DhtKeySource,
  type FriendConnectionConfig,
  type FriendConnectionEvent,
  FriendConnections,
  type FriendView,
} from "../friend_connection/friend_connection.ts";
import type { KillCause } from "../net_crypto/connection.ts";
import type { NetCryptoStats } from "../net_crypto/net_crypto.ts";
import { u32Distance } from "../net_crypto/packet_arrays.ts";
import { MAX_CRYPTO_DATA_SIZE } from "../net_crypto/packets.ts";
import { EncodeError } from "../common/codec.ts";
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
} from "../friend_connection/friend_packets.ts";

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
} from "../friend_connection/friend_packets.ts";
export type { UserStatus } from "../friend_connection/friend_packets.ts";

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
  | { readonly type: "friend_lossy"; readonly friend: string; readonly data: Uint8Array }
  /**
   * A stranger asks to be our friend (onion data 0x20 with our nospam). Reported once per
   * requester while the coordinator runs (c-toxcore keeps the last 32 requesters; so do we).
   */
  | { readonly type: "friend_request"; readonly publicKey: string; readonly text: string }
  /** Our friend request went out (through `copies` announce nodes); `attempt` counts from 1. */
  | {
    readonly type: "friend_request_sent";
    readonly friend: string;
    readonly attempt: number;
    readonly copies: number;
  }
  | OnionEvent;

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
  /** Our friend request while the friend has never been online: sent how often. */
  readonly request: { readonly attempts: number; readonly lastSentAgoMs: number | null } | null;
  /** The onion search for the friend (null once it is online: no search then). */
  readonly onion: OnionFriendView | null;
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
  /** Has been online once (FRIEND_CONFIRMED): no request is sent any more. */
  confirmed: boolean;
  request: OutgoingRequest | null;
}

/** m_addfriend's request: sent through the onion once the friend is found, then re-sent. */
interface OutgoingRequest {
  nospam: Uint8Array;
  message: Uint8Array;
  /** FRIEND_ADDED (to send) or FRIEND_REQUESTED (sent, waiting for the friend). */
  sent: boolean;
  attempts: number;
  lastSentAt: number;
  /** FRIENDREQUEST_TIMEOUT, doubled after every attempt that brought no session. */
  timeoutMs: number;
}

/** FRIENDREQUEST_TIMEOUT (s). */
const FRIEND_REQUEST_TIMEOUT_MS = 5_000;
/** MAX_RECEIVED_STORED: requesters remembered so a repeated request is reported once. */
const MAX_RECEIVED_STORED = 32;

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
  /** Our nospam: a friend request must carry it. Without it no request is accepted. */
  readonly nospam?: Uint8Array;
  /** Onion bootstrap nodes (relays are tried as nodes too). */
  readonly bootstrap?: readonly RelayAddress[];
  readonly onion?: Partial<OnionClientConfig>;
  /** Unix time (ms) at `now`, for the DHT-PK no_replay counter: the shell reads the wall clock. */
  readonly unixTimeMs: number;
}

// Only to measure user input before encoding; the codec encodes (and decodes) the text.
const encoder = new TextEncoder();
const lenient = new TextDecoder();

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
  readonly #onion: OnionClient;
  readonly #nospam: Uint8Array | null;
  /** Requesters reported lately, oldest first (friend_requests.c received list). */
  readonly #received: string[] = [];
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
    this.#nospam = opts.nospam?.slice() ?? null;
    const tcp = opts.tcp;
    this.#onion = new OnionClient({
      now: opts.now,
      unixTimeMs: opts.unixTimeMs,
      random: opts.random,
      realKeys: opts.realKeys,
      dhtPublicKey: opts.dhtKeys.publicKey,
      bootstrap: opts.bootstrap,
      config: opts.onion,
      transport: {
        send: (body, relay) => tcp.sendOnion(body, this.#now, relay).ok,
        canSend: (relay) => tcp.canSendOnion(relay),
        connectedRelays: () =>
          tcp.relays(this.#now).filter((r) => r.state === "confirmed").map((r) => ({
            host: r.host,
            port: r.port,
            publicKey: r.publicKey,
          })),
      },
    });
  }

  /** Announce state, nodes and paths. */
  onionView(now: number = this.#now): OnionView {
    return this.#onion.view(now);
  }

  /** Another onion bootstrap node. */
  addBootstrap(node: RelayAddress, now: number): MessengerResult {
    this.#now = now;
    const r = this.#onion.addBootstrap(node);
    this.#onion.relayUp(now);
    this.#pump();
    return r.ok ? { ok: true } : { ok: false, reason: "invalid", message: r.message };
  }

  /** After a suspend (the wall clock jumped past the monotonic one): look again at once. */
  wake(now: number): void {
    this.#now = now;
    this.#onion.wake(now);
    this.#pump();
  }

  /**
   * Hold every friend's lossless packets in net_crypto's receive window (their senders slow
   * down as acknowledgements stop), or resume and hand up what waited: the owner does this
   * while the program reading our events is behind.
   */
  holdDelivery(held: boolean, now: number): void {
    this.#now = now;
    this.#fc.holdDelivery(held, now);
    this.#pump();
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

  /**
   * m_addfriend_norequest, or m_addfriend with `request`: the request goes out through the
   * onion once the friend is found there, and again until the friend comes online. A new
   * request for a friend never online replaces the pending one (m_addfriend's new nospam).
   */
  addFriend(
    publicKey: Uint8Array,
    now: number,
    request?: { readonly nospam: Uint8Array; readonly message: string },
  ): MessengerResult {
    this.#now = now;
    const hex = toHex(publicKey);
    let outgoing: OutgoingRequest | null = null;
    if (request !== undefined) {
      const message = encoder.encode(request.message);
      if (!(request.nospam instanceof Uint8Array) || request.nospam.length !== 4) {
        return { ok: false, reason: "invalid", message: "nospam must be 4 bytes" };
      }
      if (message.length === 0) {
        return { ok: false, reason: "invalid", message: "a friend request needs a message" };
      }
      if (message.length > MAX_FRIEND_REQUEST_DATA_SIZE) {
        return {
          ok: false,
          reason: "too_long",
          message:
            `request message of ${message.length} bytes (max ${MAX_FRIEND_REQUEST_DATA_SIZE})`,
        };
      }
      if (this.#friends.get(hex)?.confirmed) {
        return { ok: false, reason: "invalid", message: "already a friend" };
      }
      outgoing = {
        nospam: request.nospam.slice(),
        message,
        sent: false,
        attempts: 0,
        lastSentAt: -Infinity,
        timeoutMs: FRIEND_REQUEST_TIMEOUT_MS,
      };
    }
    const r = this.#fc.add(publicKey, now);
    if (!r.ok) return { ok: false, reason: "invalid", message: r.message };
    const known = this.#friends.get(hex);
    if (known) {
      if (outgoing) known.request = outgoing;
    } else {
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
        confirmed: false,
        request: outgoing,
      });
      this.#onion.addFriend(publicKey, now);
    }
    if (outgoing) this.#onion.setRequestPending(hex, true, now);
    this.#sendRequests(now);
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
    this.#onion.removeFriend(friend, now);
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
        case "onion":
          // Relay packet 9: every onion response is ours; a bad one is counted, not passed on.
          this.#onion.handleResponse(e.relay, e.data, now);
          break;
        case "relay_state":
          if (e.state === "confirmed") this.#onion.relayUp(now);
          rest.push(e);
          break;
        default:
          rest.push(e);
      }
    }
    // What the responses call for (an echoed ping id, the next search) leaves in this turn.
    this.#onion.runIfDue(now);
    this.#pump();
    return rest;
  }

  tick(now: number): void {
    this.#now = now;
    this.#fc.tick(now);
    this.#onion.tick(now);
    this.#sendRequests(now);
    this.#pump();
  }

  nextDeadline(): number {
    let d = Math.min(this.#fc.nextDeadline(), this.#onion.nextDeadline());
    for (const f of this.#friends.values()) {
      const r = f.request;
      if (r === null || f.confirmed) continue;
      // A request sent: its timeout. One not sent yet goes when the onion finds the friend
      // (an event), or at the latest on the onion's own schedule.
      if (r.sent) d = Math.min(d, r.lastSentAt + r.timeoutMs + 1);
    }
    return d;
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
        request: f.request && !f.confirmed
          ? {
            attempts: f.request.attempts,
            lastSentAgoMs: Number.isFinite(f.request.lastSentAt)
              ? Math.round(now - f.request.lastSentAt)
              : null,
          }
          : null,
        onion: this.#onion.friendView(f.hex, now),
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
    // Each layer's reactions may make events of the other: run until both are quiet.
    for (let round = 0; round < 16; round++) {
      const fc = this.#fc.takeEvents();
      for (const e of fc) this.#onFriendEvent(e);
      const onion = this.#onion.takeEvents();
      for (const e of onion) this.#onOnionEvent(e);
      if (fc.length === 0 && onion.length === 0) return;
    }
  }

  #onOnionEvent(e: OnionClientEvent): void {
    const now = this.#now;
    switch (e.type) {
      case "onion_dht_pk":
        // dht_pk_callback: friend_connection dials the key (or keeps its session if it is
        // the one it has) and uses the relays the friend named.
        if (this.#friends.has(e.friend)) {
          this.#fc.learn(e.friend, e.dhtPublicKey, e.relays, "onion", now);
        }
        return;
      case "onion_friend_request":
        this.#onFriendRequest(e.sender, e.nospam, e.message);
        return;
      case "onion_friend_found":
        this.#events.push(e);
        this.#sendRequests(now);
        return;
      default:
        this.#events.push(e);
    }
  }

  /**
   * friendreq_handlepacket: our nospam, not a friend already (the filter), not reported
   * lately. The text is the friend's bytes as UTF-8 (bad sequences become U+FFFD).
   */
  #onFriendRequest(sender: Uint8Array, nospam: Uint8Array, message: Uint8Array): void {
    if (this.#nospam === null || !bytesEqual(nospam, this.#nospam)) return;
    const hex = toHex(sender);
    if (this.#friends.has(hex) || this.#received.includes(hex)) return;
    this.#received.push(hex);
    if (this.#received.length > MAX_RECEIVED_STORED) this.#received.shift();
    this.#events.push({ type: "friend_request", publicKey: hex, text: lenient.decode(message) });
  }

  /** do_friends' request part: send what is due; a sent one that brought no session is re-sent. */
  #sendRequests(now: number): void {
    for (const f of this.#friends.values()) {
      const r = f.request;
      if (r === null || f.confirmed) continue;
      if (r.sent && now > r.lastSentAt + r.timeoutMs) {
        r.sent = false;
        r.timeoutMs *= 2;
      }
      if (r.sent) continue;
      const copies = this.#onion.sendData(
        f.hex,
        encodeFriendRequest(r.nospam, r.message),
        now,
      );
      if (copies === 0) continue;
      r.sent = true;
      r.attempts++;
      r.lastSentAt = now;
      this.#events.push({
        type: "friend_request_sent",
        friend: f.hex,
        attempt: r.attempts,
        copies,
      });
    }
  }

  #onFriendEvent(e: FriendConnectionEvent): void {
    const now = this.#now;
    switch (e.type) {
      case "friend_connected":
        this.#events.push(e);
        this.#onion.setFriendOnline(e.friend, true, now);
        // The first lossless packet of the session, always (see the module comment).
        this.#fc.sendLossless(e.friend, encodeFriendPacket({ kind: "online" }), now, true);
        return;
      case "friend_disconnected": {
        this.#events.push(e);
        this.#onion.setFriendOnline(e.friend, false, now);
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
    f.confirmed = true;
    if (f.request !== null) this.#onion.setRequestPending(f.hex, false, now);
    f.request = null;
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

/**
 * What the Tox stream decoder yields: one ToxRecord per thing on the wire (a proxy step, a
 * handshake, a frame), with its layers from the outside in, so the CLI can print one line
 * per packet (the innermost layer names it), a JSON object, or statistics, and filters can
 * look at any layer. Keys are lower-case hex; byte payloads are shown as hex, at most
 * PREVIEW_BYTES of them (with the full length beside).
 */
import type { Direction, Timestamp } from "./types.ts";

export const PREVIEW_BYTES = 64;

/** Who sent it on this relay stream: the client (our side) or the relay. */
export type Sender = "client" | "relay";

export type ProxyLayer = {
  readonly proto: "proxy";
  readonly kind: "socks5" | "http_connect";
  /** e.g. "greeting (no auth)", "connect 127.0.0.1:33445", "reply ok", "HTTP/1.1 200". */
  readonly step: string;
  readonly ok?: boolean;
};

export type TcpHandshakeLayer = {
  readonly proto: "tcp_handshake";
  /** "request" is the client's 128 bytes, "response" the relay's 96. */
  readonly kind: "request" | "response";
  /** The client's (DHT) public key, in clear in the request. */
  readonly clientPublicKey?: string;
  readonly nonce: string;
  /** With the key log: the relay's public key, and the handshake opened (keys matched). */
  readonly relayPublicKey?: string;
  readonly keyed: boolean;
};

export type TcpFrameLayer = {
  readonly proto: "tcp_frame";
  /** Encrypted length (plaintext + 16), as in the 2-byte header. */
  readonly length: number;
  /** Frame number within this direction, from 0: the nonce counter. */
  readonly seq: number;
  /** false: no key for this stream, or the MAC did not verify (then `error` says so). */
  readonly decrypted: boolean;
  readonly error?: string;
};

export type RelayLayer = {
  readonly proto: "relay";
  /** The relay packet kind (RelayPacket["kind"] of daemon/core/tcp_common/packets.ts). */
  readonly kind: string;
  readonly connectionId?: number;
  /** Routing and OOB packets: the key named; DATA: the peer routed on this connection id. */
  readonly publicKey?: string;
  readonly pingId?: string;
  /** Payload length after the packet's own header. */
  readonly length: number;
  /** Structural error from the relay codec (the packet is shown raw). */
  readonly error?: string;
  /** ping ↔ pong round trip, on the pong, in ms. */
  readonly rttMs?: number;
};

export type NetCryptoLayer = {
  readonly proto: "net_crypto";
  readonly kind: "cookie_request" | "cookie_response" | "handshake" | "data" | "unknown";
  readonly length: number;
  /** cookie_request: the sender's DHT key (in clear). */
  readonly senderDhtPublicKey?: string;
  /** data: the low 16 bits of the nonce carried in clear. */
  readonly nonceLow?: number;
  /** data: opened with a NET_CRYPTO key log entry. */
  readonly decrypted?: boolean;
  readonly packetNumber?: number;
  readonly bufferStart?: number;
  readonly error?: string;
};

/**
 * What relay packets 8 (ONION_REQUEST) and 9 (ONION_RESPONSE) show without the onion's one-off
 * secret keys, which no key log holds: where the relay sends a request next, and how an answer
 * can be matched to its request.
 */
export type OnionLayer = {
  readonly proto: "onion";
  /** request: packet 8; announce_response (0x84), data_response (0x86), unknown: packet 9. */
  readonly kind: "request" | "announce_response" | "data_response" | "unknown";
  /** request: the node the relay forwards it to (N2), "host:port" ("[v6]:port"). */
  readonly next?: string;
  /** request: the client's one-off key towards N2; data_response: the sender's one-off key E. */
  readonly tmpPublicKey?: string;
  /** announce_response: the 8 bytes the client put in its request to find it again. */
  readonly sendback?: string;
  /** unknown: the first byte, a packet id c-toxcore ignores here. */
  readonly id?: number;
  /** The relay packet's payload, the whole onion packet (an announce response of 82: no nodes). */
  readonly length: number;
  readonly error?: string;
};

/** The inner packet of a decrypted net_crypto data packet (friend_connection, Messenger). */
export type FriendLayer = {
  readonly proto: "friend";
  /** Packet id of the payload (its first byte). */
  readonly id: number;
  /**
   * padding, request (with `requested`), kill, alive, share_relays, friend_requests, online,
   * offline, nickname, status_message, user_status, typing, message, action, msi,
   * file_sendrequest, file_control, file_data, conference_{invite,online,direct,message,
   * rejoin,lossy}, av_audio, av_video, av_bandwidth, custom_lossless, custom_lossy, reserved,
   * unknown (friend_packets.ts friendPacketName)
   */
  readonly kind: string;
  readonly lossy: boolean;
  /** Text of nickname, status_message, message, action (invalid UTF-8 as U+FFFD). */
  readonly text?: string;
  /** share_relays: the relays as host:port:pk. */
  readonly relays?: readonly string[];
  /** user_status: none/away/busy; typing: true/false. */
  readonly value?: string | boolean;
  /** request: how many packets the peer asks to be resent. */
  readonly requested?: number;
  readonly length: number;
  readonly preview?: string;
  readonly error?: string;
};

export type Layer =
  | ProxyLayer
  | TcpHandshakeLayer
  | TcpFrameLayer
  | RelayLayer
  | NetCryptoLayer
  | OnionLayer
  | FriendLayer;

export interface ToxRecord {
  /** The capture frame (1-based) whose bytes completed this record. */
  readonly frame: number;
  readonly ts: Timestamp;
  readonly stream: number;
  readonly dir: Direction;
  readonly sender: Sender;
  /** Offset of the record's first byte in its direction's byte stream. */
  readonly offset: number;
  /** Bytes on the wire (frame header included). */
  readonly wireBytes: number;
  /** The relay's public key when known (key log, or the stream's session). */
  readonly relay?: string;
  /** The client's DHT public key (from the stream's handshake). */
  readonly client?: string;
  readonly layers: readonly Layer[];
}

/** A stream-level notice: not a packet, but something a reader of the capture must know. */
export interface ToxNotice {
  readonly frame: number;
  readonly ts: Timestamp;
  readonly stream: number;
  readonly dir?: Direction;
  readonly level: "info" | "warn";
  /**
   * stream_detected, not_tox, gap, undecodable (after a gap or a framing error the rest of
   * that direction cannot be split into frames), closed, mac_failed, no_key, empty_frame (a
   * zero length, skipped as c-toxcore does), truncated (the stream ended inside a frame).
   */
  readonly code: string;
  readonly message: string;
}

export type ToxOutput =
  | { readonly kind: "record"; readonly record: ToxRecord }
  | { readonly kind: "notice"; readonly notice: ToxNotice };

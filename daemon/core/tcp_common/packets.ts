/**
 * TCP relay packets: the plaintext inside one encrypted frame (TCP_common.h, TCP_client.c,
 * TCP_server.c of c-toxcore 0.2.18; spec/tcp.md §5). Byte 0 is the packet id, except for
 * DATA where byte 0 *is* the connection id (16..255); there is no separate id byte.
 */
import { codecError, type Decoded, decoded, EncodeError } from "../common/codec.ts";
import { PUBLIC_KEY_SIZE } from "../common/crypto.ts";

export const PacketId = {
  ROUTING_REQUEST: 0,
  ROUTING_RESPONSE: 1,
  CONNECTION_NOTIFICATION: 2,
  DISCONNECT_NOTIFICATION: 3,
  PING: 4,
  PONG: 5,
  OOB_SEND: 6,
  OOB_RECV: 7,
  ONION_REQUEST: 8,
  ONION_RESPONSE: 9,
  FORWARD_REQUEST: 10,
  FORWARDING: 11,
} as const;

/** NUM_RESERVED_PORTS: ids below this are control packets; DATA connection ids start here. */
export const NUM_RESERVED_PORTS = 16;
/** NUM_CLIENT_CONNECTIONS: routing slots per client connection on a relay. */
export const NUM_CLIENT_CONNECTIONS = 240;
/** MAX_PACKET_SIZE: the encrypted part of a frame (plaintext + MAC) may not exceed this. */
export const MAX_PACKET_SIZE = 2048;
/** Largest plaintext a frame can carry. */
export const MAX_PLAIN_SIZE = MAX_PACKET_SIZE - 16;
/** Largest DATA payload (after the connection id byte). */
export const MAX_DATA_PAYLOAD = MAX_PLAIN_SIZE - 1;
/** TCP_MAX_OOB_DATA_LENGTH. */
export const MAX_OOB_DATA = 1024;
/**
 * The relay kills a client whose ONION_REQUEST packet is not longer than 1 + 24 + 2 * 67 bytes
 * (ONION_SEND_BASE = 67), so the payload after the id is at least 159 bytes.
 */
export const MIN_ONION_REQUEST_PAYLOAD = 24 + 2 * 67 + 1;
/** MAX_FORWARD_DATA_SIZE plus the largest packed ip_port (1 + 16 + 2). */
export const MAX_FORWARD_PAYLOAD = 1792 + 19;
export const PING_ID_SIZE = 8;

export type RelayPacket =
  | { readonly kind: "routing_request"; readonly publicKey: Uint8Array }
  /** connectionId null = the relay refused (rpid 0). */
  | {
    readonly kind: "routing_response";
    readonly connectionId: number | null;
    readonly publicKey: Uint8Array;
  }
  | { readonly kind: "connection_notification"; readonly connectionId: number }
  | { readonly kind: "disconnect_notification"; readonly connectionId: number }
  | { readonly kind: "ping"; readonly pingId: bigint }
  | { readonly kind: "pong"; readonly pingId: bigint }
  | { readonly kind: "oob_send"; readonly publicKey: Uint8Array; readonly data: Uint8Array }
  | { readonly kind: "oob_recv"; readonly publicKey: Uint8Array; readonly data: Uint8Array }
  | { readonly kind: "onion_request"; readonly data: Uint8Array }
  | { readonly kind: "onion_response"; readonly data: Uint8Array }
  | { readonly kind: "forward_request"; readonly data: Uint8Array }
  | { readonly kind: "forwarding"; readonly data: Uint8Array }
  | { readonly kind: "data"; readonly connectionId: number; readonly data: Uint8Array };

export type RelayPacketKind = RelayPacket["kind"];

/** Packets c-toxcore writes with priority=1: they may overtake queued data. */
export function isPriority(kind: RelayPacketKind): boolean {
  return kind === "routing_request" || kind === "routing_response" ||
    kind === "connection_notification" || kind === "disconnect_notification" ||
    kind === "ping" || kind === "pong";
}

export function isConnectionId(id: number): boolean {
  return Number.isInteger(id) && id >= NUM_RESERVED_PORTS && id <= 255;
}

function checkKey(pk: Uint8Array, what: string): void {
  if (pk.length !== PUBLIC_KEY_SIZE) throw new EncodeError(`${what}: public key must be 32 bytes`);
}

function checkConnectionId(id: number, what: string): void {
  if (!isConnectionId(id)) throw new EncodeError(`${what}: connection id ${id} not in 16..255`);
}

function checkPingId(id: bigint, what: string): void {
  if (id <= 0n || id > 0xffff_ffff_ffff_ffffn) {
    throw new EncodeError(`${what}: ping id must be a non-zero 64-bit value`);
  }
}

function withId(id: number, ...parts: Uint8Array[]): Uint8Array {
  let n = 1;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  out[0] = id;
  let o = 1;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function pingBytes(id: number, pingId: bigint): Uint8Array {
  const out = new Uint8Array(1 + PING_ID_SIZE);
  out[0] = id;
  new DataView(out.buffer).setBigUint64(1, pingId);
  return out;
}

/** Encode one packet's plaintext. Throws EncodeError for anything the protocol forbids. */
export function encodeRelayPacket(p: RelayPacket): Uint8Array {
  switch (p.kind) {
    case "routing_request":
      checkKey(p.publicKey, p.kind);
      return withId(PacketId.ROUTING_REQUEST, p.publicKey);
    case "routing_response": {
      checkKey(p.publicKey, p.kind);
      if (p.connectionId !== null) checkConnectionId(p.connectionId, p.kind);
      return withId(PacketId.ROUTING_RESPONSE, Uint8Array.of(p.connectionId ?? 0), p.publicKey);
    }
    case "connection_notification":
      checkConnectionId(p.connectionId, p.kind);
      return Uint8Array.of(PacketId.CONNECTION_NOTIFICATION, p.connectionId);
    case "disconnect_notification":
      checkConnectionId(p.connectionId, p.kind);
      return Uint8Array.of(PacketId.DISCONNECT_NOTIFICATION, p.connectionId);
    case "ping":
      checkPingId(p.pingId, p.kind);
      return pingBytes(PacketId.PING, p.pingId);
    case "pong":
      checkPingId(p.pingId, p.kind);
      return pingBytes(PacketId.PONG, p.pingId);
    case "oob_send":
    case "oob_recv": {
      checkKey(p.publicKey, p.kind);
      if (p.data.length < 1 || p.data.length > MAX_OOB_DATA) {
        throw new EncodeError(`${p.kind}: data must be 1..${MAX_OOB_DATA} bytes`);
      }
      const id = p.kind === "oob_send" ? PacketId.OOB_SEND : PacketId.OOB_RECV;
      return withId(id, p.publicKey, p.data);
    }
    case "onion_request":
      if (p.data.length < MIN_ONION_REQUEST_PAYLOAD || p.data.length > MAX_PLAIN_SIZE - 1) {
        throw new EncodeError(
          `onion_request: payload must be ${MIN_ONION_REQUEST_PAYLOAD}..${
            MAX_PLAIN_SIZE - 1
          } bytes`,
        );
      }
      return withId(PacketId.ONION_REQUEST, p.data);
    case "onion_response":
      if (p.data.length < 1 || p.data.length > MAX_PLAIN_SIZE - 1) {
        throw new EncodeError(`onion_response: payload must be 1..${MAX_PLAIN_SIZE - 1} bytes`);
      }
      return withId(PacketId.ONION_RESPONSE, p.data);
    case "forward_request":
    case "forwarding":
      if (p.data.length < 1 || p.data.length > MAX_FORWARD_PAYLOAD) {
        throw new EncodeError(`${p.kind}: payload must be 1..${MAX_FORWARD_PAYLOAD} bytes`);
      }
      return withId(
        p.kind === "forward_request" ? PacketId.FORWARD_REQUEST : PacketId.FORWARDING,
        p.data,
      );
    case "data":
      checkConnectionId(p.connectionId, p.kind);
      if (p.data.length < 1 || p.data.length > MAX_DATA_PAYLOAD) {
        throw new EncodeError(`data: payload must be 1..${MAX_DATA_PAYLOAD} bytes`);
      }
      return withId(p.connectionId, p.data);
  }
}

function exact<T>(b: Uint8Array, n: number, name: string, make: () => T): Decoded<T> {
  if (b.length !== n) {
    return codecError("wrong_length", `${name}: ${b.length} bytes, expected exactly ${n}`);
  }
  return decoded(make());
}

function readPingId(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset + 1, PING_ID_SIZE).getBigUint64(0);
}

/**
 * Decode one frame's plaintext. Payload fields are views into `b`; copy them if `b` is reused.
 * Structural rules only (lengths, ranges, ids); which direction may send what is the
 * state machine's business.
 */
export function decodeRelayPacket(b: Uint8Array): Decoded<RelayPacket> {
  if (b.length < 2) {
    return codecError("too_short", `relay packet of ${b.length} bytes (the minimum is 2)`);
  }
  const id = b[0];
  switch (id) {
    case PacketId.ROUTING_REQUEST:
      return exact(b, 33, "routing_request", () => ({
        kind: "routing_request" as const,
        publicKey: b.subarray(1, 33),
      }));
    case PacketId.ROUTING_RESPONSE: {
      if (b.length !== 34) {
        return codecError("wrong_length", `routing_response: ${b.length} bytes, expected 34`);
      }
      const rpid = b[1];
      if (rpid !== 0 && rpid < NUM_RESERVED_PORTS) {
        return codecError("out_of_range", `routing_response: connection id ${rpid} is reserved`);
      }
      return decoded({
        kind: "routing_response",
        connectionId: rpid === 0 ? null : rpid,
        publicKey: b.subarray(2, 34),
      });
    }
    case PacketId.CONNECTION_NOTIFICATION:
    case PacketId.DISCONNECT_NOTIFICATION: {
      const kind = id === PacketId.CONNECTION_NOTIFICATION
        ? "connection_notification" as const
        : "disconnect_notification" as const;
      if (b.length !== 2) {
        return codecError("wrong_length", `${kind}: ${b.length} bytes, expected 2`);
      }
      if (b[1] < NUM_RESERVED_PORTS) {
        return codecError("out_of_range", `${kind}: connection id ${b[1]} below 16`);
      }
      return decoded({ kind, connectionId: b[1] });
    }
    case PacketId.PING:
    case PacketId.PONG: {
      const kind = id === PacketId.PING ? "ping" as const : "pong" as const;
      if (b.length !== 9) {
        return codecError("wrong_length", `${kind}: ${b.length} bytes, expected 9`);
      }
      const pingId = readPingId(b);
      if (pingId === 0n) return codecError("out_of_range", `${kind}: ping id 0 is forbidden`);
      return decoded({ kind, pingId });
    }
    case PacketId.OOB_SEND:
    case PacketId.OOB_RECV: {
      const kind = id === PacketId.OOB_SEND ? "oob_send" as const : "oob_recv" as const;
      if (b.length < 34) return codecError("too_short", `${kind}: ${b.length} bytes, minimum 34`);
      if (b.length > 33 + MAX_OOB_DATA) {
        return codecError(
          "too_long",
          `${kind}: ${b.length - 33} data bytes, maximum ${MAX_OOB_DATA}`,
        );
      }
      return decoded({ kind, publicKey: b.subarray(1, 33), data: b.subarray(33) });
    }
    case PacketId.ONION_REQUEST:
      if (b.length - 1 < MIN_ONION_REQUEST_PAYLOAD) {
        return codecError(
          "too_short",
          `onion_request: ${b.length - 1} payload bytes, minimum ${MIN_ONION_REQUEST_PAYLOAD}`,
        );
      }
      return decoded({ kind: "onion_request", data: b.subarray(1) });
    case PacketId.ONION_RESPONSE:
      return decoded({ kind: "onion_response", data: b.subarray(1) });
    case PacketId.FORWARD_REQUEST:
    case PacketId.FORWARDING: {
      const kind = id === PacketId.FORWARD_REQUEST
        ? "forward_request" as const
        : "forwarding" as const;
      if (b.length - 1 > MAX_FORWARD_PAYLOAD) {
        return codecError(
          "too_long",
          `${kind}: ${b.length - 1} bytes, maximum ${MAX_FORWARD_PAYLOAD}`,
        );
      }
      return decoded({ kind, data: b.subarray(1) });
    }
    default:
      if (id < NUM_RESERVED_PORTS) {
        return codecError("reserved_id", `packet id ${id} is reserved`);
      }
      return decoded({ kind: "data", connectionId: id, data: b.subarray(1) });
  }
}

/** Name of a packet by its first plaintext byte, for logs and the decoder. */
export function packetName(firstByte: number): string {
  const names = [
    "ROUTING_REQUEST",
    "ROUTING_RESPONSE",
    "CONNECTION_NOTIFICATION",
    "DISCONNECT_NOTIFICATION",
    "PING",
    "PONG",
    "OOB_SEND",
    "OOB_RECV",
    "ONION_REQUEST",
    "ONION_RESPONSE",
    "FORWARD_REQUEST",
    "FORWARDING",
  ];
  if (firstByte < names.length) return names[firstByte];
  if (firstByte < NUM_RESERVED_PORTS) return `RESERVED_${firstByte}`;
  return "DATA";
}

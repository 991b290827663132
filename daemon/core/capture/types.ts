/**
 * The records that flow through the capture pipeline, from file to decoded Tox packet:
 *
 *   capture file ─ CaptureReader ─▶ CapturePacket ─ decodeLinkFrame ─▶ TcpSegment
 *   TcpSegment ─ TcpReassembler ─▶ StreamEvent ─ ToxStreamDecoder ─▶ ToxRecord (tox_stream.ts)
 *
 * Every stage is sans-I/O: bytes and records in, records out, errors as values.
 */

/** A capture timestamp kept exact: nanosecond files must not lose precision in a double. */
export interface Timestamp {
  readonly sec: number;
  /** 0..999_999_999 */
  readonly nsec: number;
}

/** Seconds from `a` to `b` (b - a), as a double: for display and statistics. */
export function secondsBetween(a: Timestamp, b: Timestamp): number {
  return (b.sec - a.sec) + (b.nsec - a.nsec) / 1e9;
}

/** Compare two timestamps: negative when a is earlier. */
export function compareTimestamps(a: Timestamp, b: Timestamp): number {
  return a.sec !== b.sec ? a.sec - b.sec : a.nsec - b.nsec;
}

/** A timestamp from epoch milliseconds (what the daemon's clock gives), rounded to the µs. */
export function timestampFromMs(ms: number): Timestamp {
  const us = Math.round(ms * 1000);
  const sec = Math.floor(us / 1e6);
  return { sec, nsec: (us - sec * 1e6) * 1000 };
}

/** One captured link-layer frame, as read from pcap or pcapng. */
export interface CapturePacket {
  /** 1-based, in file order, as tshark numbers frames. */
  readonly index: number;
  /** Byte offset of the record (block) in the file: for error messages and --json. */
  readonly fileOffset: number;
  readonly ts: Timestamp;
  /** LINKTYPE_* of the interface the frame was captured on. */
  readonly linkType: number;
  readonly interfaceId: number;
  /** The captured bytes (may be shorter than originalLength when the snap length cut it). */
  readonly data: Uint8Array;
  readonly originalLength: number;
}

/** A Decryption Secrets Block of pcapng: keys that travel inside the capture. */
export interface CaptureSecrets {
  readonly fileOffset: number;
  /** e.g. SECRETS_TYPE_TOX_KEYLOG; other types (TLS, WireGuard) are passed on untouched. */
  readonly secretsType: number;
  readonly data: Uint8Array;
}

/** What a CaptureReader yields. `error` is terminal: nothing follows it. */
export type CaptureRecord =
  | { readonly kind: "packet"; readonly packet: CapturePacket }
  | { readonly kind: "secrets"; readonly secrets: CaptureSecrets }
  | {
    readonly kind: "error";
    /** Where the bad or truncated record starts. */
    readonly fileOffset: number;
    /** "truncated": the file ends inside a record; "corrupt": a record makes no sense. */
    readonly code: "truncated" | "corrupt" | "unsupported";
    readonly message: string;
  };

/** An endpoint as printed: IPv4 dotted, IPv6 compressed (RFC 5952), no brackets. */
export interface Endpoint {
  readonly addr: string;
  readonly port: number;
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

/** One TCP segment lifted out of a link-layer frame. */
export interface TcpSegment {
  readonly ipVersion: 4 | 6;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly seq: number;
  readonly ack: number;
  /** TCP_FIN | TCP_SYN | ... (the low 8 bits of the flags). */
  readonly flags: number;
  readonly window: number;
  /** The payload as captured (may be shorter than payloadLength when snapped). */
  readonly payload: Uint8Array;
  /** The payload length the IP header declares. */
  readonly payloadLength: number;
}

/**
 * Direction within a stream: "c2s" from the side that sent the SYN (or, when the capture
 * starts mid-stream, the side that sent the first segment seen) to the other.
 */
export type Direction = "c2s" | "s2c";

export interface StreamInfo {
  /** 0-based, in order of first appearance, as tshark's tcp.stream. */
  readonly id: number;
  readonly client: Endpoint;
  readonly server: Endpoint;
  /** The three-way handshake was seen: the direction is certain. */
  readonly sawSyn: boolean;
  readonly firstTs: Timestamp;
}

/** What the TCP reassembler tells the layer above, in capture order. */
export type StreamEvent =
  | {
    readonly kind: "open";
    readonly stream: StreamInfo;
    readonly ts: Timestamp;
    readonly frame: number;
  }
  | {
    readonly kind: "data";
    readonly stream: StreamInfo;
    readonly dir: Direction;
    /** Bytes in order, each delivered exactly once. */
    readonly bytes: Uint8Array;
    /** Offset of bytes[0] in this direction's byte stream (0 = first byte after the SYN). */
    readonly offset: number;
    readonly ts: Timestamp;
    /** The capture frame (1-based) that completed these bytes. */
    readonly frame: number;
  }
  | {
    /** Bytes that never appeared (not captured, or snapped off): reported, not fatal. */
    readonly kind: "gap";
    readonly stream: StreamInfo;
    readonly dir: Direction;
    readonly offset: number;
    readonly length: number;
    readonly ts: Timestamp;
    readonly frame: number;
  }
  | {
    readonly kind: "close";
    readonly stream: StreamInfo;
    /** fin: both or one side sent FIN; rst: reset; end: the capture ended with it open. */
    readonly how: "fin" | "rst" | "end";
    readonly by?: Direction;
    readonly ts: Timestamp;
    readonly frame: number;
  };

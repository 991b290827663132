/**
 * The relay's record of one client socket (TCP_Secure_Connection) and its routing table
 * (connections[]): what every part of the relay reads and writes about a client, from the
 * handshake to the close. One plain object per socket, mutated in place: a big relay holds
 * thousands, and the deadline heap and the outbox work on it directly.
 */
import { FrameReader } from "../tcp_common/framing.ts";
import type { SecureSession } from "../tcp_common/handshake.ts";
import type { RelayClientInfo, RelayServerConfig } from "./config.ts";
import type { ConnectionNumber, RelayServerCloseReason, RelayServerStatus } from "./events.ts";
import { PacketQueue } from "./packet_queue.ts";
import type { Bucket } from "./rate_limit.ts";
import type { RelayServerConnectionInfo } from "./stats.ts";

/** One entry of TCP_Secure_Connection.connections[]: status 1 (registered) or 2 (online). */
export interface Slot {
  readonly publicKey: Uint8Array;
  readonly hex: string;
  status: "registered" | "online";
  /** While online: the peer's connection and the slot index it knows us by. */
  other: Conn | null;
  otherId: number;
}

export interface Conn {
  readonly id: ConnectionNumber;
  readonly acceptedAt: number;
  status: RelayServerStatus;
  readonly reader: FrameReader;
  session: SecureSession | null;
  publicKey: Uint8Array | null;
  hex: string;
  info: RelayClientInfo | null;
  /** Position in the incoming or unconfirmed ring while in those stages. */
  ring: number;
  /** The 96-byte handshake answer, before any frame. */
  handshakeResponse: Uint8Array | null;
  readonly queue: PacketQueue;
  out: Uint8Array | null;
  outOff: number;
  /** Bytes owed on the wire: queued frames, the unwritten chunk, the handshake answer. */
  owed: number;
  peakOwed: number;
  /** NO_SLOTS until the first route: most clients of a big relay route few keys or none. */
  connections: (Slot | undefined)[];
  lastPinged: number;
  pingId: bigint;
  /** Set when it must close but others are mid-update; closed by RelayServer#settle. */
  doomed: { reason: RelayServerCloseReason; message: string } | null;
  /** Its next timer and its place in the deadline heap (-1: none). */
  deadline: number;
  heapIndex: number;
  readonly oobBucket: Bucket;
  readonly pingBucket: Bucket;
  readonly routingBucket: Bucket;
  droppedQueueFull: number;
  droppedRate: number;
  bytesIn: number;
  bytesOut: number;
}

// Frozen: a write through it would throw instead of giving every client the same table.
export const NO_SLOTS = Object.freeze([]) as unknown as (Slot | undefined)[];

/** A socket just accepted into position `ring` of the incoming ring: no handshake yet. */
export function newConn(
  id: ConnectionNumber,
  now: number,
  ring: number,
  config: RelayServerConfig,
): Conn {
  return {
    id,
    acceptedAt: now,
    status: "connected",
    reader: new FrameReader(),
    session: null,
    publicKey: null,
    hex: "",
    info: null,
    ring,
    handshakeResponse: null,
    queue: new PacketQueue(),
    out: null,
    outOff: 0,
    owed: 0,
    peakOwed: 0,
    connections: NO_SLOTS,
    lastPinged: 0,
    pingId: 0n,
    doomed: null,
    deadline: Infinity,
    heapIndex: -1,
    oobBucket: { tokens: config.oobLimit.burst, at: now },
    pingBucket: { tokens: config.pingLimit.burst, at: now },
    routingBucket: { tokens: config.routingLimit.burst, at: now },
    droppedQueueFull: 0,
    droppedRate: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
}

/** What RelayServer.connection() reports about `c`. */
export function connectionInfo(c: Conn): RelayServerConnectionInfo {
  let routes = 0;
  let online = 0;
  for (const s of c.connections) {
    if (s === undefined) continue;
    routes++;
    if (s.status === "online") online++;
  }
  return {
    id: c.id,
    acceptedAt: c.acceptedAt,
    status: c.status,
    publicKey: c.publicKey,
    routes,
    online,
    queuedPackets: c.queue.length,
    queuedBytes: c.owed,
    peakQueuedBytes: c.peakOwed,
    droppedQueueFull: c.droppedQueueFull,
    droppedRate: c.droppedRate,
    deadline: c.deadline,
    bytesIn: c.bytesIn,
    bytesOut: c.bytesOut,
  };
}

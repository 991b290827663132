/**
 * What the relay core tells its shell: connection numbers, stages, why a client was dropped
 * (with who is at fault) and the events. Its own file because the shell, the testbed and the
 * tests speak this vocabulary without needing the relay's machinery.
 */
import type { Fault } from "../common/codec.ts";

/** Opaque number the relay gives each accepted socket; never reused by one RelayServer. */
export type ConnectionNumber = number;

/** TCP_STATUS_CONNECTED, TCP_STATUS_UNCONFIRMED, TCP_STATUS_CONFIRMED; then closed for good. */
export type RelayServerStatus = "connected" | "unconfirmed" | "confirmed" | "closed";

/**
 * Why the relay dropped a client. fault (as for the relay client): `peer` = the client broke
 * the protocol or stopped answering, `local` = the relay's own decision (owner, ring
 * eviction, the same key connected again), `network` = the socket ended.
 */
export type RelayServerCloseReason =
  | "closed_by_owner"
  | "evicted"
  | "replaced"
  | "handshake_failed"
  | "handshake_timeout"
  | "bad_frame"
  | "bad_mac"
  | "bad_packet"
  | "ping_timeout"
  | "queue_overflow"
  | "oob_flood"
  | "ping_flood"
  | "routing_flood"
  | "socket_closed"
  | "socket_error";

export const FAULT_OF: Record<RelayServerCloseReason, Fault> = {
  closed_by_owner: "local",
  evicted: "local",
  replaced: "local",
  handshake_failed: "peer",
  handshake_timeout: "peer",
  bad_frame: "peer",
  bad_mac: "peer",
  bad_packet: "peer",
  ping_timeout: "peer",
  queue_overflow: "peer",
  oob_flood: "peer",
  ping_flood: "peer",
  routing_flood: "peer",
  socket_closed: "network",
  socket_error: "network",
};

export type RelayServerEvent =
  /** The 128 bytes opened: answered with 96, waiting for the first frame. */
  | { readonly type: "handshake"; readonly id: ConnectionNumber; readonly publicKey: Uint8Array }
  /** The first frame opened: the client is on the relay under `publicKey`. */
  | { readonly type: "confirmed"; readonly id: ConnectionNumber; readonly publicKey: Uint8Array }
  /** A ROUTING_RESPONSE went to `id` for `publicKey`; connectionId null = refused (rpid 0). */
  | {
    readonly type: "routed";
    readonly id: ConnectionNumber;
    readonly publicKey: Uint8Array;
    readonly connectionId: number | null;
  }
  /** Both routed each other: both got a CONNECTION_NOTIFICATION. */
  | {
    readonly type: "linked";
    readonly id: ConnectionNumber;
    readonly connectionId: number;
    readonly peer: ConnectionNumber;
    readonly peerConnectionId: number;
  }
  /** `id` dropped its route or left; `peer` got a DISCONNECT_NOTIFICATION for its side. */
  | {
    readonly type: "unlinked";
    readonly id: ConnectionNumber;
    readonly connectionId: number;
    readonly peer: ConnectionNumber;
    readonly peerConnectionId: number;
  }
  | {
    readonly type: "closed";
    readonly id: ConnectionNumber;
    /** null if it closed before its handshake opened. */
    readonly publicKey: Uint8Array | null;
    readonly reason: RelayServerCloseReason;
    readonly fault: Fault;
    readonly message: string;
    /** Packets still queued for it, now lost. */
    readonly unsent: number;
  };

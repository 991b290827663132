/**
 * The relay's counters as the shell and the operator read them: totals for the whole relay
 * and a snapshot of one connection. Apart from the events because they answer a different
 * question (how is the relay doing, not what just happened) and the testbed reads them alone.
 */
import type { ConnectionNumber, RelayServerCloseReason, RelayServerStatus } from "./events.ts";

export interface RelayServerStats {
  /** Sockets the relay holds, in any stage. */
  readonly connections: number;
  readonly confirmed: number;
  readonly dataForwarded: number;
  /** DATA on a routed slot whose peer is not online (c-toxcore drops it silently). */
  readonly dataDroppedOffline: number;
  readonly dataDroppedPolicy: number;
  readonly oobForwarded: number;
  /** OOB_SEND to a key no confirmed client holds. */
  readonly oobDroppedNoTarget: number;
  readonly oobDroppedPolicy: number;
  /** DATA or OOB_RECV dropped because the receiver's queue was at dataQueueMax. */
  readonly droppedQueueFull: number;
  /** DATA or OOB_RECV dropped because all queues together were at totalQueueMax. */
  readonly droppedTotalFull: number;
  /** ONION_REQUESTs ignored: this relay is no onion hop. */
  readonly onionDropped: number;
  /** Packets dropped by the per-client rate limits. */
  readonly oobDroppedRate: number;
  readonly pingDroppedRate: number;
  readonly routingDroppedRate: number;
  /** Bytes owed to all clients now (see outbox.ts), and the most ever at once. */
  readonly queuedBytes: number;
  readonly peakQueuedBytes: number;
  /** Connections closed so far, by reason. */
  readonly closed: Readonly<Record<RelayServerCloseReason, number>>;
  /** Connections tick() has looked at so far: only those whose deadline had come. */
  readonly timerChecks: number;
}

export interface RelayServerConnectionInfo {
  readonly id: ConnectionNumber;
  readonly acceptedAt: number;
  readonly status: RelayServerStatus;
  readonly publicKey: Uint8Array | null;
  /** Routing slots in use, and how many of them are online. */
  readonly routes: number;
  readonly online: number;
  /** Packets not yet sealed. */
  readonly queuedPackets: number;
  /** Bytes the relay owes this client on the wire (queued frames + the unwritten chunk). */
  readonly queuedBytes: number;
  /** The most queuedBytes ever was. */
  readonly peakQueuedBytes: number;
  readonly droppedQueueFull: number;
  /** Packets from this client dropped by its rate limits. */
  readonly droppedRate: number;
  /** When the relay's timer next looks at it (handshake timeout, PING, PONG due). */
  readonly deadline: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

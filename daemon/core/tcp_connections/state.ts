/**
 * The tables the parts of TCP_connections share: settings, randomness, relays, peers, the
 * pending actions and events, and the current time. One object handed to the helpers lets
 * the logic live in files by concern without each function taking half a dozen arguments.
 */
import type { RandomBytes } from "../common/crypto.ts";
import type { TcpConnectionsConfig } from "./config.ts";
import type { RelayAction, TcpConnectionsEvent } from "./types.ts";
import type { Relay } from "./relays.ts";
import type { Peer, PeerContext } from "./peers.ts";
import type { DeadlineHeap } from "../common/deadline_heap.ts";

export interface TcpConnectionsState extends PeerContext {
  readonly config: TcpConnectionsConfig;
  readonly random: RandomBytes;
  readonly relays: Map<string, Relay>;
  readonly peers: Map<string, Peer>;
  /** takeActions / takeEvents swap these out: reach them through this object, never keep one. */
  actions: RelayAction[];
  events: TcpConnectionsEvent[];
  /** The `now` of the command or input being handled. */
  now: number;
  /**
   * Every peer needs a look (set with every relay_state event by relayStateChanged, and when
   * a full relay frees a route): the next reconcile walks all peers instead of `dirty` alone.
   */
  allDirty: boolean;
  /** Peers whose deadline may have moved without anything to reconcile (a send). */
  readonly retime: Set<Peer>;
  /** Peers by next deadline (peerDeadline), so a tick visits only those due. */
  readonly timers: DeadlineHeap<Peer>;
}

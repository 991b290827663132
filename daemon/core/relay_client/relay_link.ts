/**
 * The interface between TCP_connections and one relay connection, wherever that connection runs
 * (today a relay Worker, workers/relay_connection.ts; in tests an in-process fake): the items
 * TCP_connections hands it to send, and the events it reports back. Declared here, in the core,
 * so that TCP_connections does not depend on the Worker message schema; workers/messages.ts
 * carries these types across the thread boundary.
 */
import type { RelayClientStats, RelayEvent, SendRefusal } from "./relay_client.ts";

/** A packet for the relay to carry: DATA to a routed peer, OOB to a peer by key, or onion. */
export type RelaySendItem =
  | { readonly kind: "data"; readonly publicKey: Uint8Array; readonly data: Uint8Array }
  | { readonly kind: "oob"; readonly publicKey: Uint8Array; readonly data: Uint8Array }
  | { readonly kind: "onion"; readonly data: Uint8Array };

/**
 * What one relay connection reports: the relay client's own events, and those of whatever runs it
 * (a Worker with its socket): connecting, refused sends handed back, credit, a crash.
 */
export type RelayLinkEvent =
  | RelayEvent
  | { readonly type: "connecting"; readonly attempt: number; readonly via: string }
  | { readonly type: "tcp_connected"; readonly connectMs: number }
  /** Send items the relay client would not take, handed back so nothing is silently lost. */
  | {
    readonly type: "refused";
    readonly reason: SendRefusal;
    readonly message: string;
    readonly items: readonly RelaySendItem[];
  }
  | { readonly type: "stats"; readonly stats: RelayClientStats }
  /**
   * Credit: data-lane items (DATA, OOB, onion) handed to the socket since the last report.
   * An owner that keeps (items sent − items credited − items refused) under a window never
   * overfills the lane; one event per batch, not per packet.
   */
  | { readonly type: "sent"; readonly packets: number }
  /** The session closed on a stall and the worker is reconnecting with the same key. */
  | { readonly type: "reconnecting"; readonly attempt: number; readonly routes: number }
  /** The Worker itself died (an uncaught error): its socket is gone with it. */
  | { readonly type: "crashed"; readonly message: string }
  /** A command the worker could not understand (an owner bug). */
  | { readonly type: "bad_command"; readonly message: string }
  /** Last message of a worker told to close: its socket is closed, it is exiting. */
  | { readonly type: "shutdown" };

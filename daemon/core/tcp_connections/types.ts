/**
 * What crosses the TCP_connections boundary: the actions the I/O shell carries out, the
 * events the layer above hears, send outcomes and the status views. Kept apart from the code
 * so Worker messages and the layers above depend on these shapes, not on the coordinator.
 */
import type { RelayAddress } from "../common/relay_address.ts";
import type { ProxyConfig } from "../relay_client/proxy.ts";
import type { Fault } from "../common/codec.ts";
import type { RelaySendItem } from "../relay_client/relay_link.ts";

/** sleeping: no worker, not needed · waiting: failed, back-off running · benched: replaced. */
export type RelayConnState = "sleeping" | "connecting" | "confirmed" | "waiting" | "benched";

/** TCP_CONNECTIONS_STATUS_NONE / REGISTERED / ONLINE. */
export type SlotStatus = "none" | "registered" | "online";

/** What the I/O shell must do. Relays are named by their public key in hex. */
export type RelayAction =
  | {
    readonly type: "open";
    readonly relay: string;
    readonly address: RelayAddress;
    readonly proxy?: ProxyConfig;
  }
  | { readonly type: "close"; readonly relay: string }
  | { readonly type: "route"; readonly relay: string; readonly publicKey: Uint8Array }
  | { readonly type: "unroute"; readonly relay: string; readonly publicKey: Uint8Array }
  | { readonly type: "send"; readonly relay: string; readonly items: RelaySendItem[] }
  | { readonly type: "stats"; readonly relay: string };

/** What the layer above hears. Peers and relays are named by public key in hex. */
export type TcpConnectionsEvent =
  | {
    readonly type: "relay_state";
    readonly relay: string;
    /** removed: by the user, or a learned relay that never connected (c-toxcore drops it). */
    readonly state: RelayConnState | "removed";
    /** Why it left `confirmed`, or why it was benched. */
    readonly reason?: string;
    readonly fault?: Fault;
    /** When a reconnect is scheduled. */
    readonly retryInMs?: number;
  }
  | { readonly type: "peer_online"; readonly peer: string; readonly relay: string }
  /**
   * A relay took our routing request for a peer that is online nowhere (status REGISTERED):
   * OOB to it can go that way now, so a handshake waiting for a path need not wait longer.
   */
  | { readonly type: "peer_registered"; readonly peer: string; readonly relay: string }
  | { readonly type: "peer_offline"; readonly peer: string }
  | {
    readonly type: "sender_changed";
    readonly peer: string;
    readonly from: string | null;
    readonly to: string | null;
    readonly reason: string;
  }
  | { readonly type: "data"; readonly peer: string; readonly relay: string; data: Uint8Array }
  /** OOB from a key that has no slot on that relay (c-toxcore's tcp_oob_callback). */
  | {
    readonly type: "oob";
    readonly from: Uint8Array;
    readonly relay: string;
    readonly data: Uint8Array;
  }
  | { readonly type: "onion"; readonly relay: string; readonly data: Uint8Array }
  /** A peer refused as congested may send again. */
  | { readonly type: "writable"; readonly peer: string }
  /** Items a relay worker handed back or lost in a close: best effort ends here. */
  | {
    readonly type: "send_failed";
    readonly relay: string;
    readonly packets: number;
    readonly reason: string;
  };

export type SendOutcome =
  | { readonly ok: true; readonly via: "data" | "onion"; readonly relay: string }
  | { readonly ok: true; readonly via: "oob"; readonly relays: readonly string[] }
  | {
    readonly ok: false;
    /** congested: every ONLINE relay is full, try again on `writable`. */
    readonly reason: "unknown_peer" | "invalid" | "congested" | "not_connected";
    readonly message: string;
  };

export interface SlotView {
  readonly relay: string;
  readonly status: SlotStatus;
  readonly connectionId: number | null;
  readonly sending: boolean;
  readonly proven: boolean;
  readonly suspect: string | null;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface PeerView {
  readonly publicKey: string;
  readonly online: boolean;
  readonly sender: string | null;
  readonly slots: readonly SlotView[];
  /** Relays learned for this peer (hints, shared relays), in the order learned. */
  readonly learned: readonly string[];
  readonly oobSent: number;
  readonly congestedRefusals: number;
}

export interface RelayView {
  readonly publicKey: string;
  readonly host: string;
  readonly port: number;
  readonly state: RelayConnState;
  readonly global: boolean;
  readonly everConfirmed: boolean;
  readonly rttMs: number | null;
  readonly score: number;
  readonly congested: boolean;
  readonly inflight: number;
  readonly peersRouted: number;
  readonly peersOnline: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly sendFailures: number;
  /** From the relay worker's last stats report. */
  readonly queueDepth: number;
  readonly queueBytes: number;
  readonly queueHighWater: number;
  readonly sessions: number;
  readonly lastError: string | null;
  readonly benchedReason: string | null;
  readonly retryInMs: number | null;
  readonly upForMs: number | null;
}

export type AddRelayResult =
  | { readonly ok: true; readonly relay: string; readonly added: boolean }
  | { readonly ok: false; readonly message: string };

/** Keys in reasons and status text: a full one is 64 characters. */
export const shortKey = (hex: string) => hex.slice(0, 8);

/**
 * What the onion client tells the rest of the stack: events as they happen, and views on request
 * to answer "why is my friend offline". Kept apart so the shell and the workers can name them
 * without importing the state machine.
 */

import type { RelayAddress } from "../common/relay_address.ts";

export interface OnionAnnounceNodeView {
  readonly publicKey: string;
  /** host:port (UDP) as our relays reach it. */
  readonly address: string;
  readonly stored: boolean;
  readonly lastResponseAgoMs: number | null;
  readonly pingsUnanswered: number;
}

export interface OnionPathView {
  readonly relay: string;
  /** The two UDP hops after the relay, then nothing: the destination varies per packet. */
  readonly nodes: readonly string[];
  readonly ageMs: number;
  readonly lastSuccessAgoMs: number | null;
}

export interface OnionView {
  /** Stored at one node at least and at half of the live announce nodes (onion_isconnected). */
  readonly announced: boolean;
  readonly announceNodes: readonly OnionAnnounceNodeView[];
  readonly paths: readonly OnionPathView[];
  readonly pathNodes: number;
  readonly bootstrapNodes: number;
  readonly lastResponseAgoMs: number | null;
  /** Announce and search requests sent and not yet answered (at most maxSendbacks). */
  readonly awaitingResponses: number;
  readonly requestsSent: number;
  readonly responses: number;
  readonly dataReceived: number;
  readonly dropped: number;
}

export interface OnionFriendView {
  /** Search nodes with a live answer. */
  readonly nodes: number;
  /** Of those, how many hold the friend's announcement (it is findable there). */
  readonly announcedAt: number;
  readonly lastSearchAgoMs: number | null;
  readonly dhtPkSentAgoMs: number | null;
  readonly dhtPkReceivedAgoMs: number | null;
}

export type OnionEvent =
  /** Whether friends can find us changed (see OnionView.announced). */
  | {
    readonly type: "onion_announced";
    readonly announced: boolean;
    readonly storedAt: number;
    readonly nodes: number;
    /** ms since a relay came up with none up before (the onion's "start"), when announced. */
    readonly sinceRelayUpMs: number | null;
  }
  /** A friend's announcement was found: we can send it onion data now. */
  | { readonly type: "onion_friend_found"; readonly friend: string; readonly nodes: number };

export type OnionClientEvent =
  | OnionEvent
  /** A friend told us its DHT key and the relays it uses (DHT-PK, 0x9c). */
  | {
    readonly type: "onion_dht_pk";
    readonly friend: string;
    readonly dhtPublicKey: Uint8Array;
    readonly relays: readonly RelayAddress[];
  }
  /** Onion data 0x20 from anybody: Messenger decides whether it is a request for us. */
  | {
    readonly type: "onion_friend_request";
    readonly sender: Uint8Array;
    readonly nospam: Uint8Array;
    readonly message: Uint8Array;
  };

/** The counters OnionView reports, kept by whichever part sends or receives. */
export interface OnionCounters {
  requestsSent: number;
  responses: number;
  dataReceived: number;
  dropped: number;
}

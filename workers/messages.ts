/**
 * Every message that crosses a Worker boundary, typed in one place.
 *
 * Packet buffers travel as transferables (moved, not copied). Both directions batch: one
 * postMessage carries many sends or many events, because a cross-worker message costs far
 * more than sealing a packet (design.md: ~143k one-way messages/s vs ~65k seals/s).
 */
import type { KeylogEntry } from "../daemon/core/capture/keylog.ts";
import type { ProxyConfig } from "../daemon/core/relay_client/proxy.ts";
import type { RelayAddress } from "../daemon/core/common/relay_address.ts";
import type { TcpConnectionsConfig } from "../daemon/core/tcp_connections/config.ts";
import type {
  PeerView,
  RelayView,
  TcpConnectionsEvent,
} from "../daemon/core/tcp_connections/types.ts";
import type {
  MessageKind,
  MessengerEvent,
  MessengerFriendView,
  Profile,
} from "../daemon/core/messenger/messenger.ts";
import type { FriendConnectionConfig } from "../daemon/core/friend_connection/friend_connection.ts";
import type { OnionClientConfig } from "../daemon/core/onion/config.ts";
import type { OnionView } from "../daemon/core/onion/views.ts";
import type { NetCryptoStats } from "../daemon/core/net_crypto/net_crypto.ts";
import type { RelayClientConfig } from "../daemon/core/relay_client/relay_client.ts";
import type { RelayLinkEvent, RelaySendItem } from "../daemon/core/relay_client/relay_link.ts";

export type { RelayAddress, RelayLinkEvent, RelaySendItem };

/** Owner → relay worker. */
export type ToRelayWorker =
  | {
    readonly t: "connect";
    readonly relay: RelayAddress;
    /** Our DHT key pair. */
    readonly self: { readonly publicKey: Uint8Array; readonly secretKey: Uint8Array };
    /** With a proxy set the worker never connects to the relay directly. */
    readonly proxy?: ProxyConfig;
    readonly config?: Partial<RelayClientConfig>;
    /** Reconnect at once (same key, same routes) when the relay stalls. Default true. */
    readonly reconnectOnStall?: boolean;
  }
  | { readonly t: "route"; readonly publicKey: Uint8Array }
  | { readonly t: "unroute"; readonly publicKey: Uint8Array }
  | { readonly t: "send"; readonly items: readonly RelaySendItem[] }
  | { readonly t: "stats" }
  /** `lingerMs`: write what is queued for up to that long first (a clean shutdown). */
  | { readonly t: "close"; readonly lingerMs?: number }
  /**
   * From the Worker's creator only: every later command arrives on `port` and every event
   * leaves by it. Used when the thread that spawns relay workers (main) is not the one that
   * drives them (the coordinator): a Worker spawned from inside a Worker takes about a second
   * to start in Deno 2.9 (twice ~500 ms: to run, then to see its first message), one spawned
   * by main about 40 ms.
   */
  | { readonly t: "attach"; readonly port: MessagePort; readonly observe?: RelayObserve };

/**
 * What the relay worker's creator (main, where the capture and key log files are) wants to
 * see besides the protocol: sent to the creator itself, never over the attach port.
 */
export interface RelayObserve {
  /** Every byte read from and written to the socket (`capture` messages). */
  readonly capture: boolean;
  /** The session keys after each handshake (`keylog` messages). */
  readonly keylog: boolean;
}

/**
 * One socket's life as the capture sees it. `conn` numbers the worker's connection attempts
 * (a stall reconnect is a new TCP connection). Times are epoch milliseconds with sub-ms
 * precision. Endpoints are those of the real socket: the proxy's when one is set.
 */
export type CaptureEvent =
  | {
    readonly c: "open";
    readonly conn: number;
    readonly local: { readonly addr: string; readonly port: number };
    readonly remote: { readonly addr: string; readonly port: number };
    readonly at: number;
  }
  | {
    readonly c: "data";
    readonly conn: number;
    readonly from: "client" | "server";
    readonly bytes: Uint8Array;
    readonly at: number;
  }
  | {
    readonly c: "close";
    readonly conn: number;
    readonly by: "client" | "server";
    readonly reset: boolean;
    readonly at: number;
  };

/** Relay worker → its creator (not the attach port): capture and key log only. */
export type RelayWorkerObservation =
  | { readonly t: "capture"; readonly events: readonly CaptureEvent[] }
  | { readonly t: "keylog"; readonly entries: readonly KeylogEntry[] };

/** Relay worker → owner. */
export type FromRelayWorker = {
  readonly t: "events";
  readonly events: readonly RelayLinkEvent[];
};

/** Buffers worth transferring in a batch of send items or events. */
export function transferablesOf(
  items: readonly (RelaySendItem | RelayLinkEvent)[],
): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  const seen = new Set<ArrayBufferLike>();
  for (const it of items) {
    const data = (it as { data?: Uint8Array }).data;
    if (data && data.buffer instanceof ArrayBuffer && !seen.has(data.buffer)) {
      // Only whole buffers that belong to this payload alone may move.
      if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) {
        seen.add(data.buffer);
        out.push(data.buffer);
      }
    }
  }
  return out;
}

// ---- coordinator ------------------------------------------------------------------------

/** A packet for a peer (by DHT public key) through whichever relay TCP_connections picks. */
export interface PeerPacket {
  readonly publicKey: Uint8Array;
  readonly data: Uint8Array;
}

/**
 * Owner → coordinator worker. Any command may carry a `requestId`: the coordinator then
 * answers it with `command_done` (with a result where there is one) or a `command_failed`
 * naming it, so an owner can await each command (the daemon's control socket does).
 */
export type ToCoordinator = CoordinatorCommand & { readonly requestId?: number };

type CoordinatorCommand =
  | {
    readonly t: "init";
    /** Our DHT key pair: the key relays know us by. */
    readonly self: { readonly publicKey: Uint8Array; readonly secretKey: Uint8Array };
    readonly proxy?: ProxyConfig;
    readonly config?: Partial<TcpConnectionsConfig>;
    readonly relayConfig?: Partial<RelayClientConfig>;
    /**
     * Our long-term (Tox ID) key pair. With it the coordinator runs net_crypto,
     * friend_connection and Messenger; without it, only TCP_connections (raw peers).
     */
    readonly real?: { readonly publicKey: Uint8Array; readonly secretKey: Uint8Array };
    readonly profile?: Partial<Profile>;
    readonly friendConfig?: Partial<FriendConnectionConfig>;
    /** Report every net_crypto session key (`keylog` messages): the user's `--keylog`. */
    readonly keylog?: boolean;
    /** Our nospam (4 bytes, the Tox ID's): friend requests must carry it. */
    readonly nospam?: Uint8Array;
    /**
     * Onion bootstrap nodes: DHT key and the UDP address as our relays can reach it. Every
     * relay is also tried as one, at its TCP port (tox-bootstrapd's usual setup).
     */
    readonly bootstrap?: readonly RelayAddress[];
    readonly onionConfig?: Partial<OnionClientConfig>;
  }
  | { readonly t: "relay_add"; readonly relay: RelayAddress; readonly proxy?: ProxyConfig }
  /** A relay Worker spawned for a `relay_spawn` died; its events end with `crashed`. */
  | { readonly t: "relay_crashed"; readonly id: number; readonly message: string }
  | { readonly t: "relay_remove"; readonly publicKey: string }
  | { readonly t: "peer_add"; readonly publicKey: Uint8Array; readonly relays?: RelayAddress[] }
  | { readonly t: "peer_remove"; readonly publicKey: Uint8Array }
  | { readonly t: "peer_relay_add"; readonly publicKey: Uint8Array; readonly relay: RelayAddress }
  /**
   * Packets in order; a refused packet and every later one for that peer come back.
   * `epoch`: the newest send_refused epoch the owner had seen when it sent this. Packets for
   * a peer refused since then come back too, so a refusal never lets later packets overtake.
   */
  | { readonly t: "send"; readonly packets: readonly PeerPacket[]; readonly epoch?: number }
  | {
    readonly t: "oob";
    readonly relay: string;
    readonly publicKey: Uint8Array;
    readonly data: Uint8Array;
  }
  /** The layer above saw the peer acknowledge what we sent (see TcpConnections.delivered). */
  | { readonly t: "delivered"; readonly publicKey: Uint8Array }
  | { readonly t: "status"; readonly id: number }
  // ---- Messenger (needs `real` in init) ----
  /**
   * Add a friend; with a hint (DHT key and relays) it is dialled at once, else found through
   * the onion. With `request`, a friend request goes out through the onion as soon as the
   * friend is found, and again (5 s, 10 s, 20 s... apart, as c-toxcore) until it comes
   * online. For a friend already added and never online, `request` replaces the pending one
   * (a new nospam or message); for one that has been online it fails ("already a friend").
   */
  | {
    readonly t: "friend_add";
    readonly publicKey: Uint8Array;
    readonly dhtPublicKey?: Uint8Array;
    readonly relays?: readonly RelayAddress[];
    readonly request?: FriendRequestToSend;
  }
  /** Another onion bootstrap node (see `init.bootstrap`). */
  | { readonly t: "bootstrap_add"; readonly node: RelayAddress }
  | { readonly t: "friend_remove"; readonly publicKey: Uint8Array }
  | {
    readonly t: "friend_hint";
    readonly publicKey: Uint8Array;
    readonly dhtPublicKey?: Uint8Array;
    readonly relays?: readonly RelayAddress[];
  }
  /** `requestId` comes back in `message_queued` with the message id receipts will name. */
  | {
    readonly t: "friend_message";
    readonly publicKey: Uint8Array;
    readonly text: string;
    readonly kind?: MessageKind;
    readonly requestId?: number;
  }
  /**
   * Custom lossless packets in order; refused ones (and every later one) come back in
   * `friend_lossless_refused`, with the same epoch rule as `send`.
   */
  | {
    readonly t: "friend_lossless";
    readonly publicKey: Uint8Array;
    readonly packets: readonly Uint8Array[];
    readonly epoch?: number;
  }
  | {
    readonly t: "friend_lossy";
    readonly publicKey: Uint8Array;
    readonly packets: readonly Uint8Array[];
  }
  | { readonly t: "friend_typing"; readonly publicKey: Uint8Array; readonly typing: boolean }
  | { readonly t: "set_profile"; readonly profile: Partial<Profile> }
  /**
   * Hold friends' lossless packets in net_crypto (true) while the program that reads the
   * daemon's events is behind, so senders slow down instead of packets piling up; false
   * resumes and hands up what waited.
   */
  | { readonly t: "hold_delivery"; readonly hold: boolean }
  | { readonly t: "close" };

/** An outgoing friend request: the nospam of the friend's Tox ID and our message. */
export interface FriendRequestToSend {
  readonly nospam: Uint8Array;
  /** 1..MAX_FRIEND_REQUEST_DATA_SIZE bytes of UTF-8. */
  readonly message: string;
}

export interface CoordinatorStatus {
  readonly relays: readonly RelayView[];
  readonly peers: readonly PeerView[];
  /** The coordinator isolate's heap, and the process RSS. */
  readonly heapUsed: number;
  readonly rss: number;
  readonly workers: number;
  /** With Messenger on: our keys, profile and every friend (progress, session, path). */
  readonly self: {
    readonly realPublicKey: string;
    readonly dhtPublicKey: string;
    readonly profile: Profile;
    readonly netCrypto: NetCryptoStats;
    /** Announce nodes, paths, bootstrap nodes: whether friends can find us. */
    readonly onion: OnionView;
  } | null;
  readonly friends: readonly MessengerFriendView[];
}

export type CoordinatorEvent =
  | TcpConnectionsEvent
  | MessengerEvent
  | {
    readonly type: "message_queued";
    readonly friend: string;
    readonly requestId: number | null;
    readonly messageId: number;
  }
  | {
    readonly type: "friend_lossless_refused";
    readonly friend: string;
    readonly epoch: number;
    readonly reason: string;
    readonly message: string;
    readonly packets: readonly Uint8Array[];
  }
  /** Packets not taken (congested, not connected...): held by the owner until `writable`. */
  | {
    readonly type: "send_refused";
    readonly peer: string;
    /** Increases with every refusal; echo the newest seen in `send`. */
    readonly epoch: number;
    readonly reason: string;
    readonly message: string;
    readonly packets: readonly Uint8Array[];
  }
  | { readonly type: "status"; readonly id: number; readonly status: CoordinatorStatus }
  | {
    readonly type: "command_failed";
    readonly command: string;
    readonly message: string;
    readonly requestId?: number;
  }
  /** A command with a `requestId` went through; `result` where it has one (a message id). */
  | {
    readonly type: "command_done";
    readonly requestId: number;
    readonly command: string;
    readonly result?: unknown;
  }
  | { readonly type: "shutdown" };

/** Coordinator worker → owner. */
export type FromCoordinator =
  | { readonly t: "events"; readonly events: readonly CoordinatorEvent[] }
  /**
   * Start a relay Worker and hand it `port` (an `attach` command): the coordinator drives it
   * over the other end. `id` names it in `relay_release` and `relay_crashed`.
   */
  | { readonly t: "relay_spawn"; readonly id: number; readonly name: string; port: MessagePort }
  /** The coordinator is done with relay worker `id` (it has shut down, or would not). */
  | { readonly t: "relay_release"; readonly id: number }
  /** New net_crypto session keys, for the opt-in key log (only after `init.keylog`). */
  | { readonly t: "keylog"; readonly entries: readonly KeylogEntry[] };

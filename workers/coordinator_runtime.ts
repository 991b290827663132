/**
 * The I/O shell around TcpConnections: one relay Worker per relay it opens, one timer for
 * its deadlines, and the owner's commands and events. Runs inside the coordinator Worker;
 * kept apart from the Worker entry so tests and benchmarks can drive it in-thread too.
 *
 * Nothing queues here: a packet TcpConnections will not take goes back to the owner in a
 * `send_refused` event (with `writable` to follow), so the coordinator's memory is bounded
 * by the relays' send windows, whatever the owner or the relays do.
 */
import type { NetCryptoKeys } from "../daemon/core/net_crypto/connection.ts";
import { systemRandom, toHex } from "../daemon/core/common/crypto.ts";
import { Messenger } from "../daemon/core/messenger/messenger.ts";
import { TcpConnections } from "../daemon/core/tcp_connections/tcp_connections.ts";
import type { RelayAction } from "../daemon/core/tcp_connections/types.ts";
import type { RelayClientConfig } from "../daemon/core/relay_client/relay_client.ts";
import type { ProxyConfig } from "../daemon/core/relay_client/proxy.ts";
import type { RandomBytes } from "../daemon/core/common/crypto.ts";
import { RelayWorkerHandle } from "./relay_handle.ts";
import { DeadlineTimer } from "./deadline_timer.ts";
import type {
  CoordinatorEvent,
  CoordinatorStatus,
  PeerPacket,
  RelayLinkEvent,
  ToCoordinator,
} from "./messages.ts";

type InitCommand = Extract<ToCoordinator, { t: "init" }>;
type FriendCommand = Extract<
  ToCoordinator,
  {
    t:
      | "friend_add"
      | "friend_remove"
      | "friend_hint"
      | "friend_message"
      | "friend_lossless"
      | "friend_lossy"
      | "friend_typing"
      | "set_profile"
      | "bootstrap_add";
  }
>;

/** Where relay workers come from: real Workers, or fakes in tests. */
export interface RelayPort {
  route(publicKey: Uint8Array): void;
  unroute(publicKey: Uint8Array): void;
  send(items: Parameters<RelayWorkerHandle["send"]>[0]): void;
  requestStats(): void;
  close(graceMs?: number, lingerMs?: number): Promise<void>;
}

export type RelaySpawner = (
  opts: {
    relay: { host: string; port: number; publicKey: string };
    self: InitCommand["self"];
    proxy?: ProxyConfig;
    config?: Partial<RelayClientConfig>;
  },
  onEvents: (events: readonly RelayLinkEvent[]) => void,
) => RelayPort;

export const workerSpawner: RelaySpawner = (opts, onEvents) =>
  // The coordinator reconnects (with back-off) itself; the worker must not do it on its own.
  new RelayWorkerHandle({ ...opts, reconnectOnStall: false }, onEvents);

/** How long a closing relay may keep writing what is queued (the friends' KILL packets). */
const SHUTDOWN_LINGER_MS = 500;

export interface CoordinatorRuntimeOptions {
  readonly clock?: () => number;
  readonly random?: RandomBytes;
  readonly spawn?: RelaySpawner;
  /** Where new net_crypto session keys go when `init.keylog` is set. */
  readonly keylog?: (keys: NetCryptoKeys) => void;
  /** Unix time in ms; compared with `clock` to notice a suspend. Default Date.now. */
  readonly wallClock?: () => number;
}

/** The wall clock moved this much more than the monotonic one: we were suspended. */
const SUSPEND_JUMP_MS = 5_000;

export class CoordinatorRuntime {
  readonly #init: InitCommand;
  readonly #core: TcpConnections;
  /** net_crypto + friend_connection + Messenger, when we have a long-term key. */
  readonly #messenger: Messenger | null;
  readonly #emit: (events: CoordinatorEvent[]) => void;
  readonly #clock: () => number;
  readonly #wallClock: () => number;
  /** Wall clock minus monotonic clock at the last look; it grows by the time suspended. */
  #wallOffset: number;
  readonly #spawn: RelaySpawner;
  readonly #relays = new Map<string, RelayPort>();
  readonly #closing = new Set<Promise<void>>();
  readonly #timer = new DeadlineTimer();
  #outbox: CoordinatorEvent[] = [];
  #flushQueued = false;
  #closed = false;
  /** The command being run: its requestId, whether it failed, and its result. */
  #requestId: number | null = null;
  #failedCurrent = false;
  #result: unknown = undefined;
  /** Count of send_refused events, and the newest one per peer. */
  #epoch = 0;
  readonly #refusedAt = new Map<string, number>();

  constructor(
    init: InitCommand,
    emit: (events: CoordinatorEvent[]) => void,
    opts: CoordinatorRuntimeOptions = {},
  ) {
    this.#init = init;
    this.#emit = emit;
    this.#clock = opts.clock ?? (() => performance.now());
    this.#wallClock = opts.wallClock ?? (() => Date.now());
    this.#wallOffset = this.#wallClock() - this.#clock();
    this.#spawn = opts.spawn ?? workerSpawner;
    this.#core = new TcpConnections({
      now: this.#clock(),
      random: opts.random ?? systemRandom,
      proxy: init.proxy,
      config: init.config,
    });
    this.#messenger = init.real
      ? new Messenger({
        now: this.#clock(),
        random: opts.random ?? systemRandom,
        realKeys: init.real,
        dhtKeys: init.self,
        tcp: this.#core,
        profile: init.profile,
        config: init.friendConfig,
        keylog: init.keylog ? opts.keylog : undefined,
        nospam: init.nospam,
        bootstrap: init.bootstrap,
        onion: init.onionConfig,
        unixTimeMs: this.#wallClock(),
      })
      : null;
  }

  get messenger(): Messenger | null {
    return this.#messenger;
  }

  get core(): TcpConnections {
    return this.#core;
  }

  /** One owner command. Bad arguments become `command_failed`, never an exception. */
  command(msg: ToCoordinator): void {
    if (this.#closed) return;
    const rid = (msg as { requestId?: unknown }).requestId;
    this.#requestId = typeof rid === "number" && Number.isFinite(rid) ? rid : null;
    this.#failedCurrent = false;
    this.#result = undefined;
    try {
      this.#command(msg);
    } finally {
      if (this.#requestId !== null && !this.#failedCurrent) {
        this.#push({
          type: "command_done",
          requestId: this.#requestId,
          command: String(msg.t),
          result: this.#result,
        });
      }
      this.#requestId = null;
    }
  }

  #command(msg: ToCoordinator): void {
    const now = this.#clock();
    this.#noticeSuspend(now);
    const core = this.#core;
    switch (msg.t) {
      case "relay_add": {
        const r = core.addRelay(msg.relay, now, msg.proxy);
        if (!r.ok) this.#fail("relay_add", r.message);
        break;
      }
      case "relay_remove":
        if (!core.removeRelay(msg.publicKey, now)) this.#fail("relay_remove", "unknown relay");
        break;
      case "peer_add":
        if (!(msg.publicKey instanceof Uint8Array) || msg.publicKey.length !== 32) {
          this.#fail("peer_add", "public key must be 32 bytes");
          break;
        }
        core.addPeer(msg.publicKey, now);
        for (const relay of msg.relays ?? []) {
          const r = core.addPeerRelay(msg.publicKey, relay, now);
          if (!r.ok) this.#fail("peer_add", r.message);
        }
        break;
      case "peer_remove":
        if (!core.removePeer(msg.publicKey, now)) this.#fail("peer_remove", "unknown peer");
        this.#refusedAt.delete(toHex(msg.publicKey));
        break;
      case "peer_relay_add": {
        const r = core.addPeerRelay(msg.publicKey, msg.relay, now);
        if (!r.ok) this.#fail("peer_relay_add", r.message);
        break;
      }
      case "send":
        this.#send(msg.packets, msg.epoch ?? Infinity, now);
        break;
      case "oob": {
        const r = core.sendOob(msg.relay, msg.publicKey, msg.data, now);
        if (!r.ok) this.#fail("oob", `${r.reason}: ${r.message}`);
        break;
      }
      case "delivered":
        core.delivered(msg.publicKey, now);
        break;
      case "status":
        this.#push({ type: "status", id: msg.id, status: this.status() });
        break;
      case "friend_add":
      case "friend_remove":
      case "friend_hint":
      case "friend_message":
      case "friend_lossless":
      case "friend_lossy":
      case "friend_typing":
      case "set_profile":
      case "bootstrap_add":
        this.#friendCommand(msg, now);
        break;
      case "hold_delivery":
        if (this.#messenger === null) this.#fail(msg.t, "no Messenger in this coordinator");
        else this.#messenger.holdDelivery(msg.hold === true, now);
        break;
      case "init":
        this.#fail("init", "already initialised");
        break;
      case "close":
      case "relay_crashed":
        // The Worker entry handles these (close must answer after the relays are gone).
        break;
      default:
        this.#fail(String((msg as { t: unknown }).t), "unknown command");
    }
    this.#drive();
  }

  #send(packets: readonly PeerPacket[], epoch: number, now: number): void {
    // Per peer, in the order given.
    const byPeer = new Map<string, Uint8Array[]>();
    for (const p of packets) {
      const hex = toHex(p.publicKey instanceof Uint8Array ? p.publicKey : new Uint8Array(0));
      const list = byPeer.get(hex);
      if (list) list.push(p.data);
      else byPeer.set(hex, [p.data]);
    }
    for (const [peer, list] of byPeer) {
      const left = this.#sendInOrder(peer, epoch, list, "congested", (data) => {
        const r = this.#core.sendData(
          peer,
          data instanceof Uint8Array ? data : new Uint8Array(0),
          now,
        );
        return r.ok ? null : r;
      });
      if (left) this.#push({ type: "send_refused", peer, ...left });
    }
  }

  /**
   * Send one stream's packets in order until one is refused; return that one and every later
   * one with a new epoch. A stream refused since the owner's `epoch` takes nothing: packets
   * sent before the owner saw that refusal would overtake the refused ones.
   */
  #sendInOrder(
    stream: string,
    epoch: number,
    packets: readonly Uint8Array[],
    heldReason: string,
    sendOne: (p: Uint8Array) => { reason: string; message: string } | null,
  ): { epoch: number; reason: string; message: string; packets: Uint8Array[] } | null {
    let i = 0;
    let why: { reason: string; message: string } | null = null;
    if ((this.#refusedAt.get(stream) ?? 0) > epoch) {
      why = { reason: heldReason, message: "an earlier packet was refused" };
    } else {
      for (; i < packets.length && why === null; i++) why = sendOne(packets[i]);
      if (why !== null) i--;
    }
    if (why === null) return null;
    const e = ++this.#epoch;
    this.#refusedAt.set(stream, e);
    return { epoch: e, reason: why.reason, message: why.message, packets: packets.slice(i) };
  }

  #friendCommand(msg: FriendCommand, now: number): void {
    const m = this.#messenger;
    if (m === null) return this.#fail(msg.t, "no long-term key: Messenger is off");
    if (msg.t === "bootstrap_add") {
      const r = m.addBootstrap(msg.node, now);
      if (!r.ok) this.#fail(msg.t, r.message);
      return;
    }
    const key = (msg as { publicKey?: unknown }).publicKey;
    if (msg.t !== "set_profile" && !(key instanceof Uint8Array && key.length === 32)) {
      return this.#fail(msg.t, "friend public key must be 32 bytes");
    }
    const friend = msg.t === "set_profile" ? "" : toHex(msg.publicKey);
    const check = (r: { ok: boolean; message?: string }) => {
      if (!r.ok) this.#fail(msg.t, r.message ?? "failed");
    };
    switch (msg.t) {
      case "friend_add": {
        const r = m.addFriend(msg.publicKey, now, msg.request);
        check(r);
        if (r.ok && (msg.dhtPublicKey || msg.relays?.length)) {
          check(m.hint(friend, msg.dhtPublicKey ?? null, msg.relays ?? [], now));
        }
        return;
      }
      case "friend_remove":
        return check(m.removeFriend(friend, now));
      case "friend_hint":
        return check(m.hint(friend, msg.dhtPublicKey ?? null, msg.relays ?? [], now));
      case "friend_message": {
        const r = m.sendMessage(friend, String(msg.text), msg.kind ?? "normal", now);
        if (!r.ok) return this.#fail(msg.t, `${r.reason}: ${r.message}`);
        this.#push({
          type: "message_queued",
          friend,
          requestId: msg.requestId ?? null,
          messageId: r.messageId,
        });
        this.#result = { messageId: r.messageId };
        return;
      }
      case "friend_lossless": {
        const left = this.#sendInOrder(
          `friend:${friend}`,
          msg.epoch ?? Infinity,
          msg.packets,
          "send_queue_full",
          (p) => {
            const r = m.sendLossless(friend, p instanceof Uint8Array ? p : new Uint8Array(0), now);
            return r.ok ? null : r;
          },
        );
        if (left) this.#push({ type: "friend_lossless_refused", friend, ...left });
        this.#result = left
          ? { refused: left.packets.length, reason: left.reason, message: left.message }
          : { refused: 0 };
        return;
      }
      case "friend_lossy": {
        let dropped = 0;
        for (const p of msg.packets) {
          const r = m.sendLossy(friend, p, now);
          if (!r.ok && r.reason !== "dropped") return this.#fail(msg.t, r.message);
          if (!r.ok) dropped++;
        }
        this.#result = { dropped };
        return;
      }
      case "friend_typing":
        return check(m.setTyping(friend, msg.typing, now));
      case "set_profile": {
        const p = msg.profile ?? {};
        if (p.name !== undefined) check(m.setName(String(p.name), now));
        if (p.statusMessage !== undefined) check(m.setStatusMessage(String(p.statusMessage), now));
        if (p.userStatus !== undefined) check(m.setUserStatus(p.userStatus, now));
        return;
      }
    }
  }

  status(): CoordinatorStatus {
    const now = this.#clock();
    const mem = Deno.memoryUsage();
    const m = this.#messenger;
    return {
      relays: this.#core.relays(now),
      peers: this.#core.peers(now),
      heapUsed: mem.heapUsed,
      rss: mem.rss,
      workers: this.#relays.size,
      self: m
        ? {
          realPublicKey: toHex(this.#init.real!.publicKey),
          dhtPublicKey: toHex(this.#init.self.publicKey),
          profile: m.profile,
          netCrypto: m.netCryptoStats(),
          onion: m.onionView(now),
        }
        : null,
      friends: m ? m.friends(now) : [],
    };
  }

  /** Run the core's actions, pass its events through Messenger, re-arm the timer. */
  #drive(): void {
    if (this.#closed) return;
    const m = this.#messenger;
    // Messenger's reactions make new actions and events: run until both layers are quiet.
    for (let round = 0; round < 64; round++) {
      const actions = this.#core.takeActions();
      for (const a of actions) this.#act(a);
      const raw = this.#core.takeEvents();
      let events: CoordinatorEvent[] = raw;
      if (m !== null) {
        events = m.tcpEvents(raw, this.#clock());
        const mine = m.takeEvents();
        if (mine.length > 0) events = events.concat(mine);
      }
      if (events.length > 0) this.#push(...events);
      // Quiet only when the core had nothing either: an event Messenger consumed (a net_crypto
      // or onion packet) may have queued sends, which the next round hands to the relays.
      if (actions.length === 0 && raw.length === 0 && events.length === 0) break;
    }
    this.#arm();
  }

  #act(a: RelayAction): void {
    switch (a.type) {
      case "open": {
        this.#stop(a.relay); // a leftover of an earlier session, if any
        let port: RelayPort | null = null;
        const onEvents = (events: readonly RelayLinkEvent[]) => {
          // Events of a worker we have let go belong to a session that is over.
          if (port === null || this.#relays.get(a.relay) !== port || this.#closed) return;
          this.#core.relayEvents(a.relay, events, this.#clock());
          this.#drive();
        };
        port = this.#spawn(
          {
            relay: a.address,
            self: this.#init.self,
            proxy: a.proxy,
            config: this.#init.relayConfig,
          },
          onEvents,
        );
        this.#relays.set(a.relay, port);
        return;
      }
      case "close":
        this.#stop(a.relay);
        return;
      case "route":
        this.#relays.get(a.relay)?.route(a.publicKey);
        return;
      case "unroute":
        this.#relays.get(a.relay)?.unroute(a.publicKey);
        return;
      case "send":
        this.#relays.get(a.relay)?.send(a.items);
        return;
      case "stats":
        this.#relays.get(a.relay)?.requestStats();
        return;
    }
  }

  #stop(relay: string, lingerMs = 0): void {
    const port = this.#relays.get(relay);
    if (!port) return;
    this.#relays.delete(relay);
    const p = port.close(undefined, lingerMs).catch(() => {});
    this.#closing.add(p);
    p.finally(() => this.#closing.delete(p));
  }

  #arm(): void {
    const m = this.#messenger;
    const deadline = Math.min(this.#core.nextDeadline(), m?.nextDeadline() ?? Infinity);
    this.#timer.arm(deadline, this.#clock(), () => {
      const now = this.#clock();
      this.#noticeSuspend(now);
      this.#core.tick(now);
      m?.tick(now);
      this.#drive();
    });
  }

  /**
   * The monotonic clock stops while the machine sleeps; the wall clock does not. When the
   * wall clock has run ahead, everything learnt before the sleep may be stale: relays are
   * tried (or reopened) at once and the onion announces and searches again, instead of
   * minutes later on back-offs and intervals.
   */
  #noticeSuspend(now: number): void {
    const offset = this.#wallClock() - now;
    const jump = offset - this.#wallOffset;
    this.#wallOffset = offset;
    if (Math.abs(jump) <= SUSPEND_JUMP_MS) return;
    this.#core.wake(now, Math.max(0, jump));
    this.#messenger?.wake(now);
  }

  #fail(command: string, message: string): void {
    this.#failedCurrent = true;
    const requestId = this.#requestId ?? undefined;
    this.#push({ type: "command_failed", command, message, requestId });
  }

  #push(...events: CoordinatorEvent[]): void {
    for (const e of events) this.#outbox.push(e);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => {
        this.#flushQueued = false;
        const batch = this.#outbox;
        this.#outbox = [];
        if (batch.length > 0) this.#emit(batch);
      });
    }
  }

  /**
   * Close every relay worker; resolves when they are gone. Friends are told first: each
   * session's KILL is handed to its relay, which gets `SHUTDOWN_LINGER_MS` to write it.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const m = this.#messenger;
    if (m !== null) {
      m.shutdown(this.#clock());
      this.#drive();
    }
    this.#closed = true;
    this.#timer.disarm();
    for (const relay of [...this.#relays.keys()]) this.#stop(relay, SHUTDOWN_LINGER_MS);
    while (this.#closing.size > 0) await Promise.allSettled([...this.#closing]);
  }
}

/**
 * Many friends in one thread: each is a whole Messenger stack (CoordinatorRuntime: TCP
 * connections, net_crypto, friend_connection, Messenger, onion) with its relay connection
 * driven here rather than in a Worker of its own, so a bench can put a thousand friends in
 * front of one daemon without a thousand isolates. Each friend knows the daemon's DHT key and
 * one relay (the hint a user gives with `ctl friend add --dht --relay`), as the daemon knows
 * theirs.
 */
import { fromHex, newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import { CoordinatorRuntime, type RelaySpawner } from "../../workers/coordinator_runtime.ts";
import { RelayConnection } from "../../workers/relay_connection.ts";
import { DEFAULT_PACER } from "../../daemon/core/relay_client/pacer.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";

/**
 * Relay connections in this thread (a RelayConnection per relay, no Worker): what a Worker's
 * shell does, minus the message passing. A thousand of them share one event loop, whose
 * pauses run to hundreds of ms: the 400 ms stall rule (made for a Worker that owns its thread,
 * against tox-bootstrapd's half-frame deadlock, which these light flows cannot reach) would
 * blame and bench healthy relays, so only the ordinary ping timeout applies here (and a write
 * may wait as long).
 */
export const inThreadSpawner: RelaySpawner = (opts, onEvents) => {
  const pacer = { ...(opts.config?.pacer ?? DEFAULT_PACER), relayMayDeadlock: false };
  const conn = new RelayConnection(
    {
      t: "connect",
      ...opts,
      config: { ...opts.config, pacer, stallTimeoutMs: 10_000 },
      reconnectOnStall: false,
    },
    (events) => onEvents(events),
  );
  conn.start();
  return {
    route: (pk) => conn.route(pk),
    unroute: (pk) => conn.unroute(pk),
    send: (items) => conn.send(items),
    requestStats: () => conn.requestStats(),
    close: async (_graceMs, lingerMs) => {
      await conn.close(lingerMs ?? 0);
      onEvents([{ type: "shutdown" }]);
    },
  };
};

/** What a swarm member needs to know of the daemon it befriends. */
export interface SwarmTarget {
  readonly publicKey: string;
  readonly dhtPublicKey: string;
}

export interface SwarmMember {
  readonly publicKey: string;
  readonly dhtPublicKey: string;
  readonly relay: RelayAddress;
  /** performance.now() when the daemon was first seen online by this member, or null. */
  onlineAt: number | null;
}

export class FriendSwarm {
  readonly members: SwarmMember[] = [];
  readonly #runtimes: CoordinatorRuntime[] = [];
  #online = 0;
  #waiters: (() => void)[] = [];

  /** Friends seeing the daemon online now. */
  get online(): number {
    return this.#online;
  }

  /**
   * Start `n` friends of `target`, friend i on `relays[i % relays.length]`, `perSecond` at a
   * time (a relay takes a burst of new clients badly: c-toxcore keeps 256 handshakes at once).
   */
  static async start(
    n: number,
    relays: readonly RelayAddress[],
    target: SwarmTarget,
    perSecond = 200,
  ): Promise<FriendSwarm> {
    const swarm = new FriendSwarm();
    for (let i = 0; i < n; i++) {
      if (i > 0 && i % perSecond === 0) await new Promise((r) => setTimeout(r, 1_000));
      swarm.#add(relays[i % relays.length], target);
    }
    return swarm;
  }

  #add(relay: RelayAddress, target: SwarmTarget): void {
    const dht = newKeyPair();
    const real = newKeyPair();
    const member: SwarmMember = {
      publicKey: toHex(real.publicKey),
      dhtPublicKey: toHex(dht.publicKey),
      relay,
      onlineAt: null,
    };
    let seenOnline = false;
    const rt = new CoordinatorRuntime(
      {
        t: "init",
        self: dht,
        real,
        // No announce and no search of our own: each side knows the other from its hint, and a
        // thousand announcers and searchers would measure this thread and the relays' onion,
        // not the daemon.
        onionConfig: { maxAnnounceNodes: 0, maxSearchNodes: 0, searchRequestsPerSec: 1 },
        // One relay each, the one it was given: a member would otherwise keep 3 relays
        // connected and route the daemon on those it shares, 3,000 sessions in this thread.
        config: { keepConnected: 1, recommendedRelays: 1, maxRelaysPerPeer: 1 },
      },
      (events: CoordinatorEvent[]) => {
        for (const e of events) {
          if (e.type === "friend_online" && !seenOnline) {
            seenOnline = true;
            member.onlineAt ??= performance.now();
            this.#online++;
            this.#wake();
          } else if (e.type === "friend_offline" && seenOnline) {
            seenOnline = false;
            this.#online--;
          }
        }
      },
      { spawn: inThreadSpawner },
    );
    rt.command({ t: "relay_add", relay });
    rt.command({
      t: "friend_add",
      publicKey: fromHex(target.publicKey, 32),
      dhtPublicKey: fromHex(target.dhtPublicKey, 32),
      relays: [relay],
    });
    this.members.push(member);
    this.#runtimes.push(rt);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `count` members see the daemon online, or after `ms` (then false). */
  async untilOnline(count: number, ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    while (this.#online < count) {
      const left = end - performance.now();
      if (left <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, Math.min(left, 1_000));
      });
      clearTimeout(timer);
    }
    return true;
  }

  /**
   * Why members are off their relay: for each member whose relay session is not confirmed,
   * its last error (up to the first ':'), counted; most frequent first. What a bench prints
   * when not every member came online, so the swarm's own trouble is not taken for the daemon's.
   */
  relayTrouble(): [reason: string, members: number][] {
    const count = new Map<string, number>();
    for (const rt of this.#runtimes) {
      const relay = rt.status().relays.find((r) => r.global);
      if (!relay || relay.state === "confirmed") continue;
      const why = `${relay.state}: ${(relay.lastError ?? "no error").split(":")[0]}`;
      count.set(why, (count.get(why) ?? 0) + 1);
    }
    return [...count].sort((x, y) => y[1] - x[1]);
  }

  async close(): Promise<void> {
    await Promise.all(this.#runtimes.map((rt) => rt.close()));
  }
}

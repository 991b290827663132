/**
 * A deterministic network for sans-I/O tests: Messenger nodes on virtual time, joined by
 * simulated TCP relays that speak TCP_connections' worker-event language (confirmed,
 * routed, online/offline, data, oob, sent credits). No sockets, no timers.
 *
 * Relays can be killed (every client sees `closed`), and can drop DATA by a policy, which
 * is how a c-toxcore relay loses packets under load. Each relay is also a lone onion node
 * (support/onion_node.ts), as tox-bootstrapd is: its clients can announce, search and send
 * onion data through it.
 */
import { newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import type { KeyPair } from "../../daemon/core/common/crypto.ts";
import { Messenger, type MessengerEvent } from "../../daemon/core/messenger/messenger.ts";
import type { FriendConnectionConfig } from "../../daemon/core/friend_connection/friend_connection.ts";
import { TcpConnections } from "../../daemon/core/tcp_connections/tcp_connections.ts";
import type { RelayAddress, RelayLinkEvent } from "../../workers/messages.ts";
import { seededRandom } from "../../tools/testbed/fake_relay.ts";
import { LoneNode } from "./onion_node.ts";

export interface SimNode {
  readonly name: string;
  readonly real: KeyPair;
  readonly dht: KeyPair;
  readonly tcp: TcpConnections;
  readonly messenger: Messenger;
  readonly events: MessengerEvent[];
  readonly hex: string;
  /** The nospam of its Tox ID (friend requests to it must carry it). */
  readonly nospam: Uint8Array;
}

interface SimRelay {
  readonly onion: LoneNode;
  readonly address: RelayAddress;
  alive: boolean;
  /** node name → (peer DHT hex → connection id) */
  readonly routes: Map<string, Map<string, number>>;
  readonly clients: Set<string>;
  dropData: (from: string, to: string, data: Uint8Array) => boolean;
  nextId: number;
}

interface Scheduled {
  at: number;
  seq: number;
  run: () => void;
}

export class SimNet {
  now = 1_000_000;
  latencyMs = 5;
  readonly nodes = new Map<string, SimNode>();
  readonly relays = new Map<string, SimRelay>();
  #queue: Scheduled[] = [];
  #seq = 0;
  #seed = 7;
  delivered = 0;
  dropped = 0;

  addRelay(): RelayAddress {
    const kp = newKeyPair(seededRandom(this.#seed++));
    const address = {
      host: "127.0.0.1",
      port: 33000 + this.relays.size,
      publicKey: toHex(kp.publicKey),
    };
    const onion = new LoneNode(() => this.now, {
      keys: kp,
      host: address.host,
      port: address.port,
      seed: this.#seed++,
    });
    this.relays.set(address.publicKey, {
      onion,
      address,
      alive: true,
      routes: new Map(),
      clients: new Set(),
      dropData: () => false,
      nextId: 16,
    });
    return address;
  }

  /** Fresh keys from the net's seed, for a node added later (or restarted: same real key). */
  keys(): { real: KeyPair; dht: KeyPair } {
    const random = seededRandom(this.#seed++ * 1000 + 1);
    return { real: newKeyPair(random), dht: newKeyPair(random) };
  }

  addNode(
    name: string,
    relays: readonly RelayAddress[],
    config: Partial<FriendConnectionConfig> = {},
    keys: { real: KeyPair; dht: KeyPair } = this.keys(),
  ): SimNode {
    const random = seededRandom(this.#seed++ * 1000);
    const { real, dht } = keys;
    const nospam = random(4);
    const tcp = new TcpConnections({ now: this.now, random });
    for (const r of relays) tcp.addRelay(r, this.now);
    const messenger = new Messenger({
      now: this.now,
      random,
      realKeys: real,
      dhtKeys: dht,
      tcp,
      profile: { name },
      config,
      nospam,
      unixTimeMs: 1_790_000_000_000 + this.now,
    });
    const node = {
      name,
      real,
      dht,
      tcp,
      messenger,
      events: [],
      hex: toHex(real.publicKey),
      nospam,
    };
    this.nodes.set(name, node);
    this.#drive(node);
    return node;
  }

  killRelay(address: RelayAddress): void {
    const relay = this.relays.get(address.publicKey)!;
    relay.alive = false;
    for (const client of relay.clients) {
      this.#to(client, address.publicKey, {
        type: "closed",
        reason: "socket_closed",
        fault: "network",
        message: "relay died",
        unsent: 0,
      });
    }
    relay.clients.clear();
    relay.routes.clear();
  }

  /**
   * The node vanishes (a crash, a restart). With `notify` its relays see the socket close
   * and send a disconnect notification to every client routed to it; without, they have not
   * noticed yet (a machine that went away without a FIN).
   */
  removeNode(name: string, notify = true): void {
    const node = this.nodes.get(name)!;
    const dhtHex = toHex(node.dht.publicKey);
    for (const relay of this.relays.values()) {
      if (!relay.clients.has(name)) continue;
      this.#leave(relay, name);
      if (!notify) continue;
      for (const other of relay.clients) {
        const id = relay.routes.get(other)?.get(dhtHex);
        if (id === undefined) continue;
        this.#to(other, relay.address.publicKey, {
          type: "offline",
          publicKey: node.dht.publicKey,
          connectionId: id,
        });
      }
    }
    this.nodes.delete(name);
  }

  setDropData(address: RelayAddress, f: (from: string, to: string, d: Uint8Array) => boolean) {
    this.relays.get(address.publicKey)!.dropData = f;
  }

  /** Run until `until()` holds or `maxMs` of virtual time pass. True if it held. */
  run(until: () => boolean, maxMs: number): boolean {
    const end = this.now + maxMs;
    while (!until()) {
      let next = end;
      for (const n of this.nodes.values()) {
        next = Math.min(next, n.messenger.nextDeadline(), n.tcp.nextDeadline());
      }
      if (this.#queue.length > 0) next = Math.min(next, this.#queue[0].at);
      if (next >= end && this.#queue.length === 0) {
        this.now = end;
        return until();
      }
      if (next > end) {
        this.now = end;
        return until();
      }
      this.now = Math.max(this.now, next);
      if (this.#queue.length > 0 && this.#queue[0].at <= this.now) {
        const s = this.#queue.shift()!;
        s.run();
        continue;
      }
      for (const n of this.nodes.values()) {
        if (Math.min(n.messenger.nextDeadline(), n.tcp.nextDeadline()) <= this.now) {
          n.tcp.tick(this.now);
          n.messenger.tick(this.now);
          this.#drive(n);
        }
      }
    }
    return true;
  }

  /** Let `ms` of virtual time pass. */
  advance(ms: number): void {
    this.run(() => false, ms);
  }

  /** Run a command on a node at the current time and process what it caused. */
  act<T>(node: SimNode, f: (m: Messenger, now: number) => T): T {
    const r = f(node.messenger, this.now);
    this.#drive(node);
    return r;
  }

  #schedule(delay: number, run: () => void): void {
    const s = { at: this.now + delay, seq: this.#seq++, run };
    let i = this.#queue.length;
    while (i > 0 && (this.#queue[i - 1].at > s.at)) i--;
    this.#queue.splice(i, 0, s);
  }

  #to(nodeName: string, relayHex: string, e: RelayLinkEvent): void {
    this.#schedule(this.latencyMs, () => {
      const node = this.nodes.get(nodeName);
      if (node === undefined) return; // removed while this was in flight
      node.tcp.relayEvents(relayHex, [e], this.now);
      this.#drive(node);
    });
  }

  /** Process a node's actions and events until it is quiet. */
  #drive(node: SimNode): void {
    for (let round = 0; round < 100; round++) {
      const actions = node.tcp.takeActions();
      const tcpEvents = node.tcp.takeEvents();
      node.messenger.tcpEvents(tcpEvents, this.now);
      const events = node.messenger.takeEvents();
      for (const e of events) node.events.push(e);
      for (const a of actions) this.#act(node, a);
      if (actions.length === 0 && tcpEvents.length === 0 && events.length === 0) return;
    }
    throw new Error(`${node.name}: actions keep coming`);
  }

  #act(node: SimNode, a: ReturnType<TcpConnections["takeActions"]>[number]): void {
    const relay = this.relays.get(a.relay);
    switch (a.type) {
      case "open":
        if (!relay?.alive) {
          this.#to(node.name, a.relay, {
            type: "closed",
            reason: "socket_error",
            fault: "network",
            message: "connection refused",
            unsent: 0,
          });
          return;
        }
        relay.clients.add(node.name);
        relay.routes.set(node.name, new Map());
        this.#to(node.name, a.relay, { type: "confirmed", handshakeMs: 1 });
        return;
      case "close":
        if (relay) this.#leave(relay, node.name);
        return;
      case "route": {
        if (!relay?.alive || !relay.clients.has(node.name)) return;
        const pkHex = toHex(a.publicKey);
        const mine = relay.routes.get(node.name)!;
        if (!mine.has(pkHex)) mine.set(pkHex, relay.nextId++);
        this.#to(node.name, a.relay, {
          type: "routed",
          publicKey: a.publicKey,
          connectionId: mine.get(pkHex)!,
        });
        const other = this.#clientByDht(relay, pkHex);
        if (other && relay.routes.get(other.name)?.has(toHex(node.dht.publicKey))) {
          this.#to(node.name, a.relay, {
            type: "online",
            publicKey: a.publicKey,
            connectionId: mine.get(pkHex)!,
          });
          this.#to(other.name, a.relay, {
            type: "online",
            publicKey: node.dht.publicKey,
            connectionId: relay.routes.get(other.name)!.get(toHex(node.dht.publicKey))!,
          });
        }
        return;
      }
      case "unroute":
        relay?.routes.get(node.name)?.delete(toHex(a.publicKey));
        return;
      case "send": {
        let credits = 0;
        for (const item of a.items) {
          if (item.kind !== "onion") credits++;
          if (!relay?.alive || !relay.clients.has(node.name)) continue;
          if (item.kind === "onion") {
            relay.onion.onionRequest(node.name, item.data);
            this.#onionReplies(relay);
            continue;
          }
          const to = this.#clientByDht(relay, toHex(item.publicKey));
          if (!to) continue;
          const fromKey = node.dht.publicKey;
          if (item.kind === "data") {
            if (relay.dropData(node.name, to.name, item.data)) {
              this.dropped++;
              continue;
            }
            const id = relay.routes.get(to.name)?.get(toHex(fromKey));
            if (id === undefined) continue;
            this.delivered++;
            this.#to(to.name, a.relay, {
              type: "data",
              publicKey: fromKey,
              connectionId: id,
              data: item.data,
            });
          } else {
            this.#to(to.name, a.relay, { type: "oob", publicKey: fromKey, data: item.data });
          }
        }
        if (credits > 0) this.#to(node.name, a.relay, { type: "sent", packets: credits });
        return;
      }
      case "stats":
        return;
    }
  }

  /** What the onion node answered goes to its clients, by name, as relay packet 9. */
  #onionReplies(relay: SimRelay): void {
    for (const client of [...relay.onion.outbox.keys()]) {
      for (const data of relay.onion.take(client)) {
        if (relay.clients.has(client)) {
          this.#to(client, relay.address.publicKey, { type: "onion", data });
        }
      }
    }
  }

  #clientByDht(relay: SimRelay, dhtHex: string): SimNode | undefined {
    for (const name of relay.clients) {
      const n = this.nodes.get(name)!;
      if (toHex(n.dht.publicKey) === dhtHex) return n;
    }
    return undefined;
  }

  #leave(relay: SimRelay, name: string): void {
    relay.clients.delete(name);
    relay.routes.delete(name);
  }
}

/**
 * The owner's side of the coordinator Worker: typed commands down, batched events up, a
 * status request that resolves with the reply, and a close that waits for every relay
 * worker to be gone before the Worker is terminated.
 *
 * It also spawns the relay Workers the coordinator asks for (`relay_spawn`) and hands each
 * the port the coordinator drives it by; it terminates them when released, and any left
 * over once the coordinator is gone.
 */
import type { RelayAddress } from "../daemon/core/common/relay_address.ts";
import type { ProxyConfig } from "../daemon/core/relay_client/proxy.ts";
import type { MessageKind, Profile } from "../daemon/core/messenger/messenger.ts";
import { OwnedWorker } from "./owned_worker.ts";
import { RELAY_WORKER_URL } from "./relay_handle.ts";
import type { KeylogEntry } from "../daemon/core/capture/keylog.ts";
import type {
  CaptureEvent,
  CoordinatorEvent,
  CoordinatorStatus,
  FriendRequestToSend,
  FromCoordinator,
  PeerPacket,
  RelayWorkerObservation,
  ToCoordinator,
  ToRelayWorker,
} from "./messages.ts";

const WORKER_URL = new URL("./coordinator.ts", import.meta.url);

export type CommandOutcome =
  | { readonly ok: true; readonly result?: unknown }
  | { readonly ok: false; readonly message: string };

/**
 * Opt-in observers of what the daemon's user asked to record (`--capture`, `--keylog`): the
 * bytes of every relay socket and the keys of every session. Relay workers report them to
 * this thread directly, not through the coordinator.
 */
export interface CoordinatorObserver {
  /** `relay` names the relay worker uniquely; its `conn` numbers that worker's sockets. */
  readonly capture?: (relay: string, events: readonly CaptureEvent[]) => void;
  readonly keylog?: (entries: readonly KeylogEntry[]) => void;
}

export class CoordinatorHandle {
  readonly #worker: OwnedWorker<ToCoordinator>;
  #nextId = 1;
  readonly #pending = new Map<number, (s: CoordinatorStatus) => void>();
  readonly #requests = new Map<number, (r: CommandOutcome) => void>();
  readonly #relayWorkers = new Map<number, OwnedWorker<ToRelayWorker>>();
  readonly #observer: CoordinatorObserver;

  constructor(
    init: Omit<Extract<ToCoordinator, { t: "init" }>, "t">,
    onEvents: (events: readonly CoordinatorEvent[]) => void,
    observer: CoordinatorObserver = {},
  ) {
    this.#observer = observer;
    this.#worker = new OwnedWorker<ToCoordinator>(
      WORKER_URL,
      "coordinator",
      (data) => {
        const msg = data as FromCoordinator;
        if (msg.t === "relay_spawn") return this.#spawnRelay(msg.id, msg.name, msg.port);
        if (msg.t === "relay_release") return this.#releaseRelay(msg.id);
        if (msg.t === "keylog") return observer.keylog?.(msg.entries);
        const rest: CoordinatorEvent[] = [];
        for (const ev of msg.events) {
          if (ev.type === "shutdown") {
            this.#worker.shutdownSeen();
            this.#settleAll("the coordinator shut down");
          }
          const reply = ev.type === "status" ? this.#pending.get(ev.id) : undefined;
          const done = ev.type === "command_done" || ev.type === "command_failed"
            ? this.#requests.get(ev.requestId ?? NaN)
            : undefined;
          if (ev.type === "status" && reply) {
            this.#pending.delete(ev.id);
            reply(ev.status);
          } else if (done && ev.type === "command_done") {
            this.#requests.delete(ev.requestId);
            done({ ok: true, result: ev.result });
          } else if (done && ev.type === "command_failed") {
            this.#requests.delete(ev.requestId!);
            done({ ok: false, message: ev.message });
            rest.push(ev);
          } else if (ev.type !== "command_done") rest.push(ev);
        }
        if (rest.length > 0) onEvents(rest);
      },
      (message) => {
        this.#settleAll(`coordinator crashed: ${message}`);
        onEvents([{
          type: "command_failed",
          command: "worker",
          message: `coordinator crashed: ${message}`,
        }]);
      },
    );
    this.#post({ t: "init", ...init, keylog: observer.keylog !== undefined });
  }

  #post(msg: ToCoordinator): void {
    this.#worker.post(msg);
  }

  /**
   * Run one command and learn how it went: `command_done` (with its result, e.g. a message
   * id) or `command_failed`. Rejects only if no answer comes within `timeoutMs`.
   */
  request(command: ToCoordinator, timeoutMs = 5_000): Promise<CommandOutcome> {
    const requestId = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#requests.delete(requestId);
        reject(new Error(`no answer to ${command.t} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#requests.set(requestId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.#post({ ...command, requestId });
    });
  }

  /** Answers that will never come (the coordinator is gone) fail now rather than time out. */
  #settleAll(message: string): void {
    for (const [id, settle] of this.#requests) {
      this.#requests.delete(id);
      settle({ ok: false, message });
    }
  }

  #spawnRelay(id: number, name: string, port: MessagePort): void {
    const { capture, keylog } = this.#observer;
    const worker = new OwnedWorker<ToRelayWorker>(
      RELAY_WORKER_URL,
      name,
      // The protocol goes over the port; only observations come this way.
      (data) => {
        const msg = data as RelayWorkerObservation;
        if (msg?.t === "capture") capture?.(`${name}#${id}`, msg.events);
        else if (msg?.t === "keylog") keylog?.(msg.entries);
      },
      (message) => {
        this.#releaseRelay(id);
        this.#post({ t: "relay_crashed", id, message });
      },
    );
    this.#relayWorkers.set(id, worker);
    const observe = { capture: capture !== undefined, keylog: keylog !== undefined };
    worker.post({ t: "attach", port, observe }, [port]);
  }

  #releaseRelay(id: number): void {
    this.#relayWorkers.get(id)?.terminate();
    this.#relayWorkers.delete(id);
  }

  addRelay(relay: RelayAddress, proxy?: ProxyConfig): void {
    this.#post({ t: "relay_add", relay, proxy });
  }

  removeRelay(publicKey: string): void {
    this.#post({ t: "relay_remove", publicKey });
  }

  addPeer(publicKey: Uint8Array, relays?: RelayAddress[]): void {
    this.#post({ t: "peer_add", publicKey, relays });
  }

  removePeer(publicKey: Uint8Array): void {
    this.#post({ t: "peer_remove", publicKey });
  }

  addPeerRelay(publicKey: Uint8Array, relay: RelayAddress): void {
    this.#post({ t: "peer_relay_add", publicKey, relay });
  }

  /** Packets are copied to the worker; refused ones come back in `send_refused`. */
  send(packets: readonly PeerPacket[], epoch?: number): void {
    this.#post({ t: "send", packets, epoch });
  }

  // ---- Messenger (the coordinator must have been given `real`) ----

  /** With `request`, a friend request goes out through the onion (see `friend_add`). */
  addFriend(
    publicKey: Uint8Array,
    opts?: {
      dhtPublicKey?: Uint8Array;
      relays?: RelayAddress[];
      request?: FriendRequestToSend;
    },
  ) {
    this.#post({ t: "friend_add", publicKey, ...opts });
  }

  removeFriend(publicKey: Uint8Array): void {
    this.#post({ t: "friend_remove", publicKey });
  }

  hintFriend(publicKey: Uint8Array, dhtPublicKey?: Uint8Array, relays?: RelayAddress[]): void {
    this.#post({ t: "friend_hint", publicKey, dhtPublicKey, relays });
  }

  sendMessage(publicKey: Uint8Array, text: string, kind?: MessageKind, requestId?: number) {
    this.#post({ t: "friend_message", publicKey, text, kind, requestId });
  }

  /** Refused packets come back in `friend_lossless_refused`; resend after `friend_send_ready`. */
  sendLossless(publicKey: Uint8Array, packets: readonly Uint8Array[], epoch?: number): void {
    this.#post({ t: "friend_lossless", publicKey, packets, epoch });
  }

  sendLossy(publicKey: Uint8Array, packets: readonly Uint8Array[]): void {
    this.#post({ t: "friend_lossy", publicKey, packets });
  }

  /** Hold friends' lossless packets in net_crypto while our program is behind; false resumes. */
  holdDelivery(hold: boolean): void {
    this.#post({ t: "hold_delivery", hold });
  }

  setProfile(profile: Partial<Profile>): void {
    this.#post({ t: "set_profile", profile });
  }

  delivered(publicKey: Uint8Array): void {
    this.#post({ t: "delivered", publicKey });
  }

  status(timeoutMs = 5_000): Promise<CoordinatorStatus> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`no status reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.#post({ t: "status", id });
    });
  }

  /** Close every relay and the coordinator; terminate it if it takes longer than `graceMs`. */
  async close(graceMs = 5_000): Promise<void> {
    await this.#worker.close({ t: "close" }, graceMs);
    // A coordinator that crashed or ran out of grace did not release its relays.
    for (const id of [...this.#relayWorkers.keys()]) this.#releaseRelay(id);
  }
}

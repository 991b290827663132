/// <reference lib="deno.worker" />
/**
 * Coordinator Worker entry: TCP_connections over one relay Worker per relay, speaking the
 * typed protocol of messages.ts with its owner.
 *
 * Relay Workers are spawned by the owner (`relay_spawn`) and driven from here over a
 * MessagePort, not nested: Deno 2.9 takes about a second to start a Worker spawned inside a
 * Worker, and that second was most of our time to a friend coming online.
 */
import { CoordinatorRuntime, type RelaySpawner } from "./coordinator_runtime.ts";
import { RelayWorkerHandle } from "./relay_handle.ts";
import { PortChannel } from "./owned_worker.ts";
import type {
  CoordinatorEvent,
  FromCoordinator,
  ToCoordinator,
  ToRelayWorker,
} from "./messages.ts";

let runtime: CoordinatorRuntime | null = null;

function post(events: CoordinatorEvent[]): void {
  const msg: FromCoordinator = { t: "events", events };
  self.postMessage(msg, coordinatorTransferables(events));
}

/** Relay workers the owner spawned for us, by the id of their `relay_spawn`. */
const spawned = new Map<
  number,
  { channel: PortChannel<ToRelayWorker>; crashed: (message: string) => void }
>();
let nextRelayId = 1;

const spawnViaOwner: RelaySpawner = (opts, onEvents) =>
  // The coordinator reconnects (with back-off) itself; the worker must not do it on its own.
  new RelayWorkerHandle(
    { ...opts, reconnectOnStall: false },
    onEvents,
    (name, onMessage, onCrash) => {
      const id = nextRelayId++;
      const { port1, port2 } = new MessageChannel();
      const channel = new PortChannel<ToRelayWorker>(port1, onMessage, () => {
        spawned.delete(id);
        const release: FromCoordinator = { t: "relay_release", id };
        self.postMessage(release);
      });
      spawned.set(id, { channel, crashed: onCrash });
      const spawn: FromCoordinator = { t: "relay_spawn", id, name, port: port2 };
      self.postMessage(spawn, [port2]);
      return channel;
    },
  );

function failed(command: string, message: string): void {
  post([{ type: "command_failed", command, message }]);
}

// Set before anything else can run, so no early message is lost.
self.onmessage = (e: MessageEvent<ToCoordinator>) => {
  const msg = e.data;
  try {
    if (msg === null || typeof msg !== "object" || typeof msg.t !== "string") {
      return failed("?", "message is not a command object");
    }
    if (msg.t === "init") {
      if (runtime !== null) return failed("init", "already initialised");
      runtime = new CoordinatorRuntime(msg, post, {
        spawn: spawnViaOwner,
        keylog: (keys) => {
          const m: FromCoordinator = { t: "keylog", entries: [keys] };
          self.postMessage(m);
        },
      });
      return;
    }
    if (msg.t === "relay_crashed") {
      const r = spawned.get(msg.id);
      r?.channel.died();
      r?.crashed(msg.message);
      return;
    }
    if (runtime === null) return failed(msg.t, `"${msg.t}" before "init"`);
    if (msg.t === "close") {
      const r = runtime;
      r.close().then(() => {
        post([{ type: "shutdown" }]);
        self.close();
      });
      return;
    }
    runtime.command(msg);
  } catch (err) {
    failed(String((msg as { t?: unknown })?.t), `command failed: ${err}`);
  }
};

/** Whole buffers carried by events (data, oob, onion, refused packets) move, not copy. */
function coordinatorTransferables(events: readonly CoordinatorEvent[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  const seen = new Set<ArrayBufferLike>();
  const take = (data: Uint8Array) => {
    const buf = data.buffer;
    if (
      buf instanceof ArrayBuffer && !seen.has(buf) && data.byteOffset === 0 &&
      data.byteLength === buf.byteLength
    ) {
      seen.add(buf);
      out.push(buf);
    }
  };
  for (const e of events) {
    if (e.type === "data" || e.type === "oob" || e.type === "onion") take(e.data);
    else if (e.type === "send_refused") e.packets.forEach(take);
  }
  return out;
}

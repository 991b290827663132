/// <reference lib="deno.worker" />
/**
 * Coordinator Worker entry: TCP_connections over one relay Worker per relay (nested
 * Workers it owns), speaking the typed protocol of messages.ts with its owner.
 */
import { CoordinatorRuntime } from "./coordinator_runtime.ts";
import type { CoordinatorEvent, FromCoordinator, ToCoordinator } from "./messages.ts";

let runtime: CoordinatorRuntime | null = null;

function post(events: CoordinatorEvent[]): void {
  const msg: FromCoordinator = { t: "events", events };
  self.postMessage(msg, coordinatorTransferables(events));
}

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
      runtime = new CoordinatorRuntime(msg, post);
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

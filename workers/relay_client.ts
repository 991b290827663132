/// <reference lib="deno.worker" />
/**
 * Relay Worker entry: one Worker per TCP relay connection. It owns the socket (sockets
 * cannot move between workers) and speaks the typed protocol of messages.ts with its owner.
 */
import { RelayConnection, type RelayObserver } from "./relay_connection.ts";
import {
  type FromRelayWorker,
  type RelayLinkEvent,
  type RelayObserve,
  type RelayWorkerObservation,
  type ToRelayWorker,
  transferablesOf,
} from "./messages.ts";

let connection: RelayConnection | null = null;
/** Set by `attach`: the owner's port, when the thread driving us is not the one that spawned us. */
let port: MessagePort | null = null;
/** What our creator asked to observe (`attach`); it hears it directly, not over the port. */
let observer: RelayObserver | undefined;

function observe(what: RelayObserve): RelayObserver | undefined {
  if (!what.capture && !what.keylog) return undefined;
  const tell = (msg: RelayWorkerObservation) => self.postMessage(msg);
  return {
    capture: what.capture ? (events) => tell({ t: "capture", events }) : undefined,
    keylog: what.keylog ? (entry) => tell({ t: "keylog", entries: [entry] }) : undefined,
  };
}

function post(events: RelayLinkEvent[]): void {
  const msg: FromRelayWorker = { t: "events", events };
  if (port !== null) port.postMessage(msg, transferablesOf(events));
  else self.postMessage(msg, transferablesOf(events));
}

function badCommand(message: string): void {
  post([{ type: "bad_command", message }]);
}

function onCommand(e: MessageEvent<ToRelayWorker>): void {
  try {
    handle(e.data);
  } catch (err) {
    badCommand(`command ${JSON.stringify((e.data as { t?: unknown })?.t)} failed: ${err}`);
  }
}

// Set before anything else can run, so no early message is lost.
self.onmessage = onCommand;

function handle(msg: ToRelayWorker): void {
  if (msg === null || typeof msg !== "object" || typeof msg.t !== "string") {
    return badCommand("message is not a command object");
  }
  if (msg.t === "attach") {
    if (port !== null || connection !== null) return badCommand("attach must come first, once");
    if (!(msg.port instanceof MessagePort)) return badCommand("attach needs a MessagePort");
    port = msg.port;
    port.onmessage = onCommand;
    if (msg.observe) observer = observe(msg.observe);
    return;
  }
  if (msg.t === "connect") {
    if (connection !== null) return badCommand("already connected; one relay per worker");
    connection = new RelayConnection(msg, post, undefined, observer);
    connection.start();
    return;
  }
  if (connection === null) return badCommand(`"${msg.t}" before "connect"`);
  switch (msg.t) {
    case "route":
      return connection.route(msg.publicKey);
    case "unroute":
      return connection.unroute(msg.publicKey);
    case "send":
      return connection.send(msg.items);
    case "stats":
      return connection.requestStats();
    case "close":
      connection.close(typeof msg.lingerMs === "number" ? msg.lingerMs : 0).then(() => {
        post([{ type: "shutdown" }]);
        self.close();
      });
      return;
    default:
      return badCommand(`unknown command ${JSON.stringify((msg as { t: unknown }).t)}`);
  }
}

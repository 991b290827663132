/**
 * The coordinator Worker at its boundary: whatever an owner posts, it answers with a typed
 * `command_failed` and lives on; it closes cleanly. The runtime with fake relay ports: what
 * TcpConnections decides reaches the relays, and a crashed relay Worker is replaced.
 */
import assert from "node:assert/strict";
import { newKeyPair } from "../daemon/core/common/crypto.ts";
import { CoordinatorRuntime, type RelayPort } from "../workers/coordinator_runtime.ts";
import type { CoordinatorEvent, FromCoordinator, RelayLinkEvent } from "../workers/messages.ts";
import { seededRandom } from "../tools/testbed/fake_relay.ts";
import { LoneNode } from "./support/onion_node.ts";

const RELAY = { host: "127.0.0.1", port: 9, publicKey: "ab".repeat(32) };

Deno.test("coordinator worker: bad commands get command_failed and the worker lives on", async () => {
  const worker = new Worker(new URL("../workers/coordinator.ts", import.meta.url), {
    type: "module",
  });
  const events: CoordinatorEvent[] = [];
  let wake: () => void = () => {};
  worker.onmessage = (e: MessageEvent<FromCoordinator>) => {
    if (e.data.t === "events") events.push(...e.data.events);
    wake();
  };
  const until = async (pred: () => boolean, what: string) => {
    const end = Date.now() + 5_000;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`${what}; got ${JSON.stringify(events)}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, 100);
      });
      clearTimeout(timer);
    }
  };
  const failures = () => events.filter((e) => e.type === "command_failed");
  try {
    worker.postMessage(null);
    worker.postMessage({ t: "status", id: 1 }); // before init
    await until(() => failures().length === 2, "two failures before init");
    worker.postMessage({ t: "init", self: newKeyPair() });
    worker.postMessage({ t: "init", self: newKeyPair() });
    worker.postMessage({ t: "bogus" });
    worker.postMessage({ t: "relay_add", relay: { host: "127.0.0.1", port: 9, publicKey: "zz" } });
    worker.postMessage({ t: "peer_add", publicKey: "not bytes" });
    worker.postMessage({ t: "peer_remove", publicKey: new Uint8Array(32) });
    worker.postMessage({ t: "relay_remove", publicKey: "cd".repeat(32) });
    worker.postMessage({
      t: "oob",
      relay: "x",
      publicKey: new Uint8Array(32),
      data: new Uint8Array(1),
    });
    worker.postMessage({ t: "send", packets: [{ publicKey: 5, data: "x" }] });
    worker.postMessage({ t: "send", packets: null });
    worker.postMessage({ t: "status", id: 7 });
    await until(() => events.some((e) => e.type === "status"), "a status reply after the junk");
    const commands = failures().map((e) => e.type === "command_failed" && e.command);
    assert.deepEqual(commands.slice(2, 8), [
      "init",
      "bogus",
      "relay_add",
      "peer_add",
      "peer_remove",
      "relay_remove",
    ]);
    assert.ok(failures().length >= 9, "oob and both sends answered too");
    for (const f of failures()) assert.ok(f.type === "command_failed" && f.message.length > 0);
    const refused = events.find((e) => e.type === "send_refused");
    assert.ok(refused && refused.type === "send_refused" && refused.reason === "unknown_peer");
    worker.postMessage({ t: "close" });
    await until(() => events.some((e) => e.type === "shutdown"), "shutdown");
  } finally {
    worker.terminate();
  }
});

class FakePort implements RelayPort {
  readonly log: string[] = [];
  closed = false;
  constructor(readonly emit: (events: readonly RelayLinkEvent[]) => void) {}
  route(): void {
    this.log.push("route");
  }
  unroute(): void {
    this.log.push("unroute");
  }
  send(items: readonly unknown[]): void {
    this.log.push(`send ${items.length}`);
  }
  requestStats(): void {}
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** A spawner of fake relay ports, each kept in `ports`. */
const fakeSpawner = (ports: FakePort[]) =>
(
  _opts: unknown,
  onEvents: (events: readonly RelayLinkEvent[]) => void,
) => {
  const p = new FakePort(onEvents);
  ports.push(p);
  return p;
};

Deno.test("coordinator runtime: routes reach the relay port; a crashed relay Worker is replaced after its back-off", async () => {
  let now = 0;
  const ports: FakePort[] = [];
  const out: CoordinatorEvent[] = [];
  const rt = new CoordinatorRuntime(
    { t: "init", self: newKeyPair(), config: { statsIntervalMs: 3_600_000 } },
    (events) => out.push(...events),
    {
      clock: () => now,
      random: seededRandom(3),
      spawn: fakeSpawner(ports),
    },
  );
  try {
    rt.command({ t: "relay_add", relay: RELAY });
    assert.equal(ports.length, 1, "a kept relay is opened at once");
    const peer = newKeyPair().publicKey;
    rt.command({ t: "peer_add", publicKey: peer });
    ports[0].emit([{ type: "confirmed", handshakeMs: 1 }]);
    assert.deepEqual(ports[0].log, ["route"]);
    ports[0].emit([{ type: "routed", publicKey: peer, connectionId: 16 }]);
    ports[0].emit([{ type: "online", publicKey: peer, connectionId: 16 }]);
    rt.command({ t: "send", packets: [{ publicKey: peer, data: new Uint8Array([1, 2]) }] });
    assert.deepEqual(ports[0].log, ["route", "send 1"]);

    now = 1_000;
    ports[0].emit([{ type: "crashed", message: "boom" }]);
    assert.equal(ports[0].closed, true, "the dead Worker is let go");
    const status = rt.status();
    assert.equal(status.relays[0].state, "waiting");
    assert.match(status.relays[0].lastError ?? "", /worker crashed: boom/);
    // Its late events are ignored: they belong to a session that is over.
    ports[0].emit([{ type: "confirmed", handshakeMs: 1 }]);
    assert.equal(rt.status().relays[0].state, "waiting");
    // The runtime's timer fires at the retry time (real timers, clock moved by hand).
    now = 1_000 + (status.relays[0].retryInMs ?? 0);
    await new Promise((r) => setTimeout(r, (status.relays[0].retryInMs ?? 0) + 50));
    assert.equal(ports.length, 2, "a new relay Worker after the back-off");
    await new Promise((r) => queueMicrotask(() => r(null)));
    assert.ok(out.some((e) => e.type === "relay_state" && e.state === "waiting"));
  } finally {
    await rt.close();
  }
});

Deno.test("relay worker: after attach every command and event goes over the port", async () => {
  const worker = new Worker(new URL("../workers/relay_client.ts", import.meta.url), {
    type: "module",
  });
  const direct: unknown[] = [];
  worker.onmessage = (e) => direct.push(e.data);
  const { port1, port2 } = new MessageChannel();
  const seen: RelayLinkEvent[] = [];
  let wake = () => {};
  port1.onmessage = (e) => {
    seen.push(...e.data.events);
    wake();
  };
  try {
    worker.postMessage({ t: "attach", port: port2 }, [port2]);
    port1.postMessage({ t: "stats" }); // before connect
    const again = new MessageChannel();
    port1.postMessage({ t: "attach", port: again.port2 }, [again.port2]);
    const end = Date.now() + 5_000;
    while (seen.length < 2 && Date.now() < end) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, 100);
      });
      clearTimeout(timer);
    }
    again.port1.close();
    const messages = seen.map((e) => e.type === "bad_command" ? e.message : e.type);
    assert.deepEqual(messages, ['"stats" before "connect"', "attach must come first, once"]);
    assert.deepEqual(direct, [], "nothing comes back the direct way once attached");
  } finally {
    port1.close();
    worker.terminate();
  }
});

Deno.test("coordinator runtime: after a suspend (wall clock jumps past the monotonic one) relays and the onion are re-probed at once", async () => {
  let now = 0;
  let wall = 1_790_000_000_000;
  const ports: FakePort[] = [];
  const rt = new CoordinatorRuntime(
    {
      t: "init",
      self: newKeyPair(),
      real: newKeyPair(),
      nospam: new Uint8Array(4),
      config: { statsIntervalMs: 3_600_000 },
    },
    () => {},
    {
      clock: () => now,
      wallClock: () => wall + now,
      random: seededRandom(4),
      spawn: fakeSpawner(ports),
    },
  );
  try {
    rt.command({ t: "relay_add", relay: RELAY });
    ports[0].emit([{ type: "confirmed", handshakeMs: 1 }]);
    assert.deepEqual(ports[0].log, ["send 1"], "the first announce request, at once");
    now = 100;
    rt.command({ t: "status", id: 1 });
    assert.deepEqual(ports[0].log, ["send 1"], "nothing new 100 ms later");
    // A 10-s nap: the monotonic clock did not move, the wall clock did. The relay session is
    // kept and the onion asks again at once.
    now = 200;
    wall += 10_000;
    rt.command({ t: "status", id: 2 });
    assert.deepEqual(ports[0].log, ["send 1", "send 1"], "announced again at once");
    assert.equal(ports.length, 1);
    // An hour asleep: the relay has surely dropped us; it is reopened now, not after pings
    // time out, and the onion announces the moment the new session is up.
    now = 300;
    wall += 3_600_000;
    rt.command({ t: "status", id: 3 });
    assert.equal(ports[0].closed, true, "the old session is let go");
    assert.equal(ports.length, 2, "and a new one opened at once");
    ports[1].emit([{ type: "confirmed", handshakeMs: 1 }]);
    assert.deepEqual(ports[1].log, ["send 1"]);
  } finally {
    await rt.close();
  }
});

Deno.test("coordinator runtime: what Messenger sends in answer to a packet it consumed goes out at once", async () => {
  // The relay is a lone onion node: the answer to our first announce carries a ping id, and
  // the announce echoing it must reach the relay port in the same turn, not at the next event.
  const node = new LoneNode(() => 0, { port: 9 });
  const ports: FakePort[] = [];
  const items: Uint8Array[] = [];
  const rt = new CoordinatorRuntime(
    { t: "init", self: newKeyPair(), real: newKeyPair(), config: { statsIntervalMs: 3_600_000 } },
    () => {},
    {
      clock: () => 0,
      random: seededRandom(5),
      spawn: (_opts, onEvents) => {
        const p = new FakePort(onEvents);
        const send = p.send.bind(p);
        p.send = (batch: readonly unknown[]) => {
          for (const it of batch as { kind: string; data: Uint8Array }[]) {
            if (it.kind === "onion") items.push(it.data);
          }
          send(batch);
        };
        ports.push(p);
        return p;
      },
    },
  );
  try {
    rt.command({ t: "relay_add", relay: node.relay });
    ports[0].emit([{ type: "confirmed", handshakeMs: 1 }]);
    assert.equal(items.length, 1);
    node.onionRequest("us", items[0]);
    const [answer] = node.take("us");
    ports[0].emit([{ type: "onion", data: answer }]);
    assert.equal(items.length, 2, "the echo left in the same turn as the answer came in");
    node.onionRequest("us", items[1]);
    ports[0].emit([{ type: "onion", data: node.take("us")[0] }]);
    assert.equal(rt.status().self!.onion.announced, true);
  } finally {
    await rt.close();
  }
});

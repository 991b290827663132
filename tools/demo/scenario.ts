/**
 * The demo's script, step by step: the relay up, both daemons up and on the relay, friends added,
 * both online, chat messages with receipts, custom lossless and lossy packets, bob stopped (alice
 * sees him go), alice and the relay stopped, the capture decoded. `Demo` holds the run's state:
 * the step we are in (named in a failure), the abort that Ctrl-C or a dying process triggers,
 * the narrative, the processes (stack.ts) and the JSON summary the steps fill in.
 */
import type { ControlClient, ControlEvent } from "../ctl.ts";
import { statusText } from "../testbed/processes.ts";
import { decodeCapture } from "./capture.ts";
import { connectWhenUp, relayConfirmed, request, type SelfInfo } from "./control.ts";
import { customFlow } from "./custom_packets.ts";
import { EventLog } from "./event_log.ts";
import { Interrupted, StepError, throwIfAborted } from "./failure.ts";
import { type DemoIo, ms1, Narrative, round1, secs, short } from "./output.ts";
import { LIMIT, LOSSLESS, LOSSY, MESSAGES, type Name } from "./plan.ts";
import { socketPath, Stack, stoppedStats } from "./stack.ts";

export class Demo {
  readonly abort = new AbortController();
  readonly narrative: Narrative;
  readonly stack = new Stack(this.abort);
  readonly summary: Record<string, unknown> = {};
  step = "starting";
  interrupted: Interrupted | null = null;

  constructor(io: DemoIo) {
    this.narrative = new Narrative(io);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The next step (named in a failure); a Ctrl-C that came in between stops here. */
  enter(step: string): void {
    this.step = step;
    throwIfAborted(this.signal);
  }

  interrupt(signal: Deno.Signal): void {
    if (this.interrupted !== null) {
      // A second Ctrl-C: no more grace periods.
      this.stack.forceKillAll();
      return;
    }
    this.interrupted = new Interrupted(signal);
    this.abort.abort(this.interrupted);
  }

  /** A request that must succeed (`what` names it in errors; `cmd` by default). */
  request<T>(
    client: ControlClient,
    who: string,
    what: string,
    params = {},
    cmd = what,
  ): Promise<T> {
    return request<T>(client, who, what, this.signal, params, cmd);
  }

  async run(): Promise<void> {
    const { signal } = this;
    this.narrative.line("toxtcp demo — everything on 127.0.0.1, nothing from the internet");

    this.enter("creating the temp dir");
    const tmp = await this.stack.makeTempDir();
    this.summary.temp_dir = tmp;
    const capture = `${tmp}/alice.pcapng`;
    const keylog = `${tmp}/alice.keys.log`;

    // -- the relay
    this.enter("starting the relay");
    const { relay, listening } = await this.stack.startRelay(signal);
    const relayUp = this.narrative.now();
    const relaySpec = `${listening.host}:${listening.port}:${listening.public_key}`;
    this.summary.relay = { ...listening, pid: relay.pid, listening_ms: round1(relayUp) };
    this.narrative.at(
      relayUp,
      `relay ${short(listening.public_key)} listening on ${listening.host}:${listening.port}` +
        ` (our relay, pid ${relay.pid})`,
    );

    // -- the daemons
    this.enter("starting the daemons");
    const procs = {
      alice: this.stack.spawnDaemon("alice", tmp, relaySpec, [
        "--capture",
        capture,
        "--keylog",
        keylog,
      ]),
      bob: this.stack.spawnDaemon("bob", tmp, relaySpec),
    };
    const daemonStart = this.narrative.now();
    const clients = {} as Record<Name, ControlClient>;
    const logs = {} as Record<Name, EventLog>;
    const selves = {} as Record<Name, SelfInfo>;
    const upAt = {} as Record<Name, number>;
    await Promise.all((["alice", "bob"] as const).map(async (name) => {
      const client = await connectWhenUp(socketPath(tmp, name), name, signal);
      this.stack.clients.push(client);
      clients[name] = client;
      logs[name] = new EventLog(name, client, () => this.narrative.now());
      await this.request(client, name, "subscribe");
      selves[name] = await this.request<SelfInfo>(client, name, "self");
      upAt[name] = this.narrative.now();
    }));
    const { alice, bob } = selves;
    this.summary.daemons = Object.fromEntries((["alice", "bob"] as const).map((n) => [n, {
      pid: procs[n].pid,
      address: selves[n].address,
      public_key: selves[n].public_key,
      dht_public_key: selves[n].dht_public_key,
      up_ms: round1(upAt[n]),
    }]));
    this.narrative.at(
      Math.max(upAt.alice, upAt.bob),
      `alice up (Tox ID ${short(alice.address, 12)}), bob up (Tox ID ${short(bob.address, 12)})` +
        ` — ${ms1(upAt.alice - daemonStart)} / ${ms1(upAt.bob - daemonStart)} from spawn`,
    );

    this.enter("connecting the daemons to the relay");
    const confirmed = await Promise.all(
      (["alice", "bob"] as const).map((n) =>
        relayConfirmed(clients[n], n, listening, () => this.narrative.now(), signal)
      ),
    );
    this.narrative.at(
      Math.max(...confirmed),
      `both on the relay (confirmed: alice at ${secs(confirmed[0])},` +
        ` bob at ${secs(confirmed[1])})`,
    );

    // -- friends
    this.enter("adding friends");
    const fromA = logs.alice.length;
    const fromB = logs.bob.length;
    const addAt = this.narrative.now();
    await this.request(clients.alice, "alice", "friend.add", {
      public_key: bob.address,
      dht_public_key: bob.dht_public_key,
      relays: [relaySpec],
    });
    await this.request(clients.bob, "bob", "friend.add", { public_key: alice.address });
    this.narrative.at(
      addAt,
      "alice adds bob (with his DHT key and the relay as the hint); bob adds alice by her Tox ID",
    );

    this.enter("alice and bob coming online");
    const isOnline = (pk: string) => (e: ControlEvent) =>
      e.event === "friend_online" && e.public_key === pk;
    const [onA, onB] = await Promise.all([
      logs.alice.waitFor(isOnline(bob.public_key), {
        from: fromA,
        ms: LIMIT.online,
        what: "alice sees bob online",
        signal,
      }),
      logs.bob.waitFor(isOnline(alice.public_key), {
        from: fromB,
        ms: LIMIT.online,
        what: "bob sees alice online",
        signal,
      }),
    ]);
    const onlineAt = Math.max(onA.at, onB.at);
    const stages = logs.alice.filter(
      (e) => e.event === "friend_progress" && e.public_key === bob.public_key,
      fromA,
    ).map((s) => `${s.e.progress} +${Math.round(s.at - addAt)}`);
    this.summary.online = {
      alice_sees_bob: true,
      bob_sees_alice: true,
      alice_ms: round1(onA.at - addAt),
      bob_ms: round1(onB.at - addAt),
      alice_progress: stages,
    };
    this.narrative.at(
      onlineAt,
      `alice and bob are online to each other (${secs(onlineAt - addAt)} after the adds;` +
        ` alice saw bob at +${Math.round(onA.at - addAt)} ms, bob saw alice at +${
          Math.round(onB.at - addAt)
        } ms)`,
    );
    if (stages.length > 0) {
      this.narrative.line(`           alice's progress for bob (ms): ${stages.join(", ")}`);
    }

    // -- messages
    this.enter("exchanging messages");
    const messages: Record<string, unknown>[] = [];
    for (const m of MESSAGES) {
      const from = selves[m.from];
      const to = selves[m.to];
      const fromIdx = logs[m.from].length;
      const toIdx = logs[m.to].length;
      const sentAt = this.narrative.now();
      const { receipt } = await this.request<{ receipt: number }>(clients[m.from], m.from, "send", {
        public_key: to.public_key,
        text: m.text,
        action: m.kind === "action",
      });
      const quoted = JSON.stringify(m.text);
      const [got, rec] = await Promise.all([
        logs[m.to].waitFor(
          (e) => e.event === "message" && e.public_key === from.public_key && e.text === m.text,
          { from: toIdx, ms: LIMIT.message, what: `${m.to} receives ${quoted}`, signal },
        ),
        logs[m.from].waitFor(
          (e) => e.event === "receipt" && e.public_key === to.public_key && e.receipt === receipt,
          { from: fromIdx, ms: LIMIT.message, what: `${m.from}'s receipt for ${quoted}`, signal },
        ),
      ]);
      if (got.e.kind !== m.kind) {
        throw new StepError(`${m.to} got ${quoted} as ${got.e.kind}, not ${m.kind}`);
      }
      messages.push({
        from: m.from,
        to: m.to,
        text: m.text,
        kind: m.kind,
        receipt,
        delivered: true,
        receipt_received: true,
        delivered_ms: round1(got.at - sentAt),
        receipt_ms: round1(rec.at - sentAt),
      });
      const arrow = m.kind === "action" ? `* ${m.from} ${m.text}` : quoted;
      this.narrative.at(
        sentAt,
        `${m.from} → ${m.to} ${arrow}: delivered after ${ms1(got.at - sentAt)},` +
          ` receipt after ${ms1(rec.at - sentAt)}`,
      );
    }
    this.summary.messages = messages;

    // -- custom packets
    this.enter("sending custom lossless packets");
    this.summary.lossless = await customFlow(
      LOSSLESS,
      true,
      selves,
      clients,
      logs,
      this.narrative,
      signal,
    );
    this.enter("sending custom lossy packets");
    this.summary.lossy = await customFlow(
      LOSSY,
      false,
      selves,
      clients,
      logs,
      this.narrative,
      signal,
    );

    // -- stop: bob first, so alice sees him go
    this.enter("stopping bob");
    const aliceIdx = logs.alice.length;
    const bobStopAt = this.narrative.now();
    await clients.bob.close();
    const bobStop = await this.stack.stop("bob");
    const bobStopped = this.narrative.now();
    if (bobStop.code !== 0 || bobStop.killed) {
      throw new StepError(`bob did not stop cleanly: ${statusText(bobStop)}`);
    }
    const offline = await logs.alice.waitFor(
      (e) => e.event === "friend_offline" && e.public_key === bob.public_key,
      { from: aliceIdx, ms: LIMIT.offline, what: "alice sees bob offline", signal },
    );
    this.summary.offline = {
      bob_exit_ms: round1(bobStopped - bobStopAt),
      alice_sees_bob_offline_ms: round1(offline.at - bobStopAt),
      reason: offline.e.reason ?? null,
    };
    this.narrative.at(
      bobStopAt,
      `bob stops (SIGTERM: exit 0 after ${ms1(bobStopped - bobStopAt)});` +
        ` alice sees him offline after ${ms1(offline.at - bobStopAt)}` +
        (offline.e.reason ? ` (${offline.e.reason})` : ""),
    );

    this.enter("stopping alice and the relay");
    await clients.alice.close();
    const aliceStopAt = this.narrative.now();
    const aliceStop = await this.stack.stop("alice");
    if (aliceStop.code !== 0 || aliceStop.killed) {
      throw new StepError(`alice did not stop cleanly: ${statusText(aliceStop)}`);
    }
    const relayStopAt = this.narrative.now();
    const relayStop = await this.stack.stop("relay");
    if (relayStop.code !== 0 || relayStop.killed) {
      throw new StepError(`the relay did not stop cleanly: ${statusText(relayStop)}`);
    }
    const relayStopped = this.narrative.now();
    const relayStats = stoppedStats(relay.stdoutLines);
    (this.summary.relay as Record<string, unknown>).stats = relayStats;
    const forwarded = typeof relayStats?.dataForwarded === "number"
      ? `; it forwarded ${relayStats.dataForwarded} DATA` +
        (typeof relayStats.oobForwarded === "number"
          ? ` and ${relayStats.oobForwarded} OOB packets`
          : " packets")
      : "";
    this.narrative.at(
      aliceStopAt,
      `alice stops (exit 0 after ${ms1(relayStopAt - aliceStopAt)}),` +
        ` the relay stops (exit 0 after ${ms1(relayStopped - relayStopAt)}${forwarded})`,
    );

    // -- decode
    this.enter("decoding the capture");
    this.summary.capture = await decodeCapture(
      capture,
      keylog,
      `${listening.host}:${listening.port}`,
      this.narrative,
      signal,
    );
  }
}

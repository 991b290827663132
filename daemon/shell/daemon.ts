/**
 * The daemon: data directory (lock, identity, saved state, config), the coordinator Worker,
 * and the control socket. It turns control commands into coordinator commands, coordinator
 * events into control events and log lines, and keeps friends and relays on disk.
 *
 * One daemon per data directory (an exclusive lock on `<data dir>/lock`). SIGINT/SIGTERM
 * shut down cleanly: friends get KILL packets, sockets close, the socket file goes, state is
 * flushed. A new DHT key pair is made every run, as c-toxcore does.
 */
import { fromHex, newKeyPair, toHex } from "../core/common/crypto.ts";
import {
  bootstrapOfNodesFile,
  ConfigError,
  type DaemonConfig,
  defaultDataDir,
  type Env,
  parseConfigFile,
  parseFlags,
  relaysOfNodesFile,
  resolveConfig,
  USAGE,
} from "./config.ts";
import { type ControlCommand, type ControlEvent, type ErrorCode, eventLine } from "./control.ts";
import {
  ControlServer,
  ControlServerError,
  type CustomPacketCommand,
  type HandlerResult,
} from "./control_server.ts";
import { type Identity, IdentityError, loadOrCreateIdentity } from "./identity.ts";
import { Logger } from "./log.ts";
import { formatRelayAddress, type RelayAddress } from "../core/common/relay_address.ts";
import {
  answerRequest,
  MAX_SAVED_REQUESTS,
  receiveRequest,
  type SavedState,
  StateError,
  StateStore,
} from "./state_store.ts";
import { CoordinatorHandle } from "../../workers/coordinator_handle.ts";
import { Recorder, RecorderError } from "./recorder.ts";
import type { OnionView } from "../core/onion/views.ts";
import { isIpLiteral } from "../core/onion/packets.ts";
import type { CoordinatorEvent, CoordinatorStatus, ToCoordinator } from "../../workers/messages.ts";

export const VERSION = "0.6.0";

/** Fatal at start: printed as is, exit code 1. */
export class StartError extends Error {}

const sameRelay = (a: RelayAddress, b: RelayAddress) =>
  a.publicKey === b.publicKey && a.host === b.host && a.port === b.port;

function fail(code: ErrorCode, message: string): HandlerResult {
  return { ok: false, error: { code, message } };
}

/** A coordinator failure message ("not_online: …") → the control error code. */
function codeOf(message: string): ErrorCode {
  const reason = message.split(":")[0];
  switch (reason) {
    case "not_friend":
      return "not_friend";
    case "already a friend":
      return "bad_argument";
    case "not_online":
    case "not_established":
    case "dropped":
      return "not_online";
    case "send_queue_full":
      return "queue_full";
    case "invalid":
    case "too_long":
      return "bad_argument";
    default:
      return message.includes("unknown relay") ? "unknown_relay" : "failed";
  }
}

export class Daemon {
  readonly config: DaemonConfig;
  readonly #log: Logger;
  readonly #lock: Deno.FsFile;
  readonly #identity: Identity;
  readonly #store: StateStore;
  readonly #dhtPublicKey: Uint8Array;
  readonly #coordinator: CoordinatorHandle;
  readonly #server: ControlServer;
  readonly #recorder: Recorder | null;
  readonly #startedAt = Date.now();
  /** Relay states as last reported, for relay_up / relay_down. */
  readonly #relayState = new Map<string, string>();
  /** Every relay we were given, by key: host and port for events and listings. */
  readonly #relays = new Map<string, RelayAddress>();
  #stopping: Promise<void> | null = null;
  readonly #stopped: Promise<void>;
  #resolveStopped!: () => void;

  private constructor(parts: {
    config: DaemonConfig;
    log: Logger;
    lock: Deno.FsFile;
    identity: Identity;
    store: StateStore;
    server: ControlServer;
    recorder: Recorder | null;
    bootstrap: RelayAddress[];
  }) {
    this.#recorder = parts.recorder;
    this.config = parts.config;
    this.#log = parts.log;
    this.#lock = parts.lock;
    this.#identity = parts.identity;
    this.#store = parts.store;
    this.#server = parts.server;
    this.#stopped = new Promise((r) => (this.#resolveStopped = r));
    const dht = newKeyPair();
    this.#dhtPublicKey = dht.publicKey;
    const saved = this.#store.state;
    const keys = this.#identity.keys;
    this.#coordinator = new CoordinatorHandle(
      {
        self: dht,
        real: { publicKey: keys.publicKey, secretKey: keys.secretKey },
        profile: { name: saved.profile.name, statusMessage: saved.profile.statusMessage },
        proxy: this.config.proxy ?? undefined,
        nospam: this.#identity.nospam,
        bootstrap: parts.bootstrap,
      },
      (events) => this.#onEvents(events),
      this.#recorder?.observer(),
    );
    // A program that reads our events slowly slows its friends down instead of losing what
    // they sent: their lossless packets wait in net_crypto until it catches up.
    this.#server.onBehind((behind) => this.#coordinator.holdDelivery(behind));
  }

  /** Everything up to listening; a StartError says what the user must fix. */
  static async start(args: string[], env: Env): Promise<Daemon | "help"> {
    let flags;
    try {
      flags = parseFlags(args);
    } catch (e) {
      throw new StartError(`${(e as Error).message}\n\n${USAGE}`);
    }
    if (flags.help) return "help";
    const dataDir = flags.dataDir ?? defaultDataDir(env);
    await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    const lock = await lockDataDir(dataDir);
    try {
      const file = await readConfigFile(dataDir);
      const config = resolveConfig(flags, file, dataDir, env);
      const log = new Logger(config.logLevel);
      const loaded = await loadOrCreateIdentity(dataDir);
      for (const w of loaded.warnings) log.warn(w);
      if (loaded.created) log.info(`created a new identity in ${loaded.identity.path}`);
      const store = await StateStore.open(dataDir, {
        onSaveError: (e) => log.error(`saving state failed (will retry): ${e}`),
      });
      if (config.name !== null && config.name !== store.state.profile.name) {
        store.update((s) => void (s.profile.name = config.name!));
      }
      const nodesText = config.nodesFile === null ? null : await readText(config.nodesFile);
      const nodes = nodesText === null ? [] : relaysOfNodesFile(nodesText, config.nodesFile!);
      const bootstrap = [
        ...config.bootstrap,
        ...(nodesText === null ? [] : bootstrapOfNodesFile(nodesText, config.nodesFile!)),
      ];
      const server = await ControlServer.open(config.socketPath, log);
      let recorder: Recorder | null;
      try {
        recorder = await Recorder.open(config, log);
      } catch (e) {
        await server.close();
        throw e;
      }
      const d = new Daemon({
        config,
        log,
        lock,
        identity: loaded.identity,
        store,
        server,
        recorder,
        bootstrap,
      });
      d.#begin([...config.relays, ...nodes]);
      return d;
    } catch (e) {
      lock.close();
      if (
        e instanceof ConfigError || e instanceof IdentityError || e instanceof StateError ||
        e instanceof ControlServerError || e instanceof RecorderError
      ) {
        throw new StartError(e.message);
      }
      throw e;
    }
  }

  #begin(startRelays: RelayAddress[]): void {
    const saved = this.#store.state;
    for (const r of [...startRelays, ...saved.relays]) this.#addRelay(r);
    for (const f of saved.friends) {
      this.#coordinator.addFriend(fromHex(f.publicKey, 32), {
        dhtPublicKey: f.dhtPublicKey ? fromHex(f.dhtPublicKey, 32) : undefined,
        relays: [...f.relays],
        // A request not yet answered goes out again after a restart.
        request: f.request
          ? { nospam: fromHex(f.request.nospam, 4), message: f.request.message }
          : undefined,
      });
      for (const r of f.relays) this.#relays.set(r.publicKey, r);
    }
    this.#server.serve((c) => this.#command(c), (cs) => this.#sendLosslessBatch(cs));
    const stop = () => void this.stop("signal");
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    this.#removeSignals = () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
    };
    this.#log.info(
      `toxtcp ${VERSION} up: Tox ID ${this.#identity.toxId}, ${this.#relays.size} relays, ` +
        `${saved.friends.length} friends, ${saved.requests.length} friend requests waiting, ` +
        `control socket ${this.#server.path}` +
        (this.config.proxy ? `, via ${this.config.proxy.kind} proxy` : ""),
    );
  }

  #removeSignals: () => void = () => {};

  #addRelay(r: RelayAddress): void {
    const known = this.#relays.get(r.publicKey);
    if (known && sameRelay(known, r)) return;
    this.#relays.set(r.publicKey, r);
    this.#coordinator.addRelay(r);
    if (!isIpLiteral(r.host)) void this.#relayAsOnionNode(r);
  }

  /**
   * A relay named by host name is an onion node too, but an onion layer carries an address:
   * look it up. Not through a proxy, where a local lookup would tell the network whom we use;
   * there the onion needs relays or --bootstrap nodes given by address.
   */
  async #relayAsOnionNode(r: RelayAddress): Promise<void> {
    if (this.config.proxy) {
      this.#log.info(
        `relay ${r.host} is a name: behind a proxy it is not looked up, so it is no onion ` +
          `node (give --bootstrap IP:PORT:KEY for one)`,
      );
      return;
    }
    let ips: string[] = [];
    for (const type of ["A", "AAAA"] as const) {
      try {
        ips = await Deno.resolveDns(r.host, type, { signal: AbortSignal.timeout(5_000) });
      } catch {
        ips = [];
      }
      if (ips.length > 0) break;
    }
    if (ips.length === 0 || this.#stopping) {
      this.#log.warn(`relay ${r.host}: no address found, so it is not used as an onion node`);
      return;
    }
    const r2 = await this.#run({ t: "bootstrap_add", node: { ...r, host: ips[0] } });
    if (!r2.ok) this.#log.warn(`relay ${r.host} as an onion node: ${r2.error.message}`);
    else this.#log.debug(`relay ${r.host} is onion node ${ips[0]}:${r.port}`);
  }

  /** Resolves when the daemon has stopped (a signal, or stop()). */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  stop(why = "asked"): Promise<void> {
    this.#stopping ??= this.#shutdown(why);
    return this.#stopping;
  }

  async #shutdown(why: string): Promise<void> {
    this.#log.info(`shutting down (${why})`);
    this.#removeSignals();
    await this.#server.close();
    await this.#coordinator.close();
    await this.#recorder?.close();
    try {
      await this.#store.flush();
    } catch (e) {
      this.#log.error(`could not save state at shutdown: ${e}`);
    }
    try {
      this.#lock.close();
    } catch { /* closed */ }
    this.#log.info("stopped");
    this.#resolveStopped();
  }

  // ---- events -----------------------------------------------------------------------------

  #onEvents(events: readonly CoordinatorEvent[]): void {
    const now = new Date();
    for (const e of events) {
      const out = this.#controlEvent(e);
      if (out !== null) this.#server.broadcast(eventLine(out, now));
    }
  }

  #controlEvent(e: CoordinatorEvent): ControlEvent | null {
    const short = (hex: string) => hex.slice(0, 12);
    switch (e.type) {
      case "relay_state": {
        const before = this.#relayState.get(e.relay);
        this.#relayState.set(e.relay, e.state);
        const r = this.#relays.get(e.relay);
        const where = r ? `${formatRelayAddress(r)} ` : "";
        if (e.state === "confirmed" && before !== "confirmed") {
          this.#log.info(`relay up ${where}${short(e.relay)}`);
          return {
            event: "relay_up",
            public_key: e.relay,
            host: r?.host ?? "",
            port: r?.port ?? 0,
          };
        }
        if (before === "confirmed" && e.state !== "confirmed") {
          const reason = e.reason ?? e.state;
          this.#log.info(`relay down ${where}${short(e.relay)}: ${reason}`);
          return {
            event: "relay_down",
            public_key: e.relay,
            host: r?.host ?? "",
            port: r?.port ?? 0,
            reason,
          };
        }
        this.#log.debug(`relay ${where}${short(e.relay)} ${e.state}`);
        return null;
      }
      case "friend_progress":
        this.#log.debug(`friend ${short(e.friend)} ${e.progress}`);
        return { event: "friend_progress", public_key: e.friend, progress: e.progress };
      case "friend_online":
        this.#log.info(`friend ${short(e.friend)} online`);
        // Our request (if any) is answered: it is not sent again, not even after a restart;
        // and a friend that has been online is not sent requests any more.
        this.#store.update((s) => {
          const f = s.friends.find((x) => x.publicKey === e.friend);
          if (!f) return;
          delete f.request;
          f.lastOnlineAt = Date.now();
        });
        return { event: "friend_online", public_key: e.friend };
      case "friend_request":
        return this.#friendRequest(e.publicKey, e.text);
      case "friend_request_sent":
        this.#log.info(
          `friend request to ${short(e.friend)} sent (attempt ${e.attempt}, ${e.copies} copies)`,
        );
        return null;
      case "onion_announced":
        this.#log.info(
          e.announced
            ? `onion: announced (stored at ${e.storedAt} of ${e.nodes} nodes` +
              (e.sinceRelayUpMs === null ? "" : `, ${e.sinceRelayUpMs} ms after a relay came up`) +
              `): friends can find us`
            : `onion: not announced (stored at ${e.storedAt} of ${e.nodes} nodes)`,
        );
        return { event: "onion", announced: e.announced, stored_at: e.storedAt, nodes: e.nodes };
      case "onion_friend_found":
        this.#log.debug(`onion: found friend ${short(e.friend)} at ${e.nodes} nodes`);
        return null;
      case "friend_offline":
        this.#log.info(`friend ${short(e.friend)} offline: ${e.cause} (${e.reason})`);
        return { event: "friend_offline", public_key: e.friend, reason: `${e.cause}: ${e.reason}` };
      case "friend_message":
        this.#log.info(`${e.kind} from ${short(e.friend)} (${e.text.length} characters)`);
        return { event: "message", public_key: e.friend, text: e.text, kind: e.kind };
      case "friend_receipt":
        return { event: "receipt", public_key: e.friend, receipt: e.messageId };
      case "friend_message_failed":
        this.#log.warn(`${e.messageIds.length} messages to ${short(e.friend)} failed: ${e.reason}`);
        return {
          event: "message_failed",
          public_key: e.friend,
          receipts: [...e.messageIds],
          reason: e.reason,
        };
      case "friend_lossless":
      case "friend_lossy":
        return {
          event: "custom_packet",
          public_key: e.friend,
          data: toHex(e.data),
          lossless: e.type === "friend_lossless",
        };
      case "friend_name":
        return { event: "friend_name", public_key: e.friend, name: e.name };
      case "friend_status_message":
        return {
          event: "friend_status_message",
          public_key: e.friend,
          status_message: e.statusMessage,
        };
      case "handshake_refused":
        this.#log.debug(`refused a handshake from ${short(e.peer)}: ${e.reason}`);
        return null;
      case "command_failed":
        if (e.requestId === undefined) this.#log.warn(`coordinator: ${e.command}: ${e.message}`);
        return null;
      default:
        return null;
    }
  }

  /**
   * A stranger's request: kept on disk until answered (the newest MAX_SAVED_REQUESTS), and
   * reported once; a repeat of one already waiting, or from a friend, is not news.
   */
  #friendRequest(publicKey: string, text: string): ControlEvent | null {
    // Decided on a copy: a repeat (the requester re-sends every 5..40 s) writes nothing.
    const draft = structuredClone(this.#store.state);
    const r = receiveRequest(draft, { publicKey, text, receivedAt: Date.now() });
    if (r.outcome !== "saved") return null;
    this.#store.update(() => draft);
    this.#log.info(`friend request from ${publicKey.slice(0, 12)} (${text.length} characters)`);
    if (r.dropped !== null) {
      this.#log.warn(
        `more than ${MAX_SAVED_REQUESTS} friend requests waiting: dropped the oldest, ` +
          `from ${r.dropped}`,
      );
    }
    return { event: "friend_request", public_key: publicKey, text };
  }

  // ---- commands ---------------------------------------------------------------------------

  async #command(c: ControlCommand): Promise<HandlerResult> {
    if (this.#stopping) return fail("shutting_down", "the daemon is shutting down");
    switch (c.cmd) {
      case "self":
        return { ok: true, result: { ...this.#self(), onion: await this.#onionSummary() } };
      case "status": {
        const st = await this.#coordinator.status();
        return {
          ok: true,
          result: {
            self: this.#self(),
            onion: st.self ? onionView(st.self.onion) : null,
            relays: this.#relayList(st),
            friends: this.#friendList(st),
            uptime_s: Math.round((Date.now() - this.#startedAt) / 1000),
            version: VERSION,
            proxy: this.config.proxy ? `${this.config.proxy.kind}` : null,
            control_clients: this.#server.clients,
          },
        };
      }
      case "relays":
        return { ok: true, result: this.#relayList(await this.#coordinator.status()) };
      case "friends":
        return { ok: true, result: this.#friendList(await this.#coordinator.status()) };
      case "relay.add": {
        const r = await this.#run({ t: "relay_add", relay: c.relay });
        if (!r.ok) return r;
        this.#relays.set(c.relay.publicKey, c.relay);
        const unsaved = await this.#save((s) => {
          s.relays = s.relays.filter((x) => !sameRelay(x, c.relay));
          s.relays.push(c.relay);
        });
        if (unsaved) return unsaved;
        return { ok: true, result: { public_key: c.relay.publicKey } };
      }
      case "relay.remove": {
        const r = await this.#run({ t: "relay_remove", publicKey: c.publicKey });
        if (!r.ok) return r;
        const unsaved = await this.#save((s) => {
          s.relays = s.relays.filter((x) => x.publicKey !== c.publicKey);
        });
        if (unsaved) return unsaved;
        return { ok: true, result: { public_key: c.publicKey } };
      }
      case "friend.add":
        return await this.#friendAdd(c);
      case "friend.accept":
      case "friend.refuse": {
        const hex = toHex(c.publicKey);
        if (!this.#store.state.requests.some((r) => r.publicKey === hex)) {
          return fail("no_request", `${c.cmd}: no friend request from ${hex} is waiting`);
        }
        if (c.cmd === "friend.accept") {
          const r = await this.#friendAdd({
            cmd: "friend.add",
            publicKey: c.publicKey,
            dhtPublicKey: null,
            relays: [],
            request: null,
          });
          if (!r.ok) return r;
        }
        const unsaved = await this.#save((s) => void answerRequest(s, hex));
        if (unsaved) return unsaved;
        return {
          ok: true,
          result: { public_key: hex, accepted: c.cmd === "friend.accept" },
        };
      }
      case "requests":
        return {
          ok: true,
          result: this.#store.state.requests.map((r) => ({
            public_key: r.publicKey,
            text: r.text,
            received_at: new Date(r.receivedAt).toISOString(),
          })),
        };
      case "friend.remove": {
        const hex = toHex(c.publicKey);
        const r = await this.#run({ t: "friend_remove", publicKey: c.publicKey });
        if (!r.ok) return r;
        const unsaved = await this.#save((s) => {
          s.friends = s.friends.filter((f) => f.publicKey !== hex);
        });
        if (unsaved) return unsaved;
        return { ok: true, result: { public_key: hex } };
      }
      case "send": {
        const r = await this.#run({
          t: "friend_message",
          publicKey: c.publicKey,
          text: c.text,
          kind: c.action ? "action" : "normal",
        });
        if (!r.ok) return r;
        return { ok: true, result: { receipt: (r.result as { messageId: number }).messageId } };
      }
      case "send.lossless":
        return (await this.#sendLosslessBatch([c]))[0];
      case "send.lossy": {
        const r = await this.#run({ t: "friend_lossy", publicKey: c.publicKey, packets: [c.data] });
        if (!r.ok) return r;
        return { ok: true, result: { sent: (r.result as { dropped: number }).dropped === 0 } };
      }
      case "profile.set": {
        const profile = { name: c.name, statusMessage: c.statusMessage };
        const r = await this.#run({ t: "set_profile", profile });
        if (!r.ok) return r;
        const unsaved = await this.#save((s) => {
          if (c.name !== undefined) s.profile.name = c.name;
          if (c.statusMessage !== undefined) s.profile.statusMessage = c.statusMessage;
        });
        if (unsaved) return unsaved;
        return { ok: true, result: { name: this.#store.state.profile.name } };
      }
      case "subscribe":
      case "unsubscribe":
        return fail("failed", "handled by the control server");
    }
  }

  async #friendAdd(c: Extract<ControlCommand, { cmd: "friend.add" }>): Promise<HandlerResult> {
    const hex = toHex(c.publicKey);
    const hint = {
      dhtPublicKey: c.dhtPublicKey ?? undefined,
      relays: [...c.relays],
    };
    const existing = this.#store.state.friends.find((f) => f.publicKey === hex);
    if (hex === toHex(this.#identity.keys.publicKey)) {
      return fail("bad_argument", "friend.add: that is our own public key");
    }
    const request = c.request ?? undefined;
    if (request && existing?.lastOnlineAt !== undefined) {
      return fail(
        "bad_argument",
        `friend.add: already a friend (online ${
          new Date(existing.lastOnlineAt).toISOString()
        }): no request needed`,
      );
    }
    const r = existing && !request
      ? await this.#run({ t: "friend_hint", publicKey: c.publicKey, ...hint })
      : await this.#run({ t: "friend_add", publicKey: c.publicKey, ...hint, request });
    if (!r.ok) return r;
    for (const relay of c.relays) this.#relays.set(relay.publicKey, relay);
    const unsaved = await this.#save((s) => {
      const f = s.friends.find((x) => x.publicKey === hex);
      if (f) {
        if (c.dhtPublicKey) f.dhtPublicKey = toHex(c.dhtPublicKey);
        for (const relay of c.relays) {
          if (!f.relays.some((x) => sameRelay(x, relay))) f.relays.push(relay);
        }
        if (request) f.request = { nospam: toHex(request.nospam), message: request.message };
      } else {
        s.friends.push({
          publicKey: hex,
          ...(c.dhtPublicKey ? { dhtPublicKey: toHex(c.dhtPublicKey) } : {}),
          relays: [...c.relays],
          addedAt: Date.now(),
          ...(request
            ? { request: { nospam: toHex(request.nospam), message: request.message } }
            : {}),
        });
      }
      // Adding someone who asked answers the request.
      answerRequest(s, hex);
    });
    if (unsaved) return unsaved;
    return {
      ok: true,
      result: { public_key: hex, added: !existing, request_queued: request !== undefined },
    };
  }

  /**
   * Change the saved state and wait until it is on disk, so an ok reply means "saved": a
   * SIGKILL right after it loses nothing. A failed save is the reply (the change stays in
   * memory and the next save retries it).
   */
  async #save(mutator: (s: SavedState) => void): Promise<HandlerResult | null> {
    this.#store.update(mutator);
    try {
      await this.#store.flush();
      return null;
    } catch (e) {
      return fail("failed", `done, but saving ${this.config.dataDir}/state.json failed: ${e}`);
    }
  }

  /** One coordinator command, its failure as a control error. */
  /**
   * Pipelined send.lossless requests: each run for one friend goes to the coordinator as one
   * command. Its packets are taken in order up to the first refusal, so the replies say
   * exactly which were sent (a prefix) and which were not, as one request at a time would.
   */
  async #sendLosslessBatch(
    commands: readonly CustomPacketCommand[],
  ): Promise<HandlerResult[]> {
    const out: HandlerResult[] = [];
    for (let i = 0; i < commands.length;) {
      const key = toHex(commands[i].publicKey);
      let j = i + 1;
      while (j < commands.length && toHex(commands[j].publicKey) === key) j++;
      const group = commands.slice(i, j);
      const r = await this.#run({
        t: "friend_lossless",
        publicKey: group[0].publicKey,
        packets: group.map((c) => c.data),
      });
      if (!r.ok) {
        for (const _ of group) out.push(r);
      } else {
        const res = r.result as { refused: number; reason?: string; message?: string };
        const sent = group.length - res.refused;
        for (let k = 0; k < group.length; k++) {
          out.push(
            k < sent
              ? { ok: true, result: { sent: true } }
              : fail(codeOf(res.reason ?? ""), res.message ?? "refused"),
          );
        }
      }
      i = j;
    }
    return out;
  }

  async #run(command: ToCoordinator): Promise<HandlerResult> {
    try {
      const r = await this.#coordinator.request(command);
      if (r.ok) return { ok: true, result: r.result };
      return fail(codeOf(r.message), r.message);
    } catch (e) {
      return fail("failed", (e as Error).message);
    }
  }

  #self() {
    const p = this.#store.state.profile;
    return {
      address: this.#identity.toxId,
      public_key: toHex(this.#identity.keys.publicKey),
      dht_public_key: toHex(this.#dhtPublicKey),
      name: p.name,
      status_message: p.statusMessage,
    };
  }

  /** For `self`: whether friends can find us, in a few fields (`status` has the whole view). */
  async #onionSummary() {
    try {
      const st = await this.#coordinator.status(2_000);
      if (!st.self) return null;
      const o = st.self.onion;
      return {
        announced: o.announced,
        stored_at: o.announceNodes.filter((n) => n.stored).length,
        nodes: o.announceNodes.length,
        paths: o.paths.length,
        bootstrap_nodes: o.bootstrapNodes,
      };
    } catch {
      return null; // `self` answers from what the daemon knows even if the coordinator is slow
    }
  }

  #relayList(st: CoordinatorStatus) {
    return st.relays.map((r) => ({
      host: r.host,
      port: r.port,
      public_key: r.publicKey,
      state: r.state,
      rtt_ms: r.rttMs === null ? null : Math.round(r.rttMs * 10) / 10,
      score: r.score,
      peers_online: r.peersOnline,
      up_for_s: r.upForMs === null ? null : Math.round(r.upForMs / 1000),
      last_error: r.lastError,
      retry_in_ms: r.retryInMs,
      bytes_in: r.bytesIn,
      bytes_out: r.bytesOut,
    }));
  }

  #friendList(st: CoordinatorStatus) {
    return st.friends.map((f) => ({
      public_key: f.publicKey,
      online: f.online,
      progress: f.progress,
      name: f.name,
      status_message: f.statusMessage,
      dht_public_key: f.dhtPublicKey,
      relays: [...f.relays],
      sending_relay: f.path?.sender ?? null,
      rtt_ms: f.crypto?.rttMs ?? null,
      last_disconnect: f.lastDisconnect ?? null,
      dht_key_source: f.dhtKeySource,
      request: f.request
        ? { attempts: f.request.attempts, last_sent_ago_ms: f.request.lastSentAgoMs }
        : null,
      onion: f.onion
        ? {
          search_nodes: f.onion.nodes,
          announced_at: f.onion.announcedAt,
          last_search_ago_ms: f.onion.lastSearchAgoMs,
          dht_pk_sent_ago_ms: f.onion.dhtPkSentAgoMs,
          dht_pk_received_ago_ms: f.onion.dhtPkReceivedAgoMs,
        }
        : null,
    }));
  }
}

/** The onion's state for users: can friends find us, through what. */
function onionView(o: OnionView) {
  return {
    announced: o.announced,
    stored_at: o.announceNodes.filter((n) => n.stored).length,
    announce_nodes: o.announceNodes.map((n) => ({
      public_key: n.publicKey,
      address: n.address,
      stored: n.stored,
      last_response_ago_ms: n.lastResponseAgoMs,
      pings_unanswered: n.pingsUnanswered,
    })),
    paths: o.paths.map((p) => ({
      relay: p.relay,
      hops: [...p.nodes],
      age_s: Math.round(p.ageMs / 1000),
      last_success_ago_ms: p.lastSuccessAgoMs,
    })),
    path_nodes: o.pathNodes,
    bootstrap_nodes: o.bootstrapNodes,
    last_response_ago_ms: o.lastResponseAgoMs,
    requests_sent: o.requestsSent,
    responses: o.responses,
    data_received: o.dataReceived,
    dropped: o.dropped,
  };
}

async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  const path = `${dataDir}/lock`;
  const f = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  let got = false;
  try {
    got = await f.tryLock(true);
  } catch (e) {
    f.close();
    throw new StartError(`cannot lock ${path}: ${(e as Error).message}`);
  }
  if (!got) {
    const pid = (await Deno.readTextFile(path).catch(() => "")).trim();
    f.close();
    throw new StartError(
      `another daemon is already using ${dataDir}${pid ? ` (pid ${pid})` : ""}; ` +
        `stop it first or give another --data-dir`,
    );
  }
  await f.truncate(0);
  await f.write(new TextEncoder().encode(`${Deno.pid}\n`));
  return f;
}

async function readConfigFile(dataDir: string) {
  const path = `${dataDir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parseConfigFile(text, path);
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

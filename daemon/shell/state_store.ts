/**
 * What must survive a restart besides the identity: our profile, the relays we use, and the
 * friends list with what we last knew of how to reach each friend.
 *
 * `<dataDir>/state.json`, mode 0600:
 *   {"version":1,"profile":{"name":"","status_message":""},"relays":["HOST:PORT:PUBKEY"],
 *    "friends":[{"public_key":"<64 hex>","dht_public_key"?:"<64 hex>",
 *                "relays"?:["HOST:PORT:PUBKEY"],"added_at":<unix ms>,
 *                "request"?:{"nospam":"<8 hex>","message":"..."}}],
 *    "requests"?:[{"public_key":"<64 hex>","text":"...","received_at":<unix ms>}]}
 *
 * A friend's "request" is our friend request while the friend has never been online (it is
 * sent again after a restart); "requests" are friend requests to us not yet answered.
 *
 * A file we cannot read or understand is reported and left alone: saving over it would
 * silently drop the friends list. Unknown fields are refused for the same reason (a rewrite
 * would lose them); a newer format must bump "version".
 * Saves are atomic (temp file, fsync, rename, fsync of the directory), so a crash leaves
 * either the old file or the new one, never a torn one.
 */
import { toHex } from "../core/common/crypto.ts";
import { MAX_FRIEND_REQUEST_DATA_SIZE } from "../core/onion/packets.ts";
import { MAX_NAME_LENGTH, MAX_STATUSMESSAGE_LENGTH } from "../core/messenger/messenger.ts";
import {
  formatRelayAddress,
  parseRelaySpec,
  type RelayAddress,
} from "../core/common/relay_address.ts";
import { joinPath, syncDirectory, writeNewPrivateFile } from "./private_file.ts";

export const STATE_FILE = "state.json";
const STATE_VERSION = 1;

export interface SavedProfile {
  name: string;
  statusMessage: string;
}

export interface SavedFriend {
  /** 64 lower-case hex digits: the friend's long-term (real) public key. */
  publicKey: string;
  /** The DHT key the friend last announced (64 lower-case hex), to reach it sooner. */
  dhtPublicKey?: string;
  /** The relays the friend last told us it uses. */
  relays: RelayAddress[];
  /** Unix time in milliseconds. */
  addedAt: number;
  /** Our friend request, until the friend has been online once. */
  request?: SavedRequestOut;
  /** Unix ms when the friend last came online (a friend, then: no request to it any more). */
  lastOnlineAt?: number;
}

export interface SavedRequestOut {
  /** 8 lower-case hex digits: the nospam of the friend's Tox ID. */
  nospam: string;
  message: string;
}

/** A friend request to us not yet accepted or refused. */
export interface SavedRequestIn {
  publicKey: string;
  text: string;
  /** Unix time in milliseconds. */
  receivedAt: number;
}

/** Unanswered requests kept; the oldest goes first (a flood must not grow the file). */
export const MAX_SAVED_REQUESTS = 256;

export interface SavedState {
  profile: SavedProfile;
  relays: RelayAddress[];
  friends: SavedFriend[];
  requests: SavedRequestIn[];
}

export type StateErrorCode = "unreadable" | "corrupt";

export class StateError extends Error {
  override name = "StateError";
  constructor(
    readonly code: StateErrorCode,
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export function emptyState(): SavedState {
  return { profile: { name: "", statusMessage: "" }, relays: [], friends: [], requests: [] };
}

/** Why a document is not a valid state, naming the field (`friends[2].public_key ...`). */
class Invalid extends Error {}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const utf8 = new TextEncoder();

/** Keys are written lower-case so that what we save is exactly what we load back. */
function lower<T>(v: T): T {
  return (typeof v === "string" ? v.toLowerCase() : v) as T;
}

function relaySpec(r: RelayAddress): string {
  return `${formatRelayAddress(r)}:${lower(r.publicKey)}`;
}

function object(v: unknown, field: string, keys: readonly string[]): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new Invalid(`${field} is not an object`);
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) {
      throw new Invalid(`${field} has an unexpected field ${JSON.stringify(k)}`);
    }
  }
  return o;
}

function array(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw new Invalid(`${field} is not an array`);
  return v;
}

function text(v: unknown, field: string, maxBytes: number): string {
  if (typeof v !== "string") throw new Invalid(`${field} is not a string`);
  // The Messenger limits are in UTF-8 bytes on the wire.
  const n = utf8.encode(v).length;
  if (n > maxBytes) throw new Invalid(`${field} is ${n} bytes, over the limit of ${maxBytes}`);
  return v;
}

function key(v: unknown, field: string): string {
  if (typeof v !== "string" || !HEX64.test(v)) throw new Invalid(`${field} is not 64 hex digits`);
  return v.toLowerCase();
}

function relays(v: unknown, field: string): RelayAddress[] {
  return array(v, field).map((spec, i) => {
    if (typeof spec !== "string") throw new Invalid(`${field}[${i}] is not a string`);
    try {
      return parseRelaySpec(spec);
    } catch (e) {
      throw new Invalid(`${field}[${i}]: ${(e as Error).message}`);
    }
  });
}

function fromDocument(doc: unknown): SavedState {
  const top = object(doc, "the document", ["version", "profile", "relays", "friends", "requests"]);
  if (top.version !== STATE_VERSION) {
    throw new Invalid(
      top.version === undefined
        ? `"version" is missing`
        : `version ${
          JSON.stringify(top.version)
        } is not supported (this daemon reads ${STATE_VERSION})`,
    );
  }
  const p = object(top.profile, "profile", ["name", "status_message"]);
  const profile = {
    name: text(p.name, "profile.name", MAX_NAME_LENGTH),
    statusMessage: text(p.status_message, "profile.status_message", MAX_STATUSMESSAGE_LENGTH),
  };
  const seen = new Map<string, number>();
  const friends = array(top.friends, "friends").map((v, i): SavedFriend => {
    const at = `friends[${i}]`;
    const f = object(v, at, [
      "public_key",
      "dht_public_key",
      "relays",
      "added_at",
      "request",
      "last_online_at",
    ]);
    const publicKey = key(f.public_key, `${at}.public_key`);
    const first = seen.get(publicKey);
    if (first !== undefined) {
      throw new Invalid(`${at}.public_key is the same friend as friends[${first}]`);
    }
    seen.set(publicKey, i);
    const addedAt = f.added_at;
    if (typeof addedAt !== "number" || !Number.isSafeInteger(addedAt) || addedAt < 0) {
      throw new Invalid(`${at}.added_at is not a non-negative integer (unix milliseconds)`);
    }
    const friend: SavedFriend = {
      publicKey,
      relays: f.relays === undefined ? [] : relays(f.relays, `${at}.relays`),
      addedAt,
    };
    if (f.dht_public_key !== undefined) {
      friend.dhtPublicKey = key(f.dht_public_key, `${at}.dht_public_key`);
    }
    if (f.last_online_at !== undefined) {
      const t = f.last_online_at;
      if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0) {
        throw new Invalid(`${at}.last_online_at is not a non-negative integer (unix milliseconds)`);
      }
      friend.lastOnlineAt = t;
    }
    if (f.request !== undefined) {
      const r = object(f.request, `${at}.request`, ["nospam", "message"]);
      if (typeof r.nospam !== "string" || !/^[0-9a-fA-F]{8}$/.test(r.nospam)) {
        throw new Invalid(`${at}.request.nospam is not 8 hex digits`);
      }
      const message = text(r.message, `${at}.request.message`, MAX_FRIEND_REQUEST_DATA_SIZE);
      if (message.length === 0) throw new Invalid(`${at}.request.message is empty`);
      friend.request = { nospam: r.nospam.toLowerCase(), message };
    }
    return friend;
  });
  const asked = new Set<string>();
  const requests = (top.requests === undefined ? [] : array(top.requests, "requests")).map(
    (v, i): SavedRequestIn => {
      const at = `requests[${i}]`;
      const r = object(v, at, ["public_key", "text", "received_at"]);
      const publicKey = key(r.public_key, `${at}.public_key`);
      if (asked.has(publicKey)) throw new Invalid(`${at}.public_key is listed twice`);
      asked.add(publicKey);
      const receivedAt = r.received_at;
      if (typeof receivedAt !== "number" || !Number.isSafeInteger(receivedAt) || receivedAt < 0) {
        throw new Invalid(`${at}.received_at is not a non-negative integer (unix milliseconds)`);
      }
      // The requester's bytes as UTF-8: each bad byte may have become a 3-byte U+FFFD.
      const limit = 3 * MAX_FRIEND_REQUEST_DATA_SIZE;
      return { publicKey, text: text(r.text, `${at}.text`, limit), receivedAt };
    },
  );
  if (requests.length > MAX_SAVED_REQUESTS) {
    throw new Invalid(`requests has ${requests.length} entries, at most ${MAX_SAVED_REQUESTS}`);
  }
  return { profile, relays: relays(top.relays, "relays"), friends, requests };
}

function toDocument(state: SavedState): unknown {
  return {
    version: STATE_VERSION,
    profile: { name: state.profile.name, status_message: state.profile.statusMessage },
    relays: state.relays.map(relaySpec),
    friends: state.friends.map((f) => ({
      public_key: lower(f.publicKey),
      ...(f.dhtPublicKey === undefined ? {} : { dht_public_key: lower(f.dhtPublicKey) }),
      ...(f.relays.length === 0 ? {} : { relays: f.relays.map(relaySpec) }),
      added_at: f.addedAt,
      ...(f.request === undefined
        ? {}
        : { request: { nospam: lower(f.request.nospam), message: f.request.message } }),
      ...(f.lastOnlineAt === undefined ? {} : { last_online_at: f.lastOnlineAt }),
    })),
    ...(state.requests.length === 0 ? {} : {
      requests: state.requests.map((r) => ({
        public_key: lower(r.publicKey),
        text: r.text,
        received_at: r.receivedAt,
      })),
    }),
  };
}

// ---- friend requests to us ------------------------------------------------------------------

export type ReceivedRequest =
  | { readonly outcome: "saved"; readonly dropped: string | null }
  /** Already waiting for an answer, or from a friend: nothing to save or report. */
  | { readonly outcome: "known" | "friend" };

/**
 * A friend request arrived: keep it (in `draft`) unless it is from a friend or already
 * waiting. The newest MAX_SAVED_REQUESTS are kept; `dropped` names the one that made room.
 */
export function receiveRequest(draft: SavedState, r: SavedRequestIn): ReceivedRequest {
  if (draft.friends.some((f) => f.publicKey === r.publicKey)) return { outcome: "friend" };
  if (draft.requests.some((q) => q.publicKey === r.publicKey)) return { outcome: "known" };
  draft.requests.push({ ...r });
  const dropped = draft.requests.length > MAX_SAVED_REQUESTS
    ? draft.requests.shift()!.publicKey
    : null;
  return { outcome: "saved", dropped };
}

/** A request answered (accepted or refused) leaves the list; false if there was none. */
export function answerRequest(draft: SavedState, publicKey: string): boolean {
  const n = draft.requests.length;
  draft.requests = draft.requests.filter((q) => q.publicKey !== publicKey);
  return draft.requests.length < n;
}

/**
 * The file text: 2-space JSON and a final newline, so it diffs and hand-edits well.
 * Throws TypeError for a state that would not read back (we never write a file we would
 * then refuse to load).
 */
export function encodeState(state: SavedState): string {
  const doc = toDocument(state);
  try {
    fromDocument(doc);
  } catch (e) {
    if (e instanceof Invalid) throw new TypeError(`refusing to save state: ${e.message}`);
    throw e;
  }
  return JSON.stringify(doc, null, 2) + "\n";
}

/** Parse a state file's text; `path` only names the file in the StateError. */
export function decodeState(text: string, path = STATE_FILE): SavedState {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw corrupt(path, `not valid JSON (${(e as Error).message})`);
  }
  try {
    return fromDocument(doc);
  } catch (e) {
    if (e instanceof Invalid) throw corrupt(path, e.message);
    throw e;
  }
}

function corrupt(path: string, what: string): StateError {
  return new StateError(
    "corrupt",
    path,
    `state file ${path} is corrupt: ${what}; the file was left untouched`,
  );
}

/** A missing file is the empty state (first run); anything else wrong is a StateError. */
export async function loadState(dataDir: string): Promise<SavedState> {
  const path = joinPath(dataDir, STATE_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return emptyState();
    throw new StateError(
      "unreadable",
      path,
      `cannot read state file ${path}: ${(e as Error).message}; the file was left untouched`,
      { cause: e },
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw corrupt(path, "not UTF-8 text");
  }
  return decodeState(text, path);
}

/**
 * Replace state.json atomically. The temp name carries pid and randomness so two writers
 * (even two daemons by mistake) never share a temp file. On failure the temp file is removed,
 * the old state.json is intact, and the error is rethrown.
 */
export async function saveState(dataDir: string, state: SavedState): Promise<void> {
  const data = utf8.encode(encodeState(state));
  const path = joinPath(dataDir, STATE_FILE);
  const tmp = `${path}.${Deno.pid}.${toHex(crypto.getRandomValues(new Uint8Array(6)))}.tmp`;
  try {
    await writeNewPrivateFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDirectory(dataDir);
}

export interface StateStoreOptions {
  /** Told about each failed background save (the next save or flush() retries). */
  onSaveError?: (error: unknown) => void;
}

/**
 * The in-memory state plus one writer. update() changes memory at once and schedules a save;
 * saves never overlap (one rename at a time), and updates made while a save is in flight
 * coalesce into a single next save of the latest state, so the last state always lands.
 * update() does not return a promise on purpose: a fire-and-forget save that failed would
 * otherwise be an unhandled rejection and kill the daemon. Failures go to onSaveError and
 * surface in flush().
 */
export class StateStore {
  readonly #dataDir: string;
  readonly #onSaveError?: (error: unknown) => void;
  #state: SavedState;
  /** Bumped by every update. */
  #generation = 0;
  /** The generation known to be on disk. */
  #durable = 0;
  #lastError: unknown = null;
  #saving: Promise<void> | null = null;

  constructor(dataDir: string, initial: SavedState, options: StateStoreOptions = {}) {
    this.#dataDir = dataDir;
    this.#onSaveError = options.onSaveError;
    encodeState(initial);
    this.#state = deepFreeze(structuredClone(initial));
  }

  static async open(dataDir: string, options?: StateStoreOptions): Promise<StateStore> {
    return new StateStore(dataDir, await loadState(dataDir), options);
  }

  /** The current state, frozen: change it through update(). */
  get state(): SavedState {
    return this.#state;
  }

  /**
   * The mutator gets a private copy to change in place, or returns a replacement. A result
   * that would not read back throws TypeError and changes nothing.
   */
  update(mutator: (draft: SavedState) => SavedState | void): void {
    const draft = structuredClone(this.#state);
    const next = mutator(draft) ?? draft;
    encodeState(next);
    this.#state = deepFreeze(next);
    this.#generation++;
    this.#startSaving();
  }

  /** Resolves once everything updated so far is on disk; retries a failed save once. */
  async flush(): Promise<void> {
    if (this.#saving) await this.#saving;
    if (this.#durable === this.#generation) return;
    this.#startSaving();
    await this.#saving;
    if (this.#durable < this.#generation) throw this.#lastError;
  }

  #startSaving(): void {
    // Only with work to do: #drain must reach an await before its finally clears #saving.
    if (this.#saving === null && this.#durable < this.#generation) this.#saving = this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#durable < this.#generation) {
        const generation = this.#generation;
        try {
          await saveState(this.#dataDir, this.#state);
          this.#durable = generation;
          this.#lastError = null;
        } catch (e) {
          this.#lastError = e;
          this.#onSaveError?.(e);
          // Nothing newer to try: stop rather than spin on a disk that keeps failing.
          if (generation === this.#generation) break;
        }
      }
    } finally {
      this.#saving = null;
    }
  }
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

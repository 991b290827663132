/**
 * The local control socket's protocol, sans-I/O: JSON lines in, typed commands out; results,
 * errors and events back as JSON lines. The socket shell (daemon/shell/control_server.ts) only
 * moves bytes; everything a client can get wrong is decided here, so it is tested as text.
 *
 * Request  `{"id":1,"cmd":"friend.add","public_key":"…"}` (parameters sit next to `cmd`).
 * Reply    `{"id":1,"ok":true,"result":…}` or `{"id":1,"ok":false,"error":{"code","message"}}`.
 * Events   `{"event":"message","public_key":"…","text":"…","time":"…"}` after `subscribe`.
 */
import { fromHex, toHex } from "../core/common/crypto.ts";
import { parseFriendKey } from "./identity.ts";
import {
  CUSTOM_LOSSLESS_FIRST,
  CUSTOM_LOSSLESS_LAST,
  CUSTOM_LOSSY_FIRST,
  CUSTOM_LOSSY_LAST,
  MAX_MESSAGE_LENGTH,
  MAX_NAME_LENGTH,
  MAX_STATUSMESSAGE_LENGTH,
} from "../core/messenger/messenger.ts";
import { MAX_CRYPTO_DATA_SIZE } from "../core/net_crypto/packets.ts";
import { parseRelaySpec, type RelayAddress } from "../core/common/relay_address.ts";
import { MAX_FRIEND_REQUEST_DELIVERED } from "../core/onion/packets.ts";

/**
 * The longest friend-request message we send: c-toxcore 0.2.18 itself sends up to 1016 bytes
 * (MAX_FRIEND_REQUEST_DATA_SIZE) but a c-toxcore receiver drops onion data over 948 bytes,
 * so 943 is the most that arrives (checked on the wire, spec/onion.md §5). Longer would be
 * lost silently; we refuse it instead.
 */
export const MAX_FRIEND_REQUEST_MESSAGE = MAX_FRIEND_REQUEST_DELIVERED;

/** Longest request line accepted, its LF or CRLF excluded. */
export const MAX_LINE_BYTES = 64 * 1024;

export type ErrorCode =
  | "bad_json" // not JSON
  | "bad_request" // JSON, but not a request object
  | "unknown_command"
  | "bad_argument" // a parameter missing, of the wrong type or out of range
  | "line_too_long"
  | "not_friend"
  | "no_request" // friend.accept / friend.refuse of a key that has not asked
  | "not_online"
  | "unknown_relay"
  | "queue_full"
  | "failed" // the daemon could not do it (the message says why)
  | "shutting_down";

export interface ControlError {
  readonly code: ErrorCode;
  readonly message: string;
}

export type RequestId = number | string | null;

export type ControlCommand =
  | { readonly cmd: "status" | "self" | "relays" | "friends" | "subscribe" | "unsubscribe" }
  | { readonly cmd: "relay.add"; readonly relay: RelayAddress }
  | { readonly cmd: "relay.remove"; readonly publicKey: string }
  | {
    readonly cmd: "friend.add";
    readonly publicKey: Uint8Array;
    readonly dhtPublicKey: Uint8Array | null;
    readonly relays: readonly RelayAddress[];
    /** With a message (and a Tox ID): a friend request, sent through the onion. */
    readonly request: { readonly nospam: Uint8Array; readonly message: string } | null;
  }
  | { readonly cmd: "friend.accept" | "friend.refuse"; readonly publicKey: Uint8Array }
  | { readonly cmd: "requests" }
  | { readonly cmd: "friend.remove"; readonly publicKey: Uint8Array }
  | {
    readonly cmd: "send";
    readonly publicKey: Uint8Array;
    readonly text: string;
    readonly action: boolean;
  }
  | {
    readonly cmd: "send.lossless" | "send.lossy";
    readonly publicKey: Uint8Array;
    readonly data: Uint8Array;
  }
  | { readonly cmd: "profile.set"; readonly name?: string; readonly statusMessage?: string };

export type ParsedRequest =
  | { readonly ok: true; readonly id: RequestId; readonly command: ControlCommand }
  | { readonly ok: false; readonly id: RequestId; readonly error: ControlError };

/** Every command name, for `unknown_command` and for help text. */
export const COMMANDS = [
  "status",
  "self",
  "relays",
  "relay.add",
  "relay.remove",
  "friends",
  "friend.add",
  "friend.remove",
  "friend.accept",
  "friend.refuse",
  "requests",
  "send",
  "send.lossless",
  "send.lossy",
  "profile.set",
  "subscribe",
  "unsubscribe",
] as const;

// ---- lines ------------------------------------------------------------------------------

export type LineResult =
  | { readonly ok: true; readonly line: string }
  | { readonly ok: false; readonly error: ControlError };

/**
 * Splits a byte stream into lines of at most MAX_LINE_BYTES. An oversized line is skipped
 * up to its newline and reported once, so one bad request costs its sender one error reply
 * and the connection lives on. Memory held: at most one line.
 */
export class LineSplitter {
  readonly #max: number;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  #parts: Uint8Array[] = [];
  #held = 0;
  #skipping = false;

  constructor(maxLineBytes = MAX_LINE_BYTES) {
    this.#max = maxLineBytes;
  }

  push(bytes: Uint8Array): LineResult[] {
    const out: LineResult[] = [];
    let start = 0;
    while (start < bytes.length) {
      const nl = bytes.indexOf(0x0a, start);
      const end = nl < 0 ? bytes.length : nl;
      const piece = bytes.subarray(start, end);
      if (!this.#skipping) {
        // One byte of slack for the CR of a CRLF; #take holds a line without one to the cap.
        if (this.#held + piece.length > this.#max + 1) {
          this.#skipping = true;
          this.#parts = [];
          this.#held = 0;
          out.push({
            ok: false,
            error: { code: "line_too_long", message: `request line over ${this.#max} bytes` },
          });
        } else if (piece.length > 0) {
          this.#parts.push(piece.slice());
          this.#held += piece.length;
        }
      }
      if (nl < 0) break;
      if (!this.#skipping) out.push(this.#take());
      else this.#parts = [];
      this.#skipping = false;
      start = nl + 1;
    }
    return out;
  }

  #take(): LineResult {
    const last = this.#parts.at(-1);
    if (this.#held > this.#max && last?.[last.length - 1] !== 0x0d) {
      this.#parts = [];
      this.#held = 0;
      return {
        ok: false,
        error: { code: "line_too_long", message: `request line over ${this.#max} bytes` },
      };
    }
    const all = new Uint8Array(this.#held);
    let at = 0;
    for (const p of this.#parts) {
      all.set(p, at);
      at += p.length;
    }
    this.#parts = [];
    this.#held = 0;
    try {
      // A trailing CR is tolerated (clients on other systems, `nc -C`).
      return { ok: true, line: this.#decoder.decode(all).replace(/\r$/, "") };
    } catch {
      return { ok: false, error: { code: "bad_json", message: "request line is not UTF-8" } };
    }
  }
}

// ---- requests ---------------------------------------------------------------------------

class ArgumentError extends Error {}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const utf8Length = (s: string) => new TextEncoder().encode(s).length;

function field(o: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(o, name) ? o[name] : undefined;
}

function requireString(o: Record<string, unknown>, name: string): string {
  const v = field(o, name);
  if (typeof v !== "string") throw new ArgumentError(`"${name}" must be a string`);
  return v;
}

function optionalString(o: Record<string, unknown>, name: string): string | undefined {
  const v = field(o, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new ArgumentError(`"${name}" must be a string`);
  return v;
}

function key64(o: Record<string, unknown>, name: string): Uint8Array {
  const v = requireString(o, name).trim();
  if (!/^[0-9a-fA-F]{64}$/.test(v)) throw new ArgumentError(`"${name}" must be 64 hex digits`);
  return fromHex(v, 32);
}

/** A friend named by public key (64 hex) or Tox ID (76 hex, checksum checked). */
function friendKey(o: Record<string, unknown>): Uint8Array {
  const r = parseFriendKey(requireString(o, "public_key"));
  if (!r.ok) throw new ArgumentError(`"public_key": ${r.message}`);
  return r.publicKey;
}

function relaySpec(v: unknown, what: string): RelayAddress {
  if (typeof v !== "string") throw new ArgumentError(`${what} must be a "HOST:PORT:PUBKEY" string`);
  try {
    return parseRelaySpec(v);
  } catch (e) {
    throw new ArgumentError(`${what}: ${(e as Error).message}`);
  }
}

function bounded(text: string, name: string, max: number): string {
  const n = utf8Length(text);
  if (n > max) throw new ArgumentError(`"${name}" is ${n} bytes of UTF-8; at most ${max}`);
  return text;
}

function customPacket(o: Record<string, unknown>, lossless: boolean): Uint8Array {
  const hex = requireString(o, "data");
  if (!HEX.test(hex) || hex.length === 0) {
    throw new ArgumentError(`"data" must be an even number of hex digits, at least 2`);
  }
  const data = fromHex(hex);
  if (data.length > MAX_CRYPTO_DATA_SIZE) {
    throw new ArgumentError(`"data" is ${data.length} bytes; at most ${MAX_CRYPTO_DATA_SIZE}`);
  }
  const [lo, hi] = lossless
    ? [CUSTOM_LOSSLESS_FIRST, CUSTOM_LOSSLESS_LAST]
    : [CUSTOM_LOSSY_FIRST, CUSTOM_LOSSY_LAST];
  if (data[0] < lo || data[0] > hi) {
    throw new ArgumentError(`"data" must start with a packet id in ${lo}..${hi}, not ${data[0]}`);
  }
  return data;
}

function command(cmd: string, o: Record<string, unknown>): ControlCommand {
  switch (cmd) {
    case "status":
    case "self":
    case "relays":
    case "friends":
    case "requests":
    case "subscribe":
    case "unsubscribe":
      return { cmd };
    case "relay.add":
      return { cmd, relay: relaySpec(field(o, "relay"), `"relay"`) };
    case "relay.remove":
      return { cmd, publicKey: toHex(key64(o, "public_key")) };
    case "friend.add": {
      const dht = field(o, "dht_public_key");
      const relays = field(o, "relays");
      if (relays !== undefined && !Array.isArray(relays)) {
        throw new ArgumentError(`"relays" must be an array of "HOST:PORT:PUBKEY" strings`);
      }
      if ((relays ?? []).length > 16) throw new ArgumentError(`"relays": at most 16`);
      const message = optionalString(o, "message");
      const parsed = parseFriendKey(requireString(o, "public_key"));
      if (!parsed.ok) throw new ArgumentError(`"public_key": ${parsed.message}`);
      let request = null;
      if (message !== undefined) {
        if (parsed.nospam === null) {
          throw new ArgumentError(
            `a friend request needs the friend's Tox ID (76 hex digits, with its nospam), ` +
              `not a bare public key`,
          );
        }
        if (message.length === 0) throw new ArgumentError(`"message" must not be empty`);
        const n = utf8Length(message);
        if (n > MAX_FRIEND_REQUEST_MESSAGE) {
          throw new ArgumentError(
            `"message" is ${n} bytes of UTF-8; at most ${MAX_FRIEND_REQUEST_MESSAGE}: a ` +
              `c-toxcore 0.2.18 peer silently drops a longer friend request`,
          );
        }
        request = { nospam: parsed.nospam, message };
      }
      return {
        cmd,
        publicKey: parsed.publicKey,
        dhtPublicKey: dht === undefined || dht === null ? null : key64(o, "dht_public_key"),
        relays: (relays ?? []).map((r, i) => relaySpec(r, `"relays"[${i}]`)),
        request,
      };
    }
    case "friend.accept":
    case "friend.refuse":
      return { cmd, publicKey: friendKey(o) };
    case "friend.remove":
      return { cmd, publicKey: friendKey(o) };
    case "send": {
      const action = field(o, "action") ?? false;
      if (typeof action !== "boolean") throw new ArgumentError(`"action" must be true or false`);
      const text = bounded(requireString(o, "text"), "text", MAX_MESSAGE_LENGTH);
      if (text.length === 0) throw new ArgumentError(`"text" must not be empty`);
      return { cmd, publicKey: friendKey(o), text, action };
    }
    case "send.lossless":
    case "send.lossy":
      return { cmd, publicKey: friendKey(o), data: customPacket(o, cmd === "send.lossless") };
    case "profile.set": {
      const name = optionalString(o, "name");
      const statusMessage = optionalString(o, "status_message");
      if (name === undefined && statusMessage === undefined) {
        throw new ArgumentError(`give "name" and/or "status_message"`);
      }
      return {
        cmd,
        name: name === undefined ? undefined : bounded(name, "name", MAX_NAME_LENGTH),
        statusMessage: statusMessage === undefined
          ? undefined
          : bounded(statusMessage, "status_message", MAX_STATUSMESSAGE_LENGTH),
      };
    }
    default:
      throw new Error("unreachable");
  }
}

/** One request line → a typed command, or the error to answer with (and the id to echo). */
export function parseRequest(line: string): ParsedRequest {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch (e) {
    return {
      ok: false,
      id: null,
      error: { code: "bad_json", message: `not JSON: ${(e as Error).message}` },
    };
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return {
      ok: false,
      id: null,
      error: { code: "bad_request", message: "a request is a JSON object" },
    };
  }
  const o = doc as Record<string, unknown>;
  const rawId = field(o, "id");
  const idOk = rawId === undefined || rawId === null || typeof rawId === "string" ||
    (typeof rawId === "number" && Number.isFinite(rawId));
  const id: RequestId = idOk ? (rawId as RequestId) ?? null : null;
  if (!idOk) {
    return {
      ok: false,
      id,
      error: { code: "bad_request", message: `"id" must be a number or a string` },
    };
  }
  if (typeof id === "string" && id.length > 256) {
    return { ok: false, id: null, error: { code: "bad_request", message: `"id" is too long` } };
  }
  const cmd = field(o, "cmd");
  if (typeof cmd !== "string") {
    return { ok: false, id, error: { code: "bad_request", message: `"cmd" must be a string` } };
  }
  if (!(COMMANDS as readonly string[]).includes(cmd)) {
    return {
      ok: false,
      id,
      error: {
        code: "unknown_command",
        message: `unknown command ${JSON.stringify(cmd.slice(0, 64))}; commands: ${
          COMMANDS.join(", ")
        }`,
      },
    };
  }
  try {
    return { ok: true, id, command: command(cmd, o) };
  } catch (e) {
    if (e instanceof ArgumentError) {
      return { ok: false, id, error: { code: "bad_argument", message: `${cmd}: ${e.message}` } };
    }
    throw e;
  }
}

// ---- replies and events -----------------------------------------------------------------

export function okReply(id: RequestId, result: unknown): string {
  return JSON.stringify({ id, ok: true, result }) + "\n";
}

export function errorReply(id: RequestId, error: ControlError): string {
  return JSON.stringify({ id, ok: false, error }) + "\n";
}

/** What subscribers see: a closed set of names, snake_case fields, keys in hex. */
export type ControlEvent =
  | { event: "relay_up"; public_key: string; host: string; port: number }
  | { event: "relay_down"; public_key: string; host: string; port: number; reason: string }
  | { event: "friend_progress"; public_key: string; progress: string }
  | { event: "friend_online"; public_key: string }
  | { event: "friend_offline"; public_key: string; reason: string }
  | { event: "message"; public_key: string; text: string; kind: "normal" | "action" }
  | { event: "receipt"; public_key: string; receipt: number }
  | { event: "message_failed"; public_key: string; receipts: number[]; reason: string }
  | { event: "custom_packet"; public_key: string; data: string; lossless: boolean }
  | { event: "friend_name"; public_key: string; name: string }
  | { event: "friend_status_message"; public_key: string; status_message: string }
  | { event: "friend_request"; public_key: string; text: string }
  /** Whether friends can find us (stored at an onion announce node) changed. */
  | { event: "onion"; announced: boolean; stored_at: number; nodes: number };

export function eventLine(e: ControlEvent, now: Date): string {
  return JSON.stringify({ ...e, time: now.toISOString() }) + "\n";
}

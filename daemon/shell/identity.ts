/**
 * The long-term identity: the real key pair friends know us by, the nospam that gates
 * friend requests, and the Tox ID ("address" in c-toxcore) that bundles both for sharing.
 *
 * `<dataDir>/identity.json` (mode 0600): {"version":1,"secret_key":"<64 hex>","nospam":"<8 hex>"}.
 * Losing or replacing this file means losing every friendship, so the rules are:
 * - it is created at most once, atomically (temp file + fsync + hard link, which fails rather
 *   than replace a file someone else created in between);
 * - an existing file is never rewritten, renamed or deleted, whatever is wrong with it: the
 *   daemon refuses to start and says why, and the user decides;
 * - the one exception is permissions: group/other bits are cleared (the key must not stay
 *   readable by others a moment longer than needed), reported as a warning, not an error;
 * - the secret key never appears in an error message, toString, toJSON or console output.
 */
import {
  bytesEqual,
  fromHex,
  type KeyPair,
  PUBLIC_KEY_SIZE,
  publicKeyOf,
  type RandomBytes,
  SECRET_KEY_SIZE,
  systemRandom,
  toHex,
} from "../core/common/crypto.ts";
import { joinPath, syncDirectory, writeNewPrivateFile } from "./private_file.ts";

export const NOSPAM_SIZE = 4;
/** TOX_ADDRESS_SIZE: public key ‖ nospam ‖ checksum. */
export const TOX_ID_SIZE = PUBLIC_KEY_SIZE + NOSPAM_SIZE + 2;
export const IDENTITY_FILE = "identity.json";
const IDENTITY_VERSION = 1;
/** A real one is about 100 bytes; anything much larger is not ours, so don't read it all. */
const MAX_IDENTITY_FILE_SIZE = 64 * 1024;

const INSPECT = Symbol.for("Deno.customInspect");
const NODE_INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** c-toxcore address_checksum: XOR of the even and of the odd bytes of pk ‖ nospam. */
function addressChecksum(body: Uint8Array): Uint8Array {
  const c = new Uint8Array(2);
  for (let i = 0; i < body.length; i++) c[i % 2] ^= body[i];
  return c;
}

/** The Tox ID as qTox and toxic show it: 76 upper-case hex digits. */
export function toxId(publicKey: Uint8Array, nospam: Uint8Array): string {
  if (publicKey.length !== PUBLIC_KEY_SIZE || nospam.length !== NOSPAM_SIZE) {
    throw new TypeError(
      `toxId: need a ${PUBLIC_KEY_SIZE}-byte public key and ${NOSPAM_SIZE}-byte nospam`,
    );
  }
  const body = new Uint8Array(PUBLIC_KEY_SIZE + NOSPAM_SIZE);
  body.set(publicKey);
  body.set(nospam, PUBLIC_KEY_SIZE);
  return (toHex(body) + toHex(addressChecksum(body))).toUpperCase();
}

export type FriendKey =
  | { ok: true; publicKey: Uint8Array; nospam: Uint8Array | null }
  | { ok: false; message: string };

const EXPECTED = "expected a 76-digit Tox ID or a 64-digit public key";

/**
 * What a user pastes to add a friend: a Tox ID (76 hex, checksum checked, so a typo is caught
 * before a request goes to a stranger) or a bare public key (64 hex, no nospam: enough to
 * accept or reconnect, not to send a friend request).
 */
export function parseFriendKey(text: string): FriendKey {
  const s = text.trim();
  if (s === "") return { ok: false, message: `friend key is empty: ${EXPECTED}` };
  const bad = s.search(/[^0-9a-fA-F]/);
  if (bad >= 0) {
    return {
      ok: false,
      message: `friend key has a non-hex character at position ${bad + 1}: ${EXPECTED}`,
    };
  }
  if (s.length === PUBLIC_KEY_SIZE * 2) {
    return { ok: true, publicKey: fromHex(s), nospam: null };
  }
  if (s.length !== TOX_ID_SIZE * 2) {
    return { ok: false, message: `friend key has ${s.length} hex digits: ${EXPECTED}` };
  }
  const bytes = fromHex(s);
  const body = bytes.subarray(0, PUBLIC_KEY_SIZE + NOSPAM_SIZE);
  const want = addressChecksum(body);
  const got = bytes.subarray(PUBLIC_KEY_SIZE + NOSPAM_SIZE);
  if (!bytesEqual(want, got)) {
    return {
      ok: false,
      message: `Tox ID checksum does not match (ends in ${toHex(got).toUpperCase()}, ` +
        `expected ${toHex(want).toUpperCase()}): the ID is mistyped or damaged`,
    };
  }
  return {
    ok: true,
    publicKey: bytes.slice(0, PUBLIC_KEY_SIZE),
    nospam: bytes.slice(PUBLIC_KEY_SIZE, PUBLIC_KEY_SIZE + NOSPAM_SIZE),
  };
}

/**
 * unreadable: exists but cannot be read (permissions, a directory...); corrupt: read but not
 * an identity; insecure_mode: readable by others and we may not chmod it; create_failed: there
 * was none and we could not make one. A file created by someone else while we were creating
 * ours is not an error: theirs is loaded.
 */
export type IdentityErrorCode = "unreadable" | "corrupt" | "insecure_mode" | "create_failed";

export class IdentityError extends Error {
  override name = "IdentityError";
  constructor(
    readonly code: IdentityErrorCode,
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * A key pair whose secret half stays out of JSON and console output. Methods live on the
 * prototype, so structuredClone (postMessage to relay Workers) still yields a plain KeyPair.
 */
class GuardedKeyPair implements KeyPair {
  constructor(readonly publicKey: Uint8Array, readonly secretKey: Uint8Array) {}
  toJSON(): { public_key: string } {
    return { public_key: toHex(this.publicKey) };
  }
  toString(): string {
    return `KeyPair(public ${toHex(this.publicKey)}, secret redacted)`;
  }
  [INSPECT](): string {
    return this.toString();
  }
  [NODE_INSPECT](): string {
    return this.toString();
  }
}

export class Identity {
  readonly keys: KeyPair;
  constructor(keys: KeyPair, readonly nospam: Uint8Array, readonly path: string) {
    this.keys = new GuardedKeyPair(keys.publicKey, keys.secretKey);
  }
  get toxId(): string {
    return toxId(this.keys.publicKey, this.nospam);
  }
  toJSON(): { path: string; public_key: string; tox_id: string } {
    return { path: this.path, public_key: toHex(this.keys.publicKey), tox_id: this.toxId };
  }
  toString(): string {
    return `Identity(${this.toxId}, ${this.path})`;
  }
  [INSPECT](): string {
    return this.toString();
  }
  [NODE_INSPECT](): string {
    return this.toString();
  }
}

export interface LoadedIdentity {
  identity: Identity;
  created: boolean;
  /** Things fixed on the way (mode tightened) that the caller should tell the user. */
  warnings: string[];
}

const UNTOUCHED = "the file was left untouched";

/**
 * Load `<dataDir>/identity.json`, or create it with a fresh key pair and nospam when absent.
 * The data directory itself must exist: creating it is the caller's decision.
 */
export async function loadOrCreateIdentity(
  dataDir: string,
  random: RandomBytes = systemRandom,
): Promise<LoadedIdentity> {
  const path = joinPath(dataDir, IDENTITY_FILE);
  const existing = await loadIdentity(path);
  if (existing !== null) return existing;
  if (await createIdentity(dataDir, path, random)) {
    const created = await loadIdentity(path);
    if (created === null) {
      throw new IdentityError(
        "create_failed",
        path,
        `identity file ${path} vanished after creation`,
      );
    }
    return { ...created, created: true };
  }
  // Someone else created it between our look and our link: theirs wins, ours is discarded.
  const theirs = await loadIdentity(path);
  if (theirs === null) {
    throw new IdentityError("create_failed", path, `identity file ${path} appeared and vanished`);
  }
  return theirs;
}

/** null when the file does not exist; every other problem is an IdentityError. */
async function loadIdentity(path: string): Promise<LoadedIdentity | null> {
  let bytes: Uint8Array;
  let mode: number | null;
  try {
    const file = await Deno.open(path, { read: true });
    try {
      const info = await file.stat();
      if (!info.isFile) {
        throw new IdentityError(
          "unreadable",
          path,
          `identity file ${path} is not a regular file; ${UNTOUCHED}`,
        );
      }
      if (info.size > MAX_IDENTITY_FILE_SIZE) {
        throw new IdentityError(
          "corrupt",
          path,
          `identity file ${path} is corrupt: ${info.size} bytes is far too large; ${UNTOUCHED}`,
        );
      }
      mode = info.mode;
      bytes = await readAll(file);
    } finally {
      file.close();
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    if (e instanceof IdentityError) throw e;
    throw new IdentityError(
      "unreadable",
      path,
      `cannot read identity file ${path}: ${(e as Error).message}; ${UNTOUCHED}`,
      { cause: e },
    );
  }
  const parsed = decodeIdentity(bytes);
  if (typeof parsed === "string") {
    throw new IdentityError(
      "corrupt",
      path,
      `identity file ${path} is corrupt: ${parsed}; ${UNTOUCHED} (restore it from a backup, ` +
        `or move it away to start over with a new Tox ID)`,
    );
  }
  const warnings: string[] = [];
  if (mode !== null && (mode & 0o077) !== 0) {
    const was = (mode & 0o777).toString(8).padStart(4, "0");
    try {
      await Deno.chmod(path, 0o600);
    } catch (e) {
      throw new IdentityError(
        "insecure_mode",
        path,
        `identity file ${path} has mode ${was} (readable by others) and could not be changed ` +
          `to 0600: ${(e as Error).message}; ${UNTOUCHED}`,
        { cause: e },
      );
    }
    warnings.push(`identity file ${path} had mode ${was}; tightened to 0600`);
  }
  const identity = new Identity(
    { publicKey: publicKeyOf(parsed.secretKey), secretKey: parsed.secretKey },
    parsed.nospam,
    path,
  );
  return { identity, created: false, warnings };
}

/**
 * The reason the bytes are not an identity, or its fields. Reasons never quote the content:
 * it may hold the secret key (which is also why JSON.parse's own message is not passed on).
 */
function decodeIdentity(
  bytes: Uint8Array,
): { secretKey: Uint8Array; nospam: Uint8Array } | string {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return "not UTF-8 text";
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    const where = /at position \d+(?: \(line \d+ column \d+\))?/.exec((e as Error).message);
    return text.trim() === "" ? "empty" : `not valid JSON${where ? ` (${where[0]})` : ""}`;
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return "not a JSON object";
  }
  const o = doc as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => !["version", "secret_key", "nospam"].includes(k));
  if (extra.length > 0) return `unexpected field ${JSON.stringify(extra[0].slice(0, 40))}`;
  if (o.version !== IDENTITY_VERSION) {
    if (o.version === undefined) return `no "version" field`;
    if (typeof o.version !== "number") return `"version" is not a number`;
    return `version ${o.version} is not supported (this daemon reads version ${IDENTITY_VERSION})`;
  }
  const secretKey = hexField(o.secret_key, SECRET_KEY_SIZE);
  if (secretKey === null) return `"secret_key" is not ${SECRET_KEY_SIZE * 2} hex digits`;
  const nospam = hexField(o.nospam, NOSPAM_SIZE);
  if (nospam === null) return `"nospam" is not ${NOSPAM_SIZE * 2} hex digits`;
  return { secretKey, nospam };
}

function hexField(v: unknown, size: number): Uint8Array | null {
  if (typeof v !== "string" || v.length !== size * 2) return null;
  try {
    return fromHex(v, size);
  } catch {
    return null;
  }
}

export function encodeIdentity(secretKey: Uint8Array, nospam: Uint8Array): string {
  return JSON.stringify({
    version: IDENTITY_VERSION,
    secret_key: toHex(secretKey),
    nospam: toHex(nospam),
  }) + "\n";
}

/** true when we created the file, false when one appeared meanwhile (left as it is). */
async function createIdentity(
  dataDir: string,
  path: string,
  random: RandomBytes,
): Promise<boolean> {
  const secretKey = random(SECRET_KEY_SIZE);
  const nospam = random(NOSPAM_SIZE);
  const text = encodeIdentity(secretKey, nospam);
  const tmp = `${path}.${Deno.pid}.${toHex(random(6))}.tmp`;
  try {
    await writeNewPrivateFile(tmp, new TextEncoder().encode(text));
    try {
      // A link, unlike a rename, refuses to replace an existing file.
      await Deno.link(tmp, path);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return false;
      throw e;
    }
  } catch (e) {
    throw new IdentityError(
      "create_failed",
      path,
      `cannot create identity file ${path}: ${(e as Error).message}`,
      { cause: e },
    );
  } finally {
    secretKey.fill(0);
    await Deno.remove(tmp).catch(() => {});
  }
  await syncDirectory(dataDir);
  return true;
}

async function readAll(file: Deno.FsFile): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

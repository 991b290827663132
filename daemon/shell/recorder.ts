/**
 * The daemon's opt-in recorder (`--capture`, `--keylog`, `--capture-secrets`): relay Workers
 * report what their sockets carried and the keys of each session; this turns that into a
 * pcapng file (synthesized Ethernet/IP/TCP around the real bytes, so tcpdump, tshark and
 * Wireshark can follow the streams) and a key log (capture/keylog.ts).
 *
 * Both files are 0600: the capture holds who talked to whom and when, the key log the secrets.
 *
 * Frames wait KEY_DELAY_MS before they go to the capture file, while key log lines go at once:
 * a session's key is known only after its peer's handshake has been processed, and by then
 * the relay worker may already have recorded the peer's first data packets. The delay puts
 * each Decryption Secrets Block before the frames it opens, as pcapng readers expect.
 * Writes are queued and written in order by one task; the queue is bounded, and when a disk
 * cannot keep up, capture frames (never key log lines) are dropped, counted and reported:
 * the capture then shows a gap where they were, which the decoder reports as such.
 */
import { concatAll } from "../core/common/codec.ts";
import {
  formatKeylogEntry,
  KEYLOG_HEADER,
  type KeylogEntry,
  SECRETS_TYPE_TOX_KEYLOG,
} from "../core/capture/keylog.ts";
import {
  decryptionSecretsBlock,
  enhancedPacketBlock,
  interfaceDescriptionBlock,
  sectionHeaderBlock,
} from "../core/capture/pcapng_writer.ts";
import { SyntheticTcpStream } from "../core/capture/tcp_synth.ts";
import { timestampFromMs } from "../core/capture/types.ts";
import type { Logger } from "./log.ts";
import type { CaptureEvent } from "../../workers/messages.ts";
import type { CoordinatorObserver } from "../../workers/coordinator_handle.ts";

const LINKTYPE_ETHERNET = 1;
/** Capture bytes allowed to wait (for their keys, then the disk) before frames are dropped. */
const MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/** How long a frame is held back so the keys that open it can be written before it. */
export const KEY_DELAY_MS = 1_000;

export interface RecorderOptions {
  readonly capturePath: string | null;
  readonly keylogPath: string | null;
  readonly captureSecrets: boolean;
}

export interface RecorderStats {
  readonly framesWritten: number;
  readonly framesDropped: number;
  readonly bytesWritten: number;
  readonly keysLogged: number;
  readonly streams: number;
}

/** One file written in order by one task, from a bounded queue. */
class OrderedFile {
  readonly #file: Deno.FsFile;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #running: Promise<void> | null = null;
  #error: unknown = null;
  written = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  get queuedBytes(): number {
    return this.#queued;
  }

  get failed(): unknown {
    return this.#error;
  }

  append(bytes: Uint8Array): void {
    if (this.#error !== null) return;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#running ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const all = concatAll(this.#queue);
        this.#queue = [];
        for (let off = 0; off < all.length;) off += await this.#file.write(all.subarray(off));
        this.#queued -= all.length;
        this.written += all.length;
      }
    } catch (e) {
      this.#error = e;
      this.#queue = [];
      this.#queued = 0;
    } finally {
      this.#running = null;
    }
  }

  async close(): Promise<void> {
    while (this.#running !== null) await this.#running;
    try {
      this.#file.close();
    } catch { /* already closed */ }
  }
}

async function openPrivate(path: string, append: boolean): Promise<Deno.FsFile> {
  const file = await Deno.open(path, {
    write: true,
    create: true,
    append,
    truncate: !append,
    mode: 0o600,
  });
  // The open mode is filtered by the umask, and an existing file keeps its own.
  if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
  return file;
}

export class Recorder {
  readonly #capture: OrderedFile | null;
  readonly #keylog: OrderedFile | null;
  readonly #secretsInCapture: boolean;
  readonly #log: Logger;
  readonly #streams = new Map<string, SyntheticTcpStream>();
  #framesWritten = 0;
  #framesDropped = 0;
  #keysLogged = 0;
  #streamsSeen = 0;
  #warnedDrop = false;
  #warnedFail = false;
  /** Frames waiting out KEY_DELAY_MS: the block and when it came (performance.now()). */
  #held: { block: Uint8Array; at: number }[] = [];
  #heldBytes = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(
    capture: OrderedFile | null,
    keylog: OrderedFile | null,
    secretsInCapture: boolean,
    log: Logger,
  ) {
    this.#capture = capture;
    this.#keylog = keylog;
    this.#secretsInCapture = secretsInCapture;
    this.#log = log;
    if (capture !== null) this.#timer = setInterval(() => this.#release(false), 100);
  }

  /** Frames that have waited long enough (all of them when `all`) go to the file. */
  #release(all: boolean): void {
    const file = this.#capture;
    if (file === null || this.#held.length === 0) return;
    const due = performance.now() - KEY_DELAY_MS;
    let n = 0;
    while (n < this.#held.length && (all || this.#held[n].at <= due)) {
      file.append(this.#held[n].block);
      this.#heldBytes -= this.#held[n].block.length;
      n++;
    }
    if (n > 0) this.#held = this.#held.slice(n);
  }

  /** null when neither file was asked for. Throws (a start error) if a file cannot be opened. */
  static async open(opts: RecorderOptions, log: Logger): Promise<Recorder | null> {
    if (opts.capturePath === null && opts.keylogPath === null) return null;
    let capture: OrderedFile | null = null;
    let keylog: OrderedFile | null = null;
    try {
      if (opts.capturePath !== null) {
        capture = new OrderedFile(await openPrivate(opts.capturePath, false));
        capture.append(sectionHeaderBlock());
        capture.append(
          interfaceDescriptionBlock(LINKTYPE_ETHERNET, { name: "toxtcp relays", tsresolNs: true }),
        );
      }
      if (opts.keylogPath !== null) {
        const file = await openPrivate(opts.keylogPath, true);
        keylog = new OrderedFile(file);
        if ((await Deno.stat(opts.keylogPath)).size === 0) {
          keylog.append(new TextEncoder().encode(KEYLOG_HEADER));
        }
      }
    } catch (e) {
      await capture?.close();
      await keylog?.close();
      throw new RecorderError(`cannot open ${describe(opts)}: ${(e as Error).message}`);
    }
    if (opts.keylogPath !== null) {
      log.warn(
        `key log on: ${opts.keylogPath} receives the secrets of every relay and friend session; ` +
          `whoever holds it can read what was captured`,
      );
    }
    if (opts.capturePath !== null) {
      log.info(
        `capturing relay connections to ${opts.capturePath}` +
          (opts.captureSecrets ? " (with their session secrets inside)" : ""),
      );
    }
    const secrets = opts.captureSecrets && capture !== null;
    if (secrets) {
      log.warn(`${opts.capturePath} will hold session secrets: share it as you would the key log`);
    }
    return new Recorder(capture, keylog, secrets, log);
  }

  /** What to give CoordinatorHandle: only the parts asked for are switched on. */
  observer(): CoordinatorObserver {
    const wantKeys = this.#keylog !== null || this.#secretsInCapture;
    return {
      capture: this.#capture !== null
        ? (relay, events) => this.#onCapture(relay, events)
        : undefined,
      keylog: wantKeys ? (entries) => this.#onKeys(entries) : undefined,
    };
  }

  #onCapture(relay: string, events: readonly CaptureEvent[]): void {
    for (const e of events) {
      const key = `${relay}/${e.conn}`;
      let frames: Uint8Array[];
      if (e.c === "open") {
        const s = new SyntheticTcpStream({ client: e.local, server: e.remote });
        this.#streams.set(key, s);
        this.#streamsSeen++;
        frames = s.open();
      } else {
        const s = this.#streams.get(key);
        if (s === undefined) continue;
        if (e.c === "data") frames = s.data(e.from, e.bytes);
        else {
          frames = e.reset ? s.reset(e.by) : s.close(e.by);
          this.#streams.delete(key);
        }
      }
      this.#writeFrames(frames, e.at);
    }
  }

  #writeFrames(frames: Uint8Array[], atMs: number): void {
    const file = this.#capture!;
    this.#checkFailed(file, "capture");
    const ts = timestampFromMs(atMs);
    const now = performance.now();
    for (const f of frames) {
      if (file.queuedBytes + this.#heldBytes > MAX_QUEUED_BYTES) {
        this.#framesDropped++;
        if (!this.#warnedDrop) {
          this.#warnedDrop = true;
          this.#log.warn("capture: the disk is not keeping up; frames are being dropped");
        }
        continue;
      }
      const block = enhancedPacketBlock(0, ts, f);
      this.#held.push({ block, at: now });
      this.#heldBytes += block.length;
      this.#framesWritten++;
    }
  }

  #onKeys(entries: readonly KeylogEntry[]): void {
    const text = entries.map(formatKeylogEntry).join("");
    const bytes = new TextEncoder().encode(text);
    this.#keysLogged += entries.length;
    if (this.#keylog !== null) {
      this.#checkFailed(this.#keylog, "key log");
      this.#keylog.append(bytes);
    }
    // Before the frames these keys open: a DSB applies to the packets after it.
    if (this.#secretsInCapture) {
      this.#capture!.append(decryptionSecretsBlock(SECRETS_TYPE_TOX_KEYLOG, bytes));
    }
  }

  #checkFailed(file: OrderedFile, what: string): void {
    if (file.failed !== null && !this.#warnedFail) {
      this.#warnedFail = true;
      this.#log.error(`${what}: writing failed, recording stopped: ${file.failed}`);
    }
  }

  stats(): RecorderStats {
    return {
      framesWritten: this.#framesWritten,
      framesDropped: this.#framesDropped,
      bytesWritten: this.#capture?.written ?? 0,
      keysLogged: this.#keysLogged,
      streams: this.#streamsSeen,
    };
  }

  /** After the coordinator has closed (its relays' last bytes are in): write out and close. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#release(true);
    await this.#capture?.close();
    await this.#keylog?.close();
    if (this.#framesDropped > 0) {
      this.#log.warn(`capture: ${this.#framesDropped} frames dropped (disk too slow)`);
    }
  }
}

export class RecorderError extends Error {
  override name = "RecorderError";
}

function describe(o: RecorderOptions): string {
  return [o.capturePath, o.keylogPath].filter((p) => p !== null).join(" / ");
}

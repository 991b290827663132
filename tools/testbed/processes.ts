/**
 * Child processes that a tool starts and must always stop: spawned with piped output (kept in a
 * bounded log for post-mortems), stdout read line by line while it runs, stopped by pid with a
 * signal and a grace period before SIGKILL. Nothing here knows about Tox; the demo (tools/demo/stack.ts) and the tests use it.
 */

/** How much of a process's output is kept (the end of it). */
const DEFAULT_MAX_LOG_CHARS = 4 * 1024 * 1024;

export interface SpawnOptions {
  /** A short name for logs and errors ("relay", "alice"). */
  readonly name: string;
  /** The program; `Deno.execPath()` when absent. */
  readonly command?: string;
  readonly args: readonly string[];
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Output kept for `log`/`tail` (the most recent part); 4 Mi characters by default. */
  readonly maxLogChars?: number;
}

/** How a process ended, and whether we had to force it. */
export interface StopResult {
  readonly code: number;
  readonly signal: Deno.Signal | null;
  /** SIGKILL was needed after the grace period. */
  readonly killed: boolean;
  /** It had already exited before we asked it to stop. */
  readonly exitedBefore: boolean;
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

export class ManagedProcess {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<Deno.CommandStatus>;
  #status: Deno.CommandStatus | null = null;
  #log = "";
  readonly #maxLog: number;
  #stdoutLines: string[] = [];
  #lineWaiters: (() => void)[] = [];
  readonly #drains: Promise<void>[];
  #stopping: Promise<StopResult> | null = null;

  private constructor(opts: SpawnOptions) {
    this.name = opts.name;
    this.#maxLog = opts.maxLogChars ?? DEFAULT_MAX_LOG_CHARS;
    this.child = new Deno.Command(opts.command ?? Deno.execPath(), {
      args: [...opts.args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
      cwd: opts.cwd,
    }).spawn();
    this.pid = this.child.pid;
    this.exited = this.child.status.then((s) => {
      this.#status = s;
      this.#wakeLineWaiters();
      return s;
    });
    this.#drains = [
      this.#drain(this.child.stdout, true),
      this.#drain(this.child.stderr, false),
    ];
  }

  /** Starts the program; throws (as `Deno.Command` does) if it cannot be started at all. */
  static spawn(opts: SpawnOptions): ManagedProcess {
    return new ManagedProcess(opts);
  }

  /** The exit status once it has exited, else null. */
  get status(): Deno.CommandStatus | null {
    return this.#status;
  }

  /** Everything it printed (stdout and stderr interleaved as read), the end of it if long. */
  get log(): string {
    return this.#log;
  }

  /** The complete stdout lines read so far (the first 10,000). */
  get stdoutLines(): readonly string[] {
    return this.#stdoutLines;
  }

  /** The last `n` non-empty lines of its output. */
  tail(n: number): string[] {
    return this.#log.split("\n").filter((l) => l.trim() !== "").slice(-n);
  }

  /**
   * The first stdout line (from the start of the process) that `pred` accepts, within
   * `timeoutMs`. Rejects if the process exits first, on timeout, or when `signal` aborts.
   */
  async waitForLine(
    pred: (line: string) => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<string> {
    const end = performance.now() + timeoutMs;
    let seen = 0;
    while (true) {
      for (; seen < this.#stdoutLines.length; seen++) {
        if (pred(this.#stdoutLines[seen])) return this.#stdoutLines[seen];
      }
      if (this.#status !== null) {
        throw new Error(`${this.name} exited (${statusText(this.#status)}) before it was ready`);
      }
      if (signal?.aborted) throw signal.reason ?? new Error("aborted");
      const left = end - performance.now();
      if (left <= 0) throw new Error(`${this.name}: not ready within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        signal?.addEventListener("abort", wake, { once: true });
        this.#lineWaiters.push(wake);
      });
    }
  }

  /**
   * Sends `signal` (by pid) and waits for the exit; SIGKILL after `graceMs`. Then waits for the
   * output pipes to be read to their end. Calling it again returns the same result.
   */
  stop(signal: Deno.Signal = "SIGTERM", graceMs = 5_000): Promise<StopResult> {
    this.#stopping ??= this.#stop(signal, graceMs);
    return this.#stopping;
  }

  /** SIGKILL now (e.g. a second Ctrl-C during a stop); `stop()` still resolves as usual. */
  forceKill(): void {
    if (this.#status !== null) return;
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  async #stop(signal: Deno.Signal, graceMs: number): Promise<StopResult> {
    const exitedBefore = this.#status !== null;
    let killed = false;
    if (!exitedBefore) {
      try {
        this.child.kill(signal);
      } catch { /* exited meanwhile */ }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), graceMs)));
      if ((await Promise.race([this.exited, late])) === "late") {
        killed = true;
        this.forceKill();
      }
      clearTimeout(timer);
    }
    const status = await this.exited;
    await Promise.all(this.#drains);
    return { code: status.code, signal: status.signal, killed, exitedBefore };
  }

  async #drain(stream: ReadableStream<Uint8Array>, isStdout: boolean): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    try {
      for await (const chunk of stream) {
        const text = decoder.decode(chunk, { stream: true });
        this.#append(text);
        if (!isStdout) continue;
        partial += text;
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        if (lines.length > 0) {
          // Only what a caller may wait for is kept line by line; the log holds the rest.
          for (const l of lines) if (this.#stdoutLines.length < 10_000) this.#stdoutLines.push(l);
          this.#wakeLineWaiters();
        }
      }
    } catch {
      // The pipe broke: the process is gone; its status says how.
    }
  }

  #append(text: string): void {
    this.#log += text;
    if (this.#log.length > this.#maxLog) {
      const cut = this.#log.indexOf("\n", this.#log.length - this.#maxLog);
      this.#log = this.#log.slice(cut >= 0 ? cut + 1 : this.#log.length - this.#maxLog);
    }
  }

  #wakeLineWaiters(): void {
    for (const wake of this.#lineWaiters.splice(0)) wake();
  }
}

/** "exit code 1", "signal SIGKILL". */
export function statusText(s: { code: number; signal: Deno.Signal | null }): string {
  return s.signal !== null ? `signal ${s.signal}` : `exit code ${s.code}`;
}

/**
 * Whether a process with this pid still runs (Linux: /proc/PID exists and is not a zombie).
 * Elsewhere, without /proc, this answers false.
 */
export function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // "pid (comm) S …": the state letter follows the last ')'.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

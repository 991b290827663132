/**
 * Leveled logs, one line per event: `2026-11-23T19:20:13.674Z INFO  relay up 127.0.0.1:33445`.
 * Callers pass public values only; nothing here can print a key it is not given, and the
 * daemon never gives it a secret or session key.
 */
export type LogLevel = "error" | "warn" | "info" | "debug";

export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

export class Logger {
  readonly #rank: number;
  readonly #write: (line: string) => void;

  constructor(level: LogLevel, write: (line: string) => void = writeStderr) {
    this.#rank = LOG_LEVELS.indexOf(level);
    this.#write = write;
  }

  error(msg: string): void {
    this.#log(0, "ERROR", msg);
  }
  warn(msg: string): void {
    this.#log(1, "WARN ", msg);
  }
  info(msg: string): void {
    this.#log(2, "INFO ", msg);
  }
  debug(msg: string): void {
    this.#log(3, "DEBUG", msg);
  }

  #log(rank: number, tag: string, msg: string): void {
    if (rank > this.#rank) return;
    // One event, one line: a newline inside a message (a peer's name…) must not forge another.
    const text = msg.replace(/[\r\n]+/g, " ⏎ ");
    this.#write(`${new Date().toISOString()} ${tag} ${text}\n`);
  }
}

const encoder = new TextEncoder();
function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line));
  } catch {
    // stderr closed: nowhere left to complain to.
  }
}

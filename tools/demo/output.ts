/**
 * Where the demo's lines go and how they look: the narrative (stdout, or stderr with --json so
 * stdout holds the JSON alone), each line kept for the JSON summary and stamped with the time
 * since the start; and the short number and key formats the lines use.
 */

export interface DemoIo {
  /** The narrative (stdout, or stderr with --json). */
  say: (line: string) => void;
  /** The JSON summary (stdout). */
  stdout: (text: string) => void;
  /** Failures and warnings. */
  stderr: (text: string) => void;
}

export const short = (hex: string, n = 8) => `${hex.slice(0, n)}…`;
export const ms1 = (ms: number) => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
export const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const round1 = (x: number) => Math.round(x * 10) / 10;

/** The narrative as it is told: the clock starts when it is created. */
export class Narrative {
  readonly t0 = performance.now();
  readonly lines: string[] = [];

  constructor(readonly io: DemoIo) {}

  now(): number {
    return performance.now() - this.t0;
  }

  /** A narrative line stamped with the time since the start. */
  at(ms: number, text: string): void {
    this.line(`${secs(ms).padStart(7)}  ${text}`);
  }

  line(text: string): void {
    this.lines.push(text);
    this.io.say(text);
  }
}

/** The process's own stdout and stderr, written synchronously; a closed pipe is ignored. */
export function processIo(json: boolean): DemoIo {
  const encoder = new TextEncoder();
  const writer = (file: { writeSync(p: Uint8Array): number }) => (s: string) => {
    let bytes = encoder.encode(s);
    try {
      while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
    } catch {
      // a closed terminal or pipe: the demo still cleans up
    }
  };
  const out = writer(Deno.stdout);
  const err = writer(Deno.stderr);
  return { say: (l) => (json ? err : out)(l + "\n"), stdout: out, stderr: err };
}

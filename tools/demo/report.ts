/**
 * What the demo says once the script has ended, however it ended: the failed step with each
 * process's last log lines (or the interruption), the clean-up line, "done", how to decode a kept
 * capture again, and with --json the one-line JSON summary on stdout.
 */
import { statusText } from "../testbed/processes.ts";
import { errText, Interrupted, StepError } from "./failure.ts";
import { type DemoIo, round1, secs } from "./output.ts";
import type { Demo } from "./scenario.ts";

/** The interruption as a narrative line, or the failure (and every process's tail) on stderr. */
export function reportFailure(demo: Demo, failure: unknown, io: DemoIo): void {
  if (failure instanceof Interrupted) {
    demo.narrative.line(
      `interrupted (${failure.signal}) during "${demo.step}": stopping everything`,
    );
  } else if (failure !== null) {
    io.stderr(`\ndemo FAILED at step "${demo.step}": ${errText(failure)}\n`);
    if (!(failure instanceof StepError) && failure instanceof Error && failure.stack) {
      io.stderr(`${failure.stack}\n`);
    }
    for (const [name, info] of demo.stack.procs) {
      const st = info.proc.status;
      io.stderr(
        `\n--- ${name} (pid ${info.proc.pid}, ${
          st ? statusText(st) : "running"
        }): last lines ---\n`,
      );
      io.stderr(info.proc.tail(15).map((l) => `  ${l}`).join("\n") + "\n");
    }
  }
}

/** "cleaned up: N processes stopped, temp dir …", stamped with when the clean-up began. */
export function reportCleanup(
  demo: Demo,
  cleaning: number,
  cleanup: Record<string, unknown>,
): void {
  const n = cleanup.processes_stopped ?? 0;
  demo.narrative.at(
    cleaning,
    `cleaned up: ${n} process${n === 1 ? "" : "es"} stopped` +
      (cleanup.all_gone === false ? " (SOME STILL RUN)" : "") +
      (cleanup.temp_dir_kept
        ? `, temp dir kept: ${cleanup.temp_dir}`
        : cleanup.temp_dir_removed
        ? ", temp dir removed"
        : cleanup.remove_error
        ? `, temp dir NOT removed: ${cleanup.remove_error}`
        : ""),
  );
}

/** "done in …" when all went well; the decode command when the capture was kept. */
export function reportEnd(
  demo: Demo,
  failure: unknown,
  total: number,
  cleanup: Record<string, unknown>,
): void {
  if (failure === null) demo.narrative.line(`done in ${secs(total)}`);
  if (cleanup.temp_dir_kept && demo.summary.capture !== undefined) {
    const t = cleanup.temp_dir;
    demo.narrative.line(
      `decode it again: deno task decode ${t}/alice.pcapng --keylog ${t}/alice.keys.log`,
    );
  }
}

/** The --json summary: the outcome, what each step recorded, the clean-up, the narrative. */
export function jsonSummary(
  demo: Demo,
  failure: unknown,
  code: number,
  total: number,
  cleanup: Record<string, unknown>,
): string {
  return JSON.stringify({
    ok: failure === null,
    exit_code: code,
    interrupted: failure instanceof Interrupted,
    failed_step: failure !== null && !(failure instanceof Interrupted) ? demo.step : null,
    error: failure !== null ? errText(failure) : null,
    total_ms: round1(total),
    ...demo.summary,
    cleanup,
    narrative: demo.narrative.lines,
  }) + "\n";
}

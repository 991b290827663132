/**
 * `deno task demo`: the whole stack on 127.0.0.1 in a few seconds, nothing from the internet.
 *
 * Our relay (daemon/shell/relay_main.ts) and two daemons, alice and bob, each with a fresh private
 * data directory in one temp dir. They become friends through their control sockets (alice adds
 * bob with his DHT key and the relay as the hint; bob adds alice by her Tox ID), exchange chat
 * messages with receipts and custom lossless and lossy packets, and stop with SIGTERM. Alice
 * records her relay connections (`--capture`, `--keylog`); the capture is then decoded with the
 * key log (tools/decode.ts). A short narrative with timings is printed as it goes.
 *
 * Everything is cleaned up always: processes by pid (SIGTERM, SIGKILL after a grace period),
 * then the temp dir — on success, on failure (the failing step and each process's last log
 * lines are printed; exit 1) and on Ctrl-C (exit 130). Every wait is bounded.
 *
 * This file is the entry: the flags, the signal handlers, the outcome and the exit code. The
 * parts are in tools/demo/: plan.ts (messages, packet flows, bounds), scenario.ts (the steps),
 * stack.ts (the processes, temp dir and clean-up), control.ts and event_log.ts (talking to a
 * daemon), custom_packets.ts and capture.ts (two larger steps), failure.ts (step errors, bounded
 * waits), output.ts (the narrative) and report.ts (what is said at the end, --json).
 */
import { parseArgs } from "node:util";
import { sleep } from "./testbed/processes.ts";
import { errText, Interrupted, StepError } from "./demo/failure.ts";
import { processIo } from "./demo/output.ts";
import { jsonSummary, reportCleanup, reportEnd, reportFailure } from "./demo/report.ts";
import { Demo } from "./demo/scenario.ts";

export type { DemoIo } from "./demo/output.ts";

export const USAGE = `usage: deno task demo [--keep] [--json]

Starts our TCP relay and two daemons (alice and bob) on 127.0.0.1 with temporary data dirs,
makes them friends, exchanges messages (with receipts) and custom lossless/lossy packets,
records alice's relay connections with a key log, stops everything (SIGTERM) and decodes the
capture. Needs nothing but Deno; nothing leaves this machine.

  --keep   keep the temp dir (data dirs, capture, key log, each process's log) and print its path
  --json   a JSON summary at the end on stdout (the narrative then goes to stderr)
  --help   this text

exit: 0 done; 1 a step failed (it is named, with the last lines of each process's log);
130 interrupted (Ctrl-C; 143 for SIGTERM), after the same clean-up; 64 usage`;

export const EXIT = { ok: 0, failed: 1, interrupted: 130, terminated: 143, usage: 64 } as const;

interface Options {
  keep: boolean;
  json: boolean;
}

function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      keep: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  return { keep: values.keep === true, json: values.json === true };
}

export async function main(args: string[]): Promise<number> {
  let opts: Options | "help";
  try {
    opts = parseOptions(args);
  } catch (e) {
    console.error(`demo: ${errText(e)}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (opts === "help") {
    console.log(USAGE);
    return EXIT.ok;
  }
  const io = processIo(opts.json);
  const demo = new Demo(io);
  const onInt = () => demo.interrupt("SIGINT");
  const onTerm = () => demo.interrupt("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);

  let failure: unknown = null;
  try {
    await demo.run();
  } catch (e) {
    failure = e;
    // Ctrl-C reaches the whole process group: a daemon ending on it may be noticed before our
    // own handler runs. Give the signal a moment to arrive before calling it a failure.
    if (!(e instanceof Interrupted)) await sleep(200);
  }
  if (failure !== null && demo.interrupted !== null) failure = demo.interrupted;
  reportFailure(demo, failure, io);

  const cleaning = demo.narrative.now();
  let cleanup: Record<string, unknown>;
  try {
    cleanup = await demo.stack.cleanup(opts.keep);
  } catch (e) {
    cleanup = { error: errText(e) };
  }
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  reportCleanup(demo, cleaning, cleanup);
  const total = demo.narrative.now();
  // Ctrl-C during the clean-up of a run that went well still means "interrupted".
  if (failure === null && demo.interrupted !== null) failure = demo.interrupted;
  const cleanFailed = cleanup.all_gone === false || cleanup.remove_error != null ||
    cleanup.error !== undefined;
  if (failure === null && cleanFailed) failure = new StepError("clean-up failed");
  reportEnd(demo, failure, total, cleanup);

  const code = failure instanceof Interrupted
    ? (failure.signal === "SIGTERM" ? EXIT.terminated : EXIT.interrupted)
    : failure !== null
    ? EXIT.failed
    : EXIT.ok;
  if (opts.json) io.stdout(jsonSummary(demo, failure, code, total, cleanup));
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

/**
 * The processes the demo starts and stops — our relay and the daemons, each a `deno run` of its
 * entry point with its task's permissions — the temp dir they live in, and the clean-up that
 * always runs: control sockets closed, daemons then the relay stopped by pid (SIGTERM, SIGKILL
 * after a grace period), the temp dir removed (or, with --keep, kept with each process's log).
 * A process that exits before we stop it aborts the run with a StepError.
 */
import type { ControlClient } from "../ctl.ts";
import { ManagedProcess, pidAlive, statusText, type StopResult } from "../testbed/processes.ts";
import { errText, StepError } from "./failure.ts";
import { LIMIT, type Name } from "./plan.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

export interface ProcInfo {
  proc: ManagedProcess;
  /** Set once we decided to stop it: its exit is then expected. */
  stopping: boolean;
  stop?: StopResult;
}

/** The relay's `{"event":"listening",…}` line. */
export interface RelayListening {
  host: string;
  port: number;
  public_key: string;
}

/** Where a daemon's control socket is, in the temp dir. */
export function socketPath(tmp: string, name: Name): string {
  return `${tmp}/${name}.sock`;
}

export class Stack {
  readonly procs = new Map<string, ProcInfo>();
  /** Control connections to close before the processes stop. */
  readonly clients: ControlClient[] = [];
  tmp: string | null = null;

  /** `abort` is aborted with a StepError when a process exits on its own. */
  constructor(readonly abort: AbortController) {}

  /** The temp dir (mode 0700) that holds the data dirs, sockets, capture and key log. */
  async makeTempDir(): Promise<string> {
    const tmp = await Deno.makeTempDir({ prefix: "toxtcp-demo-" });
    this.tmp = tmp;
    await Deno.chmod(tmp, 0o700);
    return tmp;
  }

  spawn(name: string, args: string[]): ManagedProcess {
    const proc = ManagedProcess.spawn({ name, args, env: { NO_COLOR: "1" } });
    const info: ProcInfo = { proc, stopping: false };
    this.procs.set(name, info);
    const signal = this.abort.signal;
    proc.exited.then((s) => {
      if (!info.stopping && !signal.aborted) {
        this.abort.abort(
          new StepError(`${name} (pid ${proc.pid}) exited on its own: ${statusText(s)}`),
        );
      }
    });
    return proc;
  }

  /** Our relay on a port the OS picks; resolves once it printed its listening line. */
  async startRelay(
    signal: AbortSignal,
  ): Promise<{ relay: ManagedProcess; listening: RelayListening }> {
    const relay = this.spawn("relay", [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      `${ROOT}daemon/shell/relay_main.ts`,
      "--port",
      "0",
    ]);
    const listening = JSON.parse(
      await relay.waitForLine(
        (l) => l.includes('"listening"'),
        LIMIT.relayListening,
        signal,
      ),
    ) as RelayListening;
    return { relay, listening };
  }

  /** A daemon with its data dir and control socket in `tmp`, told about `relaySpec`. */
  spawnDaemon(name: Name, tmp: string, relaySpec: string, extra: string[] = []): ManagedProcess {
    return this.spawn(name, [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-net",
      "--allow-env",
      "--v8-flags=--max-semi-space-size=1",
      `${ROOT}daemon/shell/main.ts`,
      "--data-dir",
      `${tmp}/${name}`,
      "--socket",
      socketPath(tmp, name),
      "--relay",
      relaySpec,
      "--name",
      name,
      "--log-level",
      "debug",
      ...extra,
    ]);
  }

  async stop(name: string, signal: Deno.Signal = "SIGTERM"): Promise<StopResult> {
    const info = this.procs.get(name)!;
    info.stopping = true;
    info.stop = await info.proc.stop(signal, LIMIT.stopGrace);
    return info.stop;
  }

  /** SIGKILL to every process now (a second Ctrl-C: no more grace periods). */
  forceKillAll(): void {
    for (const p of this.procs.values()) p.proc.forceKill();
  }

  /** Stops whatever still runs, closes the sockets, removes (or keeps) the temp dir. */
  async cleanup(keep: boolean): Promise<Record<string, unknown>> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
    // Daemons first (they tell friends and flush), then the relay.
    const order = [...this.procs.keys()].sort((a, b) =>
      (a === "relay" ? 1 : 0) - (b === "relay" ? 1 : 0)
    );
    const stopped: Record<string, unknown>[] = [];
    const daemons = order.filter((n) => n !== "relay");
    const stopOne = async (name: string) => {
      const info = this.procs.get(name)!;
      const r = info.stop ?? await this.stop(name);
      stopped.push({
        name,
        pid: info.proc.pid,
        code: r.code,
        signal: r.signal,
        killed: r.killed,
        exited_before: r.exitedBefore,
        alive: pidAlive(info.proc.pid),
      });
    };
    await Promise.all(daemons.map(stopOne));
    if (this.procs.has("relay")) await stopOne("relay");
    stopped.sort((a, b) => order.indexOf(a.name as string) - order.indexOf(b.name as string));

    let removed = false;
    let removeError: string | null = null;
    if (this.tmp !== null) {
      if (keep) {
        for (const [name, info] of this.procs) {
          await Deno.writeTextFile(`${this.tmp}/${name}.log`, info.proc.log, { mode: 0o600 })
            .catch(() => {});
        }
      } else {
        try {
          await Deno.remove(this.tmp, { recursive: true });
          removed = true;
        } catch (e) {
          removeError = errText(e);
        }
      }
    }
    return {
      processes: stopped,
      processes_stopped: stopped.length,
      all_gone: stopped.every((p) => p.alive === false),
      temp_dir: this.tmp,
      temp_dir_removed: removed,
      temp_dir_kept: keep && this.tmp !== null,
      remove_error: removeError,
    };
  }
}

/** The relay's counters from its `{"event":"stopped","stats":…}` line, if it printed one. */
export function stoppedStats(lines: readonly string[]): Record<string, unknown> | null {
  for (const l of lines) {
    if (!l.includes('"stopped"')) continue;
    try {
      const j = JSON.parse(l);
      if (j?.event === "stopped" && j.stats !== null && typeof j.stats === "object") return j.stats;
    } catch { /* not the line we look for */ }
  }
  return null;
}

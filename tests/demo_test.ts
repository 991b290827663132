/**
 * `deno task demo` as a user runs it: a subprocess, judged by its JSON summary and by what it
 * leaves behind (nothing: no process, no temp dir). Needs nothing but Deno.
 */
import assert from "node:assert/strict";
import { pidAlive } from "../tools/testbed/processes.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const BOUND_MS = 60_000;

interface Summary {
  ok: boolean;
  exit_code: number;
  interrupted: boolean;
  failed_step: string | null;
  error: string | null;
  temp_dir?: string;
  relay?: { pid: number; port: number; public_key: string };
  daemons?: Record<"alice" | "bob", { pid: number; public_key: string }>;
  online?: { alice_sees_bob: boolean; bob_sees_alice: boolean };
  messages?: {
    from: string;
    to: string;
    text: string;
    delivered: boolean;
    receipt_received: boolean;
  }[];
  lossless?: { count: number; sent: number; received: number; in_order: boolean };
  lossy?: { sent: number; received: number; in_order: boolean };
  offline?: { alice_sees_bob_offline_ms: number };
  capture?: {
    packets: number;
    tox_streams: number;
    keyed_streams: number;
    decrypted: number;
    messages_visible: string[];
    lines: string[];
  };
  cleanup: {
    processes: { name: string; pid: number; alive: boolean }[];
    all_gone: boolean;
    temp_dir: string | null;
    temp_dir_removed: boolean;
  };
}

/** `deno task demo --json`, bounded; `onStarted` may act on the running process. */
async function runDemo(
  onStarted?: (child: Deno.ChildProcess, stderr: () => string) => Promise<void>,
): Promise<{ code: number; summary: Summary; stderr: string; childPids: number[] }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "demo", "--json"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGINT"); // the demo's own clean-up, then the bound fails the test
    } catch { /* gone */ }
  }, BOUND_MS);
  let err = "";
  const dec = new TextDecoder();
  const errDone = (async () => {
    for await (const chunk of child.stderr) err += dec.decode(chunk, { stream: true });
  })();
  const outText = new Response(child.stdout).text();
  const childPids = new Set<number>();
  // Every process the demo starts (grandchildren of `deno task`), seen while it runs.
  const watching = (async () => {
    const start = Date.now();
    while (Date.now() - start < BOUND_MS) {
      for (const pid of await descendants(child.pid)) childPids.add(pid);
      if (await Promise.race([child.status.then(() => true), delay(20).then(() => false)])) break;
    }
  })();
  try {
    if (onStarted) await onStarted(child, () => err);
    const status = await child.status;
    await watching;
    await errDone;
    const out = await outText;
    const lastLine = out.trim().split("\n").at(-1) ?? "";
    let summary: Summary;
    try {
      summary = JSON.parse(lastLine);
    } catch {
      throw new Error(`no JSON summary on stdout (exit ${status.code}):\n${out}\n${err}`);
    }
    childPids.delete(child.pid);
    return { code: status.code, summary, stderr: err, childPids: [...childPids] };
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface ProcessRow {
  readonly pid: number;
  readonly ppid: number;
  readonly args: string;
}

/** Every process, from `ps` (reading /proc directly would need --allow-all). */
async function processTable(): Promise<ProcessRow[]> {
  const out = await new Deno.Command("ps", { args: ["-e", "-o", "pid=,ppid=,args="] }).output();
  const rows: ProcessRow[] = [];
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m) rows.push({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3] });
  }
  return rows;
}

/** Pids whose parent chain leads to `root`. */
async function descendants(root: number): Promise<number[]> {
  const table = await processTable();
  const parent = new Map(table.map((r) => [r.pid, r.ppid]));
  const out: number[] = [];
  for (const pid of parent.keys()) {
    for (let p = parent.get(pid), hops = 0; p !== undefined && p > 1 && hops < 8; hops++) {
      if (p === root) {
        out.push(pid);
        break;
      }
      p = parent.get(p);
    }
  }
  return out;
}

/** Any live process whose command line names `text` (a temp dir). */
async function processesNaming(text: string): Promise<number[]> {
  return (await processTable())
    .filter((r) => r.args.includes(text) && !r.args.startsWith("ps ") && pidAlive(r.pid))
    .map((r) => r.pid);
}

async function assertNothingLeft(r: { summary: Summary; childPids: number[] }): Promise<void> {
  const s = r.summary;
  assert.ok(s.temp_dir, "the summary names the temp dir");
  await assert.rejects(Deno.stat(s.temp_dir!), Deno.errors.NotFound, "the temp dir is gone");
  assert.equal(s.cleanup.temp_dir_removed, true);
  assert.equal(s.cleanup.all_gone, true);
  const reported = s.cleanup.processes.map((p) => p.pid);
  for (const pid of [...reported, ...r.childPids]) {
    assert.equal(pidAlive(pid), false, `pid ${pid} is still running`);
  }
  assert.deepEqual(await processesNaming(s.temp_dir!), [], "no process names the temp dir");
}

Deno.test({
  name: "demo: relay + two daemons on loopback, friends, messages, custom packets, capture",
  fn: async () => {
    const r = await runDemo();
    const s = r.summary;
    assert.equal(r.code, 0, `exit ${r.code}: ${s.failed_step}: ${s.error}\n${r.stderr}`);
    assert.equal(s.ok, true);

    assert.ok(s.relay && s.daemons);
    assert.deepEqual(
      new Set(s.cleanup.processes.map((p) => p.pid)),
      new Set([s.relay.pid, s.daemons.alice.pid, s.daemons.bob.pid]),
      "the relay and both daemons were stopped",
    );

    assert.equal(s.online?.alice_sees_bob, true, "alice sees bob online");
    assert.equal(s.online?.bob_sees_alice, true, "bob sees alice online");
    assert.ok(s.messages && s.messages.length >= 2);
    assert.ok(
      s.messages.some((m) => m.from === "alice") && s.messages.some((m) => m.from === "bob"),
    );
    for (const m of s.messages) {
      assert.equal(m.delivered, true, `${JSON.stringify(m.text)} delivered`);
      assert.equal(m.receipt_received, true, `${JSON.stringify(m.text)} receipt`);
    }
    assert.ok(s.lossless);
    assert.equal(s.lossless.sent, s.lossless.count);
    assert.equal(s.lossless.received, s.lossless.count);
    assert.equal(s.lossless.in_order, true);
    assert.ok(s.lossy);
    // Lossy is now or never; on loopback all of them arrive, in order.
    assert.equal(s.lossy.received, s.lossy.sent);
    assert.equal(s.lossy.in_order, true);
    assert.ok(s.offline, "alice saw bob go offline");

    const c = s.capture;
    assert.ok(c);
    assert.ok(c.packets > 0 && c.tox_streams >= 1 && c.keyed_streams >= 1);
    assert.ok(c.decrypted > 0);
    assert.deepEqual([...c.messages_visible].sort(), s.messages.map((m) => m.text).sort());
    for (const m of s.messages) {
      assert.ok(
        c.lines.some((l) => l.includes(JSON.stringify(m.text))),
        `a decoded line shows ${JSON.stringify(m.text)}`,
      );
    }
    // The narrative went to stderr, the JSON alone to stdout.
    assert.match(r.stderr, /alice and bob are online to each other/);
    assert.match(r.stderr, /cleaned up: 3 processes stopped, temp dir removed/);

    await assertNothingLeft(r);
  },
});

Deno.test({
  name: "demo: Ctrl-C (SIGINT) mid-run stops everything, removes the temp dir, exits 130",
  fn: async () => {
    const r = await runDemo(async (child, stderr) => {
      // Once both daemons answer: the relay and both daemons are running.
      const start = Date.now();
      let exited = false;
      child.status.then(() => (exited = true));
      while (!/alice up/.test(stderr())) {
        if (exited || Date.now() - start > 30_000) {
          throw new Error(`the demo did not get its daemons up:\n${stderr()}`);
        }
        await delay(20);
      }
      child.kill("SIGINT");
    });
    const s = r.summary;
    assert.equal(r.code, 130, r.stderr);
    assert.equal(s.ok, false);
    assert.equal(s.interrupted, true);
    assert.match(r.stderr, /interrupted \(SIGINT\)/);
    assert.equal(s.cleanup.processes.length, 3, "relay, alice and bob were stopped");
    await assertNothingLeft(r);
  },
});

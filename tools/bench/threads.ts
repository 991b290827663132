/**
 * CPU time per thread of this process, from /proc (read through `sh`, since Deno asks for
 * --allow-all to read /proc itself and the bench keeps its permissions narrow). Deno names a
 * Worker's thread `worker-N` in spawn order; V8's own threads (garbage collection, compiling)
 * are `V8 DefaultWorke`; the main thread is `deno`.
 */

/** Clock ticks (1/100 s) of user + system time per thread, keyed `tid name`. */
export async function threadTicks(): Promise<Map<string, number>> {
  const script = "for t in /proc/$PPID/task/*; do " +
    'n=$(cat "$t/comm" 2>/dev/null) || continue; ' +
    's=$(cat "$t/stat" 2>/dev/null) || continue; ' +
    'echo "${t##*/}|$n|${s##*) }"; done';
  const out = await new Deno.Command("sh", { args: ["-c", script] }).output();
  const ticks = new Map<string, number>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const [tid, name, rest] = line.split("|");
    if (rest === undefined) continue;
    const f = rest.split(" ");
    ticks.set(`${tid} ${name}`, Number(f[11]) + Number(f[12]));
  }
  return ticks;
}

/**
 * µs of CPU per packet between two samples: each Worker thread that worked, V8's threads
 * summed, the main thread, and the total.
 */
export function cpuPerPacket(
  before: Map<string, number>,
  after: Map<string, number>,
  packets: number,
): Record<string, number> {
  const perPacket = (ticks: number) => Math.round((ticks * 10_000) / Math.max(1, packets));
  const out: Record<string, number> = {};
  let v8 = 0;
  let total = 0;
  const workers: [string, number][] = [];
  for (const [key, t] of after) {
    const d = t - (before.get(key) ?? 0);
    if (d <= 0) continue;
    total += d;
    const name = key.slice(key.indexOf(" ") + 1);
    if (name.startsWith("worker-")) workers.push([name, d]);
    else if (name.startsWith("V8")) v8 += d;
    else out[`${name}_us_per_pkt`] = (out[`${name}_us_per_pkt`] ?? 0) + perPacket(d);
  }
  workers.sort((x, y) => y[1] - x[1]);
  workers.forEach(([_, d], i) => (out[`worker_${i + 1}_us_per_pkt`] = perPacket(d)));
  out.v8_threads_us_per_pkt = perPacket(v8);
  out.total_us_per_pkt = perPacket(total);
  return out;
}

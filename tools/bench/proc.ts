/**
 * What /proc says of another process: resident memory and CPU time. Read with `cat`, because
 * Deno reads /proc only with --allow-all, and the bench keeps its permissions narrow.
 */

async function procText(pid: number, file: string): Promise<string> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/${file}`] }).output();
  return new TextDecoder().decode(out.stdout);
}

/** VmRSS in MB (NaN if the process is gone). */
export async function rssMb(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await procText(pid, "status"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** utime + stime of the whole process (every thread), in 1/100 s. */
export async function cpuTicks(pid: number): Promise<number> {
  const fields = (await procText(pid, "stat")).split(") ")[1].split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

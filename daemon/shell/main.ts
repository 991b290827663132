/**
 * `deno task daemon`: start, run until SIGINT/SIGTERM, stop cleanly. Start-up problems
 * (bad flags, a locked or corrupt data directory, a live socket) are one clear message and
 * exit code 1; --help prints the usage.
 */
import { Daemon, StartError } from "./daemon.ts";
import { USAGE } from "./config.ts";

async function main(): Promise<number> {
  let daemon: Daemon | "help";
  try {
    daemon = await Daemon.start(Deno.args, (name) => Deno.env.get(name));
  } catch (e) {
    if (e instanceof StartError) {
      console.error(`toxtcp: ${e.message}`);
      return 1;
    }
    throw e;
  }
  if (daemon === "help") {
    console.log(USAGE);
    return 0;
  }
  await daemon.stopped;
  return 0;
}

if (import.meta.main) Deno.exit(await main());

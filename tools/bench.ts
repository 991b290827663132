/**
 * deno task bench [--quick] [--only SECTIONS] [--json FILE] [--readme] [--from FILE]
 *
 * SECTIONS: relay, coordinator, friend, relay_server, decode, onion, memory, scale (comma-separated).
 *
 * Runs the benchmark sections (tools/bench/README.md says what each measures), prints each as a
 * table, and one `JSON {...}` line with everything. `--json FILE` also writes that document;
 * `--readme` puts the headline figures into README.md's benchmark table (between its
 * `bench:begin` / `bench:end` markers) and keeps the whole run in tools/bench/last_run.json;
 * `--from FILE` renders a saved run instead of measuring.
 */
import { parseArgs } from "node:util";
import { benchCoordinator } from "./bench/coordinator.ts";
import { benchDecode } from "./bench/decode.ts";
import { benchFriend } from "./bench/friend.ts";
import { benchMemory } from "./bench/memory.ts";
import { benchScale } from "./bench/scale.ts";
import { benchOnion } from "./bench/onion.ts";
import { benchRelay } from "./bench/relay.ts";
import { benchRelayServer } from "./bench/relay_server.ts";
import {
  type BenchDoc,
  printTable,
  replaceReadmeBlock,
  type Row,
  SECTION_TITLES,
  type SectionName,
  SECTIONS,
} from "./bench/report.ts";

const RUNNERS: Record<SectionName, (quick: boolean) => Promise<{ rows: Row[]; summary: Row }>> = {
  relay: benchRelay,
  coordinator: benchCoordinator,
  friend: benchFriend,
  relay_server: benchRelayServer,
  decode: benchDecode,
  onion: benchOnion,
  memory: benchMemory,
  scale: benchScale,
};

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const LAST_RUN = `${ROOT}tools/bench/last_run.json`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      json: { type: "string" },
      quick: { type: "boolean" },
      only: { type: "string" },
      readme: { type: "boolean" },
      from: { type: "string" },
    },
  });
  const only = values.only?.split(",") ?? null;
  const unknown = only?.filter((s) => !(SECTIONS as readonly string[]).includes(s)) ?? [];
  if (unknown.length > 0) {
    console.error(
      `bench: unknown section ${unknown.join(", ")} (sections: ${SECTIONS.join(", ")})`,
    );
    Deno.exit(2);
  }
  let doc: BenchDoc;
  if (values.from !== undefined) {
    doc = JSON.parse(await Deno.readTextFile(values.from));
  } else {
    const quick = values.quick ?? false;
    doc = { date: new Date().toISOString(), quick };
    for (const name of SECTIONS) {
      if (only !== null && !only.includes(name)) continue;
      console.log(`\n== ${name} (${SECTION_TITLES[name]}) ==`);
      const result = await RUNNERS[name](quick);
      printTable(result.rows);
      console.log();
      printTable(Object.entries(result.summary).map(([k, v]) => ({ measure: k, value: v })));
      doc[name] = result;
    }
    console.log("\nJSON " + JSON.stringify(doc));
  }
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(doc, null, 2) + "\n");
  if (values.readme) {
    // A partial run refreshes its own sections and keeps the others' last figures.
    let last: BenchDoc = { date: doc.date };
    try {
      last = JSON.parse(await Deno.readTextFile(LAST_RUN));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const merged: BenchDoc = { ...last, ...doc };
    if (values.from === undefined) {
      await Deno.writeTextFile(LAST_RUN, JSON.stringify(merged, null, 2) + "\n");
    }
    const readme = `${ROOT}README.md`;
    await Deno.writeTextFile(readme, replaceReadmeBlock(await Deno.readTextFile(readme), merged));
    console.log(`bench: README.md's benchmark table written from ${values.from ?? LAST_RUN}`);
  }
}

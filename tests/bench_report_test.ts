/** The README's benchmark table is rendered from a bench run's JSON, never typed by hand. */
import assert from "node:assert/strict";
import {
  type BenchDoc,
  README_BEGIN,
  README_END,
  renderReadmeTable,
  replaceReadmeBlock,
} from "../tools/bench/report.ts";

const doc: BenchDoc = {
  date: "2026-12-07T10:00:00.000Z",
  relay: { rows: [], summary: { ping_rtt_p50_ms: 30.25, rss_per_relay_worker_mb: null } },
  onion: { rows: [], summary: { "ours<->ours_mutual_ms": 677, note: "a|b" } },
  friend: {
    rows: [],
    summary: { ours_100B_cpu_worker_1_us_per_pkt: 30, ours_100B_cpu_total_us_per_pkt: 160 },
  },
};

Deno.test("bench report: one row per summary figure, sections in bench order", () => {
  const table = renderReadmeTable(doc);
  assert.match(table, /from tools\/bench\/last_run\.json \(2026-12-07\)/);
  const rows = table.split("\n").filter((l) => l.startsWith("| ") && !/^\| (section|-)/.test(l));
  assert.deepEqual(rows, [
    "| relay   | ping_rtt_p50_ms                | 30.25 |",
    "| relay   | rss_per_relay_worker_mb        | –     |",
    "| friend  | ours_100B_cpu_total_us_per_pkt | 160   |",
    "| onion   | ours<->ours_mutual_ms          | 677   |",
    "| onion   | note                           | a\\|b  |",
  ]);
  assert.match(renderReadmeTable({ ...doc, quick: true }), /\(2026-12-07, --quick\)/);
});

Deno.test("bench report: only the block between the markers is replaced", () => {
  const readme = `# t\n\nbefore\n${README_BEGIN}\nold figures\n${README_END}\nafter\n`;
  const out = replaceReadmeBlock(readme, doc);
  assert.ok(out.startsWith(`# t\n\nbefore\n${README_BEGIN}\n\n_Generated`));
  assert.ok(
    out.endsWith(`| onion   | note                           | a\\|b  |\n\n${README_END}\nafter\n`),
  );
  assert.ok(!out.includes("old figures"));
  assert.equal(replaceReadmeBlock(out, doc), out, "rendering twice changes nothing");
});

Deno.test("bench report: missing or swapped markers are an error, not a damaged README", () => {
  assert.throws(() => replaceReadmeBlock("no markers", doc), /has no "<!-- bench:begin -->"/);
  assert.throws(
    () => replaceReadmeBlock(`${README_END}\n${README_BEGIN}\n`, doc),
    /bench:begin/,
  );
});

Deno.test("bench report: the table is left alone by deno fmt (the README stays fmt-clean)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/README.md`;
    await Deno.writeTextFile(
      file,
      replaceReadmeBlock(`# t\n\n${README_BEGIN}\n${README_END}\n`, { ...doc, quick: true }),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--check", "--line-width", "100", file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(
      out.code,
      0,
      new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

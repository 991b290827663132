/**
 * The layout's rules, read from the import graph of the tree (daemon/README.md states them):
 *
 * - daemon/core/ is the sans-I/O protocol core: it imports only the core (and the crypto
 *   library), uses no Deno.*, timers, Workers, sockets, clock or console, and its layers import
 *   one another only downwards, in the order of LAYERS below.
 * - workers/ imports the core and workers/ only; the Worker message schema imports the core's
 *   types, never the other way.
 * - daemon/shell/ (the process) imports the core, workers/ and itself, never tools/ or tests/.
 * - tools/ never imports tests/; its top level holds only the commands users run.
 * - There is no import circle anywhere.
 *
 * Each broken rule is reported as `file:line: [rule] what and why`.
 */
import assert from "node:assert/strict";
import {
  checkRules,
  findCycles,
  formatViolations,
  parseSource,
  type Rules,
  scan,
  type SourceFile,
} from "./support/import_graph.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

/**
 * The core's layers, bottom up, each with the layers it may import. A reader of c-toxcore finds
 * the same order: TCP_common under TCP_client/TCP_server, TCP_connection over TCP_client,
 * friend_connection over net_crypto and TCP_connection, Messenger over everything; the capture
 * decoder reads every layer's packets and so sits on top.
 */
export const LAYERS: Rules["coreLayers"] = {
  common: [],
  tcp_common: ["common"],
  relay_client: ["common", "tcp_common"],
  relay_server: ["common", "tcp_common"],
  net_crypto: ["common"],
  onion: ["common"],
  tcp_connections: ["common", "tcp_common", "relay_client"],
  friend_connection: ["common", "net_crypto", "tcp_connections"],
  messenger: ["common", "net_crypto", "tcp_connections", "friend_connection", "onion"],
  capture: ["common", "tcp_common", "relay_client", "net_crypto", "onion", "friend_connection"],
};

const RULES: Rules = {
  coreLayers: LAYERS,
  coreExternal: /^(npm:)?@noble\/(ciphers|curves|hashes)(@[^/]+)?\//,
  randomDoors: {
    "daemon/core/common/crypto.ts":
      "systemRandom: the OS source that the shells inject; core code takes RandomBytes",
  },
};

function readTree(): SourceFile[] {
  const files: SourceFile[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) walk(path);
      else if (e.isFile && path.endsWith(".ts")) {
        files.push(parseSource(path, Deno.readTextFileSync(`${ROOT}${path}`)));
      }
    }
  };
  for (const top of ["daemon", "workers", "tools", "tests"]) walk(top);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

const src = (path: string, text: string) => parseSource(path, text);

// ---- the tree itself -------------------------------------------------------------------------

Deno.test("architecture: the tree keeps every layering rule", () => {
  const files = readTree();
  assert.ok(files.length > 100, `read only ${files.length} files`);
  assert.ok(files.some((f) => f.path.startsWith("daemon/core/")), "no core files found");
  const violations = checkRules(files, RULES);
  assert.equal(violations.length, 0, `\n${formatViolations(violations)}\n`);
});

Deno.test("architecture: every core layer has a README naming what it matches in c-toxcore", () => {
  for (const layer of Object.keys(LAYERS)) {
    const dir = `${ROOT}daemon/core/${layer}`;
    assert.ok(Deno.statSync(dir).isDirectory, `daemon/core/${layer}/ is missing`);
    let readme: string;
    try {
      readme = Deno.readTextFileSync(`${dir}/README.md`);
    } catch {
      throw new assert.AssertionError({ message: `daemon/core/${layer}/README.md is missing` });
    }
    assert.match(
      readme,
      /c-toxcore|toxcore/,
      `daemon/core/${layer}/README.md names no c-toxcore file`,
    );
  }
  for (const e of Deno.readDirSync(`${ROOT}daemon/core`)) {
    if (e.isDirectory) {
      assert.ok(e.name in LAYERS, `daemon/core/${e.name}/ is not in the layer table`);
    }
  }
});

Deno.test("architecture: the top of tools/ holds only commands, each run by a deno task", () => {
  const tasks = JSON.stringify(JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks);
  for (const e of Deno.readDirSync(`${ROOT}tools`)) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    const text = Deno.readTextFileSync(`${ROOT}tools/${e.name}`);
    assert.match(
      text,
      /import\.meta\.main/,
      `tools/${e.name} is no command (no import.meta.main): put it in a subfolder`,
    );
    assert.ok(tasks.includes(`tools/${e.name}`), `tools/${e.name} is run by no deno task`);
  }
});

// ---- the checker, on small made-up trees (so that the test above can fail) -------------------

Deno.test("architecture checker: a core file importing the Worker schema is named, with its line", () => {
  const files = [
    src("workers/messages.ts", `export type X = number;\n`),
    src(
      "daemon/core/tcp_connections/tcp_connections.ts",
      `import type { A } from "../common/codec.ts";\nimport type { X } from "../../../workers/messages.ts";\n`,
    ),
    src("daemon/core/common/codec.ts", `export type A = 1;\n`),
  ];
  const v = checkRules(files, RULES);
  assert.equal(v.length, 1, formatViolations(v));
  assert.equal(v[0].file, "daemon/core/tcp_connections/tcp_connections.ts");
  assert.equal(v[0].line, 2);
  assert.equal(v[0].rule, "core -> workers");
  assert.match(
    formatViolations(v),
    /workers\/messages\.ts.*the sans-I\/O core imports only the core/,
  );
});

Deno.test("architecture checker: a core layer importing one above it breaks the layer order", () => {
  const files = [
    src("daemon/core/net_crypto/a.ts", `import { b } from "../messenger/b.ts";\n`),
    src("daemon/core/messenger/b.ts", `export const b = 1;\n`),
    src("daemon/core/nowhere/c.ts", `export const c = 1;\n`),
  ];
  const v = checkRules(files, RULES);
  assert.deepEqual(v.map((x) => x.rule).sort(), ["core layer order", "core layer placed"]);
  assert.match(formatViolations(v), /layer net_crypto may import common, not messenger/);
  assert.match(formatViolations(v), /daemon\/core\/nowhere\/ is not in the layer order/);
});

Deno.test("architecture checker: I/O, timers, clocks and randomness in the core, not in comments", () => {
  const files = [
    src(
      "daemon/core/common/x.ts",
      [
        `// Deno.connect and setTimeout in a comment are fine`,
        `const s = "Deno.exit(1) in a string is fine";`,
        `/* new Worker(u) */ const re = /Date.now()/;`,
        `export const t = () => setTimeout(() => {}, 1);`,
        "export const u = `${Deno.pid}`;",
        `export const n = Date.now();`,
        `export const r = Math.random();`,
        `export const w = new Worker(new URL("./w.ts", import.meta.url));`,
      ].join("\n"),
    ),
    src(
      "daemon/core/common/crypto.ts",
      `export const r = crypto.getRandomValues(new Uint8Array(1));`,
    ),
    src("daemon/shell/y.ts", `Deno.exit(0); setTimeout(() => {}, 1);`),
  ];
  const v = checkRules(files, RULES).filter((x) => x.rule === "core is sans-I/O");
  assert.deepEqual(v.map((x) => x.line), [4, 5, 6, 7, 8, 8], formatViolations(v));
  assert.ok(v.every((x) => x.file === "daemon/core/common/x.ts"));
});

Deno.test("architecture checker: Workers, shell, tools and outside modules", () => {
  const files = [
    src("workers/w.ts", `import { a } from "../daemon/shell/log.ts";\nimport "node:fs";\n`),
    src("daemon/shell/log.ts", `import { b } from "../../tools/ctl.ts";\nexport const a = 1;\n`),
    src("tools/ctl.ts", `import { c } from "../tests/support/x.ts";\nexport const b = 1;\n`),
    src("tests/support/x.ts", `export const c = 1;\n`),
    src("daemon/core/common/k.ts", `import { x25519 } from "@noble/curves/ed25519.js";\n`),
    src("daemon/core/common/m.ts", `import { parseArgs } from "node:util";\n`),
  ];
  const rules = checkRules(files, RULES).map((x) => `${x.file} ${x.rule}`).sort();
  assert.deepEqual(rules, [
    "daemon/core/common/m.ts core imports",
    "daemon/shell/log.ts shell -> tools",
    "tools/ctl.ts tools -> tests",
    "workers/w.ts workers -> shell",
    "workers/w.ts workers imports",
  ]);
});

Deno.test("architecture checker: a circle is found and shown as a path, a Worker URL counts", () => {
  const files = [
    src("workers/a.ts", `import { b } from "./b.ts";\n`),
    src("workers/b.ts", `export { c } from "./c.ts";\n`),
    src("workers/c.ts", `const u = new URL("./a.ts", import.meta.url);\n`),
    src("workers/d.ts", `import type { a } from "./a.ts";\n`),
  ];
  assert.deepEqual(findCycles(files), [["workers/a.ts", "workers/b.ts", "workers/c.ts"]]);
  const v = checkRules(files, RULES);
  assert.equal(v.length, 1);
  assert.match(
    v[0].message,
    /import circle: workers\/a\.ts -> workers\/b\.ts -> workers\/c\.ts -> workers\/a\.ts/,
  );
});

Deno.test("architecture checker: imports across lines, type-only, dynamic, and unresolved", () => {
  const f = src(
    "tools/t.ts",
    [
      `import {`,
      `  a,`,
      `  type B,`,
      `} from "./x.ts";`,
      `export type { C } from "../daemon/core/common/y.ts";`,
      `const m = await import("./z.ts");`,
      `// import { gone } from "./commented.ts";`,
      'const s = `import { q } from "./in_template.ts"`;',
    ].join("\n"),
  );
  assert.deepEqual(
    f.imports.map((r) => [r.line, r.target]),
    [[4, "tools/x.ts"], [5, "daemon/core/common/y.ts"], [6, "tools/z.ts"]],
  );
  const v = checkRules([f], RULES);
  assert.deepEqual(v.map((x) => x.rule), ["imports resolve", "imports resolve", "imports resolve"]);
});

Deno.test("architecture scanner: strings, templates and regular expressions keep their lines", () => {
  const text = "const a = `x${ {b: '}'}.b }y`; // c\nconst r = /[/\"]/g; Deno.x\n'\\'' + Deno.y";
  const { code } = scan(text);
  assert.equal(code.length, text.length);
  assert.equal(code.split("\n").length, 3);
  assert.ok(!code.includes("// c"));
  assert.match(code.split("\n")[1], /Deno\.x/);
  assert.match(code.split("\n")[2], /Deno\.y/);
  assert.ok(!/"\]/.test(code.split("\n")[1]), "a regex body is blanked");
});

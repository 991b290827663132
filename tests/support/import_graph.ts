/**
 * The project's import graph read from source text, and the layering rules checked against it
 * (tests/architecture_test.ts). A plain parse, not Deno's module graph: it must also see what
 * the module graph does not, a Worker spawned by URL, and it must say which line broke a rule.
 *
 * The scanner blanks comments and string contents (keeping line breaks) so that a word in a
 * comment or a string is never taken for code, and takes import specifiers from the text with
 * comments removed but strings kept.
 */

/** One reference from a file to another module: an import, an export-from, or a Worker URL. */
export interface ImportRef {
  /** The specifier as written. */
  readonly specifier: string;
  /** 1-based line of the reference. */
  readonly line: number;
  /** Resolved repository path for relative specifiers, else null (npm:, node:, bare names). */
  readonly target: string | null;
}

export interface SourceFile {
  /** Repository-relative path with forward slashes, e.g. "daemon/core/common/crypto.ts". */
  readonly path: string;
  readonly imports: readonly ImportRef[];
  /** The source with comments and string contents blanked, line breaks kept. */
  readonly code: string;
}

export interface Violation {
  readonly rule: string;
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

/** Where a file sits: the protocol core, the process shell, a Worker shell, a tool or a test. */
export type Part = "core" | "shell" | "workers" | "tools" | "tests" | "other";

export function partOf(path: string): Part {
  if (path.startsWith("daemon/core/")) return "core";
  if (path.startsWith("daemon/shell/")) return "shell";
  if (path.startsWith("workers/")) return "workers";
  if (path.startsWith("tools/")) return "tools";
  if (path.startsWith("tests/")) return "tests";
  return "other";
}

/** The core layer of a core file: the folder under daemon/core/. */
export function coreLayerOf(path: string): string | null {
  const m = /^daemon\/core\/([^/]+)\//.exec(path);
  return m ? m[1] : null;
}

// ---------------------------------------------------------------------------------------------
// Scanning

/**
 * Two views of a source text, each the same length with the same line breaks:
 * `noComments` (comments blanked) and `code` (comments and string contents blanked).
 */
export function scan(text: string): { noComments: string; code: string } {
  const nc: string[] = [];
  const code: string[] = [];
  const blank = (ch: string) => (ch === "\n" ? "\n" : " ");
  let i = 0;
  // Template literal nesting: each entry counts the braces open inside one `${ … }`.
  const templates: number[] = [];
  let lastSignificant = "";
  const regexMayFollow = () =>
    lastSignificant === "" || "(,=:[!&|?{};+-*%<>~^".includes(lastSignificant) ||
    /\b(return|typeof|case|do|else|in|of|void|yield|await)$/.test(nc.join("").slice(-8));
  const push = (ch: string, keepInNc: boolean, keepInCode: boolean) => {
    nc.push(keepInNc ? ch : blank(ch));
    code.push(keepInCode ? ch : blank(ch));
  };
  const readString = (quote: string) => {
    push(text[i], true, true); // the opening quote stays, so `"…"` still reads as a string
    i++;
    while (i < text.length) {
      const ch = text[i];
      if (ch === "\\" && i + 1 < text.length) {
        push(ch, true, false);
        push(text[i + 1], true, false);
        i += 2;
        continue;
      }
      if (ch === quote) {
        push(ch, true, true);
        i++;
        return;
      }
      if (quote === "`" && ch === "$" && text[i + 1] === "{") {
        push(ch, true, true);
        push("{", true, true);
        i += 2;
        templates.push(0);
        return; // back to code until the matching "}"
      }
      if (ch === "\n" && quote !== "`") {
        return; // an unterminated string ends at the line (the compiler would have said so)
      }
      push(ch, true, false);
      i++;
    }
  };
  while (i < text.length) {
    const ch = text[i];
    const next = text[i + 1];
    if (ch === "/" && next === "/") {
      while (i < text.length && text[i] !== "\n") push(text[i++], false, false);
      continue;
    }
    if (ch === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? text.length : end + 2;
      while (i < stop) push(text[i++], false, false);
      continue;
    }
    if (ch === '"' || ch === "'" || ch === "`") {
      readString(ch);
      lastSignificant = "a";
      continue;
    }
    if (ch === "/" && regexMayFollow()) {
      // A regular expression literal: its body is blanked like a string's.
      push(ch, true, true);
      i++;
      let inClass = false;
      while (i < text.length && text[i] !== "\n") {
        const c = text[i];
        if (c === "\\") {
          push(c, true, false);
          if (i + 1 < text.length) push(text[i + 1], true, false);
          i += 2;
          continue;
        }
        if (c === "[") inClass = true;
        else if (c === "]") inClass = false;
        else if (c === "/" && !inClass) break;
        push(c, true, false);
        i++;
      }
      if (i < text.length && text[i] === "/") push(text[i++], true, true);
      lastSignificant = "a";
      continue;
    }
    if (templates.length > 0) {
      if (ch === "{") templates[templates.length - 1]++;
      else if (ch === "}") {
        if (templates[templates.length - 1] === 0) {
          // The end of a `${ … }`: the template literal resumes.
          templates.pop();
          push(ch, true, true);
          i++;
          readTemplateTail();
          continue;
        }
        templates[templates.length - 1]--;
      }
    }
    push(ch, true, true);
    if (!/\s/.test(ch)) lastSignificant = ch;
    i++;
  }
  return { noComments: nc.join(""), code: code.join("") };

  function readTemplateTail(): void {
    while (i < text.length) {
      const ch = text[i];
      if (ch === "\\" && i + 1 < text.length) {
        push(ch, true, false);
        push(text[i + 1], true, false);
        i += 2;
        continue;
      }
      if (ch === "`") {
        push(ch, true, true);
        i++;
        lastSignificant = "a";
        return;
      }
      if (ch === "$" && text[i + 1] === "{") {
        push(ch, true, true);
        push("{", true, true);
        i += 2;
        templates.push(0);
        return;
      }
      push(ch, true, false);
      i++;
    }
  }
}

const IMPORT_PATTERNS: readonly RegExp[] = [
  // import … from "x" / export … from "x" (also across lines, with type-only forms)
  /(?:^|[\n;}])\s*(?:import|export)\b[^;"'`]*?\bfrom\s*(["'])([^"'\n]+?)\1/g,
  // import "x" (for its effects)
  /(?:^|[\n;}])\s*import\s*(["'])([^"'\n]+?)\1/g,
  // import("x")
  /\bimport\s*\(\s*(["'])([^"'\n]+?)\1\s*\)/g,
  // new URL("x", import.meta.url): a Worker's module or a file next to this one
  /\bnew\s+URL\(\s*(["'])([^"'\n]+?)\1\s*,\s*import\.meta\.url\s*\)/g,
];

function lineAt(text: string, index: number): number {
  let n = 1;
  for (let k = 0; k < index; k++) if (text.charCodeAt(k) === 10) n++;
  return n;
}

/** Normalises "a/b/../c/./d" to "a/c/d"; null when it climbs out of the repository. */
export function joinPath(dir: string, rel: string): string | null {
  const out = dir === "" ? [] : dir.split("/");
  for (const part of rel.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(part);
  }
  return out.join("/");
}

/** Parses one file's references. `path` is repository-relative. */
export function parseSource(path: string, text: string): SourceFile {
  const { noComments, code } = scan(text);
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  const refs: ImportRef[] = [];
  const seen = new Set<string>();
  // Matched on the code view (string contents blanked), so that an import written inside a
  // string is no import; the specifier itself is then read at the same place with strings kept.
  for (const re of IMPORT_PATTERNS) {
    re.lastIndex = 0;
    for (let m = re.exec(code); m !== null; m = re.exec(code)) {
      const at = m.index + m[0].lastIndexOf(m[2]);
      const specifier = noComments.slice(at, at + m[2].length);
      const key = `${at}:${specifier}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const relative = specifier.startsWith("./") || specifier.startsWith("../");
      refs.push({
        specifier,
        line: lineAt(noComments, at),
        target: relative ? joinPath(dir, specifier) : null,
      });
    }
  }
  refs.sort((a, b) => a.line - b.line);
  return { path, imports: refs, code };
}

// ---------------------------------------------------------------------------------------------
// Rules

export interface Rules {
  /**
   * For each core layer (folder under daemon/core/), the layers it may import besides itself.
   * A core folder missing here is a violation: a new layer must be placed in the order.
   */
  readonly coreLayers: Readonly<Record<string, readonly string[]>>;
  /** Non-relative specifiers the core and the Workers may use (the chosen crypto library). */
  readonly coreExternal: RegExp;
  /** Core files allowed to read the OS random source, each with the reason. */
  readonly randomDoors: Readonly<Record<string, string>>;
}

/** What a part may import, by part. Tests may import anything. */
const MAY_IMPORT: Record<Part, readonly Part[]> = {
  core: ["core"],
  workers: ["core", "workers"],
  shell: ["core", "workers", "shell"],
  tools: ["core", "workers", "shell", "tools"],
  tests: ["core", "workers", "shell", "tools", "tests"],
  other: ["core", "workers", "shell", "tools", "tests", "other"],
};

const WHY_NOT: Record<Part, string> = {
  core: "the sans-I/O core imports only the core",
  workers: "a Worker shell imports the core and workers/ only",
  shell: "the process shell never imports tools/ or tests/",
  tools: "tools/ never imports tests/ (shared rigs live in tools/testbed/)",
  tests: "",
  other: "",
};

/** Ambient I/O, clocks and randomness the core must not touch; each with what to do instead. */
const CORE_FORBIDDEN: readonly { re: RegExp; what: string; random?: boolean }[] = [
  { re: /\bDeno\s*\./, what: "Deno.* (the shell does I/O; the core takes bytes in)" },
  {
    re: /\b(setTimeout|setInterval|clearTimeout|clearInterval|queueMicrotask)\b/,
    what: "a timer (the core returns its next deadline; the shell sets the timer)",
  },
  {
    re: /\bnew\s+Worker\b|\bMessageChannel\b|\bBroadcastChannel\b/,
    what: "Workers or message channels (they belong in workers/)",
  },
  {
    re: /\b(fetch|WebSocket|XMLHttpRequest|EventSource)\s*\(|\bnew\s+WebSocket\b/,
    what: "a socket or network request (the shell owns sockets)",
  },
  {
    re: /\bDate\.now\s*\(|\bperformance\.now\s*\(|\bnew\s+Date\s*\(\s*\)/,
    what: "the clock (time is passed in as `now`)",
  },
  {
    re: /\bMath\.random\b|\bcrypto\.getRandomValues\b|\bcrypto\.randomUUID\b/,
    what: "the OS random source (randomness is injected as RandomBytes)",
    random: true,
  },
  { re: /\bconsole\s*\./, what: "console output (the core reports events; the shell logs)" },
  { re: /\bimport\.meta\b/, what: "import.meta (the core knows no files or URLs)" },
];

/** Every rule broken by `files`. */
export function checkRules(files: readonly SourceFile[], rules: Rules): Violation[] {
  const out: Violation[] = [];
  const known = new Set(files.map((f) => f.path));
  for (const f of files) {
    const part = partOf(f.path);
    const layer = coreLayerOf(f.path);
    if (part === "core" && layer !== null && !(layer in rules.coreLayers)) {
      out.push({
        rule: "core layer placed",
        file: f.path,
        line: 1,
        message: `daemon/core/${layer}/ is not in the layer order: add it to the architecture ` +
          `test's layer table with the layers it may import`,
      });
    }
    for (const ref of f.imports) {
      if (ref.target === null) {
        if ((part === "core" || part === "workers") && !rules.coreExternal.test(ref.specifier)) {
          out.push({
            rule: `${part} imports`,
            file: f.path,
            line: ref.line,
            message: `imports "${ref.specifier}": ${
              part === "core" ? "the core" : "a Worker shell"
            } may use no module outside the project but the crypto library`,
          });
        }
        continue;
      }
      if (!known.has(ref.target) && ref.target.endsWith(".ts")) {
        out.push({
          rule: "imports resolve",
          file: f.path,
          line: ref.line,
          message: `imports "${ref.specifier}" (${ref.target}), which is not a file of the tree`,
        });
        continue;
      }
      if (!ref.target.endsWith(".ts")) continue; // a data file next to the module (tox_peer.c)
      const toPart = partOf(ref.target);
      if (!MAY_IMPORT[part].includes(toPart)) {
        out.push({
          rule: `${part} -> ${toPart}`,
          file: f.path,
          line: ref.line,
          message: `imports "${ref.specifier}" (${ref.target}): ${WHY_NOT[part]}`,
        });
        continue;
      }
      if (part === "core" && layer !== null) {
        const toLayer = coreLayerOf(ref.target);
        const allowed = rules.coreLayers[layer] ?? [];
        if (toLayer !== null && toLayer !== layer && !allowed.includes(toLayer)) {
          out.push({
            rule: "core layer order",
            file: f.path,
            line: ref.line,
            message: `imports "${ref.specifier}" (${ref.target}): layer ${layer} may import ` +
              `${allowed.length === 0 ? "no other layer" : allowed.join(", ")}, not ${toLayer}`,
          });
        }
      }
    }
    if (part === "core") {
      const lines = f.code.split("\n");
      for (let n = 0; n < lines.length; n++) {
        for (const bad of CORE_FORBIDDEN) {
          if (!bad.re.test(lines[n])) continue;
          if (bad.random && f.path in rules.randomDoors) continue;
          out.push({
            rule: "core is sans-I/O",
            file: f.path,
            line: n + 1,
            message: `uses ${bad.what}: ${lines[n].trim()}`,
          });
        }
      }
    }
  }
  for (const cycle of findCycles(files)) {
    out.push({
      rule: "no import circle",
      file: cycle[0],
      line: 1,
      message: `import circle: ${[...cycle, cycle[0]].join(" -> ")}`,
    });
  }
  return out;
}

/**
 * Every import circle, each as the files of one strongly connected component in an order
 * that follows its edges (Tarjan, then a walk inside the component).
 */
export function findCycles(files: readonly SourceFile[]): string[][] {
  const edges = new Map<string, string[]>();
  for (const f of files) {
    edges.set(
      f.path,
      [...new Set(f.imports.map((r) => r.target).filter((t): t is string => t !== null))],
    );
  }
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const strong = (v: string) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!edges.has(w)) continue;
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      for (;;) {
        const w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
        if (w === v) break;
      }
      const selfLoop = (edges.get(v) ?? []).includes(v);
      if (comp.length > 1 || selfLoop) components.push(comp);
    }
  };
  for (const v of [...edges.keys()].sort()) if (!idx.has(v)) strong(v);
  // Name each circle by one closed walk from its smallest file, so the message reads as a path.
  return components.map((comp) => {
    const members = new Set(comp);
    const start = [...comp].sort()[0];
    const path = [start];
    const seen = new Set([start]);
    let at = start;
    for (;;) {
      const next = (edges.get(at) ?? []).filter((w) => members.has(w));
      if (next.includes(start) && path.length > 1) break;
      const step = next.find((w) => !seen.has(w));
      if (step === undefined) break;
      path.push(step);
      seen.add(step);
      at = step;
    }
    return path;
  });
}

/** One line per violation: what a developer reads when the architecture test fails. */
export function formatViolations(violations: readonly Violation[]): string {
  return violations.map((v) => `${v.file}:${v.line}: [${v.rule}] ${v.message}`).join("\n");
}

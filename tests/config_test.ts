/**
 * The daemon's settings: command-line flags over `<data dir>/config.json` over defaults, and
 * the default paths taken from the environment. All pure: nothing here touches the disk.
 */
import assert from "node:assert/strict";
import {
  ConfigError,
  defaultDataDir,
  defaultSocketPath,
  type Env,
  type Flags,
  parseConfigFile,
  parseFlags,
  relaysOfNodesFile,
  resolveConfig,
  USAGE,
} from "../daemon/shell/config.ts";

const PK_A = "6BBF183586E9645F7AB2C73D6DCAF1456D1AB1DA1AFB8C077FB2A7176FA7F865";
const PK_B = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const PK_C = "F".repeat(64);
const relay = (host: string, port: number, pk: string) => ({
  host,
  port,
  publicKey: pk.toLowerCase(),
});

const CONFIG_PATH = "/home/u/.local/share/toxtcp/config.json";

/** An environment holding exactly `vars`. */
function envOf(vars: Record<string, string>): Env {
  return (name) => Object.hasOwn(vars, name) ? vars[name] : undefined;
}

/** `f` throws a ConfigError whose message matches every pattern. */
function assertConfigError(f: () => unknown, ...patterns: (RegExp | string)[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    for (const p of patterns) {
      if (typeof p === "string") {
        assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} should say ${p}`);
      } else {
        assert.match(e.message, p);
      }
    }
    return true;
  });
}

// ---- flags -------------------------------------------------------------------------------

const NO_FLAGS: Flags = {
  help: false,
  dataDir: undefined,
  relays: undefined,
  bootstrap: undefined,
  nodesFile: undefined,
  proxy: undefined,
  socketPath: undefined,
  name: undefined,
  logLevel: undefined,
  capturePath: undefined,
  keylogPath: undefined,
  captureSecrets: false,
};

Deno.test("flags: none given sets nothing", () => {
  assert.deepEqual(parseFlags([]), NO_FLAGS);
});

Deno.test("flags: each option", () => {
  assert.deepEqual(parseFlags(["--data-dir", "/srv/tox"]), { ...NO_FLAGS, dataDir: "/srv/tox" });
  assert.deepEqual(parseFlags([`--relay=127.0.0.1:33445:${PK_A}`]), {
    ...NO_FLAGS,
    relays: [relay("127.0.0.1", 33445, PK_A)],
  });
  assert.deepEqual(parseFlags(["--nodes", "nodes.json"]), { ...NO_FLAGS, nodesFile: "nodes.json" });
  assert.deepEqual(parseFlags(["--proxy", "socks5://127.0.0.1:9050"]), {
    ...NO_FLAGS,
    proxy: { kind: "socks5", host: "127.0.0.1", port: 9050 },
  });
  assert.deepEqual(parseFlags(["--proxy", "http://[::1]:8080/"]), {
    ...NO_FLAGS,
    proxy: { kind: "http", host: "::1", port: 8080 },
  });
  assert.deepEqual(parseFlags(["--socket", "/run/t.sock"]), {
    ...NO_FLAGS,
    socketPath: "/run/t.sock",
  });
  assert.deepEqual(parseFlags(["--name", "Alice \u{1F600}"]), {
    ...NO_FLAGS,
    name: "Alice \u{1F600}",
  });
  for (const level of ["error", "warn", "info", "debug"] as const) {
    assert.deepEqual(parseFlags(["--log-level", level]), { ...NO_FLAGS, logLevel: level });
  }
});

Deno.test("flags: all options together", () => {
  assert.deepEqual(
    parseFlags([
      "--data-dir",
      "/d",
      "--relay",
      `tox.example.org:443:${PK_A}`,
      "--nodes",
      "/n.json",
      "--bootstrap",
      `127.0.0.1:33445:${PK_B}`,
      "--proxy",
      "socks5://proxy.lan:1080",
      "--socket",
      "/s.sock",
      "--name",
      "Bob",
      "--log-level",
      "warn",
    ]),
    {
      help: false,
      dataDir: "/d",
      relays: [relay("tox.example.org", 443, PK_A)],
      bootstrap: [relay("127.0.0.1", 33445, PK_B)],
      nodesFile: "/n.json",
      proxy: { kind: "socks5", host: "proxy.lan", port: 1080 },
      socketPath: "/s.sock",
      name: "Bob",
      logLevel: "warn",
      capturePath: undefined,
      keylogPath: undefined,
      captureSecrets: false,
    },
  );
});

Deno.test("flags: --relay may be repeated, in order; IPv6 in brackets", () => {
  assert.deepEqual(
    parseFlags([
      "--relay",
      `10.0.0.1:33445:${PK_A}`,
      "--relay",
      `[2001:db8::1]:3389:${PK_B}`,
      `--relay=relay.example:443:${PK_C}`,
    ]).relays,
    [
      relay("10.0.0.1", 33445, PK_A),
      relay("2001:db8::1", 3389, PK_B),
      relay("relay.example", 443, PK_C),
    ],
  );
});

Deno.test("flags: --help and -h", () => {
  assert.deepEqual(parseFlags(["--help"]), { ...NO_FLAGS, help: true });
  assert.equal(parseFlags(["-h"]).help, true);
  assert.equal(parseFlags(["--name", "x", "--help"]).help, true);
  for (const flag of ["--data-dir", "--relay", "--nodes", "--proxy", "--socket", "--name"]) {
    assert.ok(USAGE.includes(flag), `USAGE documents ${flag}`);
  }
  assert.ok(USAGE.includes("--log-level"));
});

Deno.test("flags: a bad relay spec names --relay and the spec", () => {
  assertConfigError(() => parseFlags(["--relay", "127.0.0.1:33445"]), "--relay", "127.0.0.1:33445");
  assertConfigError(
    () => parseFlags(["--relay", `127.0.0.1:33445:${PK_A}`, "--relay", `h:70000:${PK_A}`]),
    "--relay",
    /port "70000" is not in 1\.\.65535/,
  );
  assertConfigError(
    () => parseFlags(["--relay", "127.0.0.1:33445:abcd"]),
    "--relay",
    "public key must be 64 hex digits",
  );
});

Deno.test("flags: a bad proxy URL names --proxy and the reason", () => {
  assertConfigError(() => parseFlags(["--proxy", "ftp://h:21"]), "--proxy", 'scheme "ftp"');
  assertConfigError(() => parseFlags(["--proxy", "socks5://127.0.0.1"]), "--proxy", "port");
  assertConfigError(() => parseFlags(["--proxy", "127.0.0.1:9050"]), "--proxy");
  assertConfigError(() => parseFlags(["--proxy", "socks5://u:p@h:1080"]), "--proxy", "credentials");
});

Deno.test("flags: a bad log level lists the levels", () => {
  assertConfigError(
    () => parseFlags(["--log-level", "trace"]),
    "--log-level",
    "error, warn, info, debug",
  );
  assertConfigError(() => parseFlags(["--log-level", "INFO"]), "--log-level");
});

Deno.test("flags: an unknown flag, a stray argument or a missing value is a ConfigError", () => {
  assertConfigError(() => parseFlags(["--bogus"]), "--bogus");
  assertConfigError(() => parseFlags(["--relays", `h:1:${PK_A}`]), "--relays");
  assertConfigError(() => parseFlags(["stray"]), "stray");
  assertConfigError(() => parseFlags(["--data-dir"]), "--data-dir");
});

Deno.test("flags: --name is at most 128 bytes of UTF-8", () => {
  assert.equal(parseFlags(["--name", "n".repeat(128)]).name, "n".repeat(128));
  assert.equal(parseFlags(["--name", "\u00e9".repeat(64)]).name, "\u00e9".repeat(64));
  assertConfigError(() => parseFlags(["--name", "n".repeat(129)]), "--name", "128 bytes");
  // 65 characters, 130 bytes.
  assertConfigError(() => parseFlags(["--name", "\u00e9".repeat(65)]), "--name", "128 bytes");
});

// ---- config.json -------------------------------------------------------------------------

Deno.test("config file: every setting", () => {
  const text = JSON.stringify({
    relays: [`127.0.0.1:33445:${PK_A}`, `[::1]:3389:${PK_B}`],
    bootstrap: [`127.0.0.1:33445:${PK_A}`],
    nodes: "/etc/toxtcp/nodes.json",
    proxy: "http://[::1]:8080",
    socket: "/run/user/1000/t.sock",
    name: "Alice",
    log_level: "debug",
  });
  assert.deepEqual(parseConfigFile(text, CONFIG_PATH), {
    relays: [relay("127.0.0.1", 33445, PK_A), relay("::1", 3389, PK_B)],
    bootstrap: [relay("127.0.0.1", 33445, PK_A)],
    nodesFile: "/etc/toxtcp/nodes.json",
    proxy: { kind: "http", host: "::1", port: 8080 },
    socketPath: "/run/user/1000/t.sock",
    name: "Alice",
    logLevel: "debug",
  });
});

Deno.test("config file: an empty object sets nothing; an empty relay list is a list", () => {
  const none = {
    relays: undefined,
    bootstrap: undefined,
    nodesFile: undefined,
    proxy: undefined,
    socketPath: undefined,
    name: undefined,
    logLevel: undefined,
  };
  assert.deepEqual(parseConfigFile("{}", CONFIG_PATH), none);
  assert.deepEqual(parseConfigFile(' {\n  "relays": [] }\n', CONFIG_PATH), { ...none, relays: [] });
});

Deno.test("config file: an unknown setting is rejected, naming it and the known ones", () => {
  assertConfigError(
    () => parseConfigFile('{"name":"a","log-level":"debug"}', CONFIG_PATH),
    CONFIG_PATH,
    'unknown setting "log-level"',
    "relays, bootstrap, nodes, proxy, socket, name, log_level",
  );
  assertConfigError(() => parseConfigFile('{"data_dir":"/x"}', CONFIG_PATH), '"data_dir"');
  assertConfigError(() => parseConfigFile('{"__proto__":{}}', CONFIG_PATH), '"__proto__"');
});

Deno.test("config file: a setting of the wrong type names the file and the setting", () => {
  const cases: [unknown, string][] = [
    [{ relays: `127.0.0.1:33445:${PK_A}` }, `"relays" must be a list of "HOST:PORT:PUBKEY"`],
    [{ relays: null }, `"relays" must be a list`],
    [{ relays: ["127.0.0.1:33445"] }, `relays[0]: relay "127.0.0.1:33445"`],
    [{ nodes: 5 }, `"nodes" must be a string`],
    [{ nodes: ["a.json"] }, `"nodes" must be a string`],
    [{ proxy: 1080 }, `"proxy" must be a string`],
    [{ proxy: "gopher://h:70" }, `proxy: invalid proxy URL`],
    [{ socket: true }, `"socket" must be a string`],
    [{ socket: null }, `"socket" must be a string`],
    [{ name: 7 }, `name: name must be a string`],
    [{ name: "n".repeat(129) }, `name: name is longer than 128 bytes`],
    [{ log_level: 3 }, `log_level: log level must be one of`],
    [{ log_level: "verbose" }, `log_level: log level must be one of error, warn, info, debug`],
  ];
  for (const [doc, says] of cases) {
    assertConfigError(() => parseConfigFile(JSON.stringify(doc), CONFIG_PATH), CONFIG_PATH, says);
  }
});

Deno.test("config file: a relay that is not a string names the file and its index", () => {
  // Fails at present: parseConfigFile throws this ConfigError inside wrap(), which passes
  // ConfigErrors through unchanged, so the message is only 'must be a "HOST:PORT:PUBKEY"
  // string', without the file or which relay.
  assertConfigError(
    () =>
      parseConfigFile(JSON.stringify({ relays: [`127.0.0.1:33445:${PK_A}`, 33445] }), CONFIG_PATH),
    `${CONFIG_PATH}: relays[1]: must be a "HOST:PORT:PUBKEY" string`,
  );
});

Deno.test("config file: not JSON names the file", () => {
  assertConfigError(
    () => parseConfigFile('{"name": "a",}', CONFIG_PATH),
    `${CONFIG_PATH} is not JSON`,
  );
  assertConfigError(() => parseConfigFile("", CONFIG_PATH), `${CONFIG_PATH} is not JSON`);
});

Deno.test("config file: JSON that is not an object names the file", () => {
  for (const text of ["[]", "null", '"relays"', "42", "true"]) {
    assertConfigError(
      () => parseConfigFile(text, CONFIG_PATH),
      `${CONFIG_PATH} must hold a JSON object`,
    );
  }
});

// ---- precedence --------------------------------------------------------------------------

const NO_FILE = parseConfigFile("{}", CONFIG_PATH);
const EMPTY_ENV = envOf({});

Deno.test("resolve: defaults when neither flags nor file say anything", () => {
  assert.deepEqual(resolveConfig(parseFlags([]), NO_FILE, "/data", EMPTY_ENV), {
    dataDir: "/data",
    socketPath: "/data/control.sock",
    relays: [],
    bootstrap: [],
    nodesFile: null,
    proxy: null,
    name: null,
    logLevel: "info",
    capturePath: null,
    keylogPath: null,
    captureSecrets: false,
  });
});

Deno.test("resolve: the file over the defaults", () => {
  const file = parseConfigFile(
    JSON.stringify({
      relays: [`127.0.0.1:33445:${PK_A}`],
      nodes: "/file/nodes.json",
      proxy: "socks5://127.0.0.1:9050",
      socket: "/file.sock",
      name: "FileName",
      log_level: "warn",
    }),
    CONFIG_PATH,
  );
  assert.deepEqual(
    resolveConfig(parseFlags([]), file, "/data", envOf({ XDG_RUNTIME_DIR: "/run/user/1" })),
    {
      dataDir: "/data",
      socketPath: "/file.sock",
      relays: [relay("127.0.0.1", 33445, PK_A)],
      bootstrap: [],
      nodesFile: "/file/nodes.json",
      proxy: { kind: "socks5", host: "127.0.0.1", port: 9050 },
      name: "FileName",
      logLevel: "warn",
      capturePath: null,
      keylogPath: null,
      captureSecrets: false,
    },
  );
});

Deno.test("resolve: flags over the file; relays from flags replace the file's", () => {
  const file = parseConfigFile(
    JSON.stringify({
      relays: [`127.0.0.1:33445:${PK_A}`, `127.0.0.2:33445:${PK_B}`],
      nodes: "/file/nodes.json",
      proxy: "socks5://127.0.0.1:9050",
      socket: "/file.sock",
      name: "FileName",
      log_level: "warn",
    }),
    CONFIG_PATH,
  );
  const flags = parseFlags([
    "--relay",
    `10.9.9.9:443:${PK_C}`,
    "--nodes",
    "/flag/nodes.json",
    "--proxy",
    "http://proxy:3128",
    "--socket",
    "/flag.sock",
    "--name",
    "FlagName",
    "--log-level",
    "debug",
  ]);
  assert.deepEqual(resolveConfig(flags, file, "/data", EMPTY_ENV), {
    dataDir: "/data",
    socketPath: "/flag.sock",
    relays: [relay("10.9.9.9", 443, PK_C)],
    bootstrap: [],
    nodesFile: "/flag/nodes.json",
    proxy: { kind: "http", host: "proxy", port: 3128 },
    name: "FlagName",
    logLevel: "debug",
    capturePath: null,
    keylogPath: null,
    captureSecrets: false,
  });
});

Deno.test("resolve: each setting falls through on its own", () => {
  const file = parseConfigFile(
    JSON.stringify({ relays: [`127.0.0.1:33445:${PK_A}`], name: "FileName" }),
    CONFIG_PATH,
  );
  const flags = parseFlags(["--log-level", "error", "--name", "FlagName"]);
  const env = envOf({ TOXTCP_SOCKET: "/env.sock" });
  assert.deepEqual(resolveConfig(flags, file, "/data", env), {
    dataDir: "/data",
    socketPath: "/env.sock",
    relays: [relay("127.0.0.1", 33445, PK_A)],
    bootstrap: [],
    nodesFile: null,
    proxy: null,
    name: "FlagName",
    logLevel: "error",
    capturePath: null,
    keylogPath: null,
    captureSecrets: false,
  });
});

Deno.test("resolve: the socket: flag, then file, then the environment's default", () => {
  const env = envOf({ TOXTCP_SOCKET: "/env.sock" });
  const file = parseConfigFile('{"socket":"/file.sock"}', CONFIG_PATH);
  assert.equal(
    resolveConfig(parseFlags(["--socket", "/f.sock"]), file, "/d", env).socketPath,
    "/f.sock",
  );
  assert.equal(resolveConfig(parseFlags([]), file, "/d", env).socketPath, "/file.sock");
  assert.equal(resolveConfig(parseFlags([]), NO_FILE, "/d", env).socketPath, "/env.sock");
  assert.equal(
    resolveConfig(parseFlags([]), NO_FILE, "/d", EMPTY_ENV).socketPath,
    "/d/control.sock",
  );
});

// ---- default paths -----------------------------------------------------------------------

Deno.test("data dir: $XDG_DATA_HOME/toxtcp, else ~/.local/share/toxtcp", () => {
  assert.equal(
    defaultDataDir(envOf({ XDG_DATA_HOME: "/xdg/data", HOME: "/home/u" })),
    "/xdg/data/toxtcp",
  );
  assert.equal(defaultDataDir(envOf({ HOME: "/home/u" })), "/home/u/.local/share/toxtcp");
  // An empty variable counts as unset.
  assert.equal(
    defaultDataDir(envOf({ XDG_DATA_HOME: "", HOME: "/home/u" })),
    "/home/u/.local/share/toxtcp",
  );
});

Deno.test("data dir: neither XDG_DATA_HOME nor HOME is a ConfigError pointing at --data-dir", () => {
  assertConfigError(() => defaultDataDir(EMPTY_ENV), "XDG_DATA_HOME", "HOME", "--data-dir");
  assertConfigError(() => defaultDataDir(envOf({ XDG_DATA_HOME: "", HOME: "" })), "--data-dir");
});

Deno.test("socket: $TOXTCP_SOCKET, else $XDG_RUNTIME_DIR/toxtcp/control.sock, else data dir", () => {
  const all = { TOXTCP_SOCKET: "/tmp/my.sock", XDG_RUNTIME_DIR: "/run/user/1000" };
  assert.equal(defaultSocketPath(envOf(all), "/data"), "/tmp/my.sock");
  assert.equal(
    defaultSocketPath(envOf({ XDG_RUNTIME_DIR: "/run/user/1000" }), "/data"),
    "/run/user/1000/toxtcp/control.sock",
  );
  assert.equal(
    defaultSocketPath(envOf({ TOXTCP_SOCKET: "", XDG_RUNTIME_DIR: "/run/user/1000" }), "/data"),
    "/run/user/1000/toxtcp/control.sock",
  );
  assert.equal(defaultSocketPath(EMPTY_ENV, "/data"), "/data/control.sock");
  assert.equal(defaultSocketPath(envOf({ XDG_RUNTIME_DIR: "" }), "/d d"), "/d d/control.sock");
});

// ---- nodes.json --------------------------------------------------------------------------

const NODES_PATH = "/etc/toxtcp/nodes.json";

Deno.test("nodes file: every address family and TCP port of every node, keys lower-cased", () => {
  const text = JSON.stringify({
    last_scan: 1700000000,
    nodes: [
      {
        ipv4: "192.0.2.10",
        ipv6: "2001:db8::10",
        port: 33445,
        tcp_ports: [443, 33445],
        public_key: PK_A,
        maintainer: "someone",
        location: "NL",
        status_tcp: true,
      },
      { ipv4: "192.0.2.20", ipv6: "-", port: 33445, tcp_ports: [3389], public_key: PK_B },
      { ipv4: "-", ipv6: "2001:db8::30", port: 33445, tcp_ports: [33445], public_key: PK_C },
      // A UDP-only node: no TCP ports, no relays.
      { ipv4: "192.0.2.40", ipv6: "-", port: 33445, tcp_ports: [], public_key: PK_A },
      { ipv4: "tox.example.org", ipv6: "NONE", port: 33445, tcp_ports: [443], public_key: PK_B },
    ],
  });
  assert.deepEqual(relaysOfNodesFile(text, NODES_PATH), [
    relay("192.0.2.10", 443, PK_A),
    relay("192.0.2.10", 33445, PK_A),
    relay("2001:db8::10", 443, PK_A),
    relay("2001:db8::10", 33445, PK_A),
    relay("192.0.2.20", 3389, PK_B),
    relay("2001:db8::30", 33445, PK_C),
    relay("tox.example.org", 443, PK_B),
  ]);
});

Deno.test("nodes file: a broken file is a ConfigError naming the file", () => {
  assertConfigError(() => relaysOfNodesFile('{"nodes": [', NODES_PATH), NODES_PATH, "not JSON");
  assertConfigError(() => relaysOfNodesFile("{}", NODES_PATH), NODES_PATH, '"nodes" array');
  assertConfigError(
    () =>
      relaysOfNodesFile(
        JSON.stringify({
          nodes: [
            { ipv4: "192.0.2.1", ipv6: "-", tcp_ports: [443], public_key: PK_A },
            { ipv4: "192.0.2.2", ipv6: "-", tcp_ports: [443], public_key: "abc" },
          ],
        }),
        NODES_PATH,
      ),
    NODES_PATH,
    "nodes[1]",
    "public key",
  );
  assertConfigError(
    () =>
      relaysOfNodesFile(
        JSON.stringify({
          nodes: [{ ipv4: "192.0.2.1", ipv6: "-", tcp_ports: [0], public_key: PK_A }],
        }),
        NODES_PATH,
      ),
    NODES_PATH,
    "nodes[0]",
    "port",
  );
  assertConfigError(
    () =>
      relaysOfNodesFile(
        JSON.stringify({
          nodes: [{ ipv4: "not a host!", ipv6: "-", tcp_ports: [443], public_key: PK_A }],
        }),
        NODES_PATH,
      ),
    NODES_PATH,
    "nodes[0]",
    "not an IP address or host name",
  );
});

Deno.test("flags: --capture, --keylog and --capture-secrets are flags only, checked together", () => {
  const f = parseFlags(["--capture", "/tmp/c.pcapng", "--keylog", "/tmp/k.log"]);
  assert.deepEqual([f.capturePath, f.keylogPath, f.captureSecrets], [
    "/tmp/c.pcapng",
    "/tmp/k.log",
    false,
  ]);
  assert.equal(parseFlags(["--capture", "c", "--capture-secrets"]).captureSecrets, true);
  const resolved = resolveConfig(parseFlags(["--keylog", "k"]), NO_FILE, "/data", EMPTY_ENV);
  assert.deepEqual([resolved.capturePath, resolved.keylogPath, resolved.captureSecrets], [
    null,
    "k",
    false,
  ]);
  assert.throws(() => parseFlags(["--capture-secrets"]), /--capture-secrets needs --capture/);
  assert.throws(() => parseFlags(["--capture", "x", "--keylog", "x"]), /different files/);
  assert.throws(() => parseFlags(["--capture="]), /--capture needs a file name/);
  // Never from config.json: a forgotten file must not record anyone.
  assert.throws(
    () => parseConfigFile('{"capture":"/tmp/c.pcapng"}', "config.json"),
    /unknown setting "capture"/,
  );
});

Deno.test("--bootstrap and config bootstrap need an IP address: onion layers carry no names", () => {
  assertConfigError(
    () => parseFlags(["--bootstrap", `tox.example.org:33445:${PK_A}`]),
    "--bootstrap",
    "needs an IP address",
  );
  assertConfigError(
    () => parseConfigFile(JSON.stringify({ bootstrap: [`node.lan:1:${PK_A}`] }), CONFIG_PATH),
    "bootstrap[0]",
    "needs an IP address",
  );
  assert.deepEqual(parseFlags(["--bootstrap", `[::1]:33445:${PK_A}`]).bootstrap, [
    relay("::1", 33445, PK_A),
  ]);
});

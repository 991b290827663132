/** `deno task probe` as a user runs it: exit codes, JSON shape, --nodes, bad arguments. */
import assert from "node:assert/strict";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";

async function probe(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "tools/probe.ts", ...args],
    cwd: new URL("../..", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("probe: bad arguments exit 2 with a message", async () => {
  for (
    const args of [[], ["--relay", "nonsense"], [
      "--relay",
      "127.0.0.1:1:" + "0".repeat(64),
      "--timeout",
      "-1",
    ], ["--bogus"]]
  ) {
    const r = await probe(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, /probe: /);
  }
});

interopTest(
  "probe: --json and --nodes against tox-bootstrapd; exit 0 only if every relay answered",
  ["tox-bootstrapd"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await Deno.makeTempDir();
    try {
      const nodes = `${dir}/nodes.json`;
      await Deno.writeTextFile(
        nodes,
        JSON.stringify({
          nodes: [{
            ipv4: "127.0.0.1",
            ipv6: "-",
            port: relay.port,
            tcp_ports: [relay.port],
            public_key: relay.publicKeyHex,
          }],
        }),
      );
      const ok = await probe(["--nodes", nodes, "--json", "--timeout", "5"]);
      assert.equal(ok.code, 0, ok.stderr);
      const line = JSON.parse(ok.stdout.trim());
      assert.deepEqual(Object.keys(line), ["relay", "pk", "ok", "handshake_ms", "rtt_ms", "error"]);
      assert.equal(line.relay, `127.0.0.1:${relay.port}`);
      assert.equal(line.pk, relay.publicKeyHex.toLowerCase());
      assert.equal(line.ok, true);
      assert.equal(line.error, null);
      const mixed = await probe([
        "--nodes",
        nodes,
        "--relay",
        `127.0.0.1:1:${relay.publicKeyHex}`,
        "--timeout",
        "5",
      ]);
      assert.equal(mixed.code, 1);
      assert.match(mixed.stdout, /ok/);
      assert.match(mixed.stdout, /FAIL .*Connection refused/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

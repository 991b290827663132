/**
 * Captures made in the test, decoded with `deno task decode` as a user runs it:
 *  - tcpdump on loopback while our daemon and a c-toxcore peer (TCP only) talk through
 *    tox-bootstrapd: with our key log our stream opens down to the message text; the C peer's
 *    stream has no key and is shown encrypted, frame by frame.
 *  - the daemon's own --capture with --keylog / --capture-secrets: fully decrypted with
 *    either, and tshark reads the file without a complaint.
 */
import assert from "node:assert/strict";
import { ControlClient } from "../../tools/ctl.ts";
import {
  interopTest,
  startBootstrapd,
  startMicrosocks,
  startTcpdump,
} from "../../tools/testbed/harness.ts";
import {
  ctl,
  ctlJson,
  DaemonProcess,
  nextEvent,
  spec,
} from "../../tools/testbed/daemon_process.ts";
import { startToxPeer } from "../../tools/testbed/tox_peer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

interface Self {
  public_key: string;
  dht_public_key: string;
}

interface DecodedLine {
  frame?: number;
  stream: number;
  dir: string;
  sender: string;
  protocol?: string;
  info?: string;
  client?: string;
  notice?: string;
  layers?: { proto: string; kind?: string; text?: string; decrypted?: boolean }[];
}

/** `deno task decode FILE --json …` as a subprocess: exit code, the lines, stderr. */
async function decode(file: string, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--allow-read", `${ROOT}tools/decode.ts`, file, "--json", ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout);
  const lines = text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as DecodedLine);
  return { code: out.code, lines, stderr: dec.decode(out.stderr) };
}

function texts(lines: DecodedLine[], kind: string): string[] {
  return lines.flatMap((l) =>
    (l.layers ?? []).filter((x) => x.proto === "friend" && x.kind === kind).map((x) => x.text ?? "")
  );
}

interopTest(
  "capture: tcpdump and the daemon's own capture of ours<->C, decoded layer by layer",
  ["tox-bootstrapd", "gcc", "tcpdump", "tshark"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await Deno.makeTempDir({ prefix: "toxtcp-capture-test-" });
    await Deno.chmod(dir, 0o700);
    try {
      const dumpFile = `${dir}/lo.pcap`;
      const own = `${dir}/own.pcapng`;
      const keylog = `${dir}/keys.log`;
      const tcpdump = await startTcpdump(dumpFile, `tcp port ${relay.relay.port}`);
      const socket = `${dir}/d.sock`;
      const d = await DaemonProcess.start({
        dataDir: `${dir}/data`,
        socket,
        relays: [spec(relay)],
        name: "deno",
        extra: ["--capture", own, "--keylog", keylog, "--capture-secrets"],
      });
      const c = await startToxPeer({ relays: [relay.relay], name: "c-peer" });
      const watch = await ControlClient.connect(socket);
      let self: Self;
      try {
        assert.match(d.log, /key log on: .*keys\.log/, "the key log is announced as a warning");
        assert.equal(((await Deno.stat(keylog)).mode ?? 0) & 0o777, 0o600);
        assert.equal(((await Deno.stat(own)).mode ?? 0) & 0o777, 0o600);
        assert.equal((await watch.request("subscribe")).ok, true);
        self = await ctlJson<Self>(socket, "self");
        const online = nextEvent(watch, (e) => e.event === "friend_online", 20_000, "online");
        const friend = await c.addFriend(self.public_key);
        const cSees = c.waitForFriendOnline(friend, 20_000);
        const added = await ctl(
          socket,
          "friend",
          "add",
          c.realPublicKey,
          "--dht",
          c.dhtPublicKey,
          "--relay",
          spec(relay),
        );
        assert.equal(added.code, 0, added.stderr);
        await Promise.all([online, cSees]);
        const fromC = nextEvent(watch, (e) => e.event === "message", 5_000, "C's message");
        const toC = c.waitFor((e) => e.type === "message" && e.text === "hello from deno", 5_000);
        assert.equal((await ctl(socket, "send", c.realPublicKey, "hello from deno")).code, 0);
        await c.sendMessage(friend, "hello from c-toxcore");
        await toC;
        assert.equal((await fromC).text, "hello from c-toxcore");
        // Let a ping/pong or two and the acks through.
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        await watch.close();
        await c.stop();
        await d.stop();
        await tcpdump.stop();
      }

      // 1. tcpdump's capture with our key log: our stream opens to the text; the C peer's not.
      const dump = await decode(dumpFile, "--keylog", keylog);
      assert.equal(dump.code, 0, dump.stderr);
      const records = dump.lines.filter((l) => l.notice === undefined);
      const ours = records.filter((l) => l.client === self.dht_public_key);
      const theirs = records.filter((l) => l.client === c.dhtPublicKey);
      const notices = dump.lines.filter((l) => l.notice !== undefined).map((l) =>
        `s${l.stream} ${l.notice}: ${(l as { message?: string }).message}`
      );
      assert.ok(
        ours.length > 0,
        `our relay stream was found; ${dump.lines.length} lines, notices:\n${
          notices.join("\n")
        }\ndecode: ${dump.stderr}\ntcpdump: ${tcpdump.log()}`,
      );
      assert.ok(theirs.length > 0, "the C peer's relay stream was found");
      assert.ok(texts(ours, "message").includes("hello from deno"), "our message, decrypted");
      assert.ok(texts(ours, "message").includes("hello from c-toxcore"), "C's message to us");
      assert.ok(
        ours.some((l) => l.layers?.some((x) => x.proto === "relay" && x.kind === "ping")),
        "relay packets by name",
      );
      // The C peer's side: its handshake (its DHT key in clear), then frames without a key.
      const theirHs = theirs.find((l) => l.layers?.some((x) => x.proto === "tcp_handshake"));
      assert.ok(theirHs, "the C peer's handshake is shown");
      const theirFrames = theirs.filter((l) => l.layers?.some((x) => x.proto === "tcp_frame"));
      assert.ok(theirFrames.length > 3, "the C peer's frames are shown");
      assert.ok(
        theirFrames.every((l) =>
          l.layers!.some((x) => x.proto === "tcp_frame" && x.decrypted === false)
        ),
        "and shown as encrypted",
      );
      assert.equal(texts(theirs, "message").length, 0);

      // 2. The daemon's own capture: every record of it decrypted, with the keys inside it.
      for (const args of [[], ["--keylog", keylog]]) {
        const mine = await decode(own, ...args);
        assert.equal(mine.code, 0, mine.stderr);
        const recs = mine.lines.filter((l) => l.notice === undefined);
        assert.ok(recs.length > 10);
        assert.ok(
          recs.every((l) => !l.layers?.some((x) => x.proto === "tcp_frame" && !x.decrypted)),
          `every frame opens (${args.join(" ") || "keys from the capture"})`,
        );
        assert.deepEqual(
          texts(recs, "message").sort(),
          ["hello from c-toxcore", "hello from deno"],
        );
        assert.ok(texts(recs, "nickname").includes("c-peer"), "the C peer's name");
      }

      // 3. tshark opens it without a complaint and follows the TCP stream.
      const ts = await new Deno.Command("tshark", { args: ["-r", own], stdin: "null" }).output();
      // As root tshark warns that it runs as root, whatever the file: that line is not ours.
      const tsErr = new TextDecoder().decode(ts.stderr).split("\n")
        .filter((l) => l.trim() !== "" && !/Running as user "root"/.test(l));
      assert.equal(ts.code, 0, tsErr.join("\n"));
      assert.deepEqual(tsErr, [], "no warnings from tshark");
      assert.match(new TextDecoder().decode(ts.stdout), /TCP/);

      // 4. --stats on the tcpdump capture: both streams, handshake times, ping RTTs.
      const stats = await decode(dumpFile, "--keylog", keylog, "--stats");
      assert.equal(stats.code, 0, stats.stderr);
      const s = stats.lines[0] as unknown as {
        streams: { client: string; handshake_ms: number | null }[];
        sessions: { decrypted: number }[];
      };
      const clients = s.streams.map((x) => x.client);
      assert.ok(clients.includes(self!.dht_public_key) && clients.includes(c.dhtPublicKey));
      assert.ok(s.streams.every((x) => x.handshake_ms !== null && x.handshake_ms >= 0));
      assert.ok(s.sessions.some((x) => x.decrypted > 0));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

interopTest(
  "capture: through a SOCKS5 proxy, the proxy steps then the relay session, decrypted",
  ["tox-bootstrapd", "microsocks"],
  async () => {
    await using relay = await startBootstrapd();
    await using proxy = await startMicrosocks();
    const dir = await Deno.makeTempDir({ prefix: "toxtcp-capture-test-" });
    await Deno.chmod(dir, 0o700);
    try {
      const own = `${dir}/own.pcapng`;
      const keylog = `${dir}/keys.log`;
      const socket = `${dir}/d.sock`;
      const d = await DaemonProcess.start({
        dataDir: `${dir}/data`,
        socket,
        relays: [spec(relay)],
        extra: ["--proxy", proxy.url, "--capture", own, "--keylog", keylog],
      });
      try {
        const end = Date.now() + 10_000;
        while (Date.now() < end) {
          const relays = await ctlJson<{ state: string }[]>(socket, "relays");
          if (relays.some((r) => r.state === "confirmed")) break;
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await d.stop();
      }
      const r = await decode(own, "--keylog", keylog);
      assert.equal(r.code, 0, r.stderr);
      const recs = r.lines.filter((l) => l.notice === undefined);
      // The real socket went to the proxy, never to the relay.
      assert.ok(recs.length > 0);
      const steps = recs.filter((l) => l.layers?.[0]?.proto === "proxy");
      assert.ok(steps.length >= 3, `SOCKS5 steps: ${JSON.stringify(steps)}`);
      assert.ok(recs.every((l) => l.stream === recs[0].stream));
      const hs = recs.find((l) => l.layers?.some((x) => x.proto === "tcp_handshake"));
      assert.ok(hs, "the relay handshake after the preamble");
      assert.ok(
        recs.some((l) => l.layers?.some((x) => x.proto === "relay" && x.kind === "ping")),
        "and the relay's packets, decrypted",
      );
      const json = await decode(own, "--keylog", keylog, "--stats");
      const s = json.lines[0] as unknown as { streams: { proxy: string; keyed: boolean }[] };
      assert.deepEqual(s.streams.map((x) => [x.proxy, x.keyed]), [["SOCKS5", true]]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

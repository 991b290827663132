/**
 * The daemon as a user runs it: a subprocess against tox-bootstrapd on 127.0.0.1, driven only
 * through its control socket and `ctl`.
 */
import assert from "node:assert/strict";
import { newKeyPair, toHex } from "../../daemon/core/common/crypto.ts";
import { toxId } from "../../daemon/shell/identity.ts";
import { ControlClient } from "../../tools/ctl.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import {
  ctl,
  ctlJson,
  daemonOnce,
  DaemonProcess,
  nextEvent,
  privateDir,
  spec,
  startPair,
} from "../../tools/testbed/daemon_process.ts";

interface Self {
  address: string;
  public_key: string;
  dht_public_key: string;
  name: string;
}

const modeOf = async (path: string) => ((await Deno.stat(path)).mode ?? 0) & 0o777;

interopTest(
  "daemon: private files and socket, identity survives restarts, friends survive SIGKILL",
  ["tox-bootstrapd"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await privateDir();
    try {
      const dataDir = `${dir}/data`;
      const socket = `${dir}/run/control.sock`;
      const opts = { dataDir, socket, relays: [spec(relay)], name: "carol" };
      let d = await DaemonProcess.start(opts);
      const first = await ctlJson<Self>(socket, "self");
      assert.match(first.address, /^[0-9A-F]{76}$/);
      assert.equal(first.address.slice(0, 64).toLowerCase(), first.public_key);
      assert.equal(first.name, "carol");

      // Only we can read the key, the state or reach the socket.
      assert.equal(await modeOf(dataDir), 0o700);
      assert.equal(await modeOf(`${dataDir}/identity.json`), 0o600);
      assert.equal(await modeOf(socket), 0o600);
      assert.equal(await modeOf(`${dir}/run`), 0o700);

      // A second daemon on the same data directory is refused, with the reason.
      const second = await daemonOnce(["--data-dir", dataDir, "--socket", `${dir}/run/2.sock`]);
      assert.equal(second.code, 1);
      assert.match(second.output, /another daemon is already using/);

      // A friend (by Tox ID, with a hint) and a relay added at run time.
      const friend = newKeyPair();
      const nospam = new Uint8Array([1, 2, 3, 4]);
      const friendDht = toHex(newKeyPair().publicKey);
      const added = await ctl(
        socket,
        "friend",
        "add",
        toxId(friend.publicKey, nospam),
        "--dht",
        friendDht,
        "--relay",
        spec(relay),
      );
      assert.equal(added.code, 0, added.stderr);
      const extraRelay = `127.0.0.1:9:${toHex(newKeyPair().publicKey)}`;
      assert.equal((await ctl(socket, "relay", "add", extraRelay)).code, 0);
      assert.equal(await modeOf(`${dataDir}/state.json`), 0o600);

      // SIGKILL: no clean-up at all, the socket file stays behind.
      await d.kill("SIGKILL");
      const firstLog = d.log;
      assert.ok((await Deno.lstat(socket)).isSocket, "a stale socket is left");
      d = await DaemonProcess.start(opts);
      assert.match(d.log, /removing stale control socket/);
      const again = await ctlJson<Self>(socket, "self");
      assert.equal(again.address, first.address, "same Tox ID after restart");
      assert.equal(again.public_key, first.public_key);
      assert.notEqual(again.dht_public_key, first.dht_public_key, "a new DHT key every run");
      const friends = await ctlJson<{ public_key: string; online: boolean }[]>(socket, "friends");
      assert.deepEqual(friends.map((f) => [f.public_key, f.online]), [
        [toHex(friend.publicKey), false],
      ]);
      const relays = await ctlJson<{ public_key: string }[]>(socket, "relays");
      assert.ok(relays.some((r) => extraRelay.endsWith(r.public_key)), "the added relay is back");
      // The logs (debug level) never show the secret key.
      const secret = JSON.parse(await Deno.readTextFile(`${dataDir}/identity.json`)).secret_key;
      assert.equal(typeof secret, "string");
      assert.ok(!(firstLog + d.log).toLowerCase().includes(secret.toLowerCase()));

      // SIGTERM: a clean exit that takes the socket file with it.
      const status = await d.kill("SIGTERM");
      assert.equal(status.code, 0);
      await assert.rejects(Deno.lstat(socket), Deno.errors.NotFound);
      assert.match(d.log, /shutting down \(signal\)/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

interopTest(
  "daemon: malformed requests all get errors while another client keeps working",
  ["tox-bootstrapd"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await privateDir();
    try {
      const socket = `${dir}/control.sock`;
      await using _d = await DaemonProcess.start({
        dataDir: `${dir}/data`,
        socket,
        relays: [spec(relay)],
      });
      const key = "ab".repeat(32);
      const table: [string, string][] = [
        ["{not json", "bad_json"],
        ["[1,2,3]", "bad_request"],
        ["42", "bad_request"],
        ['"status"', "bad_request"],
        ['{"id":1}', "bad_request"],
        ['{"id":2,"cmd":7}', "bad_request"],
        ['{"id":{"x":1},"cmd":"status"}', "bad_request"],
        ['{"id":3,"cmd":"launch"}', "unknown_command"],
        ['{"id":4,"cmd":"friend.add"}', "bad_argument"],
        ['{"id":5,"cmd":"friend.add","public_key":"abc"}', "bad_argument"],
        [`{"id":6,"cmd":"friend.add","public_key":"${"AB".repeat(38)}"}`, "bad_argument"],
        [`{"id":7,"cmd":"friend.add","public_key":"${key}","relays":"x"}`, "bad_argument"],
        [`{"id":8,"cmd":"send","public_key":"${key}","text":""}`, "bad_argument"],
        [`{"id":9,"cmd":"send","public_key":"${key}","text":"hi","action":"yes"}`, "bad_argument"],
        [`{"id":10,"cmd":"send","public_key":"${key}","text":"hi"}`, "not_friend"],
        [`{"id":11,"cmd":"send.lossless","public_key":"${key}","data":"9f00"}`, "bad_argument"],
        [`{"id":12,"cmd":"send.lossy","public_key":"${key}","data":"c8f"}`, "bad_argument"],
        ['{"id":13,"cmd":"relay.add","relay":"nowhere"}', "bad_argument"],
        [`{"id":14,"cmd":"relay.remove","public_key":"${"cd".repeat(32)}"}`, "unknown_relay"],
        ['{"id":15,"cmd":"profile.set"}', "bad_argument"],
        [`{"id":16,"cmd":"profile.set","name":"${"n".repeat(200)}"}`, "bad_argument"],
        [`{"id":17,"cmd":"status","pad":"${"x".repeat(70_000)}"}`, "line_too_long"],
      ];
      // A well-behaved client polls status all along.
      const good = await ControlClient.connect(socket);
      let goodReplies = 0;
      let stop = false;
      const poller = (async () => {
        while (!stop) {
          const r = await good.request("status", {}, { timeoutMs: 5_000 });
          assert.ok(r.ok, JSON.stringify(r));
          goodReplies++;
        }
      })();
      // The bad client writes raw bytes: one line at a time, reading each reply.
      const conn = await Deno.connect({ transport: "unix", path: socket });
      const enc = new TextEncoder();
      const dec = new TextDecoder();
      let buffered = "";
      const readLine = async () => {
        const buf = new Uint8Array(65_536);
        while (!buffered.includes("\n")) {
          const n = await conn.read(buf);
          if (n === null) throw new Error("the daemon closed the bad client");
          buffered += dec.decode(buf.subarray(0, n), { stream: true });
        }
        const i = buffered.indexOf("\n");
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        return JSON.parse(line);
      };
      const writeAll = async (bytes: Uint8Array) => {
        while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
      };
      try {
        for (const [line, code] of table) {
          await writeAll(enc.encode(line + "\n"));
          const reply = await readLine();
          assert.equal(reply.ok, false, line.slice(0, 80));
          assert.equal(reply.error.code, code, `${line.slice(0, 80)} → ${reply.error.message}`);
          assert.ok(reply.error.message.length > 0);
        }
        // Invalid UTF-8 too.
        await writeAll(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
        assert.equal((await readLine()).error.code, "bad_json");
        // The same connection still works for a good request.
        await writeAll(enc.encode('{"id":"last","cmd":"self"}\n'));
        const self = await readLine();
        assert.equal(self.id, "last");
        assert.equal(self.ok, true);
      } finally {
        conn.close();
        stop = true;
        await poller;
        await good.close();
      }
      assert.ok(goodReplies > 0, "the other client was served throughout");
      // And the daemon is alive for new clients.
      assert.equal((await ctl(socket, "self")).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

interopTest(
  "daemon: two daemons befriend each other with ctl and exchange a message end to end",
  ["tox-bootstrapd"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await privateDir();
    try {
      await using pair = await startPair(dir, relay);
      const { sa, sb, b } = pair;
      const watchA = await ControlClient.connect(sa);
      const watchB = await ControlClient.connect(sb);
      try {
        assert.equal((await watchA.request("subscribe")).ok, true);
        assert.equal((await watchB.request("subscribe")).ok, true);
        const selfA = await ctlJson<Self>(sa, "self");
        const selfB = await ctlJson<Self>(sb, "self");
        const onlineA = nextEvent(watchA, (e) => e.event === "friend_online", 15_000, "a online");
        const onlineB = nextEvent(watchB, (e) => e.event === "friend_online", 15_000, "b online");
        // Bob adds alice by her Tox ID; alice adds bob with the hint (his DHT key and relay).
        assert.equal((await ctl(sb, "friend", "add", selfA.address)).code, 0);
        const hinted = await ctl(
          sa,
          "friend",
          "add",
          selfB.address,
          "--dht",
          selfB.dht_public_key,
          "--relay",
          spec(relay),
        );
        assert.equal(hinted.code, 0, hinted.stderr);
        assert.equal((await onlineA).public_key, selfB.public_key);
        assert.equal((await onlineB).public_key, selfA.public_key);

        const message = nextEvent(watchB, (e) => e.event === "message", 5_000, "bob's message");
        const receipt = nextEvent(watchA, (e) => e.event === "receipt", 5_000, "alice's receipt");
        const sent = await ctlJson<{ receipt: number }>(sa, "send", selfB.public_key, "hi", "bob");
        const got = await message;
        assert.deepEqual([got.public_key, got.text, got.kind], [
          selfA.public_key,
          "hi bob",
          "normal",
        ]);
        assert.equal((await receipt).receipt, sent.receipt);

        const friendsOfB = await ctlJson<{ public_key: string; online: boolean; name: string }[]>(
          sb,
          "friends",
        );
        assert.deepEqual(friendsOfB.map((f) => [f.public_key, f.online, f.name]), [
          [selfA.public_key, true, "alice"],
        ]);

        // Bob stops cleanly: his KILL reaches alice at once, not after the 32 s timeout.
        const offline = nextEvent(watchA, (e) => e.event === "friend_offline", 3_000, "offline");
        await watchB.close();
        assert.equal((await b.kill("SIGTERM")).code, 0);
        assert.equal((await offline).public_key, selfB.public_key);
      } finally {
        await watchA.close();
        await watchB.close();
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

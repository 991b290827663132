/**
 * The daemon's recorder end to end, without outside peers: two of our Messenger cores talk
 * through a routing relay on 127.0.0.1; alice records with a capture, a key log and the
 * secrets in the capture. What she recorded opens fully, down to the message text, with
 * either source of keys; the files are 0600; the key log lines parse.
 */
import assert from "node:assert/strict";
import { Recorder } from "../daemon/shell/recorder.ts";
import { Logger } from "../daemon/shell/log.ts";
import { parseKeylog } from "../daemon/core/capture/keylog.ts";
import { CaptureReader } from "../daemon/core/capture/pcap_reader.ts";
import { fromHex } from "../daemon/core/common/crypto.ts";
import { FriendEndpoint } from "../tools/testbed/friend_flow.ts";
import { main as decode } from "../tools/decode.ts";
import { startRoutingRelay } from "../tools/testbed/routing_relay.ts";
import { withTempDir } from "./support/temp_dir.ts";

async function decodeJson(args: string[]) {
  let out = "";
  let err = "";
  const code = await decode([...args, "--json"], {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
  });
  const lines = out.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  return { code, err, lines };
}

Deno.test("recorder: our own capture and key log open every layer, message text included", async () => {
  await withTempDir("toxtcp-recorder-", async (dir) => {
    await using relay = startRoutingRelay();
    const address = { host: relay.host, port: relay.port, publicKey: relay.publicKeyHex };
    const warnings: string[] = [];
    const log = new Logger("info", (l) => warnings.push(l));
    const recorder = (await Recorder.open({
      capturePath: `${dir}/alice.pcapng`,
      keylogPath: `${dir}/keys.log`,
      captureSecrets: true,
    }, log))!;
    assert.ok(warnings.some((w) => w.includes("WARN") && w.includes("key log on")));
    const alice = new FriendEndpoint({
      name: "alice",
      relays: [address],
      observer: recorder.observer(),
    });
    const bob = new FriendEndpoint({ name: "bob", relays: [address] });
    try {
      const online = Promise.all([
        alice.waitFor("alice sees bob", (e) => e.type === "friend_online", 10_000),
        bob.waitFor("bob sees alice", (e) => e.type === "friend_online", 10_000),
      ]);
      alice.handle.addFriend(bob.real.publicKey, {
        dhtPublicKey: bob.dht.publicKey,
        relays: [address],
      });
      bob.handle.addFriend(alice.real.publicKey, {
        dhtPublicKey: alice.dht.publicKey,
        relays: [address],
      });
      await online;
      const got = bob.waitFor(
        "bob gets the message",
        (e) => e.type === "friend_message" && e.text === "recorded hello",
        5_000,
      );
      alice.handle.sendMessage(fromHex(bob.realHex, 32), "recorded hello");
      await got;
    } finally {
      await alice.close();
      await bob.close();
      await recorder.close();
    }
    const st = recorder.stats();
    assert.ok(st.framesWritten > 10 && st.framesDropped === 0, JSON.stringify(st));
    assert.ok(st.keysLogged >= 2, "a TCP session and a net_crypto session");
    for (const f of ["alice.pcapng", "keys.log"]) {
      assert.equal(((await Deno.stat(`${dir}/${f}`)).mode ?? 0) & 0o777, 0o600, f);
    }
    const parsed = parseKeylog(await Deno.readTextFile(`${dir}/keys.log`));
    assert.deepEqual(parsed.problems, []);
    assert.deepEqual(
      [...new Set(parsed.entries.map((e) => e.kind))].sort(),
      ["net_crypto", "tcp_session"],
    );

    // The capture holds its own keys (DSBs) before the frames they open.
    const reader = new CaptureReader();
    reader.push(await Deno.readFile(`${dir}/alice.pcapng`));
    reader.end();
    const kinds: string[] = [];
    for (let r = reader.next(); r !== null; r = reader.next()) kinds.push(r.kind);
    assert.ok(!kinds.includes("error"));
    assert.ok(kinds.includes("secrets") && kinds.includes("packet"));

    for (const args of [[], ["--keylog", `${dir}/keys.log`]]) {
      const r = await decodeJson([`${dir}/alice.pcapng`, ...args]);
      assert.equal(r.code, 0, r.err);
      const records = r.lines.filter((l) => l.notice === undefined);
      assert.ok(records.length > 5);
      const undecrypted = records.filter((l) =>
        l.layers.some((x: { proto: string; kind?: string; decrypted?: boolean }) =>
          (x.proto === "tcp_frame" || (x.proto === "net_crypto" && x.kind === "data")) &&
          x.decrypted === false
        )
      );
      assert.deepEqual(undecrypted, [], "everything opens");
      const texts = records.flatMap((l) =>
        l.layers.filter((x: { kind?: string }) => x.kind === "message").map((
          x: { text: string },
        ) => x.text)
      );
      assert.deepEqual(texts, ["recorded hello"]);
      assert.ok(
        records.some((l) =>
          l.layers.some((x: { kind?: string; text?: string }) =>
            x.kind === "nickname" && x.text === "bob"
          )
        ),
      );
    }
  });
});

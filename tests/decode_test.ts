/**
 * `deno task decode` at its boundary (tools/decode.ts main): a capture made by the real
 * codecs (tools/testbed/capture_fixture.ts) printed as lines, JSON, stats and a followed stream;
 * filters; keys from a key log file or from inside the capture; damaged files reported with
 * the byte offset and everything before them still printed; bad arguments refused.
 */
import assert from "node:assert/strict";
import { main } from "../tools/decode.ts";
import { buildCaptureFixture } from "../tools/testbed/capture_fixture.ts";
import { decryptionSecretsBlock } from "../daemon/core/capture/pcapng_writer.ts";
import { SECRETS_TYPE_TOX_KEYLOG } from "../daemon/core/capture/keylog.ts";
import { toHex } from "../daemon/core/common/crypto.ts";
import { withTempDir } from "./support/temp_dir.ts";

async function run(args: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
  });
  return { code, stdout, stderr, lines: stdout.split("\n").filter((l) => l !== "") };
}

const fixture = buildCaptureFixture({ messages: 20 });

async function files(dir: string) {
  const cap = `${dir}/f.pcapng`;
  const keys = `${dir}/keys.log`;
  await Deno.writeFile(cap, fixture.pcapng);
  await Deno.writeTextFile(keys, fixture.keylog);
  return { cap, keys };
}

Deno.test("decode: without keys, handshakes and encrypted frames with sizes and directions", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { cap } = await files(dir);
    const r = await run([cap]);
    assert.equal(r.code, 0, r.stderr);
    const hs = r.lines.filter((l) => l.includes("Handshake request"));
    assert.equal(hs.length, 2);
    assert.ok(hs[0].includes(toHex(fixture.a.dht.publicKey).slice(0, 8)), hs[0]);
    assert.ok(r.lines.some((l) => /Encrypted frame #0 len=\d+ \[no key\]/.test(l)));
    assert.ok(!r.stdout.includes("message 3"), "nothing opens without keys");
    assert.match(r.stderr, /no key log given/);
  });
});

Deno.test("decode: with the key log, relay packets by name and Messenger text", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { cap, keys } = await files(dir);
    const r = await run([cap, "--keylog", keys]);
    assert.equal(r.code, 0, r.stderr);
    for (
      const want of [
        "ROUTING_REQUEST",
        "ROUTING_RESPONSE conn=16",
        "CONNECTION_NOTIFICATION conn=16",
        "PING id=",
        "PONG id=",
        "ONLINE",
        'NICKNAME "alice"',
        'MESSAGE "message 7"',
        'MESSAGE "reply to 9"',
        "DISCONNECT_NOTIFICATION conn=16",
        `ONION_REQUEST len=354 › ONION next=${fixture.onion.next} key=${
          toHex(fixture.onion.requestKey).slice(0, 8)
        }…`,
        `ONION_RESPONSE len=82 › ANNOUNCE_RESPONSE sendback=${
          toHex(fixture.onion.sendback)
        } (no nodes)`,
        `DATA_RESPONSE key=${toHex(fixture.onion.dataKey).slice(0, 8)}…`,
      ]
    ) {
      assert.ok(r.lines.some((l) => l.includes(want)), `${want} in:\n${r.stdout.slice(0, 3000)}`);
    }
    // Each message twice: A → relay, then relay → B.
    assert.equal(r.lines.filter((l) => l.includes('"message 7"')).length, 2);
    assert.ok(!r.stdout.includes("[no key]"));
  });
});

Deno.test("decode: keys inside the capture (Decryption Secrets Block) are enough", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const dsb = decryptionSecretsBlock(
      SECRETS_TYPE_TOX_KEYLOG,
      new TextEncoder().encode(fixture.keylog),
    );
    // After the SHB and IDB (their lengths are in their headers), before the first packet.
    const view = new DataView(fixture.pcapng.buffer, fixture.pcapng.byteOffset);
    const shb = view.getUint32(4, true);
    const idb = view.getUint32(shb + 4, true);
    const at = shb + idb;
    const withKeys = new Uint8Array(fixture.pcapng.length + dsb.length);
    withKeys.set(fixture.pcapng.subarray(0, at), 0);
    withKeys.set(dsb, at);
    withKeys.set(fixture.pcapng.subarray(at), at + dsb.length);
    await Deno.writeFile(`${dir}/k.pcapng`, withKeys);
    const r = await run([`${dir}/k.pcapng`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.lines.some((l) => l.includes('MESSAGE "message 19"')));
  });
});

Deno.test("decode: --json objects carry every layer", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { cap, keys } = await files(dir);
    const r = await run([cap, "--keylog", keys, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const objs = r.lines.map((l) => JSON.parse(l));
    const msg = objs.find((o) =>
      o.layers?.some((l: { kind?: string; text?: string }) =>
        l.kind === "message" && l.text === "message 0"
      )
    );
    assert.ok(msg, "a message record");
    assert.deepEqual(msg.layers.map((l: { proto: string }) => l.proto), [
      "tcp_frame",
      "relay",
      "net_crypto",
      "friend",
    ]);
    assert.equal(msg.protocol, "MESSENGER");
    assert.equal(msg.client, toHex(fixture.a.dht.publicKey));
    assert.equal(msg.relay, toHex(fixture.relay.publicKey));
    assert.equal(msg.layers[1].publicKey, toHex(fixture.b.dht.publicKey));
    assert.match(msg.time, /^\d+\.\d{9}$/);
    const onion = objs.filter((o) => o.protocol === "TOX-ONION").map((o) => o.layers[2]);
    assert.deepEqual(onion, [
      {
        proto: "onion",
        kind: "request",
        next: fixture.onion.next,
        tmpPublicKey: toHex(fixture.onion.requestKey),
        length: 354,
      },
      {
        proto: "onion",
        kind: "announce_response",
        sendback: toHex(fixture.onion.sendback),
        length: 82,
      },
      {
        proto: "onion",
        kind: "data_response",
        tmpPublicKey: toHex(fixture.onion.dataKey),
        length: 121 + 41, // a DHT-PK without nodes inside
      },
    ]);
  });
});

Deno.test("decode: filters by type, stream, direction, peer, connection and time", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { cap, keys } = await files(dir);
    const only = async (f: string) => (await run([cap, "--keylog", keys, "--filter", f])).lines;
    assert.equal((await only("type=message")).length, 2 * (20 + 2));
    assert.equal((await only("type=message stream=1")).length, 20 + 2);
    assert.equal((await only("type=message stream=1 dir=s2c")).length, 20);
    assert.equal((await only("type=ping|pong")).length, 2);
    assert.equal((await only("type=ping from=relay")).length, 0);
    assert.equal((await only("type=onion")).length, 3);
    assert.equal((await only("type=onion_request")).length, 1);
    assert.equal((await only("type=announce_response|data_response from=relay")).length, 2);
    const bKey = toHex(fixture.b.dht.publicKey).slice(0, 10);
    assert.ok((await only(`peer=${bKey} stream=0`)).every((l) => /s0 /.test(l)));
    assert.ok((await only("conn=16")).length > 40);
    assert.equal((await only("conn=17")).length, 0);
    assert.equal((await only("time=1000..")).length, 0);
    assert.ok((await only("time=..1000")).length > 40);
    const bad = await run([cap, "--filter", "colour=red"]);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /unknown filter key "colour"/);
  });
});

Deno.test("decode: --stats sums streams, types, pings, routing and sessions", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { cap, keys } = await files(dir);
    const text = await run([cap, "--keylog", keys, "--stats"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /relay streams/);
    assert.match(text.stdout, /routing events/);
    const j = await run([cap, "--keylog", keys, "--stats", "--json"]);
    const s = JSON.parse(j.stdout);
    assert.equal(s.streams.length, 2);
    assert.equal(s.streams[0].keyed, true);
    assert.equal(s.streams[0].ping.n, 1);
    assert.ok(s.streams[0].handshake_ms >= 0);
    assert.deepEqual(
      s.streams.map((x: Record<string, number>) => [x.onion_requests, x.onion_responses]),
      [[1, 2], [0, 0]],
    );
    assert.match(text.stdout, /onion →\/←/);
    const onion = s.types.find((t: { type: string; from: string }) =>
      t.type === "TOX-ONION request" && t.from === "client"
    );
    assert.equal(onion.packets, 1);
    const msg = s.types.find((t: { type: string; from: string }) =>
      t.type === "MESSENGER message" && t.from === "client"
    );
    assert.equal(msg.packets, 22);
    assert.equal(
      s.routing.filter((e: { kind: string }) => e.kind === "routing_response").length,
      2,
    );
    assert.equal(s.sessions.length, 1);
    assert.equal(s.sessions[0].decrypted, 2 * (4 + 22));
  });
});

Deno.test("decode: --follow shows one stream, every field", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { cap, keys } = await files(dir);
    const r = await run([cap, "--keylog", keys, "--follow", "1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /friend: id=64 kind=message lossy=false length=\d+ text="message 3"/);
    const heads = r.lines.filter((l) => l.startsWith("▶") || l.startsWith("◀"));
    assert.ok(heads.length > 20);
    assert.ok(heads.every((l) => l.includes(":40002")), "only stream 1 (B's connection)");
  });
});

Deno.test("decode: a truncated capture prints what came before and exits 2 with the offset", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    const { keys } = await files(dir);
    const cut = fixture.pcapng.subarray(0, Math.floor(fixture.pcapng.length * 0.6) + 3);
    await Deno.writeFile(`${dir}/cut.pcapng`, cut);
    const r = await run([`${dir}/cut.pcapng`, "--keylog", keys]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /damaged: truncated at byte \d+/);
    assert.ok(r.lines.some((l) => l.includes('MESSAGE "message 0"')), "the start was decoded");
  });
});

Deno.test("decode: garbage, empty and missing files, bad key logs: errors, never a crash", async () => {
  await withTempDir("toxtcp-decode-", async (dir) => {
    await Deno.writeFile(`${dir}/junk`, new TextEncoder().encode("this is not a capture file\n"));
    const junk = await run([`${dir}/junk`]);
    assert.equal(junk.code, 2);
    assert.match(junk.stderr, /byte 0/);
    await Deno.writeFile(`${dir}/empty`, new Uint8Array());
    const empty = await run([`${dir}/empty`]);
    assert.notEqual(empty.code, 1);
    assert.equal((await run([`${dir}/nope.pcap`])).code, 1);
    assert.equal((await run([])).code, 64);
    assert.equal((await run(["a", "b"])).code, 64);
    assert.equal((await run(["a", "--follow", "x"])).code, 64);
    const { cap } = await files(dir);
    await Deno.writeTextFile(`${dir}/bad.log`, "TCP_SESSION 12 34\nNOPE\n" + fixture.keylog);
    const r = await run([cap, "--keylog", `${dir}/bad.log`]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /bad\.log:1: TCP_SESSION: 2 fields, expected 5/);
    assert.ok(r.lines.some((l) => l.includes('MESSAGE "message 1"')), "the good lines still work");
    assert.equal((await run([cap, "--keylog", `${dir}/missing.log`])).code, 1);
  });
});

Deno.test("decode: every prefix and random corruption of a capture decodes without throwing", async () => {
  const small = buildCaptureFixture({ messages: 2, seed: 7 });
  await withTempDir("toxtcp-decode-", async (dir) => {
    await Deno.writeTextFile(`${dir}/k.log`, small.keylog);
    let s = 12345;
    const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const step = Math.max(1, Math.floor(small.pcapng.length / 150));
    const cases: Uint8Array[] = [];
    for (let n = 0; n < small.pcapng.length; n += step) cases.push(small.pcapng.subarray(0, n));
    for (let i = 0; i < 150; i++) {
      const m = small.pcapng.slice();
      for (let k = 0; k < 1 + Math.floor(rnd() * 8); k++) {
        m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
      }
      cases.push(m);
    }
    for (const c of cases) {
      await Deno.writeFile(`${dir}/c.pcapng`, c);
      const r = await run([`${dir}/c.pcapng`, "--keylog", `${dir}/k.log`]);
      assert.ok([0, 2].includes(r.code), `exit ${r.code}: ${r.stderr}`);
    }
  });
});

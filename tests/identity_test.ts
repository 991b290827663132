/** The Tox ID and the identity file: hand-worked checksums, creation, and refusing bad files. */
import assert from "node:assert/strict";
import { fromHex, publicKeyOf, type RandomBytes, toHex } from "../daemon/core/common/crypto.ts";
import {
  IdentityError,
  loadOrCreateIdentity,
  parseFriendKey,
  toxId,
} from "../daemon/shell/identity.ts";
import { listDir, withTempDir as inTempDir } from "./support/temp_dir.ts";

/** Deterministic bytes, different per seed, so two "random" identities differ. */
function counterRandom(seed: number): RandomBytes {
  let next = seed;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = (next++ * 37 + 11) & 0xff;
    return out;
  };
}

const withTempDir = (fn: (dir: string) => Promise<void>) => inTempDir("identity_test_", fn);

async function modeOf(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

const SECRET_HEX = "c4a9e3b17d205f6e98b3a1c07e4d2f5b61a8093cd7e2b4f1059a6c3e8d1b7f20";

/** Any 10-digit run of the key counts: V8's JSON errors quote about that much of the text. */
function showsKey(text: string, keyHex: string): boolean {
  const t = text.toLowerCase();
  for (let i = 0; i + 10 <= keyHex.length; i++) {
    if (t.includes(keyHex.slice(i, i + 10))) return true;
  }
  return false;
}

Deno.test("Tox ID: hand-worked checksum of a zero key and nospam 01020304", () => {
  const id = toxId(new Uint8Array(32), Uint8Array.of(1, 2, 3, 4));
  // c0 = 0x01 ^ 0x03 = 0x02 (even bytes), c1 = 0x02 ^ 0x04 = 0x06 (odd bytes).
  assert.equal(id, "00".repeat(32) + "010203040206");
  assert.equal(id.length, 76);
});

Deno.test("Tox ID: hand-worked checksum that depends on the public key too", () => {
  const pk = new Uint8Array(32);
  pk[0] = 0x80; // even index → c0
  pk[31] = 0x01; // odd index → c1
  const id = toxId(pk, Uint8Array.of(0xde, 0xad, 0xbe, 0xef));
  // c0 = 0x80 ^ 0xde ^ 0xbe = 0xe0, c1 = 0x01 ^ 0xad ^ 0xef = 0x43.
  assert.equal(id, "80" + "00".repeat(30) + "01" + "DEADBEEF" + "E043");
  assert.throws(() => toxId(new Uint8Array(31), new Uint8Array(4)), TypeError);
  assert.throws(() => toxId(new Uint8Array(32), new Uint8Array(3)), TypeError);
});

Deno.test("friend key: a Tox ID round-trips, any case, surrounding whitespace ignored", () => {
  const pk = publicKeyOf(fromHex(SECRET_HEX));
  const nospam = Uint8Array.of(0x12, 0x34, 0xab, 0xcd);
  const id = toxId(pk, nospam);
  assert.match(id, /^[0-9A-F]{76}$/);
  for (const text of [id, id.toLowerCase(), `  ${id}\n`]) {
    const r = parseFriendKey(text);
    assert.ok(r.ok, text);
    assert.deepEqual(r.publicKey, pk);
    assert.deepEqual(r.nospam, nospam);
  }
});

Deno.test("friend key: a bare 64-hex public key is accepted without nospam", () => {
  const pk = publicKeyOf(fromHex(SECRET_HEX));
  const r = parseFriendKey(` ${toHex(pk).toUpperCase()} `);
  assert.ok(r.ok);
  assert.deepEqual(r.publicKey, pk);
  assert.equal(r.nospam, null);
});

Deno.test("friend key: a flipped checksum digit is rejected, saying it is the checksum", () => {
  const id = toxId(new Uint8Array(32), Uint8Array.of(1, 2, 3, 4));
  const flipped = id.slice(0, 75) + (id[75] === "6" ? "7" : "6");
  const r = parseFriendKey(flipped);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.message : "", /checksum/);
  // A flipped digit in the key part breaks the checksum just the same.
  const r2 = parseFriendKey("1" + id.slice(1));
  assert.equal(r2.ok, false);
  assert.match(!r2.ok ? r2.message : "", /checksum/);
});

Deno.test("friend key: wrong lengths, non-hex and empty input are clear errors", () => {
  const id = toxId(new Uint8Array(32), Uint8Array.of(1, 2, 3, 4));
  const cases: [string, RegExp][] = [
    ["a".repeat(63), /63 hex digits.*76-digit Tox ID or a 64-digit public key/],
    ["a".repeat(65), /65 hex digits/],
    [id.slice(0, 75), /75 hex digits/],
    [id + "0", /77 hex digits/],
    ["g".repeat(64), /non-hex character at position 1/],
    [id.slice(0, 40) + " " + id.slice(41), /non-hex character at position 41/],
    ["", /empty/],
    ["   \n", /empty/],
  ];
  for (const [text, message] of cases) {
    const r = parseFriendKey(text);
    assert.equal(r.ok, false, text);
    assert.match(!r.ok ? r.message : "", message, text);
  }
});

Deno.test("identity: the first run creates a 0600 file, later runs load the same keys", async () => {
  await withTempDir(async (dir) => {
    const first = await loadOrCreateIdentity(dir, counterRandom(1));
    assert.equal(first.created, true);
    assert.deepEqual(first.warnings, []);
    const path = `${dir}/identity.json`;
    assert.equal(first.identity.path, path);
    assert.equal(await modeOf(path), 0o600);
    assert.deepEqual(await listDir(dir), ["identity.json"], "no temp file left behind");

    const doc = JSON.parse(await Deno.readTextFile(path));
    assert.deepEqual(Object.keys(doc), ["version", "secret_key", "nospam"]);
    assert.equal(doc.version, 1);
    assert.equal(doc.secret_key, toHex(first.identity.keys.secretKey));
    assert.equal(doc.nospam, toHex(first.identity.nospam));
    assert.match(doc.secret_key, /^[0-9a-f]{64}$/);
    assert.match(doc.nospam, /^[0-9a-f]{8}$/);
    assert.deepEqual(first.identity.keys.publicKey, publicKeyOf(first.identity.keys.secretKey));
    assert.equal(
      first.identity.toxId,
      toxId(first.identity.keys.publicKey, first.identity.nospam),
    );

    const before = await Deno.readFile(path);
    const second = await loadOrCreateIdentity(dir, counterRandom(2));
    assert.equal(second.created, false);
    assert.deepEqual(second.identity.keys.secretKey, first.identity.keys.secretKey);
    assert.deepEqual(second.identity.keys.publicKey, first.identity.keys.publicKey);
    assert.deepEqual(second.identity.nospam, first.identity.nospam);
    assert.deepEqual(await Deno.readFile(path), before);
  });
});

Deno.test("identity: the public key is derived from the stored secret key", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/identity.json`,
      JSON.stringify({ version: 1, secret_key: SECRET_HEX.toUpperCase(), nospam: "0a0b0c0d" }),
      { mode: 0o600 },
    );
    const { identity, created } = await loadOrCreateIdentity(dir, counterRandom(3));
    assert.equal(created, false);
    assert.equal(toHex(identity.keys.secretKey), SECRET_HEX);
    assert.deepEqual(identity.keys.publicKey, publicKeyOf(fromHex(SECRET_HEX)));
    assert.deepEqual(identity.nospam, Uint8Array.of(10, 11, 12, 13));
  });
});

Deno.test("identity: two concurrent first runs end with one file and the same keys", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = await Promise.all([
      loadOrCreateIdentity(dir, counterRandom(10)),
      loadOrCreateIdentity(dir, counterRandom(99)),
    ]);
    assert.deepEqual(a.identity.keys.secretKey, b.identity.keys.secretKey);
    assert.deepEqual(a.identity.nospam, b.identity.nospam);
    assert.equal([a.created, b.created].filter((c) => c).length, 1);
    assert.deepEqual(await listDir(dir), ["identity.json"]);
  });
});

Deno.test("identity: corrupt files are refused, left byte for byte, secret never quoted", async () => {
  const enc = new TextEncoder();
  const cases: [string, Uint8Array, RegExp][] = [
    ["garbage", enc.encode(`garbage ${SECRET_HEX}`), /not valid JSON/],
    ["bare key", enc.encode(`${SECRET_HEX}\n`), /not valid JSON/],
    ["empty", new Uint8Array(0), /empty/],
    ["truncated", enc.encode(`{"version":1,"secret_key":"${SECRET_HEX}","nos`), /not valid JSON/],
    // V8's own message would quote this part of the text, secret included.
    ["unquoted key", enc.encode(`{"version":1,"secret_key":${SECRET_HEX}}`), /not valid JSON/],
    ["array", enc.encode(`["${SECRET_HEX}"]`), /not a JSON object/],
    [
      "short key",
      enc.encode(
        JSON.stringify({ version: 1, secret_key: SECRET_HEX.slice(2), nospam: "01020304" }),
      ),
      /"secret_key" is not 64 hex digits/,
    ],
    [
      "non-hex key",
      enc.encode(
        JSON.stringify({ version: 1, secret_key: "zz" + SECRET_HEX.slice(2), nospam: "01020304" }),
      ),
      /"secret_key" is not 64 hex digits/,
    ],
    [
      "bad nospam",
      enc.encode(JSON.stringify({ version: 1, secret_key: SECRET_HEX, nospam: "010203" })),
      /"nospam" is not 8 hex digits/,
    ],
    [
      "no version",
      enc.encode(JSON.stringify({ secret_key: SECRET_HEX, nospam: "01020304" })),
      /no "version"/,
    ],
    [
      "version 2",
      enc.encode(JSON.stringify({ version: 2, secret_key: SECRET_HEX, nospam: "01020304" })),
      /version 2 is not supported/,
    ],
    [
      "extra field",
      enc.encode(
        JSON.stringify({ version: 1, secret_key: SECRET_HEX, nospam: "01020304", x: SECRET_HEX }),
      ),
      /unexpected field "x"/,
    ],
    ["not UTF-8", Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), /not UTF-8/],
  ];
  for (const [name, bytes, reason] of cases) {
    await withTempDir(async (dir) => {
      const path = `${dir}/identity.json`;
      await Deno.writeFile(path, bytes, { mode: 0o600 });
      const err = await loadOrCreateIdentity(dir, counterRandom(4)).then(
        () => assert.fail(`${name}: loaded`),
        (e) => e,
      );
      assert.ok(err instanceof IdentityError, name);
      assert.equal(err.code, "corrupt", name);
      assert.equal(err.path, path);
      assert.match(err.message, reason, name);
      assert.ok(err.message.includes(path), `${name}: names the file`);
      assert.match(err.message, /left untouched/, name);
      const shown = `${err.message} ${String(err)} ${err.stack} ${Deno.inspect(err)}`;
      assert.ok(!showsKey(shown, SECRET_HEX), `${name}: leaks the key`);
      assert.deepEqual(await Deno.readFile(path), bytes, `${name}: file changed`);
      assert.equal(await modeOf(path), 0o600);
      assert.deepEqual(await listDir(dir), ["identity.json"], `${name}: stray files`);
    });
  }
});

Deno.test("identity: a directory where the file should be is 'unreadable' and left alone", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.json`;
    await Deno.mkdir(path);
    await Deno.writeTextFile(`${path}/keep`, "x");
    const err = await loadOrCreateIdentity(dir, counterRandom(5)).then(
      () => assert.fail("loaded"),
      (e) => e,
    );
    assert.ok(err instanceof IdentityError);
    assert.equal(err.code, "unreadable");
    assert.ok(err.message.includes(path));
    assert.match(err.message, /not a regular file.*left untouched/);
    assert.ok((await Deno.stat(path)).isDirectory);
    assert.equal(await Deno.readTextFile(`${path}/keep`), "x");
    assert.deepEqual(await listDir(dir), ["identity.json"]);
  });
});

Deno.test("identity: a missing data directory is create_failed, nothing is made", async () => {
  await withTempDir(async (dir) => {
    const err = await loadOrCreateIdentity(`${dir}/absent`, counterRandom(6)).then(
      () => assert.fail("created"),
      (e) => e,
    );
    assert.ok(err instanceof IdentityError);
    assert.equal(err.code, "create_failed");
    assert.ok(err.message.includes(`${dir}/absent/identity.json`));
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("identity: a 0644 file is tightened to 0600, with a warning", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.json`;
    const text = JSON.stringify({ version: 1, secret_key: SECRET_HEX, nospam: "01020304" });
    await Deno.writeTextFile(path, text);
    await Deno.chmod(path, 0o644);
    const { identity, created, warnings } = await loadOrCreateIdentity(dir, counterRandom(7));
    assert.equal(created, false);
    assert.equal(toHex(identity.keys.secretKey), SECRET_HEX);
    assert.equal(await modeOf(path), 0o600);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /0644.*0600/);
    assert.ok(warnings[0].includes(path));
    assert.equal(await Deno.readTextFile(path), text, "content untouched");
  });
});

Deno.test("identity: JSON, strings and console output never show the secret key", async () => {
  await withTempDir(async (dir) => {
    const { identity } = await loadOrCreateIdentity(dir, counterRandom(8));
    const secret = toHex(identity.keys.secretKey);
    const shown = [
      JSON.stringify(identity),
      JSON.stringify({ identity, keys: identity.keys }),
      String(identity),
      String(identity.keys),
      Deno.inspect(identity),
      Deno.inspect(identity.keys),
      Deno.inspect({ nested: identity }),
    ];
    for (const s of shown) {
      assert.ok(!showsKey(s, secret), s);
      assert.ok(!s.includes(String(identity.keys.secretKey)), s);
    }
    assert.ok(JSON.stringify(identity).includes(identity.toxId));
    // Still plain data for postMessage to a Worker.
    const cloned = structuredClone(identity.keys);
    assert.deepEqual(cloned.secretKey, identity.keys.secretKey);
    assert.deepEqual(cloned.publicKey, identity.keys.publicKey);
  });
});

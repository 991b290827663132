/** state.json: the exact format, strict loading, atomic saves, and the coalescing StateStore. */
import assert from "node:assert/strict";
import {
  answerRequest,
  decodeState,
  emptyState,
  encodeState,
  loadState,
  MAX_SAVED_REQUESTS,
  receiveRequest,
  type SavedState,
  saveState,
  StateError,
  StateStore,
} from "../daemon/shell/state_store.ts";
import { listDir, withTempDir as inTempDir } from "./support/temp_dir.ts";

const PK_A = "6bbf183586e9645f7ab2c73d6dcaf1456d1ab1da1afb8c077fb2a7176fa7f865";
const PK_B = "1c5293aeae6b4e3fce1b34d3c23c7d4a8bb64f5a8c63b1f87e57f04e4d8a3c11";
const PK_C = "8e7d0b269d2d34bba1ae7c5b5fd5c0d6a3e6f1a5d7c2b97f0e9a23cc41de7a02";

const withTempDir = (fn: (dir: string) => Promise<void>) => inTempDir("state_store_test_", fn);

function sample(): SavedState {
  return {
    profile: { name: "Alice ✓", statusMessage: 'on the "TCP" only path' },
    relays: [
      { host: "127.0.0.1", port: 33445, publicKey: PK_A },
      { host: "::1", port: 3389, publicKey: PK_B },
    ],
    friends: [
      {
        publicKey: PK_B,
        dhtPublicKey: PK_C,
        relays: [{ host: "tox.example.org", port: 443, publicKey: PK_A }],
        addedAt: 1_700_000_000_123,
      },
      { publicKey: PK_C, relays: [], addedAt: 0 },
    ],
    requests: [],
  };
}

const SAMPLE_TEXT = `{
  "version": 1,
  "profile": {
    "name": "Alice ✓",
    "status_message": "on the \\"TCP\\" only path"
  },
  "relays": [
    "127.0.0.1:33445:${PK_A}",
    "[::1]:3389:${PK_B}"
  ],
  "friends": [
    {
      "public_key": "${PK_B}",
      "dht_public_key": "${PK_C}",
      "relays": [
        "tox.example.org:443:${PK_A}"
      ],
      "added_at": 1700000000123
    },
    {
      "public_key": "${PK_C}",
      "added_at": 0
    }
  ]
}
`;

Deno.test("state format: encodeState writes exactly the documented file, decodeState reads it", () => {
  assert.equal(encodeState(sample()), SAMPLE_TEXT);
  assert.deepEqual(decodeState(SAMPLE_TEXT), sample());
  assert.equal(
    encodeState(emptyState()),
    `{\n  "version": 1,\n  "profile": {\n    "name": "",\n    "status_message": ""\n  },\n` +
      `  "relays": [],\n  "friends": []\n}\n`,
  );
});

Deno.test("state format: hex is read in any case and written lower-case", () => {
  const upper = SAMPLE_TEXT.replaceAll(PK_A, PK_A.toUpperCase()).replaceAll(
    PK_B,
    PK_B.toUpperCase(),
  );
  const state = decodeState(upper);
  assert.deepEqual(state, sample());
  assert.equal(encodeState(state), SAMPLE_TEXT);
});

Deno.test("state format: encodeState refuses a state that would not load back", () => {
  const bad: [string, (s: SavedState) => void, RegExp][] = [
    ["friend key", (s) => (s.friends[0].publicKey = "abc"), /friends\[0\]\.public_key/],
    ["dht key", (s) => (s.friends[1].dhtPublicKey = "x"), /friends\[1\]\.dht_public_key/],
    ["relay key", (s) => (s.relays[1] = { ...s.relays[1], publicKey: "nope" }), /relays\[1\]/],
    ["relay port", (s) => (s.relays[0] = { ...s.relays[0], port: 0 }), /relays\[0\].*port/],
    ["added_at", (s) => (s.friends[0].addedAt = 1.5), /friends\[0\]\.added_at/],
    ["name", (s) => (s.profile.name = "x".repeat(129)), /profile\.name is 129 bytes/],
    ["duplicate", (s) => (s.friends[1].publicKey = PK_B), /friends\[1\].*same friend/],
  ];
  for (const [name, mutate, message] of bad) {
    const s = sample();
    mutate(s);
    assert.throws(() => encodeState(s), (e: Error) => {
      assert.ok(e instanceof TypeError, name);
      assert.match(e.message, message, name);
      return true;
    });
  }
});

Deno.test("state: save then load round-trips, mode 0600, no temp file left", async () => {
  await withTempDir(async (dir) => {
    await saveState(dir, sample());
    const path = `${dir}/state.json`;
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(path), SAMPLE_TEXT);
    assert.deepEqual(await loadState(dir), sample());
    assert.deepEqual(await listDir(dir), ["state.json"]);

    // Replacing keeps 0600 even when the old file had been loosened.
    await Deno.chmod(path, 0o644);
    const next = sample();
    next.profile.name = "Bob";
    await saveState(dir, next);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.deepEqual(await loadState(dir), next);
    assert.deepEqual(await listDir(dir), ["state.json"]);
  });
});

Deno.test("state: a missing file is the empty state", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(await loadState(dir), {
      profile: { name: "", statusMessage: "" },
      relays: [],
      friends: [],
      requests: [],
    });
    assert.deepEqual(await listDir(dir), [], "loading creates nothing");
  });
});

Deno.test("state: corrupt files are refused naming the field, and left untouched", async () => {
  const doc = () => JSON.parse(SAMPLE_TEXT);
  const three = () => {
    const d = doc();
    d.friends.push({ public_key: PK_A, added_at: 5 });
    return d;
  };
  const json = (d: unknown) => JSON.stringify(d);
  const cases: [string, string | Uint8Array, RegExp][] = [
    ["not JSON", "{ friends: [", /not valid JSON/],
    ["empty", "", /not valid JSON/],
    ["array", "[]", /the document is not an object/],
    ["no version", json({ ...doc(), version: undefined }), /"version" is missing/],
    ["version 2", json({ ...doc(), version: 2 }), /version 2 is not supported/],
    ["version string", json({ ...doc(), version: "1" }), /version "1" is not supported/],
    [
      "bad friend key",
      json((() => {
        const d = three();
        d.friends[2].public_key = PK_A.slice(1);
        return d;
      })()),
      /friends\[2\]\.public_key is not 64 hex digits/,
    ],
    [
      "non-hex friend key",
      json((() => {
        const d = three();
        d.friends[2].public_key = "g" + PK_A.slice(1);
        return d;
      })()),
      /friends\[2\]\.public_key is not 64 hex digits/,
    ],
    [
      "bad dht key",
      json((() => {
        const d = doc();
        d.friends[0].dht_public_key = 7;
        return d;
      })()),
      /friends\[0\]\.dht_public_key is not 64 hex digits/,
    ],
    [
      "bad relay spec",
      json({ ...doc(), relays: [`127.0.0.1:33445:${PK_A}`, `127.0.0.1:99999:${PK_A}`] }),
      /relays\[1\]: .*port/,
    ],
    [
      "relay not a string",
      json({ ...doc(), relays: [{ host: "127.0.0.1" }] }),
      /relays\[0\] is not a string/,
    ],
    [
      "bad friend relay",
      json((() => {
        const d = doc();
        d.friends[0].relays = ["nonsense"];
        return d;
      })()),
      /friends\[0\]\.relays\[0\]: .*HOST:PORT:PUBKEY/,
    ],
    [
      "missing added_at",
      json((() => {
        const d = doc();
        delete d.friends[1].added_at;
        return d;
      })()),
      /friends\[1\]\.added_at/,
    ],
    [
      "duplicate friend",
      json((() => {
        const d = doc();
        d.friends[1].public_key = PK_B.toUpperCase();
        return d;
      })()),
      /friends\[1\]\.public_key is the same friend as friends\[0\]/,
    ],
    ["unknown field", json({ ...doc(), groups: [] }), /unexpected field "groups"/],
    ["friends missing", json({ ...doc(), friends: undefined }), /friends is not an array/],
    ["profile name", json({ ...doc(), profile: { name: 3, status_message: "" } }), /profile\.name/],
    [
      "status too long",
      json({ ...doc(), profile: { name: "", status_message: "é".repeat(504) } }),
      /profile\.status_message is 1008 bytes, over the limit of 1007/,
    ],
    ["not UTF-8", Uint8Array.of(0x7b, 0xc3, 0x28, 0x7d), /not UTF-8/],
  ];
  for (const [name, content, message] of cases) {
    await withTempDir(async (dir) => {
      const path = `${dir}/state.json`;
      const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
      await Deno.writeFile(path, bytes);
      const err = await loadState(dir).then(() => assert.fail(`${name}: loaded`), (e) => e);
      assert.ok(err instanceof StateError, name);
      assert.equal(err.code, "corrupt", name);
      assert.equal(err.path, path, name);
      assert.match(err.message, message, name);
      assert.ok(err.message.startsWith(`state file ${path} is corrupt: `), name);
      assert.match(err.message, /left untouched/, name);
      assert.deepEqual(await Deno.readFile(path), bytes, `${name}: file changed`);
      assert.deepEqual(await listDir(dir), ["state.json"], name);
    });
  }
});

Deno.test("state: a directory at state.json is 'unreadable'", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/state.json`);
    const err = await loadState(dir).then(() => assert.fail("loaded"), (e) => e);
    assert.ok(err instanceof StateError);
    assert.equal(err.code, "unreadable");
    assert.ok(err.message.includes(`${dir}/state.json`));
    assert.ok((await Deno.stat(`${dir}/state.json`)).isDirectory);
  });
});

Deno.test("state: a save that cannot land rejects and leaves no temp file", async () => {
  await withTempDir(async (dir) => {
    // No such directory: the temp file cannot even be created.
    await assert.rejects(saveState(`${dir}/absent`, sample()), Deno.errors.NotFound);
    assert.deepEqual(await listDir(dir), []);

    // A non-empty directory in the way: the temp file is written, the rename fails.
    await Deno.mkdir(`${dir}/state.json`);
    await Deno.writeTextFile(`${dir}/state.json/keep`, "x");
    await assert.rejects(saveState(dir, sample()));
    assert.deepEqual(await listDir(dir), ["state.json"]);
    assert.equal(await Deno.readTextFile(`${dir}/state.json/keep`), "x");
  });
});

Deno.test("StateStore: 50 rapid updates coalesce; flush lands the last state", async () => {
  await withTempDir(async (dir) => {
    const realRename = Deno.rename;
    let renames = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    Deno.rename = async (from, to) => {
      renames++;
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        // Widen the window in which updates arrive mid-save.
        await new Promise((r) => setTimeout(r, 2));
        return await realRename(from, to);
      } finally {
        inFlight--;
      }
    };
    try {
      const store = new StateStore(dir, emptyState());
      for (let i = 0; i < 50; i++) {
        store.update((s) => {
          s.profile.name = `name ${i}`;
          s.friends.push({ publicKey: i.toString(16).padStart(64, "0"), relays: [], addedAt: i });
        });
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 0));
      }
      await store.flush();
      const onDisk = await loadState(dir);
      assert.equal(onDisk.profile.name, "name 49");
      assert.equal(onDisk.friends.length, 50);
      assert.deepEqual(onDisk, store.state);
      assert.equal(maxInFlight, 1, "two renames raced");
      assert.ok(renames < 50, `saves were not coalesced (${renames} renames)`);
      assert.deepEqual(await listDir(dir), ["state.json"]);
      await store.flush(); // nothing pending: resolves at once
    } finally {
      Deno.rename = realRename;
    }
  });
});

Deno.test("StateStore: state is frozen; a bad update throws and changes nothing", async () => {
  await withTempDir(async (dir) => {
    const store = new StateStore(dir, sample());
    assert.throws(() => {
      (store.state.profile as { name: string }).name = "x";
    }, TypeError);
    assert.throws(
      () => store.update((s) => void (s.friends[0].publicKey = "bad")),
      /friends\[0\]\.public_key/,
    );
    assert.deepEqual(store.state, sample());
    store.update((s) => ({ ...s, relays: [] }));
    await store.flush();
    assert.deepEqual((await loadState(dir)).relays, []);
    assert.deepEqual(
      (await StateStore.open(dir)).state,
      { ...sample(), relays: [] },
    );
  });
});

Deno.test("StateStore: a failed save is reported, flush rejects, a later flush retries", async () => {
  await withTempDir(async (dir) => {
    const errors: unknown[] = [];
    const store = new StateStore(dir, emptyState(), { onSaveError: (e) => errors.push(e) });
    await Deno.mkdir(`${dir}/state.json`);
    await Deno.writeTextFile(`${dir}/state.json/keep`, "x");
    store.update((s) => void (s.profile.name = "kept in memory"));
    await assert.rejects(store.flush());
    assert.ok(errors.length >= 1);
    assert.deepEqual(await listDir(dir), ["state.json"], "no temp file left");

    await Deno.remove(`${dir}/state.json`, { recursive: true });
    await store.flush();
    assert.equal((await loadState(dir)).profile.name, "kept in memory");
  });
});

Deno.test("friend requests both ways survive a save and a load: ours until answered, theirs until accepted or refused", () => {
  const s = sample();
  s.friends[1].request = { nospam: "0a0b0c0d", message: "hi, it's alice ✓" };
  s.requests.push({ publicKey: PK_A, text: "let me in", receivedAt: 1_700_000_000_000 });
  const text = encodeState(s);
  assert.match(text, /"request": \{\s*"nospam": "0a0b0c0d"/);
  assert.match(text, /"requests": \[/);
  assert.deepEqual(decodeState(text), s);
});

Deno.test("a state file without requests (the format before the onion) still loads", () => {
  const s = decodeState(SAMPLE_TEXT);
  assert.deepEqual(s.requests, []);
  assert.equal(s.friends[1].request, undefined);
});

Deno.test("bad friend requests in a state file are refused with the field named", () => {
  const base = JSON.parse(SAMPLE_TEXT);
  const bad = (mutate: (d: Record<string, unknown>) => void, re: RegExp) => {
    const d = structuredClone(base);
    mutate(d);
    assert.throws(() => decodeState(JSON.stringify(d)), re);
  };
  bad(
    (d) => ((d.friends as Record<string, unknown>[])[1].request = { nospam: "xyz", message: "a" }),
    /friends\[1\]\.request\.nospam/,
  );
  bad(
    (
      d,
    ) => ((d.friends as Record<string, unknown>[])[1].request = {
      nospam: "00000000",
      message: "",
    }),
    /request\.message is empty/,
  );
  bad(
    (d) => (d.requests = [{ public_key: PK_A, text: "a", received_at: -1 }]),
    /requests\[0\]\.received_at/,
  );
  bad((d) => (d.requests = [
    { public_key: PK_A, text: "a", received_at: 1 },
    { public_key: PK_A, text: "b", received_at: 2 },
  ]), /listed twice/);
  bad(
    (d) => (d.requests = [{ public_key: PK_A, text: "a", received_at: 1, extra: 1 }]),
    /unexpected field/,
  );
});

Deno.test("requests to us: saved once, not from a friend, the newest 256 kept; answered ones leave", () => {
  const s = sample();
  const at = (i: number) => ({
    publicKey: i.toString(16).padStart(64, "0"),
    text: `#${i}`,
    receivedAt: i,
  });
  assert.deepEqual(receiveRequest(s, at(1)), { outcome: "saved", dropped: null });
  assert.deepEqual(receiveRequest(s, { ...at(1), text: "again" }), { outcome: "known" });
  assert.equal(s.requests[0].text, "#1", "a repeat changes nothing");
  assert.deepEqual(receiveRequest(s, { publicKey: PK_B, text: "hi", receivedAt: 5 }), {
    outcome: "friend",
  });
  for (let i = 2; i <= MAX_SAVED_REQUESTS; i++) receiveRequest(s, at(i));
  assert.equal(s.requests.length, MAX_SAVED_REQUESTS);
  assert.deepEqual(receiveRequest(s, at(1000)), { outcome: "saved", dropped: at(1).publicKey });
  assert.equal(s.requests.length, MAX_SAVED_REQUESTS);
  assert.equal(s.requests.at(-1)!.text, "#1000");
  assert.equal(answerRequest(s, at(2).publicKey), true);
  assert.equal(answerRequest(s, at(2).publicKey), false, "only once");
  assert.equal(s.requests.length, MAX_SAVED_REQUESTS - 1);
  // And the whole list survives the file.
  assert.deepEqual(decodeState(encodeState(s)), s);
});

Deno.test("last_online_at: a friend that has been online is saved as such", () => {
  const s = sample();
  s.friends[0].lastOnlineAt = 1_790_000_000_000;
  const text = encodeState(s);
  assert.match(text, /"last_online_at": 1790000000000/);
  assert.deepEqual(decodeState(text), s);
});

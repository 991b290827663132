/** tools/ctl.ts against a fake control socket that answers canned replies per `cmd`. */
import assert from "node:assert/strict";
import { ControlClient, ControlClientError, main } from "../tools/ctl.ts";
import { defaultSocketPath } from "../daemon/shell/paths.ts";

const PK_A = "a".repeat(64);
const PK_B = "0123456789abcdef".repeat(4);
const RELAY_PK = "6bbf183586e9645f7ab2c73d6dcaf1456d1ab1da1afb8c077fb2a7176fa7f865";
const ADDRESS = "c".repeat(64) + "00000000" + "1234";

const SELF = {
  address: ADDRESS,
  public_key: "c".repeat(64),
  dht_public_key: "d".repeat(64),
  name: "Zoë",
  status_message: "here",
};
const RELAYS = [
  { host: "127.0.0.1", port: 33445, public_key: RELAY_PK, state: "confirmed", rtt_ms: 31.24 },
  { host: "::1", port: 3389, public_key: "e".repeat(64), state: "connecting", rtt_ms: null },
];
const FRIENDS = [
  { public_key: PK_A, online: true, progress: "online", relays: [RELAY_PK], name: "alice" },
  {
    public_key: PK_B,
    online: false,
    progress: "cookie_request",
    relays: [],
    onion: { search_nodes: 2, announced_at: 1 },
    request: { attempts: 2, last_sent_ago_ms: 900 },
  },
];
const REQUESTS = [
  { public_key: PK_B, text: "hi, it's bob", received_at: "2026-11-23T10:00:00.000Z" },
];
const ONION = {
  announced: true,
  stored_at: 1,
  announce_nodes: [{ public_key: RELAY_PK, stored: true }],
  paths: [{}, {}],
  bootstrap_nodes: 1,
};
const STATUS = {
  self: SELF,
  onion: ONION,
  relays: RELAYS,
  friends: FRIENDS,
  uptime_s: 3725,
  version: "0.1.0",
};
const EVENTS = [
  { event: "friend_online", public_key: PK_A, time: "2024-05-06T07:08:09.000Z" },
  { event: "message", public_key: PK_A, kind: "normal", text: "hi there", future_field: [1] },
];

type Req = Record<string, unknown>;

/** A control socket that records requests and answers from canned replies. */
class FakeServer {
  readonly requests: Req[] = [];
  /** Every reply goes out in two writes, cut inside a multi-byte character. */
  split = false;
  /** After `subscribe`'s reply and events: close the connection (else keep it open). */
  closeAfterEvents = true;
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #pairs: Req[] = [];
  #accepting: Promise<void>;

  constructor(readonly path: string) {
    this.#listener = Deno.listen({ transport: "unix", path });
    this.#accepting = this.#accept();
  }

  async close(): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const c of this.#conns) closeQuietly(c);
    await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        const task = this.#serve(conn).finally(() => {
          closeQuietly(conn);
          this.#conns.delete(conn);
          this.#tasks.delete(task);
        });
        this.#tasks.add(task);
      }
    } catch {
      // listener closed
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(4096);
    let text = "";
    while (true) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        return;
      }
      if (n === null) return;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
        const req = JSON.parse(text.slice(0, nl)) as Req;
        text = text.slice(nl + 1);
        this.requests.push(req);
        if ((await this.#answer(conn, req)) === "close") return;
      }
    }
  }

  async #answer(conn: Deno.Conn, req: Req): Promise<"close" | void> {
    const ok = (result: unknown) => this.#reply(conn, { id: req.id, ok: true, result });
    const fail = (code: string, message: string) =>
      this.#reply(conn, { id: req.id, ok: false, error: { code, message } });
    switch (req.cmd) {
      case "self":
        return ok(SELF);
      case "relays":
        return ok(RELAYS);
      case "friends":
        return ok(FRIENDS);
      case "status":
        return ok(STATUS);
      case "requests":
        return ok(REQUESTS);
      case "friend.accept":
        return ok({ public_key: req.public_key, accepted: true });
      case "friend.refuse":
        return fail("no_request", "no friend request from that key");
      case "send":
        return ok({ receipt: 3 });
      case "friend.add":
      case "profile.set":
      case "send.lossless":
        return ok(null);
      case "relay.remove":
        return fail("not_found", "no relay with that key");
      case "subscribe":
        await ok({ subscribed: true });
        for (const e of EVENTS) await write(conn, JSON.stringify(e) + "\n");
        return this.closeAfterEvents ? "close" : undefined;
      case "hang":
        return;
      case "hangup":
        return "close";
      case "garbage":
        await write(conn, "this is not json\n");
        return;
      case "pair": {
        // Two replies (second one first) and an event, all in one write.
        this.#pairs.push(req);
        if (this.#pairs.length < 2) return;
        const [a, b] = this.#pairs.splice(0);
        await write(
          conn,
          [
            { id: b.id, ok: true, result: { n: b.n } },
            { event: "receipt", public_key: PK_A, receipt: 9 },
            { id: a.id, ok: true, result: { n: a.n } },
          ].map((m) => JSON.stringify(m) + "\n").join(""),
        );
        return;
      }
      default:
        return fail("unknown_command", `no command ${JSON.stringify(req.cmd)}`);
    }
  }

  async #reply(conn: Deno.Conn, msg: unknown): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(msg) + "\n");
    if (!this.split) return write(conn, bytes);
    // Cut inside the first multi-byte character (or in the middle), with a pause between.
    let cut = bytes.findIndex((b) => b >= 0x80) + 1;
    if (cut <= 0) cut = bytes.length >> 1;
    await write(conn, bytes.subarray(0, cut));
    await new Promise((r) => setTimeout(r, 20));
    await write(conn, bytes.subarray(cut));
  }
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

async function write(conn: Deno.Conn, data: string | Uint8Array): Promise<void> {
  let bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
  } catch {
    // the client went away
  }
}

interface Run {
  code: number;
  out: string;
  err: string;
}

async function ctl(
  args: string[],
  extra: { env?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Run> {
  let out = "";
  let err = "";
  const code = await main(args, {
    stdout: (s) => out += s,
    stderr: (s) => err += s,
    env: (name) => extra.env?.[name],
    signal: extra.signal,
  });
  return { code, out, err };
}

/** A fresh temp dir with a fake server on `dir/control.sock`. */
async function withServer(fn: (s: FakeServer, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ctl_test_" });
  const server = new FakeServer(`${dir}/control.sock`);
  try {
    await fn(server, dir);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const strip = ({ id: _id, ...rest }: Req) => rest;

Deno.test("socket path: TOXTCP_SOCKET, then XDG_RUNTIME_DIR, XDG_DATA_HOME, HOME", () => {
  const path = (env: Record<string, string>) => defaultSocketPath((n) => env[n]);
  const all = {
    TOXTCP_SOCKET: "/x/s.sock",
    XDG_RUNTIME_DIR: "/run/user/1000",
    XDG_DATA_HOME: "/d",
    HOME: "/home/u",
  };
  assert.equal(path(all), "/x/s.sock");
  assert.equal(path({ ...all, TOXTCP_SOCKET: "" }), "/run/user/1000/toxtcp/control.sock");
  assert.equal(path({ XDG_RUNTIME_DIR: "/run/u/", HOME: "/h" }), "/run/u/toxtcp/control.sock");
  assert.equal(path({ XDG_DATA_HOME: "/d", HOME: "/h" }), "/d/toxtcp/control.sock");
  assert.equal(path({ HOME: "/home/u" }), "/home/u/.local/share/toxtcp/control.sock");
  // Relative XDG values are invalid by the XDG spec and ignored.
  assert.equal(path({ XDG_RUNTIME_DIR: "run", HOME: "/h" }), "/h/.local/share/toxtcp/control.sock");
  assert.throws(() => path({}), /TOXTCP_SOCKET/);
});

Deno.test("--json self prints exactly the result JSON", async () => {
  await withServer(async (s) => {
    const r = await ctl(["--socket", s.path, "--json", "self"]);
    assert.deepEqual(r, { code: 0, out: JSON.stringify(SELF) + "\n", err: "" });
    assert.deepEqual(s.requests, [{ id: 1, cmd: "self" }]);
  });
});

Deno.test("human output: self, relays, friends tables, status summary", async () => {
  await withServer(async (s) => {
    const self = await ctl(["--socket", s.path, "self"]);
    assert.equal(self.code, 0);
    assert.match(self.out, new RegExp(`^address: +${ADDRESS}$`, "m"));
    assert.match(self.out, /^dht_public_key: d{64}$/m);
    assert.match(self.out, /^name: +Zoë$/m);

    const friends = await ctl(["--socket", s.path, "friends"]);
    assert.equal(friends.code, 0);
    const lines = friends.out.trimEnd().split("\n");
    assert.match(lines[0], /^public key +online +progress +name +relays +onion$/);
    assert.match(lines[1], new RegExp(`^${PK_A} +yes +online +alice +1 +-$`));
    assert.match(
      lines[2],
      new RegExp(`^${PK_B} +no +cookie_request +- +0 +found at 1 of 2, request sent 2x$`),
    );

    const relays = await ctl(["--socket", s.path, "relays"]);
    assert.equal(relays.code, 0);
    assert.match(
      relays.out,
      new RegExp(`^127\\.0\\.0\\.1 +33445 +confirmed +31\\.2 ms +${RELAY_PK}$`, "m"),
    );
    assert.match(relays.out, new RegExp(`^::1 +3389 +connecting +- +e{64}$`, "m"));

    const status = await ctl(["--socket", s.path, "status"]);
    assert.equal(status.code, 0);
    assert.match(status.out, new RegExp(`^address: +${ADDRESS}$`, "m"));
    assert.match(status.out, /^relays: +1 up of 2$/m);
    assert.match(status.out, /^friends: +1 online of 2$/m);
    assert.match(
      status.out,
      /^onion: +announced \(stored at 1 of 1 nodes, 2 paths, 1 bootstrap nodes\)$/m,
    );
    assert.match(status.out, /^uptime: +1h 2m 5s$/m);
  });
});

Deno.test("an error reply: exit 1, `error <code>: <message>` (JSON with --json)", async () => {
  await withServer(async (s) => {
    const r = await ctl(["--socket", s.path, "relay", "remove", RELAY_PK]);
    assert.deepEqual(r, { code: 1, out: "", err: "error not_found: no relay with that key\n" });
    assert.deepEqual(strip(s.requests[0]), { cmd: "relay.remove", public_key: RELAY_PK });

    const j = await ctl(["--json", "--socket", s.path, "relay", "remove", RELAY_PK]);
    assert.equal(j.code, 1);
    assert.equal(j.out, "");
    assert.deepEqual(JSON.parse(j.err), { code: "not_found", message: "no relay with that key" });
  });
});

Deno.test("friend add: --dht and repeated --relay become the request's fields", async () => {
  await withServer(async (s) => {
    const relay1 = `127.0.0.1:33445:${RELAY_PK}`;
    const relay2 = `[::1]:3389:${"E".repeat(64)}`;
    const r = await ctl([
      "--socket",
      s.path,
      "friend",
      "add",
      PK_B,
      "--dht",
      PK_A,
      "--relay",
      relay1,
      "--relay",
      relay2,
    ]);
    assert.deepEqual(r, { code: 0, out: "friend added\n", err: "" });
    assert.deepEqual(s.requests, [
      {
        id: 1,
        cmd: "friend.add",
        public_key: PK_B,
        dht_public_key: PK_A,
        relays: [relay1, relay2],
      },
    ]);

    // A 76-hex Tox ID, no hint: no optional fields at all.
    await ctl(["--socket", s.path, "friend", "add", ADDRESS]);
    assert.deepEqual(strip(s.requests[1]), { cmd: "friend.add", public_key: ADDRESS });
  });
});

Deno.test("send joins the words and sets action; other commands confirm in one line", async () => {
  await withServer(async (s) => {
    const r = await ctl(["--socket", s.path, "send", PK_A, "hello", "there", "--action"]);
    assert.deepEqual(r, { code: 0, out: "sent, receipt 3\n", err: "" });
    assert.deepEqual(strip(s.requests[0]), {
      cmd: "send",
      public_key: PK_A,
      text: "hello there",
      action: true,
    });

    const plain = await ctl(["--socket", s.path, "send", PK_A, "--", "-1", "ok"]);
    assert.equal(plain.out, "sent, receipt 3\n");
    assert.deepEqual(strip(s.requests[1]), { cmd: "send", public_key: PK_A, text: "-1 ok" });

    const json = await ctl(["--socket", s.path, "--json", "send", PK_A, "x"]);
    assert.equal(json.out, '{"receipt":3}\n');

    assert.equal((await ctl(["--socket", s.path, "name", "Zoë K"])).out, "name set\n");
    assert.deepEqual(strip(s.requests[3]), { cmd: "profile.set", name: "Zoë K" });
    await ctl(["--socket", s.path, "status-message", "gone", "fishing"]);
    assert.deepEqual(strip(s.requests[4]), { cmd: "profile.set", status_message: "gone fishing" });
    await ctl(["--socket", s.path, "send-lossless", PK_A, "a0ff"]);
    assert.deepEqual(strip(s.requests[5]), {
      cmd: "send.lossless",
      public_key: PK_A,
      data: "a0ff",
    });
  });
});

Deno.test("raw sends the object as given (id added if missing) and prints the reply", async () => {
  await withServer(async (s) => {
    const r = await ctl(["--socket", s.path, "raw", '{"cmd":"send","public_key":"x","text":"t"}']);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.out), { id: 1, ok: true, result: { receipt: 3 } });
    assert.deepEqual(s.requests[0], { id: 1, cmd: "send", public_key: "x", text: "t" });

    const e = await ctl(["--socket", s.path, "raw", '{"id":77,"cmd":"nope"}']);
    assert.equal(e.code, 1);
    assert.equal(JSON.parse(e.out).id, 77);
    assert.equal(JSON.parse(e.out).error.code, "unknown_command");
  });
});

Deno.test("no daemon: exit 2 naming the socket path, from --socket or the environment", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ctl_test_" });
  try {
    const path = `${dir}/missing.sock`;
    const r = await ctl(["--socket", path, "self"]);
    assert.equal(r.code, 2);
    assert.equal(r.out, "");
    assert.ok(r.err.includes(path), r.err);
    assert.match(r.err, /deno task daemon/);
    assert.doesNotMatch(r.err, /\n\s+at /); // no stack trace

    const env = await ctl(["friends"], { env: { XDG_RUNTIME_DIR: dir } });
    assert.equal(env.code, 2);
    assert.ok(env.err.includes(`${dir}/toxtcp/control.sock`), env.err);

    const json = await ctl(["--json", "--socket", path, "self"]);
    assert.equal(json.code, 2);
    assert.equal(JSON.parse(json.err).code, "cannot_connect");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad usage: exit 64 with a message and the usage line, before connecting", async () => {
  const socket = ["--socket", "/nonexistent/control.sock"];
  const bad = [
    [],
    ["frobnicate"],
    ["self", "extra"],
    ["--bogus", "self"],
    ["--timeout", "soon", "self"],
    ["send", PK_A],
    ["send", "abc", "hi"],
    ["send", PK_A, "hi", "--dht", PK_B],
    ["friend", "add", PK_A, "--relay", "127.0.0.1:0:" + RELAY_PK],
    ["friend", "add", PK_A, "--dht", "xyz"],
    ["friend", "add", "abc"],
    ["friend", "delete", PK_A],
    ["relay", "add", "127.0.0.1:33445"],
    ["friends", "--action"],
    ["send-lossy", PK_A, "abc"],
    ["raw", "{not json"],
    ["raw", "[1]"],
    ["events", "now"],
  ];
  for (const args of bad) {
    const r = await ctl([...socket, ...args]);
    assert.equal(r.code, 64, args.join(" "));
    assert.equal(r.out, "");
    assert.match(r.err, /^ctl: .+\nusage: deno task ctl/, args.join(" "));
  }
  const help = await ctl(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /friend add PK\|TOXID/);
  assert.equal((await ctl(["help"])).out, help.out);
});

Deno.test("events --json prints each event line; human form is HH:MM:SS event key=value", async () => {
  await withServer(async (s) => {
    const r = await ctl(["--socket", s.path, "--json", "events"]);
    assert.equal(r.code, 0);
    assert.equal(r.err, "");
    assert.equal(r.out, EVENTS.map((e) => JSON.stringify(e) + "\n").join(""));
    assert.deepEqual(strip(s.requests[0]), { cmd: "subscribe" });

    const h = await ctl(["--socket", s.path, "events"], { signal: new AbortController().signal });
    assert.equal(h.code, 0);
    const lines = h.out.trimEnd().split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[0], new RegExp(`^\\d\\d:\\d\\d:\\d\\d friend_online public_key=${PK_A}$`));
    assert.match(
      lines[1],
      new RegExp(
        `^\\d\\d:\\d\\d:\\d\\d message public_key=${PK_A} kind=normal text="hi there" ` +
          `future_field=\\[1\\]$`,
      ),
    );
  });
});

Deno.test("events ends cleanly when interrupted while the daemon keeps the stream open", async () => {
  await withServer(async (s) => {
    s.closeAfterEvents = false;
    const stop = new AbortController();
    let out = "";
    const done = main(["--socket", s.path, "--json", "events"], {
      stdout: (t) => {
        out += t;
        if (out.split("\n").length > EVENTS.length) stop.abort();
      },
      stderr: (t) => assert.fail(t),
      signal: stop.signal,
    });
    assert.equal(await done, 0);
    assert.equal(out, EVENTS.map((e) => JSON.stringify(e) + "\n").join(""));
  });
});

Deno.test("split and coalesced reads: a reply in two writes, two replies and an event in one", async () => {
  await withServer(async (s) => {
    s.split = true; // every reply is cut inside the "ë" of "Zoë"
    const r = await ctl(["--socket", s.path, "--json", "self"]);
    assert.deepEqual(r, { code: 0, out: JSON.stringify(SELF) + "\n", err: "" });
    s.split = false;

    const client = await ControlClient.connect(s.path);
    try {
      const [a, b] = await Promise.all([
        client.request("pair", { n: 1 }, { timeoutMs: 5000 }),
        client.request("pair", { n: 2 }, { timeoutMs: 5000 }),
      ]);
      assert.deepEqual(a, { id: 1, ok: true, result: { n: 1 } });
      assert.deepEqual(b, { id: 2, ok: true, result: { n: 2 } });
      const events = client.events();
      const first = await events.next();
      assert.deepEqual(first.value, { event: "receipt", public_key: PK_A, receipt: 9 });
      const err = await client.request("nope");
      assert.equal(err.ok, false);
      assert.equal(!err.ok && err.error.code, "unknown_command");
    } finally {
      await client.close();
    }
  });
});

Deno.test("no reply within --timeout: exit 3; connection dropped or garbage: exit 1", async () => {
  await withServer(async (s) => {
    const t = await ctl(["--socket", s.path, "--timeout", "50", "raw", '{"cmd":"hang"}']);
    assert.equal(t.code, 3);
    assert.match(t.err, /no reply to "hang" within 50 ms/);

    const h = await ctl(["--socket", s.path, "raw", '{"cmd":"hangup"}']);
    assert.equal(h.code, 1);
    assert.match(h.err, /closed the connection before replying/);

    const g = await ctl(["--socket", s.path, "raw", '{"cmd":"garbage"}']);
    assert.equal(g.code, 1);
    assert.match(g.err, /not JSON/);
    for (const r of [t, h, g]) assert.doesNotMatch(r.err, /\n\s+at /);

    // The client's own errors, for library users.
    const client = await ControlClient.connect(s.path);
    const pending = assert.rejects(
      client.request("hang"),
      (e) => e instanceof ControlClientError && e.kind === "closed",
    );
    await client.close();
    await pending;
  });
});

Deno.test("friend requests: add with a message, list, accept, refuse", async () => {
  await withServer(async (s) => {
    const toxId = "B".repeat(76);
    const add = await ctl([
      "--socket",
      s.path,
      "friend",
      "add",
      toxId,
      "hi",
      "there,",
      "it's",
      "me",
    ]);
    assert.equal(add.code, 0, add.err);
    assert.match(add.out, /request goes out as soon as the onion finds them/);
    assert.deepEqual(strip(s.requests.at(-1)!), {
      cmd: "friend.add",
      public_key: toxId,
      message: "hi there, it's me",
    });

    const bare = await ctl(["--socket", s.path, "friend", "add", PK_A, "hello"]);
    assert.equal(bare.code, 64, "a message needs a Tox ID");
    assert.match(bare.err, /needs the friend's Tox ID/);

    const list = await ctl(["--socket", s.path, "requests"]);
    assert.equal(list.code, 0);
    const lines = list.out.trimEnd().split("\n");
    assert.match(lines[0], /^public key +received +message$/);
    assert.match(lines[1], new RegExp(`^${PK_B} +2026-11-23T10:00:00.000Z +hi, it's bob$`));

    const accept = await ctl(["--socket", s.path, "friend", "accept", PK_B]);
    assert.equal(accept.code, 0);
    assert.match(accept.out, /accepted/);
    assert.deepEqual(strip(s.requests.at(-1)!), { cmd: "friend.accept", public_key: PK_B });

    const refuse = await ctl(["--socket", s.path, "friend", "refuse", PK_A]);
    assert.equal(refuse.code, 1);
    assert.equal(refuse.err, "error no_request: no friend request from that key\n");
    assert.equal((await ctl(["--socket", s.path, "friend", "accept"])).code, 64);
  });
});

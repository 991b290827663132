/**
 * Friend requests with a real c-toxcore 0.2.18 peer (TCP only), the way a user does it: our
 * daemon as a subprocess, driven only through `ctl` and its control socket; one
 * tox-bootstrapd on 127.0.0.1 is relay, every onion hop and the announce node. No hint
 * anywhere: each side has only the other's Tox ID (or key, from the request).
 */
import assert from "node:assert/strict";
import { ControlClient } from "../../tools/ctl.ts";
import { interopTest, startBootstrapd } from "../../tools/testbed/harness.ts";
import {
  ctl,
  ctlJson,
  DaemonProcess,
  nextEvent,
  privateDir,
  spec,
} from "../../tools/testbed/daemon_process.ts";
import { startToxPeer } from "../../tools/testbed/tox_peer.ts";

interface Self {
  address: string;
  public_key: string;
}

interface Friend {
  public_key: string;
  online: boolean;
  dht_key_source: string | null;
  request: unknown;
}

/** `ctl self` until the onion says we are announced (friends can find us); bounded. */
async function untilAnnounced(socket: string, ms = 10_000): Promise<Self> {
  const end = Date.now() + ms;
  while (true) {
    const me = await ctlJson<Self & { onion: { announced: boolean } | null }>(socket, "self");
    if (me.onion?.announced) return me;
    if (Date.now() > end) throw new Error(`not announced within ${ms} ms: ${JSON.stringify(me)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interopTest(
  "onion: a C peer's friend request to our Tox ID, accepted with ctl; both online, messages both ways",
  ["tox-bootstrapd", "gcc"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await privateDir();
    const socket = `${dir}/control.sock`;
    try {
      await using daemon = await DaemonProcess.start({
        dataDir: `${dir}/data`,
        socket,
        relays: [spec(relay)],
      });
      const events = await ControlClient.connect(socket);
      await using c = await startToxPeer({ relays: [relay.relay], name: "c-peer" });
      try {
        assert.equal((await events.request("subscribe")).ok, true);
        const me = await untilAnnounced(socket);
        const friend = await c.sendFriendRequest(me.address, "hello from c-toxcore ✓");
        const req = await nextEvent(
          events,
          (e) => e.event === "friend_request",
          40_000,
          "the C peer's request",
        );
        assert.equal(req.public_key, c.realPublicKey);
        assert.equal(req.text, "hello from c-toxcore ✓");

        // It is waiting in `ctl requests` (and on disk) until answered.
        const waiting = await ctlJson<{ public_key: string; text: string }[]>(socket, "requests");
        assert.deepEqual(waiting.map((r) => [r.public_key, r.text]), [[
          c.realPublicKey,
          "hello from c-toxcore ✓",
        ]]);
        const state = JSON.parse(await Deno.readTextFile(`${dir}/data/state.json`));
        assert.equal(state.requests[0].public_key, c.realPublicKey);

        const online = nextEvent(
          events,
          (e) => e.event === "friend_online" && e.public_key === c.realPublicKey,
          40_000,
          "the C peer online",
        );
        const acc = await ctl(socket, "friend", "accept", c.realPublicKey);
        assert.equal(acc.code, 0, acc.stderr);
        await Promise.all([online, c.waitForFriendOnline(friend, 40_000)]);
        assert.deepEqual(await ctlJson(socket, "requests"), []);
        const friends = await ctlJson<Friend[]>(socket, "friends");
        assert.equal(friends[0].public_key, c.realPublicKey);
        assert.equal(friends[0].online, true);
        assert.notEqual(friends[0].dht_key_source, "hint");

        const got = nextEvent(events, (e) => e.event === "message", 15_000, "the C peer's text");
        await c.sendMessage(friend, "hi deno");
        assert.equal((await got).text, "hi deno");
        const sent = await ctl(socket, "send", c.realPublicKey, "hi c-toxcore");
        assert.equal(sent.code, 0, sent.stderr);
        const msg = await c.waitFor((e) => e.type === "message", 15_000);
        assert.equal(msg.type === "message" && new TextDecoder().decode(msg.data), "hi c-toxcore");
      } finally {
        await events.close();
      }
      assert.equal((await daemon.kill("SIGTERM")).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { timeout: 120_000 },
);

interopTest(
  "onion: our friend request (ctl friend add TOXID MESSAGE) to a C peer, accepted there; online, messages; survives a restart before the answer",
  ["tox-bootstrapd", "gcc"],
  async () => {
    await using relay = await startBootstrapd();
    const dir = await privateDir();
    const socket = `${dir}/control.sock`;
    try {
      const opts = { dataDir: `${dir}/data`, socket, relays: [spec(relay)] };
      await using c = await startToxPeer({ relays: [relay.relay], name: "c-peer" });
      {
        // The request is saved before the C peer can be found; a restart must not lose it.
        await using d = await DaemonProcess.start(opts);
        const add = await ctl(socket, "friend", "add", c.address, "hi", "from", "deno");
        assert.equal(add.code, 0, add.stderr);
        const friends = await ctlJson<Friend[]>(socket, "friends");
        assert.equal(friends[0].public_key, c.realPublicKey);
        assert.ok(friends[0].request, "the request is pending");
        assert.equal((await d.kill("SIGTERM")).code, 0);
      }
      const state = JSON.parse(await Deno.readTextFile(`${dir}/data/state.json`));
      assert.equal(state.friends[0].request.message, "hi from deno");
      assert.equal(state.friends[0].request.nospam, c.address.slice(64, 72).toLowerCase());

      await using daemon = await DaemonProcess.start(opts);
      const events = await ControlClient.connect(socket);
      try {
        assert.equal((await events.request("subscribe")).ok, true);
        const req = await c.waitForFriendRequest(40_000);
        const me = await ctlJson<Self>(socket, "self");
        assert.equal(req.publicKey, me.public_key);
        assert.equal(req.text, "hi from deno");
        const online = nextEvent(
          events,
          (e) => e.event === "friend_online" && e.public_key === c.realPublicKey,
          40_000,
          "the C peer online",
        );
        const friend = await c.acceptFriendRequest(req.publicKey);
        await Promise.all([online, c.waitForFriendOnline(friend, 40_000)]);

        const got = nextEvent(events, (e) => e.event === "message", 15_000, "the C peer's text");
        await c.sendMessage(friend, "accepted!");
        assert.equal((await got).text, "accepted!");
        assert.equal((await ctl(socket, "send", c.realPublicKey, "thanks")).code, 0);
        const msg = await c.waitFor((e) => e.type === "message", 15_000);
        assert.equal(msg.type === "message" && new TextDecoder().decode(msg.data), "thanks");
      } finally {
        await events.close();
      }
      // Answered: the request is gone from the saved state.
      assert.equal((await daemon.kill("SIGTERM")).code, 0);
      const after = JSON.parse(await Deno.readTextFile(`${dir}/data/state.json`));
      assert.equal(after.friends[0].request, undefined);
      assert.equal(typeof after.friends[0].last_online_at, "number");
      // A friend that has been online needs no request, also after a restart.
      await using again = await DaemonProcess.start(opts);
      const re = await ctl(socket, "friend", "add", c.address, "hi", "again");
      assert.equal(re.code, 1);
      assert.match(re.stderr, /already a friend/);
      assert.equal((await again.kill("SIGTERM")).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { timeout: 150_000 },
);

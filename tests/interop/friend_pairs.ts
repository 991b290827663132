/**
 * Friend pairs for interop tests, over any relays with a `.relay` address (tox-bootstrapd from
 * harness.ts or our own relay from relay_process.ts): our Messenger endpoint with a real
 * c-toxcore peer, or two of ours, made friends and online both ways; and the exchange every
 * such pair must pass (messages with receipts both ways, custom lossless streams each way,
 * complete and in order). No tests live here.
 */
import assert from "node:assert/strict";
import { fromHex } from "../../daemon/core/common/crypto.ts";
import type { RelayAddress } from "../../daemon/core/common/relay_address.ts";
import { FriendEndpoint, sendStream, StreamCounter } from "../../tools/testbed/friend_flow.ts";
import type { CoordinatorEvent } from "../../workers/messages.ts";
import { startToxPeer, type ToxPeer, watchReceived } from "../../tools/testbed/tox_peer.ts";

/** Anything that runs a relay: Bootstrapd, OwnRelay. */
export interface HasRelay {
  readonly relay: RelayAddress;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CPeerPair {
  readonly c: ToxPeer;
  readonly us: FriendEndpoint;
  /** The C peer's long-term key. */
  readonly cKey: Uint8Array;
  /** Our friend number at the C peer. */
  readonly friend: number;
  /** ms from start until both sides saw the other online. */
  readonly onlineMs: number;
  close(): Promise<void>;
}

/**
 * Us (given the C peer's DHT key and the relays as hint) and a C peer (TCP only, these relays
 * only), friends and online on both sides. Both add each other without a request.
 */
export async function withCPeer(
  relays: readonly HasRelay[],
  signal: AbortSignal,
  onlineTimeoutMs = 20_000,
): Promise<CPeerPair> {
  const started = performance.now();
  const addrs = relays.map((r) => r.relay);
  const c = await startToxPeer({ relays: addrs, name: "c-peer" });
  const us = new FriendEndpoint({ name: "deno", relays: addrs });
  const close = async () => {
    await Promise.all([us.close(), c.stop()]);
  };
  try {
    const cKey = fromHex(c.realPublicKey, 32);
    const weSee = us.waitFor(
      "we see the C peer online",
      (e: CoordinatorEvent) => e.type === "friend_online" && e.friend === c.realPublicKey,
      onlineTimeoutMs,
      signal,
    );
    const friend = await c.addFriend(us.realHex);
    const cSees = c.waitForFriendOnline(friend, onlineTimeoutMs);
    us.handle.addFriend(cKey, { dhtPublicKey: fromHex(c.dhtPublicKey, 32), relays: addrs });
    await Promise.all([weSee, cSees]);
    return { c, us, cKey, friend, onlineMs: performance.now() - started, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Poll the C peer's counter for `friend` until `count` arrived or the time is up. */
export async function cStatsUntil(c: ToxPeer, friend: number, count: number, timeoutMs: number) {
  const end = performance.now() + timeoutMs;
  let s = await c.stats(friend);
  while (s.received < count && performance.now() < end) {
    await sleep(100);
    s = await c.stats(friend);
  }
  return s;
}

export interface ExchangeFigures {
  /** Our stream to the far end, packets/s (sender side, until the far end had them all). */
  readonly oursToThemPps: number;
  /** Their stream to us: ms until all arrived (C peer: until toxcore accepted its burst). */
  readonly themToUsMs: number;
}

/**
 * With a C peer online both ways: profile names seen, a message each way with its receipt,
 * then `count` custom lossless packets (100 bytes, id 160) each way at the same time, all of
 * them, in order.
 */
export async function exchangeWithCPeer(
  p: CPeerPair,
  signal: AbortSignal,
  count = 2000,
): Promise<ExchangeFigures> {
  const { c, us, cKey, friend } = p;
  // The C peer sees our profile; we see its name.
  await c.waitFor((e) => e.type === "name" && e.text === "deno", 5_000);
  let st = await us.status();
  for (let i = 0; i < 50 && st.friends[0].name === ""; i++) {
    await sleep(100);
    st = await us.status();
  }
  assert.equal(st.friends[0].name, "c-peer");
  assert.equal(st.friends[0].progress, "connected");

  // Messages both ways with receipts.
  const ourReceipt = us.waitFor("receipt from C", (e) => e.type === "friend_receipt", 5_000);
  const cGets = c.waitFor((e) => e.type === "message" && e.text === "hello from deno", 5_000);
  us.handle.sendMessage(cKey, "hello from deno");
  await cGets;
  assert.deepEqual(await ourReceipt, {
    type: "friend_receipt",
    friend: c.realPublicKey,
    messageId: 1,
  });
  const weGet = us.waitFor("message from C", (e) => e.type === "friend_message", 5_000);
  const id = await c.sendMessage(friend, "hello from C", "action");
  assert.deepEqual(await weGet, {
    type: "friend_message",
    friend: c.realPublicKey,
    kind: "action",
    text: "hello from C",
  });
  await c.waitFor((e) => e.type === "receipt" && e.messageId === id, 5_000);

  // Custom lossless each way, at the same time, complete and in order.
  const atUs = new StreamCounter(us, c.realPublicKey);
  const watch = watchReceived(c, friend);
  const [toC, fromC] = await Promise.all([
    sendStream(us, cKey, {
      count,
      size: 100,
      timeoutMs: 30_000,
      done: () => watch.received >= count,
      signal,
    }),
    c.burst(friend, count, 100, 160, 30_000),
  ]);
  const cStats = await cStatsUntil(c, friend, count, 10_000);
  await watch.stop();
  const deadline = performance.now() + 10_000;
  while (atUs.received < count && performance.now() < deadline) await sleep(50);
  atUs.stop();
  assert.equal(toC.timedOut, false, `ours -> C: ${cStats.received}/${count}`);
  assert.deepEqual([cStats.received, cStats.inOrder], [count, count], "ours -> C");
  assert.deepEqual([atUs.received, atUs.inOrder], [count, count], "C -> ours");
  return { oursToThemPps: count / toC.ms * 1000, themToUsMs: fromC.ms };
}

const isOnline = (friend: string) => (e: CoordinatorEvent) =>
  e.type === "friend_online" && e.friend === friend;

export interface OurPair {
  readonly a: FriendEndpoint;
  readonly b: FriendEndpoint;
  readonly onlineMs: number;
  close(): Promise<void>;
}

/** Two of our endpoints: a knows b's DHT key and relays (the hint); b knows only a's key. */
export async function ourFriends(
  relays: readonly HasRelay[],
  signal: AbortSignal,
  onlineTimeoutMs = 15_000,
): Promise<OurPair> {
  const started = performance.now();
  const addrs = relays.map((r) => r.relay);
  const a = new FriendEndpoint({ name: "alice", relays: addrs });
  const b = new FriendEndpoint({ name: "bob", relays: addrs });
  const close = async () => {
    await Promise.all([a.close(), b.close()]);
  };
  try {
    const online = Promise.all([
      a.waitFor("alice sees bob online", isOnline(b.realHex), onlineTimeoutMs, signal),
      b.waitFor("bob sees alice online", isOnline(a.realHex), onlineTimeoutMs, signal),
    ]);
    b.handle.addFriend(a.real.publicKey);
    a.handle.addFriend(b.real.publicKey, { dhtPublicKey: b.dht.publicKey, relays: addrs });
    await online;
    return { a, b, onlineMs: performance.now() - started, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Two of ours online: a message each way with its receipt, then `count` custom lossless
 * packets (100 bytes) each way at once, all of them, in order.
 */
export async function exchangeOurs(
  p: OurPair,
  signal: AbortSignal,
  count = 2000,
): Promise<{ abPps: number; baPps: number }> {
  const { a, b } = p;
  const st = await a.status();
  assert.equal(st.friends[0].progress, "connected");
  assert.equal(st.friends[0].online, true);
  assert.equal(st.friends[0].path?.online, true);

  const got = Promise.all([
    b.waitFor("bob gets the message", (e) => e.type === "friend_message", 5_000, signal),
    a.waitFor("alice gets the action", (e) => e.type === "friend_message", 5_000, signal),
    a.waitFor("alice's receipt", (e) => e.type === "friend_receipt", 5_000, signal),
    b.waitFor("bob's receipt", (e) => e.type === "friend_receipt", 5_000, signal),
  ]);
  a.handle.sendMessage(b.real.publicKey, "hello bob ☺", "normal", 7);
  b.handle.sendMessage(a.real.publicKey, "waves", "action");
  const [m1, m2, r1, r2] = await got;
  assert.deepEqual(m1, {
    type: "friend_message",
    friend: a.realHex,
    kind: "normal",
    text: "hello bob ☺",
  });
  assert.deepEqual(m2, {
    type: "friend_message",
    friend: b.realHex,
    kind: "action",
    text: "waves",
  });
  assert.deepEqual(r1, { type: "friend_receipt", friend: b.realHex, messageId: 1 });
  assert.deepEqual(r2, { type: "friend_receipt", friend: a.realHex, messageId: 1 });

  const atB = new StreamCounter(b, a.realHex);
  const atA = new StreamCounter(a, b.realHex);
  const stream = (from: FriendEndpoint, to: FriendEndpoint, at: StreamCounter) =>
    sendStream(from, to.real.publicKey, {
      count,
      size: 100,
      timeoutMs: 30_000,
      done: () => at.received >= count,
      signal,
    });
  const [ab, ba] = await Promise.all([stream(a, b, atB), stream(b, a, atA)]);
  atA.stop();
  atB.stop();
  assert.equal(ab.timedOut, false, `a->b: ${atB.received}/${count}`);
  assert.equal(ba.timedOut, false, `b->a: ${atA.received}/${count}`);
  assert.deepEqual(
    [atB.received, atB.inOrder, atA.received, atA.inOrder],
    [count, count, count, count],
  );
  return { abPps: count / ab.ms * 1000, baPps: count / ba.ms * 1000 };
}

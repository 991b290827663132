/**
 * The relay data lane's pacing (daemon/core/relay_client/pacer.ts), on virtual time: the rate
 * starts low and grows linearly while the lane is held back and the relay answers PINGs near
 * its floor; a pause of the event loop never releases more than the configured window at once;
 * a grown RTT or a socket that stops taking bytes backs it off; and through the whole relay
 * client, a stalled relay is detected within 500 ms while data flows.
 */
import assert from "node:assert/strict";
import { newKeyPair } from "../daemon/core/common/crypto.ts";
import { BurstMeter } from "../daemon/core/relay_client/burst_meter.ts";
import { DEFAULT_PACER, Pacer, type PacerConfig } from "../daemon/core/relay_client/pacer.ts";
import { RelayClient, type RelayEvent } from "../daemon/core/relay_client/relay_client.ts";
import { FakeRelayPeer, seededRandom } from "../tools/testbed/fake_relay.ts";

/** A fast ceiling, so growth is seen before it is capped. */
const FAST: PacerConfig = { ...DEFAULT_PACER, maxRate: 40_000_000 };
const FRAME = 1043; // a 1 KB DATA frame on the wire

/** Send whole frames as the pace allows every `stepMs`, with a PONG of `rttMs` every 100 ms. */
function drive(
  p: Pacer,
  from: number,
  until: number,
  stepMs: number,
  rttMs: (t: number) => number = () => 20,
): { sent: number; rates: number[] } {
  let sent = 0;
  const rates: number[] = [];
  for (let t = from; t < until; t += stepMs) {
    if (t % 100 === 0) p.onRtt(rttMs(t), t);
    let budget = p.available(t);
    while (budget >= FRAME) {
      budget -= FRAME;
      p.consume(FRAME);
      sent += FRAME;
    }
    p.markLimited();
    if (t % 100 === 0) rates.push(p.rate);
  }
  return { sent, rates };
}

Deno.test("pacer: starts at the initial rate and grows linearly, never by doubling", () => {
  const p = new Pacer(0, FAST);
  assert.equal(p.rate, FAST.initialRate);
  const { rates } = drive(p, 0, 2_000, 2);
  for (let i = 1; i < rates.length; i++) {
    const step = rates[i] - rates[i - 1];
    // 100 ms of growth at rampPerSec, give or take one refill step.
    assert.ok(step <= FAST.rampPerSec * 0.1 + FAST.rampPerSec * 0.004, `step ${step} at ${i}`);
    assert.ok(rates[i] / rates[i - 1] < 2, "never a doubling");
  }
  const expected = FAST.initialRate + FAST.rampPerSec * 1.9;
  assert.ok(Math.abs(rates.at(-1)! - expected) < FAST.rampPerSec * 0.05, `${rates.at(-1)}`);
});

Deno.test("pacer: no growth without a healthy PONG, nor while the lane is not held back", () => {
  const silent = new Pacer(0, FAST);
  for (let t = 0; t < 1_000; t += 2) {
    silent.available(t);
    silent.markLimited();
  }
  assert.equal(silent.rate, FAST.initialRate, "no RTT sample: the relay has shown nothing");

  const idle = new Pacer(0, FAST);
  for (let t = 0; t < 1_000; t += 2) {
    if (t % 100 === 0) idle.onRtt(20, t);
    idle.available(t); // everything queued goes out within the pace: never limited
  }
  assert.equal(idle.rate, FAST.initialRate, "demand, not the pace, set the rate");

  // Bursts that wait on the pace and then drain the lane still grow it, while they keep coming.
  const bursty = new Pacer(0, FAST);
  for (let t = 0; t < 1_000; t += 2) {
    if (t % 100 === 0) bursty.onRtt(20, t);
    bursty.available(t);
    if (t % 20 === 0) bursty.markLimited(); // a batch every 20 ms finds too few tokens
  }
  assert.ok(bursty.rate > FAST.initialRate + FAST.rampPerSec * 0.8, `${bursty.rate}`);
  for (let t = 1_000; t < 2_000; t += 2) {
    if (t % 100 === 0) bursty.onRtt(20, t);
    bursty.available(t); // the bursts stopped: growth stops within LIMITED_MEMORY_MS
  }
  const after = bursty.rate;
  assert.ok(after <= FAST.initialRate + FAST.rampPerSec * 1.2, `${after}`);

  const stale = new Pacer(0, FAST);
  stale.onRtt(20, 0);
  for (let t = 0; t < 2_000; t += 2) {
    stale.available(t);
    stale.markLimited();
  }
  const grownFor = (stale.rate - FAST.initialRate) / FAST.rampPerSec * 1000;
  assert.ok(grownFor <= FAST.sampleMaxAgeMs + 4, `grew for ${grownFor} ms on one old sample`);
});

Deno.test("pacer: a 50 ms pause of the event loop releases no more than the window", () => {
  for (const rate of [1_500_000, 3_000_000, 15_000_000]) {
    const p = new Pacer(0, { ...FAST, initialRate: rate });
    drive(p, 0, 200, 2); // a steady stream
    const rateBefore = p.rate;
    // The loop was busy for 50 ms (crypto, GC, a postMessage): what may leave now?
    const after = p.available(250);
    const window = Math.max(8192, (p.rate * FAST.burstMs) / 1000);
    assert.ok(after <= window, `rate ${rate}: ${after} B at once, window ${window}`);
    assert.equal(p.burst, window);
    // The pause itself grows nothing beyond one step: time spent not sending is no evidence.
    assert.ok(p.rate - rateBefore <= (FAST.rampPerSec * FAST.burstMs) / 1000 + 1);
  }
});

Deno.test("pacer: a grown RTT backs off multiplicatively and holds growth for a while", () => {
  const p = new Pacer(0, FAST);
  drive(p, 0, 1_000, 2);
  p.available(1_000);
  const before = p.rate;
  p.onRtt(20 + FAST.backoffRttMs + 1, 1_000);
  assert.ok(Math.abs(p.rate - before * 0.7) < 1, `${p.rate} vs ${before * 0.7}`);
  const held = p.rate;
  drive(p, 1_002, 1_000 + FAST.holdAfterBackoffMs - 2, 2);
  assert.equal(p.rate, held, "no growth while the relay's queue drains");
  drive(p, 1_000 + FAST.holdAfterBackoffMs + 100, 2_000, 2);
  assert.ok(p.rate > held, "growth resumes on healthy PONGs");
});

Deno.test("pacer: a socket that stops taking bytes halves the rate and empties the bucket", () => {
  const p = new Pacer(0, FAST);
  drive(p, 0, 1_000, 2);
  p.available(1_000);
  const before = p.rate;
  p.onWriteBlocked(1_000);
  assert.ok(Math.abs(p.rate - before / 2) < 1);
  assert.equal(p.available(1_000), 0);
  for (let i = 0; i < 40; i++) p.onWriteBlocked(1_000 + i);
  assert.equal(p.rate, FAST.minRate, "never below the floor");
});

Deno.test("burst meter: the most bytes within any 30 ms", () => {
  const m = new BurstMeter(30);
  m.add(10_000, 0);
  m.add(10_000, 29);
  assert.equal(m.max, 20_000);
  m.add(5_000, 30); // the first write is out of the window now
  assert.equal(m.max, 20_000);
  m.add(20_000, 45);
  assert.equal(m.max, 35_000);
  for (let t = 100; t < 10_000; t++) m.add(100, t);
  assert.equal(m.max, 35_000);
});

// ---- through the relay client ----------------------------------------------------------------

interface Lane {
  client: RelayClient;
  relay: FakeRelayPeer;
  peer: Uint8Array;
  now: number;
  pingIds: bigint[];
  events: RelayEvent[];
}

function confirmedLane(): Lane {
  const random = seededRandom(7);
  const relay = new FakeRelayPeer(seededRandom(8));
  const lane: Lane = {
    client: new RelayClient({
      self: newKeyPair(random),
      relayPublicKey: relay.keys.publicKey,
      random,
      now: 1_000,
    }),
    relay,
    peer: newKeyPair(random).publicKey,
    now: 1_000,
    pingIds: [],
    events: [],
  };
  lane.client.transportConnected(lane.now);
  const hello = write(lane);
  lane.client.receive(hello!, lane.now);
  write(lane);
  lane.client.route(lane.peer);
  write(lane);
  lane.client.receive(
    relay.frame({ kind: "routing_response", connectionId: 16, publicKey: lane.peer }),
    lane.now,
  );
  lane.client.receive(relay.frame({ kind: "connection_notification", connectionId: 16 }), lane.now);
  return lane;
}

/** Everything the client writes now goes to the fake relay; returns a handshake answer. */
function write(lane: Lane): Uint8Array | undefined {
  let response: Uint8Array | undefined;
  for (let c = lane.client.pollTransmit(lane.now); c; c = lane.client.pollTransmit(lane.now)) {
    const part = c.slice();
    lane.client.written(c.length, lane.now);
    const out = lane.relay.fromClient(part);
    if (out.response) response = out.response;
    for (const p of out.packets) if (p.kind === "ping") lane.pingIds.push(p.pingId);
  }
  lane.events.push(...lane.client.takeEvents());
  return response;
}

/** Run the lane as its Worker shell would, timer steps of `stepMs`, the queue kept full. */
function run(lane: Lane, ms: number, stepMs: number, answerPings: boolean): void {
  const end = lane.now + ms;
  while (lane.now < end && lane.client.state === "confirmed") {
    while (lane.client.stats().dataQueuedBytes < 150_000) {
      if (!lane.client.sendData(lane.peer, new Uint8Array(1024)).ok) break;
    }
    if (answerPings) {
      for (const id of lane.pingIds.splice(0)) {
        lane.client.receive(lane.relay.frame({ kind: "pong", pingId: id }), lane.now);
      }
    }
    lane.client.tick(lane.now);
    write(lane);
    if (lane.client.state !== "confirmed") break; // the time of the close is the time now
    const next = Math.min(
      lane.client.nextDeadline(lane.now),
      lane.client.nextTransmitTime(lane.now),
    );
    lane.now = Math.max(lane.now + stepMs, Math.min(next, end));
  }
}

Deno.test("data lane: paced to its ceiling with timer steps of 4 ms, no write above the window", () => {
  const lane = confirmedLane();
  run(lane, 3_000, 4, true);
  const st = lane.client.stats();
  assert.equal(lane.client.state, "confirmed");
  assert.equal(st.paceRate, DEFAULT_PACER.maxRate, "reached the ceiling");
  // Bytes per relay tick stay near rate × 30 ms plus one window, whatever the timer does.
  const tick = (DEFAULT_PACER.maxRate * 30) / 1000;
  const window = (DEFAULT_PACER.maxRate * DEFAULT_PACER.burstMs) / 1000;
  assert.ok(st.maxBytesPer30ms <= tick + window + 2 * FRAME, `${st.maxBytesPer30ms} per 30 ms`);
  assert.ok(st.bytesOut > DEFAULT_PACER.maxRate * 2.5, `only ${st.bytesOut} B in 3 s`);
});

Deno.test("data lane: a relay that stops answering while data flows is a stall within 500 ms", () => {
  const lane = confirmedLane();
  run(lane, 1_000, 2, true);
  const silentFrom = lane.now;
  run(lane, 2_000, 2, false);
  const closed = lane.events.find((e) => e.type === "closed") as
    | Extract<RelayEvent, { type: "closed" }>
    | undefined;
  assert.ok(closed, "closed");
  assert.equal(closed.reason, "stalled");
  assert.ok(lane.now - silentFrom <= 500, `detected after ${lane.now - silentFrom} ms`);
  assert.deepEqual(lane.client.wantedRoutes().length, 1, "routes kept for the reconnect");
});

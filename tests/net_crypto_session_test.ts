/**
 * Two NetCrypto instances wired back to back (no relays): what a session tells the layer
 * below about delivery. TCP_connections judges the relay it sent through by `delivered`, so
 * each handshake step that proves our last packet arrived must say so; otherwise a slow
 * peer that answers through another relay looks like a relay dropping our packets.
 */
import assert from "node:assert/strict";
import { newKeyPair, toHex } from "../daemon/core/common/crypto.ts";
import { NetCrypto } from "../daemon/core/net_crypto/net_crypto.ts";
import { seededRandom } from "../tools/testbed/fake_relay.ts";

interface Side {
  readonly nc: NetCrypto;
  readonly inbox: Uint8Array[];
  readonly delivered: string[];
}

function pair() {
  const sides: Side[] = [];
  const make = (seed: number, other: () => Side): Side => {
    const random = seededRandom(seed);
    const realKeys = newKeyPair(random);
    const dhtKeys = newKeyPair(random);
    const inbox: Uint8Array[] = [];
    const delivered: string[] = [];
    const nc = new NetCrypto({
      realKeys,
      dhtKeys,
      random,
      transport: {
        sendData: (_pk, packet) => (other().inbox.push(packet), "sent"),
        sendOob: (_r, _pk, packet) => (other().inbox.push(packet), true),
        delivered: (pk) => delivered.push(toHex(pk)),
      },
      accept: () => true,
    }, 0);
    return { nc, inbox, delivered };
  };
  sides.push(make(1, () => sides[1]), make(2, () => sides[0]));
  return { a: sides[0], b: sides[1] };
}

/** Hand everything in `to`'s inbox to it, as from `from`'s DHT key. */
function pump(from: Side, to: Side, now: number): number {
  const packets = to.inbox.splice(0);
  for (const p of packets) {
    to.nc.handlePacket(toHex(from.nc.dhtPublicKey), p, { relay: "r", oob: false }, now);
  }
  return packets.length;
}

Deno.test("net_crypto: the cookie response, the answering handshake and the first data packet each count as delivery", () => {
  const { a, b } = pair();
  const peerDht = toHex(b.nc.dhtPublicKey);
  a.nc.connect(b.nc.realPublicKey, b.nc.dhtPublicKey, 0);
  const state = () => a.nc.connection(toHex(b.nc.realPublicKey))!.state;
  assert.equal(state(), "cookie_requesting");
  assert.equal(pump(a, b, 10), 1); // cookie request
  assert.deepEqual(a.delivered, []);
  assert.equal(pump(b, a, 20), 1); // cookie response: our request arrived
  assert.equal(state(), "handshake_sent");
  assert.deepEqual(a.delivered, [peerDht]);
  assert.equal(pump(a, b, 30), 1); // our handshake
  assert.ok(pump(b, a, 40) >= 1); // its handshake (and its first request packet)
  assert.ok(a.delivered.length >= 2, "the answering handshake counts");
  assert.notEqual(state(), "cookie_requesting");
  pump(a, b, 50);
  pump(b, a, 60);
  assert.equal(state(), "established");
  assert.ok(a.delivered.length >= 3, "the first data packet counts");
  assert.ok(a.delivered.every((k) => k === peerDht));
});

/** Relay addresses as users write them: HOST:PORT:PUBKEY and the community nodes.json. */
import assert from "node:assert/strict";
import {
  formatRelayAddress,
  parseNodesJson,
  parseNodesJsonUdp,
  parseRelaySpec,
} from "../daemon/core/common/relay_address.ts";

const PK = "6BBF183586E9645F7AB2C73D6DCAF1456D1AB1DA1AFB8C077FB2A7176FA7F865";

Deno.test("relay spec: IPv4, host name, bracketed and bare IPv6; key lower-cased", () => {
  assert.deepEqual(parseRelaySpec(`127.0.0.1:33445:${PK}`), {
    host: "127.0.0.1",
    port: 33445,
    publicKey: PK.toLowerCase(),
  });
  assert.equal(parseRelaySpec(`tox.example.org:443:${PK}`).host, "tox.example.org");
  assert.equal(parseRelaySpec(`[::1]:3389:${PK}`).host, "::1");
  assert.equal(parseRelaySpec(`::1:3389:${PK}`).host, "::1");
  assert.equal(formatRelayAddress(parseRelaySpec(`[::1]:3389:${PK}`)), "[::1]:3389");
  assert.equal(formatRelayAddress(parseRelaySpec(`10.1.2.3:3389:${PK}`)), "10.1.2.3:3389");
});

Deno.test("relay spec: every malformed form is a TypeError naming the problem", () => {
  const bad: [string, RegExp][] = [
    [PK, /HOST:PORT:PUBKEY/],
    [`127.0.0.1:${PK}`, /HOST:PORT:PUBKEY/],
    [`127.0.0.1:0:${PK}`, /port/],
    [`127.0.0.1:65536:${PK}`, /port/],
    [`127.0.0.1:33x45:${PK}`, /port/],
    [`127.0.0.1:33445:${PK.slice(2)}`, /64 hex/],
    [`127.0.0.1:33445:${PK.slice(2)}zz`, /64 hex/],
    [`bad host!:33445:${PK}`, /not an IP address or host name/],
    [`:33445:${PK}`, /not an IP address or host name/],
  ];
  for (const [spec, msg] of bad) assert.throws(() => parseRelaySpec(spec), msg, spec);
});

Deno.test("nodes.json: every address family and tcp port of every node; '-' means none", () => {
  const text = JSON.stringify({
    last_scan: 0,
    nodes: [
      { ipv4: "127.0.0.1", ipv6: "-", port: 33445, tcp_ports: [443, 33445], public_key: PK },
      { ipv4: "NONE", ipv6: "::1", port: 33445, tcp_ports: [3389], public_key: PK },
      { ipv4: "127.0.0.2", ipv6: "", port: 33445, tcp_ports: [], public_key: PK },
    ],
  });
  assert.deepEqual(parseNodesJson(text).map(formatRelayAddress), [
    "127.0.0.1:443",
    "127.0.0.1:33445",
    "[::1]:3389",
  ]);
});

Deno.test("nodes.json: not JSON, no nodes array, bad key or port are clear errors", () => {
  assert.throws(() => parseNodesJson("{"), /not JSON/);
  assert.throws(() => parseNodesJson("{}"), /no "nodes" array/);
  assert.throws(
    () =>
      parseNodesJson(
        JSON.stringify({ nodes: [{ ipv4: "127.0.0.1", tcp_ports: [1], public_key: "x" }] }),
      ),
    /nodes\[0\].*64 hex/,
  );
  assert.throws(
    () =>
      parseNodesJson(
        JSON.stringify({ nodes: [{ ipv4: "127.0.0.1", tcp_ports: [70000], public_key: PK }] }),
      ),
    /nodes\[0\].*port/,
  );
  assert.throws(
    () => parseNodesJson(JSON.stringify({ nodes: [7] })),
    /nodes\[0\] is not an object/,
  );
});

Deno.test("nodes.json UDP side: (address, port) per node for the onion; names and TCP-only nodes skipped", () => {
  const key = "A".repeat(64);
  const text = JSON.stringify({
    nodes: [
      { ipv4: "192.0.2.1", ipv6: "2001:db8::1", port: 33445, tcp_ports: [443], public_key: key },
      { ipv4: "tox.example.org", ipv6: "-", port: 33445, tcp_ports: [3389], public_key: key },
      { ipv4: "192.0.2.2", ipv6: "NONE", tcp_ports: [443], public_key: key },
    ],
  });
  assert.deepEqual(parseNodesJsonUdp(text), [
    { host: "192.0.2.1", port: 33445, publicKey: key.toLowerCase() },
    { host: "2001:db8::1", port: 33445, publicKey: key.toLowerCase() },
  ]);
  assert.throws(() => parseNodesJsonUdp("{}"), /no "nodes" array/);
  assert.throws(
    () =>
      parseNodesJsonUdp(
        JSON.stringify({ nodes: [{ ipv4: "192.0.2.1", port: 0, public_key: key }] }),
      ),
    /port/,
  );
});

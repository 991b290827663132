import assert from "node:assert/strict";
import { concatBytes } from "../daemon/core/common/codec.ts";
import {
  formatProxyUrl,
  MAX_HTTP_REPLY_HEADER,
  parseProxyUrl,
  ProxyNegotiation,
  type ProxyProgress,
  type ProxyTarget,
} from "../daemon/core/relay_client/proxy.ts";
import { parseIpLiteral } from "../daemon/core/common/ip_text.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (...b: number[]) => Uint8Array.of(...b);
const ascii = (s: string) => enc.encode(s);
const concat = concatBytes;

/** Feed `reply` one byte at a time; every step but the last must ask for more. */
function trickle(neg: ProxyNegotiation, reply: Uint8Array): ProxyProgress {
  for (let i = 0; i < reply.length - 1; i++) {
    assert.deepEqual(neg.receive(reply.subarray(i, i + 1)), { kind: "need_more" }, `byte ${i}`);
  }
  return neg.receive(reply.subarray(reply.length - 1));
}

function expectDone(p: ProxyProgress): Uint8Array {
  assert.equal(p.kind, "done", JSON.stringify(p));
  return (p as { leftover: Uint8Array }).leftover;
}

function expectFailed(p: ProxyProgress): string {
  assert.equal(p.kind, "failed", JSON.stringify(p));
  return (p as { reason: string }).reason;
}

function expectWrite(p: ProxyProgress): Uint8Array {
  assert.equal(p.kind, "write", JSON.stringify(p));
  return (p as { bytes: Uint8Array }).bytes;
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

const GREETING = bytes(0x05, 0x01, 0x00); // VER 5, one method, "no authentication"
const METHOD_OK = bytes(0x05, 0x00);
/** VER REP=00 RSV ATYP=IPv4 BND.ADDR 0.0.0.0 BND.PORT 0 */
const CONNECT_OK_V4 = bytes(0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00);
const TOX_BYTES = bytes(0xde, 0xad, 0xbe, 0xef);

/** Run a SOCKS5 negotiation to the point where the CONNECT request has been written. */
function socksToConnect(target: ProxyTarget): { neg: ProxyNegotiation; request: Uint8Array } {
  const neg = new ProxyNegotiation("socks5", target);
  assert.equal(neg.stage, "initial");
  assert.deepEqual(neg.start(), GREETING);
  assert.equal(neg.stage, "awaiting_method");
  const request = expectWrite(neg.receive(METHOD_OK));
  assert.equal(neg.stage, "awaiting_connect_reply");
  return { neg, request };
}

Deno.test("socks5: greeting offers only 'no authentication'", () => {
  const neg = new ProxyNegotiation("socks5", { host: "192.0.2.1", port: 33445 });
  assert.deepEqual(neg.start(), bytes(0x05, 0x01, 0x00));
});

Deno.test("socks5: CONNECT to an IPv4 target is ATYP 01 + 4 bytes + port big-endian", () => {
  const { request } = socksToConnect({ host: "192.0.2.1", port: 33445 });
  assert.deepEqual(
    request,
    bytes(0x05, 0x01, 0x00, 0x01, 192, 0, 2, 1, 0x82, 0xa5), // 33445 = 0x82A5
  );
});

Deno.test("socks5: CONNECT to an IPv6 target is ATYP 04 + 16 bytes + port", () => {
  const { request } = socksToConnect({ host: "2001:db8::1", port: 443 });
  const head = bytes(0x05, 0x01, 0x00, 0x04); // VER CMD=CONNECT RSV ATYP=IPv6
  const addr = bytes(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01);
  assert.deepEqual(request, concat(head, addr, bytes(0x01, 0xbb))); // 443 = 0x01BB
});

Deno.test("socks5: CONNECT to a domain is ATYP 03 + length + name, resolved by the proxy", () => {
  const { request } = socksToConnect({ host: "tox.example.org", port: 3389 });
  assert.deepEqual(
    request,
    concat(bytes(0x05, 0x01, 0x00, 0x03, 15), ascii("tox.example.org"), bytes(0x0d, 0x3d)),
  );
});

Deno.test("socks5: CONNECT to the longest allowed domain (255 bytes) fits the length byte", () => {
  const name = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}`;
  assert.equal(name.length, 255);
  const { request } = socksToConnect({ host: name, port: 1 });
  assert.equal(request[4], 255);
  assert.equal(request.length, 5 + 255 + 2);
});

Deno.test("socks5: method reply fed whole, then success reply fed whole", () => {
  const { neg } = socksToConnect({ host: "192.0.2.1", port: 33445 });
  assert.deepEqual(expectDone(neg.receive(CONNECT_OK_V4)), new Uint8Array(0));
  assert.equal(neg.stage, "done");
});

Deno.test("socks5: method reply and success reply fed one byte at a time", () => {
  const neg = new ProxyNegotiation("socks5", { host: "192.0.2.1", port: 33445 });
  neg.start();
  assert.deepEqual(neg.receive(bytes(0x05)), { kind: "need_more" });
  expectWrite(neg.receive(bytes(0x00)));
  assert.deepEqual(expectDone(trickle(neg, CONNECT_OK_V4)), new Uint8Array(0));
});

Deno.test("socks5: bytes after the CONNECT reply are leftover for the Tox stream", () => {
  const { neg } = socksToConnect({ host: "192.0.2.1", port: 33445 });
  const leftover = expectDone(neg.receive(concat(CONNECT_OK_V4, TOX_BYTES)));
  assert.deepEqual(leftover, TOX_BYTES);
});

Deno.test("socks5: reply is parsed by its own ATYP, not the request's", () => {
  // IPv6 request, IPv4 BND.ADDR in the reply: c-toxcore would wait for 22 bytes here.
  const v6 = socksToConnect({ host: "::1", port: 33445 }).neg;
  assert.deepEqual(expectDone(v6.receive(concat(CONNECT_OK_V4, TOX_BYTES))), TOX_BYTES);

  // IPv4 request, IPv6 BND.ADDR: 4 + 16 + 2 bytes, then the Tox stream.
  const v4 = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
  const replyV6 = concat(bytes(0x05, 0x00, 0x00, 0x04), new Uint8Array(16), bytes(0x12, 0x34));
  assert.deepEqual(expectDone(trickle(v4, replyV6)), new Uint8Array(0));

  // Domain BND.ADDR: length byte + name.
  const dom = socksToConnect({ host: "tox.example.org", port: 33445 }).neg;
  const replyDomain = concat(bytes(0x05, 0x00, 0x00, 0x03, 5), ascii("proxy"), bytes(0, 80));
  assert.deepEqual(expectDone(dom.receive(concat(replyDomain, TOX_BYTES))), TOX_BYTES);

  // The same, one byte at a time: done exactly on BND.PORT's last byte.
  const dom1 = socksToConnect({ host: "tox.example.org", port: 33445 }).neg;
  assert.deepEqual(expectDone(trickle(dom1, replyDomain)), new Uint8Array(0));
});

Deno.test("socks5: every RFC 1928 failure reply code is reported by name", () => {
  const names: [number, string][] = [
    [0x01, "general failure"],
    [0x02, "connection not allowed by ruleset"],
    [0x03, "network unreachable"],
    [0x04, "host unreachable"],
    [0x05, "connection refused"],
    [0x06, "TTL expired"],
    [0x07, "command not supported"],
    [0x08, "address type not supported"],
    [0x09, "unassigned reply code"],
    [0xff, "unassigned reply code"],
  ];
  for (const [rep, name] of names) {
    const reply = bytes(0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0);
    const whole = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
    const hex = rep.toString(16).padStart(2, "0");
    assert.equal(
      expectFailed(whole.receive(reply)),
      `SOCKS5 CONNECT failed: ${name} (reply 0x${hex})`,
    );
    assert.equal(whole.stage, "failed");
    // Fed a byte at a time, the refusal is known as soon as REP arrives.
    const slow = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
    assert.deepEqual(slow.receive(bytes(0x05)), { kind: "need_more" });
    assert.match(expectFailed(slow.receive(bytes(rep))), new RegExp(name));
  }
});

Deno.test("socks5: method 0xFF means the proxy wants authentication", () => {
  const neg = new ProxyNegotiation("socks5", { host: "192.0.2.1", port: 33445 });
  neg.start();
  assert.equal(expectFailed(neg.receive(bytes(0x05, 0xff))), "proxy requires authentication");
  assert.equal(neg.stage, "failed");
});

Deno.test("socks5: a method we did not offer is refused", () => {
  const neg = new ProxyNegotiation("socks5", { host: "192.0.2.1", port: 33445 });
  neg.start();
  assert.equal(
    expectFailed(neg.receive(bytes(0x05, 0x02))),
    "proxy chose authentication method 0x02, which was not offered",
  );
});

Deno.test("socks5: garbage instead of a SOCKS5 reply fails on the first byte", () => {
  const http = new ProxyNegotiation("socks5", { host: "192.0.2.1", port: 33445 });
  http.start();
  assert.equal(
    expectFailed(http.receive(bytes(0x48))), // "H" of "HTTP/1.1 400 Bad Request"
    "proxy is not speaking SOCKS5 (reply version 0x48)",
  );

  const socks4 = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
  assert.match(expectFailed(socks4.receive(bytes(0x00, 0x5a))), /not speaking SOCKS5/);

  const badAtyp = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
  assert.equal(
    expectFailed(badAtyp.receive(bytes(0x05, 0x00, 0x00, 0x02, 0, 0))),
    "SOCKS5 CONNECT reply has unknown address type 0x02",
  );
});

Deno.test("socks5: bytes after the method reply are a protocol violation", () => {
  const neg = new ProxyNegotiation("socks5", { host: "192.0.2.1", port: 33445 });
  neg.start();
  assert.equal(
    expectFailed(neg.receive(concat(METHOD_OK, CONNECT_OK_V4))),
    "proxy sent unexpected bytes after its method reply",
  );
});

Deno.test("socks5: the reserved byte of the reply is not checked", () => {
  const neg = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
  expectDone(neg.receive(bytes(0x05, 0x00, 0xaa, 0x01, 0, 0, 0, 0, 0, 0)));
});

Deno.test("socks5: empty chunks ask for more", () => {
  const neg = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
  assert.deepEqual(neg.receive(new Uint8Array(0)), { kind: "need_more" });
  expectDone(neg.receive(CONNECT_OK_V4));
});

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT

function httpStart(target: ProxyTarget): { neg: ProxyNegotiation; request: string } {
  const neg = new ProxyNegotiation("http", target);
  const request = dec.decode(neg.start());
  assert.equal(neg.stage, "awaiting_http_reply");
  return { neg, request };
}

Deno.test("http: CONNECT request uses CRLF and a Host header", () => {
  assert.equal(
    httpStart({ host: "192.0.2.1", port: 33445 }).request,
    "CONNECT 192.0.2.1:33445 HTTP/1.1\r\nHost: 192.0.2.1:33445\r\n\r\n",
  );
  assert.equal(
    httpStart({ host: "tox.example.org", port: 443 }).request,
    "CONNECT tox.example.org:443 HTTP/1.1\r\nHost: tox.example.org:443\r\n\r\n",
  );
});

Deno.test("http: an IPv6 target is bracketed", () => {
  assert.equal(
    httpStart({ host: "::1", port: 33445 }).request,
    "CONNECT [::1]:33445 HTTP/1.1\r\nHost: [::1]:33445\r\n\r\n",
  );
});

const HTTP_OK = ascii(
  "HTTP/1.1 200 Connection established\r\n" +
    "Proxy-Agent: tinyproxy/1.11.1\r\n" +
    "Content-Length: 42\r\n" + // must be ignored: a 2xx CONNECT reply has no body
    "\r\n",
);

Deno.test("http: 200 with extra headers, fed whole, keeps the Tox bytes as leftover", () => {
  const { neg } = httpStart({ host: "192.0.2.1", port: 33445 });
  assert.deepEqual(expectDone(neg.receive(concat(HTTP_OK, TOX_BYTES))), TOX_BYTES);
  assert.equal(neg.stage, "done");
});

Deno.test("http: 200 fed one byte at a time", () => {
  const { neg } = httpStart({ host: "192.0.2.1", port: 33445 });
  assert.deepEqual(expectDone(trickle(neg, HTTP_OK)), new Uint8Array(0));
});

Deno.test("http: leftover that looks like a header terminator is still leftover", () => {
  const { neg } = httpStart({ host: "192.0.2.1", port: 33445 });
  const tail = ascii("\r\n\r\nmore");
  const reply = concat(ascii("HTTP/1.0 200 OK\r\n\r\n"), tail);
  assert.deepEqual(expectDone(neg.receive(reply)), tail);
});

Deno.test("http: any HTTP/1.x 200 and any reason phrase is success", () => {
  for (
    const line of ["HTTP/1.0 200 OK", "HTTP/1.1 200", "HTTP/1.1 200 ", "HTTP/1.1 200 Tunnel ok"]
  ) {
    const { neg } = httpStart({ host: "192.0.2.1", port: 33445 });
    expectDone(neg.receive(ascii(`${line}\r\n\r\n`)));
  }
});

Deno.test("http: bare-LF line ends are tolerated (RFC 9112 §2.2)", () => {
  const reply = ascii("HTTP/1.1 200 OK\nVia: x\n\n");
  const whole = httpStart({ host: "192.0.2.1", port: 33445 }).neg;
  assert.deepEqual(expectDone(whole.receive(concat(reply, TOX_BYTES))), TOX_BYTES);
  const slow = httpStart({ host: "192.0.2.1", port: 33445 }).neg;
  assert.deepEqual(expectDone(trickle(slow, reply)), new Uint8Array(0));
  // Mixed: CRLF lines closed by a bare LF.
  const mixed = httpStart({ host: "192.0.2.1", port: 33445 }).neg;
  assert.deepEqual(expectDone(trickle(mixed, ascii("HTTP/1.1 200 OK\r\n\n"))), new Uint8Array(0));
});

Deno.test("http: 407 is reported as authentication required, with the status line", () => {
  const { neg } = httpStart({ host: "192.0.2.1", port: 33445 });
  const reply = ascii(
    "HTTP/1.1 407 Proxy Authentication Required\r\n" +
      'Proxy-Authenticate: Basic realm="proxy"\r\n\r\n',
  );
  assert.equal(
    expectFailed(neg.receive(reply)),
    'proxy requires authentication: "HTTP/1.1 407 Proxy Authentication Required"',
  );
  assert.equal(neg.stage, "failed");
});

Deno.test("http: 403 and 502 are refusals quoting the status line", () => {
  const cases: [string, string][] = [
    ["HTTP/1.1 403 Forbidden", 'proxy refused CONNECT: "HTTP/1.1 403 Forbidden"'],
    ["HTTP/1.0 502 Bad Gateway", 'proxy refused CONNECT: "HTTP/1.0 502 Bad Gateway"'],
    // c-toxcore's strstr("200") would take this one as success.
    [
      "HTTP/1.1 502 upstream 200 ms timeout",
      'proxy refused CONNECT: "HTTP/1.1 502 upstream 200 ms timeout"',
    ],
    ["HTTP/1.1 2000 Weird", 'proxy refused CONNECT: "HTTP/1.1 2000 Weird"'],
    ["HTTP/2 200", 'proxy refused CONNECT: "HTTP/2 200"'],
  ];
  for (const [line, reason] of cases) {
    const whole = httpStart({ host: "192.0.2.1", port: 33445 }).neg;
    assert.equal(expectFailed(whole.receive(ascii(`${line}\r\nVia: p\r\n\r\n`))), reason);
    const slow = httpStart({ host: "192.0.2.1", port: 33445 }).neg;
    assert.equal(expectFailed(trickle(slow, ascii(`${line}\r\n\r\n`))), reason);
  }
});

Deno.test("http: garbage and control characters are quoted safely", () => {
  const { neg } = httpStart({ host: "192.0.2.1", port: 33445 });
  const reply = concat(bytes(0x05, 0x00, 0x1b, 0x41), ascii("\r\n\r\n"));
  assert.equal(expectFailed(neg.receive(reply)), 'proxy refused CONNECT: "???A"');
});

Deno.test("http: header over 8192 bytes fails; exactly 8192 is accepted", () => {
  const status = "HTTP/1.1 200 OK\r\n";
  const fill = (total: number) => {
    const pad = total - status.length - "X: \r\n\r\n".length;
    return ascii(`${status}X: ${"a".repeat(pad)}\r\n\r\n`);
  };
  const exact = fill(MAX_HTTP_REPLY_HEADER);
  assert.equal(exact.length, 8192);
  expectDone(httpStart({ host: "192.0.2.1", port: 1 }).neg.receive(exact));

  const over = fill(MAX_HTTP_REPLY_HEADER + 1);
  assert.equal(
    expectFailed(httpStart({ host: "192.0.2.1", port: 1 }).neg.receive(over)),
    "proxy reply header too large",
  );

  // Endless header trickled in: fails once 8192 bytes hold no blank line.
  const { neg } = httpStart({ host: "192.0.2.1", port: 1 });
  let p: ProxyProgress = { kind: "need_more" };
  let fed = 0;
  while (p.kind === "need_more") {
    p = neg.receive(ascii("a"));
    fed++;
  }
  assert.equal(expectFailed(p), "proxy reply header too large");
  assert.equal(fed, MAX_HTTP_REPLY_HEADER);
});

// ---------------------------------------------------------------------------------------------
// Lifecycle

Deno.test("receive after done or failed reports the negotiation as finished", () => {
  const done = socksToConnect({ host: "192.0.2.1", port: 33445 }).neg;
  expectDone(done.receive(CONNECT_OK_V4));
  assert.equal(expectFailed(done.receive(TOX_BYTES)), "negotiation already finished");
  assert.equal(done.stage, "done");

  const failed = httpStart({ host: "192.0.2.1", port: 33445 }).neg;
  expectFailed(failed.receive(ascii("HTTP/1.1 403 Forbidden\r\n\r\n")));
  assert.equal(expectFailed(failed.receive(TOX_BYTES)), "negotiation already finished");
  assert.equal(failed.stage, "failed");
});

Deno.test("start twice or receive before start is a caller bug", () => {
  const neg = new ProxyNegotiation("http", { host: "192.0.2.1", port: 33445 });
  assert.throws(() => neg.receive(bytes(1)), /before start/);
  neg.start();
  assert.throws(() => neg.start(), /twice/);
});

Deno.test("invalid targets are refused with TypeError", () => {
  const bad: [unknown, unknown][] = [
    ["", 1],
    ["[::1]", 1], // brackets belong to URLs, not to targets
    ["fe80::1%eth0", 1],
    ["exa mple.org", 1],
    ["under_score.org", 1],
    ["-lead.org", 1],
    ["a..b", 1],
    ["1.2.3", 1], // all-numeric: a malformed IPv4 address, not a name
    ["010.0.0.1", 1],
    ["bücher.de", 1], // IDNs must arrive already in punycode
    [`${"a".repeat(63)}.`.repeat(4) + "a", 1], // 257 bytes
    ["192.0.2.1", 0],
    ["192.0.2.1", 65536],
    ["192.0.2.1", 1.5],
    ["192.0.2.1", "80"],
    [undefined, 80],
  ];
  for (const [host, port] of bad) {
    assert.throws(
      () => new ProxyNegotiation("socks5", { host, port } as ProxyTarget),
      TypeError,
      `${host}:${port}`,
    );
  }
  assert.throws(
    () => new ProxyNegotiation("socks4" as "socks5", { host: "192.0.2.1", port: 1 }),
    TypeError,
  );
  // Good ones for contrast: trailing-dot FQDN, punycode, single label, numeric inner labels.
  for (const host of ["tox.example.org.", "xn--bcher-kva.de", "localhost", "1.2.3.example"]) {
    new ProxyNegotiation("socks5", { host, port: 1 });
  }
});

// ---------------------------------------------------------------------------------------------
// Proxy URLs

Deno.test("parseProxyUrl: accepted forms", () => {
  assert.deepEqual(parseProxyUrl("socks5://127.0.0.1:9050"), {
    kind: "socks5",
    host: "127.0.0.1",
    port: 9050,
  });
  assert.deepEqual(parseProxyUrl("http://proxy.example.com:3128"), {
    kind: "http",
    host: "proxy.example.com",
    port: 3128,
  });
  assert.deepEqual(parseProxyUrl("socks5://[::1]:1080"), {
    kind: "socks5",
    host: "::1",
    port: 1080,
  });
  assert.deepEqual(parseProxyUrl("SOCKS5://localhost:1080"), {
    kind: "socks5",
    host: "localhost",
    port: 1080,
  });
  assert.deepEqual(parseProxyUrl("http://10.0.0.1:8080/"), {
    kind: "http",
    host: "10.0.0.1",
    port: 8080,
  });
  assert.deepEqual(parseProxyUrl("http://[2001:db8::1]:65535"), {
    kind: "http",
    host: "2001:db8::1",
    port: 65535,
  });
});

Deno.test("parseProxyUrl: rejected forms throw TypeError", () => {
  const bad: [string, RegExp][] = [
    ["", /expected/],
    ["127.0.0.1:9050", /expected/],
    ["socks4://127.0.0.1:1080", /unsupported scheme "socks4"/],
    ["socks5h://127.0.0.1:1080", /unsupported scheme/],
    ["https://proxy:443", /unsupported scheme "https"/],
    ["socks5://127.0.0.1", /missing port/],
    ["socks5://127.0.0.1:", /missing port/],
    ["http://proxy.example.com", /missing port/],
    ["socks5://[::1]", /missing port/],
    ["socks5://[::1]:", /missing port/],
    ["socks5://127.0.0.1:0", /out of range/],
    ["socks5://127.0.0.1:65536", /out of range/],
    ["socks5://127.0.0.1:99999", /out of range/],
    ["socks5://127.0.0.1:-1", /not a number/],
    ["socks5://127.0.0.1:80a", /not a number/],
    ["socks5://127.0.0.1: 80", /not a number/],
    ["socks5://:1080", /missing host/],
    ["socks5://::1:1080", /brackets/],
    ["socks5://[::1:1080", /unterminated/],
    ["socks5://[1.2.3.4]:1080", /not an IPv6 address/],
    ["socks5://[::1]x:1080", /missing port/],
    ["http://proxy:3128/path", /no path/],
    ["http://proxy:3128?q=1", /no path/],
    ["http://proxy:3128#f", /no path/],
    ["http://proxy:3128//", /no path/],
    ["http://pro xy:3128", /not an IPv4 address or a domain name/],
    ["http://under_score:3128", /not an IPv4 address or a domain name/],
  ];
  for (const [url, why] of bad) {
    assert.throws(() => parseProxyUrl(url), TypeError, url);
    assert.throws(() => parseProxyUrl(url), why, url);
  }
});

Deno.test("parseProxyUrl: credentials are refused without echoing them", () => {
  for (const url of ["socks5://alice:s3cret@127.0.0.1:1080", "http://alice@proxy:3128"]) {
    assert.throws(
      () => parseProxyUrl(url),
      (e: unknown) =>
        e instanceof TypeError && /credentials/.test(e.message) && !/s3cret|alice/.test(e.message),
    );
  }
});

Deno.test("formatProxyUrl round-trips through parseProxyUrl", () => {
  assert.equal(formatProxyUrl({ kind: "socks5", host: "::1", port: 1080 }), "socks5://[::1]:1080");
  assert.equal(
    formatProxyUrl({ kind: "http", host: "10.0.0.1", port: 8080 }),
    "http://10.0.0.1:8080",
  );
  for (const url of ["socks5://[2001:db8::1]:1080", "http://proxy.example.com:3128"]) {
    assert.equal(formatProxyUrl(parseProxyUrl(url)), url);
  }
});

// ---------------------------------------------------------------------------------------------
// IP literals

Deno.test("parseIpLiteral: IPv4", () => {
  assert.deepEqual(parseIpLiteral("192.0.2.1"), { family: 4, bytes: bytes(192, 0, 2, 1) });
  assert.deepEqual(parseIpLiteral("0.0.0.0"), { family: 4, bytes: bytes(0, 0, 0, 0) });
  assert.deepEqual(parseIpLiteral("255.255.255.255"), {
    family: 4,
    bytes: bytes(255, 255, 255, 255),
  });
});

Deno.test("parseIpLiteral: IPv6, with and without :: compression", () => {
  const v6 = (...words: number[]) => {
    const b = new Uint8Array(16);
    words.forEach((w, i) => {
      b[2 * i] = w >>> 8;
      b[2 * i + 1] = w & 0xff;
    });
    return { family: 6, bytes: b };
  };
  assert.deepEqual(parseIpLiteral("::"), v6());
  assert.deepEqual(parseIpLiteral("::1"), v6(0, 0, 0, 0, 0, 0, 0, 1));
  assert.deepEqual(parseIpLiteral("1::"), v6(1));
  assert.deepEqual(parseIpLiteral("2001:db8::1"), v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
  assert.deepEqual(
    parseIpLiteral("2001:DB8:0:0:8:800:200C:417A"),
    v6(0x2001, 0xdb8, 0, 0, 8, 0x800, 0x200c, 0x417a),
  );
  assert.deepEqual(parseIpLiteral("1:2:3:4:5:6:7::"), v6(1, 2, 3, 4, 5, 6, 7, 0));
  assert.deepEqual(parseIpLiteral("::2:3:4:5:6:7:8"), v6(0, 2, 3, 4, 5, 6, 7, 8));
  assert.deepEqual(parseIpLiteral("fe80::0001:2"), v6(0xfe80, 0, 0, 0, 0, 0, 1, 2));
  // IPv4-mapped and other embedded dotted quads stay IPv6.
  assert.deepEqual(parseIpLiteral("::ffff:1.2.3.4"), v6(0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304));
  assert.deepEqual(
    parseIpLiteral("64:ff9b::192.0.2.33"),
    v6(0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0221),
  );
  assert.deepEqual(
    parseIpLiteral("0:0:0:0:0:ffff:10.0.0.1"),
    v6(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001),
  );
});

Deno.test("parseIpLiteral: invalid literals are null", () => {
  for (
    const s of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.0.0.1",
      "01.2.3.4", // leading zero: octal to inet_aton
      "1.2.3.-4",
      "1.2.3.4 ",
      " 1.2.3.4",
      "0x7f.0.0.1",
      "1..2.3",
      "example.org",
      ":",
      ":::",
      "1:::2",
      "1::2::3",
      ":1::",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7:8::",
      "1::2:3:4:5:6:7:8",
      "12345::",
      "g::1",
      "[::1]",
      "fe80::1%eth0",
      "::ffff:1.2.3",
      "::ffff:256.1.2.3",
      "1.2.3.4::",
      "::1.2.3.4:5",
      "1:2:3:4:5:6:7:1.2.3.4", // dotted quad is two groups: nine in all
      "1:2:3:4:5:6:1.2.3.4:8",
    ]
  ) {
    assert.equal(parseIpLiteral(s), null, JSON.stringify(s));
  }
});

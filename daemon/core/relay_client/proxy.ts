/**
 * Client-side proxy negotiation run before the TCP relay handshake when a proxy is configured:
 * SOCKS5 without authentication (RFC 1928) and HTTP CONNECT (RFC 9110 §9.3.6). Reference:
 * TCP_client.c proxy_socks5_* / proxy_http_* in c-toxcore 0.2.18. Sans-I/O: the caller writes
 * what start() and receive() return and feeds back whatever the proxy sends.
 *
 * Deliberate departures from c-toxcore:
 * - the SOCKS5 CONNECT reply is parsed by its own ATYP instead of being assumed as long as the
 *   request; proxies often answer an IPv6 or domain request with an IPv4 BND.ADDR, and a fixed
 *   read length then either stalls or hands reply bytes to the Tox stream;
 * - a domain target goes to the proxy as ATYP 03, so the proxy resolves it and no DNS query
 *   leaves this host around the proxy;
 * - the HTTP reply is read up to its blank line and the status line checked, instead of
 *   looking for "200" in the first 15 bytes and draining the socket, which can swallow the
 *   relay's first bytes or accept "HTTP/1.1 502 ... 200 ...";
 * - the HTTP request uses CRLF throughout and brackets IPv6 hosts.
 */
import { concatBytes } from "../common/codec.ts";
import { parseIpLiteral } from "../common/ip_text.ts";

export type ProxyKind = "socks5" | "http";

export interface ProxyConfig {
  kind: ProxyKind;
  host: string;
  port: number;
}

/** Where the proxy connects us: IPv4 literal, IPv6 literal without brackets, or domain name. */
export interface ProxyTarget {
  host: string;
  port: number;
}

export type ProxyProgress =
  | { readonly kind: "need_more" }
  | { readonly kind: "write"; readonly bytes: Uint8Array }
  | { readonly kind: "done"; readonly leftover: Uint8Array }
  | { readonly kind: "failed"; readonly reason: string };

export type ProxyStage =
  | "initial"
  | "awaiting_method"
  | "awaiting_connect_reply"
  | "awaiting_http_reply"
  | "done"
  | "failed";

/** Longest HTTP reply header (status line through the blank line) we buffer before giving up. */
export const MAX_HTTP_REPLY_HEADER = 8192;

const MAX_DOMAIN_LENGTH = 255;

// ---------------------------------------------------------------------------------------------
// Hosts, ports, URLs

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function isDomainName(host: string): boolean {
  if (host.length === 0 || host.length > MAX_DOMAIN_LENGTH) return false;
  const labels = (host.endsWith(".") ? host.slice(0, -1) : host).split(".");
  if (!labels.every((l) => LABEL.test(l))) return false;
  // An all-numeric last label ("1.2.3", "10.0.0.010") is a malformed IPv4 address that a
  // resolver or proxy may still read as one (inet_aton); better refused than misrouted.
  return !/^[0-9]+$/.test(labels[labels.length - 1]);
}

function describeHost(host: string): string {
  return JSON.stringify(host.length > 80 ? `${host.slice(0, 80)}…` : host);
}

function checkHost(host: unknown, what: string): asserts host is string {
  if (typeof host !== "string") throw new TypeError(`${what} must be a string`);
  if (parseIpLiteral(host) === null && !isDomainName(host)) {
    throw new TypeError(
      `${what} ${describeHost(host)} is not an IPv4 address, an IPv6 address or a domain name ` +
        `(letters, digits, hyphens and dots, at most ${MAX_DOMAIN_LENGTH} bytes)`,
    );
  }
}

function checkPort(port: unknown, what: string): asserts port is number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`${what} must be an integer in 1..65535, got ${String(port)}`);
  }
}

function checkKind(kind: unknown): asserts kind is ProxyKind {
  if (kind !== "socks5" && kind !== "http") {
    throw new TypeError(`proxy kind must be "socks5" or "http", got ${String(kind)}`);
  }
}

/** host:port with an IPv6 host bracketed, as URLs and HTTP authority-form need. */
function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Parse `socks5://host:port` or `http://host:port` (scheme case-insensitive, IPv6 host in
 * brackets, one trailing "/" tolerated because http_proxy-style values often carry it).
 * Throws TypeError for anything else; the message never echoes credentials.
 */
export function parseProxyUrl(url: string): ProxyConfig {
  if (typeof url !== "string") throw new TypeError("proxy URL must be a string");
  const bad = (why: string) => new TypeError(`invalid proxy URL: ${why}`);
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url);
  if (m === null) throw bad('expected "socks5://host:port" or "http://host:port"');
  const scheme = m[1].toLowerCase();
  if (scheme !== "socks5" && scheme !== "http") {
    throw bad(`unsupported scheme "${scheme}" (use socks5:// or http://)`);
  }
  let rest = m[2];
  if (rest.includes("@")) {
    throw bad(
      "credentials (user:password@) are not supported; proxy authentication is not implemented",
    );
  }
  if (rest.endsWith("/")) rest = rest.slice(0, -1);
  if (/[/?#]/.test(rest)) throw bad("a proxy URL has no path, query or fragment");

  let host: string;
  let portText: string;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close === -1) throw bad('unterminated "[" in host');
    host = rest.slice(1, close);
    const ip = parseIpLiteral(host);
    if (ip === null || ip.family !== 6) {
      throw bad(`${describeHost(host)} in brackets is not an IPv6 address`);
    }
    const after = rest.slice(close + 1);
    if (!after.startsWith(":")) throw bad("missing port (expected [address]:port)");
    portText = after.slice(1);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon === -1) throw bad("missing port (expected host:port)");
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(":")) throw bad("an IPv6 address must be written in brackets: [::1]:1080");
    if (host === "") throw bad("missing host");
    if (parseIpLiteral(host) === null && !isDomainName(host)) {
      throw bad(`${describeHost(host)} is not an IPv4 address or a domain name`);
    }
  }
  if (portText === "") throw bad("missing port");
  if (!/^[0-9]{1,5}$/.test(portText)) throw bad(`port "${portText.slice(0, 20)}" is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad(`port ${port} is out of range 1..65535`);
  return { kind: scheme, host, port };
}

/** The URL parseProxyUrl reads back as the same config. */
export function formatProxyUrl(p: ProxyConfig): string {
  return `${p.kind}://${hostPort(p.host, p.port)}`;
}

// ---------------------------------------------------------------------------------------------
// Negotiation

const SOCKS_VERSION = 0x05;
const SOCKS_AUTH_NONE = 0x00;
const SOCKS_AUTH_NO_ACCEPTABLE = 0xff;
const SOCKS_CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/** RFC 1928 §6 reply field names, indexed by REP. */
const SOCKS_REPLY_NAMES = [
  "succeeded",
  "general failure",
  "connection not allowed by ruleset",
  "network unreachable",
  "host unreachable",
  "connection refused",
  "TTL expired",
  "command not supported",
  "address type not supported",
];

const NEED_MORE: ProxyProgress = { kind: "need_more" };
const LF = 0x0a;
const CR = 0x0d;

function hex(b: number): string {
  return `0x${b.toString(16).padStart(2, "0")}`;
}

/** Printable, bounded rendering of proxy-supplied text for a failure reason. */
function quoteLine(raw: string): string {
  // deno-lint-ignore no-control-regex
  const clean = raw.replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
  return JSON.stringify(clean.length > 200 ? `${clean.slice(0, 200)}…` : clean);
}

/** End of the header (index just past the blank line), or -1; scanning starts at `from`. */
function findHeaderEnd(buf: Uint8Array, from: number): number {
  // RFC 9112 §2.2 lets a recipient take a bare LF as a line end; some small proxies send them.
  for (let i = from; i < buf.length; i++) {
    if (buf[i] !== LF) continue;
    if (i + 1 < buf.length && buf[i + 1] === LF) return i + 2;
    if (i + 2 < buf.length && buf[i + 1] === CR && buf[i + 2] === LF) return i + 3;
  }
  return -1;
}

/**
 * One proxy negotiation for one TCP connection: call start() once and write its bytes, then
 * feed every chunk read from the proxy to receive() until it says "done" (the tunnel is open;
 * `leftover` already belongs to the Tox stream) or "failed" (close the connection).
 */
export class ProxyNegotiation {
  readonly #kind: ProxyKind;
  readonly #target: ProxyTarget;
  #stage: ProxyStage = "initial";
  #buf = new Uint8Array(64);
  #len = 0;
  #scanFrom = 0;

  /** Throws TypeError for an unknown kind or an invalid target host or port. */
  constructor(kind: ProxyKind, target: ProxyTarget) {
    checkKind(kind);
    checkHost(target?.host, "proxy target host");
    checkPort(target.port, "proxy target port");
    this.#kind = kind;
    this.#target = { host: target.host, port: target.port };
  }

  get stage(): ProxyStage {
    return this.#stage;
  }

  /** The first bytes to write to the proxy. Calling it twice is a caller bug and throws. */
  start(): Uint8Array {
    if (this.#stage !== "initial") throw new Error("ProxyNegotiation.start() called twice");
    if (this.#kind === "socks5") {
      this.#stage = "awaiting_method";
      // Offering only "no authentication" keeps a proxy that wants credentials from picking
      // a method we cannot speak; it must answer 0xFF instead.
      return Uint8Array.of(SOCKS_VERSION, 1, SOCKS_AUTH_NONE);
    }
    this.#stage = "awaiting_http_reply";
    const authority = hostPort(this.#target.host, this.#target.port);
    return new TextEncoder().encode(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
    );
  }

  /** Feed bytes read from the proxy, split anywhere. */
  receive(bytes: Uint8Array): ProxyProgress {
    switch (this.#stage) {
      case "initial":
        throw new Error("ProxyNegotiation.receive() before start()");
      case "done":
      case "failed":
        return { kind: "failed", reason: "negotiation already finished" };
    }
    this.#append(bytes);
    switch (this.#stage) {
      case "awaiting_method":
        return this.#onMethodReply();
      case "awaiting_connect_reply":
        return this.#onConnectReply();
      default:
        return this.#onHttpReply();
    }
  }

  #append(bytes: Uint8Array): void {
    if (this.#len + bytes.length > this.#buf.length) {
      const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + bytes.length));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
  }

  #fail(reason: string): ProxyProgress {
    this.#stage = "failed";
    this.#buf = new Uint8Array(0);
    this.#len = 0;
    return { kind: "failed", reason };
  }

  #finish(consumed: number): ProxyProgress {
    const leftover = this.#buf.slice(consumed, this.#len);
    this.#stage = "done";
    this.#buf = new Uint8Array(0);
    this.#len = 0;
    return { kind: "done", leftover };
  }

  #onMethodReply(): ProxyProgress {
    const b = this.#buf;
    if (this.#len >= 1 && b[0] !== SOCKS_VERSION) {
      return this.#fail(`proxy is not speaking SOCKS5 (reply version ${hex(b[0])})`);
    }
    if (this.#len < 2) return NEED_MORE;
    if (b[1] === SOCKS_AUTH_NO_ACCEPTABLE) return this.#fail("proxy requires authentication");
    if (b[1] !== SOCKS_AUTH_NONE) {
      return this.#fail(`proxy chose authentication method ${hex(b[1])}, which was not offered`);
    }
    // The proxy cannot have answered a CONNECT it has not been sent yet.
    if (this.#len > 2) return this.#fail("proxy sent unexpected bytes after its method reply");
    this.#len = 0;
    this.#stage = "awaiting_connect_reply";
    return { kind: "write", bytes: this.#socksConnectRequest() };
  }

  #socksConnectRequest(): Uint8Array {
    const { host, port } = this.#target;
    const ip = parseIpLiteral(host);
    let address: Uint8Array;
    if (ip !== null) {
      address = concatBytes(Uint8Array.of(ip.family === 4 ? ATYP_IPV4 : ATYP_IPV6), ip.bytes);
    } else {
      // Validated as ASCII letters, digits, hyphens and dots, so one char is one byte.
      const name = new TextEncoder().encode(host);
      address = concatBytes(Uint8Array.of(ATYP_DOMAIN, name.length), name);
    }
    return concatBytes(
      Uint8Array.of(SOCKS_VERSION, SOCKS_CMD_CONNECT, 0x00),
      address,
      Uint8Array.of(port >>> 8, port & 0xff),
    );
  }

  #onConnectReply(): ProxyProgress {
    const b = this.#buf;
    const n = this.#len;
    if (n >= 1 && b[0] !== SOCKS_VERSION) {
      return this.#fail(`proxy is not speaking SOCKS5 (reply version ${hex(b[0])})`);
    }
    // A refusal is final whatever follows it, so there is no point waiting for BND.ADDR.
    if (n >= 2 && b[1] !== 0x00) {
      const name = SOCKS_REPLY_NAMES[b[1]] ?? "unassigned reply code";
      return this.#fail(`SOCKS5 CONNECT failed: ${name} (reply ${hex(b[1])})`);
    }
    // RSV (b[2]) is not checked: it carries nothing, and rejecting a sloppy proxy over it
    // would gain nothing.
    if (n < 4) return NEED_MORE;
    let addressLength: number;
    switch (b[3]) {
      case ATYP_IPV4:
        addressLength = 4;
        break;
      case ATYP_IPV6:
        addressLength = 16;
        break;
      case ATYP_DOMAIN:
        if (n < 5) return NEED_MORE;
        addressLength = 1 + b[4];
        break;
      default:
        return this.#fail(`SOCKS5 CONNECT reply has unknown address type ${hex(b[3])}`);
    }
    const total = 4 + addressLength + 2;
    if (n < total) return NEED_MORE;
    return this.#finish(total);
  }

  #onHttpReply(): ProxyProgress {
    const end = findHeaderEnd(this.#buf.subarray(0, this.#len), this.#scanFrom);
    if (end === -1) {
      if (this.#len >= MAX_HTTP_REPLY_HEADER) return this.#fail("proxy reply header too large");
      // The last two bytes may be the start of a line end the next chunk completes.
      this.#scanFrom = Math.max(0, this.#len - 2);
      return NEED_MORE;
    }
    if (end > MAX_HTTP_REPLY_HEADER) return this.#fail("proxy reply header too large");
    const firstLf = this.#buf.indexOf(LF);
    const raw = new TextDecoder("latin1").decode(this.#buf.subarray(0, firstLf));
    const statusLine = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    // Only 200 opens the tunnel; the reason phrase is free text and may be empty.
    if (/^HTTP\/1\.[0-9] 200(?: |$)/.test(statusLine)) return this.#finish(end);
    if (/^HTTP\/1\.[0-9] 407(?: |$)/.test(statusLine)) {
      return this.#fail(`proxy requires authentication: ${quoteLine(statusLine)}`);
    }
    return this.#fail(`proxy refused CONNECT: ${quoteLine(statusLine)}`);
  }
}

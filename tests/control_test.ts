/**
 * The control socket's protocol as text: JSON lines in (LineSplitter, parseRequest), replies and
 * events out (okReply, errorReply, eventLine). Nothing here opens a socket.
 */
import assert from "node:assert/strict";
import {
  COMMANDS,
  type ControlCommand,
  type ErrorCode,
  errorReply,
  eventLine,
  type LineResult,
  LineSplitter,
  MAX_FRIEND_REQUEST_MESSAGE,
  MAX_LINE_BYTES,
  okReply,
  parseRequest,
  type RequestId,
} from "../daemon/shell/control.ts";
import { fromHex } from "../daemon/core/common/crypto.ts";
import { toxId } from "../daemon/shell/identity.ts";
import { MAX_MESSAGE_LENGTH } from "../daemon/core/messenger/messenger.ts";
import { MAX_CRYPTO_DATA_SIZE } from "../daemon/core/net_crypto/packets.ts";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);

/** A friend's public key, its bytes, and a Tox ID for it (nospam 01020304). */
const FRIEND_PK = "0F1E2D3C4B5A69788796A5B4C3D2E1F00112233445566778899AABBCCDDEEFF0";
const FRIEND_PK_BYTES = fromHex(FRIEND_PK);
const FRIEND_TOX_ID = toxId(FRIEND_PK_BYTES, new Uint8Array([1, 2, 3, 4]));
/** The same Tox ID with the last checksum nibble changed. */
const FRIEND_TOX_ID_BAD_CHECKSUM = FRIEND_TOX_ID.slice(0, -1) +
  (FRIEND_TOX_ID.endsWith("0") ? "1" : "0");
const DHT_PK = "a".repeat(64);
const RELAY_PK = "6BBF183586E9645F7AB2C73D6DCAF1456D1AB1DA1AFB8C077FB2A7176FA7F865";
const RELAY_SPEC = `127.0.0.1:33445:${RELAY_PK}`;
const RELAY = { host: "127.0.0.1", port: 33445, publicKey: RELAY_PK.toLowerCase() };

// ---- LineSplitter ------------------------------------------------------------------------

function okLines(results: LineResult[]): string[] {
  return results.map((r) => {
    if (!r.ok) throw new Error(`expected a line, got ${r.error.code}: ${r.error.message}`);
    return r.line;
  });
}

function codes(results: LineResult[]): string[] {
  return results.map((r) => r.ok ? `line:${r.line}` : `error:${r.error.code}`);
}

Deno.test("lines: one complete line per push is one line, newline removed", () => {
  const s = new LineSplitter();
  assert.deepEqual(okLines(s.push(bytes('{"cmd":"status"}\n'))), ['{"cmd":"status"}']);
  assert.deepEqual(okLines(s.push(bytes('{"cmd":"self"}\n'))), ['{"cmd":"self"}']);
});

Deno.test("lines: several lines in one push come out in order", () => {
  const s = new LineSplitter();
  assert.deepEqual(okLines(s.push(bytes("a\nb\nc\n"))), ["a", "b", "c"]);
});

Deno.test("lines: a line without its newline is held until the newline arrives", () => {
  const s = new LineSplitter();
  assert.deepEqual(s.push(bytes('{"cmd":')), []);
  assert.deepEqual(s.push(bytes('"sta')), []);
  assert.deepEqual(okLines(s.push(bytes('tus"}\n{"cmd"'))), ['{"cmd":"status"}']);
  assert.deepEqual(okLines(s.push(bytes(':"self"}\n'))), ['{"cmd":"self"}']);
});

Deno.test("lines: a multi-byte UTF-8 character split across pushes is decoded whole", () => {
  const line = bytes('{"text":"h\u00e9 \u{1F600}"}\n');
  const e = line.indexOf(0xc3); // first byte of é (C3 A9)
  const smiley = line.indexOf(0xf0); // first byte of 😀 (F0 9F 98 80)
  const s = new LineSplitter();
  const out = [
    ...s.push(line.subarray(0, e + 1)),
    ...s.push(line.subarray(e + 1, smiley + 2)),
    ...s.push(line.subarray(smiley + 2, smiley + 3)),
    ...s.push(line.subarray(smiley + 3)),
  ];
  assert.deepEqual(okLines(out), ['{"text":"h\u00e9 \u{1F600}"}']);
});

Deno.test("lines: one byte at a time gives the same lines", () => {
  const input = bytes('{"cmd":"status"}\r\n\n{"text":"\u00fcber"}\n');
  const s = new LineSplitter();
  const out: LineResult[] = [];
  for (let i = 0; i < input.length; i++) out.push(...s.push(input.subarray(i, i + 1)));
  assert.deepEqual(okLines(out), ['{"cmd":"status"}', "", '{"text":"\u00fcber"}']);
});

Deno.test("lines: a CRLF line ends without its CR, even when CR and LF arrive apart", () => {
  const s = new LineSplitter();
  assert.deepEqual(okLines(s.push(bytes('{"cmd":"status"}\r\n'))), ['{"cmd":"status"}']);
  assert.deepEqual(s.push(bytes("abc\r")), []);
  assert.deepEqual(okLines(s.push(bytes("\n"))), ["abc"]);
});

Deno.test("lines: an empty line is an empty line (the server skips it)", () => {
  const s = new LineSplitter();
  assert.deepEqual(okLines(s.push(bytes("\n"))), [""]);
  assert.deepEqual(okLines(s.push(bytes("\r\n\na\n"))), ["", "", "a"]);
});

Deno.test("lines: bytes pushed may be reused by the caller once push returns", () => {
  const s = new LineSplitter();
  const buf = bytes("abc");
  s.push(buf);
  buf.set(bytes("xyz"));
  assert.deepEqual(okLines(s.push(bytes("\n"))), ["abc"]);
});

Deno.test("lines: a line of exactly MAX_LINE_BYTES is accepted", () => {
  assert.equal(MAX_LINE_BYTES, 64 * 1024);
  const s = new LineSplitter();
  const line = "x".repeat(MAX_LINE_BYTES);
  const out = okLines(s.push(bytes(line + "\n")));
  assert.equal(out.length, 1);
  assert.equal(out[0], line);
});

Deno.test("lines: a line of exactly MAX_LINE_BYTES in 1 KiB pushes is accepted", () => {
  const s = new LineSplitter();
  const chunk = bytes("y".repeat(1024));
  for (let i = 0; i < MAX_LINE_BYTES / 1024; i++) assert.deepEqual(s.push(chunk), []);
  const out = okLines(s.push(bytes("\n")));
  assert.equal(out.length, 1);
  assert.equal(out[0].length, MAX_LINE_BYTES);
});

Deno.test("lines: one byte over MAX_LINE_BYTES is one line_too_long; the next line is fine", () => {
  const s = new LineSplitter();
  const out = s.push(bytes("x".repeat(MAX_LINE_BYTES + 1) + '\n{"cmd":"status"}\n'));
  assert.deepEqual(codes(out), ["error:line_too_long", 'line:{"cmd":"status"}']);
  const err = out[0];
  assert.ok(!err.ok);
  assert.match(err.error.message, new RegExp(`${MAX_LINE_BYTES}`));
});

Deno.test("lines: an oversized line over many pushes gives a single error, then lines resume", () => {
  const s = new LineSplitter();
  const out: LineResult[] = [];
  for (let i = 0; i < MAX_LINE_BYTES / 1024; i++) out.push(...s.push(bytes("z".repeat(1024))));
  assert.equal(out.length, 0, "exactly MAX_LINE_BYTES so far: nothing to say yet");
  out.push(...s.push(bytes("z")));
  assert.equal(out.length, 0, "one byte over could still be the CR of a CRLF");
  out.push(...s.push(bytes("z")));
  assert.deepEqual(codes(out), ["error:line_too_long"], "reported as soon as it is too long");
  for (let i = 0; i < 100; i++) out.push(...s.push(bytes("z".repeat(1024))));
  out.push(...s.push(bytes('zzz\n{"cmd":"self"}\n')));
  assert.deepEqual(codes(out), ["error:line_too_long", 'line:{"cmd":"self"}']);
});

Deno.test("lines: two oversized lines in a row give two errors", () => {
  const s = new LineSplitter(8);
  const out = s.push(bytes("123456789\nabcdefghij\nok\n"));
  assert.deepEqual(codes(out), ["error:line_too_long", "error:line_too_long", "line:ok"]);
});

Deno.test("lines: the CR of a CRLF does not count towards the limit", () => {
  const s = new LineSplitter(8);
  assert.deepEqual(codes(s.push(bytes("12345678\r\n"))), ["line:12345678"]);
  assert.deepEqual(codes(s.push(bytes("123456789\n"))), ["error:line_too_long"]);
  assert.deepEqual(codes(s.push(bytes("12345678x\r\nok\n"))), ["error:line_too_long", "line:ok"]);
});

Deno.test("lines: a held partial line counts towards the limit", () => {
  const s = new LineSplitter(8);
  assert.deepEqual(s.push(bytes("12345")), []);
  assert.deepEqual(codes(s.push(bytes("6789\nok\n"))), ["error:line_too_long", "line:ok"]);
  assert.deepEqual(s.push(bytes("1234")), []);
  assert.deepEqual(codes(s.push(bytes("5678\n"))), ["line:12345678"]);
});

Deno.test("lines: memory stays bounded: 1 MiB without a newline in 1 KiB pushes", () => {
  const s = new LineSplitter();
  const chunk = bytes("q".repeat(1024));
  const out: LineResult[] = [];
  for (let i = 0; i < 1024; i++) out.push(...s.push(chunk));
  out.push(...s.push(bytes("\nshort\n")));
  assert.deepEqual(codes(out), ["error:line_too_long", "line:short"]);
  for (const r of out) if (r.ok) assert.ok(bytes(r.line).length <= MAX_LINE_BYTES);
});

Deno.test("lines: invalid UTF-8 is bad_json, and the next line is fine", () => {
  const s = new LineSplitter();
  const out = s.push(
    new Uint8Array([...bytes('{"text":"'), 0xff, 0xfe, ...bytes('"}\n{"cmd":"status"}\n')]),
  );
  assert.deepEqual(codes(out), ["error:bad_json", 'line:{"cmd":"status"}']);
  // A truncated multi-byte sequence before the newline is invalid too.
  assert.deepEqual(codes(s.push(new Uint8Array([0x61, 0xc3, 0x0a]))), ["error:bad_json"]);
  assert.deepEqual(codes(s.push(bytes("\u00e9\n"))), ["line:\u00e9"]);
});

// ---- parseRequest: malformed requests ----------------------------------------------------

interface Malformed {
  readonly what: string;
  /** A raw line, or an object sent as JSON. */
  readonly request: string | Record<string, unknown>;
  readonly code: ErrorCode;
  /** The id the error reply echoes. */
  readonly id: RequestId;
  /** Text the error message must contain, so the user learns what is wrong. */
  readonly says: string;
}

const lossless = (data: string) => ({
  id: 30,
  cmd: "send.lossless",
  public_key: FRIEND_PK,
  data,
});
const lossy = (data: string) => ({ id: 31, cmd: "send.lossy", public_key: FRIEND_PK, data });

const MALFORMED: readonly Malformed[] = [
  // Not a request at all: nothing to echo.
  { what: "not JSON", request: '{"cmd":"status"', code: "bad_json", id: null, says: "not JSON" },
  { what: "plain text", request: "status", code: "bad_json", id: null, says: "not JSON" },
  { what: "empty line", request: "", code: "bad_json", id: null, says: "not JSON" },
  {
    what: "a JSON array",
    request: '[{"id":1,"cmd":"status"}]',
    code: "bad_request",
    id: null,
    says: "JSON object",
  },
  { what: "a number", request: "42", code: "bad_request", id: null, says: "JSON object" },
  { what: "null", request: "null", code: "bad_request", id: null, says: "JSON object" },
  { what: "a string", request: '"status"', code: "bad_request", id: null, says: "JSON object" },
  // The id: a number or a string (at most 256 characters), else it cannot be echoed.
  {
    what: "id an object",
    request: { id: { n: 1 }, cmd: "status" },
    code: "bad_request",
    id: null,
    says: '"id" must be a number or a string',
  },
  {
    what: "id an array",
    request: { id: [1], cmd: "status" },
    code: "bad_request",
    id: null,
    says: '"id" must be a number or a string',
  },
  {
    what: "id a boolean",
    request: { id: true, cmd: "status" },
    code: "bad_request",
    id: null,
    says: '"id" must be a number or a string',
  },
  {
    what: "id a number too large to be finite",
    request: '{"id":1e999,"cmd":"status"}',
    code: "bad_request",
    id: null,
    says: '"id" must be a number or a string',
  },
  {
    what: "id a 300-character string",
    request: { id: "i".repeat(300), cmd: "status" },
    code: "bad_request",
    id: null,
    says: '"id" is too long',
  },
  // The command.
  {
    what: "no cmd",
    request: { id: 1 },
    code: "bad_request",
    id: 1,
    says: '"cmd" must be a string',
  },
  {
    what: "cmd not a string",
    request: { id: "a", cmd: 5 },
    code: "bad_request",
    id: "a",
    says: '"cmd" must be a string',
  },
  {
    what: "unknown cmd (the message lists the commands)",
    request: { id: 2, cmd: "frobnicate" },
    code: "unknown_command",
    id: 2,
    says: `unknown command "frobnicate"; commands: ${COMMANDS.join(", ")}`,
  },
  {
    what: "cmd in the wrong case",
    request: { id: 2, cmd: "STATUS" },
    code: "unknown_command",
    id: 2,
    says: "unknown command",
  },
  // friend.add
  {
    what: "friend.add without public_key",
    request: { id: 3, cmd: "friend.add" },
    code: "bad_argument",
    id: 3,
    says: 'friend.add: "public_key" must be a string',
  },
  {
    what: "friend.add with a 63-digit public_key",
    request: { id: 3, cmd: "friend.add", public_key: FRIEND_PK.slice(1) },
    code: "bad_argument",
    id: 3,
    says: "63 hex digits",
  },
  {
    what: "friend.add with a non-hex public_key",
    request: { id: 3, cmd: "friend.add", public_key: FRIEND_PK.slice(0, -1) + "g" },
    code: "bad_argument",
    id: 3,
    says: "non-hex character at position 64",
  },
  {
    what: "friend.add with a Tox ID whose checksum is wrong",
    request: { id: "t", cmd: "friend.add", public_key: FRIEND_TOX_ID_BAD_CHECKSUM },
    code: "bad_argument",
    id: "t",
    says: "checksum does not match",
  },
  {
    what: "friend.add with a short dht_public_key",
    request: { id: 4, cmd: "friend.add", public_key: FRIEND_PK, dht_public_key: "ab" },
    code: "bad_argument",
    id: 4,
    says: '"dht_public_key" must be 64 hex digits',
  },
  {
    what: "friend.add with a dht_public_key that is not a string",
    request: { id: 4, cmd: "friend.add", public_key: FRIEND_PK, dht_public_key: 7 },
    code: "bad_argument",
    id: 4,
    says: '"dht_public_key" must be a string',
  },
  {
    what: "friend.add with relays not an array",
    request: { id: 5, cmd: "friend.add", public_key: FRIEND_PK, relays: RELAY_SPEC },
    code: "bad_argument",
    id: 5,
    says: '"relays" must be an array',
  },
  {
    what: "friend.add with a bad relay spec",
    request: {
      id: 5,
      cmd: "friend.add",
      public_key: FRIEND_PK,
      relays: [RELAY_SPEC, "127.0.0.1:0:" + RELAY_PK],
    },
    code: "bad_argument",
    id: 5,
    says: '"relays"[1]',
  },
  {
    what: "friend.add with a relay that is not a string",
    request: { id: 5, cmd: "friend.add", public_key: FRIEND_PK, relays: [33445] },
    code: "bad_argument",
    id: 5,
    says: '"relays"[0] must be a "HOST:PORT:PUBKEY" string',
  },
  {
    what: "friend.add with 17 relays",
    request: {
      id: 5,
      cmd: "friend.add",
      public_key: FRIEND_PK,
      relays: Array(17).fill(RELAY_SPEC),
    },
    code: "bad_argument",
    id: 5,
    says: "at most 16",
  },
  // friend.remove
  {
    what: "friend.remove with a bad key",
    request: { id: 6, cmd: "friend.remove", public_key: "xyz" },
    code: "bad_argument",
    id: 6,
    says: 'friend.remove: "public_key"',
  },
  // send
  {
    what: "send without public_key",
    request: { id: 7, cmd: "send", text: "hi" },
    code: "bad_argument",
    id: 7,
    says: '"public_key" must be a string',
  },
  {
    what: "send with empty text",
    request: { id: 7, cmd: "send", public_key: FRIEND_PK, text: "" },
    code: "bad_argument",
    id: 7,
    says: '"text" must not be empty',
  },
  {
    what: "send without text",
    request: { id: 7, cmd: "send", public_key: FRIEND_PK },
    code: "bad_argument",
    id: 7,
    says: '"text" must be a string',
  },
  {
    what: "send with text over MAX_MESSAGE_LENGTH bytes but under it in characters",
    // 687 two-byte characters: 687 UTF-16 units, 1374 bytes.
    request: { id: 7, cmd: "send", public_key: FRIEND_PK, text: "\u00e9".repeat(687) },
    code: "bad_argument",
    id: 7,
    says: `"text" is 1374 bytes of UTF-8; at most ${MAX_MESSAGE_LENGTH}`,
  },
  {
    what: "send with action not a boolean",
    request: { id: 7, cmd: "send", public_key: FRIEND_PK, text: "waves", action: "yes" },
    code: "bad_argument",
    id: 7,
    says: '"action" must be true or false',
  },
  // send.lossless / send.lossy
  {
    what: "send.lossless with an odd number of hex digits",
    request: lossless("a0b"),
    code: "bad_argument",
    id: 30,
    says: '"data" must be an even number of hex digits',
  },
  {
    what: "send.lossless with empty data",
    request: lossless(""),
    code: "bad_argument",
    id: 30,
    says: "at least 2",
  },
  {
    what: "send.lossless with non-hex data",
    request: lossless("a0zz"),
    code: "bad_argument",
    id: 30,
    says: '"data" must be an even number of hex digits',
  },
  {
    what: "send.lossless with packet id 159 (below 160)",
    request: lossless("9f00"),
    code: "bad_argument",
    id: 30,
    says: "packet id in 160..191, not 159",
  },
  {
    what: "send.lossless with packet id 192 (above 191)",
    request: lossless("c0"),
    code: "bad_argument",
    id: 30,
    says: "packet id in 160..191, not 192",
  },
  {
    what: "send.lossless with data over MAX_CRYPTO_DATA_SIZE",
    request: lossless("a0" + "00".repeat(MAX_CRYPTO_DATA_SIZE)),
    code: "bad_argument",
    id: 30,
    says: `"data" is ${MAX_CRYPTO_DATA_SIZE + 1} bytes; at most ${MAX_CRYPTO_DATA_SIZE}`,
  },
  {
    what: "send.lossy with packet id 199 (below 200)",
    request: lossy("c7"),
    code: "bad_argument",
    id: 31,
    says: "packet id in 200..254, not 199",
  },
  {
    what: "send.lossy with packet id 255 (above 254)",
    request: lossy("ff01"),
    code: "bad_argument",
    id: 31,
    says: "packet id in 200..254, not 255",
  },
  {
    what: "send.lossy with a lossless packet id",
    request: lossy("a0"),
    code: "bad_argument",
    id: 31,
    says: "not 160",
  },
  {
    what: "send.lossy with data over MAX_CRYPTO_DATA_SIZE",
    request: lossy("c8" + "00".repeat(MAX_CRYPTO_DATA_SIZE)),
    code: "bad_argument",
    id: 31,
    says: `at most ${MAX_CRYPTO_DATA_SIZE}`,
  },
  // profile.set
  {
    what: "profile.set with neither name nor status_message",
    request: { id: 8, cmd: "profile.set" },
    code: "bad_argument",
    id: 8,
    says: 'give "name" and/or "status_message"',
  },
  {
    what: "profile.set with both null",
    request: { id: 8, cmd: "profile.set", name: null, status_message: null },
    code: "bad_argument",
    id: 8,
    says: 'give "name" and/or "status_message"',
  },
  {
    what: "profile.set with a name of 129 bytes (65 two-byte characters)",
    request: { id: 8, cmd: "profile.set", name: "\u00e9".repeat(64) + "x" },
    code: "bad_argument",
    id: 8,
    says: '"name" is 129 bytes of UTF-8; at most 128',
  },
  {
    what: "profile.set with a name that is not a string",
    request: { id: 8, cmd: "profile.set", name: 5 },
    code: "bad_argument",
    id: 8,
    says: '"name" must be a string',
  },
  {
    what: "profile.set with a status_message of 1008 bytes",
    request: { id: 8, cmd: "profile.set", status_message: "s".repeat(1008) },
    code: "bad_argument",
    id: 8,
    says: '"status_message" is 1008 bytes of UTF-8; at most 1007',
  },
  // relay.add / relay.remove
  {
    what: "relay.add with a bad spec",
    request: { id: 9, cmd: "relay.add", relay: "127.0.0.1:33445" },
    code: "bad_argument",
    id: 9,
    says: 'relay.add: "relay": relay "127.0.0.1:33445": expected HOST:PORT:PUBKEY',
  },
  {
    what: "relay.add without relay",
    request: { id: 9, cmd: "relay.add" },
    code: "bad_argument",
    id: 9,
    says: '"relay" must be a "HOST:PORT:PUBKEY" string',
  },
  {
    what: "relay.remove with a bad key",
    request: { id: 10, cmd: "relay.remove", public_key: RELAY_PK.slice(2) },
    code: "bad_argument",
    id: 10,
    says: 'relay.remove: "public_key" must be 64 hex digits',
  },
  {
    what: "relay.remove with a Tox ID (a relay has no nospam)",
    request: { id: 10, cmd: "relay.remove", public_key: FRIEND_TOX_ID },
    code: "bad_argument",
    id: 10,
    says: '"public_key" must be 64 hex digits',
  },
];

Deno.test("requests: every malformed request has its error code, echoed id and a reason", () => {
  assert.ok(MALFORMED.length >= 20);
  for (const m of MALFORMED) {
    const line = typeof m.request === "string" ? m.request : JSON.stringify(m.request);
    const r = parseRequest(line);
    assert.equal(r.ok, false, `${m.what}: should be rejected`);
    if (r.ok) continue;
    assert.equal(r.error.code, m.code, `${m.what}: ${r.error.message}`);
    assert.equal(r.id, m.id, `${m.what}: echoed id`);
    assert.ok(
      r.error.message.includes(m.says),
      `${m.what}: message ${JSON.stringify(r.error.message)} should say ${JSON.stringify(m.says)}`,
    );
  }
});

Deno.test("requests: the test Tox ID is valid before its checksum is damaged", () => {
  assert.equal(FRIEND_TOX_ID.length, 76);
  assert.notEqual(FRIEND_TOX_ID_BAD_CHECKSUM, FRIEND_TOX_ID);
  assert.equal(FRIEND_TOX_ID_BAD_CHECKSUM.slice(0, 75), FRIEND_TOX_ID.slice(0, 75));
});

Deno.test("requests: a bad_argument message starts with the command's name", () => {
  for (const m of MALFORMED) {
    if (m.code !== "bad_argument" || typeof m.request === "string") continue;
    const r = parseRequest(JSON.stringify(m.request));
    assert.ok(!r.ok);
    assert.ok(r.error.message.startsWith(`${m.request.cmd}: `), r.error.message);
  }
});

// ---- parseRequest: good requests ---------------------------------------------------------

function parsed(request: Record<string, unknown>): { id: RequestId; command: ControlCommand } {
  const r = parseRequest(JSON.stringify(request));
  if (!r.ok) {
    throw new Error(
      `${JSON.stringify(request).slice(0, 200)}: ${r.error.code}: ${r.error.message}`,
    );
  }
  return { id: r.id, command: r.command };
}

const command = (request: Record<string, unknown>) => parsed(request).command;

Deno.test("requests: commands without parameters", () => {
  for (const cmd of ["status", "self", "relays", "friends", "subscribe", "unsubscribe"]) {
    assert.deepEqual(parsed({ id: 1, cmd }), { id: 1, command: { cmd } });
  }
});

Deno.test("requests: the id may be a number, a string, null or missing (→ null)", () => {
  assert.equal(parsed({ id: 17, cmd: "status" }).id, 17);
  assert.equal(parsed({ id: -2.5, cmd: "status" }).id, -2.5);
  assert.equal(parsed({ id: "req-1", cmd: "status" }).id, "req-1");
  assert.equal(parsed({ id: "", cmd: "status" }).id, "");
  assert.equal(parsed({ id: "i".repeat(256), cmd: "status" }).id, "i".repeat(256));
  assert.equal(parsed({ id: null, cmd: "status" }).id, null);
  assert.equal(parsed({ cmd: "status" }).id, null);
});

Deno.test("requests: unknown extra fields are ignored", () => {
  assert.deepEqual(parsed({ id: 1, cmd: "status", verbose: true, extra: { a: [1] } }), {
    id: 1,
    command: { cmd: "status" },
  });
  assert.deepEqual(
    command({ cmd: "send", public_key: FRIEND_PK, text: "hi", priority: "high" }),
    { cmd: "send", publicKey: FRIEND_PK_BYTES, text: "hi", action: false },
  );
});

Deno.test("requests: JSON whitespace around the object is fine", () => {
  const r = parseRequest('  { "id" : 1 , "cmd" : "status" }\t');
  assert.deepEqual(r, { ok: true, id: 1, command: { cmd: "status" } });
});

Deno.test("requests: relay.add gives a relay address; relay.remove a lower-case hex key", () => {
  assert.deepEqual(command({ cmd: "relay.add", relay: RELAY_SPEC }), {
    cmd: "relay.add",
    relay: RELAY,
  });
  assert.deepEqual(command({ cmd: "relay.add", relay: `[::1]:3389:${RELAY_PK}` }), {
    cmd: "relay.add",
    relay: { host: "::1", port: 3389, publicKey: RELAY_PK.toLowerCase() },
  });
  assert.deepEqual(command({ cmd: "relay.remove", public_key: RELAY_PK }), {
    cmd: "relay.remove",
    publicKey: RELAY_PK.toLowerCase(),
  });
});

Deno.test("requests: friend.add with a public key, a DHT key and relays", () => {
  assert.deepEqual(
    command({
      cmd: "friend.add",
      public_key: FRIEND_PK,
      dht_public_key: DHT_PK,
      relays: [RELAY_SPEC, `[2001:db8::1]:443:${RELAY_PK}`],
    }),
    {
      cmd: "friend.add",
      publicKey: FRIEND_PK_BYTES,
      dhtPublicKey: fromHex(DHT_PK),
      relays: [RELAY, { host: "2001:db8::1", port: 443, publicKey: RELAY_PK.toLowerCase() }],
      request: null,
    },
  );
});

Deno.test("requests: friend.add with a Tox ID yields the 32-byte public key", () => {
  const c = command({ cmd: "friend.add", public_key: FRIEND_TOX_ID });
  assert.deepEqual(c, {
    cmd: "friend.add",
    publicKey: FRIEND_PK_BYTES,
    dhtPublicKey: null,
    relays: [],
    request: null,
  });
  // Case does not matter.
  assert.deepEqual(
    command({ cmd: "friend.add", public_key: FRIEND_TOX_ID.toLowerCase() }),
    c,
  );
});

Deno.test("requests: friend.add: null dht_public_key is none; 16 relays are allowed", () => {
  const c = command({
    cmd: "friend.add",
    public_key: FRIEND_PK,
    dht_public_key: null,
    relays: Array(16).fill(RELAY_SPEC),
  });
  assert.ok(c.cmd === "friend.add");
  assert.equal(c.dhtPublicKey, null);
  assert.equal(c.relays.length, 16);
});

Deno.test("requests: friend.remove by public key or Tox ID", () => {
  const want = { cmd: "friend.remove", publicKey: FRIEND_PK_BYTES };
  assert.deepEqual(command({ cmd: "friend.remove", public_key: FRIEND_PK }), want);
  assert.deepEqual(command({ cmd: "friend.remove", public_key: FRIEND_TOX_ID }), want);
});

Deno.test("requests: send: normal by default, action when asked", () => {
  assert.deepEqual(command({ cmd: "send", public_key: FRIEND_PK, text: "hello" }), {
    cmd: "send",
    publicKey: FRIEND_PK_BYTES,
    text: "hello",
    action: false,
  });
  assert.deepEqual(
    command({ cmd: "send", public_key: FRIEND_TOX_ID, text: "waves", action: true }),
    { cmd: "send", publicKey: FRIEND_PK_BYTES, text: "waves", action: true },
  );
});

Deno.test("requests: send: text of exactly MAX_MESSAGE_LENGTH bytes is accepted", () => {
  assert.equal(MAX_MESSAGE_LENGTH % 2, 0);
  const text = "\u00e9".repeat(MAX_MESSAGE_LENGTH / 2);
  const c = command({ cmd: "send", public_key: FRIEND_PK, text });
  assert.ok(c.cmd === "send");
  assert.equal(c.text, text);
  const ascii = "a".repeat(MAX_MESSAGE_LENGTH);
  assert.ok(parseRequest(JSON.stringify({ cmd: "send", public_key: FRIEND_PK, text: ascii })).ok);
});

Deno.test("requests: send.lossless takes ids 160..191, send.lossy 200..254, as bytes", () => {
  assert.deepEqual(command({ cmd: "send.lossless", public_key: FRIEND_PK, data: "a0FF01" }), {
    cmd: "send.lossless",
    publicKey: FRIEND_PK_BYTES,
    data: new Uint8Array([160, 255, 1]),
  });
  for (const [cmd, ids] of [["send.lossless", [160, 191]], ["send.lossy", [200, 254]]] as const) {
    for (const id of ids) {
      const data = new Uint8Array([id, 42]);
      assert.deepEqual(
        command({ cmd, public_key: FRIEND_PK, data: id.toString(16) + "2a" }),
        { cmd, publicKey: FRIEND_PK_BYTES, data },
      );
    }
  }
});

Deno.test("requests: custom packets of exactly MAX_CRYPTO_DATA_SIZE bytes are accepted", () => {
  for (const [cmd, first] of [["send.lossless", "bf"], ["send.lossy", "fe"]]) {
    const c = command({
      cmd,
      public_key: FRIEND_PK,
      data: first + "00".repeat(MAX_CRYPTO_DATA_SIZE - 1),
    });
    assert.ok(c.cmd === "send.lossless" || c.cmd === "send.lossy");
    assert.equal(c.data.length, MAX_CRYPTO_DATA_SIZE);
  }
});

Deno.test("requests: profile.set with a name, a status message, or both", () => {
  assert.deepEqual(command({ cmd: "profile.set", name: "Alice" }), {
    cmd: "profile.set",
    name: "Alice",
    statusMessage: undefined,
  });
  assert.deepEqual(command({ cmd: "profile.set", status_message: "away", name: null }), {
    cmd: "profile.set",
    name: undefined,
    statusMessage: "away",
  });
  assert.deepEqual(command({ cmd: "profile.set", name: "", status_message: "" }), {
    cmd: "profile.set",
    name: "",
    statusMessage: "",
  });
  const name128 = "\u00e9".repeat(64);
  assert.deepEqual(command({ cmd: "profile.set", name: name128 }), {
    cmd: "profile.set",
    name: name128,
    statusMessage: undefined,
  });
});

// ---- replies and events ------------------------------------------------------------------

/** One line: ends in "\n" and has no other newline. */
function oneLine(s: string): unknown {
  assert.ok(s.endsWith("\n"), JSON.stringify(s));
  assert.equal(s.indexOf("\n"), s.length - 1, JSON.stringify(s));
  return JSON.parse(s);
}

Deno.test("replies: okReply is {id, ok: true, result} on one line", () => {
  assert.equal(
    okReply(1, { subscribed: true }),
    '{"id":1,"ok":true,"result":{"subscribed":true}}\n',
  );
  assert.deepEqual(oneLine(okReply("abc", { text: "two\nlines" })), {
    id: "abc",
    ok: true,
    result: { text: "two\nlines" },
  });
  assert.deepEqual(oneLine(okReply(null, [])), { id: null, ok: true, result: [] });
});

Deno.test("replies: errorReply is {id, ok: false, error: {code, message}} on one line", () => {
  assert.equal(
    errorReply(7, { code: "not_friend", message: "no such friend" }),
    '{"id":7,"ok":false,"error":{"code":"not_friend","message":"no such friend"}}\n',
  );
  assert.deepEqual(
    oneLine(errorReply(null, { code: "line_too_long", message: "a\nb" })),
    { id: null, ok: false, error: { code: "line_too_long", message: "a\nb" } },
  );
});

Deno.test("replies: a parse error becomes an error reply echoing the id", () => {
  const r = parseRequest('{"id":"x1","cmd":"nope"}');
  assert.ok(!r.ok);
  const reply = oneLine(errorReply(r.id, r.error)) as Record<string, unknown>;
  assert.equal(reply.id, "x1");
  assert.equal(reply.ok, false);
  assert.equal((reply.error as Record<string, unknown>).code, "unknown_command");
});

Deno.test("events: eventLine is the event's fields plus time as an ISO string", () => {
  const now = new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 10));
  assert.equal(
    eventLine({ event: "friend_online", public_key: FRIEND_PK.toLowerCase() }, now),
    `{"event":"friend_online","public_key":"${FRIEND_PK.toLowerCase()}",` +
      `"time":"2024-05-06T07:08:09.010Z"}\n`,
  );
  assert.deepEqual(
    oneLine(eventLine({
      event: "message",
      public_key: "ab".repeat(32),
      text: "multi\nline",
      kind: "action",
    }, now)),
    {
      event: "message",
      public_key: "ab".repeat(32),
      text: "multi\nline",
      kind: "action",
      time: "2024-05-06T07:08:09.010Z",
    },
  );
  assert.deepEqual(
    oneLine(eventLine({
      event: "message_failed",
      public_key: "cd".repeat(32),
      receipts: [1, 2],
      reason: "friend went offline",
    }, now)),
    {
      event: "message_failed",
      public_key: "cd".repeat(32),
      receipts: [1, 2],
      reason: "friend went offline",
      time: "2024-05-06T07:08:09.010Z",
    },
  );
});

Deno.test("requests: friend.add with a message is a friend request to the Tox ID's nospam", () => {
  assert.deepEqual(command({ cmd: "friend.add", public_key: FRIEND_TOX_ID, message: "hi ✓" }), {
    cmd: "friend.add",
    publicKey: FRIEND_PK_BYTES,
    dhtPublicKey: null,
    relays: [],
    request: { nospam: new Uint8Array([1, 2, 3, 4]), message: "hi ✓" },
  });
  const refused = (request: Record<string, unknown>, re: RegExp) => {
    const p = parseRequest(JSON.stringify({ id: 1, ...request }));
    assert.equal(p.ok, false);
    if (!p.ok) {
      assert.equal(p.error.code, "bad_argument");
      assert.match(p.error.message, re);
    }
  };
  refused({ cmd: "friend.add", public_key: FRIEND_PK, message: "hi" }, /needs the friend's Tox ID/);
  refused({ cmd: "friend.add", public_key: FRIEND_TOX_ID, message: "" }, /must not be empty/);
  // A c-toxcore receiver drops onion data over 948 bytes: 943 is the longest message.
  assert.equal(MAX_FRIEND_REQUEST_MESSAGE, 943);
  assert.ok(command({ cmd: "friend.add", public_key: FRIEND_TOX_ID, message: "x".repeat(943) }));
  refused(
    { cmd: "friend.add", public_key: FRIEND_TOX_ID, message: "x".repeat(944) },
    /at most 943/,
  );
});

Deno.test("requests: friend.accept, friend.refuse and requests", () => {
  assert.deepEqual(command({ cmd: "friend.accept", public_key: FRIEND_PK }), {
    cmd: "friend.accept",
    publicKey: FRIEND_PK_BYTES,
  });
  assert.deepEqual(command({ cmd: "friend.refuse", public_key: FRIEND_TOX_ID }), {
    cmd: "friend.refuse",
    publicKey: FRIEND_PK_BYTES,
  });
  assert.deepEqual(command({ cmd: "requests" }), { cmd: "requests" });
});

/** Smoke tests for the interop harness itself: each peer starts, relays, and stops cleanly. */
import {
  interopTest,
  LOCALHOST,
  processAlive,
  startBootstrapd,
  startMicrosocks,
  startTinyproxy,
} from "../../tools/testbed/harness.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error(`EOF after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Read up to and including the blank line that ends an HTTP header block. */
async function readHttpHead(conn: Deno.Conn): Promise<string> {
  const buf: number[] = [];
  const one = new Uint8Array(1);
  while (buf.length < 8192) {
    if ((await conn.read(one)) === null) break;
    buf.push(one[0]);
    const n = buf.length;
    if (
      n >= 4 && buf[n - 4] === 13 && buf[n - 3] === 10 && buf[n - 2] === 13 && buf[n - 1] === 10
    ) {
      break;
    }
  }
  return new TextDecoder().decode(new Uint8Array(buf));
}

/** A TCP echo server on 127.0.0.1 that shuts down completely on dispose. */
function echoServer(): { port: number } & AsyncDisposable {
  const listener = Deno.listen({ hostname: LOCALHOST, port: 0 });
  const conns = new Set<Deno.Conn>();
  const handlers: Promise<void>[] = [];
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        await writeAll(conn, buf.subarray(0, n));
      }
    } catch {
      // closed under us on dispose
    } finally {
      if (conns.delete(conn)) conn.close();
    }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        handlers.push(serve(conn));
      }
    } catch {
      // listener closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of [...conns]) {
        conns.delete(c);
        c.close();
      }
      await loop;
      await Promise.allSettled(handlers);
    },
  };
}

async function assertEchoes(conn: Deno.Conn, text: string): Promise<void> {
  const msg = new TextEncoder().encode(text);
  await writeAll(conn, msg);
  const back = new TextDecoder().decode(await readExactly(conn, msg.length));
  assert(back === text, `echo returned ${JSON.stringify(back)}`);
}

interopTest("harness: tox-bootstrapd starts, accepts TCP, stops", ["tox-bootstrapd"], async () => {
  const boot = await startBootstrapd();
  const pid = boot.pid;
  try {
    assert(boot.publicKey.length === 32, "32-byte public key");
    assert(/^[0-9A-F]{64}$/.test(boot.publicKeyHex), `hex key ${boot.publicKeyHex}`);
    assert(boot.log().includes(`Public Key: ${boot.publicKeyHex}`), "key line in log");
    assert(processAlive(pid), "process is running");
    const conn = await Deno.connect({ hostname: boot.host, port: boot.port });
    conn.close();
  } finally {
    await boot.stop();
  }
  await boot.stop(); // idempotent
  assert(!processAlive(pid), `pid ${pid} gone after stop()`);
  assert(boot.log().includes("Received SIGTERM"), "stopped via SIGTERM");
}, { timeout: 20_000 });

interopTest("harness: microsocks relays a SOCKS5 CONNECT", ["microsocks"], async () => {
  await using echo = echoServer();
  await using socks = await startMicrosocks();
  assert(socks.url === `socks5://127.0.0.1:${socks.port}`, socks.url);
  const conn = await Deno.connect({ hostname: socks.host, port: socks.port });
  try {
    await writeAll(conn, new Uint8Array([5, 1, 0])); // v5, one method: no auth
    const method = await readExactly(conn, 2);
    assert(method[0] === 5 && method[1] === 0, `method reply ${method}`);
    // CONNECT to IPv4 127.0.0.1:echo.port
    await writeAll(
      conn,
      new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff]),
    );
    const reply = await readExactly(conn, 10); // v5, rep, rsv, atyp=1, 4-byte addr, port
    assert(reply[0] === 5 && reply[1] === 0 && reply[3] === 1, `CONNECT reply ${reply}`);
    await assertEchoes(conn, "hello through socks5");
  } finally {
    conn.close();
  }
}, { timeout: 20_000 });

interopTest("harness: tinyproxy relays an HTTP CONNECT", ["tinyproxy"], async () => {
  await using echo = echoServer();
  await using http = await startTinyproxy();
  assert(http.url === `http://127.0.0.1:${http.port}`, http.url);
  const conn = await Deno.connect({ hostname: http.host, port: http.port });
  try {
    const target = `127.0.0.1:${echo.port}`;
    await writeAll(
      conn,
      new TextEncoder().encode(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
    );
    const head = await readHttpHead(conn);
    assert(/^HTTP\/1\.[01] 200 /.test(head), `CONNECT reply ${JSON.stringify(head)}`);
    await assertEchoes(conn, "hello through http connect");
  } finally {
    conn.close();
  }
}, { timeout: 20_000 });

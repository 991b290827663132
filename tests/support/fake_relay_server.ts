/**
 * A scripted relay on 127.0.0.1 for socket-level tests: each accepted connection gets the
 * handshake done by a FakeRelayPeer, then runs a script that may misbehave on purpose.
 */
import { FakeRelayPeer, seededRandom } from "../../tools/testbed/fake_relay.ts";
import type { RelayPacket } from "../../daemon/core/tcp_common/packets.ts";
import { toHex } from "../../daemon/core/common/crypto.ts";

export interface RelaySide {
  readonly peer: FakeRelayPeer;
  readonly conn: Deno.TcpConn;
  /** Next packets from the client (waits for them). null at EOF. */
  nextPackets(): Promise<RelayPacket[] | null>;
  send(bytes: Uint8Array): Promise<void>;
}

export type RelayScript = (side: RelaySide) => Promise<void>;

/** Answers PINGs and ROUTING_REQUESTs like a relay with nobody else on it. */
export const politeRelay: RelayScript = async (side) => {
  for (;;) {
    const packets = await side.nextPackets();
    if (packets === null) return;
    for (const p of packets) {
      if (p.kind === "ping") await side.send(side.peer.frame({ kind: "pong", pingId: p.pingId }));
      if (p.kind === "routing_request") {
        await side.send(
          side.peer.frame({ kind: "routing_response", connectionId: 16, publicKey: p.publicKey }),
        );
      }
    }
  }
};

export class FakeRelayServer {
  readonly #listener: Deno.TcpListener;
  readonly #script: RelayScript;
  readonly peerKeys = new FakeRelayPeer(seededRandom(1234)).keys;
  readonly #tasks = new Set<Promise<void>>();
  readonly #conns = new Set<Deno.TcpConn>();
  #acceptLoop: Promise<void>;

  readonly #replyHandshake: (side: RelaySide, response: Uint8Array) => Promise<void>;

  /** `replyHandshake` sends the 96-byte reply; by default at once, whole. */
  constructor(
    script: RelayScript,
    replyHandshake: (side: RelaySide, response: Uint8Array) => Promise<void> = (side, r) =>
      side.send(r),
  ) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#script = script;
    this.#replyHandshake = replyHandshake;
    this.#acceptLoop = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  get publicKeyHex(): string {
    return toHex(this.peerKeys.publicKey);
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        const t = this.#serve(conn).finally(() => {
          this.#tasks.delete(t);
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed by the script */ }
        });
        this.#tasks.add(t);
      }
    } catch { /* listener closed */ }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const peer = new FakeRelayPeer(seededRandom(5678), this.peerKeys);
    const buf = new Uint8Array(4096);
    const queued: RelayPacket[][] = [];
    const side: RelaySide = {
      peer,
      conn,
      nextPackets: async () => {
        if (queued.length > 0) return queued.shift()!;
        for (;;) {
          let n: number | null;
          try {
            n = await conn.read(buf);
          } catch {
            return null;
          }
          if (n === null) return null;
          const out = peer.fromClient(buf.slice(0, n));
          if (out.packets.length > 0) return out.packets;
        }
      },
      send: async (bytes) => {
        let o = 0;
        while (o < bytes.length) o += await conn.write(bytes.subarray(o));
      },
    };
    // Handshake first: read until the 128 bytes are in and answer them.
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        return;
      }
      if (n === null) return;
      const out = peer.fromClient(buf.slice(0, n));
      if (out.response === null) return; // did not open: a relay just closes
      if (out.response) {
        if (out.packets.length > 0) queued.push(out.packets);
        try {
          await this.#replyHandshake(side, out.response);
          await this.#script(side);
        } catch { /* the client hung up mid-script */ }
        return;
      }
    }
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await this.#acceptLoop;
    await Promise.allSettled([...this.#tasks]);
  }
}

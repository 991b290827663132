/**
 * @module
 * The relay handshake as TCP_client.c and TCP_server.c exchange it: the client's 128 bytes
 * and the relay's 96, in clear as far as keys and nonce go, and the key log lookup that turns
 * the client's nonce into the stream's TCP session keys (so the frames after it can open).
 */
import { NONCE_SIZE, toHex } from "../../common/crypto.ts";
import { FrameReader } from "../../tcp_common/framing.ts";
import {
  CLIENT_HANDSHAKE_SIZE,
  parseClientHandshake,
  SERVER_HANDSHAKE_SIZE,
} from "../../tcp_common/handshake.ts";
import type { KeyStore } from "../keylog.ts";
import type { TcpHandshakeLayer } from "../tox_records.ts";
import type { Timestamp } from "../types.ts";
import { type Dir, type Outputs, STAGE_FRAMES, type Stream } from "./stream_state.ts";

export class TcpHandshake {
  readonly #keys: KeyStore;
  readonly #out: Outputs;

  constructor(keys: KeyStore, out: Outputs) {
    this.#keys = keys;
    this.#out = out;
  }

  /**
   * The 128-byte request (c2s) or the 96-byte response (s2c) from d.acc; always false (what
   * follows is framed), the direction moved to STAGE_FRAMES once the handshake is whole.
   */
  step(st: Stream, d: Dir, ts: Timestamp, frame: number): boolean {
    const acc = d.acc;
    const size = d.dir === "c2s" ? CLIENT_HANDSHAKE_SIZE : SERVER_HANDSHAKE_SIZE;
    if (acc.len < size) return false;
    const offset = acc.start;
    const bytes = acc.buf.subarray(0, size);
    let layer: TcpHandshakeLayer;
    if (d.dir === "c2s") {
      const f = parseClientHandshake(bytes);
      if (!f.ok) return false; // unreachable: exactly 128 bytes are there
      st.clientPk = f.value.clientPublicKey.slice();
      st.clientHex = toHex(st.clientPk);
      st.hsNonce = f.value.nonce.slice();
      st.hsRequest ??= ts;
      lookupTcpKeys(this.#keys, st);
      const nonce = toHex(st.hsNonce);
      const keyed = st.tcpKeys !== null;
      layer = st.relayHex === undefined
        ? { proto: "tcp_handshake", kind: "request", clientPublicKey: st.clientHex, nonce, keyed }
        : {
          proto: "tcp_handshake",
          kind: "request",
          clientPublicKey: st.clientHex,
          nonce,
          relayPublicKey: st.relayHex,
          keyed,
        };
    } else {
      st.hsResponse ??= ts;
      lookupTcpKeys(this.#keys, st);
      const nonce = toHex(bytes.subarray(0, NONCE_SIZE));
      const keyed = st.tcpKeys !== null;
      layer = st.relayHex === undefined
        ? { proto: "tcp_handshake", kind: "response", nonce, keyed }
        : { proto: "tcp_handshake", kind: "response", nonce, relayPublicKey: st.relayHex, keyed };
    }
    this.#out.record(st, d, frame, ts, offset, size, [layer]);
    acc.consume(size);
    d.stage = STAGE_FRAMES;
    d.reader = new FrameReader();
    d.pushedEnd = acc.start;
    d.lastEnd = acc.start;
    return false;
  }
}

/**
 * The stream's TCP_SESSION entry, by its handshake nonce; looked up again only when keys were
 * added since (a pcapng secrets block may come after the handshake).
 */
export function lookupTcpKeys(keys: KeyStore, st: Stream): void {
  if (st.tcpKeys !== null || st.hsNonce === null || st.keysSeen === keys.size) return;
  st.keysSeen = keys.size;
  const k = keys.tcpSession(st.hsNonce);
  if (k === undefined) return;
  st.tcpKeys = k;
  st.relayHex = toHex(k.relayPublicKey);
}

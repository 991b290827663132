/**
 * @module
 * The encrypted frames after the relay handshake (TCP_common.c's 2-byte length and secretbox):
 * framing, the nonce counter, opening with the key log's session key, and what to show when
 * that is not possible (no key, or a MAC failure that ends decryption for the direction).
 * Each opened frame goes to the relay packet layer.
 */
import { incrementNonceNumber, toHex } from "../../common/crypto.ts";
import { newFrameScratch, openFrame } from "../../tcp_common/framing.ts";
import type { KeyStore } from "../keylog.ts";
import type { Layer, TcpFrameLayer } from "../tox_records.ts";
import type { Timestamp } from "../types.ts";
import type { RelayPackets } from "./relay_packets.ts";
import type { Dir, Outputs, Stream } from "./stream_state.ts";
import { lookupTcpKeys } from "./tcp_handshake.ts";

export class TcpFrames {
  readonly #keys: KeyStore;
  readonly #out: Outputs;
  readonly #relay: RelayPackets;
  readonly #scratch = newFrameScratch();

  constructor(keys: KeyStore, out: Outputs, relay: RelayPackets) {
    this.#keys = keys;
    this.#out = out;
    this.#relay = relay;
  }

  /** Bytes of a direction past its handshake: every frame they complete. */
  push(st: Stream, d: Dir, bytes: Uint8Array, ts: Timestamp, frame: number): void {
    const reader = d.reader!;
    reader.push(bytes);
    d.pushedEnd += bytes.length;
    for (;;) {
      const r = reader.next();
      if (r.kind === "need_more") return;
      if (r.kind === "error") {
        this.#out.undecodable(
          st,
          d,
          `${r.error.message} at offset ${d.pushedEnd - reader.buffered}`,
          ts,
          frame,
        );
        return;
      }
      const box = r.box;
      const end = d.pushedEnd - reader.buffered;
      const start = end - 2 - box.length;
      if (start !== d.lastEnd && !d.emptyNoticed) {
        d.emptyNoticed = true;
        this.#out.notice(
          st,
          d.dir,
          frame,
          ts,
          "info",
          "empty_frame",
          `${start - d.lastEnd} bytes of zero-length frame headers at offset ${d.lastEnd}, ` +
            `skipped as c-toxcore skips them`,
        );
      }
      d.lastEnd = end;
      this.#frame(st, d, box, start, ts, frame);
    }
  }

  #frame(st: Stream, d: Dir, box: Uint8Array, offset: number, ts: Timestamp, frame: number): void {
    if (st.tcpKeys === null && st.keysSeen !== this.#keys.size) lookupTcpKeys(this.#keys, st);
    const seq = d.seq;
    d.seq = seq + 1;
    d.frames++;
    d.firstFrame ??= ts;
    const wire = box.length + 2;
    if (d.session === null && st.tcpKeys !== null && !d.macFailed) {
      // Keys that arrive late (a pcapng secrets block after the handshake) still fit: the
      // nonce is the base plus the frames already counted.
      const base = d.dir === "c2s" ? st.tcpKeys.clientNonce : st.tcpKeys.relayNonce;
      const recvNonce = base.slice();
      incrementNonceNumber(recvNonce, seq);
      d.session = { sharedKey: st.tcpKeys.sessionKey, sendNonce: recvNonce, recvNonce };
    }
    if (d.session === null) {
      if (st.tcpKeys === null && !st.noKeyNoticed && this.#keys.size > 0) {
        st.noKeyNoticed = true;
        this.#out.notice(
          st,
          undefined,
          frame,
          ts,
          "info",
          "no_key",
          st.hsNonce === null
            ? "the handshake was not seen: frames stay encrypted"
            : `no TCP_SESSION entry for handshake nonce ${
              toHex(st.hsNonce)
            }: frames stay encrypted`,
        );
      }
      const layer: TcpFrameLayer = d.macFailed
        ? {
          proto: "tcp_frame",
          length: box.length,
          seq,
          decrypted: false,
          error: `not opened: frame ${d.macFailedAt} failed its MAC`,
        }
        : { proto: "tcp_frame", length: box.length, seq, decrypted: false };
      this.#out.record(st, d, frame, ts, offset, wire, [layer]);
      return;
    }
    const plain = openFrame(d.session, box, this.#scratch);
    if (plain === null) {
      d.session = null;
      d.macFailed = true;
      d.macFailedAt = seq;
      this.#out.notice(
        st,
        d.dir,
        frame,
        ts,
        "warn",
        "mac_failed",
        `frame ${seq} does not open with the key log's session key: wrong key, or bytes ` +
          `altered; the rest of ${d.dir} is shown encrypted`,
      );
      this.#out.record(st, d, frame, ts, offset, wire, [{
        proto: "tcp_frame",
        length: box.length,
        seq,
        decrypted: false,
        error: "MAC failed",
      }]);
      return;
    }
    d.decrypted++;
    const layers: Layer[] = [{ proto: "tcp_frame", length: box.length, seq, decrypted: true }];
    this.#relay.packet(st, d, plain, ts, layers);
    this.#out.record(st, d, frame, ts, offset, wire, layers);
  }
}

/**
 * @module
 * The net_crypto packet a relay DATA or OOB packet carries: cookie request and response,
 * handshake, and data, which it opens with the key log's session keys and nonce tracking
 * and hands to the Messenger layer. The stream supplies who sent it (the client or the peer)
 * and which DHT keys the session runs between; the sessions themselves are cross-stream.
 */
import { bytesEqual, MAC_SIZE, toHex } from "../../common/crypto.ts";
import {
  advanceRecvNonce,
  COOKIE_RESPONSE_LENGTH,
  cookieRequestSender,
  decodeDataPlain,
  HANDSHAKE_PACKET_LENGTH,
  MAX_CRYPTO_PACKET_SIZE,
  NET_PACKET_COOKIE_REQUEST,
  NET_PACKET_COOKIE_RESPONSE,
  NET_PACKET_CRYPTO_DATA,
  NET_PACKET_CRYPTO_HS,
  openDataPacket,
  PACKET_ID_RANGE_LOSSLESS_END,
  PACKET_ID_RANGE_LOSSLESS_START,
} from "../../net_crypto/packets.ts";
import type { KeyStore } from "../keylog.ts";
import type { Layer, NetCryptoLayer } from "../tox_records.ts";
import { friendLayer } from "./messenger.ts";
import type { NetCryptoSessions, Pair } from "./net_crypto_sessions.ts";
import type { Route, Stream } from "./stream_state.ts";

/** id ‖ 2 nonce bytes ‖ MAC: a net_crypto data packet must be longer than this. */
const NET_DATA_MIN = 1 + 2 + MAC_SIZE;

export class NetCryptoPackets {
  readonly #keys: KeyStore;
  readonly #sessions: NetCryptoSessions;

  constructor(keys: KeyStore, sessions: NetCryptoSessions) {
    this.#keys = keys;
    this.#sessions = sessions;
  }

  /**
   * One net_crypto packet from DATA (`route`) or OOB (`oob`); `c2s` says whether the stream's
   * client sent it (else the peer did).
   */
  packet(
    st: Stream,
    pkt: Uint8Array,
    c2s: boolean,
    route: Route | null | undefined,
    oob: Pair | null,
    layers: Layer[],
  ): void {
    const id = pkt[0];
    const length = pkt.length;
    switch (id) {
      case NET_PACKET_COOKIE_REQUEST: {
        const r = cookieRequestSender(pkt);
        layers.push(
          r.ok
            ? {
              proto: "net_crypto",
              kind: "cookie_request",
              length,
              senderDhtPublicKey: toHex(r.value),
            }
            : { proto: "net_crypto", kind: "cookie_request", length, error: r.error.message },
        );
        return;
      }
      case NET_PACKET_COOKIE_RESPONSE:
        layers.push(fixedLength("cookie_response", length, COOKIE_RESPONSE_LENGTH));
        return;
      case NET_PACKET_CRYPTO_HS:
        layers.push(fixedLength("handshake", length, HANDSHAKE_PACKET_LENGTH));
        return;
      case NET_PACKET_CRYPTO_DATA:
        st.netCryptoData++;
        return this.#data(st, pkt, c2s, route, oob, layers);
      default:
        layers.push({ proto: "net_crypto", kind: "unknown", length });
    }
  }

  #data(
    st: Stream,
    pkt: Uint8Array,
    c2s: boolean,
    route: Route | null | undefined,
    oob: Pair | null,
    layers: Layer[],
  ): void {
    const length = pkt.length;
    const nonceLow = length >= 3 ? (pkt[1] << 8) | pkt[2] : 0;
    if (length <= NET_DATA_MIN || length > MAX_CRYPTO_PACKET_SIZE) {
      layers.push({
        proto: "net_crypto",
        kind: "data",
        length,
        nonceLow,
        decrypted: false,
        error: `${length} bytes, must be ${NET_DATA_MIN + 1}..${MAX_CRYPTO_PACKET_SIZE}`,
      });
      return;
    }
    let pair = oob;
    if (route !== null && route !== undefined && st.clientPk !== null) {
      pair = route.pair ??= this.#sessions.pair(
        st.clientPk,
        st.clientHex!,
        route.publicKey,
        route.hex,
      );
    }
    const noKey: NetCryptoLayer = {
      proto: "net_crypto",
      kind: "data",
      length,
      nonceLow,
      decrypted: false,
    };
    if (this.#keys.size === 0) {
      layers.push(noKey);
      return;
    }
    if (pair === null) {
      layers.push({
        ...noKey,
        error: st.clientPk === null
          ? "the stream's handshake was not seen: its client key is unknown"
          : "the peer's key is unknown: its route was not seen",
      });
      return;
    }
    this.#sessions.refreshPair(pair);
    if (pair.entryCount === 0) {
      layers.push(noKey);
      return;
    }
    // The sender is the stream's client (c2s) or the other key of the pair.
    const clientIsA = st.clientPk !== null && bytesEqual(st.clientPk, pair.a);
    const ps = pair.senders[clientIsA === c2s ? 0 : 1];
    let t = ps.last;
    let plain: Uint8Array | null = null;
    if (t !== null) {
      const r = openDataPacket(pkt, t.sharedKey, t.recvNonce);
      if (r.ok) {
        advanceRecvNonce(t.recvNonce, r.value.diff);
        plain = r.value.plain;
      }
    }
    if (plain === null) {
      for (const c of ps.trackers) {
        if (c === ps.last) continue;
        const r = openDataPacket(pkt, c.sharedKey, c.recvNonce);
        if (!r.ok) continue;
        advanceRecvNonce(c.recvNonce, r.value.diff);
        plain = r.value.plain;
        t = ps.last = c;
        break;
      }
    }
    if (plain === null || t === null) {
      layers.push({
        proto: "net_crypto",
        kind: "data",
        length,
        nonceLow,
        decrypted: false,
        error: `none of ${ps.trackers.length} NET_CRYPTO key(s) for these DHT keys opens it`,
      });
      return;
    }
    st.netCryptoDecrypted++;
    const dp = decodeDataPlain(plain);
    if (!dp.ok) {
      layers.push({
        proto: "net_crypto",
        kind: "data",
        length,
        nonceLow,
        decrypted: true,
        error: dp.error.message,
      });
      return;
    }
    const { bufferStart, packetNumber, payload } = dp.value;
    layers.push({
      proto: "net_crypto",
      kind: "data",
      length,
      nonceLow,
      decrypted: true,
      packetNumber,
      bufferStart,
    });
    const pid = payload[0];
    // What the sender's packets say of its send_array.buffer_end, to read the peer's requests.
    if (pid >= PACKET_ID_RANGE_LOSSLESS_START && pid <= PACKET_ID_RANGE_LOSSLESS_END) {
      const next = (packetNumber + 1) >>> 0;
      if (t.sendEnd < 0 || ((next - t.sendEnd) >>> 0) < 0x80000000) t.sendEnd = next;
    } else t.sendEnd = packetNumber;
    layers.push(friendLayer(payload, bufferStart, t));
  }

  /** The pair (stream client, OOB peer), remembered per stream; null before the handshake. */
  oobPair(st: Stream, other: Uint8Array, otherHex: string): Pair | null {
    if (st.clientPk === null) return null;
    st.oobPairs ??= new Map();
    let p = st.oobPairs.get(otherHex);
    if (p === undefined) {
      p = this.#sessions.pair(st.clientPk, st.clientHex!, other.slice(), otherHex);
      st.oobPairs.set(otherHex, p);
    }
    return p;
  }
}

/** A net_crypto packet whose only check without keys is its exact length. */
function fixedLength(
  kind: "cookie_response" | "handshake",
  length: number,
  expected: number,
): NetCryptoLayer {
  return length === expected
    ? { proto: "net_crypto", kind, length }
    : { proto: "net_crypto", kind, length, error: `${length} bytes, expected ${expected}` };
}

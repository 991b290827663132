/**
 * @module
 * The onion packets a relay carries for its client (relay packets 8 and 9), read as far as
 * the relay and the client can read them without onion keys: the next hop and temporary key
 * of a request, the kind and sendback or key of a response. Stateless, so it needs no stream.
 */
import { toHex } from "../../common/crypto.ts";
import {
  announceResponseSendback,
  dataResponseKey,
  decodeOnionRequestTcp,
  NET_PACKET_ANNOUNCE_RESPONSE,
  NET_PACKET_ONION_DATA_RESPONSE,
} from "../../onion/packets.ts";
import type { OnionLayer } from "../tox_records.ts";

/** Packet 8 as the relay reads it: the rest is sealed for N2 and N3. */
export function onionRequestLayer(body: Uint8Array): OnionLayer {
  const length = body.length;
  const r = decodeOnionRequestTcp(body);
  if (!r.ok) return { proto: "onion", kind: "request", length, error: r.error.message };
  const { host, port } = r.value.next;
  return {
    proto: "onion",
    kind: "request",
    next: host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`,
    tmpPublicKey: toHex(r.value.tmpPublicKey),
    length,
  };
}

/**
 * Packet 9: the announce node's raw answer, dispatched on its first byte as handle_tcp_onion
 * does. Length limits are the receiver's (a c-toxcore client drops what breaks them).
 */
export function onionResponseLayer(body: Uint8Array): OnionLayer {
  const length = body.length;
  // The relay codec refuses an empty packet 9 today; without it there is no id to show.
  if (length === 0) {
    return { proto: "onion", kind: "unknown", length, error: "empty onion response" };
  }
  const id = body[0];
  if (id === NET_PACKET_ANNOUNCE_RESPONSE) {
    const r = announceResponseSendback(body);
    return r.ok
      ? { proto: "onion", kind: "announce_response", sendback: toHex(r.value), length }
      : { proto: "onion", kind: "announce_response", length, error: r.error.message };
  }
  if (id === NET_PACKET_ONION_DATA_RESPONSE) {
    const r = dataResponseKey(body);
    return r.ok
      ? { proto: "onion", kind: "data_response", tmpPublicKey: toHex(r.value), length }
      : { proto: "onion", kind: "data_response", length, error: r.error.message };
  }
  return { proto: "onion", kind: "unknown", id, length };
}

/**
 * @module
 * The innermost layer of a relay stream: the friend_connection / Messenger payload of an
 * opened net_crypto data packet (messages, nicknames, statuses, shared relays, and
 * net_crypto's own PACKET_ID_REQUEST). It needs nothing of the stream, only the session's
 * tracker, to count what a request asks for as its receiver would.
 */
import { toHex } from "../../common/crypto.ts";
import { packedNodeToRelay } from "../../common/packed_node.ts";
import { formatRelayAddress } from "../../common/relay_address.ts";
import {
  decodeFriendPacket,
  friendPacketName,
  isLossyId,
  PACKET_ID_REQUEST,
} from "../../friend_connection/friend_packets.ts";
import { walkRequestPacket } from "../../net_crypto/packets.ts";
import { type FriendLayer, PREVIEW_BYTES } from "../tox_records.ts";
import type { Tracker } from "./net_crypto_sessions.ts";

function hexPreview(data: Uint8Array): string {
  return toHex(data.length > PREVIEW_BYTES ? data.subarray(0, PREVIEW_BYTES) : data);
}

/** The payload of a net_crypto data packet `t` opened, as a friend layer. */
export function friendLayer(payload: Uint8Array, bufferStart: number, t: Tracker): FriendLayer {
  const id = payload[0];
  const lossy = isLossyId(id);
  const length = payload.length;
  const r = decodeFriendPacket(payload);
  if (!r.ok) {
    return {
      proto: "friend",
      id,
      kind: friendPacketName(id),
      lossy,
      length,
      error: r.error.message,
    };
  }
  const p = r.value;
  switch (p.kind) {
    case "message":
    case "action":
    case "status_message":
      return { proto: "friend", id, kind: p.kind, lossy, length, text: p.text };
    case "nickname":
      return { proto: "friend", id, kind: p.kind, lossy, length, text: p.name };
    case "user_status":
      return { proto: "friend", id, kind: p.kind, lossy, length, value: p.status };
    case "typing":
      return { proto: "friend", id, kind: p.kind, lossy, length, value: p.typing };
    case "share_relays":
      return {
        proto: "friend",
        id,
        kind: p.kind,
        lossy,
        length,
        relays: p.nodes.map((n) => {
          const relay = packedNodeToRelay(n);
          return `${formatRelayAddress(relay)}:${relay.publicKey}`;
        }),
      };
    case "request":
      return {
        proto: "friend",
        id,
        kind: p.kind,
        lossy,
        length,
        requested: requested(payload, p.body, bufferStart, t),
      };
    case "friend_requests":
    case "custom_lossless":
    case "custom_lossy":
      return { proto: "friend", id, kind: p.kind, lossy, length, preview: hexPreview(p.data) };
    case "other":
      return { proto: "friend", id, kind: p.name, lossy, length, preview: hexPreview(p.data) };
    default:
      return { proto: "friend", id, kind: p.kind, lossy, length };
  }
}

/**
 * How many packets a request asks for: walked as its receiver walks it, over the receiver's
 * send window (its buffer_end as its own packets showed it); without that, every non-zero
 * body byte names one packet.
 */
function requested(payload: Uint8Array, body: Uint8Array, bufferStart: number, t: Tracker): number {
  const end = t.partner?.sendEnd ?? -1;
  if (end >= 0 && payload[0] === PACKET_ID_REQUEST) {
    const w = walkRequestPacket(payload, bufferStart, end);
    if (w.ok) return w.value.requested.length;
  }
  let n = 0;
  for (let i = 0; i < body.length; i++) if (body[i] !== 0) n++;
  return n;
}

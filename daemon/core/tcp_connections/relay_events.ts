/**
 * Relay worker events in: TCP_connection.c's callbacks (tcp_response_callback,
 * tcp_status_callback, tcp_conn_data_callback, tcp_conn_oob_callback, tcp_onion_callback)
 * as one switch over RelayLinkEvent, so how the coordinator reacts to a relay reads in one
 * place and the class keeps to its API.
 */
import { toHex } from "../common/crypto.ts";
import type { RelayLinkEvent } from "../relay_client/relay_link.ts";
import { canSend, hasWorker, type Relay } from "./relays.ts";
import { type Peer, setSlotStatus, type Slot, unblock } from "./peers.ts";
import { dropSlot, prove, relayDown, relayStateChanged } from "./relay_lifecycle.ts";
import type { TcpConnectionsState } from "./state.ts";

export function onRelayEvent(
  state: TcpConnectionsState,
  relay: Relay,
  e: RelayLinkEvent,
  now: number,
): void {
  switch (e.type) {
    case "confirmed": {
      if (relay.state !== "connecting") return;
      relay.state = "confirmed";
      relay.everConfirmed = true;
      relay.confirmedAt = now;
      relay.inflight = 0;
      relay.congested = false;
      relay.sessions++;
      relayStateChanged(state, { relay: relay.hex, state: "confirmed" });
      // A refusal (routing table full) belonged to the old session.
      for (const peer of state.peers.values()) peer.refusedBy.delete(relay.hex);
      // tcp_relay_on_online: route every peer that has this relay in a slot.
      for (const hex of relay.peers) {
        const peer = state.peers.get(hex);
        if (peer) {
          state.actions.push({ type: "route", relay: relay.hex, publicKey: peer.publicKey });
        }
      }
      return;
    }
    case "routed":
    case "online":
    case "offline": {
      if (relay.state !== "confirmed") return;
      const peer = state.peers.get(toHex(e.publicKey));
      const slot = peer?.slots.find((s) => s.relay === relay.hex);
      if (!peer || !slot) {
        // Routed for a peer removed meanwhile: let the relay forget it.
        if (e.type === "routed") {
          state.actions.push({ type: "unroute", relay: relay.hex, publicKey: e.publicKey });
        }
        return;
      }
      slot.connectionId = e.connectionId;
      if (e.type === "online") setSlotStatus(state, peer, slot, "online", now);
      else if (e.type === "offline" || slot.status === "none") {
        setSlotStatus(state, peer, slot, "registered", now);
      }
      return;
    }
    case "route_refused": {
      const peer = state.peers.get(toHex(e.publicKey));
      const slot = peer?.slots.find((s) => s.relay === relay.hex);
      if (peer && slot) {
        peer.refusedBy.add(relay.hex);
        dropSlot(state, peer, slot, "relay refused to route", false);
      }
      return;
    }
    case "data": {
      if (relay.state !== "confirmed") return;
      count(relay, e.data.length);
      const peer = state.peers.get(toHex(e.publicKey));
      const slot = peer?.slots.find((s) => s.relay === relay.hex);
      if (!peer || !slot) return;
      received(state, peer, slot, relay, e.data, now);
      return;
    }
    case "oob": {
      if (relay.state !== "confirmed") return;
      count(relay, e.data.length);
      const peer = state.peers.get(toHex(e.publicKey));
      const slot = peer?.slots.find((s) => s.relay === relay.hex);
      // tcp_conn_oob_callback: a known peer with a slot here is plain data.
      if (peer && slot) received(state, peer, slot, relay, e.data, now);
      else state.events.push({ type: "oob", from: e.publicKey, relay: relay.hex, data: e.data });
      return;
    }
    case "onion":
      if (relay.state !== "confirmed") return;
      count(relay, e.data.length);
      state.events.push({ type: "onion", relay: relay.hex, data: e.data });
      return;
    case "pong":
      relay.rttMs = e.rttMs;
      return;
    case "congested":
      relay.congested = true;
      return;
    case "drained":
      relay.congested = false;
      wakeBlocked(state, relay);
      return;
    case "sent":
      relay.inflight = Math.max(0, relay.inflight - e.packets);
      if (relay.inflight <= state.config.sendWindowPackets / 2) wakeBlocked(state, relay);
      return;
    case "refused": {
      relay.inflight = Math.max(0, relay.inflight - e.items.length);
      relay.sendFailures += e.items.length;
      state.events.push({
        type: "send_failed",
        relay: relay.hex,
        packets: e.items.length,
        reason: `${e.reason}: ${e.message}`,
      });
      return;
    }
    case "stats":
      relay.worker = e.stats;
      return;
    case "closed": {
      if (!hasWorker(relay)) return;
      if (e.unsent > 0) {
        relay.sendFailures += e.unsent;
        state.events.push({
          type: "send_failed",
          relay: relay.hex,
          packets: e.unsent,
          reason: `relay closed: ${e.reason}`,
        });
      }
      state.actions.push({ type: "close", relay: relay.hex });
      relayDown(state, relay, `${e.reason}: ${e.message}`, e.fault, now);
      return;
    }
    case "crashed":
      // The Worker died without a close: same as a lost connection, our fault.
      if (!hasWorker(relay)) return;
      state.actions.push({ type: "close", relay: relay.hex });
      relayDown(state, relay, `relay worker crashed: ${e.message}`, "local", now);
      return;
    case "bad_command":
      relay.lastError = e.message;
      return;
    default:
      // connecting, tcp_connected, forwarding, reconnecting, shutdown: nothing to decide.
      return;
  }
}

function count(relay: Relay, bytes: number): void {
  relay.packetsIn++;
  relay.bytesIn += bytes;
}

function received(
  state: TcpConnectionsState,
  peer: Peer,
  slot: Slot,
  relay: Relay,
  data: Uint8Array,
  now: number,
): void {
  slot.packetsIn++;
  slot.bytesIn += data.length;
  prove(state, peer, slot, now);
  state.events.push({ type: "data", peer: peer.hex, relay: relay.hex, data });
}

function wakeBlocked(state: TcpConnectionsState, relay: Relay): void {
  if (!canSend(state.config, relay)) return;
  for (const hex of relay.peers) {
    const peer = state.peers.get(hex);
    if (peer?.blocked) unblock(state, peer);
  }
}

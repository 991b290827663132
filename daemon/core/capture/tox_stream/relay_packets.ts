/**
 * @module
 * The relay packet inside an opened frame, as TCP_client.c and TCP_server.c exchange them:
 * routing, connection notifications, ping/pong, OOB, onion and DATA. This is the layer with
 * per-stream bookkeeping (routes and their slots, ping round trips), and the one that knows
 * which DHT keys a carried net_crypto packet runs between, so it hands those down.
 */
import { toHex } from "../../common/crypto.ts";
import { decodeRelayPacket, packetName } from "../../tcp_common/packets.ts";
import type { Layer } from "../tox_records.ts";
import type { Timestamp } from "../types.ts";
import type { NetCryptoPackets } from "./net_crypto.ts";
import { onionRequestLayer, onionResponseLayer } from "./onion.ts";
import { type Dir, msBetween, Route, type Stream } from "./stream_state.ts";

/** Ping ids remembered per direction for RTTs (c-toxcore has one outstanding). */
const MAX_PINGS = 8;

function relayKind(firstByte: number): string {
  return packetName(firstByte).toLowerCase();
}

export class RelayPackets {
  readonly #netCrypto: NetCryptoPackets;

  constructor(netCrypto: NetCryptoPackets) {
    this.#netCrypto = netCrypto;
  }

  /** The relay packet inside an opened frame (a view into the scratch buffer). */
  packet(st: Stream, d: Dir, plain: Uint8Array, ts: Timestamp, layers: Layer[]): void {
    const r = decodeRelayPacket(plain);
    if (!r.ok) {
      layers.push({
        proto: "relay",
        kind: relayKind(plain[0]),
        length: Math.max(0, plain.length - 1),
        error: r.error.message,
      });
      return;
    }
    const p = r.value;
    const c2s = d.dir === "c2s";
    switch (p.kind) {
      case "data": {
        const route = st.slots?.[p.connectionId];
        if (route !== undefined) {
          if (c2s) route.dataC2s++;
          else route.dataS2c++;
        }
        st.firstData ??= ts;
        layers.push(
          route === undefined
            ? { proto: "relay", kind: "data", connectionId: p.connectionId, length: p.data.length }
            : {
              proto: "relay",
              kind: "data",
              connectionId: p.connectionId,
              publicKey: route.hex,
              length: p.data.length,
            },
        );
        this.#netCrypto.packet(st, p.data, c2s, route, null, layers);
        return;
      }
      case "oob_send":
      case "oob_recv": {
        const hex = toHex(p.publicKey);
        if (p.kind === "oob_send") st.oobSent++;
        else st.oobReceived++;
        layers.push({ proto: "relay", kind: p.kind, publicKey: hex, length: p.data.length });
        const oob = this.#netCrypto.oobPair(st, p.publicKey, hex);
        this.#netCrypto.packet(st, p.data, c2s, null, oob, layers);
        return;
      }
      case "routing_request":
        layers.push({ proto: "relay", kind: p.kind, publicKey: toHex(p.publicKey), length: 0 });
        return;
      case "routing_response": {
        const hex = toHex(p.publicKey);
        if (p.connectionId === null) {
          st.routesRefused++;
          layers.push({ proto: "relay", kind: p.kind, publicKey: hex, length: 0 });
          return;
        }
        const route = new Route(p.connectionId, p.publicKey.slice(), hex, ts);
        st.slots ??= new Array<Route | undefined>(256);
        st.slots[p.connectionId] = route;
        st.routes.push(route);
        layers.push({
          proto: "relay",
          kind: p.kind,
          connectionId: p.connectionId,
          publicKey: hex,
          length: 0,
        });
        return;
      }
      case "connection_notification":
      case "disconnect_notification": {
        const route = st.slots?.[p.connectionId];
        if (route !== undefined) {
          if (p.kind === "connection_notification") {
            route.state = "online";
            route.onlineAt ??= ts;
          } else if (c2s) {
            // The client gives the slot up; a relay's notice only says the peer left
            // (the slot stays, and a later CONNECTION_NOTIFICATION reuses it).
            route.state = "freed";
            st.slots![p.connectionId] = undefined;
          } else route.state = "offline";
        }
        layers.push(
          route === undefined
            ? { proto: "relay", kind: p.kind, connectionId: p.connectionId, length: 0 }
            : {
              proto: "relay",
              kind: p.kind,
              connectionId: p.connectionId,
              publicKey: route.hex,
              length: 0,
            },
        );
        return;
      }
      case "ping":
      case "pong": {
        const pingId = p.pingId.toString(16).padStart(16, "0");
        if (p.kind === "ping") {
          const mine = d.pings ??= new Map();
          if (mine.size >= MAX_PINGS) mine.delete(mine.keys().next().value!);
          mine.set(p.pingId, ts);
          layers.push({ proto: "relay", kind: "ping", pingId, length: 0 });
          return;
        }
        const pings = c2s ? st.s2c.pings : st.c2s.pings;
        const sent = pings?.get(p.pingId);
        if (pings === null || sent === undefined) {
          layers.push({ proto: "relay", kind: "pong", pingId, length: 0 });
          return;
        }
        pings.delete(p.pingId);
        const rttMs = msBetween(sent, ts);
        st.rttN++;
        st.rttSum += rttMs;
        st.rttLast = rttMs;
        if (rttMs < st.rttMin) st.rttMin = rttMs;
        if (rttMs > st.rttMax) st.rttMax = rttMs;
        layers.push({ proto: "relay", kind: "pong", pingId, length: 0, rttMs });
        return;
      }
      case "onion_request":
        st.onionRequests++;
        layers.push({ proto: "relay", kind: p.kind, length: p.data.length });
        layers.push(onionRequestLayer(p.data));
        return;
      case "onion_response":
        st.onionResponses++;
        layers.push({ proto: "relay", kind: p.kind, length: p.data.length });
        layers.push(onionResponseLayer(p.data));
        return;
      default:
        layers.push({ proto: "relay", kind: p.kind, length: p.data.length });
    }
  }
}

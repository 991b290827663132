/**
 * The relay set over time: giving peers slots on relays and taking them away, opening relays
 * peers need and putting unneeded ones to sleep (do_tcp_conns, kill_nonused_tcp), what a
 * close leads to (reconnect after a back-off, or dropping a learned relay that never
 * worked), and benching a relay that fails too often or drops a peer's data while another
 * relay delivers it. These change relays and peers together, hence apart from either.
 */
import type { Fault } from "../common/codec.ts";
import { shortKey } from "./types.ts";
import {
  backoff,
  droppedPeers,
  hasWorker,
  rankRelays,
  recentFaults,
  type Relay,
} from "./relays.ts";
import { newSlot, type Peer, peerDeadline, setSlotStatus, type Slot } from "./peers.ts";
import type { TcpConnectionsState } from "./state.ts";
import type { TcpConnectionsEvent } from "./types.ts";

/**
 * Tell the layer above a relay changed state. Any peer may now take the relay or lose it, so
 * the next reconcile looks at all of them: the one place that rule lives.
 */
export function relayStateChanged(
  state: TcpConnectionsState,
  event: Omit<Extract<TcpConnectionsEvent, { type: "relay_state" }>, "type">,
): void {
  state.allDirty = true;
  state.events.push({ type: "relay_state", ...event });
}

function attach(state: TcpConnectionsState, peer: Peer, relay: Relay): void {
  const slot = newSlot(relay.hex);
  peer.slots.push(slot);
  relay.peers.add(peer.hex);
  if (relay.state === "confirmed") {
    state.actions.push({ type: "route", relay: relay.hex, publicKey: peer.publicKey });
  }
}

/** Remove a slot; `why` null when the peer itself goes away. */
export function dropSlot(
  state: TcpConnectionsState,
  peer: Peer,
  slot: Slot,
  why: string | null,
  unroute = true,
): void {
  const relay = state.relays.get(slot.relay);
  if (unroute && relay && relay.state === "confirmed") {
    // The relay client sends DISCONNECT_NOTIFICATION only for an id it was given.
    state.actions.push({ type: "unroute", relay: relay.hex, publicKey: peer.publicKey });
  }
  // A route freed on a full relay may be what another peer waits for.
  if (relay && relay.peers.size >= state.config.routesPerRelay) state.allDirty = true;
  relay?.peers.delete(peer.hex);
  const i = peer.slots.indexOf(slot);
  if (i >= 0) peer.slots.splice(i, 1);
  state.dirty.add(peer);
  if (why !== null) setSlotStatus(state, peer, slot, "none", state.now, why);
}

/** Gone from the set, and from every peer's learned relays. */
export function forget(state: TcpConnectionsState, relay: Relay): void {
  state.relays.delete(relay.hex);
  for (const peer of state.peers.values()) {
    const i = peer.learned.indexOf(relay.hex);
    if (i >= 0) peer.learned.splice(i, 1);
    peer.refusedBy.delete(relay.hex);
  }
}

export function detachRelay(state: TcpConnectionsState, relay: Relay, why: string): void {
  for (const hex of [...relay.peers]) {
    const peer = state.peers.get(hex);
    const slot = peer?.slots.find((s) => s.relay === relay.hex);
    if (peer && slot) {
      relay.peers.delete(hex);
      peer.slots.splice(peer.slots.indexOf(slot), 1);
      setSlotStatus(state, peer, slot, "none", state.now, why);
    }
  }
  relay.peers.clear();
}

/**
 * Bring the relay set in line with what peers need: fill peer slots, wake needed relays,
 * reconnect after back-off, put unneeded ones to sleep, return benched ones.
 */
export function reconcile(state: TcpConnectionsState): void {
  const now = state.now;
  const cfg = state.config;
  for (const r of state.relays.values()) {
    if (r.state === "benched" && now >= r.benchedUntil) {
      r.state = "sleeping";
      r.attempts = 0;
      relayStateChanged(state, { relay: r.hex, state: "sleeping" });
    }
  }
  const ranked = rankRelays(state.config, state.relays, now);
  // Only peers something happened to: with thousands of peers a walk of all of them on every
  // relay event cost more than the events. A peer that loses a route to another (makeRoom) is
  // looked at again in the next round.
  for (let round = 0; round < 3 && (state.allDirty || state.dirty.size > 0); round++) {
    const batch = state.allDirty ? [...state.peers.values()] : [...state.dirty];
    state.allDirty = false;
    state.dirty.clear();
    for (const peer of batch) {
      if (state.peers.get(peer.hex) === peer) fillSlots(state, peer, ranked);
    }
  }
  // Keep `keepConnected` relays live (connecting or confirmed) whatever the peers need.
  // Waiting relays count (ranked last) and a sleeping one still in back-off is not opened
  // early: otherwise a dead kept relay would be replaced and retried at once, and several
  // dead relays would reopen each other in a loop.
  const keep = new Set<string>();
  for (const r of ranked) {
    if (keep.size >= cfg.keepConnected) break;
    keep.add(r.hex);
  }
  for (const r of state.relays.values()) {
    const needed = r.peers.size > 0 || keep.has(r.hex);
    if (r.state === "sleeping" && needed) {
      if (now >= r.retryAt) open(state, r);
      else {
        // Needed again before its back-off ran out: wait for it (nextDeadline has it).
        r.state = "waiting";
        relayStateChanged(state, {
          relay: r.hex,
          state: "waiting",
          retryInMs: r.retryAt - now,
        });
      }
    } else if (r.state === "waiting") {
      if (!needed) {
        r.state = "sleeping";
        relayStateChanged(state, { relay: r.hex, state: "sleeping" });
      } else if (now >= r.retryAt) open(state, r);
    } else if (
      r.state === "confirmed" && !needed && now - r.confirmedAt >= cfg.idleSleepMs
    ) {
      state.actions.push({ type: "close", relay: r.hex });
      r.state = "sleeping";
      r.inflight = 0;
      r.congested = false;
      relayStateChanged(state, {
        relay: r.hex,
        state: "sleeping",
        reason: "not needed",
      });
    }
  }
}

/** Give a peer the relays it lacks: learned ones first, then the user's by rank. */
function fillSlots(state: TcpConnectionsState, peer: Peer, ranked: readonly Relay[]): void {
  const now = state.now;
  const cfg = state.config;
  state.retime.add(peer);
  peer.filledAt = now;
  for (const [hex, until] of peer.avoid) if (now >= until) peer.avoid.delete(hex);
  const onlineCount = peer.slots.filter((s) => s.status === "online").length;
  if (onlineCount >= cfg.recommendedRelays) return;
  const searching = !peer.online && now - peer.offlineSince >= cfg.searchAfterMs;
  const target = searching ? cfg.maxRelaysPerPeer : cfg.recommendedRelays;
  const has = (hex: string) => peer.slots.some((s) => s.relay === hex);
  const usable = (hex: string) => !has(hex) && !peer.refusedBy.has(hex) && !peer.avoid.has(hex);
  for (const hex of peer.learned) {
    if (peer.slots.length >= cfg.maxRelaysPerPeer) break;
    const r = state.relays.get(hex);
    if (r && r.state !== "benched" && usable(hex) && makeRoom(state, r)) attach(state, peer, r);
  }
  for (const r of ranked) {
    if (peer.slots.length >= target) break;
    if (r.global && usable(r.hex) && r.peers.size < cfg.routesPerRelay) attach(state, peer, r);
  }
}

/**
 * A free route on `relay` for a peer known to be there: when every route is taken, one
 * held for another peer on the off chance (a global relay its friend was never seen on, not
 * ONLINE) gives way. Returns false when the relay is full of routes that matter.
 */
function makeRoom(state: TcpConnectionsState, relay: Relay): boolean {
  if (relay.peers.size < state.config.routesPerRelay) return true;
  for (const hex of relay.peers) {
    const other = state.peers.get(hex);
    const slot = other?.slots.find((s) => s.relay === relay.hex);
    if (!other || !slot || slot.status === "online" || other.learned.includes(relay.hex)) continue;
    dropSlot(
      state,
      other,
      slot,
      `route on ${shortKey(relay.hex)} given to a peer known to be there`,
    );
    return true;
  }
  return false;
}

function onlineOn(state: TcpConnectionsState, relay: Relay): number {
  let n = 0;
  for (const hex of relay.peers) {
    if (state.peers.get(hex)?.slots.some((s) => s.relay === relay.hex && s.status === "online")) {
      n++;
    }
  }
  return n;
}

/** Put every peer whose deadline may have moved back in the heap at its new deadline. */
export function settleTimers(state: TcpConnectionsState): void {
  for (const peer of state.retime) {
    if (state.peers.get(peer.hex) === peer) {
      state.timers.set(peer, peerDeadline(state.config, peer));
    } else state.timers.remove(peer);
  }
  state.retime.clear();
}

function open(state: TcpConnectionsState, relay: Relay): void {
  relay.state = "connecting";
  relay.inflight = 0;
  relay.congested = false;
  state.actions.push({
    type: "open",
    relay: relay.hex,
    address: relay.address,
    ...(relay.proxy ? { proxy: relay.proxy } : {}),
  });
  relayStateChanged(state, { relay: relay.hex, state: "connecting" });
}

export function relayDown(
  state: TcpConnectionsState,
  relay: Relay,
  reason: string,
  fault: Fault,
  now: number,
): void {
  const wasUp = relay.state === "confirmed";
  const upFor = wasUp ? now - relay.confirmedAt : 0;
  relay.lastError = reason;
  relay.congested = false;
  relay.inflight = 0;
  relay.worker = null;
  if (fault === "peer") relay.faults.push(now);
  for (const hex of relay.peers) {
    const peer = state.peers.get(hex);
    const slot = peer?.slots.find((s) => s.relay === relay.hex);
    if (peer && slot) {
      slot.connectionId = null;
      setSlotStatus(
        state,
        peer,
        slot,
        "none",
        now,
        `relay ${shortKey(relay.hex)} closed: ${reason}`,
      );
    }
  }
  if (recentFaults(state.config, relay, now) >= state.config.failuresToBench) {
    // The caller has already asked the shell to close this worker.
    bench(
      state,
      relay,
      `closed ${state.config.failuresToBench} times by its own fault ` +
        `within ${Math.round(state.config.failureWindowMs / 60_000)} min (last: ${reason})`,
      now,
      false,
    );
    return;
  }
  if (!relay.everConfirmed && !relay.global) {
    // c-toxcore kill_tcp_relay_connection: a learned relay that never worked is dropped.
    relayStateChanged(state, { relay: relay.hex, state: "removed", reason, fault });
    detachRelay(state, relay, `relay never connected: ${reason}`);
    forget(state, relay);
    return;
  }
  relay.attempts = wasUp && upFor >= state.config.stableAfterMs ? 0 : relay.attempts + 1;
  const delay = backoff(state.config, state.random, relay.attempts);
  relay.state = "waiting";
  relay.retryAt = now + delay;
  relayStateChanged(state, {
    relay: relay.hex,
    state: "waiting",
    reason,
    fault,
    retryInMs: delay,
  });
}

function bench(
  state: TcpConnectionsState,
  relay: Relay,
  reason: string,
  now: number,
  closeWorker = true,
): void {
  if (closeWorker && hasWorker(relay)) {
    state.actions.push({ type: "close", relay: relay.hex });
  }
  relay.state = "benched";
  relay.benchedReason = reason;
  relay.benchedUntil = now + state.config.benchMs;
  relay.congested = false;
  relay.inflight = 0;
  relayStateChanged(state, { relay: relay.hex, state: "benched", reason });
  detachRelay(state, relay, `relay ${shortKey(relay.hex)} benched: ${reason}`);
}

/** `s` is a suspect that still shows nothing while `carrier` brought the peer's traffic. */
function provenDropping(s: Slot, carrier: Slot): boolean {
  return s !== carrier && s.suspectAt !== null && s.provenAt < s.suspectAt;
}

export function prove(state: TcpConnectionsState, peer: Peer, slot: Slot, now: number): void {
  slot.provenAt = now;
  const carrier = state.relays.get(slot.relay);
  if (carrier) carrier.provenAt = now;
  if (slot.suspectAt !== null) {
    // The suspect carried the peer's traffic after all.
    slot.suspectAt = null;
    slot.suspectReason = null;
  }
  // Another relay works for this peer while a suspect still shows nothing: the suspect drops
  // this peer's data. That may be the peer's own link to that relay (a stalled socket on
  // its side), so it costs the relay this peer; the relay itself is benched only when the
  // evidence is not outweighed by the peers it still serves (config.ts dropsToBench).
  // This runs for every packet received: nothing is allocated unless a slot is dropped.
  let any = false;
  for (const s of peer.slots) any ||= provenDropping(s, slot);
  if (!any) return;
  for (const s of peer.slots.filter((s) => provenDropping(s, slot))) {
    const relay = state.relays.get(s.relay);
    if (!relay) continue;
    const reason = `dropped data for peer ${shortKey(peer.hex)}: ${s.suspectReason}, ` +
      `while relay ${shortKey(slot.relay)} delivered`;
    relay.penalties.push({ at: now, peer: peer.hex });
    relay.lastError = reason;
    peer.avoid.set(relay.hex, now + state.config.benchMs);
    dropSlot(state, peer, s, `relay ${shortKey(relay.hex)} ${reason}`);
    const dropped = droppedPeers(relay);
    // config.ts dropsToBench: a relay that drops for everyone loses them all, one that only
    // looks so on a busy machine keeps most of its ONLINE peers (or carries their traffic).
    if (dropped >= Math.max(state.config.dropsToBench, onlineOn(state, relay) / 2)) {
      const who = dropped === 1 ? "1 peer" : `${dropped} peers`;
      bench(state, relay, `${reason} (${who} lost data on it)`, now);
    }
  }
}

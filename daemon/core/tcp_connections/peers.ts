/**
 * Per-peer bookkeeping: the record for each peer (its relay slots, the relays learned for
 * it, the sending relay) and the rules that change it: slot status (NONE / REGISTERED /
 * ONLINE) and the peer_online / peer_offline it implies, the sticky choice of the sending
 * relay with immediate fail-over, and suspecting a sending relay that delivers nothing.
 * A relay's state is only read here, so this sits below everything that changes it.
 */
import type { TcpConnectionsConfig } from "./config.ts";
import { shortKey, type SlotStatus, type TcpConnectionsEvent } from "./types.ts";
import { type Relay, score } from "./relays.ts";

export interface Slot {
  readonly relay: string;
  status: SlotStatus;
  connectionId: number | null;
  /** The peer's traffic (or a delivery we could pin to this relay) came through it. */
  provenAt: number;
  /** First data sent through this slot since the last delivery progress. */
  unackedSince: number | null;
  suspectAt: number | null;
  suspectReason: string | null;
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface Peer {
  readonly publicKey: Uint8Array;
  readonly hex: string;
  readonly slots: Slot[];
  readonly learned: string[];
  /** Relays that refused to route this peer (full): not tried again for it. */
  readonly refusedBy: Set<string>;
  /** Relays proven to drop this peer's data, not given a slot for it until then (ms). */
  readonly avoid: Map<string, number>;
  sender: string | null;
  senderSince: number;
  online: boolean;
  /** Since when the peer has had no ONLINE slot (added, or went offline). */
  offlineSince: number;
  /** The layer above reports delivery progress for this peer: detection of dropping is on. */
  feedback: boolean;
  blocked: boolean;
  oobSent: number;
  congestedRefusals: number;
  /** When reconcile last looked at this peer's slots (fillSlots). */
  filledAt: number;
  /** The peer's next deadline and its place in the deadline heap (state.ts). */
  deadline: number;
  heapIndex: number;
}

/** A peer as added: on no relay yet, offline since now. */
export function newPeer(publicKey: Uint8Array, hex: string, now: number, feedback: boolean): Peer {
  return {
    publicKey: publicKey.slice(),
    hex,
    slots: [],
    learned: [],
    refusedBy: new Set(),
    avoid: new Map(),
    sender: null,
    senderSince: now,
    online: false,
    offlineSince: now,
    feedback,
    blocked: false,
    oobSent: 0,
    congestedRefusals: 0,
    filledAt: -Infinity,
    deadline: Infinity,
    heapIndex: -1,
  };
}

/** A slot on a relay, before the relay has routed the peer. */
export function newSlot(relay: string): Slot {
  return {
    relay,
    status: "none",
    connectionId: null,
    provenAt: 0,
    unackedSince: null,
    suspectAt: null,
    suspectReason: null,
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
}

/**
 * What the peer side needs from the coordinator: settings, the relays to weigh (never to
 * change: that is relay_lifecycle.ts), and the queue its events go to.
 */
export interface PeerContext {
  readonly config: TcpConnectionsConfig;
  readonly relays: ReadonlyMap<string, Relay>;
  readonly events: TcpConnectionsEvent[];
  /** Peers whose slots changed: the next reconcile looks at them (and re-reads their timers). */
  readonly dirty: Set<Peer>;
}

export function setSlotStatus(
  ctx: PeerContext,
  peer: Peer,
  slot: Slot,
  status: SlotStatus,
  now: number,
  why?: string,
): void {
  const before = slot.status;
  slot.status = status;
  ctx.dirty.add(peer);
  if (status !== "online") {
    slot.unackedSince = null;
    if (peer.sender === slot.relay) {
      // Fail over at once, so the next packet does not wait for a choice.
      const next = bestSlot(ctx, peer, now);
      setSender(
        ctx,
        peer,
        next?.relay ?? null,
        now,
        why ?? `peer went offline on ${shortKey(slot.relay)}`,
      );
    }
  }
  const online = peer.slots.some((s) => s.status === "online");
  if (online && !peer.online) {
    peer.online = true;
    ctx.events.push({ type: "peer_online", peer: peer.hex, relay: slot.relay });
  } else if (!online && peer.online) {
    peer.online = false;
    peer.offlineSince = now;
    ctx.events.push({ type: "peer_offline", peer: peer.hex });
  }
  if (status === "online" && before !== "online") {
    if (peer.sender === null) chooseSender(ctx, peer, now);
    if (peer.blocked) unblock(ctx, peer);
  }
  if (status === "registered" && before === "none" && !peer.online) {
    ctx.events.push({ type: "peer_registered", peer: peer.hex, relay: slot.relay });
  }
}

export function isProven(config: TcpConnectionsConfig, s: Slot, now: number): boolean {
  return s.provenAt > 0 && now - s.provenAt < config.provenForMs;
}

/** May send for this peer: ONLINE, not suspected, relay up and not backed up. */
function eligible(ctx: PeerContext, s: Slot): boolean {
  if (s.status !== "online" || s.suspectAt !== null) return false;
  const relay = ctx.relays.get(s.relay);
  return relay !== undefined && relay.state === "confirmed" && !relay.congested;
}

/**
 * The sending slot: the current one while it can send; otherwise the best eligible one.
 * A relay the peer's traffic proves working wins over one that does not.
 */
export function chooseSender(ctx: PeerContext, peer: Peer, now: number): Slot | null {
  const current = peer.sender === null
    ? undefined
    : peer.slots.find((s) => s.relay === peer.sender);
  // Per packet: the sticky sender stays unless another slot is proven and it is not, so
  // the full ranking runs only when that can change the answer.
  if (
    current && eligible(ctx, current) &&
    (isProven(ctx.config, current, now) || !peer.slots.some((s) => isProven(ctx.config, s, now)))
  ) return current;
  const best = bestSlot(ctx, peer, now);
  if (current && eligible(ctx, current)) {
    if (best && best !== current && isProven(ctx.config, best, now)) {
      setSender(ctx, peer, best.relay, now, `peer's traffic arrives on ${shortKey(best.relay)}`);
      return best;
    }
    return current;
  }
  if (best === null) {
    if (current) setSender(ctx, peer, null, now, whyNot(ctx, current));
    return null;
  }
  setSender(
    ctx,
    peer,
    best.relay,
    now,
    current ? whyNot(ctx, current) : "first relay the peer is online on",
  );
  return best;
}

function bestSlot(ctx: PeerContext, peer: Peer, now: number): Slot | null {
  let best: Slot | null = null;
  let bestKey: number[] = [];
  peer.slots.forEach((s, i) => {
    if (!eligible(ctx, s)) return;
    const r = ctx.relays.get(s.relay)!;
    const key = [
      isProven(ctx.config, s, now) ? 1 : 0,
      score(ctx.config, r, now),
      -(r.rttMs ?? 1e6),
      -i,
    ];
    if (best === null || compareKeys(key, bestKey) > 0) (best = s, bestKey = key);
  });
  return best;
}

function whyNot(ctx: PeerContext, s: Slot): string {
  const relay = ctx.relays.get(s.relay);
  const name = shortKey(s.relay);
  if (!relay) return `relay ${name} removed`;
  if (s.suspectReason) return `relay ${name} suspected: ${s.suspectReason}`;
  if (relay.state !== "confirmed") return `relay ${name} is ${relay.state}`;
  if (s.status !== "online") return `peer not online on ${name}`;
  return `relay ${name} congested`;
}

function setSender(
  ctx: PeerContext,
  peer: Peer,
  relay: string | null,
  now: number,
  reason: string,
): void {
  if (peer.sender === relay) return;
  const from = peer.sender;
  // Silence is judged per sending spell: a slot sent through earlier and left keeps no clock
  // to be judged by when it sends again.
  for (const s of peer.slots) if (s.relay === from) s.unackedSince = null;
  peer.sender = relay;
  peer.senderSince = now;
  ctx.events.push({ type: "sender_changed", peer: peer.hex, from, to: relay, reason });
  if (relay !== null && peer.blocked) unblock(ctx, peer);
}

/** When this peer needs a tick: a search to widen to, a delivery to judge, a suspicion to forget. */
export function peerDeadline(config: TcpConnectionsConfig, peer: Peer): number {
  let at = Infinity;
  // A search time before the peer's last look (fillSlots) has been acted on. Judged by that,
  // not by the clock, so a deadline that passed between two looks is still reported.
  const searchAt = peer.offlineSince + config.searchAfterMs;
  if (!peer.online && searchAt > peer.filledAt) at = searchAt;
  for (const s of peer.slots) {
    if (s.unackedSince !== null && peer.sender === s.relay) {
      // As checkDelivery: the later of the first unacked send and the last proof.
      at = Math.min(at, Math.max(s.unackedSince, s.provenAt) + config.deliveryTimeoutMs);
    }
    if (s.suspectAt !== null) at = Math.min(at, s.suspectAt + config.suspectForMs);
  }
  // An avoided relay may be offered again then (fillSlots forgets expired ones).
  for (const until of peer.avoid.values()) at = Math.min(at, until);
  return at;
}

export function checkDelivery(ctx: PeerContext, peer: Peer, now: number): void {
  for (const s of peer.slots) {
    if (s.suspectAt !== null && now - s.suspectAt >= ctx.config.suspectForMs) {
      s.suspectAt = null;
      s.suspectReason = null;
    }
  }
  if (!peer.feedback || peer.sender === null) return;
  const slot = peer.slots.find((s) => s.relay === peer.sender);
  if (!slot || slot.unackedSince === null) return;
  const waited = now - slot.unackedSince;
  if (waited < ctx.config.deliveryTimeoutMs) return;
  if (isProven(ctx.config, slot, now) && now - slot.provenAt < ctx.config.deliveryTimeoutMs) return;
  // Suspect only when there is somewhere else to go: one relay alone cannot be compared.
  const others = peer.slots.filter((s) => s !== slot && eligible(ctx, s));
  slot.unackedSince = null;
  if (others.length === 0) return;
  slot.suspectAt = now;
  slot.suspectReason = `nothing delivered in ${Math.round(waited)} ms`;
  chooseSender(ctx, peer, now);
}

export function unblock(ctx: PeerContext, peer: Peer): void {
  peer.blocked = false;
  ctx.events.push({ type: "writable", peer: peer.hex });
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * @module
 * net_crypto sessions as the key log names them, tracked across streams: one receive nonce
 * per (session key, sender base nonce), kept as net_crypto keeps recv_nonce. A session is not
 * tied to one relay stream (its packets may alternate between two relays, and both of its
 * ends may have logged it), so this registry knows nothing of streams and is shared by all.
 */
import { bytesEqual, toHex } from "../../common/crypto.ts";
import type { KeyStore, NetCryptoKeys } from "../keylog.ts";

/**
 * The receive side of one sender in one net_crypto session: what net_crypto keeps as
 * recv_nonce, plus the sender's send-array end (for reading the other side's requests).
 */
export class Tracker {
  /** The sender's send_array.buffer_end as its packets reveal it; -1 unknown. */
  sendEnd = -1;
  partner: Tracker | null = null;
  constructor(readonly sharedKey: Uint8Array, readonly recvNonce: Uint8Array) {}
}

/** The candidate trackers for packets from one side of a DHT key pair. */
export class PairSender {
  trackers: Tracker[] = [];
  last: Tracker | null = null;
}

/** Two DHT keys a net_crypto session may run between, with their key log entries. */
export class Pair {
  /** KeyStore size when the entries were read. */
  storeSize = -1;
  entryCount = 0;
  readonly senders: [PairSender, PairSender] = [new PairSender(), new PairSender()];
  realKeys: string[] = [];
  constructor(readonly a: Uint8Array, readonly b: Uint8Array) {}
}

function pairKey(aHex: string, bHex: string): string {
  return aHex < bHex ? aHex + bHex : bHex + aHex;
}

/** Every pair and tracker the decoder has met, so that each session is tracked once. */
export class NetCryptoSessions {
  readonly #keys: KeyStore;
  readonly #pairs = new Map<string, Pair>();
  readonly #trackers = new Map<string, Tracker>();

  constructor(keys: KeyStore) {
    this.#keys = keys;
  }

  /** The pair of two DHT keys, whichever order they come in. */
  pair(a: Uint8Array, aHex: string, b: Uint8Array, bHex: string): Pair {
    const key = pairKey(aHex, bHex);
    let p = this.#pairs.get(key);
    if (p === undefined) {
      p = new Pair(a, b);
      this.#pairs.set(key, p);
    }
    return p;
  }

  /** The pair of two hex DHT keys if it was ever met. */
  find(aHex: string, bHex: string): Pair | undefined {
    return this.#pairs.get(pairKey(aHex, bHex));
  }

  /** Read the pair's key log entries again if keys were added since. */
  refreshPair(p: Pair): void {
    if (p.storeSize === this.#keys.size) return;
    p.storeSize = this.#keys.size;
    const entries = this.#keys.netCryptoSessions(p.a, p.b);
    if (entries.length === p.entryCount) return;
    p.entryCount = entries.length;
    const fromA: Tracker[] = [];
    const fromB: Tracker[] = [];
    const real = new Set<string>();
    // Newest first: a restarted session is the likelier one.
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i];
      const selfSends = this.#tracker(e, e.selfNonce);
      const peerSends = this.#tracker(e, e.peerNonce);
      selfSends.partner = peerSends;
      peerSends.partner = selfSends;
      const selfIsA = bytesEqual(e.selfDhtPublicKey, p.a);
      const [ta, tb] = selfIsA ? [selfSends, peerSends] : [peerSends, selfSends];
      // Both ends may log the same session: one tracker each way, whoever logged it.
      if (!fromA.includes(ta)) fromA.push(ta);
      if (!fromB.includes(tb)) fromB.push(tb);
      real.add(toHex(e.selfRealPublicKey));
      real.add(toHex(e.peerRealPublicKey));
    }
    p.senders[0].trackers = fromA;
    p.senders[1].trackers = fromB;
    p.realKeys = [...real];
  }

  #tracker(e: NetCryptoKeys, base: Uint8Array): Tracker {
    const key = toHex(e.sessionKey) + toHex(base);
    let t = this.#trackers.get(key);
    if (t === undefined) {
      t = new Tracker(e.sessionKey, base.slice());
      this.#trackers.set(key, t);
    }
    return t;
  }
}

/**
 * The key log: what a capture needs to be decrypted, one line per secure session, in the
 * spirit of TLS's SSLKEYLOGFILE. Opt-in (`--keylog`): anyone holding it reads the sessions it
 * names, so the daemon writes it 0600 and warns at start. Only per-session secrets are logged;
 * long-term secret keys never are, so a leaked log exposes those sessions and nothing else.
 *
 * Format (text, UTF-8, one entry per line, fields separated by one space, hex lower or upper):
 *
 *   # comment
 *   TCP_SESSION <handshake_nonce> <relay_pk> <session_key> <client_nonce> <relay_nonce>
 *   NET_CRYPTO <self_dht_pk> <peer_dht_pk> <self_real_pk> <peer_real_pk> <session_key>
 *              <self_nonce> <peer_nonce>                               (one line)
 *
 * TCP_SESSION: one relay connection (spec/tcp.md §3-§4). handshake_nonce (24 bytes) is the
 * plaintext nonce at offset 32 of the client's 128-byte handshake: it names the stream.
 * session_key is precompute(their temp pk, our temp sk); client_nonce / relay_nonce are the
 * base nonces of the client→relay and relay→client frames (each counts up by one per frame).
 *
 * NET_CRYPTO: one net_crypto session (spec/net_crypto.md §6-§8) as seen by "self". The pair
 * of DHT keys names it (relays route by DHT key); session_key is precompute(peer session pk,
 * our session sk); self_nonce is the nonce of the first data packet self sends in this
 * session, peer_nonce the first one the peer sends. A re-keyed session is a new line.
 *
 * In pcapng the same text travels in Decryption Secrets Blocks of type SECRETS_TYPE_TOX_KEYLOG.
 */
import { NONCE_SIZE, PUBLIC_KEY_SIZE, SHARED_KEY_SIZE, toHex } from "../common/crypto.ts";
import type { TcpSessionKeys } from "../tcp_common/handshake.ts";
import type { NetCryptoKeys } from "../net_crypto/connection.ts";

export type { NetCryptoKeys, TcpSessionKeys };

/** pcapng DSB secrets type: "TOXK". */
export const SECRETS_TYPE_TOX_KEYLOG = 0x544f584b;

export const KEYLOG_HEADER =
  "# toxtcp key log v1: secrets of the sessions below; whoever holds this file can read them\n";

export type KeylogEntry = TcpSessionKeys | NetCryptoKeys;

/** One line, with its newline. */
export function formatKeylogEntry(e: KeylogEntry): string {
  if (e.kind === "tcp_session") {
    return `TCP_SESSION ${toHex(e.handshakeNonce)} ${toHex(e.relayPublicKey)} ${
      toHex(e.sessionKey)
    } ${toHex(e.clientNonce)} ${toHex(e.relayNonce)}\n`;
  }
  return `NET_CRYPTO ${toHex(e.selfDhtPublicKey)} ${toHex(e.peerDhtPublicKey)} ${
    toHex(e.selfRealPublicKey)
  } ${toHex(e.peerRealPublicKey)} ${toHex(e.sessionKey)} ${toHex(e.selfNonce)} ${
    toHex(e.peerNonce)
  }\n`;
}

export interface KeylogProblem {
  /** 1-based line number within the text parsed. */
  readonly line: number;
  readonly message: string;
}

export interface ParsedKeylog {
  readonly entries: KeylogEntry[];
  /** Lines that were not understood; the rest of the log is still used. */
  readonly problems: KeylogProblem[];
}

const LAYOUTS = {
  TCP_SESSION: [NONCE_SIZE, PUBLIC_KEY_SIZE, SHARED_KEY_SIZE, NONCE_SIZE, NONCE_SIZE],
  NET_CRYPTO: [
    PUBLIC_KEY_SIZE,
    PUBLIC_KEY_SIZE,
    PUBLIC_KEY_SIZE,
    PUBLIC_KEY_SIZE,
    SHARED_KEY_SIZE,
    NONCE_SIZE,
    NONCE_SIZE,
  ],
} as const;

const HEX = /^[0-9a-fA-F]*$/;

function hexField(s: string, bytes: number): Uint8Array | null {
  if (s.length !== bytes * 2 || !HEX.test(s)) return null;
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Parse a key log (a file, or the text of DSBs). Never throws; bad lines become problems. */
export function parseKeylog(text: string): ParsedKeylog {
  const entries: KeylogEntry[] = [];
  const problems: KeylogProblem[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const label = fields[0];
    if (label !== "TCP_SESSION" && label !== "NET_CRYPTO") {
      problems.push({
        line: i + 1,
        message: `unknown entry ${JSON.stringify(label.slice(0, 40))}`,
      });
      continue;
    }
    const layout = LAYOUTS[label];
    if (fields.length - 1 !== layout.length) {
      problems.push({
        line: i + 1,
        message: `${label}: ${fields.length - 1} fields, expected ${layout.length}`,
      });
      continue;
    }
    const values: Uint8Array[] = [];
    let bad = -1;
    for (let f = 0; f < layout.length; f++) {
      const v = hexField(fields[f + 1], layout[f]);
      if (v === null) {
        bad = f + 1;
        break;
      }
      values.push(v);
    }
    if (bad > 0) {
      problems.push({
        line: i + 1,
        message: `${label}: field ${bad} is not ${layout[bad - 1]} bytes of hex`,
      });
      continue;
    }
    if (label === "TCP_SESSION") {
      entries.push({
        kind: "tcp_session",
        handshakeNonce: values[0],
        relayPublicKey: values[1],
        sessionKey: values[2],
        clientNonce: values[3],
        relayNonce: values[4],
      });
    } else {
      entries.push({
        kind: "net_crypto",
        selfDhtPublicKey: values[0],
        peerDhtPublicKey: values[1],
        selfRealPublicKey: values[2],
        peerRealPublicKey: values[3],
        sessionKey: values[4],
        selfNonce: values[5],
        peerNonce: values[6],
      });
    }
  }
  return { entries, problems };
}

/**
 * Every key known to a decoder, looked up the way a capture presents sessions: a relay stream
 * by its handshake nonce, a net_crypto session by its two DHT keys.
 */
export class KeyStore {
  readonly #tcp = new Map<string, TcpSessionKeys>();
  readonly #netCrypto = new Map<string, NetCryptoKeys[]>();
  #count = 0;

  get size(): number {
    return this.#count;
  }

  add(e: KeylogEntry): void {
    if (e.kind === "tcp_session") {
      const k = toHex(e.handshakeNonce);
      if (!this.#tcp.has(k)) this.#count++;
      this.#tcp.set(k, e);
      return;
    }
    const k = pairKey(e.selfDhtPublicKey, e.peerDhtPublicKey);
    const list = this.#netCrypto.get(k) ?? [];
    const dup = list.some((x) =>
      toHex(x.sessionKey) === toHex(e.sessionKey) &&
      toHex(x.selfDhtPublicKey) === toHex(e.selfDhtPublicKey)
    );
    if (dup) return;
    list.push(e);
    this.#netCrypto.set(k, list);
    this.#count++;
  }

  addAll(entries: readonly KeylogEntry[]): void {
    for (const e of entries) this.add(e);
  }

  tcpSession(handshakeNonce: Uint8Array): TcpSessionKeys | undefined {
    return this.#tcp.get(toHex(handshakeNonce));
  }

  /** Sessions between these two DHT keys, logged by either side, oldest first. */
  netCryptoSessions(a: Uint8Array, b: Uint8Array): readonly NetCryptoKeys[] {
    return this.#netCrypto.get(pairKey(a, b)) ?? [];
  }
}

function pairKey(a: Uint8Array, b: Uint8Array): string {
  const x = toHex(a);
  const y = toHex(b);
  return x < y ? `${x}:${y}` : `${y}:${x}`;
}

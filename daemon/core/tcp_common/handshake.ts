/**
 * The TCP relay handshake (spec/tcp.md §3; TCP_client.c generate_handshake/handle_handshake,
 * TCP_server.c handle_TCP_handshake), both sides, as pure functions.
 *
 * Client → relay, 128 bytes: client_pk(32) · nonce(24) · seal(K_hs, nonce, temp_pk · base_nonce)
 * Relay → client,  96 bytes: nonce(24) · seal(K_hs, nonce, temp_pk · base_nonce)
 * K_hs = precompute(relay_pk, client_sk); session key = precompute(their temp pk, our temp sk).
 */
import { codecError, type Decoded, decoded } from "../common/codec.ts";
import {
  CryptoError,
  type KeyPair,
  MAC_SIZE,
  newKeyPair,
  NONCE_SIZE,
  open,
  precompute,
  PUBLIC_KEY_SIZE,
  type RandomBytes,
  seal,
} from "../common/crypto.ts";

export const HANDSHAKE_PLAIN_SIZE = PUBLIC_KEY_SIZE + NONCE_SIZE; // 56
export const SERVER_HANDSHAKE_SIZE = NONCE_SIZE + HANDSHAKE_PLAIN_SIZE + MAC_SIZE; // 96
export const CLIENT_HANDSHAKE_SIZE = PUBLIC_KEY_SIZE + SERVER_HANDSHAKE_SIZE; // 128

/** An established encrypted stream: one key, one counter nonce per direction. */
export interface SecureSession {
  readonly sharedKey: Uint8Array;
  /** Nonce for the next frame we send; incremented after each one. */
  readonly sendNonce: Uint8Array;
  /** Nonce for the next frame we expect; incremented after each one that opens. */
  readonly recvNonce: Uint8Array;
}

/** What the client keeps between sending its 128 bytes and reading the 96-byte answer. */
export interface PendingClientHandshake {
  readonly handshakeKey: Uint8Array;
  readonly tempKeys: KeyPair;
  readonly sendNonce: Uint8Array;
}

/** The parts of a client handshake, for tools that show them without keys. */
export interface ClientHandshakeFields {
  readonly clientPublicKey: Uint8Array;
  readonly nonce: Uint8Array;
  readonly box: Uint8Array;
}

export function parseClientHandshake(b: Uint8Array): Decoded<ClientHandshakeFields> {
  if (b.length !== CLIENT_HANDSHAKE_SIZE) {
    return codecError(
      "wrong_length",
      `client handshake: ${b.length} bytes, expected ${CLIENT_HANDSHAKE_SIZE}`,
    );
  }
  return decoded({
    clientPublicKey: b.subarray(0, 32),
    nonce: b.subarray(32, 56),
    box: b.subarray(56),
  });
}

/**
 * Build the 128-byte client handshake. Throws CryptoError only if the relay key is of low
 * order, which no real relay key is: the caller reports it as a bad relay key.
 */
export function createClientHandshake(
  self: KeyPair,
  relayPublicKey: Uint8Array,
  random: RandomBytes,
): { packet: Uint8Array; pending: PendingClientHandshake } {
  const handshakeKey = precompute(relayPublicKey, self.secretKey);
  const tempKeys = newKeyPair(random);
  const baseNonce = random(NONCE_SIZE);
  const nonce = random(NONCE_SIZE);
  const plain = new Uint8Array(HANDSHAKE_PLAIN_SIZE);
  plain.set(tempKeys.publicKey, 0);
  plain.set(baseNonce, PUBLIC_KEY_SIZE);
  const packet = new Uint8Array(CLIENT_HANDSHAKE_SIZE);
  packet.set(self.publicKey, 0);
  packet.set(nonce, 32);
  packet.set(seal(handshakeKey, nonce, plain), 56);
  return { packet, pending: { handshakeKey, tempKeys, sendNonce: baseNonce } };
}

/**
 * Open the relay's 96-byte answer. null means it did not open under K_hs: the relay does not
 * hold the secret key for the public key we were given (wrong key, or not a relay at all).
 */
export function completeClientHandshake(
  pending: PendingClientHandshake,
  response: Uint8Array,
): SecureSession | null {
  if (response.length !== SERVER_HANDSHAKE_SIZE) return null;
  const plain = open(pending.handshakeKey, response.subarray(0, NONCE_SIZE), response.subarray(24));
  if (plain === null) return null;
  const serverTemp = plain.slice(0, PUBLIC_KEY_SIZE);
  let sharedKey: Uint8Array;
  try {
    sharedKey = precompute(serverTemp, pending.tempKeys.secretKey);
  } catch (e) {
    if (e instanceof CryptoError) return null;
    throw e;
  }
  pending.tempKeys.secretKey.fill(0);
  return {
    sharedKey,
    sendNonce: pending.sendNonce,
    recvNonce: plain.slice(PUBLIC_KEY_SIZE, HANDSHAKE_PLAIN_SIZE),
  };
}

/** Relay side: what accepting a client handshake yields. */
export interface AcceptedHandshake {
  readonly clientPublicKey: Uint8Array;
  readonly response: Uint8Array;
  readonly session: SecureSession;
}

/** Relay side of the handshake; null when the box does not open (the relay just closes). */
export function acceptClientHandshake(
  relay: KeyPair,
  packet: Uint8Array,
  random: RandomBytes,
): AcceptedHandshake | null {
  const fields = parseClientHandshake(packet);
  if (!fields.ok) return null;
  let handshakeKey: Uint8Array;
  try {
    handshakeKey = precompute(fields.value.clientPublicKey, relay.secretKey);
  } catch (e) {
    if (e instanceof CryptoError) return null;
    throw e;
  }
  const plain = open(handshakeKey, fields.value.nonce, fields.value.box);
  if (plain === null || plain.length !== HANDSHAKE_PLAIN_SIZE) return null;
  const clientTemp = plain.slice(0, PUBLIC_KEY_SIZE);
  const temp = newKeyPair(random);
  let sharedKey: Uint8Array;
  try {
    sharedKey = precompute(clientTemp, temp.secretKey);
  } catch (e) {
    if (e instanceof CryptoError) return null;
    throw e;
  }
  const sendNonce = random(NONCE_SIZE);
  const replyPlain = new Uint8Array(HANDSHAKE_PLAIN_SIZE);
  replyPlain.set(temp.publicKey, 0);
  replyPlain.set(sendNonce, PUBLIC_KEY_SIZE);
  const nonce = random(NONCE_SIZE);
  const response = new Uint8Array(SERVER_HANDSHAKE_SIZE);
  response.set(nonce, 0);
  response.set(seal(handshakeKey, nonce, replyPlain), NONCE_SIZE);
  temp.secretKey.fill(0);
  return {
    clientPublicKey: fields.value.clientPublicKey.slice(),
    response,
    session: { sharedKey, sendNonce, recvNonce: plain.slice(PUBLIC_KEY_SIZE) },
  };
}

/** What the key log (capture/keylog.ts) records of one relay session: enough to open its frames. */
export interface TcpSessionKeys {
  readonly kind: "tcp_session";
  readonly handshakeNonce: Uint8Array;
  readonly relayPublicKey: Uint8Array;
  readonly sessionKey: Uint8Array;
  readonly clientNonce: Uint8Array;
  readonly relayNonce: Uint8Array;
}

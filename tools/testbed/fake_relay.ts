/**
 * The relay's half of one TCP relay session, sans-I/O, for tests: accepts the client's
 * handshake, opens the client's frames and seals packets (or raw garbage) back to it.
 */
import { type KeyPair, newKeyPair, type RandomBytes } from "../../daemon/core/common/crypto.ts";
import {
  acceptClientHandshake,
  CLIENT_HANDSHAKE_SIZE,
  type SecureSession,
} from "../../daemon/core/tcp_common/handshake.ts";
import { FrameReader, openFrame, sealFrame } from "../../daemon/core/tcp_common/framing.ts";
import {
  decodeRelayPacket,
  encodeRelayPacket,
  type RelayPacket,
} from "../../daemon/core/tcp_common/packets.ts";

import { seededRandom } from "./seeded_random.ts";
export { seededRandom };

export class FakeRelayPeer {
  readonly keys: KeyPair;
  readonly random: RandomBytes;
  session: SecureSession | null = null;
  clientPublicKey: Uint8Array | null = null;
  #pre: Uint8Array = new Uint8Array(0);
  #reader = new FrameReader();

  constructor(random: RandomBytes = seededRandom(99), keys?: KeyPair) {
    this.random = random;
    this.keys = keys ?? newKeyPair(random);
  }

  /**
   * Feed bytes the client wrote. Returns the handshake response once the 128 bytes are in
   * (or null if it did not open), and the client's packets decoded after that.
   */
  fromClient(bytes: Uint8Array): { response?: Uint8Array | null; packets: RelayPacket[] } {
    const packets: RelayPacket[] = [];
    let response: Uint8Array | null | undefined;
    if (this.session === null) {
      const merged = new Uint8Array(this.#pre.length + bytes.length);
      merged.set(this.#pre);
      merged.set(bytes, this.#pre.length);
      if (merged.length < CLIENT_HANDSHAKE_SIZE) {
        this.#pre = merged;
        return { packets };
      }
      const accepted = acceptClientHandshake(
        this.keys,
        merged.subarray(0, CLIENT_HANDSHAKE_SIZE),
        this.random,
      );
      this.#pre = new Uint8Array(0);
      if (accepted === null) return { response: null, packets };
      this.session = accepted.session;
      this.clientPublicKey = accepted.clientPublicKey;
      response = accepted.response;
      bytes = merged.subarray(CLIENT_HANDSHAKE_SIZE);
    }
    this.#reader.push(bytes);
    for (;;) {
      const r = this.#reader.next();
      if (r.kind === "need_more") break;
      if (r.kind === "error") throw new Error(`client sent a bad frame: ${r.error.message}`);
      const plain = openFrame(this.session!, r.box);
      if (plain === null) throw new Error("client frame failed to open");
      const d = decodeRelayPacket(plain);
      if (!d.ok) throw new Error(`client sent a bad packet: ${d.error.message}`);
      packets.push(structuredClone(d.value));
    }
    return { response, packets };
  }

  /** One frame carrying `packet`. */
  frame(packet: RelayPacket): Uint8Array {
    return sealFrame(this.session!, encodeRelayPacket(packet));
  }

  /** One frame carrying arbitrary plaintext (to send what the encoder would refuse). */
  rawFrame(plain: Uint8Array): Uint8Array {
    return sealFrame(this.session!, plain);
  }
}

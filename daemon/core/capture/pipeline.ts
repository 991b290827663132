/**
 * The decoder's whole pipeline, sans-I/O: capture records in (packets and secrets, from
 * CaptureReader), Tox records and notices out, in capture order.
 *
 *   CapturePacket ─ decodeLinkFrame ─▶ TcpSegment ─ TcpReassembler ─▶ StreamEvent
 *   StreamEvent ─ ToxStreamDecoder ─▶ ToxOutput
 *
 * Used by `deno task decode`, the bench and the tests alike.
 */
import { KeyStore, parseKeylog, SECRETS_TYPE_TOX_KEYLOG } from "./keylog.ts";
import { decodeLinkFrame } from "./link.ts";
import { TcpReassembler } from "./tcp_reassembly.ts";
import { DEFAULT_RELAY_PORTS, ToxStreamDecoder } from "./tox_stream.ts";
import type { ToxOutput, ToxRecord } from "./tox_records.ts";
import type { CapturePacket, CaptureSecrets, StreamInfo, Timestamp } from "./types.ts";

export interface PipelineOptions {
  readonly keys: KeyStore;
  /** Ports besides the defaults where relays listen. */
  readonly relayPorts?: readonly number[];
}

export interface PipelineTotals {
  readonly packets: number;
  readonly bytes: number;
  readonly tcpStreams: number;
  readonly notTcp: number;
  readonly linkErrors: number;
  readonly first: Timestamp | null;
  readonly last: Timestamp | null;
}

export class DecodePipeline {
  readonly #keys: KeyStore;
  readonly #reassembler = new TcpReassembler();
  readonly #tox: ToxStreamDecoder;
  readonly #streams = new Map<number, StreamInfo>();
  #out: ToxOutput[] = [];
  #packets = 0;
  #bytes = 0;
  #notTcp = 0;
  #linkErrors = 0;
  readonly #linkReasons = new Map<string, number>();
  #first: Timestamp | null = null;
  #last: Timestamp | null = null;
  #lastFrame = 0;
  #toxStreams = new Set<number>();
  readonly #keyProblems: string[] = [];

  constructor(opts: PipelineOptions) {
    this.#keys = opts.keys;
    this.#tox = new ToxStreamDecoder({
      keys: opts.keys,
      relayPorts: [...DEFAULT_RELAY_PORTS, ...(opts.relayPorts ?? [])],
    });
  }

  get firstTimestamp(): Timestamp | null {
    return this.#first;
  }

  /** Streams that turned out to be Tox relay streams so far. */
  get toxStreams(): number {
    return this.#toxStreams.size;
  }

  stream(id: number): StreamInfo | undefined {
    return this.#streams.get(id);
  }

  packet(p: CapturePacket): void {
    this.#packets++;
    this.#bytes += p.originalLength;
    this.#first ??= p.ts;
    this.#last = p.ts;
    this.#lastFrame = p.index;
    const r = decodeLinkFrame(p.linkType, p.data);
    if (!r.ok) {
      if (r.notTcp) this.#notTcp++;
      else {
        this.#linkErrors++;
        this.#linkReasons.set(r.reason, (this.#linkReasons.get(r.reason) ?? 0) + 1);
      }
      return;
    }
    this.#reassembler.push(r.segment, p.ts, p.index);
    this.#drainStreams();
  }

  /** Keys that travel inside the capture (pcapng DSB); other secret types are not ours. */
  secrets(s: CaptureSecrets): void {
    if (s.secretsType !== SECRETS_TYPE_TOX_KEYLOG) return;
    const parsed = parseKeylog(new TextDecoder().decode(s.data));
    this.#keys.addAll(parsed.entries);
    for (const p of parsed.problems) {
      this.#keyProblems.push(`block at byte ${s.fileOffset}, line ${p.line}: ${p.message}`);
    }
  }

  /** End of the capture: what is still missing becomes gaps, open streams are closed. */
  finish(): void {
    this.#reassembler.finish(this.#last ?? undefined);
    this.#drainStreams();
  }

  #drainStreams(): void {
    for (const ev of this.#reassembler.takeEvents()) {
      if (ev.kind === "open") this.#streams.set(ev.stream.id, ev.stream);
      const outs = this.#tox.push(ev);
      for (const o of outs) {
        if (o.kind === "record") this.#toxStreams.add(o.record.stream);
        this.#out.push(o);
      }
    }
  }

  take(): ToxOutput[] {
    const o = this.#out;
    this.#out = [];
    return o;
  }

  /** The real (Tox ID) keys of the net_crypto session a record belongs to, for `peer=`. */
  sessionKeysOf(r: ToxRecord): string[] {
    return this.#tox.sessionKeysOf(r);
  }

  keyProblems(): readonly string[] {
    return this.#keyProblems;
  }

  /** Why frames were not TCP/IP we could read, by reason (IP fragments, bad headers...). */
  linkProblems(): ReadonlyMap<string, number> {
    return this.#linkReasons;
  }

  totals(): PipelineTotals {
    return {
      packets: this.#packets,
      bytes: this.#bytes,
      tcpStreams: this.#streams.size,
      notTcp: this.#notTcp,
      linkErrors: this.#linkErrors,
      first: this.#first,
      last: this.#last,
    };
  }

  get lastFrame(): number {
    return this.#lastFrame;
  }
}

/**
 * A capture file read from disk in chunks through the pure CaptureReader: the one place the
 * decoder touches the file system.
 */
import { CaptureReader } from "../core/capture/pcap_reader.ts";
import type { CaptureRecord } from "../core/capture/types.ts";

export interface ReadCaptureOptions {
  /** Bytes per read, default 1 MiB. */
  readonly chunkSize?: number;
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void;
}

/**
 * The records of a capture file, read in chunks. The file is closed when the records end,
 * when the consumer stops early, or when reading fails (the error is thrown on).
 */
export async function* readCaptureFile(
  path: string,
  opts: ReadCaptureOptions = {},
): AsyncGenerator<CaptureRecord> {
  const chunkSize = Math.max(1, Math.floor(opts.chunkSize ?? 1024 * 1024));
  const file = await Deno.open(path, { read: true });
  try {
    const total = (await file.stat()).size;
    const reader = new CaptureReader();
    const chunk = new Uint8Array(chunkSize);
    let read = 0;
    for (;;) {
      const n = await file.read(chunk);
      if (n === null) reader.end();
      else {
        reader.push(chunk.subarray(0, n));
        read += n;
        opts.onProgress?.(read, total);
      }
      for (let r = reader.next(); r !== null; r = reader.next()) {
        yield r;
        if (r.kind === "error") return;
      }
      if (n === null) return;
    }
  } finally {
    file.close();
  }
}

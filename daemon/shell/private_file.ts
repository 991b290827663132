/**
 * Files only we may read (keys, friends), written so that a crash leaves either the old
 * file or the whole new one: create a fresh temp file, fsync it, move it into place, fsync
 * the directory.
 */

/** createNew (never follows or reuses someone else's file), 0600 whatever the umask, fsync'd. */
export async function writeNewPrivateFile(path: string, data: Uint8Array): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  try {
    // The open mode is filtered by the umask.
    if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
    for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
    await file.sync();
  } finally {
    file.close();
  }
}

/** Make a new directory entry durable. Not every OS/filesystem can fsync a directory. */
export async function syncDirectory(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Best effort: the file's own data was already synced.
  }
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") || dir.endsWith("\\") ? dir + name : `${dir}/${name}`;
}

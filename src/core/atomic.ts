import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Atomic file writes: the data goes to a temporary file in the destination's directory
 * (same filesystem, so rename is atomic), is fsynced, renamed over the destination, and
 * the directory is fsynced. A reader sees the old file or the whole new one, never a
 * part; a killed process leaves at most a `.tmp-*` file that `cleanTemporary` or fsck
 * removes, never a half-written destination.
 */
export function temporaryPathFor(destination: string): string {
  return join(
    dirname(destination),
    `.tmp-${basename(destination)}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFileAtomic(
  destination: string,
  data: string | Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  await mkdir(dirname(destination), { recursive: true });
  const tmp = temporaryPathFor(destination);
  try {
    const handle = await open(tmp, 'wx', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, destination);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  await fsyncDirectory(dirname(destination));
}

/** Moves a finished temporary file into place atomically and makes the rename durable. */
export async function commitTemporary(tmp: string, destination: string): Promise<void> {
  await mkdir(dirname(destination), { recursive: true });
  await rename(tmp, destination);
  await fsyncDirectory(dirname(destination));
}

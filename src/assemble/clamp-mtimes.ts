import type { Dirent } from 'node:fs';
import { lstat, lutimes, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';

/**
 * SOURCE_DATE_EPOCH applied to a tree: no entry may claim to be newer than the epoch.
 *
 * Lifecycle: the last step of assembly, after cleanup and before the tree is committed as
 * a layer. Every entry (files, directories, symlinks themselves — `lutimes`, never
 * following — device nodes, FIFOs) whose mtime is later than `epoch` gets mtime and atime
 * set to `epoch`; older entries keep the time their package gave them, as mmdebstrap's
 * output does. Directory times are set after their children are done, although changing a
 * child's times never touches its directory's mtime. Nothing is followed out of the tree:
 * the walk only descends into real directories.
 */
export interface ClampResult {
  /** Entries visited, the root included. */
  entries: number;
  /** Entries whose times were changed. */
  clamped: number;
}

export async function clampMtimes(root: string, epoch: number): Promise<ClampResult> {
  const limit = pLimit(32);
  const result: ClampResult = { entries: 0, clamped: 0 };
  const clamp = async (path: string): Promise<void> => {
    const stat = await lstat(path, { bigint: true });
    result.entries += 1;
    if (stat.mtimeNs > BigInt(epoch) * 1_000_000_000n) {
      await lutimes(path, epoch, epoch);
      result.clamped += 1;
    }
  };
  const walk = async (dir: string): Promise<void> => {
    const entries: Dirent[] = await limit(() => readdir(dir, { withFileTypes: true }));
    await Promise.all(
      entries.map((entry) => {
        const path = join(dir, entry.name);
        return entry.isDirectory() ? walk(path) : limit(() => clamp(path));
      }),
    );
    await limit(() => clamp(dir));
  };
  await walk(root);
  return result;
}

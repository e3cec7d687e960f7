import { spawn } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { RootcastError } from '../core/errors.js';

/**
 * The overlay a child template is assembled in: the parent's unpacked layers as read-only
 * lower directories, a fresh upper directory that collects every change (the child's layer,
 * in overlayfs' own format: whiteouts are 0:0 character devices, replaced directories carry
 * `trusted.overlay.opaque`), and the merged view as the build's tree.
 *
 * Options are fixed so the upper directory is a plain, complete layer: `metacopy=off` (every
 * copied-up file has its data in the upper, not only its metadata), `redirect_dir=off` (a
 * renamed directory is copied, not recorded as a redirect OCI cannot express), `index=off`
 * and `xino=off` (no inode bookkeeping outside the upper).
 *
 * Lifecycle: `mountOverlay` before assembly, `unmountOverlay` in a `finally` before the upper
 * is committed. The mount lives in the host's mount namespace (the unpacker's worker threads
 * and the sandbox must both see it), so a process killed in between leaves it mounted:
 * `unmountStale` (called by `cleanStore`) detaches mounts under abandoned staging directories.
 */
export interface OverlayPaths {
  /** Lower directories, top-most first (the parent's top layer first, its base last). */
  lowers: readonly string[];
  upper: string;
  work: string;
  target: string;
}

function run(argv: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

export async function mountOverlay(paths: OverlayPaths): Promise<void> {
  for (const dir of paths.lowers) {
    if (/[:,\\]/.test(dir)) {
      throw new RootcastError({
        code: 'OVERLAY_MOUNT_FAILED',
        message: `cannot use ${dir} as an overlay lower directory: its path contains ':', ',' or '\\'`,
        hint: 'Move the store to a path without those characters (--store).',
      });
    }
  }
  const options = [
    `lowerdir=${paths.lowers.join(':')}`,
    `upperdir=${paths.upper}`,
    `workdir=${paths.work}`,
    'index=off',
    'metacopy=off',
    'redirect_dir=off',
    'xino=off',
  ].join(',');
  const result = await run(['mount', '-t', 'overlay', 'overlay', '-o', options, paths.target]).catch(
    (error: unknown) => ({ code: -1, stderr: String(error) }),
  );
  if (result.code !== 0) {
    throw new RootcastError({
      code: 'OVERLAY_MOUNT_FAILED',
      message: `cannot mount the overlay for a child template: ${result.stderr.trim() || `mount exited ${result.code}`}`,
      hint: 'Layered builds need root and overlayfs (modprobe overlay); the store must be on a filesystem overlayfs accepts as upper (ext4, xfs, btrfs).',
    });
  }
}

/** Unmounts `target`, detaching it lazily if it is busy; a target that is not mounted is fine. */
export async function unmountOverlay(target: string): Promise<void> {
  if (!(await mountPoints()).includes(target)) return;
  const result = await run(['umount', target]);
  if (result.code === 0) return;
  const lazy = await run(['umount', '-l', target]);
  if (lazy.code !== 0) {
    throw new RootcastError({
      code: 'OVERLAY_UNMOUNT_FAILED',
      message: `cannot unmount ${target}: ${lazy.stderr.trim() || result.stderr.trim()}`,
      hint: 'Find what still uses it (fuser -vm PATH), stop it, and run the build again.',
    });
  }
}

/** Mount points of this mount namespace, decoded from /proc/self/mountinfo. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) =>
      (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, oct: string) =>
        String.fromCharCode(Number.parseInt(oct, 8)),
      ),
    );
}

/**
 * Unmounts every mount point at or below `dir` (deepest first), before the directory is removed.
 * /proc/self/mountinfo names mount points by their real paths, so `dir` is compared by its
 * realpath (a store reached through a symlink would otherwise match nothing). A caller that
 * must not follow a symlink at `dir` itself checks it first (rm does).
 */
export async function unmountBelow(path: string): Promise<string[]> {
  const dir = await realpath(path).catch(() => resolve(path));
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const below = (await mountPoints()).filter((p) => p === dir || p.startsWith(prefix));
  below.sort((a, b) => b.length - a.length);
  for (const point of below) await unmountOverlay(point);
  return below;
}

import { spawnSync } from 'node:child_process';
import { lstatSync, type Stats } from 'node:fs';
import { hasNativeCalls, nativeCalls } from '../assemble/native.js';

/**
 * Reading unpacked layers in overlayfs' own format (docs/layers.md): a whiteout is a 0:0
 * character device, an opaque directory carries `trusted.overlay.opaque=y`. Shared by the
 * copy driver's layer merge and the clone-time customization that reads through layers.
 */
const OPAQUE = 'trusted.overlay.opaque';

/** lstat, or undefined when the path (or a parent that is not a directory) does not exist. */
export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw error;
  }
}

export function isWhiteout(stats: Stats): boolean {
  return stats.isCharacterDevice() && stats.rdev === 0;
}

/** Whether `path` is an opaque directory; through getfattr when the native addon is not built. */
export function isOpaque(path: string): boolean {
  if (hasNativeCalls()) {
    try {
      return nativeCalls().lgetxattr(path, OPAQUE).toString() === 'y';
    } catch {
      return false;
    }
  }
  const out = spawnSync('getfattr', ['--only-values', '-h', '-n', OPAQUE, path], { encoding: 'utf8' });
  return out.status === 0 && out.stdout === 'y';
}

import { constants } from 'node:fs';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RecipeSource } from '../recipe/types.js';
import { nativeCalls } from './native.js';

/**
 * What a tree holds before the first package is unpacked, as mmdebstrap lays it out (its
 * `run_setup`): apt's and dpkg's directories, an unconfigured `/etc/fstab`, the minimal
 * `/dev` (so the tree is usable as a container root without a devtmpfs), and apt's sources
 * so the finished system can `apt-get update`. Matching mmdebstrap here keeps the
 * file-by-file comparison short. Nothing is taken from the host (no resolv.conf, no
 * hostname): those would make the output depend on the machine.
 */
const DIRECTORIES = [
  '/etc/apt/apt.conf.d',
  '/etc/apt/sources.list.d',
  '/etc/apt/preferences.d',
  '/var/cache/apt',
  '/var/lib/apt/lists/partial',
  '/tmp',
  '/var/lib/dpkg',
  '/etc/dpkg/dpkg.cfg.d',
  '/var/log/apt',
  '/var/lib/dpkg/triggers',
  '/var/lib/dpkg/info',
  '/var/lib/dpkg/alternatives',
  '/var/lib/dpkg/updates',
];

type DevEntry =
  | { name: string; kind: 'dir'; mode: number }
  | { name: string; kind: 'char'; mode: number; major: number; minor: number }
  | { name: string; kind: 'symlink'; target: string };

/** mmdebstrap's `@devfiles`. */
const DEV_ENTRIES: DevEntry[] = [
  { name: 'console', kind: 'char', mode: 0o666, major: 5, minor: 1 },
  { name: 'fd', kind: 'symlink', target: '/proc/self/fd' },
  { name: 'full', kind: 'char', mode: 0o666, major: 1, minor: 7 },
  { name: 'null', kind: 'char', mode: 0o666, major: 1, minor: 3 },
  { name: 'ptmx', kind: 'char', mode: 0o666, major: 5, minor: 2 },
  { name: 'pts', kind: 'dir', mode: 0o755 },
  { name: 'random', kind: 'char', mode: 0o666, major: 1, minor: 8 },
  { name: 'shm', kind: 'dir', mode: 0o755 },
  { name: 'stderr', kind: 'symlink', target: '/proc/self/fd/2' },
  { name: 'stdin', kind: 'symlink', target: '/proc/self/fd/0' },
  { name: 'stdout', kind: 'symlink', target: '/proc/self/fd/1' },
  { name: 'tty', kind: 'char', mode: 0o666, major: 5, minor: 0 },
  { name: 'urandom', kind: 'char', mode: 0o666, major: 1, minor: 9 },
  { name: 'zero', kind: 'char', mode: 0o666, major: 1, minor: 5 },
];

/** One-line apt sources, one line per suite, in recipe order (as mmdebstrap writes them). */
export function sourcesList(sources: readonly Pick<RecipeSource, 'uri' | 'suites' | 'components'>[]): string {
  return sources
    .flatMap((s) => s.suites.map((suite) => `deb ${s.uri} ${suite} ${s.components.join(' ')}\n`))
    .join('');
}

/** Lays out an empty tree. `root` must exist and be empty; it is owned by the caller's build. */
export async function setupTreeSkeleton(
  root: string,
  sources: readonly Pick<RecipeSource, 'uri' | 'suites' | 'components'>[],
): Promise<void> {
  for (const dir of DIRECTORIES) await mkdir(join(root, dir), { recursive: true, mode: 0o755 });
  await writeFile(join(root, 'etc/fstab'), '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n', { mode: 0o644 });
  await writeFile(join(root, 'etc/apt/sources.list'), sourcesList(sources), { mode: 0o644 });
  const dev = join(root, 'dev');
  await mkdir(dev, { mode: 0o755 });
  const native = nativeCalls();
  for (const entry of DEV_ENTRIES) {
    const path = join(dev, entry.name);
    if (entry.kind === 'dir') await mkdir(path, { mode: entry.mode });
    else if (entry.kind === 'symlink') await symlink(entry.target, path);
    else {
      native.mknod(path, constants.S_IFCHR | entry.mode, entry.major, entry.minor);
      // mknod honours the umask; the mode must be exactly mmdebstrap's.
      await chmod(path, entry.mode);
    }
  }
}

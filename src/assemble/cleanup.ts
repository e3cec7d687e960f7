import { lstat, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveInRoot } from './resolve-in-root.js';

/**
 * The cleanup that makes an assembled tree reproducible, as mmdebstrap's `run_cleanup`
 * does it (cleanup/apt, cleanup/reproducible, cleanup/run, cleanup/tmp), with plain file
 * operations instead of running apt.
 *
 * Lifecycle: once per build, after recipe steps and before `clampMtimes`. It only removes
 * what is either host- or time-dependent (logs, caches, lists, ids) or leftover runtime
 * state; it never touches what packages installed as part of the system. Everything is
 * resolved inside the root, so a symlink in the tree cannot redirect a removal to the host.
 *
 * Differences from mmdebstrap, on purpose: the host's `/etc/resolv.conf` and
 * `/etc/hostname` are never copied in (the sandbox binds the resolver only while a step
 * has network), so there is nothing of the host's to remove; and apt's own cleanup
 * (`apt-get update` with no sources, `apt-get clean`) is done by removing the same files.
 */

/** Files mmdebstrap removes "to make output reproducible" (cleanup/reproducible). */
export const VOLATILE_FILES = [
  '/var/log/dpkg.log',
  '/var/log/apt/history.log',
  '/var/log/apt/term.log',
  '/var/log/alternatives.log',
  '/var/cache/ldconfig/aux-cache',
  '/var/log/apt/eipp.log.xz',
  '/var/lib/dbus/machine-id',
] as const;

/** What `cleanupTree` removed or reset, relative to the root, for reports and tests. */
export interface CleanupResult {
  removed: string[];
  emptied: string[];
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() === true;
}

/** Removes the entries of directory `dir` (in-root path) for which `keep` is false. */
async function clearDirectory(
  root: string,
  dir: string,
  keep: (name: string) => boolean,
  out: CleanupResult,
): Promise<void> {
  const host = resolveInRoot(root, dir, undefined, { followFinal: true });
  if (!(await isDirectory(host))) return;
  for (const name of (await readdir(host)).sort()) {
    if (keep(name)) continue;
    await rm(join(host, name), { recursive: true, force: true });
    out.removed.push(`${dir}/${name}`);
  }
}

async function removeFile(root: string, path: string, out: CleanupResult): Promise<void> {
  const host = resolveInRoot(root, path);
  if (!(await exists(host))) return;
  await rm(host, { force: true });
  out.removed.push(path);
}

/**
 * Runs the cleanup on `root`. Idempotent: a second run removes nothing.
 *
 * - apt lists: every file under /var/lib/apt/lists but `lock` and `partial/` (itself
 *   emptied), and `auxfiles/`, as `apt-get update` with no sources leaves it;
 * - apt cache: /var/cache/apt/*.bin, archives/*.deb and archives/partial/*, as `apt-get clean`;
 * - the volatile files of `VOLATILE_FILES`; /etc/machine-id, when present, becomes empty
 *   (machine-id(5): an image ships it empty so that boot generates one);
 * - SSH host keys (/etc/ssh/ssh_host_*_key[.pub]): clones generate their own;
 * - /run: everything but `lock` (/var/lock points there); /tmp: everything.
 */
export async function cleanupTree(root: string): Promise<CleanupResult> {
  const out: CleanupResult = { removed: [], emptied: [] };
  await clearDirectory(root, '/var/lib/apt/lists', (n) => n === 'lock' || n === 'partial', out);
  await clearDirectory(root, '/var/lib/apt/lists/partial', () => false, out);
  await clearDirectory(root, '/var/cache/apt', (n) => !n.endsWith('.bin'), out);
  await clearDirectory(root, '/var/cache/apt/archives', (n) => !n.endsWith('.deb'), out);
  await clearDirectory(root, '/var/cache/apt/archives/partial', () => false, out);
  for (const file of VOLATILE_FILES) await removeFile(root, file, out);
  const machineId = resolveInRoot(root, '/etc/machine-id');
  const stat = await lstat(machineId).catch(() => undefined);
  // Already empty (a child layer over a cleaned parent): left alone, so it is not copied up.
  if (stat && !stat.isDirectory() && !(stat.isFile() && stat.size === 0)) {
    await rm(machineId, { force: true });
    await writeFile(machineId, '', { mode: 0o644 });
    out.emptied.push('/etc/machine-id');
  }
  // Host keys are secrets and random: each container gets its own when it is cloned.
  await clearDirectory(root, '/etc/ssh', (n) => !/^ssh_host_.*_key(\.pub)?$/.test(n), out);
  await clearDirectory(root, '/run', (n) => n === 'lock', out);
  await clearDirectory(root, '/tmp', () => false, out);
  return out;
}

import { lstatSync, readdirSync, renameSync, statfsSync } from 'node:fs';
import { mkdir, statfs } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { sha256Hex } from '../core/digest.js';
import { ownerPidOf, temporaryName } from '../store/paths.js';
import type { CloneDriver, CloneSource, MadeContainer, MountPlan } from './driver.js';
import { runTool } from './exec.js';
import { mergeLayers } from './layer-merge.js';
import { runtimeLayout } from './paths.js';
import { processStart } from './record.js';

/**
 * `btrfs`: when the store is on btrfs, each layer stack is merged once into a read-only base
 * subvolume, `<store>/runtime/btrfs/<key>/` (key: sha256 of the stack's diff_id hexes), and a
 * clone is a writable snapshot of it, `rootfs/`: constant time, whatever the template's size,
 * and a plain tree for `run`. Layer directories are ordinary directories (the store's format
 * does not depend on the filesystem), so the first clone of a template pays one reflink merge.
 *
 * Bases are made under a temporary name and renamed into place whole; `rm` deletes a base
 * when the last container using it goes (`pruneBtrfsBases`).
 */
const BTRFS_MAGIC = 0x9123683e;
/** The inode number of every btrfs subvolume's root directory. */
const SUBVOLUME_ROOT_INO = 256;

const failed = { code: 'CLONE_BTRFS_FAILED', hint: 'Check that the store is on btrfs and has free space.' };

/**
 * A btrfs subvolume's root: a real directory (not a symlink) with inode 256 on btrfs. The
 * inode alone is not enough: any other filesystem may number a plain directory 256.
 */
function isSubvolume(path: string): boolean {
  const stats = lstatSync(path, { throwIfNoEntry: false });
  if (stats?.isDirectory() !== true || stats.ino !== SUBVOLUME_ROOT_INO) return false;
  try {
    return statfsSync(path).type === BTRFS_MAGIC;
  } catch {
    return false;
  }
}

async function deleteSubvolume(path: string): Promise<void> {
  if (isSubvolume(path)) {
    await runTool(['btrfs', 'property', 'set', '-ts', path, 'ro', 'false'], { check: failed });
    await runTool(['btrfs', 'subvolume', 'delete', path], { check: failed });
  }
}

export function baseKey(layers: readonly string[]): string {
  return sha256Hex(layers.map((l) => basename(l)).join('\n'));
}

/** The base subvolume for `layers`, made when missing. */
async function ensureBase(store: string, layers: readonly string[]): Promise<{ key: string; path: string }> {
  const key = baseKey(layers);
  const path = runtimeLayout.btrfsBase(store, key);
  if (isSubvolume(path)) return { key, path };
  const bases = runtimeLayout.btrfsBases(store);
  await mkdir(bases, { recursive: true });
  for (const name of readdirSync(bases)) {
    const pid = ownerPidOf(name);
    if (pid !== undefined && processStart(pid) === undefined) await deleteSubvolume(join(bases, name));
  }
  const tmp = join(bases, temporaryName());
  await runTool(['btrfs', 'subvolume', 'create', tmp], { check: failed });
  try {
    await mergeLayers(layers, tmp, 'auto');
    await runTool(['btrfs', 'property', 'set', '-ts', tmp, 'ro', 'true'], { check: failed });
    renameSync(tmp, path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    await deleteSubvolume(tmp);
    // Another clone made the same base first.
    if ((code !== 'EEXIST' && code !== 'ENOTEMPTY') || !isSubvolume(path)) throw error;
  }
  return { key, path };
}

export const btrfsDriver: CloneDriver = {
  name: 'btrfs',

  async probe(scratch) {
    const fs = await statfs(scratch).catch(() => undefined);
    if (fs?.type !== BTRFS_MAGIC) return false;
    const sv = join(scratch, 'sv');
    const out = await runTool(['btrfs', 'subvolume', 'create', sv]).catch(() => undefined);
    if (out?.code !== 0) return false;
    await runTool(['btrfs', 'subvolume', 'delete', sv]).catch(() => undefined);
    return true;
  },

  async create(source: CloneSource, dir: string): Promise<MadeContainer> {
    const base = await ensureBase(source.store, source.layers);
    const rootfs = runtimeLayout.rootfs(dir);
    await runTool(['btrfs', 'subvolume', 'snapshot', base.path, rootfs], { check: failed });
    return { upper: rootfs, lowers: [], base: base.key };
  },

  mountPlan(_source: CloneSource, dir: string): MountPlan {
    return { kind: 'tree', rootfs: runtimeLayout.rootfs(dir) };
  },

  async remove(dir) {
    await deleteSubvolume(runtimeLayout.rootfs(dir));
  },
};

/** Deletes the base subvolumes no container uses any more (`inUse`: their keys). */
export async function pruneBtrfsBases(store: string, inUse: ReadonlySet<string>): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(runtimeLayout.btrfsBases(store));
  } catch {
    return;
  }
  for (const name of names) {
    if (/^[0-9a-f]{64}$/.test(name) && !inUse.has(name))
      await deleteSubvolume(runtimeLayout.btrfsBase(store, name));
  }
}

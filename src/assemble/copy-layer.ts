import {
  type BigIntStats,
  chmodSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
} from 'node:fs';
import { join } from 'node:path';
import { flattenLayers } from '../export/flatten.js';
import { createLayerUnpacker } from '../registry/layer-unpack.js';
import { MEDIA_TYPE_LAYER_TAR } from '../store/oci.js';
import { nativeCalls } from './native.js';

/**
 * Assembling a child layer without overlayfs: the parent's merged tree is copied into the
 * staging directory, the build runs there, and the changes are then collected into an
 * upper directory in overlayfs' own format — what the overlay would have left — so the rest
 * of the pipeline (commit, whiteouts in the tar, unpacked layers) is the same.
 *
 * Changes are found by inode and ctime: every entry of the copied tree is recorded before the
 * build (`snapshotTree`); afterwards an entry is unchanged when its path names the same inode
 * with the same ctime (the kernel moves ctime on every write, chmod, chown, link count or
 * rename), so no content is read twice. Changed and new entries go to the upper directory
 * (files as hardlinks of the staging tree's inodes: same filesystem, nothing copied again);
 * their parent directories come along with their metadata, as an overlay's copy-up does; a
 * path that is gone becomes a whiteout (character device 0:0); a directory that was removed
 * and made again (another inode) becomes opaque (`trusted.overlay.opaque=y`).
 *
 * Lifecycle: `materializeParent` into an empty directory, `snapshotTree` of it, the build,
 * then `collectUpper(tree, snapshot, upper)` once into an empty directory. The staging tree is
 * consumed: the upper directory shares its inodes, so the tree is removed, never reused.
 */
export interface TreeSnapshot {
  /** Relative path → `ino:ctimeNs`, and whether it was a directory. */
  entries: Map<string, { id: string; ino: bigint; directory: boolean }>;
}

/** Far in the future: the copy keeps every mtime as it is (the commit clamps the layer). */
const NO_CLAMP = 2 ** 40;

export async function materializeParent(layerDirs: readonly string[], target: string): Promise<void> {
  const { stream } = flattenLayers(layerDirs, { sourceDateEpoch: NO_CLAMP });
  const unpacker = createLayerUnpacker(target, MEDIA_TYPE_LAYER_TAR, 'the parent template');
  try {
    for await (const chunk of stream) await unpacker.write(chunk);
    await unpacker.finish();
  } catch (error) {
    unpacker.abort();
    throw error;
  }
}

function walk(root: string, rel: string, visit: (rel: string, st: BigIntStats) => void): void {
  const dir = rel === '' ? root : join(root, rel);
  for (const name of readdirSync(dir).sort()) {
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const st = lstatSync(join(root, childRel), { bigint: true });
    visit(childRel, st);
    if (st.isDirectory()) walk(root, childRel, visit);
  }
}

export function snapshotTree(root: string): TreeSnapshot {
  const entries: TreeSnapshot['entries'] = new Map();
  walk(root, '', (rel, st) => {
    entries.set(rel, { id: `${st.ino}:${st.ctimeNs}`, ino: st.ino, directory: st.isDirectory() });
  });
  return { entries };
}

export interface UpperStats {
  changed: number;
  removed: number;
}

export function collectUpper(tree: string, before: TreeSnapshot, upper: string): UpperStats {
  const native = nativeCalls();
  const stats: UpperStats = { changed: 0, removed: 0 };
  const made = new Set<string>(['']);
  /** Makes `rel` (a directory of the tree) in the upper directory with its metadata. */
  const ensureDir = (rel: string, opaque = false): void => {
    if (made.has(rel)) return;
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    ensureDir(parent);
    const st = lstatSync(join(tree, rel), { bigint: true });
    const target = join(upper, rel);
    mkdirSync(target);
    copyMetadata(target, st);
    copyXattrs(join(tree, rel), target);
    if (opaque) native.lsetxattr(target, 'trusted.overlay.opaque', Buffer.from('y'));
    made.add(rel);
  };
  const opaqueDirs = new Set<string>();
  walk(tree, '', (rel, st) => {
    const was = before.entries.get(rel);
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    const underOpaque = parent !== '' && opaqueDirs.has(parent);
    if (!underOpaque && was !== undefined && was.id === `${st.ino}:${st.ctimeNs}`) return;
    stats.changed++;
    if (st.isDirectory()) {
      // A directory that replaced another (new inode) hides everything the parent had there.
      const replaced = was?.directory === true && was.ino !== st.ino;
      if (replaced || underOpaque) opaqueDirs.add(rel);
      ensureDir(parent);
      if (!made.has(rel)) ensureDir(rel, replaced);
      return;
    }
    ensureDir(parent);
    linkSync(join(tree, rel), join(upper, rel));
  });
  for (const [rel] of before.entries) {
    if (lstatOrUndefined(join(tree, rel)) !== undefined) continue;
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    // Under a removed directory, its own whiteout covers everything below it.
    if (parent !== '' && lstatOrUndefined(join(tree, parent)) === undefined) continue;
    if (opaqueDirs.has(parent)) continue;
    ensureDir(parent);
    native.mknod(join(upper, rel), 0o020000, 0, 0);
    stats.removed++;
  }
  return stats;
}

function lstatOrUndefined(path: string): BigIntStats | undefined {
  return lstatSync(path, { bigint: true, throwIfNoEntry: false });
}

function copyMetadata(target: string, st: BigIntStats): void {
  lchownSync(target, Number(st.uid), Number(st.gid));
  chmodSync(target, Number(st.mode) & 0o7777);
  lutimesSync(target, Number(st.mtimeNs / 1_000_000n) / 1000, Number(st.mtimeNs / 1_000_000n) / 1000);
}

function copyXattrs(from: string, to: string): void {
  const native = nativeCalls();
  for (const name of native.llistxattr(from)) {
    if (name.startsWith('trusted.overlay.')) continue;
    native.lsetxattr(to, name, native.lgetxattr(from, name));
  }
}

import type { Stats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { type ContextOptions, createContext } from '../core/context.js';
import { sha256File } from '../core/digest.js';
import { RootcastError } from '../core/errors.js';
import type { LockPackage } from '../lock/lock-file.js';
import { readTemplate } from '../store/template-query.js';
import { openTemplateView, templatePackageChain } from '../store/template-view.js';

/**
 * `rootcast diff A B`: what changed from template A to template B, first as packages (from
 * the two locks), then as files (from the two unpacked layers).
 *
 * Files are compared by type, permission bits, owner, size, symlink target, device number and
 * content. Content is hashed only when it could be equal and is not known to be: two regular
 * files of equal size on different inodes (equal size and mtime prove nothing). A file that is
 * the same inode in both trees is equal without reading it. Modification times are not
 * compared (layers clamp them to SOURCE_DATE_EPOCH), nor extended attributes (not yet).
 *
 * The context's signal (Ctrl-C in the CLI) stops it between files with the signal's reason;
 * the overlay views are released as after any failure.
 */
export interface PackageChange {
  name: string;
  arch: string;
  /** Version in A (absent when added). */
  from?: string;
  /** Version in B (absent when removed). */
  to?: string;
}

export type FileType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface FileFacts {
  type: FileType;
  /** Permission bits with setuid/setgid/sticky, as octal text (`0755`). */
  mode: string;
  uid: number;
  gid: number;
  size: number;
  target?: string;
  sha256?: string;
}

export interface FileChange {
  /** Absolute path inside the tree (`/etc/hostname`). */
  path: string;
  /** Which facts differ: `type`, `mode`, `owner`, `size`, `content`, `target`, `device`. */
  changed: string[];
  from: FileFacts;
  to: FileFacts;
}

export interface TemplateDiff {
  from: { template: string; digest: string };
  to: { template: string; digest: string };
  packages: { added: PackageChange[]; removed: PackageChange[]; changed: PackageChange[] };
  files: {
    added: { path: string; facts: FileFacts }[];
    removed: { path: string; facts: FileFacts }[];
    changed: FileChange[];
  };
  /** How many file pairs were read and hashed to compare contents. */
  hashed: number;
}

interface Entry {
  stats: Stats;
  facts: FileFacts;
}

function typeOf(s: Stats): FileType {
  if (s.isFile()) return 'file';
  if (s.isDirectory()) return 'directory';
  if (s.isSymbolicLink()) return 'symlink';
  if (s.isCharacterDevice()) return 'char';
  if (s.isBlockDevice()) return 'block';
  if (s.isFIFO()) return 'fifo';
  return 'socket';
}

/** Every entry under `root` by absolute in-tree path, without following symlinks. */
async function walk(root: string, signal: AbortSignal | undefined): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      signal?.throwIfAborted();
      const path = join(dir, name);
      const relPath = `${rel}/${name}`;
      const stats = await lstat(path);
      const type = typeOf(stats);
      const facts: FileFacts = {
        type,
        mode: (stats.mode & 0o7777).toString(8).padStart(4, '0'),
        uid: stats.uid,
        gid: stats.gid,
        size: type === 'file' ? stats.size : 0,
        ...(type === 'symlink' ? { target: await readlink(path) } : {}),
      };
      out.set(relPath, { stats, facts });
      if (type === 'directory') await visit(path, relPath);
    }
  };
  await visit(root, '');
  return out;
}

/** Pure: the package changes between two package lists. */
export function diffPackages(
  a: { name: string; arch: string; version: string; sha256: string }[],
  b: { name: string; arch: string; version: string; sha256: string }[],
): TemplateDiff['packages'] {
  const key = (p: { name: string; arch: string }) => `${p.name}:${p.arch}`;
  const mapA = new Map(a.map((p) => [key(p), p]));
  const mapB = new Map(b.map((p) => [key(p), p]));
  const added: PackageChange[] = [];
  const removed: PackageChange[] = [];
  const changed: PackageChange[] = [];
  for (const [k, p] of mapA) {
    const q = mapB.get(k);
    if (!q) removed.push({ name: p.name, arch: p.arch, from: p.version });
    else if (q.version !== p.version || q.sha256 !== p.sha256)
      changed.push({ name: p.name, arch: p.arch, from: p.version, to: q.version });
  }
  for (const [k, q] of mapB) if (!mapA.has(k)) added.push({ name: q.name, arch: q.arch, to: q.version });
  const byName = (x: PackageChange, y: PackageChange) => cmp(`${x.name}:${x.arch}`, `${y.name}:${y.arch}`);
  return { added: added.sort(byName), removed: removed.sort(byName), changed: changed.sort(byName) };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Pure: which facts differ between two entries, content aside. */
export function metadataChanges(a: FileFacts, b: FileFacts, rdevA = 0, rdevB = 0): string[] {
  const changed: string[] = [];
  if (a.type !== b.type) return ['type'];
  if (a.mode !== b.mode) changed.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) changed.push('owner');
  if (a.size !== b.size) changed.push('size', 'content');
  if (a.target !== b.target) changed.push('target');
  if ((a.type === 'char' || a.type === 'block') && rdevA !== rdevB) changed.push('device');
  return changed;
}

async function diffTrees(
  rootA: string,
  rootB: string,
  signal: AbortSignal | undefined,
): Promise<{ files: TemplateDiff['files']; hashed: number }> {
  const [treeA, treeB] = await Promise.all([walk(rootA, signal), walk(rootB, signal)]);
  const files: TemplateDiff['files'] = { added: [], removed: [], changed: [] };
  const toHash: { path: string; a: Entry; b: Entry; changed: string[] }[] = [];
  for (const [path, a] of treeA) {
    const b = treeB.get(path);
    if (!b) {
      files.removed.push({ path, facts: a.facts });
      continue;
    }
    const changed = metadataChanges(a.facts, b.facts, a.stats.rdev, b.stats.rdev);
    const sameInode = a.stats.dev === b.stats.dev && a.stats.ino === b.stats.ino;
    if (a.facts.type === 'file' && !changed.includes('content') && !changed.includes('type') && !sameInode) {
      toHash.push({ path, a, b, changed });
    } else if (changed.length > 0) {
      files.changed.push({ path, changed, from: a.facts, to: b.facts });
    }
  }
  for (const [path, b] of treeB) if (!treeA.has(path)) files.added.push({ path, facts: b.facts });
  const limit = pLimit(8);
  // Settled, not Promise.all: no file may still be open when the caller releases the views.
  const settled = await Promise.allSettled(
    toHash.map((item) =>
      limit(async () => {
        signal?.throwIfAborted();
        const [ha, hb] = await Promise.all([
          sha256File(join(rootA, item.path)),
          sha256File(join(rootB, item.path)),
        ]);
        const changed = ha.hex === hb.hex ? item.changed : [...item.changed, 'content'];
        if (changed.length === 0) return;
        files.changed.push({
          path: item.path,
          changed,
          from: { ...item.a.facts, sha256: ha.hex },
          to: { ...item.b.facts, sha256: hb.hex },
        });
      }),
    ),
  );
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw signal?.aborted ? signal.reason : failed.reason;
  files.added.sort((x, y) => cmp(x.path, y.path));
  files.removed.sort((x, y) => cmp(x.path, y.path));
  files.changed.sort((x, y) => cmp(x.path, y.path));
  return { files, hashed: toHash.length };
}

async function templatePackages(store: string, ref: string): Promise<LockPackage[]> {
  let chain: LockPackage[] | undefined;
  try {
    chain = await templatePackageChain(store, ref);
  } catch (error) {
    throw new RootcastError({
      code: 'DIFF_LOCK_INVALID',
      message: `a lock stored with ${ref} (or one of its parents) is not a rootcast lock`,
      hint: 'Rebuild the template from its recipe with `rootcast build`.',
      details: { template: ref },
      cause: error,
    });
  }
  return chain ?? [];
}

/** Compares two templates (`name:version` or manifest digest). */
export async function diffTemplates(
  refA: string,
  refB: string,
  options: ContextOptions = {},
): Promise<TemplateDiff> {
  const { store, signal } = createContext(options);
  signal?.throwIfAborted();
  const [a, b] = await Promise.all([readTemplate(store, refA), readTemplate(store, refB)]);
  const [lockA, lockB] = await Promise.all([a, b].map((t) => templatePackages(store, t.manifestDigest)));
  // Layered templates are compared as their whole trees (read-only overlay views).
  signal?.throwIfAborted();
  const viewA = await openTemplateView(store, a);
  let diffed: Awaited<ReturnType<typeof diffTrees>>;
  try {
    signal?.throwIfAborted();
    const viewB = await openTemplateView(store, b);
    try {
      diffed = await diffTrees(viewA.root, viewB.root, signal);
    } finally {
      await viewB.release();
    }
  } finally {
    await viewA.release();
  }
  const { files, hashed } = diffed;
  return {
    from: { template: a.ref ?? refA, digest: a.manifestDigest },
    to: { template: b.ref ?? refB, digest: b.manifestDigest },
    packages: diffPackages(lockA ?? [], lockB ?? []),
    files,
    hashed,
  };
}

import { createHash } from 'node:crypto';
import { type BigIntStats, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { nativeCalls } from '../../src/assemble/native.js';
import { splitDevice } from '../../src/store/tar-writer.js';

/**
 * A file-by-file description of a whole tree, for comparing trees built by different tools
 * (rootcast and mmdebstrap). Paths are absolute inside the tree (`/` is the root itself,
 * `/etc/passwd`), and each entry records what the acceptance comparison looks at: type,
 * permission bits (with setuid/setgid/sticky), numeric owner and group, symlink target,
 * size and sha256 of regular files, device numbers, extended attributes (never following a
 * final symlink) and the hardlink count; plus the mtime, which is reported on its own.
 *
 * Reads only; the tree must not change while it is walked.
 */
export interface ManifestEntry {
  type: 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';
  /** Permission bits, `mode & 0o7777`. */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: `${size} ${sha256}`. */
  content?: string;
  /** Symlinks: the target, exactly as stored. */
  target?: string;
  /** Character and block devices: `major,minor`. */
  device?: string;
  /** Every extended attribute, `name=sha256 of the value`, sorted. */
  xattrs: string[];
  /** Links to the same inode (non-directories only: a directory's count is its subdirectories). */
  links?: number;
  /** Whole seconds. */
  mtime: number;
}

export type Manifest = Map<string, ManifestEntry>;

/** The properties of an entry that the comparison looks at, as reported in a difference. */
export type ManifestField = 'type' | 'mode' | 'owner' | 'target' | 'content' | 'device' | 'xattrs' | 'links';

/**
 * One path on which two manifests disagree: present in only one of them, or present in both
 * with the listed fields different (never `mtime`: see `mtimeDifferences`).
 */
export type ManifestDifference =
  | { path: string; kind: 'only-left' | 'only-right' }
  | { path: string; kind: 'differs'; fields: ManifestField[] };

function typeOf(stats: BigIntStats): ManifestEntry['type'] {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'chardev';
  if (stats.isBlockDevice()) return 'blockdev';
  if (stats.isFIFO()) return 'fifo';
  return 'socket';
}

function describe(path: string, stats: BigIntStats): ManifestEntry {
  const type = typeOf(stats);
  const native = nativeCalls();
  const xattrs = native
    .llistxattr(path)
    .sort()
    .map((name) => `${name}=${createHash('sha256').update(native.lgetxattr(path, name)).digest('hex')}`);
  const entry: ManifestEntry = {
    type,
    mode: Number(stats.mode & 0o7777n),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    xattrs,
    mtime: Number(stats.mtimeMs / 1000n),
  };
  if (type !== 'dir') entry.links = Number(stats.nlink);
  if (type === 'file') {
    const digest = createHash('sha256').update(readFileSync(path)).digest('hex');
    entry.content = `${stats.size} ${digest}`;
  } else if (type === 'symlink') {
    entry.target = readlinkSync(path);
  } else if (type === 'chardev' || type === 'blockdev') {
    const { major, minor } = splitDevice(stats.rdev);
    entry.device = `${major},${minor}`;
  }
  return entry;
}

/** Walks the tree under `root` (which itself becomes `/`), never following a symlink. */
export function treeManifest(root: string): Manifest {
  const manifest: Manifest = new Map();
  const visit = (host: string, inTree: string): void => {
    const stats = lstatSync(host, { bigint: true });
    const entry = describe(host, stats);
    manifest.set(inTree, entry);
    if (entry.type !== 'dir') return;
    for (const name of readdirSync(host).sort()) {
      visit(join(host, name), inTree === '/' ? `/${name}` : `${inTree}/${name}`);
    }
  };
  visit(root, '/');
  return manifest;
}

function fieldsDiffering(a: ManifestEntry, b: ManifestEntry): ManifestField[] {
  if (a.type !== b.type) return ['type'];
  const fields: ManifestField[] = [];
  if (a.mode !== b.mode) fields.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) fields.push('owner');
  if (a.target !== b.target) fields.push('target');
  if (a.content !== b.content) fields.push('content');
  if (a.device !== b.device) fields.push('device');
  if (a.xattrs.join('\n') !== b.xattrs.join('\n')) fields.push('xattrs');
  if (a.links !== b.links) fields.push('links');
  return fields;
}

/** Every path on which `left` and `right` disagree, sorted by path. mtimes are not compared. */
export function diffManifests(left: Manifest, right: Manifest): ManifestDifference[] {
  const out: ManifestDifference[] = [];
  const paths = [...new Set([...left.keys(), ...right.keys()])].sort();
  for (const path of paths) {
    const a = left.get(path);
    const b = right.get(path);
    if (a === undefined) out.push({ path, kind: 'only-right' });
    else if (b === undefined) out.push({ path, kind: 'only-left' });
    else {
      const fields = fieldsDiffering(a, b);
      if (fields.length > 0) out.push({ path, kind: 'differs', fields });
    }
  }
  return out;
}

/** A path present in both manifests whose mtimes differ. */
export interface MtimeDifference {
  path: string;
  type: ManifestEntry['type'];
  left: number;
  right: number;
}

/** The paths in both manifests, with the same type, whose mtimes differ, sorted by path. */
export function mtimeDifferences(left: Manifest, right: Manifest): MtimeDifference[] {
  const out: MtimeDifference[] = [];
  for (const [path, a] of [...left].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    const b = right.get(path);
    if (b === undefined || b.type !== a.type || b.mtime === a.mtime) continue;
    out.push({ path, type: a.type, left: a.mtime, right: b.mtime });
  }
  return out;
}

/** One line per difference, for assertion messages and logs. */
export function formatDifference(d: ManifestDifference, left: Manifest, right: Manifest): string {
  const show = (e: ManifestEntry | undefined): string =>
    e === undefined
      ? '-'
      : [
          e.type,
          e.mode.toString(8),
          `${e.uid}:${e.gid}`,
          e.target ?? e.content ?? e.device ?? '',
          e.xattrs.join(','),
          e.links === undefined ? '' : `links=${e.links}`,
        ]
          .filter(Boolean)
          .join(' ');
  const what = d.kind === 'differs' ? d.fields.join(',') : d.kind;
  return `${d.path} [${what}]: ${show(left.get(d.path))} | ${show(right.get(d.path))}`;
}

import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import type { ReferenceEntry } from './deb-builder.js';

/**
 * Checks an unpacked tree against the reference listings of the packages unpacked into it
 * (in lock order), entry by entry: type, mode, owner, size, content hash, link target, mtime,
 * device numbers, and hardlinks sharing an inode. Directories take the first package's
 * metadata, everything else the last package's (dpkg's order). `mergedUsr` names the
 * top-level directories that are symlinks into /usr. Returns one line per difference.
 */
export function compareTree(
  root: string,
  packages: readonly { name: string; entries: readonly ReferenceEntry[] }[],
  mergedUsr: readonly string[],
): string[] {
  const map = (path: string): string => {
    const rel = path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    const [top, ...rest] = rel.split('/');
    return top !== undefined && mergedUsr.includes(top) && rest.length > 0 ? `usr/${rel}` : rel;
  };
  const expected = new Map<string, { pkg: string; entry: ReferenceEntry }>();
  for (const pkg of packages) {
    for (const entry of pkg.entries) {
      const rel = map(entry.path);
      if (entry.type === 'dir' && mergedUsr.includes(rel)) continue;
      const previous = expected.get(rel);
      if (entry.type === 'dir' && previous?.entry.type === 'dir') continue;
      expected.set(rel, { pkg: pkg.name, entry });
    }
  }
  const problems: string[] = [];
  for (const dir of mergedUsr) {
    const link = lstatSync(`${root}/${dir}`, { throwIfNoEntry: false });
    if (!link?.isSymbolicLink() || readlinkSync(`${root}/${dir}`) !== `usr/${dir}`)
      problems.push(`/${dir}: not a link to usr/${dir}`);
  }
  for (const [rel, { pkg, entry }] of expected) {
    const path = rel === '' ? root : `${root}/${rel}`;
    const where = `${pkg}: ${entry.path}`;
    const stats = lstatSync(path, { throwIfNoEntry: false });
    if (stats === undefined) {
      problems.push(`${where}: missing`);
      continue;
    }
    const type = entry.type === 'hardlink' ? 'file' : entry.type;
    const actual = stats.isFile()
      ? 'file'
      : stats.isDirectory()
        ? 'dir'
        : stats.isSymbolicLink()
          ? 'symlink'
          : stats.isCharacterDevice()
            ? 'chardev'
            : stats.isBlockDevice()
              ? 'blockdev'
              : stats.isFIFO()
                ? 'fifo'
                : 'other';
    if (actual !== type) {
      problems.push(`${where}: is a ${actual}, expected ${type}`);
      continue;
    }
    if (entry.type === 'hardlink') {
      const target = lstatSync(`${root}/${map(entry.linkpath)}`, { throwIfNoEntry: false });
      if (target?.ino !== stats.ino) problems.push(`${where}: not a hardlink to ${entry.linkpath}`);
      continue;
    }
    if (stats.uid !== entry.uid || stats.gid !== entry.gid) {
      problems.push(`${where}: owner ${stats.uid}:${stats.gid}, expected ${entry.uid}:${entry.gid}`);
    }
    if (type !== 'symlink' && (stats.mode & 0o7777) !== entry.mode) {
      problems.push(
        `${where}: mode ${(stats.mode & 0o7777).toString(8)}, expected ${entry.mode.toString(8)}`,
      );
    }
    if (Math.floor(stats.mtimeMs / 1000) !== entry.mtime) {
      problems.push(`${where}: mtime ${Math.floor(stats.mtimeMs / 1000)}, expected ${entry.mtime}`);
    }
    if (type === 'symlink' && readlinkSync(path) !== entry.linkpath) {
      problems.push(`${where}: links to ${readlinkSync(path)}, expected ${entry.linkpath}`);
    }
    if (type === 'file') {
      if (stats.size !== entry.size) problems.push(`${where}: size ${stats.size}, expected ${entry.size}`);
      else if (createHash('sha256').update(readFileSync(path)).digest('hex') !== entry.sha256) {
        problems.push(`${where}: content differs`);
      }
    }
    if (type === 'chardev' || type === 'blockdev') {
      const major = Number((BigInt(stats.rdev) >> 8n) & 0xfffn);
      const minor = Number((BigInt(stats.rdev) & 0xffn) | ((BigInt(stats.rdev) >> 12n) & ~0xffn));
      if (major !== entry.devmajor || minor !== entry.devminor) {
        problems.push(`${where}: device ${major},${minor}, expected ${entry.devmajor},${entry.devminor}`);
      }
    }
  }
  return problems;
}

import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmdirSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { RootcastError } from '../core/errors.js';
import { nativeCalls } from './native.js';
import {
  hostSymlinkReader,
  memberRelativePath,
  resolveInRoot,
  type SymlinkReader,
} from './resolve-in-root.js';
import type { TarEntry, TarSink } from './tar-reader.js';

/**
 * Writes one package's data member into the staging tree, member by member, as a `TarSink`.
 *
 * Faithful: numeric owners, full modes (chmod after chown, which clears setuid), symlinks
 * with their exact targets, hardlinks, device nodes, FIFOs, pax xattrs and mtimes (lutimes
 * for symlinks). Directory metadata is *not* applied here: several packages share
 * directories and are unpacked in parallel, so the writer only creates them and reports a
 * `DirectoryRecord`; `applyDirectoryRecords` (unpack.ts) applies the first package's record
 * in lock order once everything is written — dpkg's "an existing directory is kept" rule,
 * made deterministic, and directory mtimes set after their contents.
 *
 * Safe: every member name is resolved inside the root (see resolve-in-root.ts); the final
 * component is never followed when creating (O_EXCL, symlink(2), link(2), mknod(2) all fail
 * on an existing name, which is then removed and created afresh), except that a directory
 * member keeps an existing symlink to a directory (dpkg, and merged-/usr's `bin -> usr/bin`).
 * A package is refused (RootcastError naming the package and member) when a member name is
 * absolute or has `..` (UNPACK_PATH_ESCAPE), when a member goes through a symlink that the
 * same package shipped (UNPACK_SYMLINK_TRAVERSAL: a tar made from a real tree never does
 * that), when a hardlink does not name an earlier regular file of the package
 * (UNPACK_BAD_HARDLINK), or when a device node lies outside /dev (UNPACK_DEVICE_NOT_ALLOWED).
 *
 * Lifecycle: one writer per package; `DirectoryCache` may be shared by the writers of one
 * thread and is cleared whenever a writer replaces a symlink (cached resolutions may go
 * through it). Everything is synchronous.
 */
export interface DirectoryRecord {
  /** Absolute in-root path of the directory (symlinks resolved). */
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
}

export interface WrittenTree {
  /** Member paths in archive order, in dpkg `.list` form (`/.`, `/usr/bin`, …). */
  paths: string[];
  directories: DirectoryRecord[];
  /** Absolute in-root paths of every non-directory written, to detect overlaps between packages. */
  written: string[];
}

/** Raw member directory (relative, normalised) → absolute in-root directory it resolves to. */
export type DirectoryCache = Map<string, string>;

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export class TreeWriter implements TarSink {
  private readonly paths: string[] = [];
  private readonly directories: DirectoryRecord[] = [];
  private readonly written: string[] = [];
  /** In-root paths of the symlinks this package created. */
  private readonly ownSymlinks = new Set<string>();
  /** Relative member path → in-root path of this package's regular files (hardlink targets). */
  private readonly ownFiles = new Map<string, string>();
  private readonly reader: SymlinkReader = hostSymlinkReader;
  private current: { entry: TarEntry; path: string; fd: number } | undefined;

  constructor(
    private readonly root: string,
    private readonly packageName: string,
    private readonly cache: DirectoryCache = new Map(),
  ) {}

  entry(entry: TarEntry): void {
    const rel = memberRelativePath(entry.path);
    if (rel === undefined) {
      throw this.refuse(
        'UNPACK_PATH_ESCAPE',
        entry,
        'has an absolute path or a ".." component',
        'A package never needs that; this one is broken or hostile. Remove it from the recipe or report it upstream.',
      );
    }
    this.paths.push(rel === '' ? '/.' : `/${rel}`);
    try {
      this.write(entry, rel);
    } catch (error) {
      if (error instanceof RootcastError) throw error;
      throw this.refuse(
        'UNPACK_WRITE_FAILED',
        entry,
        `cannot be written: ${(error as Error).message}`,
        'Check free space and that the staging directory is on a filesystem that supports owners, modes and device nodes.',
        error,
      );
    }
  }

  data(chunk: Buffer): void {
    const current = this.current;
    if (current === undefined) return;
    let offset = 0;
    while (offset < chunk.length) offset += writeSync(current.fd, chunk, offset, chunk.length - offset);
  }

  entryEnd(): void {
    const current = this.current;
    if (current === undefined) return;
    this.current = undefined;
    const { entry, fd, path } = current;
    try {
      fchownSync(fd, entry.uid, entry.gid);
      fchmodSync(fd, entry.mode);
      this.setXattrs(path, entry);
      futimesSync(fd, entry.mtime, entry.mtime);
    } finally {
      closeSync(fd);
    }
  }

  /** Closes a file left open by an archive that failed mid-member. */
  abort(): void {
    if (this.current !== undefined) closeSync(this.current.fd);
    this.current = undefined;
  }

  result(): WrittenTree {
    return { paths: this.paths, directories: this.directories, written: this.written };
  }

  private write(entry: TarEntry, rel: string): void {
    if (rel === '') {
      if (entry.type !== 'directory') {
        throw this.refuse(
          'UNPACK_PATH_ESCAPE',
          entry,
          'replaces the root directory',
          'The package is broken or hostile.',
        );
      }
      this.directories.push(record(this.root, entry));
      return;
    }
    const slash = rel.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : rel.slice(0, slash);
    const name = slash < 0 ? rel : rel.slice(slash + 1);
    const parent = this.directory(parentRel, entry);
    const path = `${parent}/${name}`;
    switch (entry.type) {
      case 'directory':
        this.writeDirectory(entry, rel, path);
        return;
      case 'file': {
        const fd = this.create(path, entry, () => openSync(path, CREATE_FLAGS, 0o600));
        this.current = { entry, path, fd };
        this.ownFiles.set(rel, path);
        this.written.push(path);
        return;
      }
      case 'symlink':
        this.writeSymlink(entry, path);
        return;
      case 'hardlink': {
        const targetRel = memberRelativePath(entry.linkpath);
        const target = targetRel === undefined ? undefined : this.ownFiles.get(targetRel);
        if (target === undefined || !lstatSync(target, { throwIfNoEntry: false })?.isFile()) {
          throw this.refuse(
            'UNPACK_BAD_HARDLINK',
            entry,
            `is a hardlink to ${entry.linkpath}, which is not an earlier regular file of the package`,
            'A package may only hardlink to its own files; this one is broken or hostile.',
          );
        }
        this.create(path, entry, () => linkSync(target, path));
        this.ownFiles.set(rel, path);
        this.written.push(path);
        return;
      }
      case 'chardev':
      case 'blockdev':
      case 'fifo':
        this.writeNode(entry, path);
        return;
    }
  }

  /**
   * The in-root directory a raw member directory resolves to, creating missing ones (as tar
   * does for members whose parent was not archived; their metadata is settled later).
   */
  private directory(rel: string, entry: TarEntry): string {
    if (rel === '') return this.root;
    const cached = this.cache.get(rel);
    if (cached !== undefined) return cached;
    const slash = rel.lastIndexOf('/');
    const parent = this.directory(slash < 0 ? '' : rel.slice(0, slash), entry);
    let path = `${parent}/${slash < 0 ? rel : rel.slice(slash + 1)}`;
    const stats = lstatSync(path, { throwIfNoEntry: false });
    if (stats === undefined) {
      mkdirSync(path, 0o755);
    } else if (stats.isSymbolicLink()) {
      path = this.followDirectoryLink(path, entry);
    } else if (!stats.isDirectory()) {
      throw this.refuse(
        'UNPACK_NOT_A_DIRECTORY',
        entry,
        `needs ${path.slice(this.root.length)} to be a directory, but it is not`,
        'Two packages disagree about that path; check the recipe for conflicting packages.',
      );
    }
    this.cache.set(rel, path);
    return path;
  }

  /** Resolves the symlink at `path` inside the root; it must lead to an existing directory. */
  private followDirectoryLink(path: string, entry: TarEntry): string {
    const target = resolveInRoot(this.root, path.slice(this.root.length), this.reader, {
      followFinal: true,
      onSymlink: (link) => {
        if (this.ownSymlinks.has(link)) {
          throw this.refuse(
            'UNPACK_SYMLINK_TRAVERSAL',
            entry,
            `goes through ${link.slice(this.root.length)}, a symlink the same package ships`,
            'A package built from a real tree never does that; this one is broken or hostile.',
          );
        }
      },
    });
    if (!lstatSync(target, { throwIfNoEntry: false })?.isDirectory()) {
      throw this.refuse(
        'UNPACK_NOT_A_DIRECTORY',
        entry,
        `needs ${path.slice(this.root.length)} to lead to a directory, but it leads to ${target.slice(this.root.length) || '/'}, which is not one`,
        'A symlink in the tree points somewhere unexpected; check the packages that ship it.',
      );
    }
    return target;
  }

  private writeDirectory(entry: TarEntry, rel: string, path: string): void {
    try {
      mkdirSync(path, 0o755);
      this.setXattrs(path, entry);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const stats = lstatSync(path);
      if (stats.isSymbolicLink()) {
        // dpkg keeps an existing symlink to a directory where a package ships a directory.
        const target = resolveInRoot(this.root, path.slice(this.root.length), this.reader, {
          followFinal: true,
        });
        if (this.ownSymlinks.has(path) || !lstatSync(target, { throwIfNoEntry: false })?.isDirectory()) {
          this.removeForReplacement(path, entry);
          mkdirSync(path, 0o755);
        } else {
          this.cache.set(rel, target);
          return;
        }
      } else if (!stats.isDirectory()) {
        this.removeForReplacement(path, entry);
        mkdirSync(path, 0o755);
      }
    }
    this.cache.set(rel, path);
    this.directories.push(record(path, entry));
  }

  private writeSymlink(entry: TarEntry, path: string): void {
    const existing = lstatSync(path, { throwIfNoEntry: false });
    if (existing?.isSymbolicLink() && hostSymlinkReader.readlink(path) === entry.linkpath) {
      // Same link already there (merged-/usr set up in advance, or a shared link): keep it.
    } else {
      this.create(path, entry, () => symlinkSync(entry.linkpath, path));
    }
    lchownSync(path, entry.uid, entry.gid);
    // lsetxattr sets the link's own attributes. Linux allows no user.* on a symlink (EPERM),
    // so no tree can hold one: such an entry is dropped rather than failing the unpack.
    this.setXattrs(path, entry, (name) => !name.startsWith('user.'));
    lutimesSync(path, entry.mtime, entry.mtime);
    this.ownSymlinks.add(path);
    this.written.push(path);
  }

  private writeNode(entry: TarEntry, path: string): void {
    if (entry.type !== 'fifo' && !path.startsWith(`${this.root}/dev/`)) {
      throw this.refuse(
        'UNPACK_DEVICE_NOT_ALLOWED',
        entry,
        `is a device node outside /dev (it would land at ${path.slice(this.root.length)})`,
        'Debian packages do not ship device nodes; this one is broken or hostile.',
      );
    }
    const kind = entry.type === 'chardev' ? S_IFCHR : entry.type === 'blockdev' ? S_IFBLK : S_IFIFO;
    const native = nativeCalls();
    this.create(path, entry, () => native.mknod(path, kind | 0o600, entry.devmajor, entry.devminor));
    lchownSync(path, entry.uid, entry.gid);
    chmodSync(path, entry.mode);
    this.setXattrs(path, entry);
    lutimesSync(path, entry.mtime, entry.mtime);
    this.written.push(path);
  }

  /** Runs `make`; when the name is taken, removes what is there (never following it) and retries once. */
  private create<T>(path: string, entry: TarEntry, make: () => T): T {
    try {
      return make();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    this.removeForReplacement(path, entry);
    return make();
  }

  private removeForReplacement(path: string, entry: TarEntry): void {
    const stats = lstatSync(path);
    if (stats.isDirectory()) {
      if (readdirSync(path).length > 0) {
        throw this.refuse(
          'UNPACK_DIRECTORY_CONFLICT',
          entry,
          `would replace the non-empty directory ${path.slice(this.root.length)}`,
          'Two packages disagree about that path; check the recipe for conflicting packages.',
        );
      }
      rmdirSync(path);
    } else {
      unlinkSync(path);
    }
    // A cached resolution may have gone through what was just removed.
    if (stats.isSymbolicLink() || stats.isDirectory()) this.cache.clear();
  }

  private setXattrs(path: string, entry: TarEntry, keep: (name: string) => boolean = () => true): void {
    if (entry.xattrs.size === 0) return;
    const native = nativeCalls();
    for (const [name, value] of entry.xattrs) if (keep(name)) native.lsetxattr(path, name, value);
  }

  private refuse(code: string, entry: TarEntry, what: string, hint: string, cause?: unknown): RootcastError {
    return new RootcastError({
      code,
      message: `package ${this.packageName}: member ${entry.path} ${what}`,
      hint,
      cause,
      details: { package: this.packageName, member: entry.path },
    });
  }
}

function record(path: string, entry: TarEntry): DirectoryRecord {
  return { path, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime };
}

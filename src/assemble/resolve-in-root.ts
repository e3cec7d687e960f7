import { lstatSync, readlinkSync } from 'node:fs';
import { RootcastError } from '../core/errors.js';

/**
 * Path resolution confined to a root directory, with the semantics of
 * `openat2(RESOLVE_IN_ROOT)` and Go's `filepath-securejoin`: the root acts as `/` for
 * everything met on the way. An absolute path starts at the root, `..` stops at the root,
 * and a symlink is followed with its target read relative to the root (an absolute target
 * restarts at the root, a relative one at the link's directory), so no path and no symlink
 * in the tree can name anything outside it.
 *
 * The walk is a pure function over a `SymlinkReader` (how to read one link), so its rules are
 * tested without a disk; `hostSymlinkReader` is the real one. Components that do not exist
 * are kept as they are: the result names where a new entry *would* go.
 *
 * Invariant: the returned path is `root` or starts with `root + '/'`, holds no `.`/`..`
 * components, and — when it was computed, not later — no component but possibly the last is
 * a symlink. Callers that create things must still refuse to follow the final component
 * (O_EXCL, lchown, rename over) because the tree may change after the walk.
 */
export interface SymlinkReader {
  /** The target of the symlink at `path`, or undefined when `path` is absent or not a symlink. */
  readlink(path: string): string | undefined;
}

export interface ResolveOptions {
  /** Follow a symlink in the last component too (default false: the last name is kept). */
  followFinal?: boolean;
  /** Called with the in-root path of every symlink the walk follows. */
  onSymlink?: (path: string) => void;
}

/** Linux gives up after 40 links in one lookup; so do we. */
const MAX_SYMLINKS = 40;

export const hostSymlinkReader: SymlinkReader = {
  readlink(path) {
    let stats: ReturnType<typeof lstatSync>;
    try {
      stats = lstatSync(path, { throwIfNoEntry: false });
    } catch (error) {
      // ENOTDIR: a regular file used as a directory; the caller's create fails cleanly later.
      if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw error;
    }
    return stats?.isSymbolicLink() ? readlinkSync(path) : undefined;
  },
};

/**
 * Resolves `unsafePath` inside `root` (an absolute path without a trailing slash, trusted).
 * Throws `RESOLVE_TOO_MANY_SYMLINKS` on a symlink loop.
 */
export function resolveInRoot(
  root: string,
  unsafePath: string,
  reader: SymlinkReader = hostSymlinkReader,
  options: ResolveOptions = {},
): string {
  const resolved: string[] = [];
  // Components still to walk, last one first, so pushing a link's target is cheap.
  const todo = splitReversed(unsafePath);
  let links = 0;
  while (todo.length > 0) {
    const part = todo.pop() as string;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    if (todo.length === 0 && !options.followFinal) {
      resolved.push(part);
      break;
    }
    const candidate = `${root}/${resolved.length === 0 ? part : `${resolved.join('/')}/${part}`}`;
    const target = reader.readlink(candidate);
    if (target === undefined) {
      resolved.push(part);
      continue;
    }
    links += 1;
    if (links > MAX_SYMLINKS) {
      throw new RootcastError({
        code: 'RESOLVE_TOO_MANY_SYMLINKS',
        message: `resolving ${unsafePath} inside ${root} met more than ${MAX_SYMLINKS} symlinks`,
        hint: 'The tree holds a symlink loop; check the packages that ship the links on that path.',
      });
    }
    options.onSymlink?.(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    todo.push(...splitReversed(target));
  }
  return resolved.length === 0 ? root : `${root}/${resolved.join('/')}`;
}

/** The components of `path` without empty and `.` ones, last first. */
function splitReversed(path: string): string[] {
  const parts = path.split('/');
  const out: string[] = [];
  for (let i = parts.length - 1; i >= 0; i--) {
    const part = parts[i] as string;
    if (part !== '' && part !== '.') out.push(part);
  }
  return out;
}

/**
 * The lexical form of a package member name relative to the root: `./usr/bin/` →
 * `usr/bin`, `./` → ''. Returns undefined when the name is absolute or has a `..`
 * component: tar writers never produce those for a package, so the caller treats them as
 * hostile instead of clamping them.
 */
export function memberRelativePath(name: string): string | undefined {
  if (name.startsWith('/')) return undefined;
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return undefined;
    parts.push(part);
  }
  return parts.join('/');
}

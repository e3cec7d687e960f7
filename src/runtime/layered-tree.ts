import { spawnSync } from 'node:child_process';
import {
  chownSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  type Stats,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { hasNativeCalls, nativeCalls } from '../assemble/native.js';
import { RootcastError } from '../core/errors.js';
import { isOpaque, isWhiteout, lstatOrUndefined } from './overlay-format.js';

/**
 * A container's tree as clone-time customization sees it, without mounting anything: reads
 * go through `upper` and then `lowers` (top first) with overlayfs semantics (a character
 * device 0:0 hides what is below it, a directory with `trusted.overlay.opaque=y` hides the
 * contents of the directories below it), and writes only ever go to `upper`. With no lowers,
 * `upper` is simply the whole tree (copy, reflink and btrfs containers).
 *
 * Writing a file into `upper` first creates its parent directories there with the metadata
 * (mode, owner, extended attributes, mtime) the view shows for them, exactly as overlayfs's
 * copy-up would, so the mounted view later looks as if the write had gone through overlayfs.
 * Symlinks in parent paths are resolved inside the view, never on the host; a final symlink
 * is replaced, not followed. Deleting a path a lower layer holds leaves a whiteout.
 *
 * Calls are synchronous: each is a handful of tiny metadata operations, and a clone's budget
 * is milliseconds. Invariant: nothing under `lowers` is ever written.
 */
export interface FileMeta {
  mode: number;
  uid: number;
  gid: number;
}

interface Found {
  /** Absolute path of the visible entry. */
  path: string;
  stats: Stats;
  /** Index in [upper, ...lowers]. */
  layer: number;
  /** Directories: the layers (indexes) whose directory at this path is merged into the view. */
  merged: number[];
}

const OPAQUE = 'trusted.overlay.opaque';
const MAX_SYMLINKS = 40;

function conflict(path: string, what: string): RootcastError {
  return new RootcastError({
    code: 'CUSTOMIZE_PATH_CONFLICT',
    message: `cannot customize /${path} in the container: ${what}`,
    hint: 'The template has something unexpected at that path; check it with `rootcast run --rm TEMPLATE -- ls -l PATH`.',
  });
}

export class LayeredTree {
  private readonly layers: readonly string[];

  constructor(
    readonly upper: string,
    readonly lowers: readonly string[],
  ) {
    this.layers = [upper, ...lowers];
  }

  /**
   * The visible entry at a canonical relative path (`''` is the root), or undefined. For a
   * directory, `merged` lists the layers whose directory at that path is part of the view.
   */
  lookup(rel: string): Found | undefined {
    const all = this.layers.map((_, i) => i);
    if (rel === '') {
      const stats = lstatOrUndefined(this.upper);
      return stats ? { path: this.upper, stats, layer: 0, merged: all } : undefined;
    }
    const parts = rel.split('/');
    let active = all;
    for (const [i, name] of parts.entries()) {
      const prefix = i === parts.length - 1 ? rel : parts.slice(0, i + 1).join('/');
      let found: Found | undefined;
      const merged: number[] = [];
      for (const [position, layer] of active.entries()) {
        const path = join(this.layers[layer]!, prefix);
        const stats = lstatOrUndefined(path);
        if (!stats) continue;
        if (this.lowers.length > 0 && isWhiteout(stats)) {
          if (!found) return undefined;
          break;
        }
        found ??= { path, stats, layer, merged };
        // Below the visible entry only directories under a directory merge, up to an opaque one.
        if (!found.stats.isDirectory() || !stats.isDirectory()) break;
        merged.push(layer);
        if (position < active.length - 1 && isOpaque(path)) break;
      }
      if (!found || i === parts.length - 1 || name === undefined) return found;
      if (!found.stats.isDirectory()) return undefined;
      active = merged;
    }
    return undefined;
  }

  /**
   * The canonical relative path of `path` inside the view: `.`/`..` folded (never above the
   * root) and symlinks resolved in the view, the final one only when `followFinal`.
   */
  resolve(path: string, followFinal = true): string {
    let pending = path.split('/').filter((p) => p !== '' && p !== '.');
    const resolved: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const [part, ...rest] = pending as [string, ...string[]];
      pending = rest;
      if (part === '..') {
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, part].join('/');
      if (pending.length === 0 && !followFinal) {
        resolved.push(part);
        break;
      }
      const found = this.lookup(candidate);
      if (found?.stats.isSymbolicLink()) {
        if (++hops > MAX_SYMLINKS) throw conflict(path, 'too many levels of symbolic links');
        const target = readlinkSync(found.path);
        if (target.startsWith('/')) resolved.length = 0;
        pending = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...pending];
        continue;
      }
      resolved.push(part);
    }
    return resolved.join('/');
  }

  /** The entry `path` names (final symlink followed), or undefined. */
  stat(path: string): Stats | undefined {
    return this.lookup(this.resolve(path))?.stats;
  }

  readFile(path: string): Buffer | undefined {
    const found = this.lookup(this.resolve(path));
    return found?.stats.isFile() ? readFileSync(found.path) : undefined;
  }

  /** Names visible in directory `path`, sorted (the union of the layers, whiteouts applied). */
  readdir(path: string): string[] {
    const found = this.lookup(this.resolve(path));
    if (!found?.stats.isDirectory()) return [];
    const rel = this.resolve(path);
    const names = new Set<string>();
    const hidden = new Set<string>();
    for (const layer of found.merged) {
      const dir = rel === '' ? this.layers[layer]! : join(this.layers[layer]!, rel);
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (names.has(entry.name) || hidden.has(entry.name)) continue;
        if (
          this.lowers.length > 0 &&
          entry.isCharacterDevice() &&
          isWhiteout(lstatSync(join(dir, entry.name)))
        )
          hidden.add(entry.name);
        else names.add(entry.name);
      }
    }
    return [...names].sort();
  }

  /** Makes sure directory `path` exists in the view and in `upper`; returns its canonical path. */
  mkdirp(path: string, meta: FileMeta = { mode: 0o755, uid: 0, gid: 0 }): string {
    const rel = this.resolve(path);
    let prefix = '';
    for (const part of rel === '' ? [] : rel.split('/')) {
      prefix = prefix === '' ? part : `${prefix}/${part}`;
      const target = join(this.upper, prefix);
      const inUpper = lstatOrUndefined(target);
      if (inUpper?.isDirectory()) continue;
      const visible = this.lookup(prefix);
      if (visible && !visible.stats.isDirectory()) throw conflict(prefix, 'not a directory');
      if (inUpper) unlinkSync(target); // a whiteout: the new directory must hide what it hid
      mkdirSync(target);
      if (visible) copyMetadata(visible.path, visible.stats, target);
      else {
        applyMeta(target, meta);
        if (inUpper && this.lowers.length > 0) setXattr(target, OPAQUE, Buffer.from('y'));
      }
    }
    return rel;
  }

  /**
   * Writes a regular file. Its metadata is `meta`, else that of the file it replaces, else
   * 0644 root:root. A symlink at `path` is replaced by the file.
   */
  writeFile(path: string, data: string | Uint8Array, meta?: FileMeta): void {
    const rel = this.resolve(path, false);
    const slash = rel.lastIndexOf('/');
    this.mkdirp(slash < 0 ? '' : rel.slice(0, slash));
    const existing = this.lookup(rel);
    if (existing?.stats.isDirectory()) throw conflict(rel, 'it is a directory');
    const target = join(this.upper, rel);
    if (lstatOrUndefined(target)) unlinkSync(target);
    const m: FileMeta =
      meta ??
      (existing?.stats.isFile()
        ? { mode: existing.stats.mode & 0o7777, uid: existing.stats.uid, gid: existing.stats.gid }
        : { mode: 0o644, uid: 0, gid: 0 });
    const fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fchownSync(fd, m.uid, m.gid);
      fchmodSync(fd, m.mode);
    } finally {
      closeSync(fd);
    }
  }

  /** Removes `path` from the view (a whiteout when a lower layer holds it). */
  remove(path: string): void {
    const rel = this.resolve(path, false);
    const target = join(this.upper, rel);
    if (lstatOrUndefined(target)) rmSync(target, { recursive: true, force: true });
    if (this.lowers.length === 0 || !this.lookup(rel)) return;
    const slash = rel.lastIndexOf('/');
    this.mkdirp(slash < 0 ? '' : rel.slice(0, slash));
    if (hasNativeCalls()) nativeCalls().mknod(target, constants.S_IFCHR, 0, 0);
    else {
      const out = spawnSync('mknod', [target, 'c', '0', '0']);
      if (out.status !== 0) throw conflict(rel, `mknod failed: ${out.stderr?.toString().trim()}`);
    }
  }
}

function applyMeta(path: string, meta: FileMeta): void {
  chownSync(path, meta.uid, meta.gid);
  // chmod after chown: chown clears setuid/setgid bits.
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fchmodSync(fd, meta.mode);
  } finally {
    closeSync(fd);
  }
}

function setXattr(path: string, name: string, value: Buffer): void {
  if (hasNativeCalls()) nativeCalls().lsetxattr(path, name, value);
  else spawnSync('setfattr', ['-h', '-n', name, '-v', value.toString(), path]);
}

/** What overlayfs copies up for a directory: owner, mode, extended attributes, times. */
function copyMetadata(from: string, stats: Stats, to: string): void {
  applyMeta(to, { mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid });
  if (hasNativeCalls()) {
    const native = nativeCalls();
    for (const name of native.llistxattr(from)) {
      if (!name.startsWith('trusted.overlay.')) native.lsetxattr(to, name, native.lgetxattr(from, name));
    }
  }
  utimesSync(to, stats.atime, stats.mtime);
}

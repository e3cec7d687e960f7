import { type BigIntStats, closeSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { describeError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { contentPadding, END_OF_ARCHIVE, encodeEntryHeader, type TarEntry } from '../store/tar-header.js';
import { isOverlayWhiteout, readLinkUtf8, tarEntryOf } from '../store/tar-writer.js';
import { openXattrReader, type XattrList, type XattrReader } from '../store/xattrs.js';

/**
 * The flattened tree of a stack of unpacked layers, as one deterministic tar stream, without
 * mounting anything.
 *
 * The layer directories are in overlayfs format (docs/store.md): a whiteout is a character
 * device 0:0 with the deleted name, an opaque directory carries `trusted.overlay.opaque=y`.
 * The walk merges them the way overlayfs merges lowerdirs: for each name the topmost layer
 * that has it decides; a whiteout hides the name; a directory merges with the same-named
 * directories below it (layers without the name are skipped), stopping at the first
 * non-directory or whiteout, and after the first opaque directory.
 *
 * The output follows the store's tar writer exactly (src/store/tar-writer.ts): depth first,
 * names sorted bytewise, a directory right before its contents, numeric owners, `mode &
 * 0o7777`, mtimes clamped to `sourceDateEpoch`, hardlinks as link entries to the first path in
 * walk order, PAX xattrs. So the tar of one layer equals that layer's blob, and a stack gives
 * the same bytes as `tarTree` of the equivalent merged directory: equal trees, equal bytes.
 * The overlay markers (`trusted.overlay.*` xattrs, whiteout devices) never reach the output.
 *
 * Reads only; the layer directories must not change while they are walked (they are
 * read-only by contract).
 */
export interface FlattenOptions {
  /** SOURCE_DATE_EPOCH in seconds; later mtimes are clamped to it. */
  sourceDateEpoch: number;
  /**
   * Put every entry under `<prefix>/` and start with a directory entry `<prefix>/` carrying
   * the root's metadata (Incus's `rootfs/`). Without it there is no root entry, as in layers.
   */
  prefix?: string;
  /** Append the end-of-archive marker (default true); false to append more entries after. */
  end?: boolean;
  reporter?: Reporter;
}

/** Counters filled in while the stream runs; complete once it has ended. */
export interface FlattenStats {
  entries: number;
  contentBytes: number;
  /** Paths (relative, no prefix) of character and block devices: what an unprivileged unpack cannot create. */
  devices: string[];
  /** Paths skipped (sockets). */
  skipped: string[];
}

const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';
const OPAQUE_XATTR = 'trusted.overlay.opaque';
const READ_SIZE = 1 << 20;

/** One layer's copy of a directory. */
interface Source {
  abs: string;
  xattrs: XattrReader;
}

interface WalkState {
  epoch: number;
  prefix: string;
  links: Map<string, string>;
  stats: FlattenStats;
  reporter: Reporter | undefined;
}

function readFailed(path: string, error: unknown): RootcastError {
  return new RootcastError({
    code: 'TAR_READ_FAILED',
    message: `cannot read ${path} to archive it: ${describeError(error)}`,
    hint: 'Check that the layer directories exist and are readable (`rootcast fsck`).',
    cause: error,
  });
}

function utf8Name(dir: string, raw: Buffer): string {
  const text = raw.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(raw)) {
    throw new RootcastError({
      code: 'TAR_NAME_NOT_UTF8',
      message: `a file name in ${dir} is not valid UTF-8 (bytes ${raw.toString('hex')})`,
      hint: 'Rename the file: layer paths must be UTF-8.',
    });
  }
  return text;
}

/** The union of the names in `sources`, sorted bytewise and without duplicates. */
function unionNames(sources: readonly Source[]): string[] {
  const seen = new Map<string, Buffer>();
  for (const source of sources) {
    for (const raw of readdirSync(source.abs, { encoding: 'buffer' })) {
      const hex = raw.toString('hex');
      if (!seen.has(hex)) seen.set(hex, raw);
    }
  }
  return [...seen.values()].sort(Buffer.compare).map((raw) => utf8Name(sources[0]?.abs ?? '', raw));
}

function lstatOrUndefined(path: string): BigIntStats | undefined {
  return lstatSync(path, { bigint: true, throwIfNoEntry: false });
}

/** Pure: an overlayfs whiteout is a character device with device number 0:0. */
export const isWhiteout = isOverlayWhiteout;

function isOpaque(xattrs: XattrList): boolean {
  return xattrs.some(([name, value]) => name === OPAQUE_XATTR && value.toString('latin1') === 'y');
}

/**
 * The directories a merged directory is made of, top first: `top`, then the same name in
 * each lower layer while it is a directory, stopping at a non-directory or whiteout, and
 * after an opaque one.
 */
function mergedSources(top: Source, topXattrs: XattrList, lower: readonly Source[], name: string): Source[] {
  const out: Source[] = [top];
  if (isOpaque(topXattrs)) return out;
  for (const source of lower) {
    const abs = join(source.abs, name);
    const st = lstatOrUndefined(abs);
    if (st === undefined) continue;
    if (!st.isDirectory()) break;
    const here = { abs, xattrs: source.xattrs };
    out.push(here);
    if (isOpaque(source.xattrs(abs))) break;
  }
  return out;
}

function entryFor(path: string, abs: string, st: BigIntStats, state: WalkState): TarEntry | undefined {
  const entry = tarEntryOf(path, st, state.epoch, state.links);
  if (entry?.type === 'symlink') entry.linkname = readLinkUtf8(abs);
  return entry;
}

function withoutOverlayXattrs(list: XattrList): XattrList {
  return list.filter(([name]) => !name.startsWith(OVERLAY_XATTR_PREFIX));
}

function* fileContent(abs: string, size: number): Generator<Buffer> {
  const fd = openSync(abs, 'r');
  try {
    let position = 0;
    while (position < size) {
      const buffer = Buffer.allocUnsafe(Math.min(READ_SIZE, size - position));
      const n = readSync(fd, buffer, 0, buffer.length, position);
      if (n === 0) break;
      position += n;
      yield n === buffer.length ? buffer : buffer.subarray(0, n);
    }
    if (position !== size || readSync(fd, Buffer.alloc(1), 0, 1, position) !== 0) {
      throw new RootcastError({
        code: 'TAR_FILE_CHANGED',
        message: `${abs} changed size while it was archived`,
        hint: 'Layer directories are read-only: run `rootcast fsck`; something wrote into the store.',
      });
    }
  } finally {
    closeSync(fd);
  }
  const pad = contentPadding(size);
  if (pad > 0) yield Buffer.alloc(pad);
}

function* emit(entry: TarEntry, abs: string, xattrs: XattrList, state: WalkState): Generator<Buffer> {
  const kept = withoutOverlayXattrs(xattrs);
  if (kept.length > 0) entry.xattrs = kept;
  yield encodeEntryHeader(entry);
  state.stats.entries++;
  if (entry.type === 'file') {
    yield* fileContent(abs, entry.size);
    state.stats.contentBytes += entry.size;
  }
}

function* walk(rel: string, sources: readonly Source[], state: WalkState): Generator<Buffer> {
  let names: string[];
  try {
    names = unionNames(sources);
  } catch (error) {
    throw error instanceof RootcastError ? error : readFailed(sources[0]?.abs ?? rel, error);
  }
  for (const name of names) {
    const childRel = rel === '' ? name : `${rel}/${name}`;
    let topIndex = -1;
    let st: BigIntStats | undefined;
    for (const [i, source] of sources.entries()) {
      st = lstatOrUndefined(join(source.abs, name));
      if (st !== undefined) {
        topIndex = i;
        break;
      }
    }
    const top = sources[topIndex];
    if (top === undefined || st === undefined || isWhiteout(st)) continue;
    const abs = join(top.abs, name);
    const path = state.prefix + childRel;
    let entry: TarEntry | undefined;
    let xattrs: XattrList;
    try {
      entry = entryFor(path, abs, st, state);
      xattrs = entry ? top.xattrs(abs) : [];
    } catch (error) {
      throw error instanceof RootcastError ? error : readFailed(abs, error);
    }
    if (!entry) {
      state.stats.skipped.push(childRel);
      state.reporter?.log('warn', `not archiving ${childRel}: a socket`);
      continue;
    }
    if (entry.type === 'char' || entry.type === 'block') state.stats.devices.push(childRel);
    yield* emit(entry, abs, xattrs, state);
    if (entry.type === 'directory') {
      const below = mergedSources({ abs, xattrs: top.xattrs }, xattrs, sources.slice(topIndex + 1), name);
      yield* walk(childRel, below, state);
    }
  }
}

/**
 * Archives the merged view of `layerDirs` (base first, as in a manifest). Iterate `stream`
 * once; `stats` is complete when it ends. Nothing is read before the first chunk is asked for.
 */
export function flattenLayers(
  layerDirs: readonly string[],
  options: FlattenOptions,
): { stream: AsyncGenerator<Buffer>; stats: FlattenStats } {
  const stats: FlattenStats = { entries: 0, contentBytes: 0, devices: [], skipped: [] };
  async function* generate(): AsyncGenerator<Buffer> {
    const topFirst = [...layerDirs].reverse();
    const readers = await Promise.all(topFirst.map((dir) => openXattrReader(dir)));
    const all: Source[] = topFirst.map((abs, i) => ({ abs, xattrs: readers[i]!.read }));
    const [top, ...lower] = all;
    if (top === undefined) throw readFailed('(no layers)', new Error('a template without layers'));
    const rootStat = lstatOrUndefined(top.abs);
    if (!rootStat?.isDirectory()) throw readFailed(top.abs, new Error('not a directory'));
    const state: WalkState = {
      epoch: options.sourceDateEpoch,
      prefix: options.prefix ? `${options.prefix}/` : '',
      links: new Map(),
      stats,
      reporter: options.reporter,
    };
    const rootXattrs = top.xattrs(top.abs);
    const sources = mergedSources(top, rootXattrs, lower, '');
    if (options.prefix) {
      const entry = entryFor(options.prefix, top.abs, rootStat, state);
      if (entry) yield* emit(entry, top.abs, rootXattrs, state);
    }
    // Synchronous walk, batched: one event-loop turn per ~1 MiB keeps consumers streaming.
    let batch: Buffer[] = [];
    let size = 0;
    for (const chunk of walk('', sources, state)) {
      batch.push(chunk);
      size += chunk.length;
      if (size >= READ_SIZE) {
        yield Buffer.concat(batch);
        batch = [];
        size = 0;
      }
    }
    if (options.end ?? true) batch.push(END_OF_ARCHIVE);
    if (batch.length > 0) yield Buffer.concat(batch);
  }
  return { stream: generate(), stats };
}

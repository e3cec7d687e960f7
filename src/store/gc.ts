import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { storePaths } from '../core/context.js';
import { digestHex, isSha256Hex, SHA256_PREFIX } from '../core/digest.js';
import { isRootcastError } from '../core/errors.js';
import { openBlobStore } from './blob-store.js';
import { digestsIn } from './fsck.js';
import { readIndex } from './layout.js';
import { acquireLock, type FileLock, storeLockPath, withLock } from './lock.js';
import {
  ANNOTATION,
  type ImageConfig,
  type ImageManifest,
  MEDIA_TYPE_INDEX,
  MEDIA_TYPE_MANIFEST,
} from './oci.js';
import { storeLayout } from './paths.js';
import { findDeadTemporaries, removePath } from './removal.js';

/**
 * `rootcast gc`: mark and sweep. Everything reachable from `index.json` or from a container's
 * record (`<store>/containers/<name>/container.json`, read by the caller's `templatesInUse`) is kept: each manifest
 * (tagged or not), every digest it names (config, layers, lock, any annotation that is a
 * digest), the unpacked layers of its config's `diff_ids`, and the packages its lock lists.
 * Everything else under `blobs/`, `layers/`, `packages/` (unless `keepPackages`), `indexes/`
 * (only with `indexes`) and dead processes' temporaries is removed.
 *
 * Safety: gc holds `locks/gc.lock`, every existing `locks/build-*.lock` (failing at once with
 * `STORE_LOCK_TIMEOUT` if a build runs) and the store lock, from the mark to the end of the
 * sweep, so no build of a known template commits in between. When a document it needs to
 * follow is missing (a manifest, config or lock: see `rootcast fsck`), it keeps every item of
 * the kinds that document could have named instead of guessing, and says so in `warnings`.
 */
/**
 * What containers hold on to, read by the runtime (the store does not know container records):
 * manifest digests with the containers' names, the diff_ids their trees use, and records that
 * could not be read (any problem makes gc keep everything). Called once, under the store lock.
 */
export interface TemplatesInUse {
  digests: ReadonlyMap<string, readonly string[]>;
  diffIds: ReadonlySet<string>;
  problems: readonly string[];
}

export interface GcOptions {
  /**
   * Reads what containers use (`runtime/record.ts` has the reader). Required, so no caller can
   * forget the containers and collect a template a container still runs on.
   */
  templatesInUse: (store: string) => TemplatesInUse;
  /** Report what would be removed, remove nothing. */
  dryRun?: boolean;
  /** Keep every cached package, referenced or not. */
  keepPackages?: boolean;
  /** Also empty the repository index cache (only `rootcast lock` uses it; it is re-fetched). */
  indexes?: boolean;
  /**
   * Stops the run with the signal's reason (the CLI's `ABORTED`), checked between manifests
   * while marking and before each removal: what was removed stays removed (it was garbage),
   * the rest stays for the next gc.
   */
  signal?: AbortSignal;
}

export type GcKind = 'blob' | 'layer' | 'package' | 'member' | 'index' | 'temporary';

export interface GcItem {
  kind: GcKind;
  path: string;
  /** Bytes of the file, or of every file in a tree (hardlinks once). */
  bytes: number;
}

export interface GcReport {
  dryRun: boolean;
  /** What was removed (or, with `dryRun`, would be), sorted by kind then path. */
  removed: GcItem[];
  bytesFreed: number;
  /** How many reachable items were kept. */
  kept: { manifests: number; blobs: number; layers: number; packages: number };
  warnings: string[];
}

/** What `index.json` reaches. An `all*` flag means that kind could not be determined. */
export interface Reachable {
  manifests: number;
  blobs: Set<string>;
  /** Hex of each reachable diff_id (the names under `layers/`). */
  layers: Set<string>;
  /** Hex sha256 of each package a reachable lock lists. */
  packages: Set<string>;
  allBlobs: boolean;
  allLayers: boolean;
  allPackages: boolean;
  warnings: string[];
}

function isMissing(error: unknown): boolean {
  return isRootcastError(error) && error.code === 'BLOB_NOT_FOUND';
}

/** The mark phase. Reads verify, so a corrupt document fails with `BLOB_CORRUPT` (run fsck). */
export async function markReachable(
  store: string,
  templatesInUse: GcOptions['templatesInUse'],
  signal?: AbortSignal,
): Promise<Reachable> {
  const blobs = openBlobStore(store);
  const r: Reachable = {
    manifests: 0,
    blobs: new Set(),
    layers: new Set(),
    packages: new Set(),
    allBlobs: false,
    allLayers: false,
    allPackages: false,
    warnings: [],
  };
  const readJson = async <T>(digest: string, what: string): Promise<T | undefined> => {
    try {
      return JSON.parse((await blobs.read(digest)).toString('utf8')) as T;
    } catch (error) {
      if (!isMissing(error)) throw error;
      r.warnings.push(`${what} ${digest} is missing: run \`rootcast fsck\``);
      return undefined;
    }
  };
  const seen = new Set<string>();
  const visitManifest = async (digest: string, label: string): Promise<void> => {
    if (seen.has(digest)) return;
    signal?.throwIfAborted();
    seen.add(digest);
    r.blobs.add(digest);
    const doc = await readJson<ImageManifest & { manifests?: { digest: string; mediaType: string }[] }>(
      digest,
      `manifest of ${label}`,
    );
    if (!doc) {
      r.allBlobs = r.allLayers = r.allPackages = true;
      return;
    }
    r.manifests++;
    for (const d of digestsIn(doc)) r.blobs.add(d);
    for (const child of doc.manifests ?? []) {
      if (child.mediaType === MEDIA_TYPE_MANIFEST || child.mediaType === MEDIA_TYPE_INDEX)
        await visitManifest(child.digest, label);
    }
    if (doc.config?.digest) {
      const config = await readJson<ImageConfig>(doc.config.digest, `config of ${label}`);
      if (!config) r.allLayers = true;
      for (const diffId of config?.rootfs?.diff_ids ?? []) {
        if (isSha256Hex(diffId.slice(SHA256_PREFIX.length))) r.layers.add(digestHex(diffId));
      }
    }
    const lockDigest = doc.annotations?.[ANNOTATION.lock];
    if (lockDigest) {
      const lock = await readJson<{ packages?: { sha256?: unknown }[] }>(lockDigest, `lock of ${label}`);
      if (!lock) r.allPackages = true;
      for (const p of lock?.packages ?? []) {
        if (typeof p.sha256 === 'string' && isSha256Hex(p.sha256)) r.packages.add(p.sha256);
      }
    }
  };
  for (const descriptor of (await readIndex(store)).manifests) {
    await visitManifest(descriptor.digest, descriptor.annotations?.[ANNOTATION.refName] ?? descriptor.digest);
  }
  // A template a container uses is kept, tagged or not; an unreadable record keeps everything.
  const inUse = templatesInUse(store);
  if (inUse.problems.length > 0) {
    r.allBlobs = r.allLayers = r.allPackages = true;
    r.warnings.push(...inUse.problems.map((p) => `container record unreadable, keeping everything: ${p}`));
  }
  for (const [digest, names] of inUse.digests) await visitManifest(digest, `container ${names.join(', ')}`);
  for (const diffId of inUse.diffIds)
    if (isSha256Hex(diffId.slice(SHA256_PREFIX.length))) r.layers.add(digestHex(diffId));
  return r;
}

async function entries(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** Bytes of a file, or of all files in a tree, counting each inode once. */
export async function diskBytes(path: string, seen: Set<string> = new Set()): Promise<number> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return 0;
  const key = `${info.dev}:${info.ino}`;
  if (seen.has(key)) return 0;
  seen.add(key);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await entries(path)) total += await diskBytes(join(path, name), seen);
  return total;
}

async function buildLocks(store: string): Promise<string[]> {
  return (await entries(storeLayout.locks(store)))
    .filter((n) => n.startsWith('build-') && n.endsWith('.lock'))
    .map((n) => join(storeLayout.locks(store), n));
}

/** Pure: the sweep list, from what is present and what is reachable. */
export function planSweep(
  present: { blobs: string[]; layers: string[]; packages: string[]; indexes: string[] },
  reachable: Reachable,
  options: GcOptions,
): { kind: GcKind; name: string }[] {
  const out: { kind: GcKind; name: string }[] = [];
  if (!reachable.allBlobs) {
    for (const hex of present.blobs)
      if (!reachable.blobs.has(SHA256_PREFIX + hex)) out.push({ kind: 'blob', name: hex });
  }
  if (!reachable.allLayers) {
    for (const hex of present.layers) if (!reachable.layers.has(hex)) out.push({ kind: 'layer', name: hex });
  }
  if (!reachable.allPackages && !options.keepPackages) {
    for (const hex of present.packages)
      if (!reachable.packages.has(hex)) out.push({ kind: 'package', name: hex });
  }
  if (options.indexes) for (const rel of present.indexes) out.push({ kind: 'index', name: rel });
  return out;
}

async function sweep(store: string, options: GcOptions): Promise<GcReport> {
  const reachable = await markReachable(store, options.templatesInUse, options.signal);
  const indexes = storePaths.indexes(store);
  const present = {
    blobs: (await entries(storeLayout.blobs(store))).filter(isSha256Hex),
    layers: (await entries(storeLayout.layers(store))).filter(isSha256Hex),
    packages: (await entries(storePaths.packages(store))).filter(isSha256Hex),
    indexes: [
      ...(await entries(join(indexes, 'sha256'))).filter(isSha256Hex).map((n) => join('sha256', n)),
      ...(await entries(join(indexes, 'plain', 'sha256')))
        .filter((n) => n.endsWith('.zst') && isSha256Hex(n.slice(0, -4)))
        .map((n) => join('plain', 'sha256', n)),
    ],
  };
  const pathOf = (kind: GcKind, name: string): string => {
    if (kind === 'blob') return join(storeLayout.blobs(store), name);
    if (kind === 'layer') return join(storeLayout.layers(store), name);
    if (kind === 'package') return storePaths.packageFile(store, name);
    if (kind === 'index') return join(indexes, name);
    return name;
  };
  const planned = planSweep(present, reachable, options).map((p) => ({
    kind: p.kind,
    path: pathOf(p.kind, p.name),
  }));
  // A package's decompressed member copy goes with it (and a copy whose package is gone).
  if (!reachable.allPackages && !options.keepPackages) {
    for (const name of await entries(storePaths.members(store))) {
      const hex = /^([0-9a-f]{64})\.tar\.zst$/.exec(name)?.[1];
      if (hex && !reachable.packages.has(hex))
        planned.push({ kind: 'member', path: join(storePaths.members(store), name) });
    }
  }
  for (const t of await findDeadTemporaries(store)) planned.push({ kind: 'temporary', path: t.path });
  const removed: GcItem[] = [];
  for (const item of planned) {
    options.signal?.throwIfAborted();
    const bytes = await diskBytes(item.path);
    if (!options.dryRun) await removePath(store, item.path);
    removed.push({ ...item, bytes });
  }
  const order: GcKind[] = ['blob', 'layer', 'package', 'member', 'index', 'temporary'];
  removed.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind) || (a.path < b.path ? -1 : 1));
  const count = (list: string[], kind: GcKind) => list.length - removed.filter((r) => r.kind === kind).length;
  return {
    dryRun: Boolean(options.dryRun),
    removed,
    bytesFreed: removed.reduce((sum, r) => sum + r.bytes, 0),
    kept: {
      manifests: reachable.manifests,
      blobs: count(present.blobs, 'blob'),
      layers: count(present.layers, 'layer'),
      packages: count(present.packages, 'package'),
    },
    warnings: reachable.warnings,
  };
}

/** What gc reports for a store that does not exist: nothing to collect. */
function emptyReport(options: GcOptions): GcReport {
  return {
    dryRun: Boolean(options.dryRun),
    removed: [],
    bytesFreed: 0,
    kept: { manifests: 0, blobs: 0, layers: 0, packages: 0 },
    warnings: [],
  };
}

/**
 * Collects garbage under the locks described in the module comment. A store directory that
 * does not exist has nothing to collect: the report is empty and nothing is created (not even
 * the lock files).
 */
export async function gcStore(store: string, options: GcOptions): Promise<GcReport> {
  options.signal?.throwIfAborted();
  const exists = await lstat(store).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
  if (!exists) return emptyReport(options);
  const held: FileLock[] = [];
  try {
    held.push(await acquireLock(storeLayout.lock(store, 'gc'), { timeoutMs: 0 }));
    for (const path of await buildLocks(store)) held.push(await acquireLock(path, { timeoutMs: 0 }));
    return await withLock(storeLockPath(store), () => sweep(store, options));
  } finally {
    for (const lock of held.reverse()) await lock.release();
  }
}

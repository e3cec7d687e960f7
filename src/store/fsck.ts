import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { storePaths } from '../core/context.js';
import { isSha256Hex, SHA256_PREFIX, sha256File } from '../core/digest.js';
import { type FsckLayerTree, repairStore } from './fsck-repair.js';
import { layerEpochs } from './layer-check.js';
import { readIndex } from './layout.js';
import { ANNOTATION, type ImageConfig, type ImageManifest } from './oci.js';
import { storeLayout } from './paths.js';
import { findDeadTemporaries, listNames } from './removal.js';

export type { FsckLayerTree } from './fsck-repair.js';

/**
 * `rootcast fsck`: checks everything in a store against what names it, without trusting any
 * earlier check: every blob is rehashed, every reference from `index.json` is followed
 * (manifest → config, layers, lock and SBOM blobs; config → unpacked layers),
 * every cached package is rehashed, cached index names are checked, and temporaries left by
 * dead processes are found.
 *
 * Invariants: without `repair` nothing is changed. With `repair`, only what cannot be right is
 * removed: blobs and packages whose bytes do not match their names, dead processes'
 * temporaries, and stray files in the content directories. Live processes' temporaries are
 * never touched. A template that loses a blob is reported in `rebuild`: its cache key no longer
 * finds a complete template (`findByCacheKey` checks every blob is present), so the next
 * `rootcast build` restores it.
 *
 * The unpacked layer (`layers/<hex>/`) of a layer blob that is corrupt or missing is checked on
 * its own (`checkLayerTree`: archived again, hashed against its diff_id). An intact tree is
 * kept (the rebuild or pull that restores the blob reuses it). A tree that cannot be vouched
 * for is removed, so the rebuild places a fresh one, unless another template still has an
 * intact blob for that diff_id (two templates share a diff_id under different blobs when they
 * were compressed at other levels or pulled: the tree is that healthy template's too), a
 * container stacks it, or a container record is unreadable: removing a container's lower
 * directory would break the container, so it is kept and a warning names the containers.
 * Every problem names the containers it affects (`containersUsing`, read by the caller: the
 * store does not know container records).
 *
 * The repair itself is fsck-repair.ts; removal.ts finds and removes temporaries (gc uses it too).
 *
 * Concurrency: the check takes no lock (it may hash for minutes while builds and clones run).
 * The repair holds `locks/gc.lock` exclusively, as gc does; builds and clone batches (`clone`,
 * `run --rm`) hold it shared while they run, so none is half-way while the repair removes
 * anything. Under it, the container records and `index.json` are read again, so a container
 * cloned (or a template committed) during the check keeps its layer. The lock is tried once:
 * when it is busy, the repair removes nothing and says so (`repairSkipped`, a warning); the
 * problems stay unrepaired, so the run exits 1 and can simply be repeated.
 *
 * `signal` stops the run with its reason (the CLI's `ABORTED`) between files and before each
 * removal; removals already done stay done (each removed only what cannot be right).
 */

export type FsckCode =
  /** A blob's bytes do not hash to its name. */
  | 'FSCK_BLOB_CORRUPT'
  /** A blob that a template references is absent. */
  | 'FSCK_BLOB_MISSING'
  /** A manifest or config blob is intact but not a usable document. */
  | 'FSCK_MANIFEST_INVALID'
  /** A template's layer is not unpacked under `layers/`. */
  | 'FSCK_LAYER_MISSING'
  /** A cached package does not hash to its name. */
  | 'FSCK_PACKAGE_CORRUPT'
  /** A file in `blobs/`, `packages/` or `indexes/` whose name is not a content name. */
  | 'FSCK_STRAY_FILE'
  /** A temporary whose writing process is gone. */
  | 'FSCK_TEMPORARY';

/** One problem: a stable code, what it is about (digest or path), and the templates it breaks. */
export interface FsckProblem {
  code: FsckCode;
  /** A digest (`sha256:…`) for blobs, layers and packages; a path for files. */
  subject: string;
  message: string;
  /** `name:version` (or manifest digest when untagged) of each template this breaks. */
  templates: string[];
  /** Set by a repair run: true when the damaged thing was removed. */
  repaired?: boolean;
  /** Containers cloned from a template this breaks, or stacking this layer (absent when none). */
  containers?: string[];
}

/**
 * What containers use, read by the runtime's container records (api/maintenance.ts): manifest
 * digests and diff_ids with the names of the containers using them, and records that could not
 * be read (then every unpacked layer a repair would remove is kept).
 */
export interface ContainersUsing {
  digests: ReadonlyMap<string, readonly string[]>;
  layers: ReadonlyMap<string, readonly string[]>;
  problems: readonly string[];
}

export interface FsckOptions {
  /** Remove what is corrupt (see the module comment). */
  repair?: boolean;
  /**
   * Reads what containers use. Required, so no caller can forget the containers and remove a
   * layer a container stacks, or fail to name the containers a problem breaks.
   */
  containersUsing: (store: string) => ContainersUsing;
  /** Stops the run with its reason, between files and before each removal. */
  signal?: AbortSignal;
}

export interface FsckReport {
  problems: FsckProblem[];
  /** Counts of what was checked. */
  checked: { templates: number; blobs: number; packages: number; indexes: number };
  /** Paths removed by `repair`. */
  removed: string[];
  /** Templates that now miss a blob or layer and need `rootcast build` (sorted). */
  rebuild: string[];
  /** With `repair`: each unpacked layer whose blob is corrupt or missing, kept or removed. */
  layers: FsckLayerTree[];
  /** Things a user must know: layers kept for containers, unreadable container records. */
  warnings: string[];
  /**
   * With `repair`: set (to the reason) when nothing was removed because `locks/gc.lock` was
   * busy (a build, clone or gc running). The problems are then reported unrepaired.
   */
  repairSkipped?: string;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Pure: every digest-shaped string anywhere in a JSON document (descriptors, annotations). */
export function digestsIn(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (typeof value === 'string') {
    if (DIGEST.test(value)) out.add(value);
  } else if (Array.isArray(value)) {
    for (const item of value) digestsIn(item, out);
  } else if (value !== null && typeof value === 'object') {
    for (const item of Object.values(value)) digestsIn(item, out);
  }
  return out;
}

/** Hashes every `<hex>` file of `dir`; returns the names that do not match and stray names. */
async function verifyContentDir(
  dir: string,
  signal: AbortSignal | undefined,
): Promise<{ count: number; corrupt: string[]; stray: string[] }> {
  const corrupt: string[] = [];
  const stray: string[] = [];
  let count = 0;
  for (const name of await listNames(dir)) {
    signal?.throwIfAborted();
    if (name.startsWith('.tmp-')) continue;
    if (!isSha256Hex(name)) {
      stray.push(name);
      continue;
    }
    count++;
    const info = await lstat(join(dir, name));
    if (!info.isFile() || (await sha256File(join(dir, name))).hex !== name) corrupt.push(name);
  }
  return { count, corrupt, stray };
}

function problem(code: FsckCode, subject: string, message: string, templates: string[] = []): FsckProblem {
  return { code, subject, message, templates };
}

/** Checks the store; with `repair`, removes what is corrupt (see the module comment). */
export async function fsckStore(store: string, options: FsckOptions): Promise<FsckReport> {
  const { signal } = options;
  signal?.throwIfAborted();
  const problems: FsckProblem[] = [];
  const removed: string[] = [];
  const warnings: string[] = [];
  const blobsDir = storeLayout.blobs(store);
  const inUse = options.containersUsing(store);
  for (const p of inUse.problems) warnings.push(`container record unreadable: ${p}`);
  const addContainers = (p: FsckProblem, names: readonly string[] | undefined) => {
    for (const name of names ?? [])
      if (!p.containers?.includes(name)) p.containers = [...(p.containers ?? []), name];
  };

  const blobCheck = await verifyContentDir(blobsDir, signal);
  const corruptBlobs = new Map<string, FsckProblem>();
  for (const hex of blobCheck.corrupt) {
    const digest = SHA256_PREFIX + hex;
    const p = problem('FSCK_BLOB_CORRUPT', digest, `blob ${digest} does not hash to its name`);
    corruptBlobs.set(digest, p);
    problems.push(p);
  }
  const blobPresent = async (digest: string) =>
    !corruptBlobs.has(digest) &&
    (await lstat(storeLayout.blob(store, digest)).then(
      () => true,
      () => false,
    ));
  const readJson = async <T>(digest: string): Promise<T | undefined> => {
    if (!(await blobPresent(digest))) return undefined;
    try {
      return JSON.parse(await readFile(storeLayout.blob(store, digest), 'utf8')) as T;
    } catch {
      return undefined;
    }
  };

  // References: every manifest in index.json, tagged or not.
  const index = await readIndex(store);
  const missing = new Map<string, FsckProblem>();
  /** Unpacked layers whose blob is corrupt or missing, by path: what to check on repair. */
  const layerDirsOfBrokenBlobs = new Map<
    string,
    { diffId: string; epochs: number[]; overlayUpper: boolean }
  >();
  const rebuild = new Set<string>();
  type Users = readonly string[] | undefined;
  const noteBlob = async (digest: string, template: string, users: Users, what: string): Promise<boolean> => {
    const corrupt = corruptBlobs.get(digest);
    if (corrupt) {
      corrupt.templates.push(template);
      addContainers(corrupt, users);
      rebuild.add(template);
      return false;
    }
    if (await blobPresent(digest)) return true;
    let p = missing.get(digest);
    if (!p) {
      p = problem('FSCK_BLOB_MISSING', digest, `${what} ${digest} is missing`);
      missing.set(digest, p);
      problems.push(p);
    }
    p.templates.push(template);
    addContainers(p, users);
    rebuild.add(template);
    return false;
  };
  const broken = (p: FsckProblem, template: string, users: Users) => {
    addContainers(p, users);
    problems.push(p);
    rebuild.add(template);
  };
  for (const descriptor of index.manifests) {
    signal?.throwIfAborted();
    const template = descriptor.annotations?.[ANNOTATION.refName] ?? descriptor.digest;
    const users = inUse.digests.get(descriptor.digest);
    if (!(await noteBlob(descriptor.digest, template, users, 'manifest'))) continue;
    const manifest = await readJson<ImageManifest>(descriptor.digest);
    if (!manifest?.config || !Array.isArray(manifest.layers)) {
      broken(
        problem('FSCK_MANIFEST_INVALID', descriptor.digest, 'manifest is not an image manifest', [template]),
        template,
        users,
      );
      continue;
    }
    // Annotations that name blobs (other digest-valued ones, like the cache key, do not).
    const named = [ANNOTATION.lock, ANNOTATION.sbom].map((key) => manifest.annotations?.[key]);
    for (const digest of digestsIn({ config: manifest.config, layers: manifest.layers, named })) {
      await noteBlob(digest, template, users, 'blob');
    }
    const config = await readJson<ImageConfig>(manifest.config.digest);
    const diffIds = config?.rootfs?.diff_ids;
    if (config && (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length)) {
      broken(
        problem('FSCK_MANIFEST_INVALID', manifest.config.digest, 'config diff_ids do not match the layers', [
          template,
        ]),
        template,
        users,
      );
      continue;
    }
    for (const [i, diffId] of (diffIds ?? []).entries()) {
      if (!DIGEST.test(diffId)) continue;
      const layerBlob = manifest.layers[i]?.digest ?? '';
      const dir = storeLayout.layer(store, diffId);
      const isDir = await lstat(dir).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (!isDir) {
        const p = problem('FSCK_LAYER_MISSING', diffId, `unpacked layer ${diffId} is missing`, [template]);
        addContainers(p, inUse.layers.get(diffId));
        broken(p, template, users);
      } else if (!(await blobPresent(layerBlob)) && !layerDirsOfBrokenBlobs.has(dir)) {
        layerDirsOfBrokenBlobs.set(dir, { diffId, epochs: layerEpochs(config, i), overlayUpper: i > 0 });
      }
    }
  }

  // The package cache: every file must hash to its name.
  const packageCheck = await verifyContentDir(storePaths.packages(store), signal);
  for (const hex of packageCheck.corrupt) {
    problems.push(
      problem('FSCK_PACKAGE_CORRUPT', SHA256_PREFIX + hex, `cached package ${hex} does not hash to its name`),
    );
  }
  // The index cache: names only; readers rehash against the signed Release on every use.
  const indexes = storePaths.indexes(store);
  const indexNames = { compressed: await listNames(join(indexes, 'sha256')) };
  const plainNames = await listNames(join(indexes, 'plain', 'sha256'));
  let indexCount = 0;
  const stray: string[] = [
    ...blobCheck.stray.map((n) => join(blobsDir, n)),
    ...packageCheck.stray.map((n) => join(storePaths.packages(store), n)),
  ];
  for (const name of indexNames.compressed) {
    if (name.startsWith('.tmp-')) continue;
    if (isSha256Hex(name)) indexCount++;
    else stray.push(join(indexes, 'sha256', name));
  }
  for (const name of plainNames) {
    if (name.startsWith('.tmp-')) continue;
    if (name.endsWith('.zst') && isSha256Hex(name.slice(0, -4))) indexCount++;
    else stray.push(join(indexes, 'plain', 'sha256', name));
  }
  for (const path of stray)
    problems.push(problem('FSCK_STRAY_FILE', path, `${path} is not named by its content`));

  const temporaries = await findDeadTemporaries(store);
  for (const t of temporaries) {
    problems.push(problem('FSCK_TEMPORARY', t.path, `${t.path} was left by a process that is gone`));
  }

  const repaired = options.repair
    ? await repairStore(store, {
        problems,
        layerDirsOfBrokenBlobs,
        readJson,
        blobPresent,
        inUse,
        containersUsing: options.containersUsing,
        removed,
        warnings,
        signal,
      })
    : { layers: [] };
  for (const p of problems) {
    p.templates.sort();
    p.containers?.sort();
  }
  return {
    problems,
    checked: {
      templates: index.manifests.length,
      blobs: blobCheck.count,
      packages: packageCheck.count,
      indexes: indexCount,
    },
    removed,
    rebuild: [...rebuild].sort(),
    layers: repaired.layers,
    warnings,
    ...(repaired.skipped !== undefined ? { repairSkipped: repaired.skipped } : {}),
  };
}

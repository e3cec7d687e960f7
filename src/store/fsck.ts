import { lstat, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { storePaths } from '../core/context.js';
import { isSha256Hex, SHA256_PREFIX, sha256File } from '../core/digest.js';
import { isProcessAlive } from './clean.js';
import { readIndex } from './layout.js';
import { ANNOTATION, type ImageConfig, type ImageManifest } from './oci.js';
import { atomicWriteDirs, ownerPidOf, storeLayout, temporaryName } from './paths.js';

/**
 * `rootcast fsck`: checks everything in a store against what names it, without trusting any
 * earlier check: every blob is rehashed, every reference from `index.json` is followed
 * (manifest → config, layers, lock and SBOM blobs; config → unpacked layers),
 * every cached package is rehashed, cached index names are checked, and temporaries left by
 * dead processes are found.
 *
 * Invariants: without `repair` nothing is changed. With `repair`, only what cannot be right is
 * removed: blobs and packages whose bytes do not match their names, dead processes'
 * temporaries, stray files in the content directories, and the unpacked layers of layer blobs
 * that are gone (so the rebuild that restores the blob also places a fresh tree). Live
 * processes' temporaries are never touched. A template that loses a blob is reported in
 * `rebuild`: its cache key no longer finds a complete template (`findByCacheKey` checks every
 * blob is present), so the next `rootcast build` restores it.
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
}

export interface FsckReport {
  problems: FsckProblem[];
  /** Counts of what was checked. */
  checked: { templates: number; blobs: number; packages: number; indexes: number };
  /** Paths removed by `repair`. */
  removed: string[];
  /** Templates that now miss a blob or layer and need `rootcast build` (sorted). */
  rebuild: string[];
}

/** A dead process's temporary: where it is and what kind of directory holds it. */
export interface Temporary {
  path: string;
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
}

/**
 * Temporaries left by processes that are gone: everything under `ingest/` and `tmp/`, and
 * `.tmp-*` files beside content, whose owner pid is dead (or that name no pid at all).
 */
export async function findDeadTemporaries(store: string): Promise<Temporary[]> {
  const found: Temporary[] = [];
  const consider = (dir: string, name: string) => {
    const pid = ownerPidOf(name);
    if (pid !== undefined && isProcessAlive(pid)) return;
    found.push({ path: join(dir, name) });
  };
  for (const dir of [storeLayout.ingest(store), storeLayout.tmp(store)]) {
    for (const name of await names(dir)) consider(dir, name);
  }
  for (const dir of atomicWriteDirs(store)) {
    for (const name of await names(dir)) if (name.startsWith('.tmp-')) consider(dir, name);
  }
  return found;
}

/** Removes a file or tree; a tree is first renamed into `tmp/` so an interrupted removal is cleaned later. */
export async function removePath(store: string, path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (info?.isDirectory() && !path.startsWith(`${storeLayout.tmp(store)}/`)) {
    const doomed = join(storeLayout.tmp(store), temporaryName());
    try {
      await rename(path, doomed);
      await rm(doomed, { recursive: true, force: true });
      return;
    } catch {
      // not on one filesystem or tmp/ missing: remove in place
    }
  }
  await rm(path, { recursive: true, force: true });
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
async function verifyContentDir(dir: string): Promise<{ count: number; corrupt: string[]; stray: string[] }> {
  const corrupt: string[] = [];
  const stray: string[] = [];
  let count = 0;
  for (const name of await names(dir)) {
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
export async function fsckStore(store: string, options: { repair?: boolean } = {}): Promise<FsckReport> {
  const problems: FsckProblem[] = [];
  const removed: string[] = [];
  const blobsDir = storeLayout.blobs(store);

  const blobCheck = await verifyContentDir(blobsDir);
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
  const layerDirsOfBrokenBlobs = new Set<string>();
  const rebuild = new Set<string>();
  const noteBlob = async (digest: string, template: string, what: string): Promise<boolean> => {
    const corrupt = corruptBlobs.get(digest);
    if (corrupt) {
      corrupt.templates.push(template);
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
    rebuild.add(template);
    return false;
  };
  for (const descriptor of index.manifests) {
    const template = descriptor.annotations?.[ANNOTATION.refName] ?? descriptor.digest;
    if (!(await noteBlob(descriptor.digest, template, 'manifest'))) continue;
    const manifest = await readJson<ImageManifest>(descriptor.digest);
    if (!manifest?.config || !Array.isArray(manifest.layers)) {
      problems.push(
        problem('FSCK_MANIFEST_INVALID', descriptor.digest, 'manifest is not an image manifest', [template]),
      );
      rebuild.add(template);
      continue;
    }
    // Annotations that name blobs (other digest-valued ones, like the cache key, do not).
    const named = [ANNOTATION.lock, ANNOTATION.sbom].map((key) => manifest.annotations?.[key]);
    for (const digest of digestsIn({ config: manifest.config, layers: manifest.layers, named })) {
      await noteBlob(digest, template, 'blob');
    }
    const config = await readJson<ImageConfig>(manifest.config.digest);
    const diffIds = config?.rootfs?.diff_ids;
    if (config && (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length)) {
      problems.push(
        problem('FSCK_MANIFEST_INVALID', manifest.config.digest, 'config diff_ids do not match the layers', [
          template,
        ]),
      );
      rebuild.add(template);
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
        problems.push(
          problem('FSCK_LAYER_MISSING', diffId, `unpacked layer ${diffId} is missing`, [template]),
        );
        rebuild.add(template);
      } else if (!(await blobPresent(layerBlob))) {
        layerDirsOfBrokenBlobs.add(dir);
      }
    }
  }

  // The package cache: every file must hash to its name.
  const packageCheck = await verifyContentDir(storePaths.packages(store));
  for (const hex of packageCheck.corrupt) {
    problems.push(
      problem('FSCK_PACKAGE_CORRUPT', SHA256_PREFIX + hex, `cached package ${hex} does not hash to its name`),
    );
  }
  // The index cache: names only; readers rehash against the signed Release on every use.
  const indexes = storePaths.indexes(store);
  const indexNames = { compressed: await names(join(indexes, 'sha256')) };
  const plainNames = await names(join(indexes, 'plain', 'sha256'));
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

  if (options.repair) {
    for (const p of problems) {
      let path: string | undefined;
      if (p.code === 'FSCK_BLOB_CORRUPT') path = storeLayout.blob(store, p.subject);
      else if (p.code === 'FSCK_PACKAGE_CORRUPT')
        path = storePaths.packageFile(store, p.subject.slice(SHA256_PREFIX.length));
      else if (p.code === 'FSCK_TEMPORARY' || p.code === 'FSCK_STRAY_FILE') path = p.subject;
      if (path === undefined) continue;
      await removePath(store, path);
      removed.push(path);
      p.repaired = true;
    }
    // An unpacked layer whose blob is gone cannot be trusted more than the blob was; the
    // rebuild that restores the blob places a fresh tree.
    for (const dir of [...layerDirsOfBrokenBlobs].sort()) {
      await removePath(store, dir);
      removed.push(dir);
    }
  }
  for (const p of problems) p.templates.sort();
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
  };
}

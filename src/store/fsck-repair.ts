import { storePaths } from '../core/context.js';
import { isSha256Hex, SHA256_PREFIX } from '../core/digest.js';
import { isRootcastError } from '../core/errors.js';
import type { ContainersUsing, FsckProblem } from './fsck.js';
import { checkLayerTree, type LayerTreeCheck } from './layer-check.js';
import { readIndex } from './layout.js';
import { acquireLock, type FileLock } from './lock.js';
import { ANNOTATION, type ImageConfig, type ImageManifest } from './oci.js';
import { storeLayout } from './paths.js';
import { removePath } from './removal.js';

/**
 * The repair half of `rootcast fsck --repair` (the module comment of fsck.ts says what is
 * removed and why): under an exclusive `locks/gc.lock`, with the container records read again,
 * removes what the check found cannot be right, and decides for each unpacked layer of a
 * corrupt or missing blob whether it stays.
 */

/** The unpacked layer of a layer blob that is corrupt or missing, as `repair` left it. */
export interface FsckLayerTree {
  diffId: string;
  path: string;
  /** `intact`: it archives to its diff_id again; `unverified`: it does not (see layer-check.ts). */
  check: LayerTreeCheck;
  /** Containers stacking it. */
  containers: string[];
  removed: boolean;
  /**
   * Why a tree that does not archive to its diff_id was kept (absent when it is intact or was
   * removed): `intact-blob`, another template's blob for this diff_id is present and intact
   * (`templates` names them); `containers`, containers stack it; `records-unreadable`, a
   * container record cannot be read, so any tree might be a container's.
   */
  keptBecause?: 'intact-blob' | 'containers' | 'records-unreadable';
  /** With `keptBecause: 'intact-blob'`: the templates whose blob of this diff_id is intact. */
  templates?: string[];
}

/** A blob's JSON when it is present, not found corrupt, and parses; `undefined` otherwise. */
export type ReadBlobJson = <T>(digest: string) => Promise<T | undefined>;

export interface RepairInput {
  problems: FsckProblem[];
  /** Unpacked layers whose blob is corrupt or missing, by path. */
  layerDirsOfBrokenBlobs: ReadonlyMap<string, { diffId: string; epochs: number[]; overlayUpper: boolean }>;
  readJson: ReadBlobJson;
  blobPresent: (digest: string) => Promise<boolean>;
  /** What containers used when the check began (its unreadable records were already warned of). */
  inUse: ContainersUsing;
  containersUsing: (store: string) => ContainersUsing;
  /** Appended to: every path removed, every warning. */
  removed: string[];
  warnings: string[];
  signal: AbortSignal | undefined;
}

/** Marks repaired problems; `skipped` says why nothing was removed when gc.lock was busy. */
export async function repairStore(
  store: string,
  input: RepairInput,
): Promise<{ layers: FsckLayerTree[]; skipped?: string }> {
  const { problems, layerDirsOfBrokenBlobs, inUse, removed, warnings, signal } = input;
  const removable = (p: FsckProblem): string | undefined => {
    if (p.code === 'FSCK_BLOB_CORRUPT') return storeLayout.blob(store, p.subject);
    if (p.code === 'FSCK_PACKAGE_CORRUPT')
      return storePaths.packageFile(store, p.subject.slice(SHA256_PREFIX.length));
    if (p.code === 'FSCK_TEMPORARY' || p.code === 'FSCK_STRAY_FILE') return p.subject;
    return undefined;
  };
  const layers: FsckLayerTree[] = [];
  if (!problems.some((p) => removable(p) !== undefined) && layerDirsOfBrokenBlobs.size === 0)
    return { layers };
  signal?.throwIfAborted();
  const lock = await tryGcLock(store);
  if (!lock) {
    const skipped =
      `${storeLayout.lock(store, 'gc')} is held by a build, clone or gc running on this store, ` +
      'so the repair removed nothing (what it would remove could be in use)';
    warnings.push(`${skipped}: run \`rootcast fsck --repair\` again when they have finished`);
    return { layers, skipped };
  }
  try {
    // Read again under the lock: a container cloned, or a template committed, while the
    // check hashed is not half-way any more and keeps what it uses.
    const fresh = input.containersUsing(store);
    for (const p of fresh.problems)
      if (!inUse.problems.includes(p)) warnings.push(`container record unreadable: ${p}`);
    for (const p of problems) {
      signal?.throwIfAborted();
      const path = removable(p);
      if (path === undefined) continue;
      await removePath(store, path);
      removed.push(path);
      p.repaired = true;
    }
    const intact =
      layerDirsOfBrokenBlobs.size > 0
        ? await intactLayerBlobs({ ...input, store }, signal)
        : new Map<string, string[]>();
    for (const [dir, layer] of [...layerDirsOfBrokenBlobs].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const tree = await repairLayerTree(store, dir, layer, fresh, intact.get(layer.diffId) ?? [], signal);
      layers.push(tree);
      if (tree.removed) removed.push(dir);
      else if (tree.keptBecause === 'containers' || tree.keptBecause === 'records-unreadable') {
        const who =
          tree.keptBecause === 'containers'
            ? `container(s) ${tree.containers.join(', ')} use it`
            : 'a container record is unreadable';
        warnings.push(
          `unpacked layer ${tree.diffId} (blob corrupt or missing) does not archive to its diff_id; ` +
            `kept because ${who}: remove ${tree.keptBecause === 'containers' ? 'them' : 'the record'} and run \`rootcast fsck --repair\` again`,
        );
      }
    }
  } finally {
    await lock.release();
  }
  return { layers };
}

/** `locks/gc.lock`, exclusively, if no build, clone or gc holds it now; `undefined` when busy. */
async function tryGcLock(store: string): Promise<FileLock | undefined> {
  try {
    return await acquireLock(storeLayout.lock(store, 'gc'), { timeoutMs: 0 });
  } catch (error) {
    if (isRootcastError(error) && error.code === 'STORE_LOCK_TIMEOUT') return undefined;
    throw error;
  }
}

/**
 * For each diff_id, the templates (of `index.json` as it is now) whose layer blob for it is
 * present and not found corrupt: their unpacked layer is theirs too, whatever another
 * template's blob of the same diff_id suffered. Documents that cannot be read are skipped
 * (the check reported them).
 */
async function intactLayerBlobs(
  input: Pick<RepairInput, 'readJson' | 'blobPresent'> & { store: string },
  signal: AbortSignal | undefined,
): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  // Digests read from documents are checked before they name a path.
  const readJson: ReadBlobJson = async (digest) => (isDigest(digest) ? input.readJson(digest) : undefined);
  for (const descriptor of (await readIndex(input.store)).manifests) {
    signal?.throwIfAborted();
    const template = descriptor.annotations?.[ANNOTATION.refName] ?? descriptor.digest;
    const manifest = await readJson<ImageManifest>(descriptor.digest);
    if (!Array.isArray(manifest?.layers) || typeof manifest.config?.digest !== 'string') continue;
    const diffIds = (await readJson<ImageConfig>(manifest.config.digest))?.rootfs?.diff_ids;
    if (!Array.isArray(diffIds)) continue;
    for (const [i, diffId] of diffIds.entries()) {
      const blob = manifest.layers[i]?.digest;
      if (typeof diffId !== 'string' || typeof blob !== 'string' || !isDigest(blob)) continue;
      if (!(await input.blobPresent(blob))) continue;
      const names = users.get(diffId) ?? [];
      if (!names.includes(template)) users.set(diffId, [...names, template]);
    }
  }
  return users;
}

/**
 * Repair of one unpacked layer whose blob is corrupt or missing: kept when it is intact, when
 * another template's blob of its diff_id is intact (`intactUsers`), when a container stacks
 * it, or when a container record is unreadable; removed otherwise.
 */
async function repairLayerTree(
  store: string,
  dir: string,
  layer: { diffId: string; epochs: number[]; overlayUpper: boolean },
  inUse: ContainersUsing,
  intactUsers: readonly string[],
  signal: AbortSignal | undefined,
): Promise<FsckLayerTree> {
  const containers = [...(inUse.layers.get(layer.diffId) ?? [])].sort();
  const check = await checkLayerTree(dir, layer.diffId, {
    epochs: layer.epochs,
    overlayUpper: layer.overlayUpper,
    ...(signal ? { signal } : {}),
  });
  const keptBecause: FsckLayerTree['keptBecause'] =
    check === 'intact'
      ? undefined
      : intactUsers.length > 0
        ? 'intact-blob'
        : containers.length > 0
          ? 'containers'
          : inUse.problems.length > 0
            ? 'records-unreadable'
            : undefined;
  const remove = check !== 'intact' && keptBecause === undefined;
  if (remove) {
    signal?.throwIfAborted();
    await removePath(store, dir);
  }
  return {
    diffId: layer.diffId,
    path: dir,
    check,
    containers,
    removed: remove,
    ...(keptBecause ? { keptBecause } : {}),
    ...(keptBecause === 'intact-blob' ? { templates: [...intactUsers].sort() } : {}),
  };
}

function isDigest(value: string): boolean {
  return value.startsWith(SHA256_PREFIX) && isSha256Hex(value.slice(SHA256_PREFIX.length));
}

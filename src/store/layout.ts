import { mkdir, readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../core/atomic.js';
import { canonicalJson, canonicalJsonPretty } from '../core/canonical-json.js';
import { describeError, RootcastError } from '../core/errors.js';
import { storeLockPath, withLock } from './lock.js';
import { type ImageIndex, MEDIA_TYPE_INDEX, OCI_LAYOUT_VERSION } from './oci.js';
import { storeLayout } from './paths.js';

/**
 * The OCI image layout files at the top of a store: `oci-layout` (the version marker) and
 * `index.json` (the tags).
 *
 * Invariants: both are only ever replaced whole (temp file, fsync, rename), so a reader sees
 * an old or a new index, never a torn one; `index.json` is only rewritten by `updateIndex`,
 * which holds the store lock across its read-modify-write, so concurrent commits never lose
 * each other's tags. Reading needs no lock.
 */

function layoutInvalid(store: string, what: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'STORE_LAYOUT_INVALID',
    message: `${store} is not a usable OCI layout: ${what}`,
    hint: 'Point --store at a rootcast store, or move this directory away and let rootcast create a new one.',
    cause,
    details: { store },
  });
}

/** Creates the layout files if missing; checks the layout version if present. Idempotent. */
export async function ensureLayout(store: string): Promise<void> {
  await mkdir(storeLayout.blobs(store), { recursive: true });
  let marker: string | undefined;
  try {
    marker = await readFile(storeLayout.ociLayout(store), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (marker === undefined) {
    await writeFileAtomic(
      storeLayout.ociLayout(store),
      canonicalJson({ imageLayoutVersion: OCI_LAYOUT_VERSION }),
    );
  } else {
    let version: unknown;
    try {
      version = (JSON.parse(marker) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch (error) {
      throw layoutInvalid(store, 'oci-layout is not JSON', error);
    }
    if (version !== OCI_LAYOUT_VERSION)
      throw layoutInvalid(store, `unknown imageLayoutVersion ${String(version)}`);
  }
  await withLock(storeLockPath(store), async () => {
    try {
      await readFile(storeLayout.index(store));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await writeIndex(store, emptyIndex());
    }
  });
}

export function emptyIndex(): ImageIndex {
  return { schemaVersion: 2, mediaType: MEDIA_TYPE_INDEX, manifests: [] };
}

/** The store's index; an empty one when the store has none yet. */
export async function readIndex(store: string): Promise<ImageIndex> {
  let text: string;
  try {
    text = await readFile(storeLayout.index(store), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyIndex();
    throw layoutInvalid(store, `cannot read index.json (${describeError(error)})`, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw layoutInvalid(store, 'index.json is not JSON', error);
  }
  const index = parsed as Partial<ImageIndex>;
  if (index.schemaVersion !== 2 || !Array.isArray(index.manifests)) {
    throw layoutInvalid(store, 'index.json is not an OCI image index');
  }
  return { schemaVersion: 2, mediaType: MEDIA_TYPE_INDEX, manifests: index.manifests };
}

async function writeIndex(store: string, index: ImageIndex): Promise<void> {
  await writeFileAtomic(storeLayout.index(store), canonicalJsonPretty(index));
}

/**
 * Read-modify-write of `index.json` under the store lock. `mutate` gets the current index and
 * returns the new one (or the same object to write nothing); it may throw to abort. `beforeWrite`
 * runs with the lock held, just before the write (tests use it to die there).
 */
export async function updateIndex(
  store: string,
  mutate: (index: ImageIndex) => ImageIndex,
  beforeWrite?: () => void | Promise<void>,
): Promise<ImageIndex> {
  return withLock(storeLockPath(store), async () => {
    const current = await readIndex(store);
    const next = mutate(current);
    if (next === current) return current;
    await beforeWrite?.();
    await writeIndex(store, next);
    return next;
  });
}

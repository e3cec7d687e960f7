import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic.js';
import { canonicalJsonPretty } from '../core/canonical-json.js';
import { withLock } from '../store/lock.js';
import { storeLayout } from '../store/paths.js';

/**
 * The store's memory of where it pushed which blob, `<store>/registry/pushed.json`, so a later
 * push to another repository of the same registry can ask for a cross-repository mount
 * (`POST …/blobs/uploads/?mount=<digest>&from=<repository>`) instead of sending the bytes.
 *
 * It is a hint, never trusted: a mount the registry refuses (the blob was deleted, or the
 * account cannot read the source) falls back to an upload. Updates are read-modify-write
 * under `locks/registry.lock`, written atomically, so concurrent pushes keep each other's
 * entries. Each blob keeps its most recent repositories first, at most `MAX_PER_BLOB`.
 */
export interface PushedLocation {
  /** `host[:port]` as written in the reference. */
  registry: string;
  repository: string;
}

export interface PushedRecord {
  version: 1;
  blobs: Record<string, PushedLocation[]>;
}

const MAX_PER_BLOB = 8;

export function pushedRecordPath(store: string): string {
  return join(store, 'registry', 'pushed.json');
}

export async function readPushedRecord(store: string): Promise<PushedRecord> {
  try {
    const parsed = JSON.parse(await readFile(pushedRecordPath(store), 'utf8')) as Partial<PushedRecord>;
    if (parsed.version === 1 && typeof parsed.blobs === 'object' && parsed.blobs !== null)
      return { version: 1, blobs: parsed.blobs };
  } catch {
    // Missing or damaged: it is only a hint, so start afresh.
  }
  return { version: 1, blobs: {} };
}

/** Pure: repositories of `registry` (other than `repository`) known to hold `digest`, newest first. */
export function mountSources(
  record: PushedRecord,
  digest: string,
  registry: string,
  repository: string,
): string[] {
  return (record.blobs[digest] ?? [])
    .filter((l) => l.registry === registry && l.repository !== repository)
    .map((l) => l.repository);
}

/** Pure: `record` with each digest now known to be in `location` (moved to the front). */
export function withPushed(
  record: PushedRecord,
  digests: readonly string[],
  location: PushedLocation,
): PushedRecord {
  const blobs = { ...record.blobs };
  for (const digest of digests) {
    const others = (blobs[digest] ?? []).filter(
      (l) => !(l.registry === location.registry && l.repository === location.repository),
    );
    blobs[digest] = [location, ...others].slice(0, MAX_PER_BLOB);
  }
  return { version: 1, blobs };
}

export async function recordPushed(
  store: string,
  digests: readonly string[],
  location: PushedLocation,
): Promise<void> {
  if (digests.length === 0) return;
  await withLock(storeLayout.lock(store, 'registry'), async () => {
    const next = withPushed(await readPushedRecord(store), digests, location);
    await writeFileAtomic(pushedRecordPath(store), canonicalJsonPretty(next));
  });
}

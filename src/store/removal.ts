import { lstat, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isProcessAlive } from './clean.js';
import { atomicWriteDirs, ownerPidOf, storeLayout, temporaryName } from './paths.js';

/**
 * Finding and removing what gc and fsck remove: dead processes' temporaries, and files or trees
 * removed so that an interrupted removal leaves only a temporary (renamed into `tmp/` first).
 */

/** A dead process's temporary: where it is and what kind of directory holds it. */
export interface Temporary {
  path: string;
}

/** The sorted entry names of `dir`; none when it is missing (or not a directory). */
export async function listNames(dir: string): Promise<string[]> {
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
    for (const name of await listNames(dir)) consider(dir, name);
  }
  for (const dir of atomicWriteDirs(store)) {
    for (const name of await listNames(dir)) if (name.startsWith('.tmp-')) consider(dir, name);
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

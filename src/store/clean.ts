import type { Dirent } from 'node:fs';
import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { unmountBelow } from '../assemble/overlay.js';
import { openBlobStore } from './blob-store.js';
import { hasLayerDir } from './layers.js';
import { atomicWriteDirs, ownerPidOf, storeLayout } from './paths.js';
import { listTemplates, readTemplate } from './template-query.js';

/**
 * Recovery after crashes, and the checks behind `rootcast fsck`.
 *
 * `cleanStore` removes what killed processes left behind: ingest files, staging trees and
 * atomic-write temporaries whose owning pid (encoded in the name) is no longer running. Live
 * processes' temporaries are left alone, so it is safe to run while builds run. Nothing a
 * reader can see is touched: blobs, layers and index.json only ever appear complete.
 *
 * `checkStore` walks every tag and reports what is missing or damaged, without changing
 * anything; with `verifyBlobs` it rehashes every blob in the store.
 */

/** True unless `pid` certainly does not exist (EPERM means it exists under another user). */
export function isProcessAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Undoes the creation of a store by a verb that failed: removes `store` when it holds nothing
 * but empty directories, e.g. the `ingest/` and `tmp/` a failed pull into a new store made.
 * Directories are removed one by one with rmdir(2), deepest first, so anything another process
 * put there meanwhile keeps its directory (and the store). Returns whether the store went.
 */
export async function removeStoreIfEmpty(store: string): Promise<boolean> {
  const removeEmpty = async (dir: string): Promise<boolean> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return false;
    }
    let empty = true;
    for (const entry of entries) {
      if (!entry.isDirectory() || !(await removeEmpty(join(dir, entry.name)))) empty = false;
    }
    return (
      empty &&
      rmdir(dir).then(
        () => true,
        () => false,
      )
    );
  };
  return removeEmpty(store);
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export async function cleanStore(store: string): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  const candidates: Array<[string, string]> = [];
  for (const dir of [storeLayout.ingest(store), storeLayout.tmp(store)]) {
    for (const name of await names(dir)) candidates.push([dir, name]);
  }
  // writeFileAtomic and the other rename-into-place writers leave `.tmp-<name>-<pid>-<random>`.
  const atomicDirs = atomicWriteDirs(store);
  for (const dir of atomicDirs) {
    for (const name of await names(dir)) if (name.startsWith('.tmp-')) candidates.push([dir, name]);
  }
  for (const [dir, name] of candidates) {
    const pid = ownerPidOf(name);
    if (pid === undefined || isProcessAlive(pid)) continue;
    const path = join(dir, name);
    // A killed layered build leaves its overlay mounted inside its staging directory.
    await unmountBelow(path);
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }
  return { removed };
}

export interface StoreProblem {
  /** `name:version`, or the blob digest for a blob-level problem. */
  subject: string;
  problem: string;
}

export async function checkStore(
  store: string,
  options: { verifyBlobs?: boolean } = {},
): Promise<{ problems: StoreProblem[]; templates: number; blobs: number }> {
  const problems: StoreProblem[] = [];
  const blobs = openBlobStore(store);
  const templates = await listTemplates(store);
  for (const t of templates) {
    try {
      const details = await readTemplate(store, t.ref);
      for (const layer of details.layers) {
        if (!(await blobs.has(layer.digest)))
          problems.push({ subject: t.ref, problem: `layer ${layer.digest} missing` });
        if (!(await hasLayerDir(store, layer.diffId))) {
          problems.push({ subject: t.ref, problem: `unpacked layer ${layer.diffId} missing` });
        }
      }
      if (details.lockDigest && !(await blobs.has(details.lockDigest))) {
        problems.push({ subject: t.ref, problem: `lock ${details.lockDigest} missing` });
      }
    } catch (error) {
      problems.push({ subject: t.ref, problem: error instanceof Error ? error.message : String(error) });
    }
  }
  const all = await blobs.list();
  if (options.verifyBlobs) {
    for (const digest of all) {
      try {
        const stream = await blobs.open(digest);
        for await (const _ of stream) {
          // reading is the check: the stream fails at its end on a mismatch
        }
      } catch (error) {
        problems.push({ subject: digest, problem: error instanceof Error ? error.message : String(error) });
      }
    }
  }
  return { problems, templates: templates.length, blobs: all.length };
}

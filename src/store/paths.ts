import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { storePaths } from '../core/context.js';
import { digestHex } from '../core/digest.js';

/**
 * Where things live inside a store (DESIGN.md "On disk"). Temporary names carry the writing
 * process's pid (`<pid>-<random>`), so `cleanStore` can tell an abandoned temporary from one
 * a live build is still writing.
 *
 * ```
 * <store>/oci-layout, index.json     the OCI image layout (index.json only changes under locks/store.lock)
 * <store>/blobs/sha256/<hex>         verified content, read-only (0444)
 * <store>/ingest/<pid>-<random>      blobs being written; renamed into blobs/ once verified
 * <store>/tmp/<pid>-<random>/        staging trees and other work in progress
 * <store>/layers/<hex of diff_id>/   each layer unpacked once, never written after it is placed
 * <store>/locks/*.lock               flock(2) lock files (never deleted)
 * ```
 */
export const storeLayout = {
  ociLayout: (store: string) => join(store, 'oci-layout'),
  index: (store: string) => join(store, 'index.json'),
  blobs: (store: string) => join(store, 'blobs', 'sha256'),
  blob: (store: string, digest: string) => join(store, 'blobs', 'sha256', digestHex(digest)),
  ingest: (store: string) => join(store, 'ingest'),
  tmp: (store: string) => join(store, 'tmp'),
  layers: (store: string) => join(store, 'layers'),
  /** The hex alone names the directory: overlayfs splits `lowerdir=` on `:`. */
  layer: (store: string, diffId: string) => join(store, 'layers', digestHex(diffId)),
  locks: (store: string) => join(store, 'locks'),
  lock: (store: string, name: string) => join(store, 'locks', `${name}.lock`),
};

/** A fresh temporary name owned by this process: `<pid>-<random>`. */
export function temporaryName(): string {
  return `${process.pid}-${randomBytes(8).toString('hex')}`;
}

/** The pid encoded in a temporary name (`<pid>-…` or `.tmp-<name>-<pid>-<random>`), if any. */
export function ownerPidOf(name: string): number | undefined {
  const match = /^(\d+)-[0-9a-f]+$/.exec(name) ?? /^\.tmp-.*-(\d+)-[0-9a-f]+$/.exec(name);
  if (!match?.[1]) return undefined;
  const pid = Number(match[1]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Directories whose `.tmp-*` entries are atomic-write temporaries (`writeFileAtomic` and the
 * other writers that rename into place): what `cleanStore` and `fsck` look through.
 */
export function atomicWriteDirs(store: string): string[] {
  const indexes = storePaths.indexes(store);
  return [
    store,
    storeLayout.blobs(store),
    storeLayout.layers(store),
    storePaths.packages(store),
    storePaths.members(store),
    join(store, 'registry'),
    join(indexes, 'sha256'),
    join(indexes, 'plain', 'sha256'),
  ];
}

import type { PackageFile } from '../assemble/types.js';
import { type Context, storePaths } from '../core/context.js';
import { RootcastError } from '../core/errors.js';
import { fetchPackages, type PackageToFetch } from '../fetch/package-cache.js';
import type { LockPackage } from '../lock/lock-file.js';

/**
 * The lock's packages, fetched in the background while the build goes on: the unpacker
 * starts on each file as soon as it is verified in the package cache, instead of waiting
 * for the last download.
 *
 * Lifecycle: `startPackageFetch` begins at once and returns one `PackageFile` per locked
 * package (lock order) whose `ready` settles when its file is in the cache, or rejects with
 * the fetch's error when it never will be. `done` settles when the fetch has ended (it
 * rejects with the first failure; nothing is still writing into the store once it has
 * settled either way). `cancel` stops the downloads still running; the caller must still
 * await `done` (or `settled`) before it returns, so no download outlives the build.
 */
export interface PackageArrivals {
  files: PackageFile[];
  done: Promise<void>;
  /** Resolves when the fetch has ended, whether it failed or not. */
  settled: Promise<void>;
  /** Seconds from the start until every file was in the cache (set once `done` resolved). */
  seconds?: number;
  cancel(): void;
}

export function startPackageFetch(
  packages: readonly LockPackage[],
  baseUris: ReadonlyMap<string, string>,
  ctx: Context,
): PackageArrivals {
  const started = performance.now();
  const waiting = new Map<string, { resolve: () => void; reject: (error: unknown) => void }>();
  const readiness = new Map<string, Promise<void>>();
  for (const pkg of packages) {
    if (readiness.has(pkg.sha256)) continue;
    const ready = new Promise<void>((resolve, reject) => waiting.set(pkg.sha256, { resolve, reject }));
    // Rejections are seen where the unpacker awaits them; an unread one must not count as
    // unhandled (a package the build never got to).
    ready.catch(() => {});
    readiness.set(pkg.sha256, ready);
  }
  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
  const items: PackageToFetch[] = packages.map((p) => ({ ...p, baseUri: baseUris.get(p.repository) ?? '' }));
  const arrivals: PackageArrivals = {
    files: packages.map((p) => ({
      name: p.name,
      version: p.version,
      arch: p.arch,
      file: storePaths.packageFile(ctx.store, p.sha256),
      size: p.size,
      ready: readiness.get(p.sha256) as Promise<void>,
    })),
    done: Promise.resolve(),
    settled: Promise.resolve(),
    cancel: () => stop.abort(),
  };
  arrivals.done = fetchPackages(
    items,
    { ...ctx, signal },
    {
      onAvailable: (sha256) => {
        waiting.get(sha256)?.resolve();
        waiting.delete(sha256);
      },
    },
  ).then(
    () => {
      arrivals.seconds = (performance.now() - started) / 1000;
      if (waiting.size > 0) {
        // fetchPackages reports every file it was given: anything left is a bug here.
        const error = new RootcastError({
          code: 'PACKAGE_FETCH_FAILED',
          message: `${waiting.size} package file(s) were never reported as fetched`,
          hint: 'This is a bug in rootcast; run `rootcast fetch RECIPE` and build again.',
        });
        for (const w of waiting.values()) w.reject(error);
        throw error;
      }
    },
    (error: unknown) => {
      for (const w of waiting.values()) w.reject(error);
      waiting.clear();
      throw error;
    },
  );
  arrivals.settled = arrivals.done.catch(() => {});
  return arrivals;
}

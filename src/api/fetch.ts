import { createContext } from '../core/context.js';
import { fetchPackages } from '../fetch/package-cache.js';
import { type LockOptions, lockedRecipe, repositoryBaseUris } from './lock.js';

export interface FetchResult {
  downloaded: number;
  reused: number;
  bytes: number;
  packages: number;
  lockPath: string;
}

/**
 * `rootcast fetch`: every package of the recipe's lock into the store's package cache,
 * verified by size and sha256 before it becomes visible. Never chooses a version: without a
 * lock it first makes one (or fails under `frozen`).
 */
export async function fetch(recipePath: string, options: LockOptions = {}): Promise<FetchResult> {
  const ctx = createContext(options);
  const { loaded, lock, path } = await lockedRecipe(recipePath, options);
  const bases = repositoryBaseUris(lock, loaded);
  const items = lock.packages.map((pkg) => ({
    name: pkg.name,
    version: pkg.version,
    baseUri: bases.get(pkg.repository)!,
    path: pkg.path,
    size: pkg.size,
    sha256: pkg.sha256,
  }));
  const summary = await fetchPackages(items, ctx);
  return { ...summary, packages: items.length, lockPath: path };
}

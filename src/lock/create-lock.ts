import type { BinaryPackage, RepoIndex } from '../distro/deb/types.js';
import type { LoadedRecipe } from '../recipe/types.js';
import {
  LOCK_VERSION,
  type LockFile,
  type LockPackage,
  type LockParent,
  type LockRepository,
} from './lock-file.js';

/**
 * Turns a resolution into a lock. Pure: the same recipe, indexes and selection always give
 * the same lock. Only repositories that contributed a package, or that the recipe names,
 * are listed, each with the digest of the signed Release it was read from.
 */
export function createLock(
  loaded: LoadedRecipe,
  indexes: readonly RepoIndex[],
  selected: readonly BinaryPackage[],
  parent?: LockParent,
): LockFile {
  const { recipe } = loaded;
  const repositories: LockRepository[] = indexes.map((index) => ({
    id: index.id,
    uri: index.repository.uriTemplate,
    suite: index.repository.suite,
    component: index.repository.component,
    release: {
      sha256: index.release.sha256,
      date: index.release.date,
      ...(index.release.validUntil ? { validUntil: index.release.validUntil } : {}),
    },
  }));
  const packages: LockPackage[] = selected
    .map((pkg) => ({
      name: pkg.name,
      version: pkg.version,
      arch: pkg.architecture,
      path: pkg.filename,
      size: pkg.size,
      sha256: pkg.sha256,
      repository: pkg.repository,
      priority: pkg.priority,
    }))
    .sort(comparePackages);
  return {
    lockVersion: LOCK_VERSION,
    recipe: { name: recipe.name, version: recipe.version, digest: loaded.digest },
    distro: recipe.distro,
    release: recipe.release,
    arch: recipe.arch,
    variant: recipe.variant,
    ...(parent ? { parent } : {}),
    repositories: [...repositories].sort((a, b) => compareStrings(a.id, b.id)),
    packages,
  };
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function comparePackages(a: LockPackage, b: LockPackage): number {
  return compareStrings(a.name, b.name) || compareStrings(a.arch, b.arch);
}

import type { LoadedRecipe } from '../recipe/types.js';
import type { LockFile, LockParent } from './lock-file.js';

/**
 * Decisions about an existing lock, kept pure so the commands only do I/O.
 */

/**
 * Why a lock no longer fits its recipe, or an empty list when it does. The recipe digest
 * covers everything that can change the package set (release, arch, variant, sources,
 * packages); the source check catches a lock edited by hand.
 */
export function lockMismatches(lock: LockFile, loaded: LoadedRecipe, parent?: LockParent): string[] {
  const reasons: string[] = [];
  if (parent?.packages !== lock.parent?.packages) {
    reasons.push(
      parent === undefined
        ? 'the lock was made on a parent template the recipe no longer names'
        : lock.parent === undefined
          ? `the lock was made without the parent ${parent.from}`
          : `the parent ${parent.from} has other packages than when the lock was made`,
    );
  }
  if (lock.recipe.digest !== loaded.digest) {
    reasons.push(
      `the recipe changed since the lock was made (lock ${short(lock.recipe.digest)}, recipe ${short(loaded.digest)})`,
    );
  }
  const known = new Set(lock.repositories.map((r) => r.id));
  for (const pkg of lock.packages) {
    if (!known.has(pkg.repository)) {
      reasons.push(`package ${pkg.name} names repository ${pkg.repository}, which the lock does not list`);
      break;
    }
  }
  for (const repo of lock.repositories) {
    if (baseUriFor(repo, loaded) === undefined) {
      reasons.push(`repository ${repo.id} (${repo.uri}) is not among the recipe's sources`);
    }
  }
  return reasons;
}

/** The mirror URI (rendered now) that serves a locked repository, found through the recipe's sources. */
export function baseUriFor(
  repo: { uri: string; suite: string; component: string },
  loaded: LoadedRecipe,
): string | undefined {
  const sources = loaded.recipe.sources;
  for (let i = 0; i < sources.length; i++) {
    const source = sources[i]!;
    if (
      loaded.sourceUriTemplates[i] === repo.uri &&
      source.suites.includes(repo.suite) &&
      source.components.includes(repo.component)
    ) {
      return source.uri;
    }
  }
  return undefined;
}

export interface LockChanges {
  added: { name: string; version: string }[];
  removed: { name: string; version: string }[];
  changed: { name: string; from: string; to: string }[];
}

/** What moved between two locks, for `rootcast lock --update` to report. */
export function diffLocks(before: LockFile | undefined, after: LockFile): LockChanges {
  const old = new Map((before?.packages ?? []).map((p) => [`${p.name}:${p.arch}`, p]));
  const now = new Map(after.packages.map((p) => [`${p.name}:${p.arch}`, p]));
  const changes: LockChanges = { added: [], removed: [], changed: [] };
  for (const [key, pkg] of now) {
    const prev = old.get(key);
    if (!prev) changes.added.push({ name: pkg.name, version: pkg.version });
    else if (prev.version !== pkg.version || prev.sha256 !== pkg.sha256)
      changes.changed.push({ name: pkg.name, from: prev.version, to: pkg.version });
  }
  for (const [key, pkg] of old)
    if (!now.has(key)) changes.removed.push({ name: pkg.name, version: pkg.version });
  return changes;
}

function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}

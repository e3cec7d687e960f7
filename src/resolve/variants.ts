import type { RepoIndex } from '../distro/deb/types.js';
import type { Variant } from './types.js';
import type { Universe } from './universe.js';

/**
 * What mmdebstrap (1.3) asks apt for, per variant, as a list of stages. Each stage is one apt
 * run over the packages the previous stages installed; its roots are package names.
 *
 * - `install` is `apt-get install ROOTS`: every root is marked first, then the roots'
 *   dependencies are resolved one root at a time, in apt's package order.
 * - `dist-upgrade` is what the `apt` variant runs against an empty status: every Essential
 *   package (and apt, which libapt treats as essential) is installed with its dependencies,
 *   one after the other.
 *
 * Roots (names of native-architecture or `all` packages):
 * - essential: `?narrow(?or(?archive(^R$),?codename(^R$)),?architecture(native),?essential)`:
 *   Essential packages that have a version in release R. Stage 1 of every variant but `apt`.
 * - apt: every Essential package of any suite, plus `apt`, in one dist-upgrade.
 * - required (= minbase), important, standard: stage 2 installs, on top of the essential
 *   set, the non-Essential packages that have a version in R with Priority `required`
 *   (+ `important`, + `standard`), together with `packages.install`.
 * `packages.install` always goes into the last stage, as mmdebstrap's `--include` does.
 */
export interface Stage {
  kind: 'install' | 'dist-upgrade';
  /** Names requested by the variant (not by the recipe). */
  variantRoots: string[];
}

/** The priorities whose packages each variant asks for by name (mmdebstrap's meaning). */
export const VARIANT_PRIORITIES: Record<Variant, readonly string[]> = {
  essential: [],
  apt: [],
  minbase: ['required'],
  required: ['required'],
  important: ['required', 'important'],
  standard: ['required', 'important', 'standard'],
};

/** Whether an index belongs to release `release` (by suite, Suite field or Codename). */
export function indexInRelease(index: RepoIndex, release: string | undefined): boolean {
  if (release === undefined) return true;
  return (
    index.repository.suite === release ||
    index.release.suite === release ||
    index.release.codename === release
  );
}

interface ReleaseRoots {
  /** Essential names with a version in the release. */
  essential: string[];
  /** Non-Essential names with a version in the release, by that version's Priority. */
  byPriority: Map<string, Set<string>>;
}

// Per index set (the cached IndexData's array) and release: the roots are a pure function of them.
const rootsCache = new WeakMap<readonly RepoIndex[], Map<string, ReleaseRoots>>();

function releaseRoots(universe: Universe, release: string | undefined): ReleaseRoots {
  const indexes = universe.indexesList();
  let perRelease = rootsCache.get(indexes);
  if (!perRelease) {
    perRelease = new Map();
    rootsCache.set(indexes, perRelease);
  }
  const key = release ?? '';
  const hit = perRelease.get(key);
  if (hit) return hit;
  const essential = new Set<string>();
  const byPriority = new Map<string, Set<string>>();
  for (const index of indexes) {
    if (!indexInRelease(index, release)) continue;
    for (const pkg of index.packages) {
      if (pkg.architecture !== universe.arch && pkg.architecture !== 'all') continue;
      // ?essential is apt's package flag (any version), ?priority the narrowed version's field.
      if (universe.isEssential(pkg.name)) {
        essential.add(pkg.name);
        continue;
      }
      let names = byPriority.get(pkg.priority);
      if (!names) {
        names = new Set();
        byPriority.set(pkg.priority, names);
      }
      names.add(pkg.name);
    }
  }
  const roots = { essential: [...essential], byPriority };
  perRelease.set(key, roots);
  return roots;
}

export function stagesFor(variant: Variant, universe: Universe, release: string | undefined): Stage[] {
  if (variant === 'apt') {
    const roots = [...universe.realNames()].filter((name) => universe.isEssential(name));
    if (universe.isReal('apt') && !roots.includes('apt')) roots.push('apt');
    return [{ kind: 'dist-upgrade', variantRoots: roots }];
  }
  const roots = releaseRoots(universe, release);
  const stages: Stage[] = [{ kind: 'install', variantRoots: roots.essential }];
  const priorities = VARIANT_PRIORITIES[variant];
  if (priorities.length > 0) {
    const names = new Set<string>();
    for (const priority of priorities)
      for (const name of roots.byPriority.get(priority) ?? []) names.add(name);
    stages.push({ kind: 'install', variantRoots: [...names] });
  }
  return stages;
}

import { RootcastError } from '../core/errors.js';
import type { BinaryPackage, RepoIndex } from '../distro/deb/types.js';
import { compareVersions } from '../distro/deb/version.js';
import { closeNames, resolveError, unknownPackageError } from './errors.js';
import { explainFailure, type RootOrigin } from './explain.js';
import { Solver } from './solver.js';
import type { InstalledPackage, Resolution, ResolveRequest } from './types.js';
import { Universe } from './universe.js';
import { indexInRelease, stagesFor } from './variants.js';

/**
 * Resolves a request to the package set mmdebstrap would install for the same variant,
 * packages and indexes (docs/resolver.md). Pure: no I/O, no clock, no randomness; the same
 * input always gives the same output.
 *
 * Throws RootcastError: RESOLVE_UNKNOWN_PACKAGE (exit 2, `details.field`/`index` point at
 * the recipe entry), RESOLVE_UNSATISFIABLE and RESOLVE_CONFLICT (exit 2 when the recipe's
 * install/exclude caused them, 1 when the repositories themselves cannot be satisfied).
 */
export function resolve(request: ResolveRequest, indexes: readonly RepoIndex[]): Resolution {
  const universe = new Universe(indexes, request.arch, new Set(request.exclude));
  request.exclude.forEach((name, index) => {
    if (!universe.isKnown(name)) {
      throw unknownPackageError(name, 'exclude', index, closeNames(name, universe.allNames()));
    }
  });
  const requested = requestedPackages(request, universe);
  const origins = new Map<string, RootOrigin>();
  for (const { pkg, index } of requested) origins.set(pkg.name, { installIndex: index });

  const solver = new Solver(universe);
  if (request.installed) return resolveOnBase(request.installed, requested, solver, universe, origins);
  const stages = stagesFor(request.variant, universe, request.release);
  if (requested.length > 0 && stages.length === 1) stages.push({ kind: 'install', variantRoots: [] });
  stages.forEach((stage, i) => {
    const roots = new Map<string, BinaryPackage>();
    for (const name of stage.variantRoots) {
      const pkg = universe.candidate(name);
      if (pkg) roots.set(name, pkg);
    }
    if (i === stages.length - 1) for (const { pkg } of requested) roots.set(pkg.name, pkg);
    const bad = solver.runStage(stage.kind, [...roots.values()]);
    if (bad.length > 0) {
      // Report the recipe's own packages first: they are the ones the user can change.
      const first = bad.find((pkg) => origins.has(pkg.name)) ?? bad[0]!;
      throw failureError(first.name, solver, universe, origins);
    }
  });
  const broken = solver.brokenPackages();
  if (broken.length > 0) throw failureError(broken[0]!.name, solver, universe, origins);
  const packages = solver.selected().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { packages };
}

/**
 * A child's resolution: the parent's packages are marked as they are (their exact versions
 * become the candidates), then the child's packages are installed on top in one apt run.
 */
function resolveOnBase(
  installed: readonly InstalledPackage[],
  requested: readonly Requested[],
  solver: Solver,
  universe: Universe,
  origins: ReadonlyMap<string, RootOrigin>,
): Resolution {
  const base: BinaryPackage[] = [];
  for (const want of installed) {
    const pkg = universe
      .versionsOf(want.name)
      .find((v) => v.architecture === want.arch && compareVersions(v.version, want.version) === 0);
    if (!pkg) {
      throw new RootcastError({
        code: 'RESOLVE_BASE_UNAVAILABLE',
        message: `the parent template's ${want.name} ${want.version} (${want.arch}) is not in the configured repositories`,
        hint: 'Rebuild the parent from a fresh lock (rootcast lock --update), then the child.',
        exitCode: 1,
        details: { package: want.name, version: want.version },
      });
    }
    universe.setCandidate(pkg);
    base.push(pkg);
  }
  solver.runStage('install', base);
  const bad = solver.runStage(
    'install',
    requested.map((r) => r.pkg),
  );
  if (bad.length > 0) throw failureError(bad[0]!.name, solver, universe, origins);
  const broken = solver.brokenPackages();
  if (broken.length > 0) throw failureError(broken[0]!.name, solver, universe, origins);
  const inBase = new Map(base.map((pkg) => [pkg.name, pkg]));
  const added: BinaryPackage[] = [];
  for (const pkg of solver.selected()) {
    const had = inBase.get(pkg.name);
    if (had === pkg) continue;
    if (had) {
      throw new RootcastError({
        code: 'RESOLVE_BASE_CHANGED',
        message: `the child needs ${pkg.name} ${pkg.version}, but its parent has ${had.version}`,
        hint: 'Rebuild the parent from the same repositories (rootcast lock --update on both), or pin the version.',
        exitCode: 1,
      });
    }
    added.push(pkg);
  }
  return { packages: added.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
}

function failureError(
  name: string,
  solver: Solver,
  universe: Universe,
  origins: ReadonlyMap<string, RootOrigin>,
): RootcastError {
  const chain = solver.chainOf(name);
  const origin = origins.get(chain[0] ?? name) ?? {};
  return explainFailure(name, solver.failureOf(name), solver, universe, origin);
}

interface Requested {
  pkg: BinaryPackage;
  index: number;
}

/** Parses `packages.install` entries (`name`, `name=version`, `name/suite`) into candidates. */
function requestedPackages(request: ResolveRequest, universe: Universe): Requested[] {
  const out: Requested[] = [];
  request.install.forEach((entry, index) => {
    const match = /^([^=/\s]+)(?:=(\S+)|\/(\S+))?$/.exec(entry.trim());
    const name = match?.[1] ?? entry;
    const recipeError = (message: string, hint: string) =>
      resolveError({
        code: 'RESOLVE_UNSATISFIABLE',
        message: `packages.install[${index}]: ${message}`,
        hint,
        byRecipe: true,
        chain: [name],
        rejected: [],
        field: 'install',
        index,
      });
    if (universe.excluded.has(name)) {
      throw recipeError(
        `${name} is both installed and excluded`,
        `Remove '${name}' from one of the two lists.`,
      );
    }
    const versions = universe.versionsOf(name);
    if (versions.length === 0) {
      const providers = universe
        .providersOf(name)
        .filter((e) => universe.candidate(e.pkg.name) === e.pkg)
        .map((e) => e.pkg);
      const unique = [...new Set(providers)];
      if (unique.length === 1 && !match?.[2] && !match?.[3]) {
        out.push({ pkg: unique[0]!, index });
        return;
      }
      if (unique.length > 1) {
        const names = unique.map((p) => p.name).sort();
        throw recipeError(
          `${name} is a virtual package provided by ${names.join(', ')}`,
          `Name one of them in packages.install instead of '${name}'.`,
        );
      }
      throw unknownPackageError(name, 'install', index, closeNames(name, universe.allNames()));
    }
    const version = match?.[2];
    const suite = match?.[3];
    let pkg: BinaryPackage | undefined;
    if (version !== undefined) {
      pkg = versions.find((v) => compareVersions(v.version, version) === 0);
      if (!pkg) {
        const available = [...new Set(versions.map((v) => v.version))].join(', ');
        throw recipeError(
          `no version ${version} of ${name} (available: ${available})`,
          `Use one of: ${available}.`,
        );
      }
    } else if (suite !== undefined) {
      const inSuite = new Set(
        universe
          .indexesList()
          .filter((i) => indexInRelease(i, suite))
          .map((i) => i.id),
      );
      pkg = versions.find((v) => inSuite.has(v.repository));
      if (!pkg) {
        throw recipeError(
          `${name} is not in suite ${suite}`,
          `Add suite ${suite} to the recipe's sources, or drop '/${suite}'.`,
        );
      }
    } else {
      pkg = universe.candidate(name)!;
    }
    universe.setCandidate(pkg);
    out.push({ pkg, index });
  });
  return out;
}

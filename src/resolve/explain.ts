import type { RootcastError } from '../core/errors.js';
import type { BinaryPackage, Relation, RelationGroup } from '../distro/deb/types.js';
import { type Rejection, type ResolveFailureInfo, resolveError } from './errors.js';
import type { Failure, Solver } from './solver.js';
import type { Universe } from './universe.js';

/**
 * Turns a recorded solver failure into one readable sentence with the chain that led to it:
 * `ca-certificates → openssl: openssl depends on libssl3 (>= 3.0.9) but the newest libssl3
 * is 3.0.8-1`. The walk follows the first attempted solution down to the dependency that
 * really failed; every candidate rejected on the way is listed in `details.rejected`.
 */

export interface RootOrigin {
  /** Set when the root came from packages.install: its position there. */
  installIndex?: number;
}

const MAX_DEPTH = 64;

export function formatRelation(rel: Relation): string {
  const name = rel.archQualifier ? `${rel.name}:${rel.archQualifier}` : rel.name;
  return rel.op ? `${name} (${rel.op} ${rel.version})` : name;
}

export function formatGroup(group: RelationGroup): string {
  return group.map(formatRelation).join(' | ');
}

interface Walk {
  chain: string[];
  rejected: Rejection[];
  byRecipe: boolean;
  conflict: boolean;
  hint: string;
}

export function explainFailure(
  rootName: string,
  failure: Failure | undefined,
  solver: Solver,
  universe: Universe,
  origin: RootOrigin,
): RootcastError {
  const walk: Walk = {
    chain: solver.chainOf(rootName),
    rejected: [],
    byRecipe: origin.installIndex !== undefined,
    conflict: false,
    hint: '',
  };
  const text = failure
    ? describe(failure, walk, solver, universe, 0)
    : `${rootName} could not be installed for an unknown reason`;
  const message = walk.chain.length > 1 ? `${walk.chain.join(' → ')}: ${text}` : text;
  const info: ResolveFailureInfo = {
    code: walk.conflict ? 'RESOLVE_CONFLICT' : 'RESOLVE_UNSATISFIABLE',
    message,
    hint:
      walk.hint ||
      (walk.byRecipe
        ? 'Change packages.install or packages.exclude so the dependency can be met.'
        : "Check the recipe's suites and components; the repository may be inconsistent right now."),
    byRecipe: walk.byRecipe,
    chain: walk.chain,
    rejected: walk.rejected,
  };
  if (origin.installIndex !== undefined) {
    info.field = 'install';
    info.index = origin.installIndex;
  }
  return resolveError(info);
}

function describe(failure: Failure, walk: Walk, solver: Solver, universe: Universe, depth: number): string {
  const name = failure.pkg.name;
  switch (failure.kind) {
    case 'excluded':
      walk.byRecipe = true;
      walk.hint = `Remove '${name}' from packages.exclude, or leave out what needs it.`;
      reject(walk, failure.pkg, 'excluded by packages.exclude');
      return `${name} is excluded by packages.exclude`;
    case 'version':
      reject(walk, failure.pkg, `${failure.selected.version} is already selected`);
      return `${name} ${failure.pkg.version} is wanted but ${failure.selected.version} is already selected`;
    case 'conflict': {
      walk.conflict = true;
      const verb = failure.field === 'Conflicts' ? 'conflicts with' : 'breaks';
      const other = failure.owner === failure.pkg ? failure.target : failure.owner;
      const via = solver.isSelected(other.name) ? solver.chainOf(other.name) : [other.name];
      reject(walk, failure.pkg, `${failure.owner.name} ${verb} ${formatRelation(failure.rel)}`);
      walk.hint = `Exclude one of ${failure.pkg.name} and ${other.name} (packages.exclude), or drop what pulls it in.`;
      const selectedVia = via.length > 1 ? ` (${other.name} is selected via ${via.join(' → ')})` : '';
      return `${failure.owner.name} ${verb} ${formatRelation(failure.rel)}${selectedVia}`;
    }
    case 'dependency': {
      const verb = failure.field === 'Pre-Depends' ? 'pre-depends on' : 'depends on';
      const head = `${name} ${verb} ${formatGroup(failure.group)}`;
      if (failure.attempts.length === 0) {
        const reasons = solver.applicable(failure.group).map((rel) => whyNoSolution(rel, walk, universe));
        return `${head} but ${reasons.join(', and ')}`;
      }
      for (const attempt of failure.attempts) {
        const reason = attempt.failure ? shortReason(attempt.failure) : 'could not be installed';
        reject(walk, attempt.candidate, reason);
      }
      const first = failure.attempts.find((a) => a.failure !== undefined);
      if (!first?.failure || depth >= MAX_DEPTH || walk.chain.includes(first.candidate.name)) {
        return `${head} but no candidate could be installed`;
      }
      walk.chain.push(first.candidate.name);
      return describe(first.failure, walk, solver, universe, depth + 1);
    }
  }
}

function shortReason(failure: Failure): string {
  switch (failure.kind) {
    case 'excluded':
      return 'excluded by packages.exclude';
    case 'version':
      return `${failure.selected.version} is already selected`;
    case 'conflict':
      return `${failure.owner.name} ${failure.field === 'Conflicts' ? 'conflicts with' : 'breaks'} ${formatRelation(failure.rel)}`;
    case 'dependency':
      return `its dependency ${formatGroup(failure.group)} cannot be met`;
  }
}

function reject(walk: Walk, pkg: BinaryPackage, reason: string): void {
  walk.rejected.push({ package: pkg.name, version: pkg.version, reason });
}

/** Why no candidate at all satisfies `rel`. */
function whyNoSolution(rel: Relation, walk: Walk, universe: Universe): string {
  const name = rel.name;
  const q = rel.archQualifier;
  if (q !== undefined && q !== 'any' && q !== 'native' && q !== universe.arch) {
    walk.hint ||= `Only ${universe.arch} packages are installed; the dependency needs architecture ${q}.`;
    return `${name}:${q} needs architecture ${q}, which is not configured`;
  }
  if (universe.excluded.has(name)) {
    walk.byRecipe = true;
    walk.hint = `Remove '${name}' from packages.exclude, or leave out what needs it.`;
    return `${name} is excluded by packages.exclude`;
  }
  const candidate = universe.candidate(name);
  const providers = universe
    .providersOf(name)
    .filter((e) => universe.candidate(e.pkg.name) === e.pkg)
    .map((e) => (e.provide.version ? `${e.pkg.name} (= ${e.provide.version})` : e.pkg.name));
  const provided = providers.length > 0 ? ` (provided by ${providers.join(', ')})` : '';
  if (candidate) {
    if (!universe.archAllows(rel, candidate)) {
      walk.rejected.push({
        package: name,
        version: candidate.version,
        reason: `Multi-Arch: ${candidate.multiArch}`,
      });
      return `${name} is Multi-Arch: ${candidate.multiArch}, not allowed, so ${name}:any cannot be met`;
    }
    walk.rejected.push({
      package: name,
      version: candidate.version,
      reason: `does not satisfy ${formatRelation(rel)}`,
    });
    walk.hint ||= `Add the suite that carries a newer ${name} (updates, security, backports) to the recipe's sources.`;
    return `the newest ${name} is ${candidate.version}${provided}`;
  }
  if (providers.length > 0) {
    return `${name} is a virtual package and no provider satisfies ${formatRelation(rel)}${provided}`;
  }
  if (universe.isForeignOnly(name))
    return `${name} exists only for other architectures than ${universe.arch}`;
  walk.hint ||= `Add the suite or component that carries ${name} to the recipe's sources.`;
  return `no package ${name} exists in the configured repositories`;
}

import { relationTargets } from '../distro/deb/packages-index.js';
import type { BinaryPackage, Provide, Relation, RepoIndex } from '../distro/deb/types.js';
import { compareVersions, versionSatisfies } from '../distro/deb/version.js';
import { NameOrder } from './name-order.js';

/**
 * Everything the solver may install: for each package name its versions (native
 * architecture and `all` only), the candidate apt would pick, and who provides each name.
 */

/** One Provides entry of one package version. */
export interface ProviderEntry {
  pkg: BinaryPackage;
  provide: Provide;
}

// apt's numeric priorities (pkgCache::State::VerPriority): lower sorts first.
const PRIORITY_RANK: Record<string, number> = {
  required: 1,
  important: 2,
  standard: 3,
  optional: 4,
  extra: 5,
};

export function priorityRank(priority: string): number {
  return PRIORITY_RANK[priority] ?? 0;
}

/**
 * What a set of indexes says, independent of any request: built once per (indexes, arch)
 * and cached (indexes are immutable), so repeated resolves over the same indexes skip it.
 */
export interface IndexData {
  readonly arch: string;
  readonly indexes: readonly RepoIndex[];
  /** Versions per name (native and `all`), best first: pin, then version, then index order. */
  readonly versions: ReadonlyMap<string, readonly BinaryPackage[]>;
  /** Provides entries per provided name, from every version. */
  readonly providers: ReadonlyMap<string, readonly ProviderEntry[]>;
  /** Names with any version marked `Essential: yes`: apt's package-level Essential flag. */
  readonly essential: ReadonlySet<string>;
  /**
   * apt's package IDs: the order in which its cache generator first meets each name while
   * reading the indexes (the package, then its relation targets, then its provides). apt
   * breaks ties between providers with it and resolves requested packages in it.
   */
  readonly order: NameOrder;
  /** Names seen only in stanzas of other architectures. */
  readonly foreign: ReadonlySet<string>;
}

const cache = new WeakMap<RepoIndex, IndexData[]>();

export function indexData(indexes: readonly RepoIndex[], arch: string): IndexData {
  const first = indexes[0];
  const hits = first ? (cache.get(first) ?? []) : [];
  const hit = hits.find(
    (d) =>
      d.arch === arch && d.indexes.length === indexes.length && d.indexes.every((x, i) => x === indexes[i]),
  );
  if (hit) return hit;
  const data = buildIndexData(indexes, arch);
  if (first) cache.set(first, [...hits, data]);
  return data;
}

function buildIndexData(indexes: readonly RepoIndex[], arch: string): IndexData {
  const versions = new Map<string, BinaryPackage[]>();
  const providers = new Map<string, ProviderEntry[]>();
  const essential = new Set<string>();
  // Debian main: ~1.6 distinct names (packages and relation targets) per package.
  const order = new NameOrder(2 * indexes.reduce((n, index) => n + index.packages.length, 0));
  const foreign = new Set<string>();
  const pins = new Map<string, number>();
  for (const index of indexes) {
    pins.set(index.id, index.pin);
    for (const pkg of index.packages) {
      if (pkg.architecture !== arch && pkg.architecture !== 'all') {
        foreign.add(pkg.name);
        continue;
      }
      const list = versions.get(pkg.name);
      if (list) list.push(pkg);
      else {
        versions.set(pkg.name, [pkg]);
        order.add(pkg.name, 0, pkg.name.length);
      }
      if (pkg.essential) essential.add(pkg.name);
      // Names only, in debListParser::NewVersion's field order: parsing every relation of
      // every package would cost more than the whole solve.
      relationTargets(pkg, order);
      const provides = pkg.provides;
      for (const provide of provides) {
        const entry = { pkg, provide };
        const entries = providers.get(provide.name);
        if (entries) entries.push(entry);
        else providers.set(provide.name, [entry]);
      }
    }
  }
  const pinOf = (pkg: BinaryPackage) => pins.get(pkg.repository) ?? 500;
  for (const list of versions.values()) {
    // apt's policy: highest pin, then highest version; a stable sort keeps index order on ties.
    if (list.length > 1) list.sort((a, b) => pinOf(b) - pinOf(a) || compareVersions(b.version, a.version));
  }
  return { arch, indexes, versions, providers, essential, order, foreign };
}

/**
 * One request's view of the indexes: `IndexData` plus the request's exclusions and version
 * overrides. Invariants: an excluded name has no candidate and so provides nothing;
 * `setCandidate` (for `name=version` requests) happens before solving starts.
 */
export class Universe {
  readonly arch: string;
  readonly excluded: ReadonlySet<string>;
  private readonly data: IndexData;
  private readonly overrides = new Map<string, BinaryPackage>();

  constructor(indexes: readonly RepoIndex[], arch: string, excluded: ReadonlySet<string>) {
    this.arch = arch;
    this.excluded = excluded;
    this.data = indexData(indexes, arch);
  }

  /** The version apt would install for `name`, or undefined (unknown, virtual or excluded). */
  candidate(name: string): BinaryPackage | undefined {
    if (this.excluded.has(name)) return undefined;
    return this.overrides.get(name) ?? this.data.versions.get(name)?.[0];
  }

  /** Makes `pkg` the candidate of its name, as `apt-get install name=version` does. */
  setCandidate(pkg: BinaryPackage): void {
    this.overrides.set(pkg.name, pkg);
  }

  /** Every version of a real package name (best first), or an empty list. */
  versionsOf(name: string): readonly BinaryPackage[] {
    return this.data.versions.get(name) ?? [];
  }

  isReal(name: string): boolean {
    return this.data.versions.has(name);
  }

  isForeignOnly(name: string): boolean {
    return this.data.foreign.has(name) && !this.data.versions.has(name);
  }

  isEssential(name: string): boolean {
    return this.data.essential.has(name);
  }

  /** Provides entries naming `name`, from any version (filter by candidacy at use). */
  providersOf(name: string): readonly ProviderEntry[] {
    return this.data.providers.get(name) ?? [];
  }

  /** Whether `name` is known at all: a real package, a provided name or a foreign-only package. */
  isKnown(name: string): boolean {
    return this.data.versions.has(name) || this.data.providers.has(name) || this.data.foreign.has(name);
  }

  /** All real and virtual names, for "did you mean" suggestions. */
  *allNames(): Iterable<string> {
    yield* this.data.versions.keys();
    for (const name of this.data.providers.keys()) if (!this.data.versions.has(name)) yield name;
  }

  realNames(): Iterable<string> {
    return this.data.versions.keys();
  }

  indexesList(): readonly RepoIndex[] {
    return this.data.indexes;
  }

  /** apt's package ID of `name` (see IndexData.order). */
  order(name: string): number {
    return this.data.order.get(name) ?? Number.MAX_SAFE_INTEGER;
  }

  /** Whether the architecture qualifier of `rel` lets `pkg` (native or `all`) satisfy it. */
  archAllows(rel: Relation, pkg: BinaryPackage): boolean {
    const q = rel.archQualifier;
    if (q === undefined || q === 'native' || q === this.arch) return true;
    // `name:any` asks for a package that may satisfy dependencies across architectures.
    if (q === 'any') return pkg.multiArch === 'allowed';
    return false;
  }

  /** Whether `pkg` (this exact version) satisfies `rel` by name and version. */
  satisfiesDirectly(rel: Relation, pkg: BinaryPackage): boolean {
    if (pkg.name !== rel.name || !this.archAllows(rel, pkg)) return false;
    return rel.op === undefined || versionSatisfies(pkg.version, rel.op, rel.version!);
  }

  /**
   * Whether a Provides entry satisfies `rel`: unversioned relations take any provide,
   * versioned ones only a versioned provide that meets them (dpkg >= 1.17.11 semantics).
   */
  provideSatisfies(rel: Relation, entry: ProviderEntry): boolean {
    if (!this.archAllows(rel, entry.pkg)) return false;
    if (rel.op === undefined) return true;
    return (
      entry.provide.version !== undefined && versionSatisfies(entry.provide.version, rel.op, rel.version!)
    );
  }

  /**
   * The candidate versions that satisfy `rel` (apt's `FromDependency(CANDIDATE)`): the
   * target's candidate when it matches, then every provider whose candidate is the
   * providing version. Unsorted; the solver orders them.
   */
  solutionsOf(rel: Relation): BinaryPackage[] {
    const out: BinaryPackage[] = [];
    const target = this.candidate(rel.name);
    if (target && this.satisfiesDirectly(rel, target)) out.push(target);
    const providers = this.data.providers.get(rel.name);
    if (providers) {
      for (const entry of providers) {
        if (this.candidate(entry.pkg.name) !== entry.pkg) continue;
        if (this.provideSatisfies(rel, entry) && !out.includes(entry.pkg)) out.push(entry.pkg);
      }
    }
    return out;
  }
}

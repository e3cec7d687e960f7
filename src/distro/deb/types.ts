/**
 * The data model of a Debian-style repository, as rootcast reads it.
 *
 * Lifecycle: the repository client (`repository.ts`) fetches and verifies a suite's
 * InRelease, then each component's Packages index, and parses them into one `RepoIndex`
 * per (source, suite, component). Indexes are immutable once built; the resolver reads
 * them and never does I/O. Every `BinaryPackage` keeps the `repository` id of the index it
 * came from, so the lock can say where each package was found.
 */

/** One relation atom: `name[:archqual] [(op version)]`. */
export interface Relation {
  name: string;
  /** Architecture qualifier after `:` (`any`, `native` or an architecture name). */
  archQualifier?: string;
  op?: VersionOp;
  version?: string;
  /** Restriction list `[amd64 !i386]`, when the field carried one (source-style fields). */
  archRestriction?: string[];
}

export type VersionOp = '<<' | '<=' | '=' | '>=' | '>>';

/** A list of alternatives, `a | b (>= 1) | c`: satisfied when any one atom is. */
export type RelationGroup = Relation[];

export interface Provide {
  name: string;
  /** Only `=` is allowed in Provides; undefined for an unversioned provide. */
  version?: string;
}

export type MultiArch = 'no' | 'same' | 'foreign' | 'allowed';

/**
 * One stanza of a binary Packages index. Records from `parsePackagesIndex` are class
 * instances whose relation fields (`preDepends` … `provides`) are getters: each parses its
 * field on first read, keeps the result, and throws `INDEX_MALFORMED` (naming the package
 * and field) there when the field is unreadable. So read relation fields through the
 * record: spreading or cloning one (`{ ...pkg }`, `structuredClone`) copies only the plain
 * fields and loses the relations. Tests and other producers may pass plain objects.
 */
export interface BinaryPackage {
  name: string;
  version: string;
  /** The Architecture field: `all` or a real architecture. */
  architecture: string;
  multiArch: MultiArch;
  essential: boolean;
  /** The Priority field, lower-cased; `optional` when absent (dpkg's default). */
  priority: string;
  section?: string;
  source?: string;
  /** Relation fields: parsed on first read for indexed records (see above); `[]` when absent. */
  preDepends: RelationGroup[];
  depends: RelationGroup[];
  recommends: RelationGroup[];
  conflicts: Relation[];
  breaks: Relation[];
  provides: Provide[];
  /** Path of the .deb relative to the repository root (`pool/main/…`). */
  filename: string;
  size: number;
  /** Lower-case hex, from the index's SHA256 field. */
  sha256: string;
  /** `RepoIndex.id` of the index this stanza came from. */
  repository: string;
}

/** The facts taken from a verified Release/InRelease file. */
export interface ReleaseInfo {
  /** sha256 (hex) of the exact InRelease (or Release) bytes that were verified. */
  sha256: string;
  /** The Date field, as an ISO 8601 string. */
  date: string;
  validUntil?: string;
  suite?: string;
  codename?: string;
  origin?: string;
  label?: string;
  notAutomatic: boolean;
  butAutomaticUpgrades: boolean;
  acquireByHash: boolean;
  architectures: string[];
  components: string[];
  /** Files listed under SHA256: path → size and hex digest. */
  files: Map<string, { size: number; sha256: string }>;
}

export interface RepositoryRef {
  /** Stable, readable id: `<suite>/<component>` (unique within one recipe). */
  id: string;
  /**
   * The source URI as the recipe writes it, before mirror variables are filled in
   * (`{{mirror.debian}}`), so locks and digests do not depend on which mirror was used.
   */
  uriTemplate: string;
  /** The URI actually used to reach the repository (rendered). */
  uri: string;
  suite: string;
  component: string;
  arch: string;
}

export interface RepoIndex {
  id: string;
  repository: RepositoryRef;
  release: ReleaseInfo;
  /**
   * apt's default pin priority for this index: 500, or 1 for NotAutomatic suites, 100 for
   * NotAutomatic + ButAutomaticUpgrades.
   */
  pin: number;
  packages: BinaryPackage[];
}

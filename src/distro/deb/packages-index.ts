import { describeError, RootcastError } from '../../core/errors.js';
import { Deb822RecordReader } from './deb822.js';
import {
  type NameSink,
  parseProvides,
  parseRelationGroups,
  parseRelationList,
  type RelationParseOptions,
  relationNames,
} from './relations.js';
import type { BinaryPackage, MultiArch, Provide, Relation, RelationGroup } from './types.js';

// Only what BinaryPackage holds: Description, Maintainer, Tag and the other checksums are
// over half of an index and are never sliced or stored. The order fixes the slot numbers.
const FIELDS = [
  'package',
  'version',
  'architecture',
  'multi-arch',
  'essential',
  'priority',
  'section',
  'source',
  'pre-depends',
  'depends',
  'recommends',
  'conflicts',
  'breaks',
  'provides',
  'filename',
  'size',
  'sha256',
] as const;

/**
 * Turns a binary Packages index (already verified against its Release file and
 * decompressed) into `BinaryPackage` records, in index order.
 *
 * Every stanza must name its package, version, architecture, `.deb` path, size and SHA256:
 * a stanza that cannot be fetched and verified is useless to the lock, so its absence is
 * `INDEX_MALFORMED` (naming the package) rather than a silent skip. Values are normalised
 * the way dpkg and apt read them: Priority lower-cased and `optional` when absent, Multi-Arch
 * `no` when absent, Essential true only for `yes`. `source` is the Source field as written
 * (it may carry a version, `glibc (2.36-9)`), or undefined when the source has the package's
 * own name. Relation fields that are not present become empty arrays.
 *
 * Relation fields are parsed lazily: each record keeps the field's text and parses it the
 * first time it is read (then keeps the result), because a resolve reads the relations of
 * a few hundred of an index's ~60k packages. So a syntax error in a relation field is
 * thrown as `INDEX_MALFORMED` (naming the package and field) by the property access that
 * first reads it, not by the parser, and a package whose relations are never read is
 * never checked. `relationTargets` reads the names a package relates to without parsing
 * (all the resolver needs from most packages).
 *
 * Lifecycle: `write` the index's bytes in order, in chunks of any size (as they come out of
 * the decompressor; a chunk may be reused once `write` returns), then call `end` once for
 * the records. Memory: a record holds only the fields above, each a string of its own, and
 * the few distinct values of Architecture, Priority and Section are shared, so the parser
 * never holds the index text beyond the current paragraph. Bytes are read one character per
 * byte (latin1): every field kept is ASCII by Debian policy; only Description and
 * Maintainer carry UTF-8, and they are never decoded.
 */
export class PackagesIndexParser {
  readonly #packages: BinaryPackage[] = [];
  readonly #reader: Deb822RecordReader;

  constructor(repositoryId: string, encoding: 'latin1' | 'utf8' = 'latin1') {
    const packages = this.#packages;
    const shared = new Map<string, string>();
    this.#reader = new Deb822RecordReader(
      `Packages index of ${repositoryId}`,
      FIELDS,
      (v, line) => {
        packages.push(toBinaryPackage(v, repositoryId, line, shared));
      },
      encoding,
    );
  }

  write(chunk: Uint8Array): void {
    this.#reader.write(chunk);
  }

  end(): BinaryPackage[] {
    this.#reader.end();
    return this.#packages;
  }
}

/** Parses a whole index held in memory; a string is read as the text it is (UTF-16). */
export function parsePackagesIndex(text: string | Uint8Array, repositoryId: string): BinaryPackage[] {
  const parser = new PackagesIndexParser(repositoryId, typeof text === 'string' ? 'utf8' : 'latin1');
  parser.write(typeof text === 'string' ? Buffer.from(text, 'utf8') : text);
  return parser.end();
}

/**
 * Hands `sink` every name `pkg` names in its relations, in the order apt's
 * debListParser::NewVersion reads them: Pre-Depends, Depends, Conflicts, Breaks,
 * Recommends, then Provides; a name may come more than once. For records from
 * `parsePackagesIndex` this reads the field text without parsing it (and without
 * reporting syntax errors: reading the field itself does that).
 */
export function relationTargets(pkg: BinaryPackage, sink: NameSink): void {
  if (IndexPackage.visitTargets(pkg, sink)) return;
  targetsOf(pkg.preDepends, sink);
  targetsOf(pkg.depends, sink);
  targetsOf(pkg.conflicts, sink);
  targetsOf(pkg.breaks, sink);
  targetsOf(pkg.recommends, sink);
  targetsOf(pkg.provides, sink);
}

function toBinaryPackage(
  v: readonly (string | undefined)[],
  repositoryId: string,
  line: number,
  shared: Map<string, string>,
): BinaryPackage {
  const name = v[0];
  if (!name) throw malformed(repositoryId, `the stanza at line ${line}`, 'has no Package field');
  const version = v[1] || missing(repositoryId, name, 'Version');
  const architecture = v[2] || missing(repositoryId, name, 'Architecture');
  const filename = v[14] || missing(repositoryId, name, 'Filename');
  const sizeText = v[15] || missing(repositoryId, name, 'Size');
  const sha256 = (v[16] || missing(repositoryId, name, 'SHA256')).toLowerCase();
  const size = parseSize(sizeText);
  if (size < 0) throw malformed(repositoryId, name, `has an invalid Size '${sizeText}'`);
  if (!isSha256(sha256)) throw malformed(repositoryId, name, `has an invalid SHA256 '${sha256}'`);
  return new IndexPackage(
    v,
    name,
    version,
    share(shared, architecture),
    parseMultiArch(v[3], repositoryId, name),
    filename,
    size,
    sha256,
    repositoryId,
    shared,
  );
}

// Architecture, Priority and Section take a few dozen values over ~60k records: one string
// each instead of one per record. Bounded so hostile input cannot grow it without limit.
const SHARED_LIMIT = 1024;

function share(shared: Map<string, string>, value: string): string {
  const known = shared.get(value);
  if (known !== undefined) return known;
  if (shared.size < SHARED_LIMIT) shared.set(value, value);
  return value;
}

/**
 * A `BinaryPackage` read from an index. Its own enumerable properties are exactly the
 * interface's plain fields; the relation fields are getters over private slots that hold
 * the field's text until the first read and the parsed value after it, so records compare
 * and serialise like plain objects apart from the relation fields, which must be read.
 */
class IndexPackage implements BinaryPackage {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
  readonly multiArch: MultiArch;
  readonly essential: boolean;
  readonly priority: string;
  declare readonly section?: string;
  declare readonly source?: string;
  readonly filename: string;
  readonly size: number;
  readonly sha256: string;
  readonly repository: string;
  #preDepends: string | RelationGroup[] | undefined;
  #depends: string | RelationGroup[] | undefined;
  #recommends: string | RelationGroup[] | undefined;
  #conflicts: string | Relation[] | undefined;
  #breaks: string | Relation[] | undefined;
  #provides: string | Provide[] | undefined;

  constructor(
    v: readonly (string | undefined)[],
    name: string,
    version: string,
    architecture: string,
    multiArch: MultiArch,
    filename: string,
    size: number,
    sha256: string,
    repository: string,
    shared: Map<string, string>,
  ) {
    this.name = name;
    this.version = version;
    this.architecture = architecture;
    this.multiArch = multiArch;
    this.essential = v[4] !== undefined && v[4].toLowerCase() === 'yes';
    this.priority = v[5] ? share(shared, v[5].toLowerCase()) : 'optional';
    this.filename = filename;
    this.size = size;
    this.sha256 = sha256;
    this.repository = repository;
    if (v[6]) (this as { section?: string }).section = share(shared, v[6]);
    if (v[7]) (this as { source?: string }).source = v[7];
    this.#preDepends = v[8] || undefined;
    this.#depends = v[9] || undefined;
    this.#recommends = v[10] || undefined;
    this.#conflicts = v[11] || undefined;
    this.#breaks = v[12] || undefined;
    this.#provides = v[13] || undefined;
  }

  get preDepends(): RelationGroup[] {
    if (!Array.isArray(this.#preDepends)) this.#preDepends = this.parse(PRE_DEPENDS, this.#preDepends);
    return this.#preDepends;
  }

  get depends(): RelationGroup[] {
    if (!Array.isArray(this.#depends)) this.#depends = this.parse(DEPENDS, this.#depends);
    return this.#depends;
  }

  get recommends(): RelationGroup[] {
    if (!Array.isArray(this.#recommends)) this.#recommends = this.parse(RECOMMENDS, this.#recommends);
    return this.#recommends;
  }

  get conflicts(): Relation[] {
    if (!Array.isArray(this.#conflicts)) this.#conflicts = this.parse(CONFLICTS, this.#conflicts);
    return this.#conflicts;
  }

  get breaks(): Relation[] {
    if (!Array.isArray(this.#breaks)) this.#breaks = this.parse(BREAKS, this.#breaks);
    return this.#breaks;
  }

  get provides(): Provide[] {
    if (!Array.isArray(this.#provides)) this.#provides = this.parse(PROVIDES, this.#provides);
    return this.#provides;
  }

  private parse<T>(field: FieldParser<T>, text: string | undefined): T[] {
    if (text === undefined) return [];
    try {
      return field.parse(text, field.options);
    } catch (error) {
      throw malformed(
        this.repository,
        this.name,
        `has an unreadable ${field.options.field} field (${describeError(error)})`,
        error,
      );
    }
  }

  /** `relationTargets` for records of this class; false for any other object. */
  static visitTargets(pkg: BinaryPackage, sink: NameSink): boolean {
    if (!(#depends in pkg)) return false;
    const p = pkg as IndexPackage;
    targetsOf(p.#preDepends, sink);
    targetsOf(p.#depends, sink);
    targetsOf(p.#conflicts, sink);
    targetsOf(p.#breaks, sink);
    targetsOf(p.#recommends, sink);
    targetsOf(p.#provides, sink);
    return true;
  }
}

/** Names in a relation slot: from the text while unparsed, from the records once parsed. */
function targetsOf(
  slot: string | readonly (Relation | Provide | RelationGroup)[] | undefined,
  sink: NameSink,
): void {
  if (slot === undefined) return;
  if (typeof slot === 'string') {
    relationNames(slot, sink);
    return;
  }
  for (const item of slot) {
    if (Array.isArray(item)) for (const rel of item) sink.add(rel.name, 0, rel.name.length);
    else {
      const { name } = item as Relation | Provide;
      sink.add(name, 0, name.length);
    }
  }
}

interface FieldParser<T> {
  parse: (value: string, options: RelationParseOptions) => T[];
  options: RelationParseOptions & { field: string };
}

const PRE_DEPENDS: FieldParser<RelationGroup> = {
  parse: parseRelationGroups,
  options: { field: 'Pre-Depends' },
};
const DEPENDS: FieldParser<RelationGroup> = { parse: parseRelationGroups, options: { field: 'Depends' } };
const RECOMMENDS: FieldParser<RelationGroup> = {
  parse: parseRelationGroups,
  options: { field: 'Recommends' },
};
const CONFLICTS: FieldParser<Relation> = { parse: parseRelationList, options: { field: 'Conflicts' } };
const BREAKS: FieldParser<Relation> = { parse: parseRelationList, options: { field: 'Breaks' } };
const PROVIDES: FieldParser<Provide> = { parse: parseProvides, options: { field: 'Provides' } };

function missing(repositoryId: string, name: string, field: string): never {
  throw malformed(repositoryId, name, `has no ${field} field`);
}

function parseMultiArch(value: string | undefined, repositoryId: string, name: string): MultiArch {
  if (value === undefined) return 'no';
  const lower = value.toLowerCase();
  if (lower === 'same' || lower === 'foreign' || lower === 'allowed' || lower === 'no') return lower;
  throw malformed(repositoryId, name, `has an unknown Multi-Arch value '${value}'`);
}

/** Decimal digits only (no sign, no exponent), at most 2^53; -1 when invalid. */
function parseSize(text: string): number {
  if (text.length === 0 || text.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

function isSha256(hex: string): boolean {
  if (hex.length !== 64) return false;
  for (let i = 0; i < 64; i++) {
    const c = hex.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function malformed(repositoryId: string, what: string, reason: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'INDEX_MALFORMED',
    message: `Packages index of ${repositoryId}: ${what} ${reason}`,
    hint: 'The repository serves a broken index; try another mirror or report it to the repository owner.',
    cause,
    details: { repository: repositoryId, package: what, reason },
  });
}

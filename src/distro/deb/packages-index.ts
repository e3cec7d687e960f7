import { describeError, RootcastError } from '../../core/errors.js';
import { scanDeb822Records } from './deb822.js';
import {
  parseProvides,
  parseRelationGroups,
  parseRelationList,
  type RelationParseOptions,
} from './relations.js';
import type { BinaryPackage, MultiArch } from './types.js';

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
 * Turns the text of a binary Packages index (already verified against its Release file and
 * decompressed) into `BinaryPackage` records, in index order.
 *
 * Every stanza must name its package, version, architecture, `.deb` path, size and SHA256:
 * a stanza that cannot be fetched and verified is useless to the lock, so its absence is
 * `INDEX_MALFORMED` (naming the package) rather than a silent skip. Values are normalised
 * the way dpkg and apt read them: Priority lower-cased and `optional` when absent, Multi-Arch
 * `no` when absent, Essential true only for `yes`. `source` is the Source field as written
 * (it may carry a version, `glibc (2.36-9)`), or undefined when the source has the package's
 * own name. Relation fields that are not present become empty arrays.
 */
export function parsePackagesIndex(text: string, repositoryId: string): BinaryPackage[] {
  const packages: BinaryPackage[] = [];
  const parsers = relationParsers();
  scanDeb822Records(text, `Packages index of ${repositoryId}`, FIELDS, (v, line) => {
    packages.push(toBinaryPackage(v, repositoryId, line, parsers));
  });
  return packages;
}

function toBinaryPackage(
  v: readonly (string | undefined)[],
  repositoryId: string,
  line: number,
  parsers: RelationParsers,
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

  const pkg: BinaryPackage = {
    name: name,
    version: version,
    architecture: architecture,
    multiArch: parseMultiArch(v[3], repositoryId, name),
    essential: v[4] !== undefined && v[4].toLowerCase() === 'yes',
    priority: v[5] ? v[5].toLowerCase() : 'optional',
    preDepends: v[8] ? parsers.preDepends(v[8], repositoryId, name) : [],
    depends: v[9] ? parsers.depends(v[9], repositoryId, name) : [],
    recommends: v[10] ? parsers.recommends(v[10], repositoryId, name) : [],
    conflicts: v[11] ? parsers.conflicts(v[11], repositoryId, name) : [],
    breaks: v[12] ? parsers.breaks(v[12], repositoryId, name) : [],
    provides: v[13] ? parsers.provides(v[13], repositoryId, name) : [],
    filename,
    size,
    sha256,
    repository: repositoryId,
  };
  if (v[6]) pkg.section = v[6];
  if (v[7]) pkg.source = v[7];
  return pkg;
}

type FieldParser<T> = (value: string, repositoryId: string, name: string) => T[];
type RelationParsers = ReturnType<typeof relationParsers>;

/** One parser per relation field, each with its options object built once per index. */
function relationParsers() {
  const parser = <T>(
    field: string,
    parse: (value: string, options: RelationParseOptions) => T[],
  ): FieldParser<T> => {
    const options: RelationParseOptions = { field };
    return (value, repositoryId, name) => {
      try {
        return parse(value, options);
      } catch (error) {
        throw malformed(
          repositoryId,
          name,
          `has an unreadable ${field} field (${describeError(error)})`,
          error,
        );
      }
    };
  };
  return {
    preDepends: parser('Pre-Depends', parseRelationGroups),
    depends: parser('Depends', parseRelationGroups),
    recommends: parser('Recommends', parseRelationGroups),
    conflicts: parser('Conflicts', parseRelationList),
    breaks: parser('Breaks', parseRelationList),
    provides: parser('Provides', parseProvides),
  };
}

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

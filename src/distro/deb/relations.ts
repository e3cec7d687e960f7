import { RootcastError } from '../../core/errors.js';
import type { Provide, Relation, RelationGroup, VersionOp } from './types.js';

/**
 * Parsers for the relationship fields of a binary stanza (Depends, Pre-Depends, Recommends,
 * Suggests, Conflicts, Breaks, Provides), following deb-control(5) and dpkg's `f_dependency`:
 *
 *   field  := group ("," group)*          group := atom ("|" atom)*
 *   atom   := name [":" archqual] ["(" op version ")"] ["[" arch+ "]"] ("<" profile+ ">")*
 *
 * Blanks and newlines may appear anywhere between tokens (`name(>=1.0)` and
 * `name ( >= 1.0 )` are the same). The obsolete operators `<` and `>` mean `<=` and `>=`, as
 * dpkg reads them, and are normalised here so nothing downstream sees them. Build-profile
 * lists are parsed and dropped: binary indexes never depend on them. Empty groups (from a
 * trailing comma) are skipped. A syntax error throws `RELATION_INVALID`; callers that know
 * the package wrap it with that context. Version strings are taken as written, not
 * validated: `compareVersions` rejects the ones dpkg could not compare when they are used.
 *
 * The scanner is a hand-written loop over char codes: the solver parses every relation of
 * every stanza of every index it loads.
 */

const SPACE = 32;
const TAB = 9;
const LF = 10;
const CR = 13;
const COMMA = 44;
const PIPE = 124;
const COLON = 58;
const LPAREN = 40;
const RPAREN = 41;
const LBRACKET = 91;
const RBRACKET = 93;
const LT = 60;
const GT = 62;
const EQ = 61;

function isSpace(c: number): boolean {
  return c === SPACE || c === TAB || c === LF || c === CR;
}

/** Ends a bare word: blanks and every punctuation mark of the grammar. */
function isDelimiter(c: number): boolean {
  return (
    isSpace(c) ||
    c === COMMA ||
    c === PIPE ||
    c === COLON ||
    c === LPAREN ||
    c === RPAREN ||
    c === LBRACKET ||
    c === RBRACKET ||
    c === LT ||
    c === GT
  );
}

function invalid(field: string, value: string, reason: string): RootcastError {
  return new RootcastError({
    code: 'RELATION_INVALID',
    message: `invalid ${field} field '${value.length > 120 ? value.slice(0, 117) + '...' : value}': ${reason}`,
    hint: 'Relations are written "name[:arch] [(op version)] | alt, ..." with op one of << <= = >= >>.',
    details: { field, value, reason },
  });
}

/** How to parse one field value. */
export interface RelationParseOptions {
  /** Field name for error messages; defaults to the field the function is named for. */
  field?: string;
  /** Whether `[arch …]` restrictions are accepted; default true (never for Provides). */
  allowArchRestrictions?: boolean;
}

/** A single-use cursor over one field value. */
class Scanner {
  pos = 0;
  readonly end: number;

  readonly field: string;
  readonly allowRestrictions: boolean;

  constructor(
    readonly text: string,
    options: RelationParseOptions,
    defaultField: string,
  ) {
    this.end = text.length;
    this.field = options.field ?? defaultField;
    this.allowRestrictions = options.allowArchRestrictions ?? true;
  }

  skipSpace(): number {
    const { text, end } = this;
    let pos = this.pos;
    while (pos < end && isSpace(text.charCodeAt(pos))) pos++;
    this.pos = pos;
    return pos < end ? text.charCodeAt(pos) : -1;
  }

  word(what: string): string {
    const { text, end } = this;
    const start = this.pos;
    let pos = start;
    while (pos < end && !isDelimiter(text.charCodeAt(pos))) pos++;
    if (pos === start) throw this.fail(`expected ${what} at offset ${start}`);
    this.pos = pos;
    return text.slice(start, pos);
  }

  /** A version runs to the next blank or `)`: unlike names it may hold `:` (epochs). */
  version(): string {
    const { text, end } = this;
    const start = this.pos;
    let pos = start;
    for (; pos < end; pos++) {
      const c = text.charCodeAt(pos);
      if (c === RPAREN || isSpace(c) || c === LPAREN) break;
    }
    if (pos === start) throw this.fail(`expected a version at offset ${start}`);
    this.pos = pos;
    return text.slice(start, pos);
  }

  fail(reason: string): RootcastError {
    return invalid(this.field, this.text, reason);
  }

  /** Reads one atom; the cursor is left on the first non-blank after it. */
  relation(): Relation {
    const name = this.word('a package name');
    let archQualifier: string | undefined;
    let op: VersionOp | undefined;
    let version: string | undefined;
    let archRestriction: string[] | undefined;
    let c = this.skipSpace();
    if (c === COLON) {
      this.pos++;
      this.skipSpace();
      archQualifier = this.word('an architecture qualifier');
      c = this.skipSpace();
    }
    if (c === LPAREN) {
      this.pos++;
      this.skipSpace();
      op = this.op();
      this.skipSpace();
      version = this.version();
      if (this.skipSpace() !== RPAREN) throw this.fail(`expected ')' after version of ${name}`);
      this.pos++;
      c = this.skipSpace();
    }
    if (c === LBRACKET) {
      if (!this.allowRestrictions)
        throw this.fail(`architecture restrictions are not allowed here (${name})`);
      this.pos++;
      archRestriction = [];
      while (this.skipSpace() !== RBRACKET) {
        if (this.pos >= this.end) throw this.fail(`unterminated '[' after ${name}`);
        archRestriction.push(this.word('an architecture'));
      }
      if (archRestriction.length === 0) throw this.fail(`empty architecture restriction after ${name}`);
      this.pos++;
      c = this.skipSpace();
    }
    while (c === LT) {
      // Build profiles (`<!nocheck> <stage1 cross>`): only meaningful when building from
      // source, so they are validated for shape and dropped.
      this.pos++;
      let terms = 0;
      while (this.skipSpace() !== GT) {
        if (this.pos >= this.end) throw this.fail(`unterminated '<' after ${name}`);
        this.word('a build profile');
        terms++;
      }
      if (terms === 0) throw this.fail(`empty build profile list after ${name}`);
      this.pos++;
      c = this.skipSpace();
    }
    // Built in one literal, with absent parts left out, so the common shapes stay few.
    if (archQualifier === undefined && archRestriction === undefined) {
      return op === undefined ? { name } : { name, op, version: version! };
    }
    const relation: Relation = { name };
    if (archQualifier !== undefined) relation.archQualifier = archQualifier;
    if (op !== undefined) {
      relation.op = op;
      relation.version = version!;
    }
    if (archRestriction !== undefined) relation.archRestriction = archRestriction;
    return relation;
  }

  op(): VersionOp {
    const { text, end } = this;
    const c0 = this.pos < end ? text.charCodeAt(this.pos) : -1;
    const c1 = this.pos + 1 < end ? text.charCodeAt(this.pos + 1) : -1;
    if (c0 === LT) {
      this.pos += c1 === LT || c1 === EQ ? 2 : 1;
      return c1 === LT ? '<<' : '<=';
    }
    if (c0 === GT) {
      this.pos += c1 === GT || c1 === EQ ? 2 : 1;
      return c1 === GT ? '>>' : '>=';
    }
    if (c0 === EQ) {
      this.pos++;
      return '=';
    }
    throw this.fail(`expected a version operator at offset ${this.pos}`);
  }
}

/**
 * Parses a field whose groups may hold alternatives (Depends, Pre-Depends, Recommends,
 * Suggests, Enhances). An empty value yields `[]`.
 */
export function parseRelationGroups(value: string, options: RelationParseOptions = {}): RelationGroup[] {
  const groups: RelationGroup[] = [];
  const s = new Scanner(value, options, 'Depends');
  let group: Relation[] = [];
  let c = s.skipSpace();
  while (c !== -1) {
    if (c === COMMA) {
      if (group.length > 0) groups.push(group);
      group = [];
      s.pos++;
      c = s.skipSpace();
      continue;
    }
    group.push(s.relation());
    c = s.skipSpace();
    if (c === PIPE) {
      s.pos++;
      c = s.skipSpace();
      if (c === -1 || c === COMMA || c === PIPE) throw s.fail('empty alternative after |');
    } else if (c !== COMMA && c !== -1) {
      throw s.fail(`unexpected '${String.fromCharCode(c)}' at offset ${s.pos}`);
    }
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * Parses a field that forbids alternatives (Conflicts, Breaks, Replaces): a `|` throws
 * `RELATION_INVALID`, as dpkg refuses it.
 */
export function parseRelationList(value: string, options: RelationParseOptions = {}): Relation[] {
  const relations: Relation[] = [];
  const s = new Scanner(value, options, 'Conflicts');
  let c = s.skipSpace();
  while (c !== -1) {
    if (c === COMMA) {
      s.pos++;
      c = s.skipSpace();
      continue;
    }
    relations.push(s.relation());
    c = s.skipSpace();
    if (c === PIPE) throw s.fail("alternatives ('|') are not allowed in this field");
    if (c !== COMMA && c !== -1) throw s.fail(`unexpected '${String.fromCharCode(c)}' at offset ${s.pos}`);
  }
  return relations;
}

/**
 * Parses Provides: only unversioned or `(= version)` atoms without architecture qualifiers
 * or restrictions, as dpkg allows; anything else throws `RELATION_INVALID`.
 */
export function parseProvides(value: string, options: RelationParseOptions = {}): Provide[] {
  const field = options.field ?? 'Provides';
  const opts: RelationParseOptions = { field, allowArchRestrictions: false };
  const provides: Provide[] = [];
  for (const relation of parseRelationList(value, opts)) {
    if (relation.archQualifier !== undefined) {
      throw invalid(field, value, `architecture qualifier on provided name ${relation.name}`);
    }
    if (relation.op === undefined) {
      provides.push({ name: relation.name });
    } else if (relation.op === '=') {
      provides.push({ name: relation.name, version: relation.version! });
    } else {
      throw invalid(field, value, `only exact (=) versions may be provided (${relation.name})`);
    }
  }
  return provides;
}

/** Receives names as spans of a text (`text.slice(start, end)`), so none need be made. */
export interface NameSink {
  add(text: string, start: number, end: number): void;
}

// Character classes for `relationNames`, indexed by char code (>= 128 is a word character).
const WORD = 0;
const SEPARATOR = 1;
const BLANK = 2;
const PUNCTUATION = 3;
const CLASSES = new Uint8Array(128);
for (const c of [COMMA, PIPE]) CLASSES[c] = SEPARATOR;
for (const c of [SPACE, TAB, LF, CR]) CLASSES[c] = BLANK;
for (const c of [COLON, LPAREN, RPAREN, LBRACKET, RBRACKET, LT, GT]) CLASSES[c] = PUNCTUATION;

function classOf(c: number): number {
  return c < 128 ? CLASSES[c]! : WORD;
}

/**
 * Hands `sink` the package name of every atom of a relation field, in order, without
 * building relations: the spans are what `parseRelationGroups`, `parseRelationList` or
 * `parseProvides` would give as `name` for the same text when it is valid. Invalid text is
 * not reported (the parsers do that); it yields whatever words stand where names would.
 */
export function relationNames(value: string, sink: NameSink): void {
  const end = value.length;
  let pos = 0;
  while (pos < end) {
    const kind = classOf(value.charCodeAt(pos));
    if (kind === SEPARATOR || kind === BLANK) {
      pos++;
      continue;
    }
    const start = pos;
    while (pos < end && classOf(value.charCodeAt(pos)) === WORD) pos++;
    if (pos > start) sink.add(value, start, pos);
    // The rest of the atom: a version in parentheses may hold anything but `)`.
    while (pos < end) {
      const c = value.charCodeAt(pos);
      if (c === COMMA || c === PIPE) break;
      if (c === LPAREN) {
        const close = value.indexOf(')', pos + 1);
        pos = close < 0 ? end : close + 1;
      } else {
        pos++;
      }
    }
  }
}

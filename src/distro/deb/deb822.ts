import { RootcastError } from '../../core/errors.js';

/**
 * Debian control-format ("deb822") paragraphs: Packages indexes, Release files, dpkg status.
 *
 * A paragraph is a `Map` from **lower-case** field name to value, in file order. Field names
 * are case-insensitive in the format, so callers always look up `get('pre-depends')`,
 * never `Pre-Depends`. A value is the text after the colon with surrounding blanks trimmed;
 * continuation lines are appended after a `\n`, each with its one leading space or tab (the
 * syntax marker) removed and trailing blanks trimmed, so `Description`'s ` .` lines come
 * back as `.` and deeper indentation survives. An empty first line is kept as `''`, which
 * is what Release files' `SHA256:` value starts with.
 *
 * Paragraphs are separated by lines that are empty or hold only blanks; `#` comment lines
 * are skipped (field names may not start with `#`); CRLF line ends are accepted. The parser
 * is a single forward scan with `indexOf` and never runs a regular expression per line,
 * because a Packages index is ~60k paragraphs and ~50 MB.
 *
 * Returned strings may be slices of `text` and keep it alive while they live.
 */
export type Deb822Paragraph = Map<string, string>;

const LF = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;
const HASH = 35;
const COLON = 58;

// Field names repeat ~60k times per index; caching their lower-case form skips a
// toLowerCase allocation per field. Bounded so hostile input cannot grow it forever.
const lowerCache = new Map<string, string>();
const LOWER_CACHE_LIMIT = 4096;

function lowerName(name: string): string {
  const cached = lowerCache.get(name);
  if (cached !== undefined) return cached;
  const lower = name.toLowerCase();
  if (lowerCache.size < LOWER_CACHE_LIMIT) lowerCache.set(name, lower);
  return lower;
}

function malformed(source: string, line: number, reason: string): RootcastError {
  return new RootcastError({
    code: 'DEB822_MALFORMED',
    message: `${source}:${line}: ${reason}`,
    hint: 'The file is not in Debian control format; check the repository or mirror serving it.',
    details: { source, line, reason },
  });
}

/**
 * Parses every paragraph of `text`. `source` names the file in error messages. Throws
 * `DEB822_MALFORMED` for a line that is neither a field, a continuation nor a separator,
 * a continuation with no field before it, or a field repeated within one paragraph.
 */
export function parseDeb822(text: string, source = '<deb822>'): Deb822Paragraph[] {
  const paragraphs: Deb822Paragraph[] = [];
  const length = text.length;
  let paragraph: Deb822Paragraph | undefined;
  let field: string | undefined;
  let value = '';
  let lineNo = 0;
  let pos = 0;

  while (pos < length) {
    lineNo++;
    let next = text.indexOf('\n', pos);
    if (next < 0) next = length;
    let end = next;
    if (end > pos && text.charCodeAt(end - 1) === CR) end--;
    const first = pos < end ? text.charCodeAt(pos) : LF;

    if (first === SPACE || first === TAB) {
      // Continuation, or a blank-only separator line.
      let s = pos + 1;
      while (s < end && isBlankCode(text.charCodeAt(s))) s++;
      if (s === end) {
        if (paragraph !== undefined) {
          if (field !== undefined) paragraph.set(field, value);
          paragraphs.push(paragraph);
          paragraph = undefined;
          field = undefined;
        }
      } else {
        if (field === undefined) throw malformed(source, lineNo, 'continuation line without a field');
        let e = end;
        while (e > s && isBlankCode(text.charCodeAt(e - 1))) e--;
        value = value + '\n' + text.slice(pos + 1, e);
      }
    } else if (first === LF) {
      if (paragraph !== undefined) {
        if (field !== undefined) paragraph.set(field, value);
        paragraphs.push(paragraph);
        paragraph = undefined;
        field = undefined;
      }
    } else if (first !== HASH) {
      const colon = text.indexOf(':', pos);
      if (colon < 0 || colon >= end || colon === pos) {
        throw malformed(source, lineNo, `expected 'Field: value', got '${text.slice(pos, Math.min(end, pos + 60))}'`);
      }
      if (paragraph === undefined) paragraph = new Map();
      else if (field !== undefined) paragraph.set(field, value);
      const name = lowerName(text.slice(pos, colon));
      if (paragraph.has(name)) throw malformed(source, lineNo, `duplicate field '${text.slice(pos, colon)}'`);
      let s = colon + 1;
      while (s < end && isBlankCode(text.charCodeAt(s))) s++;
      let e = end;
      while (e > s && isBlankCode(text.charCodeAt(e - 1))) e--;
      field = name;
      value = s === e ? '' : text.slice(s, e);
    }
    pos = next + 1;
  }
  if (paragraph !== undefined) {
    if (field !== undefined) paragraph.set(field, value);
    paragraphs.push(paragraph);
  }
  return paragraphs;
}

function isBlankCode(c: number): boolean {
  return c === SPACE || c === TAB || c === CR;
}

/** Parses text that must hold exactly one paragraph (a Release file, a .dsc body). */
export function parseDeb822Single(text: string, source = '<deb822>'): Deb822Paragraph {
  const paragraphs = parseDeb822(text, source);
  if (paragraphs.length !== 1) {
    throw new RootcastError({
      code: 'DEB822_MALFORMED',
      message: `${source}: expected one paragraph, found ${paragraphs.length}`,
      hint: 'The file is not a single control paragraph; check the repository or mirror serving it.',
      details: { source, paragraphs: paragraphs.length },
    });
  }
  return paragraphs[0]!;
}

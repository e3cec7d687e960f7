import { RootcastError } from '../../core/errors.js';

/**
 * Debian control-format ("deb822") paragraphs: Packages indexes, Release files, dpkg status.
 *
 * Field names are case-insensitive in the format and are always handed out **lower-case**
 * (`get('pre-depends')`, never `Pre-Depends`). A value is the text after the colon with
 * surrounding blanks trimmed; continuation lines are appended after a `\n`, each with its one
 * leading space or tab (the syntax marker) removed and trailing blanks trimmed, so
 * Description's ` .` lines come back as `.` and deeper indentation survives. An empty first
 * line is kept as `''`, which is what a Release file's `SHA256:` value starts with.
 *
 * Paragraphs are separated by lines that are empty or hold only blanks; `#` comment lines
 * are skipped (field names may not start with `#`); CRLF line ends are accepted. A field
 * repeated within one paragraph is an error, as in dpkg.
 *
 * Speed: a Packages index is ~60k paragraphs and ~50 MB, so the scanner is one forward pass
 * with `indexOf` and char codes, never a regular expression per line, and fields a caller
 * does not ask for are never sliced out. Returned strings may be slices of `text` and keep
 * it alive while they live.
 */
export type Deb822Paragraph = Map<string, string>;

export interface Deb822Options {
  /**
   * Lower-case names of the fields to keep; others are checked for syntax but neither stored
   * nor checked for duplicates. Default: keep every field.
   */
  fields?: ReadonlySet<string>;
}

const LF = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;
const HASH = 35;

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

function isBlankCode(c: number): boolean {
  return c === SPACE || c === TAB || c === CR;
}

function malformed(source: string, line: number, reason: string): RootcastError {
  return new RootcastError({
    code: 'DEB822_MALFORMED',
    message: `${source}:${line}: ${reason}`,
    hint: 'The file is not in Debian control format; check the repository or mirror serving it.',
    details: { source, line, reason },
  });
}

/** Receives one paragraph's fields, then its end. Used only inside this module. */
interface Sink {
  /**
   * Decides whether the field named `text[start, end)` is kept: returns an id (>= 0) for it,
   * or -1 to skip it without slicing anything.
   */
  select(text: string, start: number, end: number): number;
  /** Returns false when the field `id` is already set in the current paragraph. */
  field(id: number, value: string): boolean;
  /** `line` is the 1-based line on which the paragraph started. */
  end(line: number): void;
  /** The field's name for messages. */
  nameOf(id: number): string;
}

/** The one scanner behind every entry point. */
function scan(text: string, source: string, sink: Sink): void {
  const length = text.length;
  let inParagraph = false;
  let paragraphLine = 0;
  let field = -1;
  let fieldLine = 0;
  let value = '';
  let skipping = false;
  let lineNo = 0;
  let pos = 0;

  const flush = (): void => {
    if (field >= 0 && !sink.field(field, value)) {
      throw malformed(source, fieldLine, `duplicate field '${sink.nameOf(field)}'`);
    }
    field = -1;
  };
  const endParagraph = (): void => {
    flush();
    if (inParagraph) sink.end(paragraphLine);
    inParagraph = false;
    skipping = false;
  };

  while (pos < length) {
    lineNo++;
    let next = text.indexOf('\n', pos);
    if (next < 0) next = length;
    let end = next;
    if (end > pos && text.charCodeAt(end - 1) === CR) end--;
    const first = pos < end ? text.charCodeAt(pos) : LF;

    if (first === SPACE || first === TAB) {
      let s = pos + 1;
      while (s < end && isBlankCode(text.charCodeAt(s))) s++;
      if (s === end) {
        endParagraph();
      } else if (field >= 0) {
        let e = end;
        while (e > s && isBlankCode(text.charCodeAt(e - 1))) e--;
        value = value + '\n' + text.slice(pos + 1, e);
      } else if (!skipping) {
        throw malformed(source, lineNo, 'continuation line without a field');
      }
    } else if (first === LF) {
      endParagraph();
    } else if (first !== HASH) {
      const colon = text.indexOf(':', pos);
      if (colon < 0 || colon >= end || colon === pos) {
        throw malformed(
          source,
          lineNo,
          `expected 'Field: value', got '${text.slice(pos, Math.min(end, pos + 60))}'`,
        );
      }
      flush();
      if (!inParagraph) {
        inParagraph = true;
        paragraphLine = lineNo;
      }
      const id = sink.select(text, pos, colon);
      if (id < 0) {
        skipping = true;
      } else {
        skipping = false;
        let s = colon + 1;
        while (s < end && isBlankCode(text.charCodeAt(s))) s++;
        let e = end;
        while (e > s && isBlankCode(text.charCodeAt(e - 1))) e--;
        field = id;
        fieldLine = lineNo;
        value = s === e ? '' : text.slice(s, e);
      }
    }
    pos = next + 1;
  }
  endParagraph();
}

/** ASCII case-insensitive `text[start, start + lower.length) === lower`; `lower` is lower-case. */
function equalsLower(text: string, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = text.charCodeAt(start + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Parses every paragraph of `text` into a Map (lower-case name → value, in file order).
 * `source` names the file in error messages. Throws `DEB822_MALFORMED` for a line that is
 * neither a field, a continuation nor a separator, a continuation with no field before it,
 * or a repeated field.
 */
export function parseDeb822(
  text: string,
  source = '<deb822>',
  options: Deb822Options = {},
): Deb822Paragraph[] {
  const keep = options.fields;
  const paragraphs: Deb822Paragraph[] = [];
  // Ids index `names`, so a name seen once is sliced and lower-cased once per call.
  const names: string[] = [];
  const ids = new Map<string, number>();
  let current = new Map<string, string>();
  scan(text, source, {
    select(t, start, end) {
      const name = lowerName(t.slice(start, end));
      if (keep !== undefined && !keep.has(name)) return -1;
      let id = ids.get(name);
      if (id === undefined) {
        id = names.length;
        names.push(name);
        ids.set(name, id);
      }
      return id;
    },
    field(id, value) {
      const name = names[id]!;
      if (current.has(name)) return false;
      current.set(name, value);
      return true;
    },
    end() {
      paragraphs.push(current);
      current = new Map();
    },
    nameOf: (id) => names[id]!,
  });
  return paragraphs;
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

/**
 * The fast path for large indexes: for each paragraph, calls `onRecord(values, line)` where
 * `values[i]` is the value of `fields[i]` (lower-case names) or undefined when absent, and
 * `line` is where the paragraph starts. `values` is one array reused for every paragraph:
 * read it during the call and copy out what you keep. Same errors as `parseDeb822`.
 */
export function scanDeb822Records(
  text: string,
  source: string,
  fields: readonly string[],
  onRecord: (values: readonly (string | undefined)[], line: number) => void,
): void {
  // Candidates by name length: a line's field name is matched in place, so the ~20 fields a
  // stanza has cost no allocation unless they are kept.
  const byLength: number[][] = [];
  for (const [i, name] of fields.entries()) {
    const list = byLength[name.length] ?? [];
    list.push(i);
    byLength[name.length] = list;
  }
  const values: (string | undefined)[] = new Array(fields.length).fill(undefined);
  scan(text, source, {
    select(t, start, end) {
      const candidates = byLength[end - start];
      if (candidates === undefined) return -1;
      for (const slot of candidates) if (equalsLower(t, start, fields[slot]!)) return slot;
      return -1;
    },
    field(slot, value) {
      if (values[slot] !== undefined) return false;
      values[slot] = value;
      return true;
    },
    end(line) {
      onRecord(values, line);
      values.fill(undefined);
    },
    nameOf: (slot) => fields[slot]!,
  });
}

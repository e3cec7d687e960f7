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
 * Speed and memory: a Packages index is ~60k paragraphs and ~57 MB, so the scanner is one
 * forward pass over bytes with `indexOf`, never a regular expression per line; fields a
 * caller does not ask for are never decoded, and each kept value is decoded into a string
 * of its own (never a slice that would keep a whole text alive). `Deb822RecordReader` takes
 * an index in chunks as it is decompressed, so the whole text never exists at once.
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
   * Decides whether the field named `bytes[start, end)` is kept: returns an id (>= 0) for it,
   * or -1 to skip it without decoding anything.
   */
  select(bytes: Buffer, start: number, end: number): number;
  /** Returns false when the field `id` is already set in the current paragraph. */
  field(id: number, value: string): boolean;
  /** `line` is the 1-based line on which the paragraph started. */
  end(line: number): void;
  /** The field's name for messages. */
  nameOf(id: number): string;
}

/** How kept values are decoded from bytes: UTF-8, or one character per byte (see `Deb822RecordReader`). */
export type Deb822Encoding = 'utf8' | 'latin1';

/**
 * The one scanner behind every entry point. It reads bytes, not a string, so that a large
 * index never has to exist as one string: only the values kept are decoded, each into a
 * fresh string that holds no reference to the input. `lineBase` is the number of lines
 * before `bytes` (for messages); returns it plus the lines scanned.
 */
function scan(bytes: Buffer, lineBase: number, source: string, encoding: Deb822Encoding, sink: Sink): number {
  const length = bytes.length;
  let inParagraph = false;
  let paragraphLine = 0;
  let field = -1;
  let fieldLine = 0;
  let value = '';
  let skipping = false;
  let lineNo = lineBase;
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
    let next = bytes.indexOf(LF, pos);
    if (next < 0) next = length;
    let end = next;
    if (end > pos && bytes[end - 1] === CR) end--;
    const first = pos < end ? bytes[pos] : LF;

    if (first === SPACE || first === TAB) {
      let s = pos + 1;
      while (s < end && isBlankCode(bytes[s]!)) s++;
      if (s === end) {
        endParagraph();
      } else if (field >= 0) {
        let e = end;
        while (e > s && isBlankCode(bytes[e - 1]!)) e--;
        value = value + '\n' + bytes.toString(encoding, pos + 1, e);
      } else if (!skipping) {
        throw malformed(source, lineNo, 'continuation line without a field');
      }
    } else if (first === LF) {
      endParagraph();
    } else if (first !== HASH) {
      let colon = pos;
      while (colon < end && bytes[colon] !== COLON) colon++;
      if (colon >= end || colon === pos) {
        const got = bytes.toString(encoding, pos, Math.min(end, pos + 60));
        throw malformed(source, lineNo, `expected 'Field: value', got '${got}'`);
      }
      flush();
      if (!inParagraph) {
        inParagraph = true;
        paragraphLine = lineNo;
      }
      const id = sink.select(bytes, pos, colon);
      if (id < 0) {
        skipping = true;
      } else {
        skipping = false;
        let s = colon + 1;
        while (s < end && isBlankCode(bytes[s]!)) s++;
        let e = end;
        while (e > s && isBlankCode(bytes[e - 1]!)) e--;
        field = id;
        fieldLine = lineNo;
        value = s === e ? '' : bytes.toString(encoding, s, e);
      }
    }
    pos = next + 1;
  }
  endParagraph();
  return lineNo;
}

/** ASCII case-insensitive `bytes[start, start + lower.length) === lower`; `lower` is lower-case. */
function equalsLower(bytes: Buffer, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = bytes[start + i]!;
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
  scan(Buffer.from(text, 'utf8'), 0, source, 'utf8', {
    select(bytes, start, end) {
      const name = lowerName(bytes.toString('utf8', start, end));
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
 * For each paragraph of `text`, calls `onRecord(values, line)` as `Deb822RecordReader` does.
 * Values are sliced as UTF-8, so they equal the substrings of `text`.
 */
export function scanDeb822Records(
  text: string,
  source: string,
  fields: readonly string[],
  onRecord: (values: readonly (string | undefined)[], line: number) => void,
): void {
  const reader = new Deb822RecordReader(source, fields, onRecord, 'utf8');
  reader.write(Buffer.from(text, 'utf8'));
  reader.end();
}

/**
 * The fast path for large indexes, fed in chunks as they are decoded: for each paragraph,
 * calls `onRecord(values, line)` where `values[i]` is the value of `fields[i]` (lower-case
 * names) or undefined when absent, and `line` is where the paragraph starts. `values` is one
 * array reused for every paragraph: read it during the call and copy out what you keep.
 * Same errors as `parseDeb822`, thrown by the `write` or `end` that reaches the bad line.
 *
 * Lifecycle: `write` each chunk in order (the reader copies what it keeps, so a chunk
 * buffer may be reused as soon as `write` returns), then `end` once. Paragraphs are
 * handed out as soon as a chunk holds an empty line after them, so the reader holds at
 * most the text since the last paragraph break, never the whole input. `encoding` decodes
 * the kept values: `latin1` makes one character per byte, which is what the indexes' kept
 * fields (ASCII by Debian policy) need and costs V8 half the memory of UTF-16 strings.
 */
export class Deb822RecordReader {
  readonly #source: string;
  readonly #encoding: Deb822Encoding;
  readonly #sink: Sink;
  /** Copies of the chunks since the last paragraph break, in order. */
  #pending: Buffer[] = [];
  #lines = 0;
  #ended = false;

  constructor(
    source: string,
    fields: readonly string[],
    onRecord: (values: readonly (string | undefined)[], line: number) => void,
    encoding: Deb822Encoding = 'latin1',
  ) {
    this.#source = source;
    this.#encoding = encoding;
    // Candidates by name length: a line's field name is matched in place, so the ~20 fields
    // a stanza has cost no allocation unless they are kept.
    const byLength: number[][] = [];
    for (const [i, name] of fields.entries()) {
      const list = byLength[name.length] ?? [];
      list.push(i);
      byLength[name.length] = list;
    }
    const values: (string | undefined)[] = new Array(fields.length).fill(undefined);
    this.#sink = {
      select(bytes, start, end) {
        const candidates = byLength[end - start];
        if (candidates === undefined) return -1;
        for (const slot of candidates) if (equalsLower(bytes, start, fields[slot]!)) return slot;
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
    };
  }

  write(chunk: Uint8Array): void {
    if (this.#ended) throw new Error('Deb822RecordReader: write after end');
    let bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#pending.length > 0) {
      // Only the paragraph cut at the previous chunk's end is copied together; the rest of
      // this chunk is scanned in place (no chunk-sized copy per chunk).
      const first = paragraphBreak(bytes, 'first');
      if (first < 0) {
        this.#pending.push(Buffer.from(bytes));
        return;
      }
      this.#scan(Buffer.concat([...this.#pending, bytes.subarray(0, first)]));
      this.#pending = [];
      bytes = bytes.subarray(first);
    }
    const last = paragraphBreak(bytes, 'last');
    if (last > 0) this.#scan(bytes.subarray(0, last));
    if (last < bytes.length) this.#pending.push(Buffer.from(bytes.subarray(Math.max(last, 0))));
  }

  #scan(bytes: Buffer): void {
    this.#lines = scan(bytes, this.#lines, this.#source, this.#encoding, this.#sink);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const rest = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#scan(rest);
  }
}

/**
 * Where `bytes` can be cut so that everything before is whole paragraphs: just after the
 * first or last line that is empty (or only a CR) and ends in `bytes`; -1 when there is
 * none. Lines of blanks also end a paragraph, but are not looked for: a missed break only
 * means the cut comes later.
 */
function paragraphBreak(bytes: Buffer, which: 'first' | 'last'): number {
  if (which === 'last') {
    const lf = bytes.lastIndexOf('\n\n');
    const crlf = bytes.lastIndexOf('\n\r\n');
    if (lf < 0 && crlf < 0) return -1;
    return lf > crlf ? lf + 2 : crlf + 3;
  }
  const lf = bytes.indexOf('\n\n');
  const crlf = bytes.indexOf('\n\r\n');
  if (lf < 0 && crlf < 0) return -1;
  if (crlf < 0 || (lf >= 0 && lf < crlf)) return lf + 2;
  return crlf + 3;
}

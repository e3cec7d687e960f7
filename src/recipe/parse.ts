import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { RootcastError } from '../core/errors.js';
import type { RecipePath, SourcePosition } from './types.js';
import { formatPath } from './validate.js';

/**
 * YAML text → a document that still knows where every value came from, so that any
 * later check can report `file:line:column: what` with a one-line hint (`errorAt`).
 * Positions are 1-based lines and columns.
 */
export interface RecipeDocument {
  /** The recipe path as the user wrote it, for messages. */
  readonly file: string;
  readonly text: string;
  /** The parsed value, before rendering and defaults. */
  readonly raw: unknown;
  /** Where the value at `path` starts (or its key, for an empty value). */
  locate(path: RecipePath): SourcePosition | undefined;
  /** Where the key of the field at `path` starts (the value's position for list items). */
  locateKey(path: RecipePath): SourcePosition | undefined;
  /**
   * Where `fragment` appears inside the value at `path`, when it is written there verbatim;
   * otherwise where the value starts. Used to point at one `{{variable}}` in a string.
   */
  locateWithin(path: RecipePath, fragment: string): SourcePosition | undefined;
  /** The source text of the value at `path` (for quoting it back in hints). */
  sourceOf(path: RecipePath): string | undefined;
  /** An exit-2 error at `path`, message `file:line:col: what`, with `details`. */
  errorAt(path: RecipePath, code: string, what: string, hint: string, at?: SourcePosition): RootcastError;
}

/** Parses YAML text; throws `RECIPE_YAML` at the first syntax error. */
export function parseRecipeText(text: string, file: string): RecipeDocument {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const position = (offset: number): SourcePosition => {
    const { line, col } = lineCounter.linePos(offset);
    return { line: Math.max(line, 1), column: Math.max(col, 1) };
  };
  const syntax = doc.errors[0];
  if (syntax) {
    const at = position(syntax.pos[0]);
    throw positioned(
      file,
      at,
      'RECIPE_YAML',
      [],
      `invalid YAML: ${firstLine(syntax.message)}`,
      yamlHint(syntax.code),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    const what = error instanceof Error ? firstLine(error.message) : String(error);
    throw positioned(file, { line: 1, column: 1 }, 'RECIPE_YAML', [], `invalid YAML: ${what}`, yamlHint(''));
  }

  const nodeStart = (path: RecipePath): number | undefined => {
    const found = findNode(doc, path);
    if (!found) return undefined;
    return found.node?.range?.[0] ?? found.key?.range?.[0];
  };
  const document: RecipeDocument = {
    file,
    text,
    raw,
    locate(path) {
      const offset = nodeStart(path);
      return offset === undefined ? undefined : position(offset);
    },
    locateKey(path) {
      const found = findNode(doc, path);
      const offset = found?.key?.range?.[0] ?? found?.node?.range?.[0];
      return offset === undefined ? undefined : position(offset);
    },
    locateWithin(path, fragment) {
      const node = findNode(doc, path)?.node;
      const range = node?.range;
      if (range && fragment) {
        const index = text.indexOf(fragment, range[0]);
        if (index >= 0 && index < range[1]) return position(index);
      }
      return document.locate(path);
    },
    sourceOf(path) {
      const range = findNode(doc, path)?.node?.range;
      return range ? text.slice(range[0], range[1]).trim() : undefined;
    },
    errorAt(path, code, what, hint, at) {
      return positioned(file, at ?? nearestPosition(document, path), code, path, what, hint);
    },
  };
  return document;
}

function findNode(
  doc: Document.Parsed,
  path: RecipePath,
): { node: Node | undefined; key: Node | undefined } | undefined {
  let node: unknown = doc.contents;
  let key: Node | undefined;
  for (const part of path) {
    if (typeof part === 'number' && isSeq(node)) {
      node = node.items[part];
      key = undefined;
      if (node === undefined) return undefined;
    } else if (typeof part === 'string' && isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === part);
      if (!pair) return undefined;
      key = isScalar(pair.key) ? pair.key : undefined;
      node = pair.value;
    } else {
      return undefined;
    }
  }
  return { node: isNodeLike(node) ? node : undefined, key };
}

function isNodeLike(value: unknown): value is Node {
  return value !== null && typeof value === 'object' && 'range' in value;
}

function nearestPosition(document: RecipeDocument, path: RecipePath): SourcePosition {
  for (let n = path.length; n >= 0; n--) {
    const at = document.locate(path.slice(0, n));
    if (at) return at;
  }
  return { line: 1, column: 1 };
}

function positioned(
  file: string,
  at: SourcePosition,
  code: string,
  path: RecipePath,
  what: string,
  hint: string,
): RootcastError {
  return new RootcastError({
    code,
    exitCode: 2,
    message: `${file}:${at.line}:${at.column}: ${oneLine(what)}`,
    hint: oneLine(hint),
    details: { file, line: at.line, column: at.column, field: formatPath(path) },
  });
}

function yamlHint(code: string): string {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'Remove or rename one of the two fields with the same name.';
    case 'TAB_AS_INDENT':
      return 'Indent YAML with spaces, not tabs.';
    default:
      return 'Fix the YAML syntax near that position (indentation, a missing quote, bracket or colon).';
  }
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').replace(/[:\s]+$/, '');
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

import type { z } from 'zod';
import type { RootcastError } from '../core/errors.js';
import type { RecipeDocument } from './parse.js';
import { recipeSchema } from './schema.js';
import type { Recipe, RecipePath } from './types.js';

/**
 * Validation of a parsed recipe against `recipeSchema`, reporting the single most useful
 * problem at its position. Only the first problem is reported because the rest are often
 * consequences of it (a misspelt `relase:` is also a missing `release:`), so unknown fields
 * come first, then wrong types and values in file order, then missing fields. Hints come
 * from the schema itself where they can (allowed fields, allowed values, examples).
 */

/**
 * Checks the shape of a recipe before rendering: every problem except those with the
 * value of a string that still holds `{{…}}`, which are checked once it is rendered.
 * Reporting structure first means a misspelt field is named even if its value would not
 * render.
 */
export function checkRecipeShape(document: RecipeDocument, value: unknown): void {
  const result = recipeSchema.safeParse(value);
  if (result.success) return;
  const issues = result.error.issues.filter(
    (issue) => !(isValueIssue(issue) && isTemplated(valueAt(value, issue.path))),
  );
  if (issues.length > 0) throw firstError(document, value, issues);
}

/** Validates a rendered recipe and applies the schema's defaults. */
export function validateRecipe(document: RecipeDocument, value: unknown): Recipe {
  const result = recipeSchema.safeParse(value);
  if (!result.success) throw firstError(document, value, result.error.issues);
  const recipe: Recipe = result.data;
  return recipe;
}

/** `['packages', 'install', 2]` → `packages.install[2]`. */
export function formatPath(path: RecipePath): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${part}` : part;
  return out;
}

/** The value at `path` in a plain JS value, or undefined. */
export function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
}

/** Shortens a value for a one-line message. */
export function showValue(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ---------------------------------------------------------------------------------------

type Issue = z.core.$ZodIssue;

interface Candidate {
  /** Unknown fields first (they explain the rest), then bad values, then missing fields. */
  rank: number;
  offset: number;
  error: RootcastError;
}

function firstError(document: RecipeDocument, value: unknown, issues: readonly Issue[]): RootcastError {
  const candidates: Candidate[] = [];
  const add = (rank: number, error: RootcastError) => {
    const d = error.details as { line?: number; column?: number } | undefined;
    candidates.push({ rank, offset: (d?.line ?? 0) * 100_000 + (d?.column ?? 0), error });
  };
  for (const issue of issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) add(0, unknownField(document, path, key));
      continue;
    }
    const field = formatPath(path);
    const parent = valueAt(value, path.slice(0, -1));
    const actual = valueAt(value, path);
    const last = path.at(-1);
    if (
      actual === undefined &&
      typeof last === 'string' &&
      parent !== null &&
      typeof parent === 'object' &&
      !(last in parent)
    ) {
      add(2, missingField(document, path));
    } else if (issue.code === 'invalid_type' || issue.code === 'invalid_union') {
      add(1, invalidType(document, path, issue, actual));
    } else if (issue.code === 'invalid_value') {
      const allowed = issue.values.map(String);
      add(
        1,
        document.errorAt(
          path,
          'RECIPE_INVALID_VALUE',
          `${field}: unknown value ${showValue(actual)}`,
          `Use one of: ${allowed.join(', ')}.`,
        ),
      );
    } else {
      const whole = issue.code === 'custom' && (issue.params as { whole?: boolean } | undefined)?.whole;
      const what =
        typeof actual === 'string' && !whole
          ? `${field} ${showValue(actual)} ${issue.message}`
          : `${field || 'recipe'}: ${issue.message}`;
      add(1, document.errorAt(path, 'RECIPE_INVALID_VALUE', what, valueHint(path, issue)));
    }
  }
  candidates.sort((a, b) => a.rank - b.rank || a.offset - b.offset);
  return candidates[0]!.error;
}

function unknownField(document: RecipeDocument, path: (string | number)[], key: string): RootcastError {
  const allowed = fieldsAt(path);
  const where = path.length === 0 ? 'the recipe' : formatPath(path);
  const guess = closest(key, allowed);
  const hint =
    (guess ? `Did you mean \`${guess}\`? ` : 'Remove it or fix its spelling. ') +
    `Fields allowed in ${where}: ${allowed.join(', ')}.`;
  const keyPath = [...path, key];
  return document.errorAt(
    keyPath,
    'RECIPE_UNKNOWN_FIELD',
    `unknown field \`${key}\` in ${where}`,
    hint,
    document.locateKey(keyPath),
  );
}

function missingField(document: RecipeDocument, path: (string | number)[]): RootcastError {
  const key = String(path.at(-1));
  const parentPath = path.slice(0, -1);
  const where = parentPath.length === 0 ? 'the recipe' : formatPath(parentPath);
  const meta = metaAt(path);
  const example = meta.examples?.[0];
  const shown = example === undefined ? '…' : yamlInline(example);
  const about = meta.description ? ` ${meta.description}` : '';
  return document.errorAt(
    path,
    'RECIPE_MISSING_FIELD',
    `missing required field \`${key}\` in ${where}`,
    `Add \`${key}: ${shown}\` to ${where}.${about}`,
    document.locate(parentPath) ?? { line: 1, column: 1 },
  );
}

function invalidType(
  document: RecipeDocument,
  path: (string | number)[],
  issue: Issue,
  actual: unknown,
): RootcastError {
  const expectedTypes =
    issue.code === 'invalid_union'
      ? issue.errors.flatMap((branch) =>
          branch.map((i) => (i.code === 'invalid_type' ? i.expected : 'value')),
        )
      : issue.code === 'invalid_type'
        ? [issue.expected]
        : ['value'];
  const expected = [...new Set(expectedTypes)].map(typeName).join(' or ');
  const field = formatPath(path) || 'recipe';
  const source = document.sourceOf(path);
  let got = describeActual(actual);
  if ((typeof actual === 'number' || typeof actual === 'boolean') && source) got += ` (${source})`;
  const key = path.findLast((p) => typeof p === 'string') ?? 'value';
  let hint: string;
  if (path.length === 0)
    hint = 'A recipe is a YAML mapping of fields (name, version, distro, release, …); see docs/recipes.md.';
  else if (actual === null) hint = `Give \`${key}\` a value, or remove the line.`;
  else if (expectedTypes.includes('string') && (typeof actual === 'number' || typeof actual === 'boolean'))
    hint = `Quote it so YAML keeps it as text: ${key}: "${source ?? String(actual)}".`;
  else if (expectedTypes[0] === 'array')
    hint = `Write \`${key}\` as a list: [a, b], or one "- item" per line.`;
  else if (expectedTypes[0] === 'object')
    hint = `Write \`${field}\` as a mapping of fields (key: value); see docs/recipes.md.`;
  else if (expectedTypes[0] === 'boolean') hint = `Use true or false for \`${key}\`.`;
  else hint = `Change \`${key}\` to ${expected}; see docs/recipes.md.`;
  return document.errorAt(path, 'RECIPE_INVALID_TYPE', `${field}: expected ${expected}, got ${got}`, hint);
}

/** Hints for values of the right type that break a rule of their field. */
function valueHint(path: (string | number)[], issue: Issue): string {
  const key = path.findLast((p) => typeof p === 'string');
  if (issue.code === 'custom' && key !== 'path')
    return 'Give each file exactly one of `template` (a file under templates/) or `content` (inline text).';
  switch (key) {
    case 'name':
      return 'Use lowercase letters, digits, ".", "_" and "-", starting with a letter or digit (e.g. debian-12-minbase).';
    case 'version':
      return issue.message.includes('latest')
        ? 'Give the template a version of its own, e.g. version: "1.0"; every build also points <name>:latest at the newest build.'
        : 'Use letters, digits, ".", "_" and "-" (an OCI tag), quoted: version: "1.0".';
    case 'release':
      return 'Use the release codename, e.g. bookworm or trixie.';
    case 'from':
      return 'Name the parent template as name or name:version (debian-12-minbase:1.0), or its recipe (./debian-12-minbase.yaml).';
    case 'path':
      return 'Write an absolute path inside the tree, without "..", e.g. /etc/hostname.';
    case 'mode':
      return 'Write the mode as a quoted octal string, e.g. mode: "0644".';
    case 'install':
    case 'exclude':
      return 'Write one package name per list item, e.g. install: [ca-certificates, curl].';
    case 'suites':
      return 'Write one suite per list item, e.g. suites: [bookworm, bookworm-updates].';
    case 'components':
      return 'Write one component per list item, e.g. components: [main, contrib].';
    case 'sources':
      return 'Add at least one source with uri, suites, components and keyring; see docs/recipes.md.';
    default: {
      const meta = metaAt(path);
      const example = meta.examples?.[0];
      return example === undefined
        ? 'Fix the value; see docs/recipes.md for what the field accepts.'
        : `Write it like ${yamlInline(example)}.`;
    }
  }
}

function isValueIssue(issue: Issue): boolean {
  return (
    issue.code !== 'invalid_type' && issue.code !== 'unrecognized_keys' && issue.code !== 'invalid_union'
  );
}

function isTemplated(value: unknown): boolean {
  return typeof value === 'string' && value.includes('{{');
}

function typeName(type: string): string {
  switch (type) {
    case 'string':
      return 'a string';
    case 'array':
      return 'a list';
    case 'object':
      return 'a mapping';
    case 'boolean':
      return 'true or false';
    case 'number':
    case 'int':
      return 'a number';
    default:
      return `a ${type}`;
  }
}

function describeActual(value: unknown): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number') return 'a number';
  if (typeof value === 'boolean') return 'a boolean';
  return `a ${typeof value}`;
}

interface FieldMeta {
  description?: string;
  examples?: unknown[];
}

interface SchemaDef {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
}

function defOf(schema: z.ZodType): SchemaDef {
  return schema._zod.def as unknown as SchemaDef;
}

/** Looks through `.default()` and `.optional()` wrappers. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (let def = defOf(current); (def.type === 'default' || def.type === 'optional') && def.innerType; ) {
    current = def.innerType;
    def = defOf(current);
  }
  return current;
}

/** The schema of the value at a data path, or undefined when the path leaves the schema. */
function schemaAt(path: readonly (string | number)[]): z.ZodType | undefined {
  let schema: z.ZodType | undefined = recipeSchema;
  for (const part of path) {
    if (!schema) return undefined;
    const def = defOf(unwrap(schema));
    schema = typeof part === 'number' ? def.element : def.shape?.[part];
  }
  return schema;
}

/** Description and examples of a field, from the outermost wrapper that has them. */
function metaAt(path: readonly (string | number)[]): FieldMeta {
  const found: FieldMeta = {};
  let schema = schemaAt(path);
  while (schema) {
    const meta = schema.meta() as FieldMeta | undefined;
    found.description ??= meta?.description;
    found.examples ??= meta?.examples;
    const inner: z.ZodType | undefined = defOf(schema).innerType;
    schema = inner;
  }
  return found;
}

function fieldsAt(path: readonly (string | number)[]): string[] {
  const schema = schemaAt(path);
  return Object.keys((schema && defOf(unwrap(schema)).shape) ?? {});
}

/** The allowed field closest to a misspelt one, if it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

function yamlInline(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(yamlInline).join(', ')}]`;
  if (typeof value === 'string') return /^[\w./-]+$/.test(value) && !/^\d/.test(value) ? value : `"${value}"`;
  return String(value);
}

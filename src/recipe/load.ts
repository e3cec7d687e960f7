import { constants as fsConstants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { sha256Digest } from '../core/digest.js';
import { inputError } from '../core/errors.js';
import { parseRecipeText, type RecipeDocument } from './parse.js';
import {
  checkDefined,
  compileTemplates,
  type RecipeTemplate,
  referencedNames,
  renderTemplate,
  renderValue,
  symbolicVariables,
} from './render.js';
import { RECIPE_FIELD_VARIABLES } from './schema.js';
import type { LoadedRecipe, Recipe } from './types.js';
import { checkRecipeShape, validateRecipe } from './validate.js';
import {
  isRecipeFieldVariable,
  resolveVariables,
  undefinedVariableHint,
  type VariableValue,
} from './variables.js';

export { parseSetFlags } from './variables.js';

export interface LoadRecipeOptions {
  /** `--set key=value` variables (see `parseSetFlags`); they win over everything else. */
  set?: Record<string, string>;
  /** Environment for `ROOTCAST_MIRROR_*` and `ROOTCAST_VAR_*` (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Directory holding the host's apt configuration (default `/etc/apt`). */
  aptRoot?: string;
}

/**
 * The fields the recipe digest covers: everything that can change which packages a lock
 * holds. Files, steps, name and version are left out on purpose, so that editing a step
 * does not make the lock stale (and a stale lock is resolved again, which can move versions).
 */
const LOCKED_FIELDS = ['distro', 'release', 'arch', 'variant', 'from', 'sources', 'packages'] as const;

/**
 * Reads, validates and renders a recipe file.
 *
 * Order of checks, each reporting the first problem at its `file:line:column`: the file
 * exists, it is YAML, its shape is right (unknown, missing and mistyped fields), its
 * templates parse, every variable has a value, the rendered values are valid, and every
 * keyring exists. Nothing is fetched; the host's apt sources are read only when a
 * `mirror.*` variable is set neither by flag nor by environment.
 */
export async function loadRecipe(path: string, options: LoadRecipeOptions = {}): Promise<LoadedRecipe> {
  const absolute = resolve(path);
  const document = parseRecipeText(await readRecipeText(path, absolute), path);
  checkRecipeShape(document, document.raw);
  const templates = compileTemplates(document, document.raw);

  const aptRoot = options.aptRoot ?? '/etc/apt';
  const { values } = await resolveVariables(referencedNames(templates), {
    set: options.set ?? {},
    env: options.env ?? process.env,
    aptRoot,
    defaults: rawValues(document.raw),
  });
  checkDefined(
    document,
    templates,
    (name, template) => values.has(name) || (isRecipeFieldVariable(name) && !isFieldTemplate(template)),
    (name) => undefinedVariableHint(name, aptRoot),
  );

  // Recipe fields are rendered first, from outside variables only; then they are variables too.
  const outside = new Map([...values].map(([name, v]) => [name, v.value]));
  const symbolicOutside = symbolicVariables(outside);
  const fields = renderFields(document, templates, outside);
  const symbolicFields = renderFields(document, templates, symbolicOutside);
  const work = renderValue(document, document.raw, templates, new Map([...outside, ...fields]));
  const symbolic = renderValue(
    document,
    document.raw,
    templates,
    new Map([...symbolicOutside, ...symbolicFields]),
  );

  const rendered = validateRecipe(document, work);
  const symbolicRecipe = validateRecipe(document, symbolic);
  const recipe = await withAbsoluteKeyrings(document, rendered, dirname(absolute));

  const variables: Record<string, VariableValue> = {};
  for (const name of referencedNames(templates)) {
    const field = fields.get(name);
    const value = field !== undefined ? { value: field, origin: 'recipe' } : values.get(name);
    if (value) variables[name] = value;
  }
  return {
    path: absolute,
    recipe,
    sourceUriTemplates: symbolicRecipe.sources.map((s) => s.uri),
    digest: recipeDigest(symbolicRecipe),
    variables,
    locate: (at) => document.locate(at),
  };
}

/** The recipe's `values:` as written, when it is a map of strings (the schema checks it properly later). */
function rawValues(raw: unknown): Record<string, string> {
  const values = (raw as { values?: unknown } | null)?.values;
  if (typeof values !== 'object' || values === null || Array.isArray(values)) return {};
  return Object.fromEntries(
    Object.entries(values as Record<string, unknown>).filter(
      (e): e is [string, string] => typeof e[1] === 'string',
    ),
  );
}

/** `sha256:` of the canonical JSON of the fields that decide the package set (see LOCKED_FIELDS). */
export function recipeDigest(symbolicRecipe: Recipe): string {
  const locked: Record<string, unknown> = {};
  for (const field of LOCKED_FIELDS) locked[field] = symbolicRecipe[field];
  return sha256Digest(canonicalJson(locked));
}

async function readRecipeText(path: string, absolute: string): Promise<string> {
  try {
    return await readFile(absolute, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
      throw inputError(
        'RECIPE_NOT_FOUND',
        `${path}: ${code === 'EISDIR' ? 'is a directory, not a recipe file' : 'no such recipe file'}`,
        'Check the path; the shipped recipes are in recipes/ (e.g. recipes/debian-12-minbase.yaml).',
        error,
      );
    }
    throw inputError(
      'RECIPE_UNREADABLE',
      `${path}: cannot read the recipe (${code ?? 'error'})`,
      'Check the file permissions, or run as a user that can read it.',
      error,
    );
  }
}

function isFieldTemplate(template: RecipeTemplate): boolean {
  const [field] = template.path;
  return template.path.length === 1 && typeof field === 'string' && isRecipeFieldVariable(field);
}

function renderFields(
  document: RecipeDocument,
  templates: readonly RecipeTemplate[],
  outside: ReadonlyMap<string, string>,
): Map<string, string> {
  const raw = document.raw as Record<string, unknown>;
  const fields = new Map<string, string>();
  for (const field of RECIPE_FIELD_VARIABLES) {
    const template = templates.find((t) => isFieldTemplate(t) && t.path[0] === field);
    fields.set(field, template ? renderTemplate(document, template, outside) : String(raw[field]));
  }
  return fields;
}

/** Keyring paths made absolute (relative ones are read from the recipe's directory), each checked to exist. */
async function withAbsoluteKeyrings(
  document: RecipeDocument,
  recipe: Recipe,
  baseDir: string,
): Promise<Recipe> {
  const sources: Recipe['sources'] = [];
  // One at a time, so that the first missing keyring in the file is the one reported.
  for (const [i, source] of recipe.sources.entries()) {
    const keyring = isAbsolute(source.keyring) ? source.keyring : resolve(baseDir, source.keyring);
    const info = await stat(keyring).catch(() => undefined);
    if (!info?.isFile()) {
      throw document.errorAt(
        ['sources', i, 'keyring'],
        'RECIPE_KEYRING_MISSING',
        `sources[${i}].keyring: ${info ? 'not a file' : 'no such file'}: ${keyring}`,
        "Install the keyring (debian-archive-keyring for Debian) or fix the path; relative paths start at the recipe's directory.",
      );
    }
    // Read access now, not after the first request to the mirror (root reads anything; a
    // build run as another user may not).
    const denied = await access(keyring, fsConstants.R_OK).then(
      () => undefined,
      (error: NodeJS.ErrnoException) => error.code ?? 'EIO',
    );
    if (denied !== undefined) {
      throw document.errorAt(
        ['sources', i, 'keyring'],
        'KEYRING_UNREADABLE',
        `sources[${i}].keyring: cannot be read (${denied === 'EACCES' ? 'permission denied' : denied}): ${keyring}`,
        'Make the keyring readable by the user running rootcast (chmod a+r), or point the recipe at a copy it can read.',
      );
    }
    sources.push({ ...source, keyring });
  }
  return { ...recipe, sources };
}

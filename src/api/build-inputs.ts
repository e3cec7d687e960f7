import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { sha256Digest } from '../core/digest.js';
import type { LockFile } from '../lock/lock-file.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { variableEnvName } from '../recipe/variables.js';
import { VERSION } from '../version.js';

/**
 * A layer's cache key: the digest of canonical JSON over everything that can change the
 * layer's bytes (DESIGN.md "cache keys"). The JSON itself (the build inputs) is stored with
 * the template, so a later build can say which input changed (`build --explain`).
 *
 * Inputs are keyed by what a user recognises — files by their path in the tree, packages by
 * name, variables by name — so a difference reads as "files./etc/motd.content changed", not
 * as a position in a list.
 */
export interface BuildInputs {
  format: number;
  rootcast: string;
  /** The parent template's manifest digest (it covers the whole parent chain), or null. */
  parent: string | null;
  /** The locked packages: name → version and .deb digest. */
  packages: Record<string, string>;
  repositories: Record<string, string>;
  /** The recipe's fields that are not files or steps (sources, packages asked for, …). */
  recipe: Record<string, unknown>;
  /** Files in the order they are written, keyed by their path in the tree. */
  files: Record<string, Record<string, unknown>>;
  fileOrder: string[];
  steps: unknown[];
  /** Variable values the recipe was rendered with (they reach files and steps). */
  variables: Record<string, string>;
  epoch: number;
  compressionLevel: number | null;
}

/** Bump when a change to assembly changes what a build produces from the same inputs. */
export const BUILD_FORMAT = 5;

export async function buildInputs(options: {
  loaded: LoadedRecipe;
  /** Every variable's value as files and steps see them. */
  variables: Record<string, string>;
  lock: LockFile;
  parentDigest: string | undefined;
  epoch: number;
  templatesDir: string;
  compressionLevel: number | undefined;
}): Promise<BuildInputs> {
  const { recipe } = options.loaded;
  const files: BuildInputs['files'] = {};
  for (const file of recipe.files) {
    const entry: Record<string, unknown> = {
      owner: file.owner ?? null,
      group: file.group ?? null,
      mode: file.mode ?? null,
    };
    if (file.template !== undefined) {
      const text = await readFile(join(options.templatesDir, file.template)).catch(() => undefined);
      entry.template = file.template;
      entry.content = text === undefined ? 'missing' : sha256Digest(text);
    } else {
      entry.content = sha256Digest(file.content ?? '');
    }
    files[file.path] = entry;
  }
  const { files: _files, steps, ...rest } = recipe;
  return {
    format: BUILD_FORMAT,
    rootcast: VERSION,
    parent: options.parentDigest ?? null,
    packages: Object.fromEntries(
      options.lock.packages.map((p) => [`${p.name}:${p.arch}`, `${p.version} sha256:${p.sha256}`]),
    ),
    repositories: Object.fromEntries(
      options.lock.repositories.map((r) => [r.id, `sha256:${r.release.sha256}`]),
    ),
    recipe: rest as Record<string, unknown>,
    files,
    fileOrder: recipe.files.map((f) => f.path),
    steps: steps as unknown[],
    variables: options.variables,
    epoch: options.epoch,
    compressionLevel: options.compressionLevel ?? null,
  };
}

/** The cache key and the exact text it is the digest of. */
export function cacheKeyOf(inputs: BuildInputs): { key: string; text: string } {
  const text = canonicalJson(inputs);
  return { key: sha256Digest(text), text };
}

/** One input that differs between two builds. */
export interface InputChange {
  /** Dotted path into the inputs, e.g. `files./etc/motd.content` or `packages.nginx:amd64`. */
  path: string;
  before?: unknown;
  after?: unknown;
}

/**
 * Pure: what differs between the inputs of the previous build and this one, leaf by leaf
 * (added and removed keys included). Arrays are compared as whole values.
 */
export function diffInputs(before: unknown, after: unknown, path = ''): InputChange[] {
  if (canonicalJson(before ?? null) === canonicalJson(after ?? null)) return [];
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(before) || !isObject(after)) {
    return [
      {
        path: path || '(all)',
        ...(before === undefined ? {} : { before }),
        ...(after === undefined ? {} : { after }),
      },
    ];
  }
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.flatMap((key) => diffInputs(before[key], after[key], path ? `${path}.${key}` : key));
}

/** Pure: one line per change, for people. */
export function describeChange(change: InputChange): string {
  const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  if (change.before === undefined) return `${change.path} added (${show(change.after)})`;
  if (change.after === undefined) return `${change.path} removed (was ${show(change.before)})`;
  return `${change.path} changed: ${show(change.before)} → ${show(change.after)}`;
}

/**
 * Every variable's value as files and steps see it, flat (`student.name`): the recipe's
 * references as loaded, and the `values:` only template files use, overridden by --set or
 * the environment like every other variable.
 */
export function effectiveVariables(
  loaded: LoadedRecipe,
  set: Record<string, string> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, fallback] of Object.entries(loaded.recipe.values)) {
    const fromSet = set && Object.hasOwn(set, name) ? set[name] : undefined;
    const fromEnv = process.env[variableEnvName(name)];
    out[name] = fromSet ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : fallback);
  }
  for (const [name, { value }] of Object.entries(loaded.variables)) out[name] = value;
  return out;
}

export function templateValues(
  variables: Record<string, string>,
  recipe: LoadedRecipe['recipe'],
): Record<string, unknown> {
  const values: Record<string, unknown> = {
    name: recipe.name,
    version: recipe.version,
    distro: recipe.distro,
    release: recipe.release,
    arch: recipe.arch,
    variant: recipe.variant,
  };
  for (const [name, value] of Object.entries(variables)) setPath(values, name, value);
  return values;
}

function setPath(target: Record<string, unknown>, dotted: string, value: string): void {
  const parts = dotted.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
}

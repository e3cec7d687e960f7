import { inputError } from '../core/errors.js';
import { aptMirrorsWithOrigin, mirrorEnvName, readHostAptSources } from './apt-sources.js';
import { RECIPE_FIELD_VARIABLES } from './schema.js';

/**
 * Values for a recipe's handlebars variables, and where each came from.
 *
 * Precedence, first wins: `--set key=value`, then the environment, then (for `mirror.*`
 * only) the host's apt sources. Recipe fields (`name`, `version`, `distro`, `release`,
 * `arch`, `variant`) are variables too, but their value is the recipe's: they cannot be
 * set from outside, so a recipe always means what its file says.
 *
 * Environment names are derived from the variable name, never the other way round:
 * `mirror.debian-security` is read from `ROOTCAST_MIRROR_DEBIAN_SECURITY`, and a plain
 * variable `suite_extra` from `ROOTCAST_VAR_SUITE_EXTRA`.
 */
export interface VariableValue {
  value: string;
  /** `--set`, `env ROOTCAST_…`, `apt <file>`, or `recipe`. */
  origin: string;
}

export interface VariableInputs {
  /** `--set` values (see `parseSetFlags`). */
  set: Readonly<Record<string, string>>;
  env: NodeJS.ProcessEnv;
  /** Directory holding the host's apt configuration; read only if a mirror is still missing. */
  aptRoot: string;
  /** The recipe's `values:` (defaults, last in precedence). */
  defaults?: Readonly<Record<string, string>>;
}

const MIRROR_PREFIX = 'mirror.';
const KEY_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_-]*)*$/;
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'prototype', 'constructor']);
const RECIPE_FIELDS: ReadonlySet<string> = new Set(RECIPE_FIELD_VARIABLES);

/** `["k=v", "mirror.debian=URI"]` → `{ k: 'v', 'mirror.debian': 'URI' }`; a repeated key keeps its last value. */
export function parseSetFlags(flags: readonly string[]): Record<string, string> {
  const values: Record<string, string> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const key = eq < 0 ? flag : flag.slice(0, eq);
    if (eq <= 0) {
      throw inputError(
        'USAGE_SET',
        `--set ${JSON.stringify(flag)}: expected key=value`,
        'Write --set name=value, e.g. --set mirror.debian=URI (repeat --set for more).',
      );
    }
    checkSetKey(key);
    values[key] = flag.slice(eq + 1);
  }
  return values;
}

/** Rejects keys that cannot name a variable, or that name a recipe field. */
export function checkSetKey(key: string): void {
  if (!KEY_PATTERN.test(key) || key.split('.').some((s) => FORBIDDEN_SEGMENTS.has(s))) {
    throw inputError(
      'USAGE_SET',
      `--set ${JSON.stringify(key)}: not a variable name`,
      'Variable names are letters, digits, "_" and "-", joined by dots, e.g. mirror.debian or my_suite.',
    );
  }
  if (RECIPE_FIELDS.has(key)) {
    throw inputError(
      'USAGE_SET',
      `--set ${key}: \`${key}\` is a recipe field, not a variable that can be set`,
      `Edit \`${key}:\` in the recipe, or write \`${key}: "{{my_${key}}}"\` there and pass --set my_${key}=VALUE.`,
    );
  }
}

/** Whether a variable's value is the recipe's own field. */
export function isRecipeFieldVariable(name: string): boolean {
  return RECIPE_FIELDS.has(name);
}

/** Whether a variable names a mirror, which the recipe digest leaves symbolic. */
export function isMirrorVariable(name: string): boolean {
  return name.startsWith(MIRROR_PREFIX) && name.length > MIRROR_PREFIX.length;
}

/** The environment variable that sets `name`. */
export function variableEnvName(name: string): string {
  return isMirrorVariable(name)
    ? mirrorEnvName(name.slice(MIRROR_PREFIX.length))
    : `ROOTCAST_VAR_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** What to do about a variable nothing defines: one line naming the flag and the env var. */
export function undefinedVariableHint(name: string, aptRoot: string): string {
  if (isRecipeFieldVariable(name))
    return `\`${name}\` is a recipe field; recipe fields cannot refer to recipe fields, so write the value itself.`;
  if (isMirrorVariable(name)) {
    const last = name.slice(MIRROR_PREFIX.length);
    return `Pass --set ${name}=URI or set ${variableEnvName(name)}=URI, or add a deb source whose URI ends in /${last} to ${aptRoot}.`;
  }
  return `Pass --set ${name}=VALUE or set ${variableEnvName(name)}=VALUE.`;
}

/**
 * Finds a value for each named variable (recipe fields excluded: the caller has them).
 * Returns the values found and the names nothing defines; the host's apt sources are read
 * at most once, and only when a mirror is not set by flag or environment.
 */
export async function resolveVariables(
  names: Iterable<string>,
  inputs: VariableInputs,
): Promise<{ values: Map<string, VariableValue>; missing: string[] }> {
  for (const key of Object.keys(inputs.set)) checkSetKey(key);
  const values = new Map<string, VariableValue>();
  const missing: string[] = [];
  let apt: Map<string, { uri: string; file: string }> | undefined;
  for (const name of names) {
    if (values.has(name) || isRecipeFieldVariable(name)) continue;
    const set = Object.hasOwn(inputs.set, name) ? inputs.set[name] : undefined;
    if (set !== undefined) {
      values.set(name, { value: normalise(name, set), origin: '--set' });
      continue;
    }
    const envName = variableEnvName(name);
    const fromEnv = inputs.env[envName];
    if (fromEnv !== undefined && fromEnv !== '') {
      values.set(name, { value: normalise(name, fromEnv), origin: `env ${envName}` });
      continue;
    }
    if (isMirrorVariable(name)) {
      apt ??= aptMirrorsWithOrigin(await readHostAptSources(inputs.aptRoot));
      const found = apt.get(name.slice(MIRROR_PREFIX.length));
      if (found) {
        values.set(name, { value: found.uri, origin: `apt ${found.file}` });
        continue;
      }
    }
    const fallback =
      inputs.defaults && Object.hasOwn(inputs.defaults, name) ? inputs.defaults[name] : undefined;
    if (fallback !== undefined) {
      values.set(name, { value: fallback, origin: 'recipe values' });
      continue;
    }
    missing.push(name);
  }
  return { values, missing };
}

/** Mirror URIs are joined with `dists/…` later, so a trailing slash is dropped wherever it came from. */
function normalise(name: string, value: string): string {
  return isMirrorVariable(name) ? value.replace(/\/+$/, '') : value;
}

import { RootcastError } from '../core/errors.js';

/**
 * The resolver's errors. Codes are stable: `RESOLVE_UNKNOWN_PACKAGE` (a recipe names a
 * package no index has), `RESOLVE_UNSATISFIABLE` (a dependency chain ends in something
 * missing, excluded or too old) and `RESOLVE_CONFLICT` (every way forward is blocked by
 * Conflicts/Breaks). Exit code 2 when the recipe's install/exclude lists caused it.
 */

export interface Rejection {
  package: string;
  version?: string;
  reason: string;
}

export function unknownPackageError(
  name: string,
  field: 'install' | 'exclude',
  index: number,
  suggestions: readonly string[],
): RootcastError {
  const hint =
    suggestions.length > 0
      ? `Did you mean ${suggestions.map((s) => `'${s}'`).join(', ')}? Fix packages.${field}[${index}].`
      : `Check the spelling, the recipe's suites and components, or remove it from packages.${field}.`;
  return new RootcastError({
    code: 'RESOLVE_UNKNOWN_PACKAGE',
    message: `packages.${field}[${index}]: no package '${name}' in the configured repositories`,
    hint,
    exitCode: 2,
    details: { package: name, field, index, suggestions: [...suggestions] },
  });
}

export interface ResolveFailureInfo {
  code: 'RESOLVE_UNSATISFIABLE' | 'RESOLVE_CONFLICT';
  message: string;
  hint: string;
  byRecipe: boolean;
  chain: string[];
  rejected: Rejection[];
  field?: 'install' | 'exclude';
  index?: number;
}

export function resolveError(info: ResolveFailureInfo): RootcastError {
  const details: Record<string, unknown> = { chain: info.chain, rejected: info.rejected };
  if (info.field !== undefined) details.field = info.field;
  if (info.index !== undefined) details.index = info.index;
  if (info.chain[0] !== undefined) details.package = info.chain[0];
  return new RootcastError({
    code: info.code,
    message: info.message,
    hint: info.hint,
    exitCode: info.byRecipe ? 2 : 1,
    details,
  });
}

/**
 * Up to `limit` names within a small edit distance of `name`, closest first. Cheap enough
 * for the error path over ~70k names: lengths that cannot be close are skipped before any
 * distance is computed, and each distance stops once it exceeds the bound.
 */
export function closeNames(name: string, names: Iterable<string>, limit = 3): string[] {
  const bound = name.length <= 4 ? 1 : name.length <= 10 ? 2 : 3;
  const found: { name: string; d: number }[] = [];
  for (const other of names) {
    if (Math.abs(other.length - name.length) > bound || other === name) continue;
    const d = boundedDistance(name, other, bound);
    if (d <= bound) found.push({ name: other, d });
  }
  found.sort((a, b) => a.d - b.d || a.name.localeCompare(b.name));
  return found.slice(0, limit).map((f) => f.name);
}

function boundedDistance(a: string, b: string, bound: number): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      const v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      cur.push(v);
      if (v < rowMin) rowMin = v;
    }
    if (rowMin > bound) return bound + 1;
    prev = cur;
  }
  return prev[b.length]!;
}

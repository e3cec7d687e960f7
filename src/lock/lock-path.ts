import { basename, dirname, join } from 'node:path';

/**
 * Where a recipe's lock lives: `<recipe name>.lock.json` beside it. Kept apart from
 * lock-file.ts (zod, the schema) so the CLI can look for a lock before loading anything.
 */
export function lockPathFor(recipePath: string): string {
  const name = basename(recipePath).replace(/\.ya?ml$/i, '');
  return join(dirname(recipePath), `${name}.lock.json`);
}

import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../core/atomic.js';
import { canonicalJsonPretty } from '../core/canonical-json.js';
import { describeError, inputError } from '../core/errors.js';

/**
 * The lock: `<recipe>.lock.json` beside the recipe. It is the boundary between resolving
 * and building (as in apko): everything after it installs exactly these packages and
 * never consults an index to choose a version.
 *
 * Invariants: packages are sorted by name (then arch); every package names a repository
 * listed in `repositories`; repository URIs are written as the recipe writes them
 * (`{{mirror.debian}}`), so a lock is the same whichever mirror produced it; the file is
 * canonical JSON (sorted keys, two-space indentation), so equal locks are equal bytes.
 */
export const LOCK_VERSION = 1;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

export const lockRepositorySchema = z.strictObject({
  id: z.string(),
  uri: z.string(),
  suite: z.string(),
  component: z.string(),
  release: z.strictObject({
    sha256: sha256Hex,
    date: z.string(),
    validUntil: z.string().optional(),
  }),
});

export const lockPackageSchema = z.strictObject({
  name: z.string(),
  version: z.string(),
  arch: z.string(),
  path: z.string(),
  size: z.number().int().nonnegative(),
  sha256: sha256Hex,
  repository: z.string(),
  /** The archive's Priority for the package (the index's, which can differ from the .deb's own). */
  priority: z.string().optional(),
});

/**
 * A child recipe's base: what `from:` names and the digest of the parent's installed package
 * set (the locks of the whole parent chain). The child's `packages` are only what it adds.
 */
export const lockParentSchema = z.strictObject({
  from: z.string(),
  packages: z.string().regex(/^sha256:[0-9a-f]{64}$/),
});

export const lockFileSchema = z.strictObject({
  lockVersion: z.literal(LOCK_VERSION),
  recipe: z.strictObject({
    name: z.string(),
    version: z.string(),
    digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  }),
  distro: z.string(),
  release: z.string(),
  arch: z.string(),
  variant: z.string(),
  parent: lockParentSchema.optional(),
  repositories: z.array(lockRepositorySchema),
  packages: z.array(lockPackageSchema),
});

export type LockRepository = z.infer<typeof lockRepositorySchema>;
export type LockPackage = z.infer<typeof lockPackageSchema>;
export type LockParent = z.infer<typeof lockParentSchema>;
export type LockFile = z.infer<typeof lockFileSchema>;

/** `recipes/debian-12-minbase.yaml` → `recipes/debian-12-minbase.lock.json`. */
export { lockPathFor } from './lock-path.js';

export function serializeLock(lock: LockFile): string {
  return canonicalJsonPretty(lock);
}

/** Reads a lock; `undefined` when there is none. A lock that is not valid JSON or not a lock is bad input. */
export async function readLock(path: string): Promise<LockFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw inputError(
      'LOCK_INVALID',
      `${path}: not valid JSON (${describeError(error)})`,
      'Delete the lock file and run `rootcast lock` again to regenerate it.',
    );
  }
  const parsed = lockFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? issue.path.join('.') || '(root)' : '(root)';
    throw inputError(
      'LOCK_INVALID',
      `${path}: not a rootcast lock (${where}: ${issue?.message ?? 'invalid'})`,
      'Delete the lock file and run `rootcast lock` again to regenerate it.',
    );
  }
  return parsed.data;
}

export async function writeLock(path: string, lock: LockFile): Promise<void> {
  await writeFileAtomic(path, serializeLock(lock));
}

import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../core/atomic.js';
import { canonicalJsonPretty } from '../core/canonical-json.js';
import { describeError, isRootcastError, RootcastError } from '../core/errors.js';

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

/** Why a lock file was refused: `unreadable` files cannot be replaced by `lock --update`. */
export type LockProblem = 'unreadable' | 'json' | 'schema';

export interface ReadLockOptions {
  /** The recipe the lock belongs to, named in the hint. */
  recipe?: string;
}

/**
 * Reads a lock; `undefined` when there is none. A lock that cannot be read (a directory, no
 * permission), is not valid JSON or is not a lock is bad input: `LOCK_INVALID` (exit 2) with
 * `details.problem` saying which (`lock --update` replaces the last two).
 */
export async function readLock(path: string, options: ReadLockOptions = {}): Promise<LockFile | undefined> {
  const update = `Run \`rootcast lock --update ${options.recipe ?? 'RECIPE'}\` to replace it with a freshly resolved lock.`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'EISDIR') {
      throw lockInvalid(
        path,
        'unreadable',
        `${path}: is a directory, not a lock file`,
        `Move the directory ${path} away: rootcast keeps the recipe's lock at that path.`,
        error,
      );
    }
    throw lockInvalid(
      path,
      'unreadable',
      `${path}: the lock cannot be read (${describeError(error)})`,
      `Make ${path} a readable file (check its permissions), or move it away and run \`rootcast lock\` again.`,
      error,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw lockInvalid(path, 'json', `${path}: not valid JSON (${describeError(error)})`, update, error);
  }
  const parsed = lockFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? issue.path.join('.') || '(root)' : '(root)';
    throw lockInvalid(
      path,
      'schema',
      `${path}: not a rootcast lock (${where}: ${issue?.message ?? 'invalid'})`,
      update,
    );
  }
  return parsed.data;
}

function lockInvalid(
  path: string,
  problem: LockProblem,
  message: string,
  hint: string,
  cause?: unknown,
): RootcastError {
  return new RootcastError({
    code: 'LOCK_INVALID',
    message,
    hint,
    exitCode: 2,
    cause,
    details: { path, problem },
  });
}

/** The problem of a `LOCK_INVALID` error `readLock` threw, if that is what `error` is. */
export function lockProblemOf(error: unknown): LockProblem | undefined {
  if (!isRootcastError(error) || error.code !== 'LOCK_INVALID') return undefined;
  const problem = error.details?.problem;
  return problem === 'unreadable' || problem === 'json' || problem === 'schema' ? problem : undefined;
}

export async function writeLock(path: string, lock: LockFile): Promise<void> {
  await writeFileAtomic(path, serializeLock(lock));
}

import { type Context, type ContextOptions, createContext } from '../core/context.js';
import { inputError, isRootcastError, RootcastError } from '../core/errors.js';
import { loadIndexes } from '../distro/deb/repository.js';
import { baseUriFor, diffLocks, type LockChanges, lockMismatches } from '../lock/compare-lock.js';
import { createLock } from '../lock/create-lock.js';
import { type LockFile, lockPathFor, lockProblemOf, readLock, writeLock } from '../lock/lock-file.js';
import { loadRecipe } from '../recipe/load.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { resolve } from '../resolve/index.js';
import { type ParentBase, parentBase } from './parent.js';

export interface RecipeOptions extends ContextOptions {
  /** `--set key=value` variables. */
  set?: Record<string, string>;
  /** Environment for variables (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Directory holding the host's apt configuration (default `/etc/apt`). */
  aptRoot?: string;
}

export interface LockOptions extends RecipeOptions {
  /** Resolve again even when the lock still matches the recipe. */
  update?: boolean;
  /** Fail instead of writing when the lock is missing or no longer matches the recipe. */
  frozen?: boolean;
  /** Recipe paths of the children whose parents are being locked (cycle detection). */
  ancestry?: string[];
}

export interface LockResult {
  path: string;
  lock: LockFile;
  /** `resolved` when indexes were read and a version chosen, `unchanged` when the lock was kept. */
  status: 'resolved' | 'unchanged';
  /** Whether the file on disk changed. */
  written: boolean;
  /** Whether there was no usable lock before (none, or a corrupt one that `update` replaced). */
  created: boolean;
  /** Whether a corrupt lock was replaced (`update` only; `created` is then true too). */
  replaced?: boolean;
  changes: LockChanges;
  seconds: { indexes: number; resolve: number };
  /** Every variable the recipe used, with its value and where it came from (`--set`, env, apt, recipe). */
  variables: LoadedRecipe['variables'];
}

/**
 * `rootcast lock`: make or refresh `<recipe>.lock.json`. A lock that still matches its
 * recipe is kept as it is (no network) unless `update` is set; a stale one is resolved
 * again, or refused under `frozen`.
 */
export async function lock(recipePath: string, options: LockOptions = {}): Promise<LockResult> {
  // The store is checked first: a bad --store fails before the recipe or the network is read.
  const ctx = createContext(options);
  const loaded = await loadRecipe(recipePath, recipeLoadOptions(options));
  return { ...(await lockLoaded(loaded, ctx, options)), variables: loaded.variables };
}

async function lockLoaded(
  loaded: LoadedRecipe,
  ctx: Context,
  options: LockOptions,
): Promise<Omit<LockResult, 'variables'>> {
  const path = lockPathFor(loaded.path);
  const { lock: existing, replaced } = await readOrReplaceLock(path, loaded, ctx, options);
  const base = await parentOf(loaded, ctx, options);
  const reasons = existing ? lockMismatches(existing, loaded, base?.lockParent) : ['there is no lock yet'];

  if (existing && reasons.length === 0 && !options.update) {
    return {
      path,
      lock: existing,
      status: 'unchanged',
      written: false,
      created: false,
      changes: diffLocks(existing, existing),
      seconds: { indexes: 0, resolve: 0 },
    };
  }
  if (options.frozen) throw frozenError(path, reasons, existing === undefined);

  const { lock: fresh, seconds } = await resolveLock(loaded, ctx, base);
  const written = existing === undefined || JSON.stringify(existing) !== JSON.stringify(fresh);
  if (written) await writeLock(path, fresh);
  return {
    path,
    lock: fresh,
    status: 'resolved',
    written,
    created: existing === undefined,
    ...(replaced ? { replaced } : {}),
    changes: diffLocks(existing, fresh),
    seconds,
  };
}

/** Reads the recipe's repositories and resolves a lock, without writing it. */
export async function resolveLock(
  loaded: LoadedRecipe,
  ctx: Context,
  base?: ParentBase,
): Promise<{ lock: LockFile; seconds: { indexes: number; resolve: number } }> {
  const { recipe } = loaded;
  const t0 = performance.now();
  const sources = recipe.sources.map((source, i) => ({
    ...source,
    uriTemplate: loaded.sourceUriTemplates[i] ?? source.uri,
  }));
  const indexes = await loadIndexes(sources, recipe.arch, ctx);
  // In the resolve worker (lock-worker.ts), a full collection here frees the garbage of
  // parsing before the resolver allocates: the build's peak memory is this moment.
  (globalThis as { rootcastCollect?: () => void }).rootcastCollect?.();
  const t1 = performance.now();
  ctx.reporter.log('debug', `read ${indexes.length} indexes in ${((t1 - t0) / 1000).toFixed(2)} s`);
  let resolution: ReturnType<typeof resolve>;
  try {
    resolution = resolve(
      {
        arch: recipe.arch,
        release: recipe.release,
        variant: recipe.variant,
        install: recipe.packages.install,
        exclude: recipe.packages.exclude,
        ...(base ? { installed: base.installed } : {}),
      },
      indexes,
    );
  } catch (error) {
    throw pointAtRecipe(error, loaded);
  }
  const t2 = performance.now();
  ctx.reporter.log(
    'debug',
    `resolved ${resolution.packages.length} packages in ${((t2 - t1) / 1000).toFixed(3)} s`,
  );
  return {
    lock: createLock(loaded, indexes, resolution.packages, base?.lockParent),
    seconds: { indexes: (t1 - t0) / 1000, resolve: (t2 - t1) / 1000 },
  };
}

/**
 * Loads the recipe and its lock for work that must not choose versions (fetch, build).
 * A missing or stale lock is resolved and written first, unless `frozen` forbids it.
 */
export async function lockedRecipe(
  recipePath: string,
  options: LockOptions,
): Promise<{ loaded: LoadedRecipe; lock: LockFile; path: string }> {
  const ctx = createContext(options);
  const loaded = await loadRecipe(recipePath, recipeLoadOptions(options));
  const path = lockPathFor(loaded.path);
  const existing = await readLock(path, { recipe: loaded.path });
  const base = await parentOf(loaded, ctx, options);
  const reasons = existing ? lockMismatches(existing, loaded, base?.lockParent) : ['there is no lock yet'];
  if (existing && reasons.length === 0) return { loaded, lock: existing, path };
  if (options.frozen) throw frozenError(path, reasons, existing === undefined);
  const result = await lockLoaded(loaded, ctx, { ...options, update: true });
  return { loaded, lock: result.lock, path };
}

/**
 * The recipe's current lock. `--update` means "resolve again and rewrite", so under `update`
 * (and not `frozen`) a lock that is not valid JSON or not a lock is treated as absent, with a
 * warning, and the fresh lock replaces it; a path that cannot be read at all (a directory, no
 * permission) is refused either way, since writing there would fail too.
 */
async function readOrReplaceLock(
  path: string,
  loaded: LoadedRecipe,
  ctx: Context,
  options: LockOptions,
): Promise<{ lock: LockFile | undefined; replaced: boolean }> {
  try {
    return { lock: await readLock(path, { recipe: loaded.path }), replaced: false };
  } catch (error) {
    const problem = lockProblemOf(error);
    if (!options.update || options.frozen || (problem !== 'json' && problem !== 'schema')) throw error;
    ctx.reporter.log('warn', `${(error as Error).message}; replacing it with a freshly resolved lock`);
    return { lock: undefined, replaced: true };
  }
}

/** The recipe's parent base (`from:`), its parent recipes locked first when they are recipes. */
export async function parentOf(
  loaded: LoadedRecipe,
  ctx: Context,
  options: LockOptions,
): Promise<ParentBase | undefined> {
  if (loaded.recipe.from === undefined) return undefined;
  const ancestry = [...(options.ancestry ?? []), loaded.path];
  return parentBase(loaded, {
    store: ctx.store,
    seen: new Set(ancestry),
    lockRecipe: (path) => lockedRecipe(path, { ...options, update: false, ancestry }),
  });
}

/** The mirror base URI for each locked repository id, from the recipe's current sources. */
export function repositoryBaseUris(lockFile: LockFile, loaded: LoadedRecipe): Map<string, string> {
  const bases = new Map<string, string>();
  for (const repo of lockFile.repositories) {
    const base = baseUriFor(repo, loaded);
    if (base === undefined) {
      throw inputError(
        'LOCK_STALE',
        `${lockPathFor(loaded.path)}: repository ${repo.id} (${repo.uri}) is not among the recipe's sources`,
        'Run `rootcast lock --update` to resolve the recipe again.',
      );
    }
    bases.set(repo.id, base);
  }
  return bases;
}

export function recipeLoadOptions(options: RecipeOptions): Parameters<typeof loadRecipe>[1] {
  return {
    ...(options.set ? { set: options.set } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.aptRoot ? { aptRoot: options.aptRoot } : {}),
  };
}

function frozenError(path: string, reasons: readonly string[], missing: boolean): RootcastError {
  return inputError(
    missing ? 'LOCK_MISSING' : 'LOCK_STALE',
    `${path}: ${reasons.join('; ')} (--frozen)`,
    missing
      ? 'Run `rootcast lock RECIPE` first, or drop --frozen.'
      : 'Run `rootcast lock --update RECIPE` and commit the new lock, or drop --frozen.',
  );
}

/** An unknown package in `packages.install`/`exclude` is reported at its line in the recipe. */
function pointAtRecipe(error: unknown, loaded: LoadedRecipe): unknown {
  if (!isRootcastError(error) || !error.details) return error;
  const { field, index } = error.details as { field?: unknown; index?: unknown };
  if ((field !== 'install' && field !== 'exclude') || typeof index !== 'number') return error;
  const position = loaded.locate(['packages', field, index]);
  if (!position) return error;
  return new RootcastError({
    code: error.code,
    message: `${loaded.path}:${position.line}:${position.column}: ${error.message}`,
    hint: error.hint,
    exitCode: error.exitCode,
    cause: error,
    details: { ...error.details, file: loaded.path, line: position.line, column: position.column },
  });
}

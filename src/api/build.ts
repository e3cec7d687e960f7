import { access, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeExtendedStates } from '../assemble/apt-state.js';
import { cleanupTree } from '../assemble/cleanup.js';
import { configurePackages } from '../assemble/configure.js';
import { registerUnpacked } from '../assemble/dpkg-db.js';
import { applyRecipeFiles } from '../assemble/recipe-files.js';
import { runRecipeSteps } from '../assemble/recipe-steps.js';
import { setupTreeSkeleton } from '../assemble/skeleton.js';
import { setupMergedUsr, unpackPackages } from '../assemble/unpack.js';
import { canonicalJson, canonicalJsonPretty } from '../core/canonical-json.js';
import { type Context, createContext, storePaths } from '../core/context.js';
import { sha256Digest, sha256Hex } from '../core/digest.js';
import { inputError, isRootcastError } from '../core/errors.js';
import { fetchPackages } from '../fetch/package-cache.js';
import { type LockFile, lockFileSchema, serializeLock } from '../lock/lock-file.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { collectInstalledPackages } from '../sbom/collect.js';
import { spdxDocument } from '../sbom/spdx.js';
import { cleanStore } from '../store/clean.js';
import { createStagingDir } from '../store/layers.js';
import { acquireLock, buildLockPath } from '../store/lock.js';
import { storeLayout } from '../store/paths.js';
import { findByCacheKey } from '../store/template-query.js';
import { commitTemplate, pointLatest } from '../store/templates.js';
import { VERSION } from '../version.js';
import { type LockOptions, lockedRecipe, repositoryBaseUris } from './lock.js';
import { resolveLockIsolated } from './lock-worker.js';

/**
 * `rootcast build`: recipe + lock + package cache → a committed template.
 *
 * The pipeline never chooses a version (the lock does), extracts each package once, runs
 * maintainer scripts and steps only in the sandbox, and commits atomically: a build killed at
 * any moment leaves its staging tree under `tmp/` (removed by the next build) and no tag.
 * A build whose inputs are unchanged (the cache key) returns the existing template at once.
 */
export interface BuildOptions extends LockOptions {
  /** Assemble again even when a template with the same cache key exists. */
  rebuild?: boolean;
  /** zstd level for the layer (default 3). */
  compressionLevel?: number;
  /** Seconds since the epoch; default the newest Release Date in the lock. */
  sourceDateEpoch?: number;
}

export interface BuildResult {
  template: string;
  digest: string;
  layers: { digest: string; diffId: string; size: number }[];
  /** True when the build cache answered and nothing was assembled. */
  cached: boolean;
  packages: number;
  seconds: number;
  /** Wall time of each phase, in seconds. */
  phases: Record<string, number>;
}

/** Bump when a change to assembly changes what a build produces from the same inputs. */
const BUILD_FORMAT = 4;

export async function build(recipePath: string, options: BuildOptions = {}): Promise<BuildResult> {
  const started = performance.now();
  const ctx = createContext(options);
  const { loaded, lockText } = await lockedRecipeText(recipePath, options);
  const lock: LockFile = lockFileSchema.parse(JSON.parse(lockText));
  const { recipe } = loaded;
  if (recipe.from) {
    throw inputError(
      'BUILD_FROM_UNSUPPORTED',
      `${loaded.path}: \`from: ${recipe.from}\` (layered templates) is not supported yet`,
      'Remove `from:` and build the base recipe on its own for now.',
    );
  }
  const epoch = options.sourceDateEpoch ?? newestReleaseEpoch(lock);
  const templatesDir = await findTemplatesDir(loaded.path);
  const cacheKey = await buildCacheKey(loaded, lockText, epoch, templatesDir, options.compressionLevel);

  if (!options.rebuild) {
    const existing = await findByCacheKey(ctx.store, cacheKey, `${recipe.name}:${recipe.version}`);
    if (existing && existing.ref === `${recipe.name}:${recipe.version}`) {
      await pointLatest(
        ctx.store,
        recipe.name,
        { digest: existing.manifestDigest, size: existing.manifestSize },
        cacheKey,
      );
      return resultOf(existing.ref, existing.manifestDigest, existing.layers, true, lock, started, {});
    }
  }

  // gc takes the gc lock exclusively: a build holds it shared so the two never interleave,
  // even for a name that has never been built (whose build lock gc cannot know of).
  const gcLock = await acquireLock(storeLayout.lock(ctx.store, 'gc'), { shared: true });
  const buildLock = await acquireLock(buildLockPath(ctx.store, recipe.name)).catch(async (error: unknown) => {
    await gcLock.release();
    throw error;
  });
  let staging: string | undefined;
  try {
    await cleanStore(ctx.store);
    const phases: Record<string, number> = {};
    const phase = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      ctx.reporter.log('debug', `${name}…`);
      const value = await work();
      phases[name] = round((performance.now() - t0) / 1000);
      return value;
    };

    await phase('fetch', () => fetchLocked(loaded, lock, ctx));
    // The staging directory is the tree; committing moves it to layers/<diffid>.
    staging = await createStagingDir(ctx.store);
    const tree = staging;
    await phase('skeleton', async () => {
      await setupTreeSkeleton(tree, recipe.sources);
      setupMergedUsr(tree, recipe.release, recipe.arch);
    });
    const files = lock.packages.map((p) => ({
      name: p.name,
      version: p.version,
      arch: p.arch,
      file: storePaths.packageFile(ctx.store, p.sha256),
    }));
    // One worker per CPU (the unpacker's default), not the network concurrency: unpacking is
    // CPU-bound (xz) and every extra worker is another heap and more contention on the
    // file system's directory locks.
    const unpacked = await phase('unpack', () => unpackPackages(files, tree, { reporter: ctx.reporter }));
    await phase('register', () => registerUnpacked(tree, unpacked, recipe.arch));
    const sandboxCtx = {
      reporter: ctx.reporter,
      sourceDateEpoch: epoch,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    };
    await phase('configure', () => configurePackages(tree, unpacked, lock.packages, sandboxCtx));
    await phase('apt-state', () =>
      writeExtendedStates(tree, unpacked, {
        variant: recipe.variant,
        requested: recipe.packages.install,
        arch: recipe.arch,
        archivePriority: new Map(lock.packages.flatMap((p) => (p.priority ? [[p.name, p.priority]] : []))),
      }),
    );
    await phase('files', () =>
      applyRecipeFiles(tree, recipe.files, { templatesDir, variables: templateValues(loaded) }),
    );
    await phase('steps', () => runRecipeSteps(tree, recipe.steps, sandboxCtx));
    await phase('cleanup', () => cleanupTree(tree));
    const sbom = await phase('sbom', async () =>
      canonicalJsonPretty(
        spdxDocument({
          name: recipe.name,
          version: recipe.version,
          distro: recipe.distro,
          release: recipe.release,
          epoch,
          namespaceDigest: cacheKey,
          packages: await collectInstalledPackages(tree),
        }),
      ),
    );
    const committed = await phase('commit', () =>
      commitTemplate({
        store: ctx.store,
        name: recipe.name,
        version: recipe.version,
        tree,
        sourceDateEpoch: epoch,
        // SOURCE_DATE_EPOCH is applied to the tree while it is archived: one walk, not two.
        clampTree: true,
        arch: recipe.arch,
        lock: lockText,
        sbom,
        recipeDigest: loaded.digest,
        cacheKey,
        replace: true,
        latest: true,
        reporter: ctx.reporter,
        ...(options.compressionLevel !== undefined ? { compressionLevel: options.compressionLevel } : {}),
      }),
    );
    return resultOf(committed.ref, committed.manifestDigest, committed.layers, false, lock, started, phases);
  } finally {
    if (staging) await rm(staging, { recursive: true, force: true });
    await buildLock.release();
    await gcLock.release();
  }
}

/**
 * The recipe and its lock as text, resolving the lock first (in a worker, see
 * lock-worker.ts) when it is missing or stale. The build keeps only the text and a copy
 * parsed from it: a freshly resolved lock's strings are slices of the indexes' text.
 */
async function lockedRecipeText(
  recipePath: string,
  options: BuildOptions,
): Promise<{ loaded: LoadedRecipe; lockText: string }> {
  try {
    const { loaded, lock } = await lockedRecipe(recipePath, { ...options, frozen: true });
    return { loaded, lockText: serializeLock(lock) };
  } catch (error) {
    if (options.frozen || !isRootcastError(error) || !LOCK_NEEDS_RESOLVING.has(error.code)) throw error;
  }
  // Resolving reads every index; in a worker, that memory is gone before assembly starts.
  await resolveLockIsolated(recipePath, options);
  const { loaded, lock } = await lockedRecipe(recipePath, { ...options, frozen: true });
  return { loaded, lockText: serializeLock(lock) };
}

/** What `lockedRecipe` under `frozen` throws when the lock must be (re)made. */
const LOCK_NEEDS_RESOLVING = new Set(['LOCK_MISSING', 'LOCK_STALE']);

async function fetchLocked(loaded: LoadedRecipe, lock: LockFile, ctx: Context): Promise<void> {
  const bases = repositoryBaseUris(lock, loaded);
  await fetchPackages(
    lock.packages.map((p) => ({ ...p, baseUri: bases.get(p.repository)! })),
    ctx,
  );
}

/** SOURCE_DATE_EPOCH by default: the newest signed Release Date the lock was made from. */
export function newestReleaseEpoch(lock: LockFile): number {
  const dates = lock.repositories.map((r) => Date.parse(r.release.date)).filter((d) => Number.isFinite(d));
  if (dates.length === 0) return 0;
  return Math.floor(Math.max(...dates) / 1000);
}

/**
 * Everything that can change the template's bytes: the lock, the recipe as rendered (the
 * mirrors too, since the tree's apt sources name them), the templates the files use, the
 * epoch, the compression level and the build format.
 */
async function buildCacheKey(
  loaded: LoadedRecipe,
  lockText: string,
  epoch: number,
  templatesDir: string,
  compressionLevel: number | undefined,
): Promise<string> {
  const templates: Record<string, string> = {};
  for (const file of loaded.recipe.files) {
    if (!file.template) continue;
    const text = await readFile(join(templatesDir, file.template)).catch(() => undefined);
    templates[file.template] = text === undefined ? 'missing' : sha256Hex(text);
  }
  return sha256Digest(
    canonicalJson({
      format: BUILD_FORMAT,
      rootcast: VERSION,
      lock: sha256Hex(lockText),
      recipe: loaded.recipe,
      templates,
      epoch,
      compressionLevel: compressionLevel ?? null,
    }),
  );
}

/** `templates/` beside the recipe (or its parent), else the one shipped with rootcast. */
async function findTemplatesDir(recipePath: string): Promise<string> {
  const dir = dirname(recipePath);
  const shipped = fileURLToPath(new URL('../../templates', import.meta.url));
  for (const candidate of [join(dir, 'templates'), join(dir, '..', 'templates')]) {
    if (
      await access(candidate).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return shipped;
}

function templateValues(loaded: LoadedRecipe): Record<string, unknown> {
  const { recipe } = loaded;
  const values: Record<string, unknown> = {
    name: recipe.name,
    version: recipe.version,
    distro: recipe.distro,
    release: recipe.release,
    arch: recipe.arch,
    variant: recipe.variant,
  };
  for (const [name, { value }] of Object.entries(loaded.variables)) setPath(values, name, value);
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

function resultOf(
  template: string,
  digest: string,
  layers: readonly { digest: string; diffId: string; size: number }[],
  cached: boolean,
  lock: LockFile,
  started: number,
  phases: Record<string, number>,
): BuildResult {
  return {
    template,
    digest,
    layers: layers.map((l) => ({ digest: l.digest, diffId: l.diffId, size: l.size })),
    cached,
    packages: lock.packages.length,
    seconds: round((performance.now() - started) / 1000),
    phases,
  };
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeExtendedStates } from '../assemble/apt-state.js';
import { cleanupTree } from '../assemble/cleanup.js';
import { configurePackages } from '../assemble/configure.js';
import { registerUnpacked } from '../assemble/dpkg-db.js';
import { mountOverlay, unmountBelow, unmountOverlay } from '../assemble/overlay.js';
import { applyRecipeFiles } from '../assemble/recipe-files.js';
import { runRecipeSteps } from '../assemble/recipe-steps.js';
import { setupTreeSkeleton, sourcesList } from '../assemble/skeleton.js';
import { setupMergedUsr, unpackPackages } from '../assemble/unpack.js';
import { canonicalJsonPretty } from '../core/canonical-json.js';
import { type Context, createContext, storePaths } from '../core/context.js';
import { inputError, isRootcastError, RootcastError } from '../core/errors.js';
import { fetchPackages } from '../fetch/package-cache.js';
import { type LockFile, lockFileSchema, serializeLock } from '../lock/lock-file.js';
import { loadRecipe } from '../recipe/load.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { variableEnvName } from '../recipe/variables.js';
import { collectInstalledPackages } from '../sbom/collect.js';
import { spdxDocument } from '../sbom/spdx.js';
import { openBlobStore } from '../store/blob-store.js';
import { cleanStore } from '../store/clean.js';
import { createStagingDir } from '../store/layers.js';
import { acquireLock, buildLockPath } from '../store/lock.js';
import { ANNOTATION } from '../store/oci.js';
import { storeLayout } from '../store/paths.js';
import { findByCacheKey, readTemplate, resolveTemplate } from '../store/template-query.js';
import { commitTemplate, pointLatest } from '../store/templates.js';
import { type BuildInputs, buildInputs, cacheKeyOf, describeChange, diffInputs } from './build-inputs.js';
import { type LockOptions, lockedRecipe, recipeLoadOptions, repositoryBaseUris } from './lock.js';
import { resolveLockIsolated } from './lock-worker.js';
import { isRecipeReference, parentRecipePath, parentTemplateRef } from './parent.js';

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
  /** Say which inputs changed since the tag's current build (`BuildResult.explain`). */
  explain?: boolean;
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
  /** With `explain`: why the build was or was not answered by the cache, one line per input. */
  explain?: string[];
  /** The parent recipe's build (a cache hit when it was current), when `from:` names a recipe. */
  parent?: BuildResult;
}

export async function build(recipePath: string, options: BuildOptions = {}): Promise<BuildResult> {
  const started = performance.now();
  const ctx = createContext(options);
  const parent = await buildParent(recipePath, options);
  const { loaded, lockText } = await lockedRecipeText(recipePath, options);
  const lock: LockFile = lockFileSchema.parse(JSON.parse(lockText));
  const { recipe } = loaded;
  const ref = `${recipe.name}:${recipe.version}`;
  const epoch = options.sourceDateEpoch ?? newestReleaseEpoch(lock);
  const templatesDir = await findTemplatesDir(loaded.path);
  const variables = effectiveVariables(loaded, options.set);
  const inputs = await buildInputs({
    loaded,
    variables,
    lock,
    parentDigest: parent?.digest,
    epoch,
    templatesDir,
    compressionLevel: options.compressionLevel,
  });
  const { key: cacheKey, text: inputsText } = cacheKeyOf(inputs);
  const explain = options.explain ? await explainBuild(ctx.store, ref, inputs, cacheKey) : undefined;
  const extra = { ...(explain ? { explain } : {}), ...(parent?.result ? { parent: parent.result } : {}) };

  if (!options.rebuild) {
    const existing = await findByCacheKey(ctx.store, cacheKey, ref);
    if (existing && existing.ref === ref) {
      await pointLatest(
        ctx.store,
        recipe.name,
        { digest: existing.manifestDigest, size: existing.manifestSize },
        cacheKey,
      );
      return {
        ...resultOf(ref, existing.manifestDigest, existing.layers, true, lock, started, {}),
        ...extra,
      };
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
  let overlayTarget: string | undefined;
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
    staging = await createStagingDir(ctx.store);
    // A base is assembled in the staging directory itself, which committing moves to
    // layers/<diffid>. A child is assembled in an overlay over its parent's layers; only the
    // upper directory (its changes) is committed.
    let tree = staging;
    let layerTree = staging;
    if (parent) {
      const details = await readTemplate(ctx.store, parent.digest);
      const missing = details.layers.find((l) => !l.unpacked);
      if (missing) {
        throw new RootcastError({
          code: 'LAYER_NOT_UNPACKED',
          message: `layer ${missing.diffId} of the parent ${details.ref ?? parent.digest} is not unpacked in the store`,
          hint: 'Run `rootcast fsck --repair`, then build the parent again (or pull it).',
        });
      }
      const dirs = {
        upper: join(staging, 'upper'),
        work: join(staging, 'work'),
        target: join(staging, 'root'),
      };
      for (const dir of Object.values(dirs)) await mkdir(dir, { mode: 0o755 });
      await phase('overlay', () =>
        mountOverlay({ lowers: details.layers.map((l) => l.unpackedPath).reverse(), ...dirs }),
      );
      overlayTarget = dirs.target;
      tree = dirs.target;
      layerTree = dirs.upper;
      await phase('skeleton', () => refreshSources(dirs.target, recipe.sources));
    } else {
      await phase('skeleton', async () => {
        await setupTreeSkeleton(tree, recipe.sources);
        setupMergedUsr(tree, recipe.release, recipe.arch);
      });
    }
    const sbom = await assembleTree(tree, {
      loaded,
      lock,
      epoch,
      templatesDir,
      cacheKey,
      variables,
      ctx,
      phase,
    });
    if (overlayTarget) {
      await unmountOverlay(overlayTarget);
      overlayTarget = undefined;
    }
    const committed = await phase('commit', () =>
      commitTemplate({
        store: ctx.store,
        name: recipe.name,
        version: recipe.version,
        tree: layerTree,
        sourceDateEpoch: epoch,
        // SOURCE_DATE_EPOCH is applied to the tree while it is archived: one walk, not two.
        clampTree: true,
        arch: recipe.arch,
        lock: lockText,
        sbom,
        recipeDigest: loaded.digest,
        cacheKey,
        buildInputs: inputsText,
        labels: recipe.labels,
        ...(parent ? { parent: parent.digest } : {}),
        replace: true,
        latest: true,
        reporter: ctx.reporter,
        ...(options.compressionLevel !== undefined ? { compressionLevel: options.compressionLevel } : {}),
      }),
    );
    const layers = (await readTemplate(ctx.store, committed.manifestDigest)).layers;
    return {
      ...resultOf(committed.ref, committed.manifestDigest, layers, false, lock, started, phases),
      ...extra,
    };
  } finally {
    if (overlayTarget) await unmountOverlay(overlayTarget).catch(() => undefined);
    if (staging) {
      await unmountBelow(staging).catch(() => undefined);
      await rm(staging, { recursive: true, force: true });
    }
    await buildLock.release();
    await gcLock.release();
  }
}

interface AssembleContext {
  loaded: LoadedRecipe;
  lock: LockFile;
  epoch: number;
  templatesDir: string;
  cacheKey: string;
  variables: Record<string, string>;
  ctx: Context;
  phase: <T>(name: string, work: () => Promise<T>) => Promise<T>;
}

/**
 * Installs the lock's packages into `tree` (fresh, or a child's overlay over its parent),
 * then files, steps and cleanup; returns the SPDX document of the whole tree.
 */
async function assembleTree(tree: string, a: AssembleContext): Promise<string> {
  const { loaded, lock, ctx, phase } = a;
  const { recipe } = loaded;
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
  const installedBefore = lock.parent ? await collectInstalledPackages(tree) : [];
  const dpkgVersion = installedBefore.find((p) => p.name === 'dpkg')?.version;
  const sandboxCtx = {
    reporter: ctx.reporter,
    sourceDateEpoch: a.epoch,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(dpkgVersion ? { dpkgVersion } : {}),
  };
  if (unpacked.length > 0) {
    await phase('configure', () => configurePackages(tree, unpacked, lock.packages, sandboxCtx));
  }
  await phase('apt-state', () =>
    writeExtendedStates(tree, unpacked, {
      variant: recipe.variant,
      requested: recipe.packages.install,
      arch: recipe.arch,
      archivePriority: new Map(lock.packages.flatMap((p) => (p.priority ? [[p.name, p.priority]] : []))),
    }),
  );
  await phase('files', () =>
    applyRecipeFiles(tree, recipe.files, {
      templatesDir: a.templatesDir,
      variables: templateValues(a.variables, recipe),
    }),
  );
  await phase('steps', () => runRecipeSteps(tree, recipe.steps, sandboxCtx));
  await phase('cleanup', () => cleanupTree(tree));
  return phase('sbom', async () =>
    canonicalJsonPretty(
      spdxDocument({
        name: recipe.name,
        version: recipe.version,
        distro: recipe.distro,
        release: recipe.release,
        epoch: a.epoch,
        namespaceDigest: a.cacheKey,
        packages: await collectInstalledPackages(tree),
      }),
    ),
  );
}

/** A child's apt sources are its own recipe's; rewritten only when they differ (no copy-up otherwise). */
async function refreshSources(tree: string, sources: LoadedRecipe['recipe']['sources']): Promise<void> {
  const path = join(tree, 'etc/apt/sources.list');
  const wanted = sourcesList(sources);
  if ((await readFile(path, 'utf8').catch(() => undefined)) !== wanted)
    await writeFile(path, wanted, { mode: 0o644 });
}

interface ParentTemplate {
  digest: string;
  /** The parent's own build, when `from:` names a recipe. */
  result?: BuildResult;
}

/**
 * The template a child builds on: a recipe parent is built first (a cache hit when it is
 * current), a template parent must be in the store.
 */
async function buildParent(recipePath: string, options: BuildOptions): Promise<ParentTemplate | undefined> {
  const loaded = await loadRecipe(recipePath, recipeLoadOptions(options));
  const from = loaded.recipe.from;
  if (from === undefined) return undefined;
  if (isRecipeReference(from)) {
    const path = parentRecipePath(loaded.path, from);
    const ancestry = [...(options.ancestry ?? []), loaded.path];
    if (ancestry.includes(path)) {
      throw inputError(
        'FROM_CYCLE',
        `${loaded.path}: \`from: ${from}\` leads back to ${path}`,
        'A recipe cannot be its own ancestor: point `from:` at a base recipe.',
      );
    }
    // --rebuild and --explain apply to the recipe asked for, not to its ancestors.
    const { rebuild: _rebuild, explain: _explain, ...rest } = options;
    const result = await build(path, { ...rest, ancestry });
    return { digest: result.digest, result };
  }
  const ref = parentTemplateRef(from);
  try {
    return { digest: (await resolveTemplate(createContext(options).store, ref)).manifestDigest };
  } catch (error) {
    if (isRootcastError(error) && error.code === 'TEMPLATE_NOT_FOUND') {
      throw inputError(
        'FROM_NOT_FOUND',
        `${loaded.path}: \`from: ${from}\`: no template ${ref} in the store`,
        'Build the parent first, or name its recipe instead (from: ./parent.yaml).',
      );
    }
    throw error;
  }
}

/** Why this build is or is not answered by the cache: the inputs that changed since the tag's build. */
async function explainBuild(
  store: string,
  ref: string,
  inputs: BuildInputs,
  cacheKey: string,
): Promise<string[]> {
  let previous: Awaited<ReturnType<typeof readTemplate>>;
  try {
    previous = await readTemplate(store, ref);
  } catch (error) {
    if (isRootcastError(error) && error.code === 'TEMPLATE_NOT_FOUND')
      return [`${ref}: never built in this store`];
    throw error;
  }
  if (previous.cacheKey === cacheKey) return [`${ref}: unchanged (cache key ${cacheKey})`];
  const digest = previous.annotations[ANNOTATION.buildInputs];
  if (!digest) return [`${ref}: its current build records no inputs (built by an older rootcast)`];
  const before: unknown = JSON.parse((await openBlobStore(store).read(digest)).toString('utf8'));
  const changes = diffInputs(before, inputs);
  return changes.length === 0
    ? [`${ref}: the cache key changed but no recorded input did`]
    : changes.map((c) => `${ref}: ${describeChange(c)}`);
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

/**
 * Every variable's value as files and steps see it, flat (`student.name`): the recipe's
 * references as loaded, and the `values:` only template files use, overridden by --set or
 * the environment like every other variable.
 */
function effectiveVariables(
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

function templateValues(
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

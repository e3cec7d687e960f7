import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeExtendedStates } from '../assemble/apt-state.js';
import { cleanupTree } from '../assemble/cleanup.js';
import { configurePackages } from '../assemble/configure.js';
import { collectUpper, materializeParent, snapshotTree, type TreeSnapshot } from '../assemble/copy-layer.js';
import { registerUnpacked } from '../assemble/dpkg-db.js';
import { MemberCacheCompressor } from '../assemble/member-cache-compressor.js';
import { hasNativeCalls, nativeCalls, returnLargeBlocksPromptly } from '../assemble/native.js';
import { mountOverlay, unmountBelow, unmountOverlay } from '../assemble/overlay.js';
import { applyRecipeFiles } from '../assemble/recipe-files.js';
import { runRecipeSteps } from '../assemble/recipe-steps.js';
import { setupTreeSkeleton, sourcesList } from '../assemble/skeleton.js';
import { setupMergedUsr, unpackPackages } from '../assemble/unpack.js';
import { canonicalJsonPretty } from '../core/canonical-json.js';
import { type Context, createContext } from '../core/context.js';
import { inputError, isRootcastError, RootcastError } from '../core/errors.js';
import { type LockFile, lockFileSchema, serializeLock } from '../lock/lock-file.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { collectInstalledPackages } from '../sbom/collect.js';
import { spdxDocument } from '../sbom/spdx.js';
import { cleanStore } from '../store/clean.js';
import { createStagingDir } from '../store/layers.js';
import { acquireLock, buildLockPath } from '../store/lock.js';
import { storeLayout } from '../store/paths.js';
import { findByCacheKey, readTemplate } from '../store/template-query.js';
import { commitTemplate, pointLatest } from '../store/templates.js';
import { buildInputs, cacheKeyOf, effectiveVariables, templateValues } from './build-inputs.js';
import { buildParent, explainBuild } from './build-parent.js';
import { type EarlyResolve, startEarlyResolve } from './early-resolve.js';
import { type LockOptions, lockedRecipe, repositoryBaseUris } from './lock.js';
import { resolveLockIsolated } from './lock-worker.js';
import { type PackageArrivals, startPackageFetch } from './package-arrivals.js';

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
  /**
   * How a child layer is assembled: `overlay` (overlayfs over the parent's layers), `copy`
   * (a copy of the parent, changes collected afterwards), or `auto` (default: overlay, and the
   * copy when overlayfs cannot be mounted). Also `ROOTCAST_LAYER_ASSEMBLY`.
   */
  layerAssembly?: LayerAssembly;
  /**
   * The resolve worker the CLI started before loading this module (`startEarlyResolve`), so
   * it fetches indexes while the build's own modules load; the build starts it otherwise.
   */
  earlyResolve?: Promise<EarlyResolve | undefined>;
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
  returnLargeBlocksPromptly();
  const ctx = createContext(options);
  const early = await (options.earlyResolve ?? startEarlyResolve(recipePath, options));
  let loaded: LoadedRecipe;
  let lockText: string;
  let parent: Awaited<ReturnType<typeof buildParent>>;
  try {
    parent = await buildParent(recipePath, options, build);
    ({ loaded, lockText } = await lockedRecipeText(recipePath, options, early?.done));
  } catch (error) {
    early?.cancel();
    throw error;
  }
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
  let snapshot: TreeSnapshot | undefined;
  let arrivals: PackageArrivals | undefined;
  const memberCache = new MemberCacheCompressor(ctx.reporter);
  try {
    await cleanStore(ctx.store);
    const phases: Record<string, number> = {};
    const phase = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      // Ctrl-C (the CLI aborts the signal) stops the build at the next phase at the latest;
      // the finally below removes the staging tree, as after any failure.
      ctx.signal?.throwIfAborted();
      const t0 = performance.now();
      ctx.reporter.log('debug', `${name}…`);
      const value = await work();
      phases[name] = round((performance.now() - t0) / 1000);
      return value;
    };

    const baseUris = repositoryBaseUris(lock, loaded);
    // Downloads run while the tree is prepared and unpacked (each package is unpacked as soon
    // as it is verified in the cache); a base's few skeleton files go first, so the event
    // loop is not yet busy with downloads when the unpacker needs them.
    const startFetch = () => {
      ctx.reporter.log('debug', 'fetch…');
      arrivals = startPackageFetch(lock.packages, baseUris, ctx);
      return arrivals;
    };
    phases.fetch = 0;
    staging = await createStagingDir(ctx.store);
    // A base is assembled in the staging directory itself, which committing moves to
    // layers/<diffid>. A child is assembled in an overlay over its parent's layers; only the
    // upper directory (its changes) is committed.
    let tree = staging;
    let layerTree = staging;
    if (parent) {
      startFetch();
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
      const mode = options.layerAssembly ?? layerAssemblyFromEnv();
      let mounted = false;
      if (mode !== 'copy') {
        try {
          await phase('overlay', () =>
            mountOverlay({ lowers: details.layers.map((l) => l.unpackedPath).reverse(), ...dirs }),
          );
          mounted = true;
          overlayTarget = dirs.target;
        } catch (error) {
          if (mode === 'overlay' || !isRootcastError(error) || error.code !== 'OVERLAY_MOUNT_FAILED')
            throw error;
          ctx.reporter.log('warn', `${error.message}; copying the parent instead (slower)`);
        }
      }
      if (!mounted) {
        await phase('copy-parent', () =>
          materializeParent(
            details.layers.map((l) => l.unpackedPath),
            dirs.target,
          ),
        );
        snapshot = snapshotTree(dirs.target);
      }
      tree = dirs.target;
      layerTree = dirs.upper;
      await phase('skeleton', () => refreshSources(dirs.target, recipe.sources));
    } else {
      await phase('skeleton', async () => {
        await setupTreeSkeleton(tree, recipe.sources);
        setupMergedUsr(tree, recipe.release, recipe.arch);
      });
    }
    const fetching = arrivals ?? startFetch();
    const sbom = await assembleTree(tree, {
      loaded,
      lock,
      arrivals: fetching,
      memberCache,
      epoch,
      templatesDir,
      cacheKey,
      variables,
      ctx,
      phase,
    });
    // Overlapped with the phases above: from the first request until the last file arrived.
    phases.fetch = round(fetching.seconds ?? 0);
    if (overlayTarget) {
      await unmountOverlay(overlayTarget);
      overlayTarget = undefined;
    }
    if (snapshot) {
      const before = snapshot;
      await phase('collect', async () => collectUpper(tree, before, layerTree));
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
    await memberCache.finish();
    const layers = (await readTemplate(ctx.store, committed.manifestDigest)).layers;
    return {
      ...resultOf(committed.ref, committed.manifestDigest, layers, false, lock, started, phases),
      ...extra,
    };
  } finally {
    arrivals?.cancel();
    await arrivals?.settled;
    await memberCache.cancel();
    if (overlayTarget) await unmountOverlay(overlayTarget).catch(() => undefined);
    if (staging) {
      await unmountBelow(staging).catch(() => undefined);
      await rm(staging, { recursive: true, force: true });
    }
    await buildLock.release();
    await gcLock.release();
  }
}

export type LayerAssembly = 'overlay' | 'copy' | 'auto';

function layerAssemblyFromEnv(): LayerAssembly {
  const value = process.env.ROOTCAST_LAYER_ASSEMBLY;
  if (value === undefined || value === '') return 'auto';
  if (value === 'overlay' || value === 'copy' || value === 'auto') return value;
  throw inputError(
    'LAYER_ASSEMBLY_INVALID',
    `ROOTCAST_LAYER_ASSEMBLY=${value}: expected overlay, copy or auto`,
    'Unset it, or set it to overlay, copy or auto.',
  );
}

interface AssembleContext {
  loaded: LoadedRecipe;
  lock: LockFile;
  /** The lock's package files, arriving in the cache while the tree is assembled. */
  arrivals: PackageArrivals;
  /** Compresses the unpacked members into the member cache while the tree is configured. */
  memberCache: MemberCacheCompressor;
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
  const { loaded, lock, ctx, phase, arrivals } = a;
  const { recipe } = loaded;
  // One worker per CPU (the unpacker's default), not the network concurrency: unpacking is
  // CPU-bound (xz) and every extra worker is another heap and more contention on the
  // file system's directory locks.
  const unpacked = await phase('unpack', () =>
    unpackPackages(arrivals.files, tree, {
      reporter: ctx.reporter,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      deferMemberCache: (pending) => a.memberCache.add(pending),
    }),
  );
  a.memberCache.start();
  // Every file was unpacked, so the fetch is over; this settles it (and reports its time).
  await arrivals.done;
  releaseFreedMemory();
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

/**
 * The recipe and its lock as text, resolving the lock first (in a worker, see
 * lock-worker.ts) when it is missing or stale. The build keeps only the text and a copy
 * parsed from it: a freshly resolved lock's strings are slices of the indexes' text.
 */
async function lockedRecipeText(
  recipePath: string,
  options: BuildOptions,
  early: Promise<void> | undefined,
): Promise<{ loaded: LoadedRecipe; lockText: string }> {
  if (early) {
    await early;
    releaseFreedMemory();
    const { loaded, lock } = await lockedRecipe(recipePath, { ...options, frozen: true });
    return { loaded, lockText: serializeLock(lock) };
  }
  try {
    const { loaded, lock } = await lockedRecipe(recipePath, { ...options, frozen: true });
    return { loaded, lockText: serializeLock(lock) };
  } catch (error) {
    if (options.frozen || !isRootcastError(error) || !LOCK_NEEDS_RESOLVING.has(error.code)) throw error;
  }
  // Resolving reads every index; in a worker, that memory is gone before assembly starts.
  await resolveLockIsolated(recipePath, options);
  releaseFreedMemory();
  const { loaded, lock } = await lockedRecipe(recipePath, { ...options, frozen: true });
  return { loaded, lockText: serializeLock(lock) };
}

/**
 * Gives the heap of finished worker threads (the resolver's, the unpackers') back to the
 * system. glibc keeps freed memory once its mmap threshold has grown, so without this the
 * next phase starts ≈40 MiB higher than it needs to, and the build's peak is that much higher.
 */
function releaseFreedMemory(): void {
  if (hasNativeCalls()) nativeCalls().mallocTrim?.();
}

/** What `lockedRecipe` under `frozen` throws when the lock must be (re)made. */
const LOCK_NEEDS_RESOLVING = new Set(['LOCK_MISSING', 'LOCK_STALE']);

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

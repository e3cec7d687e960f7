import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from '../core/atomic.js';
import { inputError, RootcastError } from '../core/errors.js';
import { acquireLock, type FileLock } from '../store/lock.js';
import { storeLayout, temporaryName } from '../store/paths.js';
import type { TemplateDetails } from '../store/template-query.js';
import { applyCustomization, type CustomizationPlan, planCustomization } from './customize.js';
import type { CloneDriver, CloneSource } from './driver.js';
import { LayeredTree } from './layered-tree.js';
import { runtimeLayout } from './paths.js';
import { type ContainerRecord, type ProcessIdentity, validateContainerName, writeRecord } from './record.js';
import type { Values } from './values.js';

/**
 * Cloning a template into containers, one or a batch.
 *
 * Everything that can be refused is refused before the first container is made: names
 * (valid, distinct, free), values (hostnames, users, keys), and the template's unpacked
 * layers. Then, per container: a staging directory under `<store>/tmp/`, the driver's
 * `create`, customization, the record (fsynced, except for `run --rm`), and one rename to
 * `containers/<name>`:
 * a container is visible complete or not at all, and a killed clone leaves only a temporary
 * that `cleanStore` removes. The rename is also the name's claim: a directory renamed onto an
 * existing (non-empty) container fails, so two clones racing for a name cannot both win.
 *
 * A batch is all or nothing: when one container fails, the ones this batch made are removed.
 * Stopping is not failing: when `signal` aborts, the batch stops between two containers (or
 * drops the one it is making before it becomes visible), keeps the complete containers it
 * made, and throws the signal's reason. The batch holds `locks/gc.lock` shared, so gc never
 * sweeps a template being cloned.
 */
export interface CloneSpec {
  name: string;
  values: Values;
}

export interface ClonedContainer {
  name: string;
  /** Wall time of this container's clone: staging, driver, customization, record, rename. */
  ms: number;
  record: ContainerRecord;
}

export interface CloneBatchOptions {
  driver: CloneDriver;
  /** The reference the user gave (`name:version` or a digest), kept in the record. */
  ref: string;
  /** Marks the containers as `run --rm` ones owned by this process. */
  disposable?: ProcessIdentity;
  now?: () => Date;
  /** Told after each container is made (front ends show progress). */
  onCloned?: (container: ClonedContainer) => void;
  /** The gc lock, when the caller started taking it early (`lockAgainstGc`); released here. */
  gcLock?: Promise<FileLock>;
  /** Stops the batch between containers (see the module comment). */
  signal?: AbortSignal;
}

/** `locks/gc.lock`, shared: held by clones so gc never sweeps a template being cloned. */
export async function lockAgainstGc(store: string): Promise<FileLock> {
  mkdirSync(storeLayout.locks(store), { recursive: true });
  return acquireLock(storeLayout.lock(store, 'gc'), { shared: true });
}

function layersOf(store: string, template: TemplateDetails): CloneSource {
  const missing = template.layers.filter((l) => !l.unpacked);
  if (missing.length > 0) {
    throw new RootcastError({
      code: 'CLONE_LAYER_MISSING',
      message: `template ${template.ref ?? template.manifestDigest} has ${missing.length} layer(s) not unpacked in the store`,
      hint: 'Run `rootcast fsck`, then rebuild or pull the template.',
      details: { diffIds: missing.map((l) => l.diffId) },
    });
  }
  return { store, layers: template.layers.map((l) => l.unpackedPath) };
}

function checkNames(store: string, specs: readonly CloneSpec[]): void {
  const seen = new Set<string>();
  for (const { name } of specs) {
    validateContainerName(name);
    if (seen.has(name))
      throw inputError(
        'CLONE_NAME_DUPLICATE',
        `the batch names container ${name} twice`,
        'Put {{index}} in --name.',
      );
    seen.add(name);
    if (existsSync(runtimeLayout.container(store, name))) throw containerExists(name);
  }
}

function containerExists(name: string): RootcastError {
  return inputError(
    'CONTAINER_EXISTS',
    `container ${name} exists already`,
    `Pick another name, or remove it with \`rootcast rm ${name}\`.`,
  );
}

async function cloneOne(
  store: string,
  template: TemplateDetails,
  source: CloneSource,
  spec: CloneSpec,
  plan: CustomizationPlan,
  options: CloneBatchOptions,
): Promise<ClonedContainer> {
  const started = performance.now();
  const staging = join(storeLayout.tmp(store), temporaryName());
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    const made = await options.driver.create(source, staging);
    // A slow driver (copy) may take seconds: drop this container rather than finish it.
    options.signal?.throwIfAborted();
    applyCustomization(new LayeredTree(made.upper, made.lowers), plan);
    const config = template.config.config ?? {};
    const record: ContainerRecord = {
      schema: 1,
      name: spec.name,
      template: {
        ...(options.ref.startsWith('sha256:') ? {} : { ref: options.ref }),
        digest: template.manifestDigest,
      },
      layers: template.layers.map((l) => l.diffId),
      driver: options.driver.name,
      created: (options.now ?? (() => new Date()))().toISOString(),
      hostname: plan.hostname,
      values: spec.values,
      config: {
        env: config.Env ?? [],
        cmd: config.Cmd ?? ['/bin/sh'],
        ...(config.WorkingDir ? { workingDir: config.WorkingDir } : {}),
      },
      ...(made.base ? { base: made.base } : {}),
      ...(options.disposable ? { disposable: options.disposable } : {}),
    };
    writeRecord(staging, record, !options.disposable);
    try {
      renameSync(staging, runtimeLayout.container(store, spec.name));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTEMPTY') throw containerExists(spec.name);
      throw error;
    }
    return { name: spec.name, ms: performance.now() - started, record };
  } catch (error) {
    await options.driver.remove(staging).catch(() => {});
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Clones `template` once per spec (see the module comment). */
export async function cloneContainers(
  store: string,
  template: TemplateDetails,
  specs: readonly CloneSpec[],
  options: CloneBatchOptions,
): Promise<ClonedContainer[]> {
  const gcLock = await (options.gcLock ?? lockAgainstGc(store));
  const made: ClonedContainer[] = [];
  try {
    // The template may have been read before the lock was held, and a gc sweep may have run
    // in between: look at the layer directories again.
    const source = layersOf(store, {
      ...template,
      layers: template.layers.map((l) => ({ ...l, unpacked: l.unpacked && existsSync(l.unpackedPath) })),
    });
    checkNames(store, specs);
    const plans: CustomizationPlan[] = [];
    for (const spec of specs) plans.push(await planCustomization(spec.name, spec.values));
    mkdirSync(runtimeLayout.containers(store), { recursive: true });
    for (const [i, spec] of specs.entries()) {
      if (options.signal) {
        // An overlay clone never waits for I/O: let a pending signal handler run, then look.
        await new Promise((resolve) => setImmediate(resolve));
        options.signal.throwIfAborted();
      }
      const container = await cloneOne(store, template, source, spec, plans[i]!, options);
      made.push(container);
      options.onCloned?.(container);
    }
    if (!options.disposable) await fsyncDirectory(runtimeLayout.containers(store));
  } catch (error) {
    if (options.signal?.aborted) {
      // Stopped, not failed: the complete containers stay, durably.
      if (made.length > 0 && !options.disposable)
        await fsyncDirectory(runtimeLayout.containers(store)).catch(() => {});
    } else if (made.length > 0) {
      const { removeContainer } = await import('./remove.js');
      for (const c of made) await removeContainer(store, c.name, { force: true }).catch(() => {});
    }
    throw error;
  } finally {
    await gcLock.release();
  }
  return made;
}

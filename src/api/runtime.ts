import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { type ContextOptions, createContext } from '../core/context.js';
import { inputError } from '../core/errors.js';
import type { CloneDriver, DriverName } from '../runtime/driver.js';
import type { DriverChoice } from '../runtime/drivers.js';
import {
  abandonedDisposables,
  type ContainerRecord,
  currentProcess,
  listRecords,
  readRecord,
  runnerOf,
} from '../runtime/record.js';
import type { RunHandle, RunRequest } from '../runtime/run.js';
import type { Values } from '../runtime/values.js';
import type { FileLock } from '../store/lock.js';
import type { TemplateDetails } from '../store/template-query.js';

/**
 * The runtime's library API: `clone`, `listContainers`, `removeContainers`, `run`. Modules
 * load lazily, per call, so a front end (or the CLI) that only runs a command never loads
 * the template reader, handlebars or the drivers' copy code. See docs/runtime.md.
 */
export interface CloneOptions extends ContextOptions {
  driver?: DriverChoice;
  /** `--set key=value` pairs, or values already parsed. They override the values file. */
  set?: readonly string[] | Values;
  /** `--values FILE`: CSV rows, or a JSON/YAML object or list. */
  valuesFile?: string;
  /** Batch size; defaults to the number of rows in the values file. */
  count?: number;
  /** Batch name pattern, e.g. `lab-{{index}}`. */
  namePattern?: string;
  /** Told after each container of a batch is made. */
  onCloned?: (container: { name: string; ms: number }) => void;
}

export interface CloneResult {
  template: string;
  digest: string;
  driver: DriverName;
  /** Each container's name and the milliseconds its clone took. */
  containers: { name: string; ms: number }[];
}

/**
 * Starts taking the gc lock (a process spawn, ~5 ms) while the template is read; nothing is
 * created in a directory that is not a store yet.
 */
function earlyGcLock(store: string): Promise<FileLock> | undefined {
  if (!existsSync(join(store, 'index.json'))) return undefined;
  const lock = import('../runtime/clone.js').then((m) => m.lockAgainstGc(store));
  lock.catch(() => {});
  return lock;
}

async function cloneSpecs(name: string | undefined, options: CloneOptions) {
  const { parseSetValues, readValuesFile, renderPattern } = await import('../runtime/values.js');
  const rows = options.valuesFile ? await readValuesFile(options.valuesFile) : [];
  const set = Array.isArray(options.set) ? parseSetValues(options.set) : ((options.set as Values) ?? {});
  if (name !== undefined) {
    if (options.namePattern !== undefined || (options.count ?? 1) !== 1)
      throw inputError(
        'CLONE_ARGS_INVALID',
        'give either a NAME or --count/--name, not both',
        'A batch takes --name PATTERN instead of NAME.',
      );
    if (rows.length > 1)
      throw inputError(
        'CLONE_ARGS_INVALID',
        `${options.valuesFile} has ${rows.length} rows but one container is cloned`,
        "Clone a batch with --name 'lab-{{index}}'.",
      );
    return [{ name, values: { ...(rows[0] ?? {}), ...set, index: 1, name } }];
  }
  if (options.namePattern === undefined)
    throw inputError(
      'CLONE_ARGS_INVALID',
      'no container name',
      "Give NAME, or --name 'lab-{{index}}' with --count N or --values FILE.",
    );
  const count = options.count ?? rows.length;
  if (!Number.isInteger(count) || count < 1 || count > 10_000)
    throw inputError(
      'CLONE_ARGS_INVALID',
      'a batch needs --count from 1 to 10000, or a --values file with rows',
      'Pass --count N.',
    );
  if (rows.length > 0 && rows.length !== count)
    throw inputError(
      'CLONE_ARGS_INVALID',
      `--count ${count} but ${options.valuesFile} has ${rows.length} rows`,
      'Leave --count out to clone one container per row.',
    );
  const specs = [];
  for (let i = 0; i < count; i++) {
    const base = { ...(rows[i] ?? {}), ...set, index: i + 1 };
    const containerName = await renderPattern(options.namePattern, base);
    specs.push({ name: containerName, values: { ...base, name: containerName } });
  }
  return specs;
}

/** `rootcast clone TEMPLATE NAME` or, without NAME, a batch (`--count`, `--name`, `--values`). */
export async function clone(
  template: string,
  name: string | undefined,
  options: CloneOptions = {},
): Promise<CloneResult> {
  const { store, now } = createContext(options);
  const specs = await cloneSpecs(name, options);
  const gcLock = earlyGcLock(store);
  let details: TemplateDetails;
  let driver: CloneDriver;
  try {
    const { readTemplate } = await import('../store/template-query.js');
    const { chooseDriver } = await import('../runtime/drivers.js');
    details = await readTemplate(store, template);
    driver = await chooseDriver(store, options.driver ?? 'auto');
  } catch (error) {
    await gcLock?.then((l) => l.release()).catch(() => {});
    throw error;
  }
  const { cloneContainers } = await import('../runtime/clone.js');
  const made = await cloneContainers(store, details, specs, {
    driver,
    ...(gcLock ? { gcLock } : {}),
    ref: template,
    now,
    ...(options.onCloned ? { onCloned: (c) => options.onCloned?.({ name: c.name, ms: c.ms }) } : {}),
  });
  return {
    template: details.ref ?? template,
    digest: details.manifestDigest,
    driver: driver.name,
    containers: made.map((c) => ({ name: c.name, ms: Math.round(c.ms * 100) / 100 })),
  };
}

export interface ContainerInfo {
  name: string;
  /** The tag it was cloned from, else the manifest digest. */
  template: string;
  digest: string;
  driver: DriverName;
  created: string;
  hostname: string;
  state: 'running' | 'stopped';
  disposable: boolean;
}

function infoOf(record: ContainerRecord, running: boolean): ContainerInfo {
  return {
    name: record.name,
    template: record.template.ref ?? record.template.digest,
    digest: record.template.digest,
    driver: record.driver,
    created: record.created,
    hostname: record.hostname,
    state: running ? 'running' : 'stopped',
    disposable: Boolean(record.disposable),
  };
}

/** Every container, by name. Removes `run --rm` containers left by a killed run first. */
export async function listContainers(options: ContextOptions = {}): Promise<ContainerInfo[]> {
  const { store, reporter } = createContext(options);
  const { runtimeLayout } = await import('../runtime/paths.js');
  let { records, problems } = listRecords(store);
  const abandoned = abandonedDisposables(store, records);
  if (abandoned.length > 0) {
    const swept = new Set(await (await import('../runtime/remove.js')).sweepDisposable(store, abandoned));
    records = records.filter((r) => !swept.has(r.name));
  }
  for (const p of problems) reporter.log('warn', p);
  return records.map((r) => infoOf(r, runnerOf(runtimeLayout.container(store, r.name)) !== undefined));
}

/** `rootcast rm NAME…`: every name must exist (checked before any is removed). */
export async function removeContainers(
  names: readonly string[],
  options: ContextOptions & { force?: boolean } = {},
): Promise<{ removed: string[] }> {
  const { store } = createContext(options);
  const { removeContainer, sweepDisposable } = await import('../runtime/remove.js');
  for (const name of names) readRecord(store, name);
  const removed: string[] = [];
  for (const name of names) {
    await removeContainer(store, name, { force: Boolean(options.force) });
    removed.push(name);
  }
  await sweepDisposable(store);
  return { removed };
}

export interface RunOptions extends ContextOptions, RunRequest {
  /** Remove the container afterwards; required for a template (a disposable container). */
  rm?: boolean;
  /** Driver for the disposable container of `--rm TEMPLATE`. */
  driver?: DriverChoice;
  /**
   * Install process signal handlers for the run's duration and relay them to the command
   * (the CLI sets it). A signal that comes before the command starts cancels the run.
   */
  forwardSignals?: boolean;
}

export interface RunResult {
  container: string;
  exitCode: number;
  removed: boolean;
}

function isTemplateRef(target: string): boolean {
  return target.includes(':');
}

/** `rootcast run [--rm] TEMPLATE|CONTAINER -- CMD…`: see src/runtime/run.ts. */
export async function run(target: string, options: RunOptions = {}): Promise<RunResult> {
  const { store, now } = createContext(options);
  const { RELAYED_SIGNALS, startRun } = await import('../runtime/run.js');
  let handle: RunHandle | undefined;
  let cancelled: NodeJS.Signals | undefined;
  const relay = (signal: NodeJS.Signals) => {
    if (handle) handle.kill(signal);
    else cancelled ??= signal;
  };
  if (options.forwardSignals) for (const s of RELAYED_SIGNALS) process.on(s, relay);
  let record: ContainerRecord | undefined;
  let made = false;
  try {
    if (isTemplateRef(target)) {
      if (!options.rm)
        throw inputError(
          'RUN_TARGET_IS_TEMPLATE',
          `${target} is a template, not a container`,
          `Add --rm for a disposable container, or clone it first: rootcast clone ${target} NAME.`,
        );
      const gcLock = earlyGcLock(store);
      const { readTemplate } = await import('../store/template-query.js');
      const { chooseDriver } = await import('../runtime/drivers.js');
      const { cloneContainers } = await import('../runtime/clone.js');
      let details: TemplateDetails;
      let driver: CloneDriver;
      try {
        details = await readTemplate(store, target);
        driver = await chooseDriver(store, options.driver ?? 'auto');
      } catch (error) {
        await gcLock?.then((l) => l.release()).catch(() => {});
        throw error;
      }
      const stem = (target.startsWith('sha256:') ? 'run' : target.slice(0, target.lastIndexOf(':')))
        .toLowerCase()
        .replace(/[^a-z0-9-]+/g, '-')
        .slice(0, 50)
        .replace(/^-+|-+$/g, '');
      const { randomBytes } = await import('node:crypto');
      const name = `${stem || 'run'}-${randomBytes(4).toString('hex')}`;
      const [container] = await cloneContainers(store, details, [{ name, values: { name } }], {
        driver,
        ...(gcLock ? { gcLock } : {}),
        ref: target,
        now,
        disposable: currentProcess(),
      });
      record = container?.record;
      made = true;
    } else record = readRecord(store, target);
    if (!record) throw new Error('clone returned no container');
    let exitCode: number;
    if (cancelled) exitCode = 128 + (osConstants.signals[cancelled] ?? 0);
    else {
      handle = await startRun(store, record, options);
      exitCode = await handle.done;
    }
    return { container: record.name, exitCode, removed: Boolean(options.rm) };
  } finally {
    if (record && (options.rm || made)) {
      const { removeContainer } = await import('../runtime/remove.js');
      await removeContainer(store, record.name);
    }
    if (options.forwardSignals) for (const s of RELAYED_SIGNALS) process.off(s, relay);
  }
}

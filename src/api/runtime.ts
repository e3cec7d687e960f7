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

/**
 * `rootcast clone TEMPLATE NAME` or, without NAME, a batch (`--count`, `--name`, `--values`).
 * When `signal` aborts, the batch stops between containers, keeps the complete ones it made
 * (a warning says how many, and which), and throws the signal's reason.
 */
export async function clone(
  template: string,
  name: string | undefined,
  options: CloneOptions = {},
): Promise<CloneResult> {
  const { store, now, reporter, signal } = createContext(options);
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
  const done: string[] = [];
  let made: Awaited<ReturnType<typeof cloneContainers>>;
  try {
    made = await cloneContainers(store, details, specs, {
      driver,
      ...(gcLock ? { gcLock } : {}),
      ref: template,
      now,
      ...(signal ? { signal } : {}),
      onCloned: (c) => {
        done.push(c.name);
        options.onCloned?.({ name: c.name, ms: c.ms });
      },
    });
  } catch (error) {
    if (signal?.aborted) reporter.log('warn', interruptedClone(done, specs.length));
    throw error;
  }
  return {
    template: details.ref ?? template,
    digest: details.manifestDigest,
    driver: driver.name,
    containers: made.map((c) => ({ name: c.name, ms: Math.round(c.ms * 100) / 100 })),
  };
}

function interruptedClone(done: readonly string[], total: number): string {
  if (done.length === 0) return `clone interrupted before any of the ${total} container(s) was made`;
  const names = done.length === 1 ? done[0] : `${done[0]} … ${done[done.length - 1]}`;
  return `clone interrupted after ${done.length} of ${total} container(s): the ${done.length} made (${names}) are kept; \`rootcast rm\` them, or clone the rest under other names`;
}

export interface ContainerInfo {
  name: string;
  /** The tag it was cloned from, else the manifest digest ('' when the record is damaged). */
  template: string;
  digest: string;
  /** '' when the record is damaged. */
  driver: DriverName | '';
  created: string;
  hostname: string;
  /** `damaged`: its container.json is unusable (see `problem`); `rm --force` removes it. */
  state: 'running' | 'stopped' | 'damaged';
  disposable: boolean;
  /** Why a damaged container's record is unusable. */
  problem?: string;
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

/**
 * Every container, by name, damaged ones (an unusable container.json) included with state
 * `damaged`. Removes `run --rm` containers left by a killed run first.
 */
export async function listContainers(options: ContextOptions = {}): Promise<ContainerInfo[]> {
  const { store } = createContext(options);
  const { runtimeLayout } = await import('../runtime/paths.js');
  let { records, damaged } = listRecords(store);
  const abandoned = abandonedDisposables(store, records);
  if (abandoned.length > 0) {
    const swept = new Set(await (await import('../runtime/remove.js')).sweepDisposable(store, abandoned));
    records = records.filter((r) => !swept.has(r.name));
  }
  const infos = records.map((r) => infoOf(r, runnerOf(runtimeLayout.container(store, r.name)) !== undefined));
  for (const d of damaged) {
    infos.push({
      name: d.name,
      template: '',
      digest: '',
      driver: '',
      created: '',
      hostname: '',
      state: 'damaged',
      disposable: false,
      problem: d.problem,
    });
  }
  return infos.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * `rootcast rm NAME…`: every name must exist (checked before any is removed; a name given
 * twice is removed once). A damaged container is refused unless `force`. When `signal`
 * aborts, the removal stops between containers (each one is removed whole or not at all), a
 * warning says which were removed, and the signal's reason is thrown.
 */
export async function removeContainers(
  names: readonly string[],
  options: ContextOptions & { force?: boolean } = {},
): Promise<{ removed: string[] }> {
  const { store, reporter, signal } = createContext(options);
  const { recordToRemove, removeContainer, sweepDisposable } = await import('../runtime/remove.js');
  const unique = [...new Set(names)];
  const force = Boolean(options.force);
  for (const name of unique) recordToRemove(store, name, force);
  const removed: string[] = [];
  try {
    for (const name of unique) {
      if (signal) {
        await new Promise((resolve) => setImmediate(resolve)); // let a pending signal handler run
        signal.throwIfAborted();
      }
      await removeContainer(store, name, { force });
      removed.push(name);
    }
  } catch (error) {
    if (signal?.aborted) {
      const left = unique.slice(removed.length);
      const shown = left.length > 5 ? `${left.slice(0, 5).join(', ')}, …` : left.join(', ');
      reporter.log(
        'warn',
        `rm interrupted after removing ${removed.length} of ${unique.length} container(s); still there: ${shown}`,
      );
    }
    throw error;
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

/** What `run` refuses before anything is cloned or started (all exit 2). */
async function checkRunOptions(target: string, options: RunOptions): Promise<void> {
  if (options.workdir !== undefined && !options.workdir.startsWith('/'))
    throw inputError(
      'RUN_WORKDIR_INVALID',
      `working directory ${JSON.stringify(options.workdir)} is not an absolute path`,
      'Give -w the absolute path of a directory inside the container, e.g. -w /root.',
    );
  if (options.driver !== undefined && !isTemplateRef(target))
    throw inputError(
      'RUN_ARGS_INVALID',
      `--driver applies to run --rm TEMPLATE only; container ${target} keeps the driver it was cloned with`,
      `Leave --driver out, or clone the template again with it: rootcast clone --driver ${options.driver} TEMPLATE NAME.`,
    );
  const { ENV_NAME } = await import('../runtime/run-init.js');
  for (const name of Object.keys(options.env ?? {}))
    if (!ENV_NAME.test(name))
      throw inputError(
        'RUN_ARGS_INVALID',
        `-e ${JSON.stringify(name)}: not an environment variable name`,
        'Use letters, digits and _, not starting with a digit.',
      );
}

/** `rootcast run [--rm] TEMPLATE|CONTAINER -- CMD…`: see src/runtime/run.ts. */
export async function run(target: string, options: RunOptions = {}): Promise<RunResult> {
  const { store, now } = createContext(options);
  await checkRunOptions(target, options);
  const { checkTemplateRun, RELAYED_SIGNALS, startRun } = await import('../runtime/run.js');
  let handle: RunHandle | undefined;
  let cancelled: NodeJS.Signals | undefined;
  const relay = (signal: NodeJS.Signals) => {
    if (handle) handle.kill(signal);
    else cancelled ??= signal;
  };
  if (options.forwardSignals) for (const s of RELAYED_SIGNALS) process.on(s, relay);
  let record: ContainerRecord | undefined;
  // `--rm` removes a container this run cloned (whatever happens), or one that already
  // existed only once its command has run: a run refused or failed before (a missing working
  // directory or layer, a setup failure, a signal while starting) leaves the user's container.
  let made = false;
  let ran = false;
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
        // What would refuse the run is refused before the disposable clone is made. (With a
        // layer missing, the clone reports CLONE_LAYER_MISSING.)
        if (details.layers.every((l) => l.unpacked && existsSync(l.unpackedPath))) {
          const config = details.config.config ?? {};
          checkTemplateRun(
            {
              name: target,
              layers: details.layers.map((l) => l.unpackedPath),
              config: {
                env: config.Env ?? [],
                cmd: config.Cmd ?? ['/bin/sh'],
                ...(config.WorkingDir ? { workingDir: config.WorkingDir } : {}),
              },
            },
            options,
          );
        }
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
      exitCode = await handle.done; // resolves only once the setup is done and the command started
      ran = true;
    }
    return { container: record.name, exitCode, removed: made || (Boolean(options.rm) && ran) };
  } finally {
    if (record && (made || (options.rm && ran))) {
      const { removeContainer } = await import('../runtime/remove.js');
      await removeContainer(store, record.name);
    }
    if (options.forwardSignals) for (const s of RELAYED_SIGNALS) process.off(s, relay);
  }
}

import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { describeError, inputError, RootcastError } from '../core/errors.js';
import { DRIVER_NAMES, type DriverName } from './driver.js';
import { runtimeLayout } from './paths.js';

/**
 * A container's record: `<store>/containers/<name>/container.json`.
 *
 * Lifecycle: written once, inside the staging directory, before that directory is renamed to
 * `containers/<name>`; so a container is visible exactly when its record is complete. It is
 * never rewritten (a container's identity does not change); `rm` renames the whole directory
 * away before deleting it. Readers take no lock.
 *
 * The record holds everything `run` and `rm` need without reading the template again (its
 * layers, the driver, the image config's environment and command), and what gc and rmi need
 * to keep the template alive (its manifest digest and diff_ids).
 */
export interface ContainerRecord {
  /** Format of this record. */
  schema: 1;
  name: string;
  template: {
    /** The tag it was cloned from, when cloned by tag. */
    ref?: string;
    /** The template's manifest digest: gc and rmi keep this manifest while the container exists. */
    digest: string;
  };
  /** The template's diff_ids, base first (the layers under `<store>/layers/`). */
  layers: string[];
  driver: DriverName;
  /** ISO 8601. */
  created: string;
  hostname: string;
  /** The values the container was customized with (the merged `--values` row and `--set`). */
  values: Record<string, unknown>;
  /** From the template's image config: what `run` uses by default. */
  config: { env: string[]; cmd: string[]; workingDir?: string };
  /** Driver cache the container depends on (btrfs: its base subvolume's key). */
  base?: string;
  /** A `run --rm` container: removed by the next rootcast command once this process is gone. */
  disposable?: ProcessIdentity;
}

/** A process, robust to pid reuse: its pid and its start time in clock ticks since boot. */
export interface ProcessIdentity {
  pid: number;
  start: string;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Container names double as default hostnames: one DNS label, lowercase. */
export function validateContainerName(name: string): void {
  if (!NAME.test(name)) {
    throw inputError(
      'CONTAINER_NAME_INVALID',
      `container name ${JSON.stringify(name)} is not valid`,
      'Use 1-63 lowercase letters, digits and "-", starting and ending with a letter or digit (it is the default hostname).',
    );
  }
}

export function containerNotFound(name: string): RootcastError {
  return inputError(
    'CONTAINER_NOT_FOUND',
    `no container ${name} in the store`,
    'List containers with `rootcast containers`.',
  );
}

/** The start time of `pid` (field 22 of /proc/<pid>/stat), or undefined when it is gone or a zombie. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie (or a dying process) holds nothing any more.
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

export function currentProcess(): ProcessIdentity {
  return { pid: process.pid, start: processStart(process.pid) ?? '' };
}

export function isProcessRunning(identity: ProcessIdentity): boolean {
  return processStart(identity.pid) === identity.start;
}

function recordInvalid(path: string, what: string, cause?: unknown): RootcastError {
  const name = basename(dirname(path));
  return new RootcastError({
    code: 'CONTAINER_RECORD_INVALID',
    message: `${path} is not a container record: ${what}`,
    hint: `Remove the container with \`rootcast rm --force ${name}\`, then clone it again.`,
    cause,
    details: { container: name },
  });
}

const isStrings = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((v) => typeof v === 'string');

/**
 * Parses and checks a record. `name`, when given, is the name of the directory it was read
 * from: a record naming another container is refused (rm and run act on `record.name`).
 */
export function parseRecord(text: string, path: string, name?: string): ContainerRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw recordInvalid(path, 'not JSON', error);
  }
  const r = value as Partial<ContainerRecord> | null;
  if (
    typeof r !== 'object' ||
    r === null ||
    r.schema !== 1 ||
    typeof r.name !== 'string' ||
    typeof r.template?.digest !== 'string' ||
    !isStrings(r.layers) ||
    !r.layers.every((d) => /^sha256:[0-9a-f]{64}$/.test(d)) ||
    typeof r.driver !== 'string' ||
    !DRIVER_NAMES.includes(r.driver) ||
    typeof r.hostname !== 'string' ||
    !isStrings(r.config?.env) ||
    !isStrings(r.config?.cmd)
  ) {
    throw recordInvalid(path, 'fields missing or invalid');
  }
  if (name !== undefined && r.name !== name) throw recordInvalid(path, `it names container ${r.name}`);
  return r as ContainerRecord;
}

/**
 * Reads one container's record: `CONTAINER_NOT_FOUND` (exit 2) when there is none,
 * `CONTAINER_RECORD_INVALID` when it cannot be read or is not a record (see `damagedName`).
 */
export function readRecord(store: string, name: string): ContainerRecord {
  validateContainerName(name);
  const path = runtimeLayout.record(runtimeLayout.container(store, name));
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw containerNotFound(name);
    throw recordInvalid(path, `unreadable (${describeError(error)})`, error);
  }
  return parseRecord(text, path, name);
}

/** The container a `CONTAINER_RECORD_INVALID` error is about, else undefined. */
export function damagedName(error: unknown): string | undefined {
  if (!(error instanceof RootcastError) || error.code !== 'CONTAINER_RECORD_INVALID') return undefined;
  const name = error.details?.container;
  return typeof name === 'string' ? name : undefined;
}

/** Names of the directories under `containers/` (each a complete container). */
export function containerNames(store: string): string[] {
  try {
    return readdirSync(runtimeLayout.containers(store))
      .filter((n) => NAME.test(n))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** A container whose record cannot be read: listed as `damaged`, removable with `rm --force`. */
export interface DamagedContainer {
  name: string;
  /** Why the record is unusable (the error's message). */
  problem: string;
}

/**
 * Every container's record, by name; unreadable records are reported (`problems`, one line
 * each, and `damaged`), not fatal.
 */
export function listRecords(store: string): {
  records: ContainerRecord[];
  problems: string[];
  damaged: DamagedContainer[];
} {
  const records: ContainerRecord[] = [];
  const problems: string[] = [];
  const damaged: DamagedContainer[] = [];
  for (const name of containerNames(store)) {
    try {
      records.push(readRecord(store, name));
    } catch (error) {
      // Removed between readdir and read: not a problem.
      if (error instanceof RootcastError && error.code === 'CONTAINER_NOT_FOUND') continue;
      const problem = error instanceof Error ? error.message : String(error);
      problems.push(`${name}: ${problem}`);
      damaged.push({ name, problem });
    }
  }
  return { records, problems, damaged };
}

/**
 * Writes the record into a container directory that is not visible yet, and fsyncs it unless
 * `durable` is false (a `run --rm` container does not outlive its run: no fsync to wait for).
 */
export function writeRecord(dir: string, record: ContainerRecord, durable = true): void {
  const fd = openSync(runtimeLayout.record(dir), 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(record, null, 2)}\n`);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Manifest digests and diff_ids that containers use, for gc (keep them) and rmi (refuse).
 * A record that cannot be read keeps nothing, but is returned in `problems` so gc can refuse
 * to guess.
 */
export function templatesInUse(store: string): {
  digests: Map<string, string[]>;
  diffIds: Set<string>;
  problems: string[];
} {
  const { records, problems } = listRecords(store);
  const digests = new Map<string, string[]>();
  const diffIds = new Set<string>();
  for (const r of records) {
    digests.set(r.template.digest, [...(digests.get(r.template.digest) ?? []), r.name]);
    for (const d of r.layers) diffIds.add(d);
  }
  return { digests, diffIds, problems };
}

/** The live `rootcast run` using the container in `dir`, if any. */
export function runnerOf(dir: string): ProcessIdentity | undefined {
  try {
    const [pid, start] = readFileSync(runtimeLayout.running(dir), 'utf8').trim().split(' ');
    const identity = { pid: Number(pid), start: start ?? '' };
    return Number.isSafeInteger(identity.pid) && isProcessRunning(identity) ? identity : undefined;
  } catch {
    return undefined;
  }
}

/** `run --rm` containers whose run is gone without cleaning up (nothing runs in them either). */
export function abandonedDisposables(store: string, records: readonly ContainerRecord[]): ContainerRecord[] {
  return records.filter(
    (r) =>
      r.disposable !== undefined &&
      !isProcessRunning(r.disposable) &&
      runnerOf(runtimeLayout.container(store, r.name)) === undefined,
  );
}

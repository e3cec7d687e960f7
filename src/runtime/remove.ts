import { lstatSync, renameSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from '../core/atomic.js';
import { RootcastError } from '../core/errors.js';
import { storeLayout, temporaryName } from '../store/paths.js';
import { DRIVER_NAMES } from './driver.js';
import { loadDriver } from './drivers.js';
import { runtimeLayout } from './paths.js';
import {
  abandonedDisposables,
  type ContainerRecord,
  damagedName,
  isProcessRunning,
  listRecords,
  type ProcessIdentity,
  readRecord,
  runnerOf,
} from './record.js';

/**
 * Removing containers. The container directory is first renamed into `<store>/tmp/` (one
 * atomic step: from then on no command sees the container), then the driver frees what a
 * recursive delete cannot (btrfs subvolumes) and the directory is deleted. A removal killed
 * half-way leaves only a temporary that `cleanStore`/gc removes once this process is gone.
 *
 * A container a `run` is using (its `running` file names a live process) is refused with
 * `CONTAINER_RUNNING`, unless `force`: then that `rootcast run` is killed (SIGKILL), which
 * takes its namespace, and so every process and mount of the container, down with it.
 *
 * Anything mounted at or under the container directory in this mount namespace (rootcast
 * never mounts there, but a user or another tool may have) is unmounted before the directory
 * moves, so the recursive delete never reaches into another filesystem.
 *
 * A container whose record is damaged (not JSON, fields missing) is refused with
 * `CONTAINER_RECORD_INVALID` unless `force`: its driver is unknown then, so every driver's
 * `remove` is applied (each frees only what is its own: btrfs a subvolume) before the delete.
 *
 * `containers/<name>` must be a real directory: a symlink (or anything else) there is refused
 * with `CONTAINER_NOT_DIRECTORY` before anything is unmounted or removed, since unmounting
 * below it and the drivers' `remove` (btrfs) would act on whatever it points to.
 */

async function waitGone(identity: ProcessIdentity, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (isProcessRunning(identity)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/**
 * Removes the directory of container `name`, which must no longer be in use. `record` is
 * undefined for a damaged container (driver unknown).
 */
async function removeDirectory(
  store: string,
  name: string,
  record: ContainerRecord | undefined,
): Promise<void> {
  const dir = runtimeLayout.container(store, name);
  checkDirectory(dir);
  const { unmountBelow } = await import('../assemble/overlay.js');
  await unmountBelow(dir);
  const doomed = join(storeLayout.tmp(store), temporaryName());
  await mkdir(storeLayout.tmp(store), { recursive: true });
  renameSync(dir, doomed);
  if (!record?.disposable) await fsyncDirectory(runtimeLayout.containers(store));
  const drivers = record ? [record.driver] : DRIVER_NAMES;
  for (const driver of drivers) await (await loadDriver(driver)).remove(doomed);
  await rm(doomed, { recursive: true, force: true });
  if (record === undefined || record.base !== undefined) {
    const inUse = new Set(listRecords(store).records.flatMap((r) => (r.base ? [r.base] : [])));
    await (await import('./driver-btrfs.js')).pruneBtrfsBases(store, inUse);
  }
}

/** `CONTAINER_NOT_DIRECTORY` unless `dir` is a real directory (see the module comment). */
function checkDirectory(dir: string): void {
  if (lstatSync(dir).isDirectory()) return;
  throw new RootcastError({
    code: 'CONTAINER_NOT_DIRECTORY',
    message: `${dir} is not a directory (a symlink or another file), so it is not a container rootcast made; nothing was removed`,
    hint: 'Look at what it is (ls -l), then remove it by hand (rm, not rm -r, for a symlink).',
    details: { path: dir },
  });
}

/**
 * Reads the record of the container `rm` is about to remove: undefined when it is damaged and
 * `force` is given (see the module comment); throws otherwise, and for a `containers/<name>`
 * that is not a real directory.
 */
export function recordToRemove(store: string, name: string, force: boolean): ContainerRecord | undefined {
  let record: ContainerRecord | undefined;
  try {
    record = readRecord(store, name);
  } catch (error) {
    if (!force || damagedName(error) !== name) throw error;
  }
  checkDirectory(runtimeLayout.container(store, name));
  return record;
}

export async function removeContainer(
  store: string,
  name: string,
  options: { force?: boolean } = {},
): Promise<void> {
  const record = recordToRemove(store, name, Boolean(options.force));
  const dir = runtimeLayout.container(store, name);
  const runner = runnerOf(dir);
  if (runner && runner.pid !== process.pid) {
    if (!options.force) {
      throw new RootcastError({
        code: 'CONTAINER_RUNNING',
        message: `container ${name} is in use by rootcast run (pid ${runner.pid})`,
        hint: 'Wait for the command to end, or pass --force to kill it.',
        details: { pid: runner.pid },
      });
    }
    process.kill(runner.pid, 'SIGKILL');
    if (!(await waitGone(runner, 5000))) {
      throw new RootcastError({
        code: 'CONTAINER_RUNNING',
        message: `rootcast run (pid ${runner.pid}) did not exit after SIGKILL`,
        hint: 'Check the process with ps, then retry.',
      });
    }
  }
  await removeDirectory(store, name, record);
}

/**
 * Removes `run --rm` containers whose run was killed before it could clean up (its process is
 * gone and nothing runs in it). Returns their names.
 */
export async function sweepDisposable(
  store: string,
  records: readonly ContainerRecord[] = listRecords(store).records,
): Promise<string[]> {
  const swept: string[] = [];
  for (const record of abandonedDisposables(store, records)) {
    try {
      await removeDirectory(store, record.name, record);
      swept.push(record.name);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Another command swept it first, or it is not a directory (left for `rm` to report).
      if (code !== 'ENOENT' && code !== 'CONTAINER_NOT_DIRECTORY') throw error;
    }
  }
  return swept;
}

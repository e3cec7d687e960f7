import { renameSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from '../core/atomic.js';
import { RootcastError } from '../core/errors.js';
import { storeLayout, temporaryName } from '../store/paths.js';
import { loadDriver } from './drivers.js';
import { runtimeLayout } from './paths.js';
import {
  abandonedDisposables,
  type ContainerRecord,
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
 */

async function waitGone(identity: ProcessIdentity, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (isProcessRunning(identity)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Removes the directory of `record`, which must no longer be in use. */
async function removeDirectory(store: string, record: ContainerRecord): Promise<void> {
  const dir = runtimeLayout.container(store, record.name);
  const doomed = join(storeLayout.tmp(store), temporaryName());
  await mkdir(storeLayout.tmp(store), { recursive: true });
  renameSync(dir, doomed);
  if (!record.disposable) await fsyncDirectory(runtimeLayout.containers(store));
  await (await loadDriver(record.driver)).remove(doomed);
  await rm(doomed, { recursive: true, force: true });
  if (record.base !== undefined) {
    const inUse = new Set(listRecords(store).records.flatMap((r) => (r.base ? [r.base] : [])));
    await (await import('./driver-btrfs.js')).pruneBtrfsBases(store, inUse);
  }
}

export async function removeContainer(
  store: string,
  name: string,
  options: { force?: boolean } = {},
): Promise<void> {
  const record = readRecord(store, name);
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
  await removeDirectory(store, record);
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
      await removeDirectory(store, record);
      swept.push(record.name);
    } catch (error) {
      // Another command swept it first.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return swept;
}

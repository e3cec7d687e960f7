import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic.js';
import { inputError, RootcastError } from '../core/errors.js';
import { storeLayout, temporaryName } from '../store/paths.js';
import { type CloneDriver, DRIVER_NAMES, type DriverName } from './driver.js';
import { runtimeLayout } from './paths.js';

/**
 * Choosing a driver. `auto` probes the store once, in order of clone speed (overlay: two
 * directories; btrfs: one snapshot; reflink: one metadata copy per file; copy: the data), and
 * remembers the first that works in `<store>/runtime/driver.json` with every probe's result;
 * later clones read that file instead of probing (a probe mounts an overlay in a throwaway
 * namespace: ~10 ms). `--driver NAME` forces one, probed first so an impossible choice fails
 * with `DRIVER_UNAVAILABLE` before anything is made.
 */
// Each driver loads on first use: a clone or run pays only for the one it uses.
const LOADERS: Record<DriverName, () => Promise<CloneDriver>> = {
  overlay: async () => (await import('./driver-overlay.js')).overlayDriver,
  btrfs: async () => (await import('./driver-btrfs.js')).btrfsDriver,
  reflink: async () => (await import('./driver-reflink.js')).reflinkDriver,
  copy: async () => (await import('./driver-copy.js')).copyDriver,
};

export type DriverChoice = DriverName | 'auto';

export function parseDriverName(value: string): DriverChoice {
  if (value === 'auto' || (DRIVER_NAMES as readonly string[]).includes(value)) return value as DriverChoice;
  throw inputError(
    'DRIVER_UNKNOWN',
    `unknown clone driver ${JSON.stringify(value)}`,
    `Choose one of auto, ${DRIVER_NAMES.join(', ')}.`,
  );
}

export function loadDriver(name: DriverName): Promise<CloneDriver> {
  return LOADERS[name]();
}

interface Remembered {
  driver: DriverName;
  probes: Partial<Record<DriverName, boolean>>;
}

function remembered(store: string): Remembered | undefined {
  try {
    const value = JSON.parse(readFileSync(runtimeLayout.driverChoice(store), 'utf8')) as Partial<Remembered>;
    return value.driver && DRIVER_NAMES.includes(value.driver) ? (value as Remembered) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs one driver's probe in a scratch directory inside the store's tmp/. */
export async function probeDriver(store: string, name: DriverName): Promise<boolean> {
  const scratch = join(storeLayout.tmp(store), temporaryName());
  await mkdir(scratch, { recursive: true });
  try {
    return await (await loadDriver(name)).probe(scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The driver for a clone into `store`: forced, remembered, or probed and remembered. */
export async function chooseDriver(store: string, choice: DriverChoice = 'auto'): Promise<CloneDriver> {
  const memory = remembered(store);
  if (choice !== 'auto') {
    if (memory?.probes[choice] === true || memory?.driver === choice) return loadDriver(choice);
    if (!(await probeDriver(store, choice))) {
      throw new RootcastError({
        code: 'DRIVER_UNAVAILABLE',
        message: `the ${choice} clone driver does not work for the store at ${store}`,
        hint:
          choice === 'btrfs' || choice === 'reflink'
            ? `Put the store on ${choice === 'btrfs' ? 'btrfs' : 'xfs (reflink=1) or btrfs'}, or use --driver auto.`
            : 'Use --driver auto to pick one that works here.',
      });
    }
    const probes = { ...(memory?.probes ?? {}), [choice]: true };
    await writeFileAtomic(
      runtimeLayout.driverChoice(store),
      `${JSON.stringify({ driver: memory?.driver ?? choice, probes }, null, 2)}\n`,
    );
    return loadDriver(choice);
  }
  if (memory) return loadDriver(memory.driver);
  const probes: Partial<Record<DriverName, boolean>> = {};
  let chosen: DriverName = 'copy';
  for (const name of DRIVER_NAMES) {
    probes[name] = await probeDriver(store, name);
    if (probes[name]) {
      chosen = name;
      break;
    }
  }
  await writeFileAtomic(
    runtimeLayout.driverChoice(store),
    `${JSON.stringify({ driver: chosen, probes }, null, 2)}\n`,
  );
  return loadDriver(chosen);
}

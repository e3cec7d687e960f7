import { type ContextOptions, createContext } from '../core/context.js';
import { listRecords, templatesInUse } from '../runtime/record.js';
import { type ContainersUsing, type FsckLayerTree, type FsckReport, fsckStore } from '../store/fsck.js';
import { type GcOptions, type GcReport, gcStore } from '../store/gc.js';

/**
 * `rootcast gc` and `rootcast fsck` for front ends: resolve the store from the options and run
 * the store's mark-and-sweep or check, passing in what containers use (the store does not read
 * container records) and the context's signal (Ctrl-C stops both between items). Neither
 * prints; the CLI decides the exit code (`fsck` fails when `healthy` is false).
 */
export async function collectGarbage(
  options: ContextOptions & Omit<GcOptions, 'templatesInUse' | 'signal'> = {},
): Promise<GcReport> {
  const { store, reporter, signal } = createContext(options);
  const report = await gcStore(store, {
    templatesInUse,
    ...(options.dryRun ? { dryRun: true } : {}),
    ...(options.keepPackages ? { keepPackages: true } : {}),
    ...(options.indexes ? { indexes: true } : {}),
    ...(signal ? { signal } : {}),
  });
  for (const warning of report.warnings) reporter.log('warn', warning);
  return report;
}

/**
 * What the containers of `store` use, for fsck: the manifest each was cloned from and the
 * diff_ids its tree stacks, with the containers' names; unreadable records in `problems`.
 */
export function containersUsing(store: string): ContainersUsing {
  const { records, problems } = listRecords(store);
  const digests = new Map<string, string[]>();
  const layers = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, key: string, name: string) => {
    const names = map.get(key) ?? [];
    if (!names.includes(name)) map.set(key, [...names, name]);
  };
  for (const r of records) {
    add(digests, r.template.digest, r.name);
    for (const diffId of r.layers) add(layers, diffId, r.name);
  }
  return { digests, layers, problems };
}

export type { FsckLayerTree };

export interface FsckResult extends FsckReport {
  /** True when no problem remains unrepaired and no template needs a rebuild. */
  healthy: boolean;
}

export async function checkStoreIntegrity(
  options: ContextOptions & { repair?: boolean } = {},
): Promise<FsckResult> {
  const { store, reporter, signal } = createContext(options);
  const report = await fsckStore(store, {
    containersUsing,
    ...(options.repair ? { repair: true } : {}),
    ...(signal ? { signal } : {}),
  });
  for (const warning of report.warnings) reporter.log('warn', warning);
  const healthy = report.problems.every((p) => p.repaired) && report.rebuild.length === 0;
  return { ...report, healthy };
}

import { type ContextOptions, createContext } from '../core/context.js';
import { templatesInUse } from '../runtime/record.js';
import { type FsckReport, fsckStore } from '../store/fsck.js';
import { type GcOptions, type GcReport, gcStore } from '../store/gc.js';

/**
 * `rootcast gc` and `rootcast fsck` for front ends: resolve the store from the options and run
 * the store's mark-and-sweep or check. Neither prints; the CLI decides the exit code
 * (`fsck` fails when `healthy` is false).
 */
export async function collectGarbage(
  options: ContextOptions & Omit<GcOptions, 'templatesInUse'> = {},
): Promise<GcReport> {
  const { store, reporter } = createContext(options);
  const report = await gcStore(store, {
    templatesInUse,
    ...(options.dryRun ? { dryRun: true } : {}),
    ...(options.keepPackages ? { keepPackages: true } : {}),
    ...(options.indexes ? { indexes: true } : {}),
  });
  for (const warning of report.warnings) reporter.log('warn', warning);
  return report;
}

export interface FsckResult extends FsckReport {
  /** True when no problem remains unrepaired and no template needs a rebuild. */
  healthy: boolean;
}

export async function checkStoreIntegrity(
  options: ContextOptions & { repair?: boolean } = {},
): Promise<FsckResult> {
  const { store } = createContext(options);
  const report = await fsckStore(store, options.repair ? { repair: true } : {});
  const healthy = report.problems.every((p) => p.repaired) && report.rebuild.length === 0;
  return { ...report, healthy };
}

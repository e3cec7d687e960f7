import { access, readFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { returnLargeBlocksPromptly } from '../assemble/native.js';
import { lockPathFor } from '../lock/lock-path.js';
import type { LockOptions } from './lock.js';
import { resolveLockIsolated } from './lock-worker.js';

/**
 * A resolve worker started before the build knows it needs one.
 *
 * Lifecycle: made by `startEarlyResolve`; `done` settles when the worker has written the
 * lock (or failed: errors surface where `done` is awaited, never as unhandled rejections);
 * `cancel` terminates the worker when the build fails before awaiting `done`.
 */
export interface EarlyResolve {
  done: Promise<void>;
  cancel: () => void;
}

/**
 * A recipe without a lock (and without `from:`, whose parent must come first) will be
 * resolved anyway: start the resolve worker at once, so it loads its modules and fetches the
 * indexes while this thread loads the build's modules and checks the recipe (two cores). This
 * module loads nothing heavy (no zod, yaml or undici), so the CLI can call it before it
 * imports the build: the worker's first request goes out ≈0.2 s sooner than when the build
 * starts it. Undefined when the lock exists, the recipe has a parent, or `frozen` forbids
 * resolving.
 */
export async function startEarlyResolve(
  recipePath: string,
  options: LockOptions,
): Promise<EarlyResolve | undefined> {
  returnLargeBlocksPromptly();
  if (options.frozen || options.now !== undefined) return undefined;
  const path = resolvePath(recipePath);
  if (
    await access(lockPathFor(path)).then(
      () => true,
      () => false,
    )
  )
    return undefined;
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined || /^from\s*:/m.test(text)) return undefined;
  const controller = new AbortController();
  const parentSignal = options.signal;
  const forward = () => controller.abort(parentSignal?.reason);
  parentSignal?.addEventListener('abort', forward, { once: true });
  const done = resolveLockIsolated(recipePath, { ...options, signal: controller.signal });
  // A caller's long-lived signal must not collect one listener per build.
  done.finally(() => parentSignal?.removeEventListener('abort', forward)).catch(() => {});
  return { done, cancel: () => controller.abort() };
}

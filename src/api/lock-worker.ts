import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { RootcastError } from '../core/errors.js';
import type { LogLevel, Reporter, TaskHandle } from '../core/reporter.js';
import type { LockOptions } from './lock.js';

/**
 * Resolving a recipe's lock in a worker thread, for the build.
 *
 * Reading Debian's indexes takes over 100 MB at its peak (the main index's ~60k records,
 * the garbage of parsing them, the xz decoder and the compressed index; the text itself is
 * parsed as it is decompressed and never held whole), and a V8 heap that grew that far
 * stays resident until a full collection that an unpacking, mostly idle main thread never
 * triggers. In a worker, its heap is returned to the system when the worker exits, before
 * assembly starts, so resolving and unpacking never add up in the build's peak memory
 * (glibc keeps some of the worker's freed malloc memory resident; later phases reuse it). The worker writes the lock file exactly as `rootcast lock` does; the caller
 * then reads it back.
 *
 * Lifecycle: one worker per call, ended when the lock is written or the first error is
 * thrown. The worker's logs and progress tasks are replayed on the caller's reporter; its
 * errors come back as `RootcastError`s with the same code, message, hint and exit code;
 * aborting the caller's signal terminates the worker (`ABORTED`). Options that cannot
 * cross threads (a custom clock) and runs from TypeScript sources (tests: a worker needs
 * compiled JavaScript) resolve on the calling thread instead, with the same result.
 */
export async function resolveLockIsolated(recipePath: string, options: LockOptions): Promise<void> {
  const script = new URL(import.meta.url);
  if (options.now !== undefined || script.pathname.endsWith('.ts')) {
    const { lock } = await import('./lock.js');
    await lock(recipePath, { ...options, update: true });
    return;
  }
  const reporter = options.reporter;
  const input: WorkerInput = {
    recipePath,
    options: {
      update: true,
      ...(options.store !== undefined ? { store: options.store } : {}),
      ...(options.set !== undefined ? { set: options.set } : {}),
      ...(options.env !== undefined ? { env: { ...options.env } } : {}),
      ...(options.aptRoot !== undefined ? { aptRoot: options.aptRoot } : {}),
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    },
    verbose: reporter !== undefined,
  };
  const worker = new Worker(fileURLToPath(script), {
    workerData: { [WORKER_KEY]: input },
    // Parsing an index allocates millions of short-lived strings: a small young generation
    // collects them early instead of letting them grow the resident set (measured with the
    // streaming parser: 6 MB peaks 40-45 MiB lower than the default, and lower than 3 or
    // 16 MB, at no measurable cost in time). The old generation is left unbounded, so
    // larger repositories never run out of heap.
    resourceLimits: { maxYoungGenerationSizeMb: 6 },
  });
  const tasks = new Map<number, TaskHandle>();
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        reject(
          new RootcastError({
            code: 'ABORTED',
            message: 'resolving the lock was cancelled',
            hint: 'The operation was cancelled; run it again to continue.',
            cause: options.signal?.reason,
          }),
        );
      };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      worker.on('message', (message: WorkerMessage) => {
        switch (message.type) {
          case 'log':
            reporter?.log(message.level, message.message);
            return;
          case 'task':
            tasks.set(message.id, reporter?.task(message.label, message.options) ?? NO_TASK);
            return;
          case 'advance':
            tasks.get(message.id)?.advance(message.amount);
            return;
          case 'total':
            tasks.get(message.id)?.setTotal(message.total);
            return;
          case 'finish':
            tasks.get(message.id)?.finish();
            tasks.delete(message.id);
            return;
          case 'done':
            resolve();
            return;
          case 'error':
            reject(new RootcastError(message.error));
            return;
        }
      });
      worker.on('error', (error) => reject(error));
      worker.on('exit', (code) =>
        reject(
          new RootcastError({
            code: 'LOCK_WORKER_FAILED',
            message: `the thread resolving the lock exited with code ${code} before it finished`,
            hint: 'This is a bug in rootcast or the machine ran out of memory; run `rootcast lock` on its own to see more.',
          }),
        ),
      );
    });
  } finally {
    for (const task of tasks.values()) task.finish();
    await worker.terminate();
  }
}

const WORKER_KEY = 'rootcastLockWorker';
const NO_TASK: TaskHandle = { advance() {}, setTotal() {}, finish() {} };

interface WorkerInput {
  recipePath: string;
  options: Pick<LockOptions, 'update' | 'store' | 'set' | 'env' | 'aptRoot' | 'concurrency'>;
  /** Whether the caller has a reporter (no point posting logs nobody reads otherwise). */
  verbose: boolean;
}

type WorkerMessage =
  | { type: 'log'; level: LogLevel; message: string }
  | { type: 'task'; id: number; label: string; options?: { total?: number; unit?: 'bytes' | 'items' } }
  | { type: 'advance'; id: number; amount: number }
  | { type: 'total'; id: number; total: number }
  | { type: 'finish'; id: number }
  | { type: 'done' }
  | {
      type: 'error';
      error: {
        code: string;
        message: string;
        hint: string;
        exitCode: 1 | 2;
        details?: Record<string, unknown>;
      };
    };

/** The worker's side: a reporter that posts everything to the caller. */
function postingReporter(post: (message: WorkerMessage) => void): Reporter {
  let next = 0;
  return {
    log: (level, message) => post({ type: 'log', level, message }),
    task(label, options) {
      const id = next++;
      post({ type: 'task', id, label, ...(options ? { options } : {}) });
      return {
        advance: (amount) => post({ type: 'advance', id, amount }),
        setTotal: (total) => post({ type: 'total', id, total }),
        finish: () => post({ type: 'finish', id }),
      };
    },
  };
}

function serialize(error: unknown): Extract<WorkerMessage, { type: 'error' }>['error'] {
  if (error instanceof RootcastError) {
    return {
      code: error.code,
      message: error.message,
      hint: error.hint,
      exitCode: error.exitCode === 2 ? 2 : 1,
      ...(error.details ? { details: JSON.parse(JSON.stringify(error.details)) } : {}),
    };
  }
  return {
    code: 'LOCK_WORKER_FAILED',
    message: `resolving the lock failed: ${error instanceof Error ? error.message : String(error)}`,
    hint: 'This is a bug in rootcast; run `rootcast lock --debug` on its own to see more.',
    exitCode: 1,
  };
}

const input = isMainThread ? undefined : (workerData?.[WORKER_KEY] as WorkerInput | undefined);
if (input !== undefined && parentPort !== null) {
  const port = parentPort;
  const post = (message: WorkerMessage) => port.postMessage(message);
  const reporter = input.verbose ? postingReporter(post) : undefined;
  // This thread exists to bound memory: let it collect the garbage of parsing the indexes
  // before resolving allocates more (see collectParseGarbage in api/lock.ts).
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as unknown;
  if (typeof gc === 'function')
    (globalThis as { rootcastCollect?: () => void }).rootcastCollect = gc as () => void;
  import('./lock.js')
    .then(({ lock }) => lock(input.recipePath, { ...input.options, ...(reporter ? { reporter } : {}) }))
    .then(
      () => post({ type: 'done' }),
      (error: unknown) => post({ type: 'error', error: serialize(error) }),
    );
}

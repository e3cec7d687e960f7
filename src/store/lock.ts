import { spawn } from 'node:child_process';
import { type FileHandle, mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { hasNativeCalls, nativeCalls } from '../assemble/native.js';
import { describeError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { storeLayout } from './paths.js';

/**
 * Cross-process locks on files under `<store>/locks/`, with flock(2) semantics.
 *
 * Node has no flock, so the lock is taken by util-linux `flock` on a file descriptor that this
 * process opened and passes to the child as fd 3: flock(2) locks belong to the open file
 * description, which the child shares with us, so when `flock 3` exits 0 the lock is held by
 * *our* descriptor and stays held until `release()` closes it. The kernel drops it when this
 * process dies, however it dies: there are no stale locks to detect and no pids to trust.
 * Two acquisitions in one process open two descriptions, so they exclude each other too.
 *
 * Lifecycle: `acquireLock` → work → `release()` (exactly once; later calls do nothing). Lock
 * files are never deleted (deleting one would let two holders lock different inodes). The
 * holder's pid is written into the file for diagnostics only.
 *
 * Which locks exist: `store` guards `index.json` (tags) and is held only for the read-modify-
 * write of the index; `build-<name>` is held by a build for its whole run, so two builds of the
 * same recipe do not race while different recipes build in parallel.
 */
export interface FileLock {
  readonly path: string;
  release(): Promise<void>;
}

export interface LockOptions {
  /** Shared (read) instead of exclusive. */
  shared?: boolean;
  /** Give up with `STORE_LOCK_TIMEOUT` after this long; wait forever when absent. */
  timeoutMs?: number;
  /** Told once when the lock is busy and we start waiting. */
  reporter?: Reporter;
}

const BUSY_EXIT = 75;

function runFlock(handle: FileHandle, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', [...args, '-E', String(BUSY_EXIT), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', handle.fd],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (error) =>
      reject(
        new RootcastError({
          code: 'STORE_LOCK_UNAVAILABLE',
          message: `cannot run flock to lock the store: ${describeError(error)}`,
          hint: 'Install util-linux (it provides flock).',
          cause: error,
        }),
      ),
    );
    child.on('close', (code) => {
      if (code === 0 || code === BUSY_EXIT) resolve(code);
      else
        reject(
          new RootcastError({
            code: 'STORE_LOCK_UNAVAILABLE',
            message: `flock failed (exit ${code}): ${stderr.trim() || 'no message'}`,
            hint: 'Check that the store is on a local filesystem that supports flock.',
          }),
        );
    });
  });
}

async function holderOf(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = text.trim();
  return /^\d+$/.test(pid) ? ` (held by pid ${pid})` : '';
}

export async function acquireLock(path: string, options: LockOptions = {}): Promise<FileLock> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, 'a+', 0o644);
  const mode = options.shared ? '--shared' : '--exclusive';
  try {
    // The uncontended case without a child process when the native addon is built.
    const native = hasNativeCalls() ? nativeCalls().flockTry : undefined;
    let code = native
      ? native(handle.fd, Boolean(options.shared))
        ? 0
        : BUSY_EXIT
      : await runFlock(handle, [mode, '--nonblock']);
    if (code === BUSY_EXIT && options.timeoutMs !== 0) {
      options.reporter?.log('info', `waiting for lock ${path}${await holderOf(path)}`);
      const wait = options.timeoutMs === undefined ? [] : ['--timeout', String(options.timeoutMs / 1000)];
      code = await runFlock(handle, [mode, ...wait]);
    }
    if (code === BUSY_EXIT) {
      throw new RootcastError({
        code: 'STORE_LOCK_TIMEOUT',
        message: `lock ${path} is busy${await holderOf(path)}`,
        hint: 'Another rootcast process is using the store; wait for it to finish and retry.',
        details: { path },
      });
    }
    if (!options.shared) {
      await handle.truncate(0);
      await handle.write(`${process.pid}\n`, 0);
    }
  } catch (error) {
    await handle.close();
    throw error;
  }
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      await handle.close();
    },
  };
}

/** Runs `fn` holding the lock at `path`, and releases it however `fn` ends. */
export async function withLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const lock = await acquireLock(path, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** The lock that guards `index.json`. Hold it only for a read-modify-write of the index. */
export function storeLockPath(store: string): string {
  return storeLayout.lock(store, 'store');
}

/** The lock a build of template `name` holds for its whole run. */
export function buildLockPath(store: string, name: string): string {
  return storeLayout.lock(store, `build-${name}`);
}

import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RootcastError } from './errors.js';
import { type Reporter, silentReporter } from './reporter.js';

/**
 * What every I/O-doing operation needs, passed down explicitly instead of read from
 * globals: where the store lives, how to report, the clock (so tests can move it), and a
 * signal to stop. A context is created once per API call and never mutated.
 */
export interface Context {
  /** Root of the store (DESIGN.md "On disk"); default `cache/` beside the project. */
  readonly store: string;
  readonly reporter: Reporter;
  readonly now: () => Date;
  readonly signal?: AbortSignal;
  /** How many downloads may run at once (default 8). */
  readonly concurrency: number;
}

export interface ContextOptions {
  store?: string;
  reporter?: Reporter;
  now?: () => Date;
  signal?: AbortSignal;
  concurrency?: number;
}

/** The store used when neither `--store` nor `ROOTCAST_STORE` says otherwise. */
export function defaultStorePath(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.ROOTCAST_STORE ?? join(process.cwd(), 'cache'));
}

/**
 * Every verb resolves its store here, so a store path that cannot be a store fails at once,
 * before anything is read or fetched, the same way for every verb (and in the build's resolve
 * worker, which calls this too). Throws `STORE_NOT_A_DIRECTORY` (exit 2).
 */
export function createContext(options: ContextOptions = {}): Context {
  const store = resolve(options.store ?? defaultStorePath());
  checkStorePath(store);
  return {
    store,
    reporter: options.reporter ?? silentReporter,
    now: options.now ?? (() => new Date()),
    ...(options.signal ? { signal: options.signal } : {}),
    concurrency: options.concurrency ?? 8,
  };
}

/**
 * A store that does not exist yet is fine (it is created on first write); one that exists
 * must be a directory (or a symlink to one). A path through a regular file (`FILE/sub`) can
 * never become one either. Other stat failures (EACCES, …) are left to the operation that
 * touches the store, which names its own cause.
 */
function checkStorePath(store: string): void {
  let code: string | undefined;
  try {
    if (statSync(store).isDirectory()) return;
  } catch (error) {
    code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTDIR') return;
  }
  throw new RootcastError({
    code: 'STORE_NOT_A_DIRECTORY',
    message:
      code === 'ENOTDIR'
        ? `store ${store} cannot be a directory: a part of its path is a file`
        : `store ${store} exists and is not a directory`,
    hint: 'Point --store (or ROOTCAST_STORE) at a directory, or at a path that does not exist yet for a new store.',
    exitCode: 2,
    details: { store },
  });
}

/** Well-known places inside a store. */
export const storePaths = {
  packages: (store: string) => join(store, 'packages', 'sha256'),
  packageFile: (store: string, sha256Hex: string) => join(store, 'packages', 'sha256', sha256Hex),
  indexes: (store: string) => join(store, 'indexes'),
  /** Decompressed data members of cached packages (assemble/member-cache.ts). */
  members: (store: string) => join(store, 'packages', 'members'),
};

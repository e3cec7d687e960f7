import { join, resolve } from 'node:path';
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

export function createContext(options: ContextOptions = {}): Context {
  return {
    store: resolve(options.store ?? defaultStorePath()),
    reporter: options.reporter ?? silentReporter,
    now: options.now ?? (() => new Date()),
    ...(options.signal ? { signal: options.signal } : {}),
    concurrency: options.concurrency ?? 8,
  };
}

/** Well-known places inside a store. */
export const storePaths = {
  packages: (store: string) => join(store, 'packages', 'sha256'),
  packageFile: (store: string, sha256Hex: string) => join(store, 'packages', 'sha256', sha256Hex),
  indexes: (store: string) => join(store, 'indexes'),
  /** Decompressed data members of cached packages (assemble/member-cache.ts). */
  members: (store: string) => join(store, 'packages', 'members'),
};

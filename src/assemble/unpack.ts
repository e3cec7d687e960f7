import { chmodSync, existsSync, lchownSync, lstatSync, lutimesSync, mkdirSync, symlinkSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { RootcastError } from '../core/errors.js';
import { type Reporter, silentReporter } from '../core/reporter.js';
import type { PendingMemberCache } from './member-cache.js';
import type { DirectoryRecord } from './tree-writer.js';
import type { PackageFile, UnpackedPackage } from './types.js';
import {
  serializeError,
  type UnpackJob,
  type UnpackOutcome,
  type UnpackReply,
  unpackOne,
} from './unpack-worker.js';

/**
 * Unpacks every locked package into the staging tree, in parallel.
 *
 * Lifecycle: the build creates an empty root, calls `setupMergedUsr` (for releases whose
 * trees alias /bin, /sbin, /lib… into /usr), then `unpackPackages` once with the lock's
 * packages. A pool of worker threads (one per CPU by default) takes the packages largest
 * first; each worker decompresses and writes a whole package (unpack-worker.ts, with the
 * safety rules of tree-writer.ts). Two things span packages and are settled here, after all
 * workers are done, so the result does not depend on which thread won a race:
 *
 * - Directories shared by several packages get the owner, mode and mtime of the first
 *   package in lock order that ships them (dpkg keeps an existing directory as it is), and
 *   every directory's mtime is set after its contents are written.
 * - A non-directory written by more than one package (rare: Replaces, or packages that
 *   ship the same symlink) is settled by unpacking the packages involved again, one by one
 *   in lock order, so the later package's version wins as with dpkg.
 *
 * The first failure stops the unpack; the staging tree is then partial and the build
 * discards it. Memory: each worker holds one package file and, for xz and gzip members,
 * one decompressed data.tar at a time.
 */
export interface UnpackOptions {
  reporter?: Reporter;
  /** Worker threads to use; default: the number of CPUs. */
  concurrency?: number;
  /**
   * Write decoded xz members raw instead of compressing them into the member cache on the
   * way, and hand each one here; the caller then owns it (`MemberCacheCompressor` finishes
   * the cache while the CPU is otherwise idle). Without it the cache is written inline.
   */
  deferMemberCache?: (pending: PendingMemberCache) => void;
  /** Aborting stops taking packages (those in flight finish) and rejects with the reason. */
  signal?: AbortSignal;
}

export async function unpackPackages(
  packages: PackageFile[],
  root: string,
  options: UnpackOptions = {},
): Promise<UnpackedPackage[]> {
  const reporter = options.reporter ?? silentReporter;
  const task = reporter.task('unpack', { total: packages.length, unit: 'items' });
  const size = Math.max(1, Math.min(options.concurrency ?? availableParallelism(), packages.length));
  const pool = createPool(size);
  const defer = options.deferMemberCache !== undefined;
  try {
    const outcomes: UnpackOutcome[] = new Array(packages.length);
    const unpackAt = async (index: number): Promise<void> => {
      const pkg = jobFile(packages[index] as PackageFile);
      const outcome = await pool.run({ id: index, pkg, root, deferMemberCache: defer });
      if (outcome.pendingMember) options.deferMemberCache?.(outcome.pendingMember);
      outcomes[index] = outcome;
    };
    const queue = new ArrivalQueue(packages);
    const signal = options.signal;
    const onAbort = () => queue.fail(signal?.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await runAll(queue, size, async (index) => {
        await unpackAt(index);
        task.advance(1);
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    signal?.throwIfAborted();
    const again = overlappingPackages(outcomes);
    if (again.length > 0) {
      reporter.log(
        'debug',
        `unpack: ${again.length} package(s) share files; unpacking them again in lock order`,
      );
    }
    for (const index of again) await unpackAt(index);
    applyDirectoryRecords(outcomes.map((outcome) => outcome.directories));
    return packages.map((pkg, index) => toUnpacked(pkg, outcomes[index] as UnpackOutcome));
  } finally {
    await pool.close();
    task.finish();
  }
}

/**
 * Indexes of packages that must be unpacked again, in lock order: every package but the
 * first that wrote a non-directory some other package also wrote (or made a directory of).
 */
export function overlappingPackages(
  outcomes: readonly Pick<UnpackOutcome, 'written' | 'directories'>[],
): number[] {
  const owner = new Map<string, number>();
  const again = new Set<number>();
  outcomes.forEach((outcome, index) => {
    for (const path of outcome.written) {
      const first = owner.get(path);
      if (first === undefined) owner.set(path, index);
      else if (first !== index) again.add(index);
    }
  });
  outcomes.forEach((outcome, index) => {
    for (const dir of outcome.directories) {
      const first = owner.get(dir.path);
      if (first !== undefined && first !== index) again.add(Math.max(first, index));
    }
  });
  return [...again].sort((a, b) => a - b);
}

/** Applies, per directory, the record of the first package (in lock order) that ships it. */
export function applyDirectoryRecords(perPackage: readonly (readonly DirectoryRecord[])[]): void {
  const chosen = new Map<string, DirectoryRecord>();
  for (const records of perPackage) {
    for (const record of records) if (!chosen.has(record.path)) chosen.set(record.path, record);
  }
  for (const record of chosen.values()) {
    // The writer created or found a real directory here; skip anything replaced since.
    if (!lstatSync(record.path, { throwIfNoEntry: false })?.isDirectory()) continue;
    lchownSync(record.path, record.uid, record.gid);
    chmodSync(record.path, record.mode);
    lutimesSync(record.path, record.mtime, record.mtime);
  }
}

/**
 * The directories a release aliases into /usr (`bin -> usr/bin`…): what trixie's base-files
 * ships and what bookworm's usrmerge converts a tree to (only the directories that exist,
 * so `lib64` only where the dynamic loader lives there). Empty for releases from before
 * merged-/usr, which mmdebstrap leaves unmerged.
 */
export function mergedUsrDirectories(release: string, arch: string): string[] {
  if (UNMERGED_RELEASES.has(release)) return [];
  return LIB64_ARCHES.has(arch) ? ['bin', 'lib', 'lib64', 'sbin'] : ['bin', 'lib', 'sbin'];
}

const UNMERGED_RELEASES = new Set(['jessie', 'stretch', 'buster', 'bullseye', 'xenial', 'bionic', 'focal']);
const LIB64_ARCHES = new Set(['amd64', 'ppc64el', 'mips64el', 'loong64', 'sparc64']);

/**
 * Creates the merged-/usr symlinks in an empty root before unpacking, so that packages'
 * `./bin/…` members land in /usr/bin and their `./bin/` directory members keep the link.
 * With parallel unpacking this must happen first: a package writing `./lib/x` before
 * base-files' `./lib -> usr/lib` would otherwise make /lib a real directory.
 */
export function setupMergedUsr(root: string, release: string, arch: string): void {
  for (const dir of mergedUsrDirectories(release, arch)) {
    mkdirSync(`${root}/usr/${dir}`, { recursive: true, mode: 0o755 });
    if (lstatSync(`${root}/${dir}`, { throwIfNoEntry: false }) === undefined)
      symlinkSync(`usr/${dir}`, `${root}/${dir}`);
  }
}

function toUnpacked(pkg: PackageFile, outcome: UnpackOutcome): UnpackedPackage {
  return {
    name: pkg.name,
    version: pkg.version,
    architecture: outcome.architecture,
    multiArch: outcome.multiArch,
    control: outcome.control,
    // Buffers come back from a worker as plain Uint8Arrays.
    controlFiles: new Map(
      outcome.controlFiles.map(([name, file]) => [
        name,
        {
          data: Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength),
          mode: file.mode,
          mtime: file.mtime,
        },
      ]),
    ),
    paths: outcome.paths,
  };
}

/** What a worker is sent: the file, not its readiness (a promise cannot cross threads). */
function jobFile({ ready: _ready, ...file }: PackageFile): PackageFile {
  return file;
}

function fileSize(pkg: PackageFile): number {
  return pkg.size ?? lstatSync(pkg.file, { throwIfNoEntry: false })?.size ?? 0;
}

/**
 * Hands out package indexes as their files become ready, the largest ready one first (a big
 * package started last would leave the other workers idle at the end). `take` resolves to
 * undefined once every index has been handed out; it rejects when a package waited for will
 * never be ready (its download failed).
 */
class ArrivalQueue {
  private readonly ready: number[] = [];
  private pending: number;
  private failure: { error: unknown } | undefined;
  private waiters: Array<() => void> = [];

  constructor(packages: readonly PackageFile[]) {
    this.pending = packages.length;
    const sizes = packages.map(fileSize);
    const bySize = (a: number, b: number) => (sizes[b] ?? 0) - (sizes[a] ?? 0) || a - b;
    packages.forEach((pkg, index) => {
      const arrive = () => {
        this.ready.push(index);
        this.ready.sort(bySize);
        this.wake();
      };
      if (pkg.ready === undefined) arrive();
      else pkg.ready.then(arrive, (error: unknown) => this.fail(error));
    });
  }

  async take(): Promise<number | undefined> {
    for (;;) {
      if (this.pending === 0) return undefined;
      // A package that will never arrive fails the unpack at once: the tree is discarded anyway.
      if (this.failure) throw this.failure.error;
      const next = this.ready.shift();
      if (next !== undefined) {
        this.pending--;
        return next;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Ends the queue: every `take`, waiting or later, rejects with `error`. */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * Runs `work` over the queue's items as they arrive, at most `limit` at a time. The first
 * failure ends the queue (lanes waiting for a file stop) and wins once in-flight work settles.
 */
async function runAll(
  queue: ArrivalQueue,
  limit: number,
  work: (item: number) => Promise<void>,
): Promise<void> {
  let failure: { error: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (failure === undefined) {
      let item: number | undefined;
      try {
        item = await queue.take();
        if (item === undefined || failure !== undefined) return;
        await work(item);
      } catch (error) {
        failure ??= { error };
        // Lanes waiting for a download stop now, not when the next file arrives.
        queue.fail(error);
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, lane));
  if (failure !== undefined) throw failure.error;
}

interface Pool {
  run(job: UnpackJob): Promise<UnpackOutcome>;
  close(): Promise<void>;
}

/**
 * Worker threads need JavaScript: from `dist/` the worker is the sibling `.js` file; when
 * this module runs from TypeScript sources (the test runner), the compiled copy in `dist/`
 * is used, and without one the packages are unpacked on this thread, one at a time.
 */
function workerScript(): URL | undefined {
  const here = import.meta.url;
  const sibling = new URL('./unpack-worker.js', here);
  if (!here.endsWith('.ts')) return sibling;
  const compiled = new URL('../../dist/assemble/unpack-worker.js', here);
  return existsSync(fileURLToPath(compiled)) ? compiled : undefined;
}

function createPool(size: number): Pool {
  const script = workerScript();
  if (script === undefined) {
    return {
      run: async (job) =>
        unpackOne(job.pkg, job.root, undefined, { deferMemberCache: job.deferMemberCache === true }),
      close: async () => {},
    };
  }
  const idle: Worker[] = [];
  const all: Worker[] = [];
  const waiting: ((worker: Worker) => void)[] = [];
  const acquire = (): Promise<Worker> => {
    const worker = idle.pop();
    if (worker !== undefined) return Promise.resolve(worker);
    if (all.length < size) {
      const fresh = new Worker(script);
      fresh.unref();
      all.push(fresh);
      return Promise.resolve(fresh);
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  const release = (worker: Worker): void => {
    const waiter = waiting.shift();
    if (waiter !== undefined) waiter(worker);
    else idle.push(worker);
  };
  return {
    async run(job) {
      const worker = await acquire();
      let crashed = false;
      const reply = await new Promise<UnpackReply>((resolve) => {
        const onMessage = (message: UnpackReply): void => {
          cleanup();
          resolve(message);
        };
        const onError = (error: unknown): void => {
          // A worker that threw outside a job (out of memory, a crash) is gone for good.
          crashed = true;
          all.splice(all.indexOf(worker), 1);
          cleanup();
          resolve({ id: job.id, ok: false, error: serializeError(error) });
        };
        const cleanup = (): void => {
          worker.off('message', onMessage);
          worker.off('error', onError);
        };
        worker.on('message', onMessage);
        worker.on('error', onError);
        worker.postMessage(job);
      });
      if (!crashed) release(worker);
      if (reply.ok) return reply.outcome;
      throw new RootcastError({ ...reply.error, exitCode: 1 });
    },
    async close() {
      await Promise.all(all.map((worker) => worker.terminate()));
    },
  };
}

import { lstat, mkdir, open, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { commitTemporary, fsyncDirectory, temporaryPathFor } from '../core/atomic.js';
import { describeError, inputError, RootcastError } from '../core/errors.js';

/**
 * Atomic export outputs: whatever an exporter writes goes to a temporary beside the
 * destination (`.tmp-<name>-<pid>-<random>`, same filesystem, so one rename publishes it),
 * is fsynced, and only then renamed to the destination. A failure removes the temporary; a
 * kill leaves only the temporary, which `ownerPidOf` recognises as abandoned once the pid is
 * gone. The destination is never half-written: it is the old file, or the whole new output.
 */

/**
 * Writes `source` to `path` (which must not exist yet), fsyncs it, and returns its size.
 * An aborted `signal` stops it between chunks with the signal's reason; leaving the loop
 * ends the source too (a compressor child is killed), and the caller removes `path`.
 */
export async function writeChunksToFile(
  path: string,
  source: AsyncIterable<Uint8Array>,
  signal?: AbortSignal,
): Promise<number> {
  signal?.throwIfAborted();
  const handle = await open(path, 'wx', 0o644);
  let size = 0;
  try {
    for await (const chunk of source) {
      signal?.throwIfAborted();
      let offset = 0;
      while (offset < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
        offset += bytesWritten;
      }
      size += chunk.length;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return size;
}

/** Writes a small file in one go, fsynced. */
export async function writeSmallFile(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Produces a file at `destination` atomically: `produce` writes the temporary path it is
 * given; the temporary replaces `destination` only when `produce` resolves.
 */
export async function atomicFile<T>(destination: string, produce: (tmp: string) => Promise<T>): Promise<T> {
  const target = resolve(destination);
  const removeParents = await makeParents(dirname(target));
  const tmp = temporaryPathFor(target);
  try {
    const result = await produce(tmp);
    await commitTemporary(tmp, target).catch((error: unknown) => {
      throw writeFailed(target, error);
    });
    return result;
  } catch (error) {
    await rm(tmp, { force: true });
    await removeParents();
    throw error;
  }
}

/**
 * Creates `dir` and its missing parents (a missing parent of -o is created, as documented);
 * returns a function that removes again the ones it created, for a failed export. Only empty
 * directories are removed: one another process has written into stays.
 */
async function makeParents(dir: string): Promise<() => Promise<void>> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return async () => {};
  return async () => {
    for (let d = dir; ; d = dirname(d)) {
      const removed = await rmdir(d).then(
        () => true,
        () => false,
      );
      if (!removed || d === first || dirname(d) === d) return;
    }
  };
}

function writeFailed(target: string, error: unknown): RootcastError {
  if (error instanceof RootcastError) return error;
  return new RootcastError({
    code: 'EXPORT_WRITE_FAILED',
    message: `cannot move the export into ${target}: ${describeError(error)}`,
    hint: 'Check that the parent directory is writable and that nothing else writes there.',
    cause: error,
  });
}

async function isEmptyDirOrAbsent(path: string): Promise<boolean> {
  try {
    const st = await lstat(path);
    if (!st.isDirectory()) return false;
    return (await readdir(path)).length === 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
}

export function outputExists(path: string): RootcastError {
  return inputError(
    'EXPORT_OUTPUT_EXISTS',
    `${path} already exists and is not an empty directory`,
    'Name a new directory for -o (or remove the old export first).',
  );
}

/**
 * Produces a directory at `destination` atomically. `destination` must not exist or be an
 * empty directory (`EXPORT_OUTPUT_EXISTS`, exit 2, otherwise): directories cannot be
 * replaced in one rename. `produce` fills the temporary directory it is given (and fsyncs
 * what it writes); the directory is renamed into place when it resolves.
 */
export async function atomicDirectory<T>(
  destination: string,
  produce: (tmpDir: string) => Promise<T>,
): Promise<T> {
  const target = resolve(destination);
  if (!(await isEmptyDirOrAbsent(target))) throw outputExists(target);
  const removeParents = await makeParents(dirname(target));
  const tmp = temporaryPathFor(target);
  try {
    await mkdir(tmp, { mode: 0o755 });
    const result = await produce(tmp);
    await fsyncDirectory(tmp);
    // An empty directory in the way is removed at the last moment; anything else stops us.
    if (!(await isEmptyDirOrAbsent(target))) throw outputExists(target);
    await rmdir(target).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    await rename(tmp, target).catch((error: unknown) => {
      throw writeFailed(target, error);
    });
    await fsyncDirectory(dirname(target));
    return result;
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    await removeParents();
    throw error;
  }
}

/** A scratch directory beside `destination` (same filesystem), removed after `use`. */
export async function withScratchDir<T>(destination: string, use: (dir: string) => Promise<T>): Promise<T> {
  const target = resolve(destination);
  const removeParents = await makeParents(dirname(target));
  const dir = temporaryPathFor(`${target}-scratch`);
  let done = false;
  try {
    await mkdir(dir, { mode: 0o700 });
    const result = await use(dir);
    done = true;
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
    if (!done) await removeParents();
  }
}

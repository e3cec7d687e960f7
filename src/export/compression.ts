import { spawn } from 'node:child_process';
import type { Readable, Transform } from 'node:stream';
import { createGzip } from 'node:zlib';
import { CompressStream } from 'zstd-napi';
import { describeError, inputError, RootcastError } from '../core/errors.js';

/**
 * Compressors for exported files. Each is deterministic: the same input bytes, kind and level
 * give the same output bytes on any machine with the same library versions.
 *
 * - gzip: Node's zlib, whose gzip header has no file name and mtime 0 (OS byte: Unix).
 * - zstd: zstd-napi (the same bundled zstd as the store), single-threaded, checksum on.
 * - xz: the system `xz` in multi-threaded mode (`-T0`): its output depends on the block size,
 *   never on the thread count, and it is twice as fast as `-T1` on two cores. xz-utils is
 *   priority `standard` in Debian, and LXC's own templates need it anyway.
 */
export type Compression = 'none' | 'gzip' | 'xz' | 'zstd';

export const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'xz', 'zstd'];

/** The level each compressor uses unless told otherwise, and the range it accepts. */
const LEVELS: Record<Exclude<Compression, 'none'>, { default: number; min: number; max: number }> = {
  gzip: { default: 6, min: 1, max: 9 },
  xz: { default: 6, min: 0, max: 9 },
  zstd: { default: 3, min: 1, max: 19 },
};

/** File name suffix of a tarball compressed this way. */
export const TAR_SUFFIX: Record<Compression, string> = {
  none: '.tar',
  gzip: '.tar.gz',
  xz: '.tar.xz',
  zstd: '.tar.zst',
};

/** Pure: the compression a file name implies (`.tar.gz`, `.tgz`, `.tar.xz`, `.tar.zst`, `.tar`), if any. */
export function compressionOfName(name: string): Compression | undefined {
  if (/\.(tar\.gz|tgz)$/.test(name)) return 'gzip';
  if (/\.(tar\.xz|txz)$/.test(name)) return 'xz';
  if (/\.(tar\.zst|tzst)$/.test(name)) return 'zstd';
  if (/\.tar$/.test(name)) return 'none';
  return undefined;
}

/** Checks `--compression` against what a format accepts; throws `EXPORT_COMPRESSION_UNSUPPORTED` (exit 2). */
export function parseCompression(
  value: string | undefined,
  allowed: readonly Compression[],
  format: string,
): Compression | undefined {
  if (value === undefined) return undefined;
  const found = allowed.find((c) => c === value);
  if (found === undefined) {
    throw inputError(
      'EXPORT_COMPRESSION_UNSUPPORTED',
      `--compression ${value} is not available for --format ${format}`,
      allowed.length > 0
        ? `Use one of: ${allowed.join(', ')}.`
        : `--format ${format} has a fixed compression: drop --compression.`,
    );
  }
  return found;
}

/** The level to use; throws `EXPORT_LEVEL_INVALID` (exit 2) when out of the compressor's range. */
export function compressionLevel(kind: Compression, level: number | undefined): number {
  if (kind === 'none') {
    if (level === undefined) return 0;
    throw inputError(
      'EXPORT_LEVEL_INVALID',
      `--level ${level} asks for compression, but this output is not compressed`,
      'Drop --level, or pick a compression (--compression or a .tar.gz/.tar.xz/.tar.zst name).',
    );
  }
  const range = LEVELS[kind];
  if (level === undefined) return range.default;
  if (!Number.isInteger(level) || level < range.min || level > range.max) {
    throw inputError(
      'EXPORT_LEVEL_INVALID',
      `${kind} level must be an integer from ${range.min} to ${range.max}, got ${level}`,
      `Use --level ${range.min}–${range.max} (default ${range.default}) or leave it out.`,
    );
  }
  return level;
}

/**
 * Compresses `source` and yields the compressed bytes. The source is consumed once; an error
 * from it or from the compressor ends the iteration with that error.
 */
export async function* compressChunks(
  source: AsyncIterable<Buffer>,
  kind: Compression,
  level: number,
): AsyncGenerator<Buffer> {
  if (kind === 'none') {
    yield* source;
    return;
  }
  if (kind === 'xz') {
    yield* xzChunks(source, level);
    return;
  }
  const transform: Transform =
    kind === 'gzip'
      ? createGzip({ level })
      : new CompressStream({ compressionLevel: level, checksumFlag: true, contentSizeFlag: false });
  yield* throughTransform(source, transform);
}

/** Feeds `source` into `transform` with backpressure and yields what comes out. */
async function* throughTransform(
  source: AsyncIterable<Buffer>,
  transform: Transform,
): AsyncGenerator<Buffer> {
  let feedError: unknown;
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        if (!transform.write(chunk)) {
          await new Promise<void>((resolve, reject) => {
            const onDrain = () => {
              transform.off('error', onError);
              resolve();
            };
            const onError = (e: unknown) => {
              transform.off('drain', onDrain);
              reject(e);
            };
            transform.once('drain', onDrain);
            transform.once('error', onError);
          });
        }
      }
      transform.end();
    } catch (error) {
      feedError = error;
      transform.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  })();
  try {
    for await (const chunk of transform as Readable) yield chunk as Buffer;
  } catch (error) {
    await feed;
    throw feedError ?? error;
  }
  await feed;
  if (feedError !== undefined) throw feedError;
}

async function* xzChunks(source: AsyncIterable<Buffer>, level: number): AsyncGenerator<Buffer> {
  const child = spawn('xz', ['-T0', `-${level}`, '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', (error) =>
      reject(
        new RootcastError({
          code: 'EXPORT_COMPRESSOR_FAILED',
          message: `cannot run xz: ${describeError(error)}`,
          hint: 'Install xz-utils (`apt-get install xz-utils`).',
          cause: error,
        }),
      ),
    );
    child.on('close', (code) => resolve(code ?? -1));
  });
  exited.catch(() => {});
  child.stdin.on('error', () => {});
  let feedError: unknown;
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        if (!child.stdin.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              child.stdin.off('drain', done);
              child.off('close', done);
              resolve();
            };
            child.stdin.once('drain', done);
            child.once('close', done);
          });
        }
      }
      child.stdin.end();
    } catch (error) {
      feedError = error;
      child.kill('SIGKILL');
    }
  })();
  // xz's stdout can end before the process has exited: kill it only when the consumer
  // stopped early, never after a complete read (that would turn success into a signal).
  let complete = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    complete = true;
  } finally {
    if (!complete && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await feed;
  if (feedError !== undefined) throw feedError;
  const code = await exited;
  if (code !== 0) {
    throw new RootcastError({
      code: 'EXPORT_COMPRESSOR_FAILED',
      message: `xz failed (exit ${code}): ${stderr.trim().split('\n')[0] ?? ''}`,
      hint: 'Check free disk space and memory, then retry.',
    });
  }
}

/**
 * Pure: the compression of a tarball written to `fileName`: `--compression` when given,
 * else what the name's suffix says, else `fallback`. A flag that contradicts the suffix is
 * `EXPORT_COMPRESSION_MISMATCH` (exit 2): `x.tar.gz` holding zstd would mislead every tool.
 */
export function tarballCompression(
  flag: Compression | undefined,
  fileName: string,
  allowed: readonly Compression[],
  fallback: Compression,
): Compression {
  const named = compressionOfName(fileName);
  if (flag !== undefined && named !== undefined && named !== flag) {
    throw inputError(
      'EXPORT_COMPRESSION_MISMATCH',
      `${fileName} names a ${named} tarball but --compression is ${flag}`,
      `End the file name with ${TAR_SUFFIX[flag]}, or drop --compression.`,
    );
  }
  const chosen = flag ?? named ?? fallback;
  if (!allowed.includes(chosen)) {
    throw inputError(
      'EXPORT_COMPRESSION_UNSUPPORTED',
      `${fileName} names a ${chosen} tarball, which this format does not write`,
      `Use one of: ${allowed.map((c) => TAR_SUFFIX[c]).join(', ')}.`,
    );
  }
  return chosen;
}

/** A buffer as a one-chunk stream, for `compressChunks`. */
export async function* oneChunk(buffer: Buffer): AsyncGenerator<Buffer> {
  yield buffer;
}

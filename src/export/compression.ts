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

/**
 * File name suffixes and what they say about a tarball, longest first within each kind. The
 * last suffix decides, as with GNU tar's `--auto-compress` (`rootfs.gz` is gzip). The ones
 * without a `Compression` are kinds rootcast does not write: naming one is refused rather
 * than writing, say, an uncompressed tar called `.tar.bz2`. Other names (`rootfs`,
 * `rootfs.img`) say nothing: `--compression` or the format's default decides.
 */
const SUFFIXES: readonly { pattern: RegExp; kind: string; compression?: Compression }[] = [
  { pattern: /(\.tar\.gz|\.tgz|\.taz|\.gz)$/i, kind: 'gzip', compression: 'gzip' },
  { pattern: /(\.tar\.xz|\.txz|\.xz)$/i, kind: 'xz', compression: 'xz' },
  { pattern: /(\.tar\.zst|\.tzst|\.zst)$/i, kind: 'zstd', compression: 'zstd' },
  { pattern: /\.tar$/i, kind: 'none', compression: 'none' },
  { pattern: /(\.tar\.bz2|\.tbz2?|\.tb2|\.tz2|\.bz2)$/i, kind: 'bzip2' },
  { pattern: /(\.tar\.lzma|\.tlz|\.lzma)$/i, kind: 'lzma' },
  { pattern: /(\.tar\.lz|\.lz)$/i, kind: 'lzip' },
  { pattern: /(\.tar\.lz4|\.lz4)$/i, kind: 'lz4' },
  { pattern: /(\.tar\.lzo|\.tzo|\.lzo)$/i, kind: 'lzop' },
  { pattern: /(\.tar\.Z|\.taZ|\.Z)$/, kind: 'compress' },
  { pattern: /(\.tar\.br|\.br)$/i, kind: 'brotli' },
  { pattern: /\.zip$/i, kind: 'zip' },
  { pattern: /\.7z$/i, kind: '7z' },
];

/** What a file name's suffix says: the suffix, its kind, and the compression if rootcast writes it. */
export interface NamedCompression {
  suffix: string;
  kind: string;
  compression?: Compression;
}

/** Pure: what the suffix of `name` says about its compression, if anything. */
export function compressionOfName(name: string): NamedCompression | undefined {
  for (const { pattern, kind, compression } of SUFFIXES) {
    const match = pattern.exec(name);
    if (match) return { suffix: match[0], kind, ...(compression ? { compression } : {}) };
  }
  return undefined;
}

/** Pure: how a message names a kind of file: "an uncompressed tarball", "a bzip2-compressed tarball". */
function describeKind(kind: string): string {
  if (kind === 'none') return 'an uncompressed tarball';
  if (kind === 'zip' || kind === '7z') return `a ${kind} archive`;
  return `a ${kind}-compressed tarball`;
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
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  if (kind === 'none') {
    yield* source;
    return;
  }
  if (kind === 'xz') {
    yield* xzChunks(source, level, signal);
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
        // A consumer that stopped (an abort) destroyed the transform: stop reading the source.
        if (transform.destroyed) return;
        if (!transform.write(chunk)) {
          await new Promise<void>((resolve, reject) => {
            const settle = () => {
              transform.off('drain', settle);
              transform.off('close', settle);
              transform.off('error', onError);
              resolve();
            };
            const onError = (e: unknown) => {
              transform.off('drain', settle);
              transform.off('close', settle);
              reject(e);
            };
            // 'close' too: a destroyed transform never drains.
            transform.once('drain', settle);
            transform.once('close', settle);
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

/**
 * xz in a child process (multi-threaded). xz holds a whole block before it writes, so a
 * consumer that stops only between output chunks could wait many seconds: an aborted
 * `signal` kills xz at once, stops feeding it, and fails with the signal's reason.
 */
async function* xzChunks(
  source: AsyncIterable<Buffer>,
  level: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  const child = spawn('xz', ['-T0', `-${level}`, '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const onAbort = () => child.kill('SIGKILL');
  signal?.addEventListener('abort', onAbort, { once: true });
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
        if (signal?.aborted || child.exitCode !== null || child.signalCode !== null) break;
        if (!child.stdin.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              child.stdin.off('drain', done);
              child.off('close', done);
              signal?.removeEventListener('abort', done);
              resolve();
            };
            child.stdin.once('drain', done);
            child.once('close', done);
            signal?.addEventListener('abort', done, { once: true });
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
    signal?.removeEventListener('abort', onAbort);
    if (!complete && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await feed;
  signal?.throwIfAborted();
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
 * else what the name's suffix says, else `fallback`. A suffix naming a compression the format
 * does not write is `EXPORT_COMPRESSION_UNSUPPORTED`, and a flag that contradicts the suffix
 * `EXPORT_COMPRESSION_MISMATCH` (both exit 2): `x.tar.gz` holding zstd would mislead every tool.
 * `note` ends the hint of the first (oci-archive: `--compression` is about its layers).
 */
export function tarballCompression(
  flag: Compression | undefined,
  fileName: string,
  allowed: readonly Compression[],
  fallback: Compression,
  format: string,
  note = '',
): Compression {
  const named = compressionOfName(fileName);
  const names = allowed.map((c) => TAR_SUFFIX[c]).join(', ');
  if (named !== undefined && (named.compression === undefined || !allowed.includes(named.compression))) {
    throw inputError(
      'EXPORT_COMPRESSION_UNSUPPORTED',
      `-o ${fileName}: the suffix ${named.suffix} means ${describeKind(named.kind)}, which --format ${format} does not write`,
      `End the file name with ${allowed.length === 1 ? names : `one of: ${names}`}.${note ? ` ${note}` : ''}`,
    );
  }
  if (flag !== undefined && named?.compression !== undefined && named.compression !== flag) {
    const stem = fileName.slice(0, fileName.length - named.suffix.length);
    throw inputError(
      'EXPORT_COMPRESSION_MISMATCH',
      `-o ${fileName}: the suffix ${named.suffix} means ${describeKind(named.kind)}, but --compression ${flag} asks for ${describeKind(flag)}`,
      `Name the file ${stem}${TAR_SUFFIX[flag]} for ${describeKind(flag)}, or drop --compression to write ${describeKind(named.kind)}.`,
    );
  }
  const chosen = flag ?? named?.compression ?? fallback;
  if (!allowed.includes(chosen)) {
    throw inputError(
      'EXPORT_COMPRESSION_UNSUPPORTED',
      `--format ${format} does not write ${describeKind(chosen)}`,
      `Use one of: ${allowed.join(', ')}.`,
    );
  }
  return chosen;
}

/** A buffer as a one-chunk stream, for `compressChunks`. */
export async function* oneChunk(buffer: Buffer): AsyncGenerator<Buffer> {
  yield buffer;
}

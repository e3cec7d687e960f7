import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { DecompressStream } from 'zstd-napi';
import { SHA256_PREFIX } from '../core/digest.js';
import { inputError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import type { BlobStore } from './blob-store.js';

/**
 * zstd compression of layers, off the main thread, straight into the blob store.
 *
 * `compressToBlob` streams tar bytes → zstd (in a worker thread, so archiving on the main
 * thread and compressing overlap) → a blob ingest, hashing the uncompressed stream (the layer's
 * diff_id, in the worker too) and the compressed one (its digest) on the way.
 *
 * Reproducibility: the same tar bytes give the same zstd bytes. The compressor uses a fixed
 * level and fixed frame parameters (checksum on, no content size, no dictionary) and always
 * runs in zstd's multithreaded mode, with one zstd thread per CPU: zstd cuts the input into
 * jobs of a fixed size (`JOB_SIZE`), and its documentation guarantees (and
 * `test/integration/store-compress.test.ts` checks) that the output is the same for any
 * `nbWorkers >= 1` — so a 2-core laptop and a 64-core server produce the same blob, and
 * compressing no longer bounds the commit on a machine with more than one core. (Single-
 * threaded mode, `nbWorkers = 0`, writes a different but equally valid frame; it is never
 * used, so digests never depend on the machine.) Every input chunk the worker sees also has
 * the same boundaries on every run (the tar writer emits fixed-size chunks; other sources
 * are re-chunked here). The zstd library is the one bundled with zstd-napi, so digests hold
 * across machines as long as that dependency's version does.
 *
 * Level: 3 by default. On a 434 MB tar of Debian binaries, libraries and docs (zstd 1.5,
 * one thread): level 1 → 44.8 % of the input at ~390 MB/s, 3 → 40.1 % at ~210 MB/s,
 * 6 → 38.3 % at ~95 MB/s, 9 → 36.5 % at ~63 MB/s, 19 → 32.2 % at ~2 MB/s; decompression runs
 * at ~1 GB/s for all. Level 3 keeps a 150 MB tree under a second; 9 saves a tenth of the bytes
 * for three times the time, worth it only for templates that travel often.
 */
export const DEFAULT_COMPRESSION_LEVEL = 3;
export const MAX_COMPRESSION_LEVEL = 19;
const CHUNK = 1 << 20;
/**
 * zstd's multithreaded job size, fixed (it shapes the output, so it is part of the format):
 * 4 MiB instead of level 3's default 8 MiB holds each zstd thread's buffers to a few MB
 * (~25 MB less at the peak of a commit with two threads) for 0.4 % more bytes.
 */
const JOB_SIZE = 4 << 20;
/** Chunks in flight to the worker: enough to keep it busy, bounded memory. */
const IN_FLIGHT = 4;

// Runs inside the worker as CommonJS: vitest runs src/*.ts and Node cannot start a worker
// from a .ts file, so the worker is a string and needs no build step.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const binding = require(workerData.bindingPath);
const cctx = new binding.CCtx();
cctx.setParameter(binding.CParameter.compressionLevel, workerData.level);
cctx.setParameter(binding.CParameter.checksumFlag, 1);
cctx.setParameter(binding.CParameter.contentSizeFlag, 0);
cctx.setParameter(binding.CParameter.nbWorkers, workerData.threads);
cctx.setParameter(binding.CParameter.jobSize, workerData.jobSize);
const OUT = binding.cStreamOutSize();
const diffId = createHash('sha256');
parentPort.on('message', (msg) => {
  const directive = msg.end ? binding.EndDirective.end : binding.EndDirective.continue;
  let input = msg.data;
  diffId.update(input);
  const parts = [];
  let total = 0;
  for (;;) {
    const out = new Uint8Array(OUT);
    const [remaining, produced, consumed] = cctx.compressStream2(out, input, directive);
    if (produced > 0) { parts.push(out.subarray(0, produced)); total += produced; }
    input = input.subarray(consumed);
    if (input.length === 0 && (!msg.end || remaining === 0)) break;
  }
  const result = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) { result.set(part, offset); offset += part.length; }
  parentPort.postMessage({ data: result, diffId: msg.end ? diffId.digest('hex') : undefined }, [result.buffer]);
});
`;

/** zstd's thread count: never 0 (single-threaded mode writes different bytes), at most 8. */
export function compressionThreads(requested: number | undefined): number {
  const threads = requested ?? availableParallelism();
  return Math.max(1, Math.min(8, Math.floor(threads)));
}

export function validateCompressionLevel(level: number): number {
  if (!Number.isInteger(level) || level < 1 || level > MAX_COMPRESSION_LEVEL) {
    throw inputError(
      'COMPRESSION_LEVEL_INVALID',
      `zstd level must be an integer from 1 to ${MAX_COMPRESSION_LEVEL}, got ${level}`,
      `Use a level from 1 to ${MAX_COMPRESSION_LEVEL} (default ${DEFAULT_COMPRESSION_LEVEL}).`,
    );
  }
  return level;
}

/** A zstd stream compressor in a worker thread. Replies come back in request order. */
class ZstdWorker {
  private readonly worker: Worker;
  private readonly waiting: Array<{ resolve: (r: WorkerReply) => void; reject: (e: unknown) => void }> = [];
  private failure: unknown;

  constructor(level: number, threads: number) {
    const bindingPath = createRequire(import.meta.url).resolve('zstd-napi/binding');
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { bindingPath, level, threads, jobSize: JOB_SIZE },
    });
    this.worker.on('message', ({ data, diffId }: { data: Uint8Array; diffId?: string }) => {
      this.waiting.shift()?.resolve({
        data: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
        ...(diffId ? { diffId } : {}),
      });
    });
    const fail = (error: unknown) => {
      this.failure ??= new RootcastError({
        code: 'COMPRESS_FAILED',
        message: `zstd compression failed: ${error instanceof Error ? error.message : String(error)}`,
        hint: 'Retry; if it persists, reinstall zstd-napi (`npm rebuild zstd-napi`).',
        cause: error,
      });
      for (const w of this.waiting.splice(0)) w.reject(this.failure);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`compression worker exited with code ${code}`)));
  }

  /**
   * Compresses `data` (`end`: and closes the frame); resolves to the bytes produced, and at
   * the end to the sha256 of everything sent. With `transfer`, a chunk that owns its whole
   * ArrayBuffer is moved to the worker instead of copied (it is unusable here afterwards).
   */
  send(data: Uint8Array, end: boolean, transfer: boolean): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    const movable =
      transfer &&
      data.byteOffset === 0 &&
      data.byteLength === data.buffer.byteLength &&
      data.buffer instanceof ArrayBuffer;
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.worker.postMessage({ data, end }, movable ? [data.buffer as ArrayBuffer] : []);
    });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

interface WorkerReply {
  data: Buffer;
  /** Hex sha256 of the whole uncompressed stream, with the reply to the last chunk. */
  diffId?: string;
}

/** Re-chunks any byte stream into `CHUNK`-sized pieces (the last shorter). */
async function* fixedChunks(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let size = 0;
  for await (const piece of source) {
    if (size === 0 && piece.length === CHUNK) {
      yield piece;
      continue;
    }
    let rest = piece;
    while (size + rest.length >= CHUNK) {
      const take = CHUNK - size;
      pending.push(rest.subarray(0, take));
      yield Buffer.concat(pending);
      rest = rest.subarray(take);
      pending = [];
      size = 0;
    }
    if (rest.length > 0) {
      pending.push(rest);
      size += rest.length;
    }
  }
  if (size > 0) yield Buffer.concat(pending);
}

export interface CompressedBlob {
  /** Digest and size of the compressed blob as stored. */
  digest: string;
  size: number;
  /** sha256 of the uncompressed stream, and its length. */
  diffId: string;
  uncompressedSize: number;
}

export interface CompressToBlobOptions {
  level?: number;
  /** zstd threads (at least 1; default one per CPU). The output does not depend on it. */
  threads?: number;
  reporter?: Reporter;
  /** Awaited once, after the first compressed bytes are in the ingest file (tests use it). */
  afterFirstWrite?: () => void | Promise<void>;
  /**
   * The source hands its chunks over: each is moved to the compression thread instead of
   * copied, so it must not be read or reused once yielded (`tarTree`'s chunks qualify).
   */
  transferChunks?: boolean;
}

/**
 * Compresses `source` into a new blob. On any failure the ingest is aborted: nothing becomes
 * visible unless every byte was compressed, written, fsynced and hashed.
 */
export async function compressToBlob(
  source: AsyncIterable<Uint8Array>,
  blobs: BlobStore,
  options: CompressToBlobOptions = {},
): Promise<CompressedBlob> {
  const level = validateCompressionLevel(options.level ?? DEFAULT_COMPRESSION_LEVEL);
  const task = options.reporter?.task('compressing layer', { unit: 'bytes' });
  // The diff_id is hashed in the worker, beside the compressor: this thread walks the tree.
  let uncompressedSize = 0;
  let diffId: string | undefined;
  const transfer = options.transferChunks ?? false;
  const worker = new ZstdWorker(level, compressionThreads(options.threads));
  const writer = await blobs.ingest();
  const inFlight: Array<Promise<WorkerReply>> = [];
  let first = true;
  const drainOne = async () => {
    const { data: out, diffId: hex } = await inFlight.shift()!;
    if (hex !== undefined) diffId = hex;
    if (out.length === 0) return;
    await writer.write(out);
    if (first) {
      first = false;
      await options.afterFirstWrite?.();
    }
  };
  try {
    for await (const chunk of fixedChunks(source)) {
      uncompressedSize += chunk.length;
      task?.advance(chunk.length);
      inFlight.push(worker.send(chunk, false, transfer));
      if (inFlight.length >= IN_FLIGHT) await drainOne();
    }
    inFlight.push(worker.send(new Uint8Array(0), true, false));
    while (inFlight.length > 0) await drainOne();
    if (diffId === undefined) throw new Error('the compression worker did not report the diff_id');
    const { digest, size } = await writer.commit();
    return { digest, size, diffId: SHA256_PREFIX + diffId, uncompressedSize };
  } catch (error) {
    // Settle what is still in flight so no rejection goes unhandled.
    await Promise.allSettled(inFlight);
    await writer.abort();
    throw error;
  } finally {
    task?.finish();
    await worker.close();
  }
}

/** A zstd-decompressing transform, for reading layers back. */
export function decompressStream(): Transform {
  return new DecompressStream();
}

import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
// The native binding is CommonJS with computed exports: only its default import works.
import zstdBinding from 'zstd-napi/binding.js';
import { storePaths } from '../../core/context.js';
import { sha256Hex } from '../../core/digest.js';
import type { Reporter } from '../../core/reporter.js';

/**
 * The store's cache of verified Packages indexes. Two kinds of file live under
 * `<store>/indexes/`, each named by a sha256 that a verified Release lists, and each
 * re-checked against that signed value every time it is read:
 *
 * - `sha256/<hex>`: a compressed index (`Packages.xz`, `.gz`) exactly as the mirror served
 *   it; `<hex>` is the sha256 of those bytes.
 * - `plain/sha256/<hex>.zst`: the decompressed index, stored zstd-compressed (level 1: it
 *   decompresses ~15 times faster than xz); `<hex>` is the sha256 of the *uncompressed*
 *   `Packages` file, which Debian's Release lists beside the compressed ones. Reading it
 *   back streams the decompressed bytes to the caller's parser while hashing them, and
 *   the parse counts only if the whole matches the signed size and hash, so a warm load
 *   never runs xz, never holds the whole text, and trusts nothing that does not match the
 *   signed Release.
 *
 * A file that fails its check is reported, deleted and treated as absent (the caller
 * fetches or recomputes it). Files are only written by the caller after a whole load
 * succeeded, atomically (`writeFileAtomic`); this module only reads, names and encodes.
 */
export interface SignedFile {
  /** Path inside the suite, as the Release lists it (`main/binary-amd64/Packages.xz`). */
  path: string;
  size: number;
  /** Lower-case hex sha256 from the verified Release. */
  sha256: string;
}

/** zstd level for decompressed indexes: level 1 compresses 50 MB in ~0.1 s, to ~24 %. */
const PLAIN_LEVEL = 1;

export function compressedIndexPath(store: string, entry: SignedFile): string {
  return join(storePaths.indexes(store), 'sha256', entry.sha256);
}

export function plainIndexPath(store: string, entry: SignedFile): string {
  return join(storePaths.indexes(store), 'plain', 'sha256', `${entry.sha256}.zst`);
}

/** The compressed index as served, if cached and still matching its signed size and hash. */
export async function readCompressedIndex(
  store: string,
  entry: SignedFile,
  reporter: Reporter,
): Promise<Buffer | undefined> {
  const path = compressedIndexPath(store, entry);
  const data = await readIfPresent(path);
  if (data === undefined) return undefined;
  if (data.length === entry.size && sha256Hex(data) === entry.sha256) {
    reporter.log('debug', `index ${entry.sha256} from cache`);
    return data;
  }
  return discardDamaged(path, reporter);
}

/** Takes an index's decompressed bytes in order; a chunk may be reused once `write` returns. */
export interface ChunkSink {
  write(chunk: Buffer): void;
}

/** Decompressed bytes are handed on in slices of this size. */
const CHUNK = 1 << 20;

/**
 * Streams the cached decompressed index to `sink` and returns true when it was cached and
 * its bytes match the signed size and hash of the plain `Packages` file. On false (absent,
 * damaged: the file is then deleted) whatever `sink` received must be thrown away. An error
 * `sink.write` throws stops the writes but not the check: it is rethrown only when the
 * bytes prove genuine (a damaged file is a cache miss, not a broken index). Decompression
 * stops at the signed size, so a damaged or hostile file cannot grow memory or time beyond
 * it.
 */
export async function readPlainIndex(
  store: string,
  entry: SignedFile,
  reporter: Reporter,
  sink: ChunkSink,
): Promise<boolean> {
  const path = plainIndexPath(store, entry);
  const data = await readIfPresent(path);
  if (data === undefined) return false;
  const hash = createHash('sha256');
  let total = 0;
  let failure: { error: unknown } | undefined;
  try {
    decompressZstd(data, entry.size, (chunk) => {
      total += chunk.length;
      hash.update(chunk);
      if (failure !== undefined) return;
      try {
        sink.write(chunk);
      } catch (error) {
        failure = { error };
      }
    });
  } catch {
    await discardDamaged(path, reporter);
    return false;
  }
  if (total !== entry.size || hash.digest('hex') !== entry.sha256) {
    await discardDamaged(path, reporter);
    return false;
  }
  if (failure !== undefined) throw failure.error;
  reporter.log('debug', `index ${entry.sha256} (decompressed) from cache`);
  return true;
}

/**
 * Decodes the zstd frames in `input`, handing on at most `limit` bytes (and one more,
 * to show the output is longer) in chunks of a reused buffer. Throws on corrupt or
 * truncated input.
 */
function decompressZstd(input: Buffer, limit: number, onChunk: (chunk: Buffer) => void): void {
  const dctx = new zstdBinding.DCtx();
  const out = Buffer.allocUnsafe(Math.min(CHUNK, limit + 1));
  let src = input;
  let produced = 0;
  let hint = 1;
  for (;;) {
    const [next, written, consumed] = dctx.decompressStream(out, src);
    src = src.subarray(consumed);
    // A call that moves nothing reports the start of a next frame, not this one's end.
    if (written > 0 || consumed > 0) hint = next;
    if (written > 0) {
      onChunk(out.subarray(0, written));
      produced += written;
      if (produced > limit) return;
    }
    // A full output buffer means the decoder may hold more even when no input is left.
    if (src.length === 0 && written < out.length) break;
    if (consumed === 0 && written === 0) break;
  }
  if (hint !== 0) throw new Error('truncated zstd frame');
}

/**
 * A decompressed index on its way to the cache: `write` it the bytes as they are decoded
 * (hashed and zstd-compressed as they pass, so the whole text is never held), then
 * `finish` gives the file to store at `plainIndexPath`, or undefined when the bytes do not
 * match the signed plain `Packages` file (nothing may then be cached under its name).
 */
export class PlainIndexCopy {
  readonly #entry: SignedFile;
  readonly #hash = createHash('sha256');
  readonly #cctx = new zstdBinding.CCtx();
  readonly #out = Buffer.allocUnsafe(zstdBinding.cStreamOutSize());
  readonly #parts: Buffer[] = [];
  #size = 0;

  constructor(entry: SignedFile) {
    this.#entry = entry;
    this.#cctx.setParameter(zstdBinding.CParameter.compressionLevel, PLAIN_LEVEL);
  }

  write(chunk: Buffer): void {
    this.#size += chunk.length;
    this.#hash.update(chunk);
    // Past the signed size the copy can only be discarded: stop spending work on it.
    if (this.#size <= this.#entry.size) this.#compress(chunk, zstdBinding.EndDirective.continue);
  }

  finish(): Buffer | undefined {
    if (this.#size !== this.#entry.size || this.#hash.digest('hex') !== this.#entry.sha256) return undefined;
    this.#compress(Buffer.alloc(0), zstdBinding.EndDirective.end);
    return Buffer.concat(this.#parts);
  }

  #compress(input: Buffer, op: zstdBinding.EndDirective): void {
    let src = input;
    for (;;) {
      const [remaining, written, consumed] = this.#cctx.compressStream2(this.#out, src, op);
      if (written > 0) this.#parts.push(Buffer.from(this.#out.subarray(0, written)));
      src = src.subarray(consumed);
      const done =
        op === zstdBinding.EndDirective.end
          ? remaining === 0
          : src.length === 0 && written < this.#out.length;
      if (done) return;
    }
  }
}

async function readIfPresent(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function discardDamaged(path: string, reporter: Reporter): Promise<undefined> {
  reporter.log('warn', `cached index ${path} is damaged; fetching or rebuilding it`);
  await rm(path, { force: true });
  return undefined;
}

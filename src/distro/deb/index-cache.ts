import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { compress } from 'zstd-napi';
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
 *   back decompresses into a buffer of exactly the signed size and hashes the result, so a
 *   warm load never runs xz and trusts nothing that does not match the signed Release.
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

/**
 * The decompressed index, if cached and matching the signed size and hash of the plain
 * `Packages` file. zstd writes into a buffer of the signed size, so a damaged or hostile
 * file can neither grow memory beyond it nor pass as a shorter text.
 */
export async function readPlainIndex(
  store: string,
  entry: SignedFile,
  reporter: Reporter,
): Promise<Buffer | undefined> {
  const path = plainIndexPath(store, entry);
  const data = await readIfPresent(path);
  if (data === undefined) return undefined;
  const plain = Buffer.allocUnsafe(entry.size);
  let written: number;
  try {
    written = zstdBinding.decompress(plain, data);
  } catch {
    return discardDamaged(path, reporter);
  }
  if (written === entry.size && sha256Hex(plain) === entry.sha256) {
    reporter.log('debug', `index ${entry.sha256} (decompressed) from cache`);
    return plain;
  }
  return discardDamaged(path, reporter);
}

/** The bytes to store at `plainIndexPath` for a decompressed index already verified. */
export function encodePlainIndex(plain: Uint8Array): Buffer {
  return compress(plain, { compressionLevel: PLAIN_LEVEL });
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

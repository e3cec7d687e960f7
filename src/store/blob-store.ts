import { chmod, type FileHandle, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fsyncDirectory } from '../core/atomic.js';
import { CountingHash, isSha256Hex, SHA256_PREFIX } from '../core/digest.js';
import { inputError, RootcastError } from '../core/errors.js';
import type { Descriptor } from './oci.js';
import { storeLayout, temporaryName } from './paths.js';

/**
 * The content store: blobs named by the sha256 of their bytes, in `<store>/blobs/sha256/<hex>`
 * (the OCI image layout's `blobs/`), after containerd's content store.
 *
 * Vocabulary: a *digest* is `sha256:<64 hex>`; a *blob* is the content it names; *ingest* is
 * the writing of a blob that is not yet visible; *commit* makes it visible.
 *
 * Lifecycle of a write:
 *
 * ```ts
 * const w = await blobs.ingest();          // a fresh file under <store>/ingest/, owned by this process
 * await w.write(chunk); …                  // hashed and counted as it is written
 * const info = await w.commit(digest, n);  // fsync, verify digest and size, rename into blobs/
 * // or, on any failure: await w.abort();  // removes the ingest file
 * ```
 *
 * Invariants:
 * - A blob path exists only with its complete, fsynced content: commit verifies, then renames.
 *   A process killed mid-write leaves only an `ingest/<pid>-<random>` file, which `cleanStore`
 *   removes once that pid is gone.
 * - Blobs are never modified, only created and deleted; committing content that is already
 *   present drops the new copy.
 * - Reads verify: `open` yields a stream that fails with `BLOB_CORRUPT` at its end if the bytes
 *   do not hash to the digest, and `read` never returns unverified bytes. A consumer of `open`
 *   must not make anything visible before the stream has ended without error.
 */
export interface BlobStore {
  /** The store's root directory (the OCI layout). */
  readonly root: string;
  has(digest: string): Promise<boolean>;
  /** Size of a present blob, or `undefined` when absent. Does not verify the content. */
  size(digest: string): Promise<number | undefined>;
  /** A stream of the blob's bytes that errors with `BLOB_CORRUPT` at the end on a mismatch. */
  open(digest: string): Promise<Readable>;
  /** The whole blob, verified. For small blobs: manifests, configs, locks. */
  read(digest: string): Promise<Buffer>;
  ingest(): Promise<BlobWriter>;
  /** Writes `bytes` as a blob (verified, deduplicated) and returns its OCI descriptor. */
  putBytes(bytes: Uint8Array, mediaType: string, annotations?: Record<string, string>): Promise<Descriptor>;
  /** Removes a blob; true if it was there. Callers own the question of whether it is referenced. */
  delete(digest: string): Promise<boolean>;
  /** Every digest present, in no particular order. */
  list(): Promise<string[]>;
}

/** A blob being written. Exactly one of `commit` or `abort` ends it; afterwards it is closed. */
export interface BlobWriter {
  /** Bytes written so far. */
  readonly size: number;
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Verifies the content against the expected digest and size when given, then makes the blob
   * visible. On a mismatch the ingest file is removed and `BLOB_DIGEST_MISMATCH` or
   * `BLOB_SIZE_MISMATCH` is thrown.
   */
  commit(expectedDigest?: string, expectedSize?: number): Promise<{ digest: string; size: number }>;
  abort(): Promise<void>;
}

/** Validates a digest string at the boundary; returns its hex. */
export function parseDigest(digest: string): string {
  const hex = digest.startsWith(SHA256_PREFIX) ? digest.slice(SHA256_PREFIX.length) : '';
  if (!isSha256Hex(hex)) {
    throw inputError(
      'DIGEST_INVALID',
      `not a sha256 digest: ${JSON.stringify(digest)}`,
      'Digests are written sha256:<64 lowercase hex digits>.',
    );
  }
  return hex;
}

function notFound(digest: string): RootcastError {
  return new RootcastError({
    code: 'BLOB_NOT_FOUND',
    message: `blob ${digest} is not in the store`,
    hint: 'The store is incomplete: run `rootcast fsck`, then rebuild or pull the template.',
    details: { digest },
  });
}

export function blobCorruptError(digest: string, actual: string): RootcastError {
  return new RootcastError({
    code: 'BLOB_CORRUPT',
    message: `blob ${digest} does not match its digest (its content hashes to ${actual})`,
    hint: 'The store was damaged on disk: run `rootcast fsck` to remove bad blobs, then rebuild or pull.',
    details: { digest, actual },
  });
}

class FileBlobWriter implements BlobWriter {
  private readonly hash = new CountingHash();
  private closed = false;

  constructor(
    private readonly store: string,
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  get size(): number {
    return this.hash.size;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.assertOpen();
    let offset = 0;
    while (offset < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, offset, chunk.length - offset);
      offset += bytesWritten;
    }
    this.hash.update(chunk);
  }

  async commit(expectedDigest?: string, expectedSize?: number): Promise<{ digest: string; size: number }> {
    this.assertOpen();
    this.closed = true;
    try {
      await this.handle.sync();
      await this.handle.close();
      const digest = SHA256_PREFIX + this.hash.hex();
      const size = this.hash.size;
      if (expectedDigest !== undefined && expectedDigest !== digest) {
        throw new RootcastError({
          code: 'BLOB_DIGEST_MISMATCH',
          message: `content written hashes to ${digest}, expected ${expectedDigest}`,
          hint: 'The source of the content changed or is damaged; fetch or build it again.',
          details: { expected: expectedDigest, actual: digest },
        });
      }
      if (expectedSize !== undefined && expectedSize !== size) {
        throw new RootcastError({
          code: 'BLOB_SIZE_MISMATCH',
          message: `content written is ${size} bytes, expected ${expectedSize}`,
          hint: 'The source of the content changed or is damaged; fetch or build it again.',
          details: { expected: expectedSize, actual: size },
        });
      }
      const destination = storeLayout.blob(this.store, digest);
      if (await exists(destination)) {
        await rm(this.path, { force: true });
      } else {
        await chmod(this.path, 0o444);
        await mkdir(storeLayout.blobs(this.store), { recursive: true });
        await rename(this.path, destination);
        await fsyncDirectory(storeLayout.blobs(this.store));
      }
      return { digest, size };
    } catch (error) {
      await this.handle.close().catch(() => {});
      await rm(this.path, { force: true });
      throw error;
    }
  }

  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close().catch(() => {});
    await rm(this.path, { force: true });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('BlobWriter used after commit or abort');
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

class FileBlobStore implements BlobStore {
  constructor(readonly root: string) {}

  async has(digest: string): Promise<boolean> {
    parseDigest(digest);
    return await exists(storeLayout.blob(this.root, digest));
  }

  async size(digest: string): Promise<number | undefined> {
    parseDigest(digest);
    try {
      return (await stat(storeLayout.blob(this.root, digest))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async open(digest: string): Promise<Readable> {
    parseDigest(digest);
    const path = storeLayout.blob(this.root, digest);
    // Open before returning so a missing blob fails here, not in the middle of a pipeline.
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(digest);
      throw error;
    }
    async function* verified(): AsyncGenerator<Buffer> {
      const hash = new CountingHash();
      try {
        for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 1 << 20 })) {
          hash.update(chunk as Buffer);
          yield chunk as Buffer;
        }
      } finally {
        await handle.close().catch(() => {});
      }
      const actual = SHA256_PREFIX + hash.hex();
      if (actual !== digest) throw blobCorruptError(digest, actual);
    }
    return Readable.from(verified(), { objectMode: false });
  }

  async read(digest: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.open(digest)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async ingest(): Promise<BlobWriter> {
    const dir = storeLayout.ingest(this.root);
    await mkdir(dir, { recursive: true });
    const path = join(dir, temporaryName());
    const handle = await open(path, 'wx', 0o644);
    return new FileBlobWriter(this.root, path, handle);
  }

  async putBytes(
    bytes: Uint8Array,
    mediaType: string,
    annotations?: Record<string, string>,
  ): Promise<Descriptor> {
    const writer = await this.ingest();
    try {
      await writer.write(bytes);
    } catch (error) {
      await writer.abort();
      throw error;
    }
    const { digest, size } = await writer.commit(undefined, bytes.length);
    return { mediaType, digest, size, ...(annotations ? { annotations } : {}) };
  }

  async delete(digest: string): Promise<boolean> {
    parseDigest(digest);
    const path = storeLayout.blob(this.root, digest);
    if (!(await exists(path))) return false;
    await rm(path, { force: true });
    return true;
  }

  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(storeLayout.blobs(this.root));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names.filter(isSha256Hex).map((hex) => SHA256_PREFIX + hex);
  }
}

/** The blob store of the OCI layout at `store`. Creates nothing until something is written. */
export function openBlobStore(store: string): BlobStore {
  return new FileBlobStore(store);
}

import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/core/digest.js';
import { type BlobStore, openBlobStore } from '../../src/store/blob-store.js';
import { storeLayout } from '../../src/store/paths.js';

describe('blob store', () => {
  let store: string;
  let blobs: BlobStore;
  beforeEach(async () => {
    store = await mkdtemp(join(tmpdir(), 'rootcast-'));
    blobs = openBlobStore(store);
  });
  afterEach(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it('ingests, verifies on commit, and serves verified bytes', async () => {
    const writer = await blobs.ingest();
    await writer.write(Buffer.from('hello '));
    await writer.write(Buffer.from('world'));
    expect(writer.size).toBe(11);
    const digest = sha256Digest('hello world');
    expect(await writer.commit(digest, 11)).toEqual({ digest, size: 11 });
    expect(await blobs.has(digest)).toBe(true);
    expect(await blobs.size(digest)).toBe(11);
    expect((await blobs.read(digest)).toString()).toBe('hello world');
    expect(await blobs.list()).toEqual([digest]);
    expect(await readdir(storeLayout.ingest(store))).toEqual([]);
  });

  it('refuses content that does not match the expected digest or size, leaving nothing behind', async () => {
    const writer = await blobs.ingest();
    await writer.write(Buffer.from('evil'));
    await expect(writer.commit(sha256Digest('good'))).rejects.toMatchObject({ code: 'BLOB_DIGEST_MISMATCH' });
    const sized = await blobs.ingest();
    await sized.write(Buffer.from('four'));
    await expect(sized.commit(undefined, 5)).rejects.toMatchObject({ code: 'BLOB_SIZE_MISMATCH' });
    expect(await blobs.list()).toEqual([]);
    expect(await readdir(storeLayout.ingest(store))).toEqual([]);
  });

  it('abort removes the ingest file; a closed writer cannot be reused', async () => {
    const writer = await blobs.ingest();
    await writer.write(Buffer.from('partial'));
    expect(await readdir(storeLayout.ingest(store))).toHaveLength(1);
    await writer.abort();
    expect(await readdir(storeLayout.ingest(store))).toEqual([]);
    await expect(writer.write(Buffer.from('x'))).rejects.toThrow(/after commit or abort/);
  });

  it('deduplicates and describes blobs with putBytes', async () => {
    const one = await blobs.putBytes(Buffer.from('{}'), 'application/json', { a: 'b' });
    const two = await blobs.putBytes(Buffer.from('{}'), 'application/json');
    expect(one).toEqual({
      mediaType: 'application/json',
      digest: sha256Digest('{}'),
      size: 2,
      annotations: { a: 'b' },
    });
    expect(two.digest).toBe(one.digest);
    expect(await blobs.list()).toEqual([one.digest]);
  });

  it('detects a blob corrupted on disk when it is read back', async () => {
    const { digest } = await blobs.putBytes(Buffer.from('original content'), 'text/plain');
    const path = storeLayout.blob(store, digest);
    await chmod(path, 0o644);
    await writeFile(path, 'tampered content');
    await expect(blobs.read(digest)).rejects.toMatchObject({ code: 'BLOB_CORRUPT' });
    const stream = await blobs.open(digest);
    await expect(async () => {
      for await (const _ of stream) {
        // consume
      }
    }).rejects.toMatchObject({ code: 'BLOB_CORRUPT' });
    // A truncated blob is corrupt too.
    await writeFile(path, '');
    await expect(blobs.read(digest)).rejects.toMatchObject({ code: 'BLOB_CORRUPT' });
  });

  it('reports missing blobs and invalid digests with their codes', async () => {
    const missing = sha256Digest('nothing');
    await expect(blobs.open(missing)).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND' });
    expect(await blobs.has(missing)).toBe(false);
    expect(await blobs.size(missing)).toBeUndefined();
    await expect(blobs.has('sha256:xyz')).rejects.toMatchObject({ code: 'DIGEST_INVALID', exitCode: 2 });
  });

  it('deletes blobs and makes committed ones read-only', async () => {
    const { digest } = await blobs.putBytes(Buffer.from('x'), 'text/plain');
    await expect(readFile(storeLayout.blob(store, digest), 'utf8')).resolves.toBe('x');
    expect((await stat(storeLayout.blob(store, digest))).mode & 0o777).toBe(0o444);
    expect(await blobs.delete(digest)).toBe(true);
    expect(await blobs.delete(digest)).toBe(false);
    expect(await blobs.has(digest)).toBe(false);
  });
});

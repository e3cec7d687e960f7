import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decompress } from 'zstd-napi';
import { openBlobStore } from '../../src/store/blob-store.js';
import { compressionThreads, compressToBlob } from '../../src/store/compress.js';

/**
 * ~24 MB of compressible, non-repeating bytes: large enough that zstd's multithreaded mode
 * cuts it into several jobs (so the thread count could matter if zstd's guarantee did not
 * hold), cheap to make, the same on every run.
 */
function sampleInput(): Buffer {
  const words = ['usr', 'lib', 'share', 'doc', 'bin', 'x86_64-linux-gnu', 'locale', 'man', 'perl'];
  const parts: Buffer[] = [];
  let state = 12345;
  let size = 0;
  while (size < 24 * 1024 * 1024) {
    const line: string[] = [];
    for (let i = 0; i < 12; i++) {
      state = (state * 1103515245 + 12345) % 2147483648;
      line.push(`${words[state % words.length]}${state % 997}`);
    }
    const bytes = Buffer.from(`${line.join('/')}\n`);
    parts.push(bytes);
    size += bytes.length;
  }
  return Buffer.concat(parts);
}

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

describe('compressToBlob', () => {
  let dir: string;
  let input: Buffer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    input = sampleInput();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the same bytes whatever the thread count and input chunking', async () => {
    const results = [];
    for (const [threads, chunk] of [
      [1, 1 << 20],
      [2, 1 << 20],
      [4, 65_536],
      [3, 333_333],
    ] as const) {
      const blobs = openBlobStore(join(dir, `store-${threads}`));
      results.push(await compressToBlob(chunks(input, chunk), blobs, { level: 3, threads }));
    }
    const first = results[0]!;
    expect(first.diffId).toBe(`sha256:${createHash('sha256').update(input).digest('hex')}`);
    expect(first.uncompressedSize).toBe(input.length);
    expect(first.size).toBeLessThan(input.length / 2);
    for (const other of results.slice(1)) expect(other).toEqual(first);
    const blob = await openBlobStore(join(dir, 'store-1')).read(first.digest);
    expect(decompress(blob).equals(input)).toBe(true);
  });

  it('never asks zstd for its single-threaded mode, whose bytes differ', () => {
    expect(compressionThreads(0)).toBe(1);
    expect(compressionThreads(undefined)).toBeGreaterThanOrEqual(1);
    expect(compressionThreads(64)).toBe(8);
  });
});

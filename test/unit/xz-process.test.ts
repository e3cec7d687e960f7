import { execFileSync } from 'node:child_process';
import { xz } from '@napi-rs/lzma';
import { describe, expect, it } from 'vitest';
import { decodeInXzProcess } from '../../src/distro/deb/xz-process.js';

function pattern(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = 97 + (((i * 2654435761) >>> 28) % 26);
  return out;
}

/** The `xz` process decoder used for large indexes: same bytes, errors kept apart. */
describe('decodeInXzProcess', () => {
  it('hands on exactly the decoded bytes, in order', async () => {
    const data = pattern(3 * 1024 * 1024 + 17);
    const parts: Buffer[] = [];
    expect(await decodeInXzProcess(await xz.compress(data), (c) => parts.push(Buffer.from(c)))).toBe(true);
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  });

  it('rethrows the consumer error as it is, and fails on damaged input', async () => {
    const packed = await xz.compress(pattern(2 * 1024 * 1024));
    const stop = new Error('parser stopped');
    await expect(
      decodeInXzProcess(packed, () => {
        throw stop;
      }),
    ).rejects.toBe(stop);
    // xz's own format carries a CRC64 of the data (the library above writes none), so xz
    // itself must notice the damage; rootcast also checks the decoded index's signed hash.
    const checked = execFileSync('xz', ['-c', '--check=crc64'], { input: pattern(2 * 1024 * 1024) });
    const damaged = Buffer.from(checked);
    damaged[damaged.length >> 1] = damaged[damaged.length >> 1]! ^ 0xff;
    await expect(decodeInXzProcess(damaged, () => {})).rejects.toThrow(/xz exited/);
  });

  it('says so when there is no xz to run', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      expect(await decodeInXzProcess(Buffer.from('x'), () => {})).toBe(false);
    } finally {
      process.env.PATH = path;
    }
  });
});

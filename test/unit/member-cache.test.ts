import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compress } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import { MemberCacheWriter, memberCachePath, readMemberCache } from '../../src/assemble/member-cache.js';
import { decompressMember } from '../../src/distro/deb/deb-archive.js';

function pattern(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 2654435761) >>> 27;
  return out;
}

function readAll(path: string): Buffer | undefined {
  const parts: Buffer[] = [];
  return readMemberCache(path, (c) => parts.push(Buffer.from(c))) ? Buffer.concat(parts) : undefined;
}

describe('member cache', () => {
  let dir: string;
  const hex = 'a'.repeat(64);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-members-'));
    await mkdir(join(dir, 'packages', 'sha256'), { recursive: true });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names copies only for packages inside a package cache', () => {
    expect(memberCachePath(join(dir, 'packages', 'sha256', hex))).toBe(
      join(dir, 'packages', 'members', `${hex}.tar.zst`),
    );
    expect(memberCachePath(join(dir, 'hello_1.0_amd64.deb'))).toBeUndefined();
  });

  it('round-trips, also when the data is an exact multiple of the decoder output size', () => {
    const path = memberCachePath(join(dir, 'packages', 'sha256', hex))!;
    for (const size of [0, 1, zstdBinding.dStreamOutSize() * 5, (1 << 20) * 2 + 7]) {
      const data = pattern(size);
      const writer = new MemberCacheWriter(path);
      writer.write(data.subarray(0, size >> 1));
      writer.write(data.subarray(size >> 1));
      writer.commit();
      expect(readAll(path)?.equals(data)).toBe(true);
    }
  });

  it('leaves nothing on abort, and says there is no copy', async () => {
    const path = join(dir, 'packages', 'members', `${'b'.repeat(64)}.tar.zst`);
    const writer = new MemberCacheWriter(path);
    writer.write(pattern(1000));
    writer.abort();
    expect(readAll(path)).toBeUndefined();
    expect((await readdir(join(dir, 'packages', 'members'))).filter((n) => n.startsWith('.tmp-'))).toEqual(
      [],
    );
  });

  it('detects a damaged or truncated copy', async () => {
    const path = join(dir, 'packages', 'members', `${'c'.repeat(64)}.tar.zst`);
    const writer = new MemberCacheWriter(path);
    writer.write(pattern(300_000));
    writer.commit();
    const bytes = await readFile(path);
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 2] = flipped[bytes.length - 2]! ^ 0xff;
    await writeFile(path, flipped);
    expect(() => readAll(path)).toThrow();
    await writeFile(path, bytes.subarray(0, bytes.length - 10));
    expect(() => readAll(path)).toThrow();
  });

  it('a .deb zstd member of exactly 1 MiB decodes (no false "truncated")', () => {
    const data = pattern(1 << 20);
    const member = {
      name: 'data.tar.zst',
      compression: 'zstd' as const,
      bytes: compress(data),
    };
    const parts: Buffer[] = [];
    decompressMember(member, 'test.deb', (c) => parts.push(Buffer.from(c)));
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  });
});

import { execFileSync } from 'node:child_process';
import { lstat, lutimes, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/digest.js';
import type { LogLevel, Reporter } from '../../src/core/reporter.js';
import { CHUNK_SIZE, tarTree } from '../../src/store/tar-writer.js';
import {
  buildFixtureTree,
  CAPABILITY,
  FIXTURE_EPOCH,
  LONG_DIR,
  LONG_TARGET,
  OLD_MTIME,
} from './store-fixtures.js';

async function tarBytes(root: string, options: Partial<Parameters<typeof tarTree>[1]> = {}) {
  const { stream, stats } = tarTree(root, { sourceDateEpoch: FIXTURE_EPOCH, ...options });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return { bytes: Buffer.concat(chunks), chunks, stats };
}

function gnuList(archive: string): string {
  return execFileSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-tvvf', archive], {
    encoding: 'utf8',
    env: { ...process.env, TZ: 'UTC', LC_ALL: 'C.UTF-8' },
  });
}

describe('deterministic tar of a tree', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the same bytes for the same tree, and for the tree built in another order', async () => {
    await buildFixtureTree(join(dir, 'one'), 'forward');
    await buildFixtureTree(join(dir, 'two'), 'reverse');
    const first = await tarBytes(join(dir, 'one'));
    const again = await tarBytes(join(dir, 'one'));
    const other = await tarBytes(join(dir, 'two'));
    expect(sha256Hex(again.bytes)).toBe(sha256Hex(first.bytes));
    expect(sha256Hex(other.bytes)).toBe(sha256Hex(first.bytes));
    // Fixed chunking: every chunk but the last is exactly CHUNK_SIZE.
    expect(first.chunks.slice(0, -1).every((c) => c.length === CHUNK_SIZE)).toBe(true);
    expect(first.bytes.length % 512).toBe(0);
  });

  it('writes what GNU tar reads back: modes, owners, links, devices, fifo, xattrs, clamped mtimes', async () => {
    const root = join(dir, 'tree');
    await buildFixtureTree(root);
    const { bytes, stats } = await tarBytes(root);
    const archive = join(dir, 'out.tar');
    await writeFile(archive, bytes);
    const listing = gnuList(archive);
    const line = (path: string) =>
      listing.split('\n').find((l) => l.endsWith(` ${path}`) || l.includes(` ${path} `));
    expect(line('bin/su')).toMatch(/^-rwsr-xr-x\*?\s+0\/0 /);
    expect(line('bin/wall')).toMatch(/^-rwxr-sr-x\*?\s+0\/0 /);
    expect(line('tmp/')).toMatch(/^drwxrwxrwt\*?\s+0\/0 /);
    expect(line('etc/owned')).toMatch(/^-rw-r--r--\*?\s+1000\/1001 /);
    expect(line('bin/sh')).toMatch(/^lrwxrwxrwx\*?\s+0\/0 .* bin\/sh -> dash$/);
    expect(listing).toContain(`usr/share/long-link -> ${LONG_TARGET}`);
    expect(listing).toContain(`${LONG_DIR}/file-with-a-long-path`);
    expect(line('run/initctl')).toMatch(/^prw-------\*?\s+0\/0 /);
    expect(line('dev/null')).toMatch(/^crw-rw-rw-\*?\s+0\/0 +1,3 /);
    expect(line('dev/loop0')).toMatch(/^brw-rw----\*?\s+0\/0 +7,0 /);
    expect(line('dev/wide')).toMatch(/^crw-------\*?\s+0\/0 +511,300000 /);
    // Hardlinks point at the first name in walk order (bin/ sorts before usr/).
    expect(listing).toMatch(/usr\/bin\/perl link to bin\/perl-link/);
    expect(listing).toMatch(/usr\/bin\/perl5\.36 link to bin\/perl-link/);
    expect(listing).toContain('etc/café');
    // Walk order: a/ and its contents before a-c; the root has no entry.
    expect(listing.indexOf(' a/b/c')).toBeLessThan(listing.indexOf(' a-c'));
    expect(listing).not.toMatch(/ \.\/?$/m);
    // mtimes: older ones kept, newer ones clamped to the epoch.
    expect(line('etc/hostname')).toContain(
      new Date(OLD_MTIME * 1000).toISOString().slice(0, 16).replace('T', ' '),
    );
    expect(line('etc/new')).toContain(
      new Date(FIXTURE_EPOCH * 1000).toISOString().slice(0, 16).replace('T', ' '),
    );
    expect(listing).toMatch(/x: +\d+ security\.capability/);
    expect(listing).toMatch(/x: +5 user\.comment/);
    expect(listing).toMatch(/x: +12 trusted\.note/);
    expect(stats.entries).toBe(
      listing
        .trim()
        .split('\n')
        .filter((l) => /^[-dlcbph]/.test(l)).length,
    );
    expect(stats.contentBytes).toBeGreaterThan(3 * 1024 * 1024);
  });

  it('round-trips: GNU tar extracts it and the extracted tree archives to the same bytes', async () => {
    const root = join(dir, 'tree');
    await buildFixtureTree(root);
    const { bytes } = await tarBytes(root);
    const archive = join(dir, 'out.tar');
    await writeFile(archive, bytes);
    const copy = join(dir, 'copy');
    await mkdir(copy);
    execFileSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-xpf', archive, '-C', copy]);
    const cap = execFileSync(
      'getfattr',
      ['--absolute-names', '-n', 'security.capability', '-e', 'hex', join(copy, 'bin/ping')],
      {
        encoding: 'utf8',
      },
    );
    expect(cap).toContain(CAPABILITY.toString('hex'));
    // tar sets directory mtimes as it leaves them; the root's own metadata is not archived.
    await utimes(copy, OLD_MTIME, OLD_MTIME);
    const again = await tarBytes(copy);
    expect(sha256Hex(again.bytes)).toBe(sha256Hex(bytes));
  });

  it('reads xattrs the same through the native addon and through getfattr', async () => {
    const root = join(dir, 'tree');
    await buildFixtureTree(root);
    const native = await tarBytes(root, { xattrSource: 'native' });
    const getfattr = await tarBytes(root, { xattrSource: 'getfattr' });
    expect(native.stats.xattrSource).toBe('native');
    expect(getfattr.stats.xattrSource).toBe('getfattr');
    expect(sha256Hex(getfattr.bytes)).toBe(sha256Hex(native.bytes));
  });

  it('changes when metadata changes (the comparison is not vacuous)', async () => {
    const root = join(dir, 'tree');
    await buildFixtureTree(root);
    const before = await tarBytes(root);
    execFileSync('chmod', ['0700', join(root, 'etc/hostname')]);
    const after = await tarBytes(root);
    expect(sha256Hex(after.bytes)).not.toBe(sha256Hex(before.bytes));
  });

  it('clamps the tree on disk while archiving it, when asked, to what the tar says', async () => {
    const root = join(dir, 'clamped');
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc', 'new'), 'new\n');
    await writeFile(join(root, 'etc', 'old'), 'old\n');
    await symlink('/nowhere', join(root, 'etc', 'link'));
    const future = FIXTURE_EPOCH + 86_400;
    await utimes(join(root, 'etc', 'new'), future, future);
    await utimes(join(root, 'etc', 'old'), OLD_MTIME, OLD_MTIME);
    await lutimes(join(root, 'etc', 'link'), future, future);
    await utimes(join(root, 'etc'), future, future);
    await utimes(root, future, future);
    const plain = await tarBytes(root);
    // Without the option the tree is left alone.
    expect((await lstat(join(root, 'etc', 'new'))).mtimeMs / 1000).toBe(future);
    const clamped = await tarBytes(root, { clampOnDisk: true });
    expect(clamped.bytes.equals(plain.bytes)).toBe(true);
    const seconds = async (path: string) => Math.floor((await lstat(path)).mtimeMs / 1000);
    expect(await seconds(join(root, 'etc', 'new'))).toBe(FIXTURE_EPOCH);
    expect(await seconds(join(root, 'etc', 'link'))).toBe(FIXTURE_EPOCH);
    expect(await seconds(join(root, 'etc'))).toBe(FIXTURE_EPOCH);
    expect(await seconds(root)).toBe(FIXTURE_EPOCH);
    expect(await seconds(join(root, 'etc', 'old'))).toBe(OLD_MTIME);
  });

  it('skips sockets with a warning', async () => {
    const root = join(dir, 'tree');
    await mkdir(join(root, 'run'), { recursive: true });
    await writeFile(join(root, 'run/file'), 'x');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(join(root, 'run/sock'), resolve));
    try {
      const warnings: string[] = [];
      const reporter: Reporter = {
        log: (level: LogLevel, message: string) => {
          if (level === 'warn') warnings.push(message);
        },
        task: () => ({ advance() {}, setTotal() {}, finish() {} }),
      };
      const { bytes, stats } = await tarBytes(root, { reporter });
      expect(stats.skipped).toEqual(['run/sock']);
      expect(warnings.join('\n')).toContain('run/sock');
      await writeFile(join(dir, 'out.tar'), bytes);
      expect(gnuList(join(dir, 'out.tar'))).not.toContain('sock');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('rejects a bad SOURCE_DATE_EPOCH and a missing tree', async () => {
    expect(() => tarTree(dir, { sourceDateEpoch: -1 })).toThrow(
      expect.objectContaining({ code: 'SOURCE_DATE_EPOCH_INVALID' }),
    );
    await expect(tarBytes(join(dir, 'missing'))).rejects.toMatchObject({ code: 'TAR_READ_FAILED' });
  });
});

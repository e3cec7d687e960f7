import { chmodSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  memberCachePath,
  type PendingMemberCache,
  readMemberCache,
} from '../../src/assemble/member-cache.js';
import { MemberCacheCompressor } from '../../src/assemble/member-cache-compressor.js';
import { nativeCalls } from '../../src/assemble/native.js';
import type { PackageFile } from '../../src/assemble/types.js';
import { mergedUsrDirectories, setupMergedUsr, unpackPackages } from '../../src/assemble/unpack.js';
import { sha256Hex } from '../../src/core/digest.js';
import { isRootcastError, RootcastError } from '../../src/core/errors.js';
import {
  type Compression,
  type DebSpec,
  type ReferenceEntry,
  referenceListing,
  writeDeb,
} from '../helpers/deb-builder.js';
import { compareTree } from '../helpers/tree-compare.js';

/**
 * Packages built by the test, unpacked for real and compared with dpkg-deb's view of them
 * (read by node-tar): every member type, every compression, merged-/usr, packages sharing
 * directories and files, and the control data handed to the dpkg database writer.
 */
const everything: DebSpec['entries'] = [
  { path: './', type: 'dir', mtime: 1_600_000_000 },
  { path: './bin/', type: 'dir' },
  { path: './bin/sh', type: 'file', mode: 0o755, data: '#!shell\n' },
  { path: './usr/', type: 'dir' },
  { path: './usr/bin/', type: 'dir', mtime: 1_650_000_000 },
  { path: './usr/bin/passwd', type: 'file', mode: 0o4755, data: 'setuid' },
  { path: './usr/bin/wall', type: 'file', mode: 0o2755, gid: 5, data: 'setgid' },
  { path: './usr/bin/hard', type: 'hardlink', linkpath: './usr/bin/passwd' },
  {
    path: './usr/bin/abs',
    type: 'symlink',
    linkpath: '/etc/alternatives/abs',
    // trusted.* is what a layer would carry; user.* cannot exist on a link and is dropped.
    xattrs: { 'trusted.rootcast': 'link', 'user.dropped': 'x' },
  },
  { path: './usr/bin/rel', type: 'symlink', linkpath: '../lib/x', mtime: 1_500_000_000 },
  { path: './var/', type: 'dir' },
  { path: './var/mail/', type: 'dir', mode: 0o2775, gid: 8 },
  { path: './var/tmp/', type: 'dir', mode: 0o1777 },
  { path: './home/', type: 'dir' },
  { path: './home/user/', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
  { path: './home/user/file', type: 'file', mode: 0o600, uid: 1000, gid: 1000, data: 'mine' },
  { path: './dev/', type: 'dir' },
  { path: './dev/null', type: 'chardev', mode: 0o666, devmajor: 1, devminor: 3 },
  { path: './dev/loop0', type: 'blockdev', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 },
  { path: './run/', type: 'dir' },
  { path: './run/initctl', type: 'fifo', mode: 0o600 },
  { path: `./usr/share/${'long-name/'.repeat(12)}file`, type: 'file', data: 'long' },
  { path: './usr/bin/ping', type: 'file', mode: 0o755, data: 'ping', xattrs: { 'user.rootcast': 'caps' } },
  { path: './lib64/', type: 'dir' },
  { path: './lib64/ld.so', type: 'file', mode: 0o755, data: 'loader' },
];

describe('unpackPackages', () => {
  let dir: string;
  let root: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-unpack-'));
    root = join(dir, 'root');
    await mkdir(root);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function listings(packages: PackageFile[]): Promise<{ name: string; entries: ReferenceEntry[] }[]> {
    const out = [];
    for (const pkg of packages) out.push({ name: pkg.name, entries: await referenceListing(pkg.file) });
    return out;
  }

  it('unpacks every member type faithfully, through merged-/usr, for every compression', async () => {
    const combos: [Compression, Compression][] = [
      ['xz', 'xz'],
      ['gzip', 'zstd'],
      ['zstd', 'gzip'],
      ['none', 'none'],
    ];
    const packages: PackageFile[] = [];
    for (const [index, [controlCompression, dataCompression]] of combos.entries()) {
      const prefix = `./opt/p${index}`;
      packages.push(
        await writeDeb(dir, {
          name: `pkg-${index}`,
          controlCompression,
          dataCompression,
          longNames: index % 2 === 0 ? 'pax' : 'gnu',
          entries:
            index === 0
              ? everything
              : [
                  { path: './opt/', type: 'dir' },
                  { path: `${prefix}/`, type: 'dir', mode: 0o750 },
                  { path: `${prefix}/data`, type: 'file', data: Buffer.alloc(3_000_000 + index, index) },
                ],
        }),
      );
    }
    setupMergedUsr(root, 'bookworm', 'amd64');
    const unpacked = await unpackPackages(packages, root, { concurrency: 2 });
    const merged = mergedUsrDirectories('bookworm', 'amd64');
    expect(compareTree(root, await listings(packages), merged)).toEqual([]);

    expect(readlinkSync(join(root, 'bin'))).toBe('usr/bin');
    expect(readFileSync(join(root, 'usr/bin/sh'), 'utf8')).toBe('#!shell\n');
    expect(readFileSync(join(root, 'usr/lib64/ld.so'), 'utf8')).toBe('loader');
    expect(nativeCalls().lgetxattr(join(root, 'usr/bin/ping'), 'user.rootcast').toString()).toBe('caps');
    expect(nativeCalls().lgetxattr(join(root, 'usr/bin/abs'), 'trusted.rootcast').toString()).toBe('link');
    expect(nativeCalls().llistxattr(join(root, 'usr/bin/abs'))).toEqual(['trusted.rootcast']);
    expect(unpacked[0]?.paths.slice(0, 4)).toEqual(['/.', '/bin', '/bin/sh', '/usr']);
    expect(unpacked.map((p) => p.name)).toEqual(['pkg-0', 'pkg-1', 'pkg-2', 'pkg-3']);
  });

  it('catches a tree that differs from the packages (the comparison can fail)', async () => {
    const pkg = await writeDeb(dir, { name: 'one', entries: everything.slice(0, 6) });
    setupMergedUsr(root, 'bookworm', 'amd64');
    await unpackPackages([pkg], root, {});
    chmodSync(join(root, 'usr/bin/passwd'), 0o755);
    await writeFile(join(root, 'usr/bin/sh'), '#!other\n');
    await utimes(join(root, 'usr/bin/sh'), 1_700_000_000, 1_700_000_000);
    expect(compareTree(root, await listings([pkg]), ['bin', 'lib', 'lib64', 'sbin'])).toEqual([
      'one: ./bin/sh: content differs',
      'one: ./usr/bin/passwd: mode 755, expected 4755',
    ]);
  });

  it('settles shared directories and files in lock order, whatever the concurrency', async () => {
    const specs: DebSpec[] = [
      {
        name: 'first',
        entries: [
          { path: './etc/', type: 'dir', mode: 0o750, mtime: 1_111_111_111 },
          { path: './etc/shared', type: 'file', data: 'first' },
          { path: './etc/link', type: 'symlink', linkpath: 'first' },
        ],
      },
      ...Array.from(
        { length: 6 },
        (_, i): DebSpec => ({
          name: `filler-${i}`,
          entries: [
            { path: './etc/', type: 'dir', mode: 0o755 },
            { path: `./etc/filler-${i}`, type: 'file', data: Buffer.alloc(200_000, i) },
          ],
        }),
      ),
      {
        name: 'last',
        entries: [
          { path: './etc/', type: 'dir', mode: 0o700, mtime: 1_222_222_222 },
          { path: './etc/shared', type: 'file', data: 'last' },
          { path: './etc/link', type: 'symlink', linkpath: 'last' },
        ],
      },
    ];
    for (const concurrency of [1, 4]) {
      const tree = join(dir, `tree-${concurrency}`);
      await mkdir(tree);
      const packages: PackageFile[] = [];
      for (const spec of specs) packages.push(await writeDeb(dir, spec));
      await unpackPackages(packages, tree, { concurrency });
      expect(readFileSync(join(tree, 'etc/shared'), 'utf8')).toBe('last');
      expect(readlinkSync(join(tree, 'etc/link'))).toBe('last');
      const etc = lstatSync(join(tree, 'etc'));
      expect(etc.mode & 0o7777).toBe(0o750);
      expect(Math.floor(etc.mtimeMs / 1000)).toBe(1_111_111_111);
      expect(compareTree(tree, await listings(packages), [])).toEqual([]);
    }
  });

  it('returns the control member and the .list paths', async () => {
    const pkg = await writeDeb(dir, {
      name: 'ctl',
      version: '2:1.0-3',
      arch: 'all',
      multiArch: 'foreign',
      controlFiles: {
        postinst: { data: '#!/bin/sh\nexit 0\n', mode: 0o755 },
        conffiles: { data: '/etc/ctl.conf\n' },
      },
      entries: [
        { path: './', type: 'dir' },
        { path: './etc/', type: 'dir' },
        { path: './etc/ctl.conf', type: 'file', data: 'x=1\n' },
      ],
    });
    const [unpacked] = await unpackPackages([pkg], root, {});
    expect(unpacked).toMatchObject({
      name: 'ctl',
      version: '2:1.0-3',
      architecture: 'all',
      multiArch: 'foreign',
    });
    expect(unpacked?.control).toMatch(/^Package: ctl\nVersion: 2:1.0-3\n/);
    expect(unpacked?.controlFiles.get('postinst')).toEqual({
      data: Buffer.from('#!/bin/sh\nexit 0\n'),
      mode: 0o755,
      mtime: 1_700_000_000,
    });
    expect(unpacked?.controlFiles.get('conffiles')?.mode).toBe(0o644);
    expect([...(unpacked?.controlFiles.keys() ?? [])].sort()).toEqual(['conffiles', 'postinst']);
    expect(unpacked?.paths).toEqual(['/.', '/etc', '/etc/ctl.conf']);
  });

  it('fails clearly on a package that is not what the lock says, or is damaged', async () => {
    const pkg = await writeDeb(dir, { name: 'real-name', entries: [] });
    const wrong = { ...pkg, name: 'other-name' };
    await expect(unpackPackages([wrong], root, {})).rejects.toMatchObject({
      code: 'UNPACK_CONTROL_MISMATCH',
    });
    const damaged = join(dir, 'damaged.deb');
    const bytes = readFileSync(pkg.file);
    await writeFile(damaged, bytes.subarray(0, bytes.length - 40));
    const error = await unpackPackages([{ ...pkg, file: damaged }], root, {}).catch((e: unknown) => e);
    expect(isRootcastError(error) && error.code).toMatch(/^DEB_/);
    await writeFile(damaged, 'not a deb');
    await expect(unpackPackages([{ ...pkg, file: damaged }], root, {})).rejects.toMatchObject({
      code: 'DEB_BAD_ARCHIVE',
    });
  });

  it('unpacks each package only once its file is ready, and fails with the error of one that never is', async () => {
    const made = [
      await writeDeb(dir, {
        name: 'first',
        entries: [
          { path: './etc/', type: 'dir' },
          { path: './etc/first', type: 'file', data: '1' },
        ],
      }),
      await writeDeb(dir, {
        name: 'second',
        entries: [
          { path: './etc/', type: 'dir' },
          { path: './etc/second', type: 'file', data: '2' },
        ],
      }),
    ];
    // Each file appears in the "cache" only when its download is reported done.
    const cache = join(dir, 'cache');
    await mkdir(cache);
    const arriving = made.map((pkg, i) => ({
      ...pkg,
      file: join(cache, `${pkg.name}.deb`),
      ready: new Promise<void>((resolve) =>
        setTimeout(() => void copyFile(pkg.file, join(cache, `${pkg.name}.deb`)).then(resolve), 30 * (2 - i)),
      ),
    }));
    const unpacked = await unpackPackages(arriving, root);
    expect(unpacked.map((p) => p.name)).toEqual(['first', 'second']);
    expect(readFileSync(join(root, 'etc/second'), 'utf8')).toBe('2');

    const lost = new RootcastError({
      code: 'PACKAGE_HASH_MISMATCH',
      message: 'second: bad bytes',
      hint: 'retry',
    });
    const failing = [made[0]!, { ...made[1]!, ready: Promise.reject(lost) }];
    await expect(unpackPackages(failing, join(dir, 'root2'))).rejects.toBe(lost);

    // A package that fails to unpack ends the unpack at once, while another is still awaited
    // (here: never arrives; without that, this would wait forever).
    const damaged = join(dir, 'damaged.deb');
    await writeFile(damaged, 'not a deb');
    const stuck = [
      { ...made[0]!, file: damaged },
      { ...made[1]!, ready: new Promise<void>(() => {}) },
    ];
    await expect(unpackPackages(stuck, join(dir, 'root2'))).rejects.toMatchObject({
      code: 'DEB_BAD_ARCHIVE',
    });
  });

  it('hands decoded xz members over raw when the member cache is deferred; the compressor finishes the cache', async () => {
    const packages = join(dir, 'store', 'packages', 'sha256');
    await mkdir(packages, { recursive: true });
    const specs = [0, 1, 2].map((i) => ({
      name: `cached-${i}`,
      entries: [
        { path: './usr/', type: 'dir' as const },
        { path: `./usr/file-${i}`, type: 'file' as const, data: 'x'.repeat(5000 * (i + 1)) },
      ],
    }));
    const files: PackageFile[] = [];
    for (const spec of specs) {
      const pkg = await writeDeb(dir, spec);
      const inCache = join(packages, sha256Hex(readFileSync(pkg.file)));
      await copyFile(pkg.file, inCache);
      files.push({ ...pkg, file: inCache });
    }
    const members = join(dir, 'store', 'packages', 'members');
    const pending: PendingMemberCache[] = [];
    await unpackPackages(files, root, { deferMemberCache: (p) => pending.push(p) });
    expect(pending.map((p) => p.path).sort()).toEqual(files.map((f) => memberCachePath(f.file)).sort());
    // Nothing in the cache yet: only the raw members, as atomic-write temporaries.
    expect((await readdir(members)).every((n) => n.startsWith('.tmp-'))).toBe(true);
    const raws = pending.map((p) => readFileSync(p.raw));

    const compressor = new MemberCacheCompressor();
    for (const p of pending) compressor.add(p);
    await compressor.finish();
    expect((await readdir(members)).sort()).toEqual(pending.map((p) => basename(p.path)).sort());
    for (const [i, p] of pending.entries()) {
      const parts: Buffer[] = [];
      expect(readMemberCache(p.path, (c) => parts.push(Buffer.from(c)))).toBe(true);
      expect(Buffer.concat(parts).equals(raws[i]!)).toBe(true);
    }
    // A rebuild reads the cache and hands nothing over.
    const again: PendingMemberCache[] = [];
    const root2 = join(dir, 'root2');
    await mkdir(root2);
    await unpackPackages(files, root2, { deferMemberCache: (p) => again.push(p) });
    expect(again).toEqual([]);
    const reference = await listings(files);
    expect(compareTree(root, reference, [])).toEqual([]);
    expect(compareTree(root2, reference, [])).toEqual([]);

    // Cancelled, the compressor leaves neither raw members nor temporaries.
    await rm(members, { recursive: true });
    const dropped: PendingMemberCache[] = [];
    await mkdir(join(dir, 'root3'));
    await unpackPackages(files, join(dir, 'root3'), { deferMemberCache: (p) => dropped.push(p) });
    expect(dropped).toHaveLength(files.length);
    const cancelled = new MemberCacheCompressor();
    for (const p of dropped) cancelled.add(p);
    cancelled.start();
    await cancelled.cancel();
    const left = await readdir(members);
    expect(left.filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    for (const name of left) expect(readMemberCache(join(members, name), () => {})).toBe(true);
  });
});

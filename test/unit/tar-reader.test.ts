import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasNativeCalls, nativeCalls } from '../../src/assemble/native.js';
import { type TarEntry, TarReader } from '../../src/assemble/tar-reader.js';
import { isRootcastError } from '../../src/core/errors.js';
import { buildTar, header, type TarSpec } from '../helpers/deb-builder.js';

interface Read {
  entry: TarEntry;
  data: string;
}

/** Reads `tar` pushed in pieces of `chunk` bytes (default: all at once). */
function read(tar: Buffer, chunk = tar.length): Read[] {
  const out: Read[] = [];
  let parts: Buffer[] = [];
  const reader = new TarReader(
    {
      entry(entry) {
        parts = [];
        out.push({ entry, data: '' });
      },
      data(piece) {
        parts.push(Buffer.from(piece));
      },
      entryEnd() {
        const last = out.at(-1);
        if (last !== undefined) last.data = Buffer.concat(parts).toString('latin1');
      },
    },
    'test.tar',
  );
  for (let i = 0; i < tar.length; i += Math.max(1, chunk))
    reader.push(tar.subarray(i, i + Math.max(1, chunk)));
  reader.end();
  return out;
}

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isRootcastError(error) ? error.code : `not a RootcastError: ${String(error)}`;
  }
  return undefined;
}

const longName = `./usr/share/${'very-long-directory-name/'.repeat(6)}file-with-a-long-name.txt`;
const specs: TarSpec[] = [
  { path: './', type: 'dir', mtime: 1_600_000_000 },
  { path: './usr/bin/passwd', type: 'file', mode: 0o4755, data: 'ELF…', uid: 0, gid: 0 },
  { path: './var/mail/', type: 'dir', mode: 0o2775, gid: 8, gname: 'mail' },
  { path: './tmp/', type: 'dir', mode: 0o1777 },
  { path: './big-uid', type: 'file', uid: 3_000_000_000, gid: 70_000, data: '' },
  { path: './bin/sh', type: 'symlink', linkpath: 'dash' },
  { path: './usr/bin/hard', type: 'hardlink', linkpath: './usr/bin/passwd' },
  { path: './dev/null', type: 'chardev', mode: 0o666, devmajor: 1, devminor: 3 },
  { path: './dev/sda', type: 'blockdev', mode: 0o660, devmajor: 8, devminor: 0, gid: 6 },
  { path: './run/fifo', type: 'fifo', mode: 0o600 },
  { path: longName, type: 'file', data: 'x'.repeat(1500) },
  { path: './link-long', type: 'symlink', linkpath: longName },
  {
    path: './usr/bin/ping',
    type: 'file',
    mode: 0o755,
    data: 'p',
    xattrs: { 'security.capability': Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0]) },
  },
  { path: './precise', type: 'file', data: 'm', pax: { mtime: '1700000000.5' } },
  { path: './ünïcödé', type: 'file', data: 'utf8' },
];

describe('TarReader', () => {
  for (const longNames of ['pax', 'gnu'] as const) {
    it(`reads every member type with ${longNames} long names`, () => {
      const [
        root,
        passwd,
        mail,
        tmp,
        bigUid,
        sh,
        hard,
        devNull,
        sda,
        fifo,
        long,
        linkLong,
        ping,
        precise,
        unicode,
      ] = read(buildTar(specs, { longNames }));
      expect(root?.entry).toMatchObject({ path: './', type: 'directory', mode: 0o755, mtime: 1_600_000_000 });
      expect(passwd?.entry).toMatchObject({ type: 'file', mode: 0o4755, size: 6, uname: 'root' });
      expect(passwd?.data).toBe(Buffer.from('ELF…').toString('latin1'));
      expect(mail?.entry).toMatchObject({ mode: 0o2775, gid: 8, gname: 'mail' });
      expect(tmp?.entry.mode).toBe(0o1777);
      expect(bigUid?.entry).toMatchObject({ uid: 3_000_000_000, gid: 70_000 });
      expect(sh?.entry).toMatchObject({ type: 'symlink', linkpath: 'dash', size: 0 });
      expect(hard?.entry).toMatchObject({ type: 'hardlink', linkpath: './usr/bin/passwd' });
      expect(devNull?.entry).toMatchObject({ type: 'chardev', devmajor: 1, devminor: 3, mode: 0o666 });
      expect(sda?.entry).toMatchObject({ type: 'blockdev', devmajor: 8, devminor: 0, gid: 6 });
      expect(fifo?.entry.type).toBe('fifo');
      expect(long?.entry.path).toBe(longName);
      expect(long?.data).toBe('x'.repeat(1500));
      expect(linkLong?.entry.linkpath).toBe(longName);
      expect(ping?.entry.xattrs.get('security.capability')).toEqual(Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0]));
      expect(precise?.entry.mtime).toBe(1_700_000_000.5);
      expect(unicode?.entry.path).toBe('./ünïcödé');
      // pax records apply to one member only.
      expect(precise?.entry.xattrs.size).toBe(0);
    });
  }

  it('gives the same result whatever the chunk size', () => {
    const tar = buildTar(specs);
    const whole = read(tar);
    for (const chunk of [1, 7, 511, 512, 513, 4096]) expect(read(tar, chunk)).toEqual(whole);
  });

  it('applies global pax headers to every later member', () => {
    const body = Buffer.from('20 uname=globaluser\n');
    const tar = Buffer.concat([
      header({ name: 'pax_global_header', typeflag: 'g', size: body.length }),
      body,
      Buffer.alloc(512 - body.length),
      buildTar([
        { path: './a', type: 'file', uname: 'local' },
        { path: './b', type: 'file' },
      ]),
    ]);
    expect(read(tar).map((r) => r.entry.uname)).toEqual(['globaluser', 'globaluser']);
  });

  it('stops at the end-of-archive marker and accepts a missing one', () => {
    const tar = buildTar([{ path: './a', type: 'file', data: 'a' }]);
    expect(read(Buffer.concat([tar, Buffer.from('trailing garbage')])).length).toBe(1);
    expect(read(tar.subarray(0, 1024)).length).toBe(1);
  });

  it('rejects damaged archives with codes', () => {
    const tar = buildTar([{ path: './a', type: 'file', data: 'hello' }]);
    const corrupt = Buffer.from(tar);
    corrupt[10] = 0x41;
    expect(errorCode(() => read(corrupt))).toBe('TAR_BAD_CHECKSUM');
    expect(errorCode(() => read(tar.subarray(0, 600)))).toBe('TAR_TRUNCATED');
    expect(errorCode(() => read(tar.subarray(0, 300)))).toBe('TAR_TRUNCATED');
    const sparse = Buffer.concat([header({ name: './s', typeflag: 'S', size: 0 }), Buffer.alloc(1024)]);
    expect(errorCode(() => read(sparse))).toBe('TAR_UNSUPPORTED_ENTRY');
    const latin1 = header({ name: 'x', typeflag: '0', size: 0 });
    latin1[0] = 0xe9;
    latin1.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of latin1) sum += byte;
    latin1.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
    expect(errorCode(() => read(Buffer.concat([latin1, Buffer.alloc(1024)])))).toBe('TAR_BAD_NAME');
    const badPax = Buffer.from('99 path=x\n');
    const pax = Buffer.concat([
      header({ name: 'p', typeflag: 'x', size: badPax.length }),
      badPax,
      Buffer.alloc(512 - badPax.length),
    ]);
    expect(errorCode(() => read(Buffer.concat([pax, tar])))).toBe('TAR_BAD_HEADER');
  });
});

describe('TarReader on archives written by GNU tar', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-tar-'));
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'deep', 'x'.repeat(120)), { recursive: true });
    await writeFile(join(tree, 'deep', 'x'.repeat(120), 'file'), 'content\n', { mode: 0o4750 });
    await symlink(`../${'y'.repeat(150)}`, join(tree, 'deep', 'link'));
    await utimes(join(tree, 'deep', 'x'.repeat(120), 'file'), 1_650_000_000, 1_650_000_000);
    if (hasNativeCalls())
      nativeCalls().lsetxattr(join(tree, 'deep', 'x'.repeat(120), 'file'), 'user.rootcast', Buffer.from('v'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const format of ['gnu', 'pax'] as const) {
    it(`reads --format=${format}`, async () => {
      const out = join(dir, `${format}.tar`);
      execFileSync('tar', [
        `--format=${format}`,
        ...(format === 'pax' ? ['--xattrs', '--xattrs-include=user.*'] : []),
        '--numeric-owner',
        '-C',
        join(dir, 'tree'),
        '-cf',
        out,
        '.',
      ]);
      const members = read(await readFile(out), 1000);
      const file = members.find((m) => m.entry.path.endsWith('/file'));
      expect(file?.entry).toMatchObject({
        path: `./deep/${'x'.repeat(120)}/file`,
        type: 'file',
        mode: 0o4750,
        mtime: 1_650_000_000,
        size: 8,
      });
      expect(file?.data).toBe('content\n');
      expect(members.find((m) => m.entry.type === 'symlink')?.entry.linkpath).toBe(`../${'y'.repeat(150)}`);
      if (format === 'pax' && hasNativeCalls())
        expect(file?.entry.xattrs.get('user.rootcast')).toEqual(Buffer.from('v'));
    });
  }
});

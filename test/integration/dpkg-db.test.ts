import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseControl, registerUnpacked, statusStanza } from '../../src/assemble/dpkg-db.js';
import type { PackageFile, UnpackedPackage } from '../../src/assemble/types.js';
import { unpackPackages } from '../../src/assemble/unpack.js';
import { buildAr, buildTar, compress, type TarSpec } from '../helpers/deb-builder.js';

/**
 * `registerUnpacked` against the host's dpkg as the reference: the same packages are
 * unpacked by `dpkg --root=REF --unpack` (host dpkg, test only) and the databases must agree
 * file for file, except the documented `Conffiles:` hashes (dpkg writes `newconffile` and
 * only fills the md5 from a `.dpkg-new` at configure time; rootcast writes the md5 at once).
 */
interface TestDeb {
  name: string;
  control: string;
  controlFiles: Record<string, { data: string; mode: number }>;
  entries: TarSpec[];
}

const ALPHA: TestDeb = {
  name: 'alpha',
  control: [
    'Package: alpha',
    'Version: 1:2.0-1',
    'Architecture: amd64',
    'Essential: yes',
    'Maintainer: Test <test@example.org>',
    'Installed-Size: 12',
    'Depends: libbeta (>= 1.0), base-files | other',
    'Pre-Depends: libbeta',
    'Section: admin',
    'Priority: required',
    'Homepage: https://example.org/alpha',
    'Description: alpha test package ',
    ' A long description line with a trailing blank. ',
    ' .',
    ' Second paragraph.',
    '',
  ].join('\n'),
  controlFiles: {
    conffiles: { data: '/etc/alpha.conf\n', mode: 0o644 },
    postinst: { data: '#!/bin/sh\nexit 0\n', mode: 0o755 },
    md5sums: { data: 'd41d8cd98f00b204e9800998ecf8427e  usr/share/alpha/readme\n', mode: 0o644 },
    triggers: { data: '# comment\ninterest-noawait /usr/share/alpha\ninterest alpha-trigger\n', mode: 0o644 },
  },
  entries: [
    { path: './', type: 'dir', mode: 0o755 },
    { path: './etc/', type: 'dir', mode: 0o755 },
    { path: './etc/alpha.conf', type: 'file', data: 'setting=1\n' },
    { path: './usr/', type: 'dir', mode: 0o755 },
    { path: './usr/share/', type: 'dir', mode: 0o755 },
    { path: './usr/share/alpha/', type: 'dir', mode: 0o755 },
    { path: './usr/share/alpha/readme', type: 'file', data: '' },
  ],
};

const LIBBETA: TestDeb = {
  name: 'libbeta',
  control: [
    'Package: libbeta',
    'Source: beta',
    'Version: 1.2-3',
    'Architecture: amd64',
    'Multi-Arch: same',
    'Maintainer: Test <test@example.org>',
    'Description: beta library',
    '',
  ].join('\n'),
  controlFiles: {
    shlibs: { data: 'libbeta 1 libbeta (>= 1.0)\n', mode: 0o644 },
    triggers: { data: 'activate-noawait ldconfig\n', mode: 0o644 },
  },
  entries: [
    { path: './', type: 'dir', mode: 0o755 },
    { path: './usr/', type: 'dir', mode: 0o755 },
    { path: './usr/lib/', type: 'dir', mode: 0o755 },
    { path: './usr/lib/libbeta.so.1', type: 'file', data: 'ELF?' },
  ],
};

async function writeTestDeb(dir: string, deb: TestDeb): Promise<PackageFile> {
  const control = buildTar([
    { path: './', type: 'dir' },
    { path: './control', type: 'file', data: deb.control },
    ...Object.entries(deb.controlFiles).map(
      ([name, f]): TarSpec => ({ path: `./${name}`, type: 'file', data: f.data, mode: f.mode }),
    ),
  ]);
  const file = join(dir, `${deb.name}.deb`);
  await writeFile(
    file,
    buildAr([
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.xz', data: compress(control, 'xz') },
      { name: 'data.tar.gz', data: compress(buildTar(deb.entries), 'gzip') },
    ]),
  );
  const version = deb.control.match(/^Version: (.*)$/m)?.[1] ?? '';
  return { name: deb.name, version, arch: 'amd64', file };
}

async function listDir(dir: string): Promise<Map<string, { mode: number; data: string }>> {
  const out = new Map<string, { mode: number; data: string }>();
  for (const name of (await readdir(dir)).sort()) {
    out.set(name, {
      mode: (await stat(join(dir, name))).mode & 0o7777,
      data: await readFile(join(dir, name), 'utf8'),
    });
  }
  return out;
}

// dpkg-query's own ${field} syntax, not template placeholders.
const SHOW_VERSION = '-f=$' + '{binary:Package} $' + '{db:Status-Abbrev}$' + '{Version}\n';
const SHOW_STATUS = '-f=$' + '{Package} $' + '{db:Status-Abbrev}\n';

const md5 = (text: string) => createHash('md5').update(text).digest('hex');

describe('registerUnpacked', () => {
  let dir: string;
  let root: string;
  let ref: string;
  let unpacked: UnpackedPackage[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-dpkgdb-'));
    root = join(dir, 'root');
    ref = join(dir, 'ref');
    const debs = [await writeTestDeb(dir, ALPHA), await writeTestDeb(dir, LIBBETA)];
    await mkdir(root);
    unpacked = await unpackPackages(debs, root, { concurrency: 1 });
    await registerUnpacked(root, unpacked, 'amd64');

    for (const sub of ['info', 'updates', 'triggers'])
      await mkdir(join(ref, 'var/lib/dpkg', sub), { recursive: true });
    await writeFile(join(ref, 'var/lib/dpkg/status'), '');
    execFileSync(
      'dpkg',
      [`--root=${ref}`, '--log=/dev/null', '--force-depends', '--unpack', ...debs.map((d) => d.file)],
      { stdio: 'pipe' },
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the status dpkg --unpack writes, with the conffile md5 in place of newconffile', async () => {
    const ours = await readFile(join(root, 'var/lib/dpkg/status'), 'utf8');
    const theirs = await readFile(join(ref, 'var/lib/dpkg/status'), 'utf8');
    expect(ours).toContain(` /etc/alpha.conf ${md5('setting=1\n')}\n`);
    expect(ours.replace(md5('setting=1\n'), 'newconffile')).toBe(theirs);
  });

  it('files control members and .list under info/ exactly as dpkg, pkg:arch for Multi-Arch: same', async () => {
    const ours = await listDir(join(root, 'var/lib/dpkg/info'));
    const theirs = await listDir(join(ref, 'var/lib/dpkg/info'));
    expect([...ours.keys()]).toEqual([...theirs.keys()]);
    expect(ours).toEqual(theirs);
    expect(ours.get('alpha.postinst')?.mode).toBe(0o755);
    expect(ours.has('libbeta:amd64.list')).toBe(true);
  });

  it('records trigger interests in triggers/ as dpkg does', async () => {
    const ours = await listDir(join(root, 'var/lib/dpkg/triggers'));
    const theirs = await listDir(join(ref, 'var/lib/dpkg/triggers'));
    theirs.delete('Lock');
    expect(ours).toEqual(theirs);
    expect(ours.get('File')?.data).toBe('/usr/share/alpha alpha/noawait\n');
    expect(ours.get('alpha-trigger')?.data).toBe('alpha\n');
  });

  it('is read by dpkg-query as two unpacked packages with their file lists', async () => {
    const admindir = join(root, 'var/lib/dpkg');
    const query = execFileSync('dpkg-query', [`--admindir=${admindir}`, '-W', SHOW_VERSION], {
      encoding: 'utf8',
    });
    expect(query).toBe('alpha iU 1:2.0-1\nlibbeta:amd64 iU 1.2-3\n');
    const files = execFileSync('dpkg-query', [`--admindir=${admindir}`, '-L', 'libbeta:amd64'], {
      encoding: 'utf8',
    });
    expect(files).toBe('/.\n/usr\n/usr/lib\n/usr/lib/libbeta.so.1\n');
    expect(await readFile(join(admindir, 'arch'), 'utf8')).toBe('amd64\n');
    expect(await readFile(join(admindir, 'info/format'), 'utf8')).toBe('1\n');
  });

  it('keeps a parent layer and queues its file triggers that the new files activate', async () => {
    const admindir = join(root, 'var/lib/dpkg');
    const status = await readFile(join(admindir, 'status'), 'utf8');
    await writeFile(
      join(admindir, 'status'),
      status.replaceAll('install ok unpacked', 'install ok installed'),
    );
    const gamma: UnpackedPackage = {
      name: 'gamma',
      version: '1',
      architecture: 'all',
      multiArch: 'foreign',
      control:
        'Package: gamma\nVersion: 1\nArchitecture: all\nMulti-Arch: foreign\nMaintainer: T <t@e.org>\nDescription: g\n',
      controlFiles: new Map(),
      paths: ['/.', '/usr', '/usr/share', '/usr/share/alpha', '/usr/share/alpha/gamma'],
    };
    await registerUnpacked(root, [gamma], 'amd64');
    expect(await readFile(join(admindir, 'triggers/Unincorp'), 'utf8')).toBe('/usr/share/alpha -\n');
    const query = execFileSync('dpkg-query', [`--admindir=${admindir}`, '-W', SHOW_STATUS], {
      encoding: 'utf8',
    });
    // dpkg-query applies Unincorp in memory: alpha's interest made it triggers-pending.
    expect(query).toBe('alpha it \ngamma iU \nlibbeta ii \n');
  });
});

describe('statusStanza', () => {
  it('orders fields as dpkg, drops a false Essential and a default Multi-Arch, keeps unknown fields last', () => {
    const control = parseControl(
      'Package: p\nDescription: d\nX-Custom: 1\nMulti-Arch: no\nEssential: no\nVersion: 1\nDepends: q\nArchitecture: all\n',
    );
    expect(statusStanza(control, [])).toBe(
      'Package: p\nStatus: install ok unpacked\nArchitecture: all\nVersion: 1\nDepends: q\nDescription: d\nX-Custom: 1',
    );
  });
});

import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clone, removeContainers, run } from '../../src/api/runtime.js';
import { nativeCalls } from '../../src/assemble/native.js';
import type { DriverName } from '../../src/runtime/driver.js';
import { readRecord } from '../../src/runtime/record.js';
import { readTemplate } from '../../src/store/template-query.js';
import {
  installHostTools,
  type ListingEntry,
  makeTemplate,
  mountsUnder,
  viewListing,
} from './runtime-fixtures.js';

/**
 * The clone-driver contract, one suite that every driver runs: a container shows exactly the
 * template's merged view (whiteouts, opaque directories, type changes, hardlinks, devices,
 * xattrs, owners and modes), writes in one container reach neither the template nor another
 * container, the layer directories stay byte for byte the same, and removal leaves nothing.
 * btrfs and reflink run on loop-mounted btrfs and xfs images made here.
 */
function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const loopOk = existsSync('/dev/loop-control');
const CASES: { driver: DriverName; fs: 'tmp' | 'btrfs' | 'xfs'; skip?: string }[] = [
  { driver: 'overlay', fs: 'tmp' },
  { driver: 'copy', fs: 'tmp' },
  {
    driver: 'reflink',
    fs: 'xfs',
    ...(!hasTool('mkfs.xfs')
      ? { skip: 'mkfs.xfs missing (xfsprogs)' }
      : !loopOk
        ? { skip: 'no loop devices' }
        : {}),
  },
  {
    driver: 'btrfs',
    fs: 'btrfs',
    ...(!hasTool('mkfs.btrfs')
      ? { skip: 'mkfs.btrfs missing (btrfs-progs)' }
      : !loopOk
        ? { skip: 'no loop devices' }
        : {}),
  },
];

/** The base layer: host tools plus every kind of entry the merge must keep. */
function buildBase(tree: string): void {
  installHostTools(tree);
  const p = (rel: string) => join(tree, rel);
  writeFileSync(p('etc/removable'), 'removable\n');
  for (const d of ['data/gone/sub', 'data/opaque', 'data/becomes-file', 'data/keep'])
    mkdirSync(p(d), { recursive: true });
  writeFileSync(p('data/gone/sub/f'), 'gone\n');
  writeFileSync(p('data/opaque/old1'), 'old\n');
  writeFileSync(p('data/opaque/old2'), 'old\n');
  writeFileSync(p('data/becomes-dir'), 'a file below\n');
  writeFileSync(p('data/becomes-file/x'), 'x\n');
  writeFileSync(p('data/keep/link1'), 'linked\n');
  linkSync(p('data/keep/link1'), p('data/keep/link2'));
  writeFileSync(p('data/mod'), 'base content\n');
  linkSync(p('data/mod'), p('data/mod-link'));
  writeFileSync(p('data/suid'), '#!/bin/sh\n');
  chmodSync(p('data/suid'), 0o4755);
  writeFileSync(p('data/owned'), 'owned\n');
  chownSync(p('data/owned'), 1000, 1001);
  writeFileSync(p('data/xattr'), 'xattr\n');
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', p('data/xattr')]);
  execFileSync('mknod', ['-m', '0640', p('data/chr'), 'c', '1', '3']);
  execFileSync('mkfifo', ['-m', '0600', p('data/fifo')]);
  execFileSync('ln', ['-s', '../etc/removable', p('data/symlink')]);
}

/** The child layer, in overlayfs upper format. */
function buildChild(tree: string): void {
  const p = (rel: string) => join(tree, rel);
  mkdirSync(p('data/opaque'), { recursive: true });
  nativeCalls().mknod(p('data/gone'), 0o020000, 0, 0);
  nativeCalls().lsetxattr(p('data/opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  writeFileSync(p('data/opaque/new1'), 'new\n');
  mkdirSync(p('data/becomes-dir'));
  writeFileSync(p('data/becomes-dir/inner'), 'now a directory\n');
  writeFileSync(p('data/becomes-file'), 'now a file\n');
  writeFileSync(p('data/mod'), 'child content\n');
  writeFileSync(p('data/added'), 'added\n');
}

const CUSTOMIZED = new Set(['/etc/hostname', '/etc/hosts', '/etc/machine-id']);

/** A listing without what legitimately differs between trees: inodes, times, directory sizes. */
function comparable(listing: Record<string, ListingEntry>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [path, e] of Object.entries(listing)) {
    if (CUSTOMIZED.has(path)) continue;
    const { ino: _ino, mtime: _mtime, ...rest } = e;
    out[path] = rest;
  }
  return out;
}

for (const c of CASES) {
  describe.skipIf(c.skip !== undefined)(
    `clone driver ${c.driver}${c.skip ? ` (skipped: ${c.skip})` : ''}`,
    () => {
      let root: string;
      let mnt: string | undefined;
      let store: string;
      let layers: string[];
      let layersBefore: Record<string, ListingEntry>[];
      let reference: Record<string, ListingEntry>;

      const containerView = (name: string) => {
        const rec = readRecord(store, name);
        const dir = join(store, 'containers', name);
        return rec.driver === 'overlay'
          ? viewListing(join(dir, 'rootfs'), {
              lowers: [...layers].reverse(),
              upper: join(dir, 'upper'),
              work: join(dir, 'work'),
            })
          : viewListing(join(dir, 'rootfs'));
      };

      beforeAll(async () => {
        root = mkdtempSync(join(tmpdir(), `rootcast-driver-${c.driver}-`));
        if (c.fs !== 'tmp') {
          const image = join(root, 'image');
          mnt = join(root, 'mnt');
          mkdirSync(mnt);
          execFileSync('truncate', ['-s', '700M', image]);
          if (c.fs === 'btrfs') execFileSync('mkfs.btrfs', ['-q', image]);
          else execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
          execFileSync('mount', ['-o', 'loop', image, mnt]);
          store = join(mnt, 'store');
        } else store = join(root, 'store');
        mkdirSync(store);
        await makeTemplate({ store, name: 'base', build: buildBase });
        await makeTemplate({ store, name: 'child', build: buildChild, parent: 'base:1.0' });
        layers = (await readTemplate(store, 'child:1.0')).layers.map((l) => l.unpackedPath);
        layersBefore = await Promise.all(layers.map((l) => viewListing(l)));
        const view = mkdtempSync(join(tmpdir(), 'rootcast-view-'));
        reference = await viewListing(view, { lowers: [...layers].reverse() });
        rmSync(view, { recursive: true });
      }, 120_000);

      afterAll(() => {
        if (mnt) execFileSync('umount', [mnt]);
        rmSync(root, { recursive: true, force: true });
      });

      it('shows exactly the merged view of the template', async () => {
        const result = await clone('child:1.0', 'c1', { store, driver: c.driver });
        expect(result.driver).toBe(c.driver);
        expect(readRecord(store, 'c1').layers).toHaveLength(2);
        const view = await containerView('c1');
        expect(comparable(view)).toEqual(comparable(reference));
        // Spot checks of the merge, so a bug shared by the reference cannot hide.
        expect(view['/data/gone']).toBeUndefined();
        expect(Object.keys(view).filter((k) => k.startsWith('/data/opaque/'))).toEqual(['/data/opaque/new1']);
        expect(view['/data/becomes-dir']?.type).toBe('dir');
        expect(view['/data/becomes-file']?.type).toBe('file');
        expect(view['/data/chr']).toMatchObject({ type: 'chr', mode: '640' });
        expect(view['/data/suid']?.mode).toBe('4755');
        expect(view['/data/owned']).toMatchObject({ uid: 1000, gid: 1001 });
        expect(view['/data/xattr']?.xattrs).toHaveLength(1);
        expect(view['/data/opaque']?.xattrs).toEqual([]);
        expect(view['/etc/hostname']?.sha).toBeDefined();
        if (c.driver !== 'overlay') {
          expect(view['/data/keep/link1']?.ino).toBe(view['/data/keep/link2']?.ino);
          expect(view['/data/mod']?.ino).not.toBe(view['/data/mod-link']?.ino);
        }
      });

      it('keeps writes private to the container and leaves the layers unchanged', async () => {
        await clone('child:1.0', 'c2', { store, driver: c.driver });
        const ran = await run('c1', {
          store,
          argv: [
            '/bin/sh',
            '-c',
            'echo mine > /root/note && rm /etc/removable /data/keep/link1 && echo more >> /data/mod',
          ],
        });
        expect(ran.exitCode).toBe(0);
        const c1 = await containerView('c1');
        const c2 = await containerView('c2');
        expect(c1['/root/note']).toBeDefined();
        expect(c1['/etc/removable']).toBeUndefined();
        expect(c2['/root/note']).toBeUndefined();
        expect(c2['/etc/removable']).toBeDefined();
        expect(comparable(c2)).toEqual(comparable(reference));
        const view = mkdtempSync(join(tmpdir(), 'rootcast-view-'));
        expect(await viewListing(view, { lowers: [...layers].reverse() })).toEqual(reference);
        rmSync(view, { recursive: true });
        for (const [i, l] of layers.entries()) expect(await viewListing(l)).toEqual(layersBefore[i]);
      });

      it('returns the exit status and mounts nothing on the host', async () => {
        const ran = await run('c2', { store, argv: ['/bin/sh', '-c', 'test -e /proc/1/status && exit 7'] });
        expect(ran.exitCode).toBe(7);
        expect(mountsUnder(join(store, 'containers'))).toEqual([]);
      });

      it('removes containers without leaving anything behind', async () => {
        await removeContainers(['c1', 'c2'], { store });
        expect(readdirSync(join(store, 'containers'))).toEqual([]);
        expect(readdirSync(join(store, 'tmp')).filter((n) => !n.startsWith('.'))).toEqual([]);
        expect(mountsUnder(join(store, 'containers'))).toEqual([]);
        if (c.driver === 'btrfs') {
          expect(readdirSync(join(store, 'runtime', 'btrfs'))).toEqual([]);
          expect(execFileSync('btrfs', ['subvolume', 'list', mnt!], { encoding: 'utf8' }).trim()).toBe('');
        }
        expect(readFileSync(join(layers[0]!, 'etc/removable'), 'utf8')).toBe('removable\n');
      });
    },
  );
}

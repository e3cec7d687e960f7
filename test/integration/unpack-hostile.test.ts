import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PackageFile } from '../../src/assemble/types.js';
import { unpackPackages } from '../../src/assemble/unpack.js';
import { isRootcastError } from '../../src/core/errors.js';
import { type DebSpec, writeDeb } from '../helpers/deb-builder.js';

/**
 * Packages built to escape the staging tree. Each must fail with a clear error (or, where
 * the rules clamp instead, land inside the root) and leave the host untouched: the sibling
 * directory's sentinel files keep their bytes and metadata, and nothing appears outside.
 */
describe('unpacking hostile packages', () => {
  let base: string;
  let root: string;
  let sibling: string;
  let debs: string;
  let marker: string;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'rootcast-hostile-'));
    root = join(base, 'root');
    sibling = join(base, 'sibling');
    debs = join(base, 'debs');
    marker = `rootcast-pwned-${randomBytes(6).toString('hex')}`;
    await Promise.all([mkdir(root), mkdir(sibling), mkdir(debs)]);
    await writeFile(join(sibling, 'secret'), 'keep me\n', { mode: 0o600 });
    await mkdir(join(sibling, 'dir'));
    await writeFile(join(sibling, 'dir', 'file'), 'also keep me\n');
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  /** Every path under `base` outside the root, with type, mode, size, mtime and content hash. */
  function snapshotOutsideRoot(): Map<string, string> {
    const seen = new Map<string, string>();
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (path === root || path === debs) continue;
        const stats = lstatSync(path);
        const content = stats.isFile()
          ? createHash('sha256').update(readFileSync(path)).digest('hex')
          : stats.isSymbolicLink()
            ? readlinkSync(path)
            : '';
        seen.set(path, `${stats.mode}:${stats.uid}:${stats.size}:${stats.mtimeMs}:${stats.nlink}:${content}`);
        if (stats.isDirectory()) walk(path);
      }
    };
    walk(base);
    return seen;
  }

  async function expectRefused(specs: DebSpec[], code: string, member: string): Promise<void> {
    const before = snapshotOutsideRoot();
    const packages: PackageFile[] = [];
    for (const spec of specs) packages.push(await writeDeb(debs, spec));
    const error = await unpackPackages(packages, root, { concurrency: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRootcastError(error), String(error)).toBe(true);
    if (!isRootcastError(error)) return;
    expect(error.code).toBe(code);
    expect(error.message).toContain(`package ${specs.at(-1)?.name}`);
    expect(error.message).toContain(member);
    expect(error.hint.length).toBeGreaterThan(10);
    expect(snapshotOutsideRoot()).toEqual(before);
    expect(existsSync(join('/tmp', marker))).toBe(false);
    expect(existsSync(join(base, marker))).toBe(false);
  }

  it('refuses a file written through a symlink to / that the package ships', async () => {
    await expectRefused(
      [
        {
          name: 'evil-root-link',
          entries: [
            { path: './', type: 'dir' },
            { path: './tmp/', type: 'dir' },
            { path: './evil', type: 'symlink', linkpath: '/' },
            { path: `./evil/tmp/${marker}`, type: 'file', data: 'pwned' },
          ],
        },
      ],
      'UNPACK_SYMLINK_TRAVERSAL',
      `./evil/tmp/${marker}`,
    );
  });

  it('refuses a file written through a symlink to a host directory', async () => {
    await expectRefused(
      [
        {
          name: 'evil-host-link',
          entries: [
            { path: './link', type: 'symlink', linkpath: sibling },
            { path: './link/secret', type: 'file', data: 'pwned' },
          ],
        },
      ],
      'UNPACK_SYMLINK_TRAVERSAL',
      './link/secret',
    );
  });

  it('refuses a member with a ../ path', async () => {
    await expectRefused(
      [{ name: 'evil-dotdot', entries: [{ path: `./../${marker}`, type: 'file', data: 'pwned' }] }],
      'UNPACK_PATH_ESCAPE',
      `./../${marker}`,
    );
    await expectRefused(
      [{ name: 'evil-dotdot-deep', entries: [{ path: '../sibling/secret', type: 'file', data: 'pwned' }] }],
      'UNPACK_PATH_ESCAPE',
      '../sibling/secret',
    );
  });

  it('refuses a member with an absolute path', async () => {
    await expectRefused(
      [{ name: 'evil-absolute', entries: [{ path: join(sibling, 'secret'), type: 'file', data: 'pwned' }] }],
      'UNPACK_PATH_ESCAPE',
      join(sibling, 'secret'),
    );
  });

  it('refuses a hardlink to a host file, by absolute or relative name', async () => {
    await expectRefused(
      [
        {
          name: 'evil-hardlink-abs',
          entries: [{ path: './stolen', type: 'hardlink', linkpath: join(sibling, 'secret') }],
        },
      ],
      'UNPACK_BAD_HARDLINK',
      './stolen',
    );
    await expectRefused(
      [
        {
          name: 'evil-hardlink-rel',
          entries: [{ path: './stolen', type: 'hardlink', linkpath: '../sibling/secret' }],
        },
      ],
      'UNPACK_BAD_HARDLINK',
      './stolen',
    );
  });

  it('refuses a hardlink through a symlink out of the tree, and to a file of another package', async () => {
    await expectRefused(
      [
        {
          name: 'evil-hardlink-via-link',
          entries: [
            { path: './out', type: 'symlink', linkpath: sibling },
            { path: './stolen', type: 'hardlink', linkpath: './out/secret' },
          ],
        },
      ],
      'UNPACK_BAD_HARDLINK',
      './stolen',
    );
    await expectRefused(
      [
        { name: 'innocent', entries: [{ path: './shadow', type: 'file', data: 'x' }] },
        {
          name: 'evil-hardlink-other',
          entries: [{ path: './copy', type: 'hardlink', linkpath: './shadow' }],
        },
      ],
      'UNPACK_BAD_HARDLINK',
      './copy',
    );
  });

  it('refuses a device node outside /dev, also when a planted /dev link leads elsewhere', async () => {
    await expectRefused(
      [
        {
          name: 'evil-device',
          entries: [
            { path: './etc/', type: 'dir' },
            { path: './etc/disk', type: 'blockdev', mode: 0o666, devmajor: 8, devminor: 0 },
          ],
        },
      ],
      'UNPACK_DEVICE_NOT_ALLOWED',
      './etc/disk',
    );
    await expectRefused(
      [
        { name: 'planter', entries: [{ path: './dev', type: 'symlink', linkpath: 'etc' }] },
        {
          name: 'evil-device-via-link',
          entries: [{ path: './dev/null', type: 'chardev', devmajor: 1, devminor: 3 }],
        },
      ],
      'UNPACK_DEVICE_NOT_ALLOWED',
      './dev/null',
    );
  });

  it('replaces a symlink to a host file instead of writing through it', async () => {
    const before = snapshotOutsideRoot();
    const pkg = await writeDeb(debs, {
      name: 'replace-link',
      entries: [
        { path: './secret', type: 'symlink', linkpath: join(sibling, 'secret') },
        { path: './secret', type: 'file', data: 'inside' },
        { path: './dir', type: 'symlink', linkpath: join(sibling, 'dir') },
        { path: './dir/', type: 'dir' },
      ],
    });
    await unpackPackages([pkg], root, {});
    expect(readFileSync(join(root, 'secret'), 'utf8')).toBe('inside');
    expect(lstatSync(join(root, 'dir')).isDirectory()).toBe(true);
    expect(snapshotOutsideRoot()).toEqual(before);
  });

  it('clamps links planted by an earlier package inside the root', async () => {
    const before = snapshotOutsideRoot();
    const planter = await writeDeb(debs, {
      name: 'planter',
      entries: [
        { path: './tmp/', type: 'dir' },
        { path: './up', type: 'symlink', linkpath: '../../../../..' },
        { path: './slash', type: 'symlink', linkpath: '/' },
      ],
    });
    const user = await writeDeb(debs, {
      name: 'user',
      entries: [
        { path: `./up/tmp/${marker}`, type: 'file', data: 'clamped' },
        { path: `./slash/tmp/${marker}.2`, type: 'file', data: 'clamped' },
      ],
    });
    await unpackPackages([planter], root, {});
    await unpackPackages([user], root, {});
    expect(readFileSync(join(root, 'tmp', marker), 'utf8')).toBe('clamped');
    expect(readFileSync(join(root, 'tmp', `${marker}.2`), 'utf8')).toBe('clamped');
    expect(existsSync(join('/tmp', marker))).toBe(false);
    expect(snapshotOutsideRoot()).toEqual(before);
  });

  it('refuses a member under a planted link to a host directory that does not exist in the root', async () => {
    const planter = await writeDeb(debs, {
      name: 'planter',
      entries: [{ path: './host', type: 'symlink', linkpath: sibling }],
    });
    await unpackPackages([planter], root, {});
    await expectRefused(
      [{ name: 'follower', entries: [{ path: './host/secret', type: 'file', data: 'pwned' }] }],
      'UNPACK_NOT_A_DIRECTORY',
      './host/secret',
    );
  });
});

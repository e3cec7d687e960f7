import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PackageFile } from '../../src/assemble/types.js';
import { mergedUsrDirectories, setupMergedUsr, unpackPackages } from '../../src/assemble/unpack.js';
import type { LockFile } from '../../src/lock/lock-file.js';
import { runCli } from '../helpers/cli.js';
import { type ReferenceEntry, referenceListing } from '../helpers/deb-builder.js';
import { compareTree } from '../helpers/tree-compare.js';

/**
 * A real package set from the host's mirror, unpacked by rootcast and checked entry by entry
 * against what dpkg-deb's own extraction of each package says (read by node-tar): type,
 * mode with setuid bits, numeric owner, content hash, link target, mtime, hardlinks.
 */
for (const release of ['bookworm', 'trixie'] as const) {
  const recipeName = release === 'bookworm' ? 'debian-12-minbase' : 'debian-13-minbase';
  describe(`unpacking ${recipeName}`, () => {
    let dir: string;
    let packages: PackageFile[];

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'rootcast-unpack-e2e-'));
      const recipe = join(dir, `${recipeName}.yaml`);
      const store = join(dir, 'store');
      await copyFile(new URL(`../../recipes/${recipeName}.yaml`, import.meta.url), recipe);
      for (const verb of ['lock', 'fetch']) {
        const result = await runCli([verb, recipe, '--store', store]);
        if (result.code !== 0) throw new Error(`rootcast ${verb} failed: ${result.stderr}`);
      }
      const lock = JSON.parse(await readFile(join(dir, `${recipeName}.lock.json`), 'utf8')) as LockFile;
      packages = lock.packages.map((p) => ({
        name: p.name,
        version: p.version,
        arch: p.arch,
        file: join(store, 'packages', 'sha256', p.sha256),
      }));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('matches dpkg-deb for every entry of every package', async () => {
      const root = join(dir, 'root');
      await mkdir(root);
      const started = performance.now();
      setupMergedUsr(root, release, 'amd64');
      const unpacked = await unpackPackages(packages, root, {});
      const seconds = (performance.now() - started) / 1000;
      console.log(`${recipeName}: ${packages.length} packages unpacked in ${seconds.toFixed(2)} s`);

      const listings: { name: string; entries: ReferenceEntry[] }[] = [];
      for (const pkg of packages)
        listings.push({ name: pkg.name, entries: await referenceListing(pkg.file) });
      expect(compareTree(root, listings, mergedUsrDirectories(release, 'amd64'))).toEqual([]);

      // The .list form dpkg keeps: one path per member, in archive order.
      unpacked.forEach((pkg, index) => {
        const expected = (listings[index]?.entries ?? []).map((e) => {
          const rel = e.path.replace(/^\.\/?/, '').replace(/\/$/, '');
          return rel === '' ? '/.' : `/${rel}`;
        });
        expect(pkg.paths, pkg.name).toEqual(expected);
      });
      const dpkg = unpacked.find((p) => p.name === 'dpkg');
      expect(dpkg?.control).toMatch(/^Package: dpkg\n/);
      expect(dpkg?.controlFiles.get('postinst')?.mode).toBe(0o755);
      expect(dpkg?.controlFiles.get('md5sums')?.data.toString()).toMatch(/ {2}usr\/bin\/dpkg\n/);
    });
  });
}

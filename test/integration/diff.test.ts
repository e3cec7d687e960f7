import { chmod, chown, link, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffPackages, diffTemplates, type TemplateDiff } from '../../src/api/diff.js';
import { formatDiff } from '../../src/cli/maintenance.js';
import { sha256Hex } from '../../src/core/digest.js';
import { createStagingDir } from '../../src/store/layers.js';
import { readTemplate } from '../../src/store/template-query.js';
import { commitTemplate } from '../../src/store/templates.js';
import { commitSmall, EPOCH, lockText } from './maintenance-fixtures.js';

describe('rootcast diff', () => {
  let store: string;
  let diff: TemplateDiff;
  beforeAll(async () => {
    store = join(await mkdtemp(join(tmpdir(), 'rootcast-')), 'store');
    await commitSmall(
      store,
      'old',
      {
        'etc/hostname': 'old\n',
        'etc/same': 'same content\n',
        'etc/same-size': 'abc\n',
        'etc/mode': 'x',
        'etc/owner': 'x',
        'etc/gone': 'bye\n',
        'usr/lib/kind': 'was a file',
      },
      lockText('old', {
        kept: { version: '1.0', content: 'kept' },
        upgraded: { version: '1.0', content: 'up 1' },
        dropped: { version: '0.1', content: 'dropped' },
      }),
    );
    // The new tree by hand: modes, owners and links need more than commitSmall writes.
    const tree = await createStagingDir(store);
    await mkdir(join(tree, 'etc'));
    await mkdir(join(tree, 'usr/lib/kind'), { recursive: true });
    await writeFile(join(tree, 'etc/hostname'), 'new hostname\n');
    await writeFile(join(tree, 'etc/same'), 'same content\n');
    await writeFile(join(tree, 'etc/same-size'), 'xyz\n');
    await writeFile(join(tree, 'etc/mode'), 'x');
    await chmod(join(tree, 'etc/mode'), 0o600);
    await writeFile(join(tree, 'etc/owner'), 'x');
    await chown(join(tree, 'etc/owner'), 1000, 1000);
    await symlink('hostname', join(tree, 'etc/link'));
    await writeFile(join(tree, 'etc/new'), 'hello\n');
    await link(join(tree, 'etc/new'), join(tree, 'etc/new-hardlink'));
    await commitTemplate({
      store,
      name: 'new',
      version: '1.0',
      tree,
      sourceDateEpoch: EPOCH,
      clampTree: true,
      arch: 'amd64',
      lock: lockText('new', {
        kept: { version: '1.0', content: 'kept' },
        upgraded: { version: '2.0', content: 'up 2' },
        added: { version: '5', content: 'added' },
      }),
      recipeDigest: `sha256:${'1'.repeat(64)}`,
      cacheKey: `sha256:${sha256Hex('new')}`,
    });
    diff = await diffTemplates('old:1.0', 'new:1.0', { store });
  });
  afterAll(async () => {
    await rm(join(store, '..'), { recursive: true, force: true });
  });

  it('lists packages added, removed and changed with versions', () => {
    expect(diff.packages).toEqual({
      added: [{ name: 'added', arch: 'amd64', to: '5' }],
      removed: [{ name: 'dropped', arch: 'amd64', from: '0.1' }],
      changed: [{ name: 'upgraded', arch: 'amd64', from: '1.0', to: '2.0' }],
    });
  });

  it('lists files added, removed and changed, by what changed', () => {
    expect(diff.files.added.map((f) => [f.path, f.facts.type])).toEqual([
      ['/etc/link', 'symlink'],
      ['/etc/new', 'file'],
      ['/etc/new-hardlink', 'file'],
    ]);
    expect(diff.files.removed.map((f) => f.path)).toEqual(['/etc/gone']);
    expect(diff.files.changed.map((f) => [f.path, f.changed])).toEqual([
      ['/etc/hostname', ['size', 'content']],
      ['/etc/mode', ['mode']],
      ['/etc/owner', ['owner']],
      ['/etc/same-size', ['content']],
      ['/usr/lib/kind', ['type']],
    ]);
    const sameSize = diff.files.changed.find((f) => f.path === '/etc/same-size');
    expect(sameSize?.from.sha256).toBe(sha256Hex('abc\n'));
    expect(sameSize?.to.sha256).toBe(sha256Hex('xyz\n'));
    expect(diff.files.added.find((f) => f.path === '/etc/link')?.facts.target).toBe('hostname');
  });

  it('hashes only regular files of equal size', () => {
    // etc/same, etc/same-size, etc/mode and etc/owner; not etc/hostname (sizes differ).
    expect(diff.hashed).toBe(4);
  });

  it('finds nothing between a template and itself without reading a file', async () => {
    const same = await diffTemplates('old:1.0', 'old:1.0', { store });
    expect(same.packages).toEqual({ added: [], removed: [], changed: [] });
    expect(same.files).toEqual({ added: [], removed: [], changed: [] });
    expect(same.hashed).toBe(0);
  });

  it('prints packages then files, grouped and sorted', () => {
    const text = formatDiff(diff);
    expect(text).toContain('packages: 1 added, 1 removed, 1 changed\n');
    expect(text).toContain('  ~ upgraded:amd64 1.0 → 2.0\n');
    expect(text).toContain('  ~ /etc/mode (mode 0644→0600)\n');
    expect(text.indexOf('packages:')).toBeLessThan(text.indexOf('files:'));
    expect(text.indexOf('+ /etc/link')).toBeLessThan(text.indexOf('+ /etc/new'));
  });

  it('fails clearly on a missing unpacked layer', async () => {
    const layer = (await readTemplate(store, 'old:1.0')).layers[0]!;
    await rename(layer.unpackedPath, `${layer.unpackedPath}.away`);
    try {
      await expect(diffTemplates('old:1.0', 'new:1.0', { store })).rejects.toMatchObject({
        code: 'LAYER_NOT_UNPACKED',
      });
    } finally {
      await rename(`${layer.unpackedPath}.away`, layer.unpackedPath);
    }
  });

  it('diffPackages treats a rebuilt package of the same version as changed', () => {
    const p = { name: 'x', arch: 'amd64', version: '1' };
    expect(diffPackages([{ ...p, sha256: 'a' }], [{ ...p, sha256: 'b' }]).changed).toEqual([
      { name: 'x', arch: 'amd64', from: '1', to: '1' },
    ]);
  });
});

import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUpper, materializeParent, snapshotTree } from '../../src/assemble/copy-layer.js';
import { mountOverlay, mountPoints, unmountOverlay } from '../../src/assemble/overlay.js';
import { cleanStore } from '../../src/store/clean.js';
import { checkLayerTree, layerEpochs } from '../../src/store/layer-check.js';
import { createStagingDir } from '../../src/store/layers.js';
import { ANNOTATION } from '../../src/store/oci.js';
import { readTemplate } from '../../src/store/template-query.js';
import { openTemplateView, withTemplateView } from '../../src/store/template-view.js';
import { commitTemplate } from '../../src/store/templates.js';
import { diffManifests, treeManifest } from '../helpers/tree-manifest.js';

const exec = promisify(execFile);
const EPOCH = 1_700_000_000;
const LOCK = '{"lockVersion":1}';

/**
 * A child layer as `rootcast build` makes one: changes made through an overlay over the
 * parent's unpacked layer, then its upper directory committed with `parent`. The layer tar
 * must carry OCI whiteouts, the unpacked layer overlay's own, and the two views must agree.
 */
describe('layered templates', () => {
  let dir: string;
  let store: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-layered-'));
    store = join(dir, 'store');
    const base = await createStagingDir(store);
    await mkdir(join(base, 'etc'));
    await mkdir(join(base, 'd/sub'), { recursive: true });
    await writeFile(join(base, 'etc/gone'), 'deleted by the child\n');
    await writeFile(join(base, 'etc/kept'), 'kept\n');
    await writeFile(join(base, 'etc/changed'), 'before\n');
    await writeFile(join(base, 'd/x'), 'x\n');
    await writeFile(join(base, 'd/sub/y'), 'y\n');
    await commitTemplate({
      store,
      name: 'base',
      version: '1',
      tree: base,
      sourceDateEpoch: EPOCH,
      arch: 'amd64',
      lock: LOCK,
      recipeDigest: `sha256:${'1'.repeat(64)}`,
      cacheKey: `sha256:${'2'.repeat(64)}`,
    });

    const staging = await createStagingDir(store);
    const paths = {
      upper: join(staging, 'upper'),
      work: join(staging, 'work'),
      target: join(staging, 'root'),
    };
    for (const p of Object.values(paths)) await mkdir(p);
    const parent = await readTemplate(store, 'base:1');
    await mountOverlay({ lowers: parent.layers.map((l) => l.unpackedPath).reverse(), ...paths });
    try {
      await rm(join(paths.target, 'etc/gone'));
      await writeFile(join(paths.target, 'etc/changed'), 'after\n');
      await rm(join(paths.target, 'd'), { recursive: true });
      await mkdir(join(paths.target, 'd'));
      await writeFile(join(paths.target, 'd/z'), 'z\n');
      await writeFile(join(paths.target, 'new'), 'added\n');
    } finally {
      await unmountOverlay(paths.target);
    }
    await commitTemplate({
      store,
      name: 'child',
      version: '1',
      tree: paths.upper,
      parent: 'base:1',
      sourceDateEpoch: EPOCH,
      arch: 'amd64',
      lock: LOCK,
      buildInputs: '{"inputs":true}',
      recipeDigest: `sha256:${'3'.repeat(64)}`,
      cacheKey: `sha256:${'4'.repeat(64)}`,
    });
    await rm(staging, { recursive: true, force: true });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists the parent layers first and names the parent', async () => {
    const [base, child] = await Promise.all([readTemplate(store, 'base:1'), readTemplate(store, 'child:1')]);
    expect(child.layers).toHaveLength(2);
    expect(child.layers[0]).toEqual(base.layers[0]);
    expect(child.config.rootfs.diff_ids).toEqual(child.layers.map((l) => l.diffId));
    expect(child.config.history).toHaveLength(2);
    expect(child.annotations[ANNOTATION.parent]).toBe(base.manifestDigest);
    expect(child.annotations[ANNOTATION.buildInputs]).toMatch(/^sha256:/);
    expect(await readdir(join(store, 'layers'))).toHaveLength(2);
  });

  it('writes OCI whiteouts into the layer tar and keeps overlay whiteouts on disk', async () => {
    const child = await readTemplate(store, 'child:1');
    const top = child.layers[1]!;
    const { stdout } = await exec('sh', [
      '-c',
      `zstd -dc '${join(store, 'blobs/sha256', top.digest.slice(7))}' | tar -tf -`,
    ]);
    const names = stdout.trim().split('\n').sort();
    expect(names).toEqual(['d/', 'd/.wh..wh..opq', 'd/z', 'etc/', 'etc/.wh.gone', 'etc/changed', 'new']);
    const whiteout = await lstat(join(top.unpackedPath, 'etc/gone'));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
    const { stdout: xattr } = await exec('getfattr', [
      '--absolute-names',
      '-n',
      'trusted.overlay.opaque',
      '--only-values',
      join(top.unpackedPath, 'd'),
    ]);
    expect(xattr).toBe('y');
  });

  it('each unpacked layer, overlay whiteouts included, archives to its diff_id again (what fsck --repair checks)', async () => {
    const child = await readTemplate(store, 'child:1');
    const checks = await Promise.all(
      child.layers.map((l, i) =>
        checkLayerTree(l.unpackedPath, l.diffId, {
          epochs: layerEpochs(child.config, i),
          overlayUpper: i > 0,
        }),
      ),
    );
    expect(checks).toEqual(['intact', 'intact']);
    // The wrong form (the child's upper dir read as a plain tree) does not pass for intact.
    expect(
      await checkLayerTree(child.layers[1]!.unpackedPath, child.layers[1]!.diffId, {
        epochs: [EPOCH],
        overlayUpper: false,
      }),
    ).toBe('unverified');
  });

  it('shows the merged tree through a read-only view, and leaves no mount behind', async () => {
    const seen = await withTemplateView(store, 'child:1', async (root) => ({
      etc: (await readdir(join(root, 'etc'))).sort(),
      d: (await readdir(join(root, 'd'))).sort(),
      changed: await readFile(join(root, 'etc/changed'), 'utf8'),
      top: (await readdir(root)).sort(),
    }));
    expect(seen).toEqual({
      etc: ['changed', 'kept'],
      d: ['z'],
      changed: 'after\n',
      top: ['d', 'etc', 'new'],
    });
    expect((await mountPoints()).filter((p) => p.startsWith(store))).toEqual([]);
  });

  it('without overlayfs: a copy of the parent plus collected changes gives the same tree', async () => {
    const staging = await createStagingDir(store);
    const tree = join(staging, 'root');
    const upper = join(staging, 'upper');
    await mkdir(tree);
    await mkdir(upper);
    const parent = await readTemplate(store, 'base:1');
    await materializeParent(
      parent.layers.map((l) => l.unpackedPath),
      tree,
    );
    const before = snapshotTree(tree);
    await rm(join(tree, 'etc/gone'));
    await writeFile(join(tree, 'etc/changed'), 'after\n');
    await rm(join(tree, 'd'), { recursive: true });
    await mkdir(join(tree, 'd'));
    await writeFile(join(tree, 'd/z'), 'z\n');
    await writeFile(join(tree, 'new'), 'added\n');
    const stats = collectUpper(tree, before, upper);
    // d was removed and made again: opaque if it got another inode, else whiteouts for its old
    // entries (ext4 readily reuses the inode); the merged tree is the same either way.
    expect(stats.removed).toBeGreaterThanOrEqual(1);
    await commitTemplate({
      store,
      name: 'child-copy',
      version: '1',
      tree: upper,
      parent: 'base:1',
      sourceDateEpoch: EPOCH,
      arch: 'amd64',
      lock: LOCK,
      recipeDigest: `sha256:${'5'.repeat(64)}`,
      cacheKey: `sha256:${'6'.repeat(64)}`,
    });
    await rm(staging, { recursive: true, force: true });
    // Type, mode, owner, link target, size and content hash, xattrs, link count: file by file.
    const overlayTree = await withTemplateView(store, 'child:1', async (root) => treeManifest(root));
    const copyTree = await withTemplateView(store, 'child-copy:1', async (root) => treeManifest(root));
    expect(diffManifests(overlayTree, copyTree)).toEqual([]);
    expect([...copyTree.keys()]).toContain('/d/z');
    const top = (await readTemplate(store, 'child-copy:1')).layers[1]!;
    const { stdout } = await exec('sh', [
      '-c',
      `zstd -dc '${join(store, 'blobs/sha256', top.digest.slice(7))}' | tar -tf -`,
    ]);
    expect(stdout.trim().split('\n')).toEqual(
      expect.arrayContaining(['d/z', 'etc/.wh.gone', 'etc/changed', 'new']),
    );
  });

  it('a view left mounted by a dead process is unmounted by cleanStore', async () => {
    const view = await openTemplateView(store, await readTemplate(store, 'child:1'));
    // Pretend its owner died: rename its directory to a pid that cannot exist.
    const owner = join(view.root, '..');
    const orphan = join(store, 'tmp', '999999999-0123456789abcdef');
    await exec('mount', [
      '--move',
      view.root,
      await (async () => {
        await mkdir(join(orphan, 'view'), { recursive: true });
        return join(orphan, 'view');
      })(),
    ]);
    await rm(owner, { recursive: true, force: true });
    expect((await mountPoints()).some((p) => p.startsWith(orphan))).toBe(true);
    await cleanStore(store);
    expect((await mountPoints()).some((p) => p.startsWith(orphan))).toBe(false);
    await expect(lstat(orphan)).rejects.toThrow();
  });
});

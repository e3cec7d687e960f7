import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/core/digest.js';
import { openBlobStore } from '../../src/store/blob-store.js';
import { checkStore } from '../../src/store/clean.js';
import { exportTemplateTar } from '../../src/store/export-tar.js';
import { createStagingDir } from '../../src/store/layers.js';
import { readIndex } from '../../src/store/layout.js';
import { MEDIA_TYPE_LAYER_ZSTD } from '../../src/store/oci.js';
import { storeLayout } from '../../src/store/paths.js';
import { tarTree } from '../../src/store/tar-writer.js';
import {
  findByCacheKey,
  listTemplates,
  readTemplate,
  readTemplateLock,
  resolveTemplate,
} from '../../src/store/template-query.js';
import { type CommitTemplateOptions, commitTemplate, tagTemplate } from '../../src/store/templates.js';
import { buildFixtureTree, FIXTURE_EPOCH } from './store-fixtures.js';

const LOCK = '{"lockVersion":1,"packages":[]}\n';

async function stagedFixture(store: string, order: 'forward' | 'reverse' = 'forward'): Promise<string> {
  const tree = await createStagingDir(store);
  await buildFixtureTree(tree, order);
  return tree;
}

function options(
  store: string,
  tree: string,
  extra: Partial<CommitTemplateOptions> = {},
): CommitTemplateOptions {
  return {
    store,
    name: 'fixture',
    version: '1.0',
    tree,
    sourceDateEpoch: FIXTURE_EPOCH,
    arch: 'amd64',
    lock: LOCK,
    recipeDigest: 'sha256:1111111111111111111111111111111111111111111111111111111111111111',
    cacheKey: 'sha256:2222222222222222222222222222222222222222222222222222222222222222',
    ...extra,
  };
}

describe('templates in the OCI layout', () => {
  let dir: string;
  let store: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    store = join(dir, 'store');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('commits a tree: layer blob, unpacked layer, config, manifest, lock and tag', async () => {
    const tree = await stagedFixture(store);
    const result = await commitTemplate(options(store, tree));
    expect(result.ref).toBe('fixture:1.0');
    const [layer] = result.layers;
    expect(layer?.reused).toBe(false);
    // The staging tree was moved, not copied.
    expect(existsSync(tree)).toBe(false);
    expect(layer?.path).toBe(storeLayout.layer(store, layer!.diffId));
    expect(await readFile(join(layer!.path, 'etc/hostname'), 'utf8')).toBe('fixture\n');

    expect(JSON.parse(await readFile(join(store, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = await readIndex(store);
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name']).toBe('fixture:1.0');
    expect(index.manifests[0]?.digest).toBe(result.manifestDigest);

    const details = await readTemplate(store, 'fixture:1.0');
    expect(details.manifest.layers[0]?.mediaType).toBe(MEDIA_TYPE_LAYER_ZSTD);
    expect(details.config).toMatchObject({
      architecture: 'amd64',
      os: 'linux',
      created: '2023-11-14T22:13:20Z',
      rootfs: { type: 'layers', diff_ids: [layer!.diffId] },
    });
    expect(details.annotations['org.rootcast.cache-key']).toBe(options(store, tree).cacheKey);
    expect(details.layers[0]).toMatchObject({ diffId: layer!.diffId, unpacked: true });
    expect(await readTemplateLock(store, 'fixture:1.0')).toBe(LOCK);

    // The zstd CLI reads the blob, and the tar inside hashes to the diff_id.
    const blob = storeLayout.blob(store, layer!.digest);
    const tar = join(dir, 'layer.tar');
    execFileSync('zstd', ['-q', '-d', blob, '-o', tar]);
    expect(`sha256:${(await sha256File(tar)).hex}`).toBe(layer!.diffId);
    expect(await readdir(storeLayout.ingest(store))).toEqual([]);
  });

  it('is reproducible: the same tree built in another order gives the same manifest digest', async () => {
    const one = await commitTemplate(options(store, await stagedFixture(store, 'forward')));
    const otherStore = join(dir, 'other');
    const two = await commitTemplate(options(otherStore, await stagedFixture(otherStore, 'reverse')));
    expect(two.manifestDigest).toBe(one.manifestDigest);
    expect(two.layers[0]?.digest).toBe(one.layers[0]?.digest);
    // Golden values: a change here changes every template's digest. Update them only on purpose
    // (a format change, or a zstd-napi upgrade that changes zstd's output). The layer digest
    // last changed when layers moved to zstd's multithreaded mode (nbWorkers >= 1, whose
    // output does not depend on the thread count; see store-compress.test.ts).
    expect(one.layers[0]?.diffId).toBe(
      'sha256:5b97a5056f43a0c9795daf6b70e6b74459588eda78826687463f1ea9d0f3447b',
    );
    expect(one.layers[0]?.digest).toBe(
      'sha256:3a442437395228baf2d17dca3c55908316dba2f7ddc1946dc1c2781ba288019c',
    );
    expect(one.manifestDigest).toBe(
      'sha256:91640919b1615a9ea3f513cd1ace1efc73cf15274aa24d008cde87182e42fde5',
    );
    const changed = await commitTemplate(
      options(join(dir, 'third'), await stagedFixture(join(dir, 'third')), { compressionLevel: 9 }),
    );
    expect(changed.layers[0]?.diffId).toBe(one.layers[0]?.diffId);
    expect(changed.layers[0]?.digest).not.toBe(one.layers[0]?.digest);
  });

  it('drops a second copy of an unpacked layer and keeps tags immutable', async () => {
    const first = await commitTemplate(options(store, await stagedFixture(store)));
    const again = await commitTemplate(options(store, await stagedFixture(store)));
    expect(again.manifestDigest).toBe(first.manifestDigest);
    expect(again.layers[0]?.reused).toBe(true);
    expect(await readdir(storeLayout.tmp(store))).toEqual([]);

    const other = { cacheKey: 'sha256:3333333333333333333333333333333333333333333333333333333333333333' };
    await expect(commitTemplate(options(store, await stagedFixture(store), other))).rejects.toMatchObject({
      code: 'TEMPLATE_EXISTS',
      exitCode: 2,
    });
    const replaced = await commitTemplate(
      options(store, await stagedFixture(store), { ...other, replace: true }),
    );
    expect(replaced.manifestDigest).not.toBe(first.manifestDigest);
    expect((await resolveTemplate(store, 'fixture:1.0')).manifestDigest).toBe(replaced.manifestDigest);
  });

  it('lists, resolves by tag and digest, tags again, and finds by cache key', async () => {
    const a = await commitTemplate(options(store, await stagedFixture(store)));
    const b = await commitTemplate(
      options(store, await stagedFixture(store), {
        name: 'another',
        version: '2',
        cacheKey: 'sha256:4444444444444444444444444444444444444444444444444444444444444444',
        lock: '{"other":true}\n',
      }),
    );
    await tagTemplate(store, a.manifestDigest, 'alias', 'latest');
    expect((await listTemplates(store)).map((t) => t.ref)).toEqual([
      'alias:latest',
      'another:2',
      'fixture:1.0',
    ]);
    const byDigest = await resolveTemplate(store, a.manifestDigest);
    expect(byDigest.entries.map((e) => e.ref).sort()).toEqual(['alias:latest', 'fixture:1.0']);
    expect((await findByCacheKey(store, options(store, '').cacheKey))?.manifestDigest).toBe(a.manifestDigest);
    expect(await findByCacheKey(store, b.layers[0]!.diffId)).toBeUndefined();
    await expect(resolveTemplate(store, 'missing:1')).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      exitCode: 2,
    });
    await expect(resolveTemplate(store, 'no-version')).rejects.toMatchObject({
      code: 'TEMPLATE_REF_INVALID',
    });
    await expect(resolveTemplate(store, 'Bad Name:1')).rejects.toMatchObject({
      code: 'TEMPLATE_NAME_INVALID',
    });
    // A template whose layer blob is gone is not a cache hit.
    await openBlobStore(store).delete(a.layers[0]!.digest);
    expect(await findByCacheKey(store, options(store, '').cacheKey)).toBeUndefined();
  });

  it('exports the flattened tree as a tar equal to the layer, atomically', async () => {
    const tree = await stagedFixture(store);
    const { stream } = tarTree(tree, { sourceDateEpoch: FIXTURE_EPOCH });
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c);
    const result = await commitTemplate(options(store, tree));
    const out = join(dir, 'export', 'fixture.tar');
    const exported = await exportTemplateTar(store, 'fixture:1.0', out);
    expect(exported.diffId).toBe(result.layers[0]?.diffId);
    expect((await readFile(out)).equals(Buffer.concat(chunks))).toBe(true);

    // A corrupt layer blob fails the export and leaves the previous file untouched.
    await writeFile(out, 'previous');
    const blob = storeLayout.blob(store, result.layers[0]!.digest);
    const bytes = await readFile(blob);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await rm(blob, { force: true });
    await writeFile(blob, bytes);
    await expect(exportTemplateTar(store, 'fixture:1.0', out)).rejects.toMatchObject({
      code: 'BLOB_CORRUPT',
    });
    expect(await readFile(out, 'utf8')).toBe('previous');
    expect((await readdir(join(dir, 'export'))).sort()).toEqual(['fixture.tar']);
  });

  it('checkStore finds missing unpacked layers and corrupt blobs', async () => {
    const result = await commitTemplate(options(store, await stagedFixture(store)));
    expect(await checkStore(store, { verifyBlobs: true })).toEqual({ problems: [], templates: 1, blobs: 4 });
    const lockBlob = storeLayout.blob(store, result.lockDigest);
    await rm(lockBlob, { force: true });
    await writeFile(lockBlob, 'not the lock');
    await rm(result.layers[0]!.path, { recursive: true, force: true });
    const { problems } = await checkStore(store, { verifyBlobs: true });
    expect(problems.map((p) => p.subject).sort()).toEqual(['fixture:1.0', result.lockDigest].sort());
    expect(problems.find((p) => p.subject === 'fixture:1.0')?.problem).toContain('unpacked layer');
  });

  it('is readable by skopeo and umoci', async (ctx) => {
    const hasSkopeo = spawnSync('skopeo', ['--version']).status === 0;
    if (!hasSkopeo) ctx.skip();
    const result = await commitTemplate(options(store, await stagedFixture(store)));
    const inspect = JSON.parse(
      execFileSync('skopeo', ['inspect', `oci:${store}:fixture:1.0`], { encoding: 'utf8' }),
    ) as { Digest: string; Architecture: string; Os: string; Layers: string[] };
    expect(inspect.Digest).toBe(result.manifestDigest);
    expect(inspect.Architecture).toBe('amd64');
    expect(inspect.Layers).toEqual([result.layers[0]?.digest]);
    // A full copy reads every blob and checks every digest.
    const copy = join(dir, 'copy');
    execFileSync('skopeo', ['copy', `oci:${store}:fixture:1.0`, `oci:${copy}:copied`], { stdio: 'pipe' });
    expect(existsSync(storeLayout.blob(copy, result.layers[0]!.digest))).toBe(true);
    if (spawnSync('umoci', ['--version']).status === 0) {
      const stat = spawnSync('umoci', ['stat', '--image', `${store}:fixture:1.0`], { encoding: 'utf8' });
      expect(stat.status, stat.stderr).toBe(0);
      expect(stat.stdout).toContain('rootcast build fixture:1.0');
    }
  });
});

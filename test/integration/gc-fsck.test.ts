import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { containersUsing } from '../../src/api/maintenance.js';
import { storePaths } from '../../src/core/context.js';
import { sha256Hex } from '../../src/core/digest.js';
import { templatesInUse } from '../../src/runtime/record.js';
import { fsckStore } from '../../src/store/fsck.js';
import { gcStore } from '../../src/store/gc.js';
import { updateIndex } from '../../src/store/layout.js';
import { acquireLock, buildLockPath } from '../../src/store/lock.js';
import { ANNOTATION } from '../../src/store/oci.js';
import { storeLayout } from '../../src/store/paths.js';
import { findByCacheKey, readTemplate } from '../../src/store/template-query.js';
import type { CommitTemplateResult } from '../../src/store/templates.js';
import { commitSmall, lockText } from './maintenance-fixtures.js';

const DEAD_PID = 999_999_999;

async function cachePackage(store: string, content: string): Promise<string> {
  const hex = sha256Hex(content);
  await mkdir(storePaths.packages(store), { recursive: true });
  await writeFile(storePaths.packageFile(store, hex), content);
  return hex;
}

async function untag(store: string, ref: string): Promise<void> {
  await updateIndex(store, (index) => ({
    ...index,
    manifests: index.manifests.filter((d) => d.annotations?.[ANNOTATION.refName] !== ref),
  }));
}

async function flipByte(path: string, offset = 10): Promise<void> {
  await chmod(path, 0o644);
  const bytes = await readFile(path);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0xff;
  await writeFile(path, bytes);
}

const PKG = {
  shared: { version: '1.0', content: 'shared package' },
  onlyA: { version: '2.0', content: 'package of a' },
  onlyB: { version: '3.0', content: 'package of b' },
};

describe('gc and fsck', () => {
  let store: string;
  let a: CommitTemplateResult;
  let b: CommitTemplateResult;
  beforeEach(async () => {
    store = join(await mkdtemp(join(tmpdir(), 'rootcast-')), 'store');
    a = await commitSmall(
      store,
      'a',
      { 'etc/hostname': 'a\n' },
      lockText('a', { shared: PKG.shared, onlya: PKG.onlyA }),
    );
    b = await commitSmall(
      store,
      'b',
      { 'etc/hostname': 'b\n', 'usr/bin/tool': 'tool' },
      lockText('b', { shared: PKG.shared, onlyb: PKG.onlyB }),
    );
    for (const p of Object.values(PKG)) await cachePackage(store, p.content);
  });
  afterEach(async () => {
    await rm(join(store, '..'), { recursive: true, force: true });
  });

  it('gc keeps everything a tag reaches', async () => {
    const report = await gcStore(store, { templatesInUse });
    expect(report.removed).toEqual([]);
    expect(report.kept).toEqual({ manifests: 2, blobs: 8, layers: 2, packages: 3 });
  });

  it('gc after an untag removes exactly the unreachable blobs, layer and packages', async () => {
    await untag(store, 'b:1.0');
    const stray = join(storeLayout.ingest(store), `${DEAD_PID}-abcdef`);
    await mkdir(storeLayout.ingest(store), { recursive: true });
    await writeFile(stray, 'half a blob');
    const indexFile = join(storePaths.indexes(store), 'sha256', sha256Hex('index'));
    await mkdir(join(indexFile, '..'), { recursive: true });
    await writeFile(indexFile, 'index');

    const bBlobs = [b.manifestDigest, b.configDigest, b.lockDigest, b.layers[0]!.digest];
    const expected = [
      ...bBlobs.map((d) => storeLayout.blob(store, d)).sort(),
      storeLayout.layer(store, b.layers[0]!.diffId),
      storePaths.packageFile(store, sha256Hex(PKG.onlyB.content)),
      stray,
    ];

    const dry = await gcStore(store, { templatesInUse, dryRun: true });
    expect(dry.removed.map((r) => r.path)).toEqual(expected);
    expect(dry.bytesFreed).toBeGreaterThan(0);
    for (const path of expected) expect(existsSync(path)).toBe(true);

    const kept = await gcStore(store, { templatesInUse, keepPackages: true });
    expect(kept.removed.map((r) => r.path)).toEqual(expected.filter((p) => !p.includes('/packages/')));
    expect(kept.bytesFreed).toBe(dry.bytesFreed - PKG.onlyB.content.length);
    for (const path of expected) expect(existsSync(path)).toBe(path.includes('/packages/'));

    const report = await gcStore(store, { templatesInUse });
    expect(report.removed.map((r) => r.path)).toEqual([
      storePaths.packageFile(store, sha256Hex(PKG.onlyB.content)),
    ]);
    expect(existsSync(indexFile)).toBe(true);
    expect(existsSync(storePaths.packageFile(store, sha256Hex(PKG.onlyA.content)))).toBe(true);
    expect(existsSync(storePaths.packageFile(store, sha256Hex(PKG.shared.content)))).toBe(true);
    // a is untouched and still a complete build-cache hit.
    expect((await findByCacheKey(store, `sha256:${sha256Hex('a')}`))?.manifestDigest).toBe(a.manifestDigest);
    expect((await fsckStore(store, { containersUsing })).problems).toEqual([]);

    expect((await gcStore(store, { templatesInUse, indexes: true })).removed.map((r) => r.path)).toEqual([
      indexFile,
    ]);
  });

  it('gc refuses to run while a build holds its lock', async () => {
    const lock = await acquireLock(buildLockPath(store, 'a'));
    try {
      await expect(gcStore(store, { templatesInUse })).rejects.toMatchObject({ code: 'STORE_LOCK_TIMEOUT' });
    } finally {
      await lock.release();
    }
  });

  it('a sound store has no problems', async () => {
    const report = await fsckStore(store, { containersUsing });
    expect(report.problems).toEqual([]);
    expect(report.checked).toEqual({ templates: 2, blobs: 8, packages: 3, indexes: 0 });
    expect(report.rebuild).toEqual([]);
  });

  it('fsck finds a flipped byte in a layer blob; --repair removes it, keeps the intact unpacked layer; a rebuild restores it', async () => {
    const layer = a.layers[0]!;
    await flipByte(storeLayout.blob(store, layer.digest));
    const report = await fsckStore(store, { containersUsing });
    expect(report.problems).toEqual([
      {
        code: 'FSCK_BLOB_CORRUPT',
        subject: layer.digest,
        message: expect.stringContaining(layer.digest),
        templates: ['a:1.0'],
      },
    ]);
    expect(report.rebuild).toEqual(['a:1.0']);
    expect(existsSync(storeLayout.blob(store, layer.digest))).toBe(true);

    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.problems.map((p) => [p.code, p.repaired])).toEqual([['FSCK_BLOB_CORRUPT', true]]);
    // Only the blob: the unpacked layer still archives to its diff_id, so it stays.
    expect(repaired.removed).toEqual([storeLayout.blob(store, layer.digest)]);
    expect(repaired.layers).toEqual([
      {
        diffId: layer.diffId,
        path: storeLayout.layer(store, layer.diffId),
        check: 'intact',
        containers: [],
        removed: false,
      },
    ]);
    expect(existsSync(storeLayout.layer(store, layer.diffId))).toBe(true);
    expect(repaired.rebuild).toEqual(['a:1.0']);
    // The build cache no longer offers the damaged template, so a build commits it again.
    expect(await findByCacheKey(store, `sha256:${sha256Hex('a')}`)).toBeUndefined();
    const after = await fsckStore(store, { containersUsing });
    expect(after.problems.map((p) => [p.code, p.subject])).toEqual([['FSCK_BLOB_MISSING', layer.digest]]);

    const again = await commitSmall(
      store,
      'a',
      { 'etc/hostname': 'a\n' },
      lockText('a', { shared: PKG.shared, onlya: PKG.onlyA }),
    );
    expect(again.manifestDigest).toBe(a.manifestDigest);
    expect((await fsckStore(store, { containersUsing })).problems).toEqual([]);
    expect((await readTemplate(store, 'a:1.0')).layers[0]?.unpacked).toBe(true);
  });

  it('fsck reports corrupt manifests, missing layers, corrupt packages, strays and dead temporaries', async () => {
    await flipByte(storeLayout.blob(store, b.manifestDigest), 5);
    await rm(storeLayout.layer(store, a.layers[0]!.diffId), { recursive: true });
    const pkg = storePaths.packageFile(store, sha256Hex(PKG.onlyA.content));
    await writeFile(pkg, 'not the package');
    const strayFile = join(storePaths.packages(store), 'README');
    await writeFile(strayFile, 'hello');
    await mkdir(storeLayout.tmp(store), { recursive: true });
    const deadTree = join(storeLayout.tmp(store), `${DEAD_PID}-0123abcd`);
    await mkdir(deadTree);
    const liveTree = join(storeLayout.tmp(store), `${process.pid}-0123abcd`);
    await mkdir(liveTree);

    const report = await fsckStore(store, { containersUsing });
    const seen = report.problems.map((p) => [p.code, p.subject, p.templates]);
    expect(seen).toEqual([
      ['FSCK_BLOB_CORRUPT', b.manifestDigest, ['b:1.0']],
      ['FSCK_LAYER_MISSING', a.layers[0]!.diffId, ['a:1.0']],
      ['FSCK_PACKAGE_CORRUPT', `sha256:${sha256Hex(PKG.onlyA.content)}`, []],
      ['FSCK_STRAY_FILE', strayFile, []],
      ['FSCK_TEMPORARY', deadTree, []],
    ]);
    expect(report.rebuild).toEqual(['a:1.0', 'b:1.0']);

    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.problems.filter((p) => !p.repaired).map((p) => p.code)).toEqual(['FSCK_LAYER_MISSING']);
    for (const path of [pkg, strayFile, deadTree, storeLayout.blob(store, b.manifestDigest)])
      expect(existsSync(path)).toBe(false);
    expect(existsSync(liveTree)).toBe(true);
    // gc cannot follow b's manifest any more, so it keeps blobs rather than guess.
    const gc = await gcStore(store, { templatesInUse, dryRun: true });
    expect(gc.warnings).toEqual([expect.stringContaining(b.manifestDigest)]);
    expect(gc.removed.filter((r) => r.kind === 'blob')).toEqual([]);
  });
});

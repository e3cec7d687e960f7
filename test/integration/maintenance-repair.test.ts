import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { containersUsing } from '../../src/api/maintenance.js';
import { sha256Hex } from '../../src/core/digest.js';
import { type ContainersUsing, fsckStore } from '../../src/store/fsck.js';
import { createStagingDir } from '../../src/store/layers.js';
import { acquireLock } from '../../src/store/lock.js';
import { storeLayout } from '../../src/store/paths.js';
import { readTemplate } from '../../src/store/template-query.js';
import { type CommitTemplateResult, commitTemplate } from '../../src/store/templates.js';
import { runCli } from '../helpers/cli.js';
import { commitSmall, EPOCH, lockText, writeContainerSync } from './maintenance-fixtures.js';

async function flipByte(path: string, offset = 10): Promise<void> {
  await chmod(path, 0o644);
  const bytes = await readFile(path);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0xff;
  await writeFile(path, bytes);
}

/** A container record as `rootcast clone` writes it (src/runtime/record.ts), without the clone. */
async function writeContainer(store: string, name: string, template: CommitTemplateResult): Promise<void> {
  writeContainerSync(store, name, template);
}

/** Whether another process could take `path` shared now (util-linux flock, as rootcast's locks). */
function lockFree(path: string): boolean {
  try {
    execFileSync('flock', ['--shared', '--nonblock', path, 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * `fsck --repair` after a layer blob is damaged: the unpacked layer is checked on its own, kept
 * when intact or when a container stacks it, and every problem names the containers it affects.
 */
describe('fsck --repair of a damaged layer blob, with containers', () => {
  let store: string;
  let a: CommitTemplateResult;
  beforeEach(async () => {
    store = join(await mkdtemp(join(tmpdir(), 'rootcast-')), 'store');
    a = await commitSmall(store, 'a', { 'etc/hostname': 'a\n', 'usr/bin/tool': 'tool' }, lockText('a', {}));
    await commitSmall(store, 'b', { 'etc/hostname': 'b\n' }, lockText('b', {}));
  });
  afterEach(async () => {
    await rm(join(store, '..'), { recursive: true, force: true });
  });

  const layerDir = () => storeLayout.layer(store, a.layers[0]!.diffId);
  const layerBlob = () => storeLayout.blob(store, a.layers[0]!.digest);

  it('names the containers of a damaged template, and keeps their intact layer', async () => {
    await writeContainer(store, 'c1', a);
    await writeContainer(store, 'c2', a);
    await flipByte(layerBlob());
    const report = await fsckStore(store, { containersUsing });
    expect(report.problems.map((p) => [p.code, p.templates, p.containers])).toEqual([
      ['FSCK_BLOB_CORRUPT', ['a:1.0'], ['c1', 'c2']],
    ]);
    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.removed).toEqual([layerBlob()]);
    expect(repaired.layers).toEqual([
      {
        diffId: a.layers[0]!.diffId,
        path: layerDir(),
        check: 'intact',
        containers: ['c1', 'c2'],
        removed: false,
      },
    ]);
    expect(repaired.warnings).toEqual([]);
    expect(existsSync(join(layerDir(), 'usr/bin/tool'))).toBe(true);
  });

  it('removes a damaged unpacked layer no container uses, so the rebuild places a fresh one', async () => {
    await flipByte(layerBlob());
    await writeFile(join(layerDir(), 'usr/bin/tool'), 'TOOL');
    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.removed).toEqual([layerBlob(), layerDir()]);
    expect(repaired.layers).toMatchObject([{ check: 'unverified', containers: [], removed: true }]);
    expect(existsSync(layerDir())).toBe(false);
    const again = await commitSmall(
      store,
      'a',
      { 'etc/hostname': 'a\n', 'usr/bin/tool': 'tool' },
      lockText('a', {}),
    );
    expect(again.manifestDigest).toBe(a.manifestDigest);
    expect((await fsckStore(store, { containersUsing })).problems).toEqual([]);
  });

  it('keeps a damaged unpacked layer a container stacks, and warns naming the container', async () => {
    await writeContainer(store, 'c1', a);
    await flipByte(layerBlob());
    await writeFile(join(layerDir(), 'usr/bin/tool'), 'TOOL');
    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.removed).toEqual([layerBlob()]);
    expect(repaired.layers).toMatchObject([
      { check: 'unverified', containers: ['c1'], removed: false, keptBecause: 'containers' },
    ]);
    expect(repaired.warnings).toEqual([expect.stringMatching(/kept because container\(s\) c1 use it/)]);
    expect(existsSync(layerDir())).toBe(true);
    expect(repaired.rebuild).toEqual(['a:1.0']);
  });

  it('keeps every layer it cannot vouch for while a container record is unreadable', async () => {
    await mkdir(join(store, 'containers', 'broken'), { recursive: true });
    await writeFile(join(store, 'containers', 'broken', 'container.json'), 'not json');
    await flipByte(layerBlob());
    await writeFile(join(layerDir(), 'usr/bin/tool'), 'TOOL');
    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.layers).toMatchObject([{ check: 'unverified', containers: [], removed: false }]);
    expect(repaired.warnings).toEqual([
      expect.stringMatching(/container record unreadable: broken/),
      expect.stringMatching(/kept because a container record is unreadable/),
    ]);
    expect(repaired.layers).toMatchObject([{ keptBecause: 'records-unreadable' }]);
    expect(existsSync(layerDir())).toBe(true);
    // The CLI says why: no container uses it, a record cannot be read.
    const cli = await runCli(['fsck', '--repair', '--store', store]);
    expect(cli.stdout).toContain(
      `kept unpacked layer ${a.layers[0]!.diffId} (not verifiable against its diff_id, but a container record is unreadable`,
    );
    expect(cli.stdout).not.toContain('containers use it');
  });

  it('a missing unpacked layer names the containers that stack it; the CLI prints them', async () => {
    await writeContainer(store, 'c1', a);
    await flipByte(layerBlob());
    const human = await runCli(['fsck', '--repair', '--store', store]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(
      `FSCK_BLOB_CORRUPT ${a.layers[0]!.digest} [a:1.0] {containers: c1} (removed)`,
    );
    expect(human.stdout).toContain(`kept unpacked layer ${a.layers[0]!.diffId} {containers: c1} (intact`);
    await rm(layerDir(), { recursive: true });
    const json = await runCli(['fsck', '--store', store, '--json']);
    const result = JSON.parse(json.stdout) as { problems: { code: string; containers?: string[] }[] };
    expect(result.problems.map((p) => [p.code, p.containers])).toEqual([
      ['FSCK_BLOB_MISSING', ['c1']],
      ['FSCK_LAYER_MISSING', ['c1']],
    ]);
    expect((await readTemplate(store, 'b:1.0')).layers[0]?.unpacked).toBe(true);
  });
  it('reads the container records again under gc.lock: a container cloned while the check ran keeps its layer', async () => {
    await flipByte(layerBlob());
    await writeFile(join(layerDir(), 'usr/bin/tool'), 'TOOL');
    const gcLock = storeLayout.lock(store, 'gc');
    const reads: { lockFree: boolean }[] = [];
    const racing = (s: string): ContainersUsing => {
      const seen = containersUsing(s);
      reads.push({ lockFree: lockFree(gcLock) });
      // A clone finishes after the first read, while the blobs are hashed.
      if (reads.length === 1) writeContainerSync(store, 'late', a);
      return seen;
    };
    const repaired = await fsckStore(store, { repair: true, containersUsing: racing });
    // The second read happened with gc.lock held exclusively (nobody could take it shared).
    expect(reads).toEqual([{ lockFree: true }, { lockFree: false }]);
    expect(repaired.layers).toMatchObject([
      { check: 'unverified', containers: ['late'], removed: false, keptBecause: 'containers' },
    ]);
    expect(repaired.removed).toEqual([layerBlob()]);
    expect(existsSync(join(layerDir(), 'usr/bin/tool'))).toBe(true);
    expect(lockFree(gcLock)).toBe(true);
  });

  it('removes nothing while a build or clone holds gc.lock, and says so; the next repair does it', async () => {
    await flipByte(layerBlob());
    await writeFile(join(layerDir(), 'usr/bin/tool'), 'TOOL');
    // Builds and clone batches hold it shared for their run (src/api/build.ts, src/runtime/clone.ts).
    const held = await acquireLock(storeLayout.lock(store, 'gc'), { shared: true });
    try {
      const report = await fsckStore(store, { repair: true, containersUsing });
      expect(report.removed).toEqual([]);
      expect(report.layers).toEqual([]);
      expect(report.problems.map((p) => [p.code, p.repaired])).toEqual([['FSCK_BLOB_CORRUPT', undefined]]);
      expect(report.repairSkipped).toMatch(/gc\.lock is held by a build, clone or gc/);
      expect(report.warnings).toEqual([expect.stringMatching(/removed nothing.*fsck --repair. again/)]);
      const cli = await runCli(['fsck', '--repair', '--store', store]);
      expect(cli.code).toBe(1);
      expect(cli.stderr).toMatch(/warning: .*gc\.lock is held by a build, clone or gc/);
      expect(cli.stdout).toContain(`FSCK_BLOB_CORRUPT ${a.layers[0]!.digest} [a:1.0]\n`);
      expect(existsSync(layerBlob())).toBe(true);
      expect(existsSync(layerDir())).toBe(true);
    } finally {
      await held.release();
    }
    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.repairSkipped).toBeUndefined();
    expect(repaired.removed).toEqual([layerBlob(), layerDir()]);
  });

  it('keeps an unpacked layer another template still has an intact blob of (same diff_id, other blob)', async () => {
    // The same tree compressed at another level: another layer blob, the same diff_id, and so
    // the same unpacked layer under layers/.
    const tree = await createStagingDir(store);
    await mkdir(join(tree, 'etc'));
    await mkdir(join(tree, 'usr/bin'), { recursive: true });
    await writeFile(join(tree, 'etc/hostname'), 'a\n');
    await writeFile(join(tree, 'usr/bin/tool'), 'tool');
    const other = await commitTemplate({
      store,
      name: 'other',
      version: '1.0',
      tree,
      sourceDateEpoch: EPOCH,
      clampTree: true,
      arch: 'amd64',
      lock: lockText('other', {}),
      recipeDigest: `sha256:${'1'.repeat(64)}`,
      cacheKey: `sha256:${sha256Hex('other')}`,
      compressionLevel: 19,
    });
    expect(other.layers[0]!.diffId).toBe(a.layers[0]!.diffId);
    expect(other.layers[0]!.digest).not.toBe(a.layers[0]!.digest);
    await flipByte(layerBlob());
    // Not what rootcast's tar writer makes of it (as for a layer pulled from elsewhere).
    await writeFile(join(layerDir(), 'usr/bin/tool'), 'TOOL');

    const repaired = await fsckStore(store, { repair: true, containersUsing });
    expect(repaired.removed).toEqual([layerBlob()]);
    expect(repaired.layers).toEqual([
      {
        diffId: a.layers[0]!.diffId,
        path: layerDir(),
        check: 'unverified',
        containers: [],
        removed: false,
        keptBecause: 'intact-blob',
        templates: ['other:1.0'],
      },
    ]);
    expect(repaired.warnings).toEqual([]);
    expect(repaired.rebuild).toEqual(['a:1.0']);
    expect(existsSync(layerDir())).toBe(true);
    expect((await readTemplate(store, 'other:1.0')).layers[0]?.unpacked).toBe(true);
    // other is sound; a only misses its blob.
    const after = await fsckStore(store, { containersUsing });
    expect(after.problems.map((p) => [p.code, p.templates])).toEqual([['FSCK_BLOB_MISSING', ['a:1.0']]]);

    const cli = await runCli(['fsck', '--repair', '--store', store]);
    expect(cli.stdout).toContain(
      `kept unpacked layer ${a.layers[0]!.diffId} (not verifiable against its diff_id, but other:1.0 has an intact blob of it)\n`,
    );
  });
});

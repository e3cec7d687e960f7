import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { containersUsing } from '../../src/api/maintenance.js';
import { fsckStore } from '../../src/store/fsck.js';
import { storeLayout } from '../../src/store/paths.js';
import { readTemplate } from '../../src/store/template-query.js';
import type { CommitTemplateResult } from '../../src/store/templates.js';
import { runCli } from '../helpers/cli.js';
import { commitSmall, lockText } from './maintenance-fixtures.js';

async function flipByte(path: string, offset = 10): Promise<void> {
  await chmod(path, 0o644);
  const bytes = await readFile(path);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0xff;
  await writeFile(path, bytes);
}

/** A container record as `rootcast clone` writes it (src/runtime/record.ts), without the clone. */
async function writeContainer(store: string, name: string, template: CommitTemplateResult): Promise<void> {
  const dir = join(store, 'containers', name);
  await mkdir(dir, { recursive: true });
  const record = {
    schema: 1,
    name,
    template: { ref: 'a:1.0', digest: template.manifestDigest },
    layers: template.layers.map((l) => l.diffId),
    driver: 'copy',
    created: '2024-01-01T00:00:00.000Z',
    hostname: name,
    values: {},
    config: { env: [], cmd: ['/bin/sh'] },
  };
  await writeFile(join(dir, 'container.json'), `${JSON.stringify(record, null, 2)}\n`);
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
    expect(repaired.layers).toMatchObject([{ check: 'unverified', containers: ['c1'], removed: false }]);
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
    expect(existsSync(layerDir())).toBe(true);
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
});

import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pull, push } from '../../src/api/registry.js';
import { sha256File } from '../../src/core/digest.js';
import { exportTemplateTar } from '../../src/store/export-tar.js';
import { readTemplate, readTemplateSbom } from '../../src/store/template-query.js';
import { runCli } from '../helpers/cli.js';
import { type RunningRegistry, startRegistry } from '../integration/registry-fixtures.js';

const RECIPES = fileURLToPath(new URL('../../recipes/', import.meta.url));
const WEB = join(RECIPES, 'debian-12-web.yaml');
const env = {};

/**
 * Issue 6, acceptance 2 with real templates: minbase, and debian-12-web built `from:` it,
 * pushed to two repositories of a docker-registry on 127.0.0.1 (the second push mounts the
 * base layer instead of sending it), pulled into an empty store with the same digests, and
 * the pulled web template clones and runs a command (`rootcast clone`, `rootcast run`).
 */
describe.skipIf(!existsSync(WEB))('push and pull real Debian templates', () => {
  let dir: string;
  let source: string;
  let target: string;
  let registry: RunningRegistry;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-registry-e2e-'));
    source = join(dir, 'source');
    target = join(dir, 'target');
    // A copy of the recipes and templates: the locks are written beside them.
    await mkdir(join(dir, 'recipes'));
    await cp(join(RECIPES, '..', 'templates'), join(dir, 'templates'), { recursive: true });
    for (const recipe of ['debian-12-minbase.yaml', 'debian-12-web.yaml'])
      await cp(join(RECIPES, recipe), join(dir, 'recipes', recipe));
    const built = await runCli([
      'build',
      join(dir, 'recipes', 'debian-12-web.yaml'),
      '--store',
      source,
      '--json',
    ]);
    if (built.code !== 0) throw new Error(`build of debian-12-web failed:\n${built.stderr}`);
    registry = await startRegistry(join(dir, 'registry'));
  }, 900_000);
  afterAll(async () => {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pushes minbase, then web sending only its own layer and config and mounting the base', async () => {
    const base = await readTemplate(source, 'debian-12-minbase:1.0');
    const web = await readTemplate(source, 'debian-12-web:1.0');
    expect(web.layers.map((l) => l.digest).slice(0, -1)).toEqual(base.layers.map((l) => l.digest));

    const first = await push('debian-12-minbase:1.0', `${registry.host}/rootcast/minbase`, {
      store: source,
      insecure: true,
      env,
    });
    expect(first.mounted).toBe(0);
    const second = await push('debian-12-web:1.0', `${registry.host}/rootcast/web`, {
      store: source,
      insecure: true,
      env,
    });
    const webLayer = web.layers.at(-1)!.digest;
    const sent = second.blobs.filter(
      (b) => b.action === 'pushed' && (b.kind === 'layer' || b.kind === 'config'),
    );
    expect(sent.map((b) => b.digest)).toEqual([webLayer, web.configDigest]);
    expect(second.blobs.filter((b) => b.action === 'mounted').map((b) => b.digest)).toEqual(
      base.layers.map((l) => l.digest),
    );
    expect(second.mounted).toBe(base.layers.length);
    expect(second.bytes).toBeLessThan(base.layers.reduce((n, l) => n + l.size, 0));
  });

  it('pulls both into an empty store with the original digests', async () => {
    const base = await pull(`${registry.host}/rootcast/minbase:1.0`, { store: target, insecure: true, env });
    const web = await pull(`${registry.host}/rootcast/web:1.0`, { store: target, insecure: true, env });
    expect(base.digest).toBe((await readTemplate(source, 'debian-12-minbase:1.0')).manifestDigest);
    expect(web.digest).toBe((await readTemplate(source, 'debian-12-web:1.0')).manifestDigest);
    expect(web.template).toBe('debian-12-web:1.0');
    expect(JSON.parse(await readTemplateSbom(target, 'debian-12-web:1.0'))).toHaveProperty('packages');
    const a = join(dir, 'a.tar');
    const b = join(dir, 'b.tar');
    await exportTemplateTar(source, 'debian-12-minbase:1.0', a);
    await exportTemplateTar(target, 'debian-12-minbase:1.0', b);
    expect((await sha256File(b)).hex).toBe((await sha256File(a)).hex);
  });

  it('clones and runs the pulled web template', async () => {
    const web = await readTemplate(target, 'debian-12-web:1.0');
    expect(web.layers.every((l) => l.unpacked)).toBe(true);
    const cloned = await runCli(['clone', 'debian-12-web:1.0', 'pulled-web', '--store', target, '--json']);
    expect(cloned.code).toBe(0);
    const release = await runCli([
      'run',
      'pulled-web',
      '--store',
      target,
      '--',
      'cat',
      '/etc/debian_version',
    ]);
    expect(release).toMatchObject({ code: 0, stdout: expect.stringMatching(/^12\./) });
    const nginx = await runCli(['run', 'pulled-web', '--store', target, '--', '/usr/sbin/nginx', '-v']);
    expect(nginx.code).toBe(0);
    expect(nginx.stderr).toMatch(/nginx version/);
    expect((await runCli(['rm', 'pulled-web', '--store', target])).code).toBe(0);
  });
});

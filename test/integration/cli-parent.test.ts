import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStagingDir } from '../../src/store/layers.js';
import { commitTemplate } from '../../src/store/templates.js';
import { errorLines, jsonError, runCli } from '../helpers/cli.js';
import { startFileServer, type TestServer } from '../helpers/http-server.js';
import { createSignedRepo, type SignedRepo, testRecipeText } from '../helpers/signed-repo.js';

/**
 * A child recipe's `from:` through the command line, against a signed repository on
 * 127.0.0.1: the parent must be there, must not lead back to the child, and must be the same
 * distribution, release, architecture and variant (a child adds a layer to its parent's tree;
 * a trixie layer on a bookworm tree would be a broken system that locks and builds fine).
 */
describe('from: on the command line', () => {
  let repo: SignedRepo;
  let server: TestServer;
  let dir: string;
  let store: string;

  const recipe = (fields: Record<string, string>, install: string) =>
    testRecipeText({
      name: fields.name ?? 'r',
      uri: server.url,
      keyring: repo.keyringBinary,
      install: [install],
      ...fields,
    });
  const write = async (file: string, fields: Record<string, string>, install: string) => {
    await writeFile(join(dir, file), recipe(fields, install));
    return join(dir, file);
  };
  const lock = (path: string, ...more: string[]) => runCli(['lock', path, '--store', store, ...more]);

  beforeAll(async () => {
    repo = await createSignedRepo({ packagesPerComponent: 3 });
    server = await startFileServer(repo.root);
    dir = await mkdtemp(join(tmpdir(), 'rootcast-parent-'));
    store = join(dir, 'store');
    await write('base.yaml', { name: 'base' }, 'main-pkg0');
  });
  afterAll(async () => {
    await server.close();
    await repo.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('locks a child on a recipe parent that matches it', async () => {
    const child = await write('child.yaml', { name: 'child', from: './base.yaml' }, 'main-pkg1');
    const result = await lock(child, '--json');
    expect(result.code, result.stderr).toBe(0);
    expect(await readdir(dir)).toContain('base.lock.json');
  });

  it.each([
    ['release', { release: 'other' }, 'release is other, but the parent ./base.yaml is testy'],
    ['arch', { arch: 'arm64' }, 'arch is arm64, but the parent ./base.yaml is amd64'],
    ['variant', { variant: 'minbase' }, 'variant is minbase, but the parent ./base.yaml is essential'],
  ])('refuses a child whose %s differs from its parent', async (field, fields, expected) => {
    const path = await write(
      `wrong-${field}.yaml`,
      { name: 'wrong', from: './base.yaml', ...fields },
      'main-pkg1',
    );
    const result = await lock(path);
    expect(result.code).toBe(2);
    const { message, hint } = errorLines(result);
    // Points at the child's line for the field, as other recipe errors do.
    expect(message).toMatch(new RegExp(`^${path}:\\d+:\\d+: ${expected}$`));
    expect(hint).toContain("parent's");
    expect(jsonError(await lock(path, '--json')).code).toBe('FROM_MISMATCH');
    expect(await readdir(dir)).not.toContain(`wrong-${field}.lock.json`);
  });

  it('reads a template parent from its lock in the store, and refuses one of another release', async () => {
    const path = await write('on-template.yaml', { name: 'on-template', from: 'base:1.0' }, 'main-pkg1');
    const missing = await lock(path, '--json');
    expect(missing.code).toBe(2);
    expect(jsonError(missing).code).toBe('FROM_NOT_FOUND');

    // A template whose lock says it is another release (as if built from another recipe).
    const baseLock = JSON.parse(await readFile(join(dir, 'base.lock.json'), 'utf8')) as { release: string };
    const commit = async (release: string, version: string) => {
      const tree = await createStagingDir(store);
      await mkdir(join(tree, 'etc'));
      await writeFile(join(tree, 'etc/hostname'), 'base\n');
      await commitTemplate({
        store,
        name: 'base',
        version,
        tree,
        sourceDateEpoch: 1_700_000_000,
        arch: 'amd64',
        lock: `${JSON.stringify({ ...baseLock, release })}\n`,
        recipeDigest: `sha256:${'1'.repeat(64)}`,
        cacheKey: `sha256:${version === '1.0' ? '2' : '3'}${'2'.repeat(63)}`,
      });
    };
    await commit('testy', '1.0');
    const fits = await lock(path, '--json');
    expect(fits.code, fits.stderr).toBe(0);

    await commit('other', '2.0');
    const other = await write('on-other.yaml', { name: 'on-other', from: 'base:2.0' }, 'main-pkg1');
    const result = await lock(other);
    expect(result.code).toBe(2);
    expect(errorLines(result).message).toMatch(
      /:\d+:\d+: release is testy, but the parent base:2.0 is other$/,
    );
  });

  it('refuses a chain of recipes that leads back to itself', async () => {
    await write('loop-a.yaml', { name: 'loop-a', from: './loop-b.yaml' }, 'main-pkg1');
    const b = await write('loop-b.yaml', { name: 'loop-b', from: './loop-a.yaml' }, 'main-pkg1');
    const result = await lock(b, '--json');
    expect(result.code).toBe(2);
    expect(jsonError(result).code).toBe('FROM_CYCLE');
  });
});

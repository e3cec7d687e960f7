import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { openBlobStore } from '../../src/store/blob-store.js';
import { createStagingDir } from '../../src/store/layers.js';
import { updateIndex } from '../../src/store/layout.js';
import { ANNOTATION, MEDIA_TYPE_MANIFEST } from '../../src/store/oci.js';
import { readTemplate } from '../../src/store/template-query.js';
import { commitTemplate } from '../../src/store/templates.js';
import { errorLines, jsonError, runCli } from '../helpers/cli.js';
import { startFileServer, type TestServer } from '../helpers/http-server.js';
import { createSignedRepo, type SignedRepo, testRecipeText } from '../helpers/signed-repo.js';

/**
 * Store paths and digests that are the user's mistake, through the real command line: every
 * verb refuses a `--store` that is not a directory before it reads anything or contacts the
 * mirror (exit 2, `STORE_NOT_A_DIRECTORY`), and `inspect sha256:<digest>` of a blob that is
 * not a template manifest says so (exit 2, `TEMPLATE_NOT_FOUND`) instead of reporting a
 * corrupt store, while a listed manifest that does not parse still does.
 */
describe('a --store that is not a directory', () => {
  let repo: SignedRepo;
  let server: TestServer;
  let dir: string;
  let file: string;
  let recipe: string;

  beforeAll(async () => {
    repo = await createSignedRepo({ packagesPerComponent: 2 });
    server = await startFileServer(repo.root);
    dir = await mkdtemp(join(tmpdir(), 'rootcast-err-store-'));
    file = join(dir, 'not-a-store');
    await writeFile(file, 'a regular file\n');
    recipe = join(dir, 'r.yaml');
    await writeFile(
      recipe,
      testRecipeText({ name: 'r', uri: server.url, keyring: repo.keyringBinary, install: ['main-pkg0'] }),
    );
  });
  afterAll(async () => {
    await server.close();
    await repo.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const expectRefused = async (args: string[], store: string, env?: NodeJS.ProcessEnv) => {
    server.resetCounts();
    const withStore = env ? args : [...args, '--store', store];
    const result = await runCli(withStore, env ? { env } : {});
    expect(result.code, result.stderr).toBe(2);
    const { message, hint } = errorLines(result);
    expect(message).toContain(store);
    expect(message).toMatch(/not a directory|a part of its path is a file/);
    expect(hint).toContain('--store');
    const json = await runCli([...withStore, '--json'], env ? { env } : {});
    expect(json.code).toBe(2);
    expect(jsonError(json).code).toBe('STORE_NOT_A_DIRECTORY');
    // Refused before anything was fetched.
    expect(server.total()).toBe(0);
  };

  it.each([
    ['lock', () => ['lock', recipe]],
    ['lock --update', () => ['lock', '--update', recipe]],
    ['fetch', () => ['fetch', recipe]],
    ['build', () => ['build', recipe]],
    ['ls', () => ['ls']],
    ['inspect', () => ['inspect', 'r:1.0']],
    ['history', () => ['history', 'r']],
    ['gc', () => ['gc']],
    ['fsck', () => ['fsck']],
  ])('%s fails at once with STORE_NOT_A_DIRECTORY', async (_verb, args) => {
    await expectRefused(args(), file);
  });

  it('refuses a store below a regular file, and one named by ROOTCAST_STORE', async () => {
    await expectRefused(['lock', recipe], join(file, 'sub'));
    await expectRefused(['ls'], file, { ROOTCAST_STORE: file });
  });

  it('build refuses it too when the recipe already has a lock (no resolve worker)', async () => {
    const store = join(dir, 'store');
    const locked = await runCli(['lock', recipe, '--store', store]);
    expect(locked.code, locked.stderr).toBe(0);
    await expectRefused(['build', recipe], file);
    await rm(join(dir, 'r.lock.json'));
  });
});

describe('inspect of a digest that is not a template manifest', () => {
  let repo: SignedRepo;
  let server: TestServer;
  let dir: string;
  let store: string;
  let manifest: string;
  let layer: string;
  let config: string;
  let lockBlob: string;

  beforeAll(async () => {
    repo = await createSignedRepo({ packagesPerComponent: 2 });
    server = await startFileServer(repo.root);
    dir = await mkdtemp(join(tmpdir(), 'rootcast-err-inspect-'));
    store = join(dir, 'store');
    const recipe = join(dir, 'base.yaml');
    await writeFile(
      recipe,
      testRecipeText({ name: 'base', uri: server.url, keyring: repo.keyringBinary, install: ['main-pkg0'] }),
    );
    const locked = await runCli(['lock', recipe, '--store', store]);
    expect(locked.code, locked.stderr).toBe(0);
    const tree = await createStagingDir(store);
    await mkdir(join(tree, 'etc'));
    await writeFile(join(tree, 'etc/hostname'), 'base\n');
    const committed = await commitTemplate({
      store,
      name: 'base',
      version: '1.0',
      tree,
      sourceDateEpoch: 1_700_000_000,
      arch: 'amd64',
      lock: await readFile(join(dir, 'base.lock.json'), 'utf8'),
      recipeDigest: `sha256:${'1'.repeat(64)}`,
      cacheKey: `sha256:${'2'.repeat(64)}`,
    });
    manifest = committed.manifestDigest;
    layer = committed.layers[0]!.digest;
    config = committed.configDigest;
    lockBlob = committed.lockDigest;
  });
  afterAll(async () => {
    await server.close();
    await repo.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const inspect = (ref: string, ...more: string[]) => runCli(['inspect', ref, '--store', store, ...more]);

  it('inspects the template by its manifest digest', async () => {
    const result = await inspect(manifest, '--json');
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as { digest: string }).digest).toBe(manifest);
  });

  it.each([
    ['layer', () => layer],
    ['config', () => config],
    ['lock', () => lockBlob],
  ])('a %s blob: TEMPLATE_NOT_FOUND, exit 2, not a corrupt store', async (_kind, digest) => {
    const result = await inspect(digest());
    expect(result.code, result.stderr).toBe(2);
    const { message, hint } = errorLines(result);
    expect(message).toContain(digest());
    expect(message).toContain('not a template manifest');
    expect(hint).toContain('rootcast ls --all');
    expect(hint).not.toContain('fsck');
    const json = await inspect(digest(), '--json');
    expect(jsonError(json).code).toBe('TEMPLATE_NOT_FOUND');
  });

  it('a digest of no blob at all is still TEMPLATE_NOT_FOUND', async () => {
    const result = await inspect(`sha256:${'9'.repeat(64)}`, '--json');
    expect(result.code).toBe(2);
    expect(jsonError(result).code).toBe('TEMPLATE_NOT_FOUND');
  });

  it('takes an unlisted manifest blob (removed by rmi, not yet collected) and one a listed manifest reaches', async () => {
    // A copy of the template's manifest that index.json does not list: still a manifest, so
    // `tag <digest>` can undo an rmi until gc runs. Then named as the parent of another listed
    // (untagged) manifest: reachable too.
    const blobs = openBlobStore(store);
    const doc = JSON.parse((await blobs.read(manifest)).toString('utf8')) as {
      annotations?: Record<string, string>;
    };
    const copy = await blobs.putBytes(
      Buffer.from(canonicalJson({ ...doc, annotations: { ...doc.annotations, 'test.copy': 'parent' } })),
      MEDIA_TYPE_MANIFEST,
    );
    const unlisted = await inspect(copy.digest, '--json');
    expect(unlisted.code, unlisted.stderr).toBe(0);
    expect((JSON.parse(unlisted.stdout) as { digest: string }).digest).toBe(copy.digest);

    const child = await blobs.putBytes(
      Buffer.from(
        canonicalJson({ ...doc, annotations: { ...doc.annotations, [ANNOTATION.parent]: copy.digest } }),
      ),
      MEDIA_TYPE_MANIFEST,
    );
    await updateIndex(store, (index) => ({ ...index, manifests: [...index.manifests, child] }));
    const reached = await inspect(copy.digest, '--json');
    expect(reached.code, reached.stderr).toBe(0);
    expect((JSON.parse(reached.stdout) as { digest: string }).digest).toBe(copy.digest);
    expect((await readTemplate(store, copy.digest)).manifestDigest).toBe(copy.digest);
  });

  it('a manifest index.json lists that is not JSON is still reported as corrupt', async () => {
    // index.json names the layer blob as a manifest: intact bytes, unusable manifest.
    await updateIndex(store, (index) => ({
      ...index,
      manifests: [...index.manifests, { mediaType: MEDIA_TYPE_MANIFEST, digest: layer, size: 1 }],
    }));
    const result = await inspect(layer);
    expect(result.code).toBe(1);
    expect(errorLines(result).message).toContain('not JSON');
    const json = await inspect(layer, '--json');
    expect(jsonError(json).code).toBe('STORE_MANIFEST_INVALID');
  });
});

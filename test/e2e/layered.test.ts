import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTemplate } from '../../src/store/template-query.js';
import { withTemplateView } from '../../src/store/template-view.js';
import { runCli } from '../helpers/cli.js';
import { diffManifests, formatDifference, treeManifest } from '../helpers/tree-manifest.js';

const exec = promisify(execFile);

interface Built {
  template: string;
  digest: string;
  layers: { digest: string; diffId: string; size: number }[];
  cached: boolean;
  explain?: string[];
}

const CHILDREN = ['dev', 'web', 'lab'] as const;
const RECIPES = ['minbase', ...CHILDREN].map((r) => `debian-12-${r}`);

/**
 * Files allowed to differ between a child built over its parent and a flat build of the same
 * package set (docs/reproducibility.md says why each one differs).
 */
const LAYERING_VOLATILE = ['/var/lib/dpkg/status-old'];

/**
 * Issue 4 on the real mirror: the shipped family (minbase, then dev, web and lab over it)
 * built as one graph into one store; layers shared, children equal to flat builds, the cache
 * exact per layer, versions kept, gc and fsck safe around shared layers.
 */
describe('layered templates (debian-12 minbase, dev, web, lab)', () => {
  let dir: string;
  let store: string;
  let first: Built[];
  const recipe = (name: string) => join(dir, 'recipes', `${name}.yaml`);
  const build = async (args: string[], into = store, env: NodeJS.ProcessEnv = {}) => {
    const result = await runCli(['build', ...args, '--store', into, '--json'], { env });
    if (result.code !== 0) throw new Error(`build failed:\n${result.stderr}`);
    const parsed = JSON.parse(result.stdout) as Built | { templates: Built[] };
    return 'templates' in parsed ? parsed.templates : [parsed];
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-layered-e2e-'));
    store = join(dir, 'store');
    await mkdir(join(dir, 'recipes'));
    await mkdir(join(dir, 'templates'));
    for (const name of RECIPES)
      await copyFile(new URL(`../../recipes/${name}.yaml`, import.meta.url), recipe(name));
    for (const file of await readdir(new URL('../../templates/', import.meta.url)))
      await copyFile(new URL(`../../templates/${file}`, import.meta.url), join(dir, 'templates', file));
    first = await build(RECIPES.map(recipe));
  }, 900_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores minbase once; each child adds one layer and nothing else', async () => {
    const [base, ...children] = first as [Built, ...Built[]];
    expect(base.layers).toHaveLength(1);
    for (const child of children) {
      expect(child.layers).toHaveLength(2);
      expect(child.layers[0]).toEqual(base.layers[0]);
    }
    const diffIds = new Set(first.flatMap((b) => b.layers.map((l) => l.diffId.slice(7))));
    expect(diffIds.size).toBe(4);
    expect((await readdir(join(store, 'layers'))).sort()).toEqual([...diffIds].sort());
    expect(await readdir(join(store, 'tmp'))).toEqual([]);
    const layerBytes = [
      ...new Map(first.flatMap((b) => b.layers.map((l) => [l.digest, l.size]))).values(),
    ].reduce((a, b) => a + b);
    let blobBytes = 0;
    for (const name of await readdir(join(store, 'blobs/sha256')))
      blobBytes += (await stat(join(store, 'blobs/sha256', name))).size;
    // Configs, manifests, locks, SBOMs and build inputs are the only other blobs.
    expect(blobBytes).toBeGreaterThanOrEqual(layerBytes);
    expect(blobBytes / layerBytes).toBeLessThan(1.05);
  });

  it('each child equals a flat build of the same packages and files', async () => {
    const flatStore = join(dir, 'flat-store');
    const flatDir = join(dir, 'flat');
    await mkdir(flatDir);
    await copyFile(recipe('debian-12-minbase'), join(flatDir, 'debian-12-minbase.yaml'));
    for (const child of CHILDREN) {
      const text = await readFile(recipe(`debian-12-${child}`), 'utf8');
      await writeFile(join(flatDir, `debian-12-${child}.yaml`), text.replace(/^from:.*\n/m, ''));
    }
    await exec('cp', ['-r', join(dir, 'templates'), join(dir, 'flat-templates')]);
    await exec('mv', [join(dir, 'flat-templates'), join(flatDir, 'templates')]);
    const flat = await build(
      CHILDREN.map((c) => join(flatDir, `debian-12-${c}.yaml`)),
      flatStore,
    );
    for (const [i, child] of CHILDREN.entries()) {
      expect(flat[i]!.layers).toHaveLength(1);
      const left = treeManifest(
        (await readTemplate(flatStore, `debian-12-${child}:1.0`)).layers[0]!.unpackedPath,
      );
      const differences = await withTemplateView(store, `debian-12-${child}:1.0`, async (root) => {
        const right = treeManifest(root);
        return diffManifests(left, right)
          .filter((d) => !LAYERING_VOLATILE.includes(d.path))
          .map((d) => formatDifference(d, left, right));
      });
      expect({ child, differences }).toEqual({ child, differences: [] });
    }
  }, 900_000);

  it('without overlayfs (copy assembly) a child has the same tree', async () => {
    const copyStore = join(dir, 'copy-store');
    const [web] = await build([recipe('debian-12-web')], copyStore, { ROOTCAST_LAYER_ASSEMBLY: 'copy' });
    expect(web!.layers).toHaveLength(2);
    expect(web!.layers[0]).toEqual(first[0]!.layers[0]);
    const left = await withTemplateView(store, 'debian-12-web:1.0', async (root) => treeManifest(root));
    const differences = await withTemplateView(copyStore, 'debian-12-web:1.0', async (root) => {
      const right = treeManifest(root);
      return diffManifests(left, right).map((d) => formatDifference(d, left, right));
    });
    expect(differences).toEqual([]);
  }, 600_000);

  it('an unchanged family is answered by the cache; one changed file rebuilds only its layer', async () => {
    const again = await build(RECIPES.map(recipe));
    expect(again.map((b) => b.cached)).toEqual([true, true, true, true]);
    expect(again.map((b) => b.digest)).toEqual(first.map((b) => b.digest));

    const page = join(dir, 'templates', 'web-index.html.hbs');
    await writeFile(page, `${await readFile(page, 'utf8')}<!-- edited -->\n`);
    const changed = await build([...RECIPES.map(recipe), '--explain']);
    expect(changed.map((b) => b.cached)).toEqual([true, true, false, true]);
    const web = changed[2]!;
    expect(web.layers[0]).toEqual(first[0]!.layers[0]);
    expect(web.layers[1]!.digest).not.toBe(first[2]!.layers[1]!.digest);
    expect(web.explain?.join('\n')).toContain('files./var/www/html/index.html.content changed');
    expect(changed[1]!.explain).toEqual([expect.stringContaining('unchanged')]);

    // The previous web stays addressable by digest, and diff shows the edit.
    const diff = await runCli(['diff', first[2]!.digest, 'debian-12-web:1.0', '--store', store, '--json']);
    expect(diff.code).toBe(0);
    const files = (JSON.parse(diff.stdout) as { files: { changed: { path: string }[] } }).files;
    expect(files.changed.map((f) => f.path)).toEqual(['/var/www/html/index.html']);
  }, 600_000);

  it('gc after removing the children keeps minbase; fsck finds a flipped byte and a rebuild restores it', async () => {
    for (const child of CHILDREN) {
      const rmi = await runCli(['rmi', `debian-12-${child}:1.0`, '--store', store]);
      expect(rmi.code).toBe(0);
    }
    const gc = await runCli(['gc', '--store', store, '--json']);
    expect(gc.code).toBe(0);
    expect(await readdir(join(store, 'layers'))).toEqual([first[0]!.layers[0]!.diffId.slice(7)]);
    const [base] = await build([recipe('debian-12-minbase')]);
    expect(base).toMatchObject({ cached: true, digest: first[0]!.digest });

    const blob = join(store, 'blobs/sha256', first[0]!.layers[0]!.digest.slice(7));
    await exec('chmod', ['u+w', blob]);
    const handle = await open(blob, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 1000);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 1000);
    await handle.close();
    const fsck = await runCli(['fsck', '--store', store, '--json']);
    expect(fsck.code).toBe(1);
    expect(fsck.stdout).toContain(first[0]!.layers[0]!.digest);
    // Repaired (the blob and its unpacked layer removed), but exit 1 until minbase is rebuilt.
    const repair = await runCli(['fsck', '--repair', '--store', store]);
    expect(repair.code).toBe(1);
    expect(repair.stdout + repair.stderr).toContain('debian-12-minbase:1.0');
    const [rebuilt] = await build([recipe('debian-12-minbase')]);
    expect(rebuilt).toMatchObject({ cached: false, digest: first[0]!.digest });
    expect((await runCli(['fsck', '--store', store])).code).toBe(0);
  }, 600_000);
});

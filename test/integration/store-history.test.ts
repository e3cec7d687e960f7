import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listAllTemplates, removeTemplate, tagTemplate, templateHistory } from '../../src/api/tags.js';
import { openBlobStore } from '../../src/store/blob-store.js';
import { createStagingDir } from '../../src/store/layers.js';
import { readIndex } from '../../src/store/layout.js';
import { ANNOTATION, MEDIA_TYPE_MANIFEST } from '../../src/store/oci.js';
import { storeLayout } from '../../src/store/paths.js';
import {
  listTemplates,
  MANIFEST_MAX_BYTES,
  readTemplate,
  resolveTemplate,
} from '../../src/store/template-query.js';
import {
  type CommitTemplateResult,
  commitTemplate,
  pointLatest,
  tagTemplate as tagInStore,
} from '../../src/store/templates.js';
import { errorLines, runCli } from '../helpers/cli.js';

const EPOCH = 1_700_000_000;
const KEY = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('template versions: history, latest, tag, rmi', () => {
  let dir: string;
  let store: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    store = join(dir, 'store');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Commits a one-file tree whose content is `content`, moving the tag (as `rootcast build` does). */
  async function commit(
    name: string,
    version: string,
    content: string,
    extra: { replace?: boolean; latest?: boolean } = { replace: true, latest: true },
  ): Promise<CommitTemplateResult> {
    const tree = await createStagingDir(store);
    await writeFile(join(tree, 'content'), content);
    return commitTemplate({
      store,
      name,
      version,
      tree,
      sourceDateEpoch: EPOCH,
      arch: 'amd64',
      lock: `{"content":${JSON.stringify(content)}}\n`,
      recipeDigest: KEY(1),
      cacheKey: KEY(content.length % 9),
      ...extra,
    });
  }

  it('keeps the previous manifest of a rebuilt tag addressable and in history, newest first', async () => {
    const one = await commit('web', '1.0', 'a');
    const two = await commit('web', '1.0', 'bb');
    const three = await commit('web', '1.0', 'ccc');
    expect(new Set([one, two, three].map((c) => c.manifestDigest)).size).toBe(3);

    // Only tags are templates; the old manifests resolve and read by digest.
    expect((await listTemplates(store)).map((t) => [t.ref, t.manifestDigest])).toEqual([
      ['web:1.0', three.manifestDigest],
      ['web:latest', three.manifestDigest],
    ]);
    const old = await readTemplate(store, one.manifestDigest);
    expect(old.manifestDigest).toBe(one.manifestDigest);
    expect(old.entries).toEqual([]);
    expect((await resolveTemplate(store, two.manifestDigest)).manifestDigest).toBe(two.manifestDigest);

    const history = await templateHistory('web', { store });
    expect(history.map((h) => [h.digest, h.current, h.tags, h.previousTags])).toEqual([
      [three.manifestDigest, true, ['web:1.0', 'web:latest'], []],
      [two.manifestDigest, false, [], ['web:1.0']],
      [one.manifestDigest, false, [], ['web:1.0']],
    ]);
    expect(history.map((h) => h.sequence)).toEqual([3, 2, 1]);

    const index = await readIndex(store);
    const untagged = index.manifests.filter((d) => !d.annotations?.[ANNOTATION.refName]);
    const history1 = expect.objectContaining({
      [ANNOTATION.previousRef]: 'web:1.0',
      [ANNOTATION.name]: 'web',
    });
    expect(untagged.map((d) => d.annotations)).toEqual([history1, history1]);
    expect(untagged.map((d) => d.annotations?.[ANNOTATION.cacheKey]).sort()).toEqual([KEY(1), KEY(2)]);
    expect(untagged.map((d) => d.annotations?.[ANNOTATION.sequence]).sort()).toEqual(['1', '2']);

    const all = await listAllTemplates({ store });
    expect(all.map((r) => [r.template, r.current, r.sequence])).toEqual([
      ['web:1.0', true, 3],
      ['web:1.0', false, 2],
      ['web:1.0', false, 1],
      ['web:latest', true, 3],
    ]);
    await expect(templateHistory('nothing', { store })).rejects.toMatchObject({ code: 'TEMPLATE_NOT_FOUND' });
  });

  it('moves a tag back to an old manifest without duplicating history, and writes the same bytes', async () => {
    const a = await commit('web', '1.0', 'a');
    const b = await commit('web', '1.0', 'bb');
    await commit('web', '1.0', 'a');
    const history = await templateHistory('web', { store });
    expect(history.map((h) => [h.digest, h.current])).toEqual([
      [a.manifestDigest, true],
      [b.manifestDigest, false],
    ]);
    // The index is canonical: sorted entries, no clock anywhere.
    const index = await readIndex(store);
    const refs = index.manifests.map((d) => d.annotations?.[ANNOTATION.refName] ?? '');
    expect(refs).toEqual([...refs].sort());
  });

  it('points latest at the newest commit of any version, without history for latest', async () => {
    const one = await commit('web', '1.0', 'a');
    const two = await commit('web', '2.0', 'bb');
    expect((await resolveTemplate(store, 'web:latest')).manifestDigest).toBe(two.manifestDigest);
    const three = await commit('web', '1.0', 'ccc');
    expect((await resolveTemplate(store, 'web:latest')).manifestDigest).toBe(three.manifestDigest);
    const index = await readIndex(store);
    expect(index.manifests.filter((d) => d.annotations?.[ANNOTATION.previousRef] === 'web:latest')).toEqual(
      [],
    );
    expect((await templateHistory('web', { store })).map((h) => h.digest)).toEqual([
      three.manifestDigest,
      two.manifestDigest,
      one.manifestDigest,
    ]);
    // Without `latest` (a bare commit), latest stays where it was.
    await commit('web', '3.0', 'dddd', {});
    expect((await resolveTemplate(store, 'web:latest')).manifestDigest).toBe(three.manifestDigest);
  });

  it('pointLatest moves latest to an existing manifest (a cache-answered build), writing nothing when it is there', async () => {
    const one = await commit('web', '1.0', 'a');
    const two = await commit('web', '2.0', 'bb');
    await pointLatest(store, 'web', { digest: one.manifestDigest, size: one.manifestSize }, KEY(1));
    expect((await resolveTemplate(store, 'web:latest')).manifestDigest).toBe(one.manifestDigest);
    const before = JSON.stringify(await readIndex(store));
    await pointLatest(store, 'web', { digest: one.manifestDigest, size: one.manifestSize }, KEY(1));
    expect(JSON.stringify(await readIndex(store))).toBe(before);
    expect((await resolveTemplate(store, 'web:2.0')).manifestDigest).toBe(two.manifestDigest);
  });

  it('refuses to build version "latest"', async () => {
    await expect(commit('web', 'latest', 'a')).rejects.toMatchObject({
      code: 'TEMPLATE_VERSION_RESERVED',
      exitCode: 2,
    });
  });

  it('tags by ref or digest, refuses to move a tag without force, and keeps history with force', async () => {
    const a = await commit('web', '1.0', 'a');
    const b = await commit('web', '1.1', 'bb');
    const tagged = await tagTemplate('web:1.0', 'stable:1', {}, { store });
    expect(tagged).toEqual({ template: 'stable:1', digest: a.manifestDigest });
    const again = await tagTemplate(a.manifestDigest, 'stable:1', {}, { store });
    expect(again.previous).toBeUndefined();
    await expect(tagTemplate('web:1.1', 'stable:1', {}, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_EXISTS',
      exitCode: 2,
    });
    const forced = await tagTemplate(b.manifestDigest, 'stable:1', { force: true }, { store });
    expect(forced).toEqual({ template: 'stable:1', digest: b.manifestDigest, previous: a.manifestDigest });
    expect((await templateHistory('stable', { store })).map((h) => [h.digest, h.current])).toEqual([
      [b.manifestDigest, true],
      [a.manifestDigest, false],
    ]);
    // The new tag carries the manifest's cache key (so a build can find it).
    expect((await listTemplates(store)).find((t) => t.ref === 'stable:1')?.cacheKey).toBe(KEY(2));
    await expect(tagTemplate('web:1.0', a.manifestDigest, {}, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_REF_INVALID',
    });
    await expect(tagTemplate('web:9', 'x:1', {}, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    // A history entry can be tagged again by its digest.
    const c = await commit('web', '1.0', 'ccc');
    expect(c.manifestDigest).not.toBe(a.manifestDigest);
    await tagTemplate(a.manifestDigest, 'old:1', {}, { store });
    expect((await resolveTemplate(store, 'old:1')).manifestDigest).toBe(a.manifestDigest);
  });

  it('rmi removes a tag with its history, moves latest back, and refuses to remove nothing', async () => {
    const a = await commit('web', '1.0', 'a');
    const b = await commit('web', '1.0', 'bb');
    const c = await commit('web', '2.0', 'ccc');
    const result = await removeTemplate('web:2.0', { store });
    expect(result.removed.map((e) => e.ref)).toEqual(['web:2.0', 'web:latest']);
    expect(result.latest).toEqual([{ ref: 'web:latest', digest: b.manifestDigest }]);
    expect((await resolveTemplate(store, 'web:latest')).manifestDigest).toBe(b.manifestDigest);

    const gone = await removeTemplate('web:1.0', { store });
    expect(gone.removed.map((e) => [e.ref ?? e.previousRef, e.digest, e.current])).toEqual(
      expect.arrayContaining([
        ['web:1.0', b.manifestDigest, true],
        ['web:1.0', a.manifestDigest, false],
      ]),
    );
    expect(gone.latest).toEqual([{ ref: 'web:latest' }]);
    expect((await readIndex(store)).manifests).toEqual([]);
    expect(c.manifestDigest).toBeTruthy();
    await expect(removeTemplate('web:1.0', { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      exitCode: 2,
    });
    await expect(removeTemplate(a.manifestDigest, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    // Until gc runs, a removed template can be tagged again by its digest (undoing the rmi).
    const back = await tagTemplate(b.manifestDigest, 'web:1.0', {}, { store });
    expect(back).toMatchObject({ digest: b.manifestDigest });
    expect((await resolveTemplate(store, 'web:1.0')).manifestDigest).toBe(b.manifestDigest);
  });

  it('rmi of a digest removes every entry naming it, and the history of the tags removed', async () => {
    const a = await commit('web', '1.0', 'a');
    const b = await commit('web', '1.0', 'bb');
    await tagTemplate('web:1.0', 'alias:1', {}, { store });
    const keep = await commit('db', '1.0', 'dddd');

    // A history entry alone: only that entry goes.
    const old = await removeTemplate(a.manifestDigest, { store });
    expect(old.removed.map((e) => [e.previousRef, e.digest])).toEqual([['web:1.0', a.manifestDigest]]);
    const c = await commit('web', '1.0', 'ccc');
    const result = await removeTemplate(c.manifestDigest, { store });
    expect(result.removed.map((e) => e.ref ?? e.previousRef).sort()).toEqual([
      'web:1.0',
      'web:1.0',
      'web:latest',
    ]);
    expect(result.latest).toEqual([{ ref: 'web:latest' }]);
    expect((await listAllTemplates({ store })).map((r) => [r.template, r.digest])).toEqual([
      ['alias:1', b.manifestDigest],
      ['db:1.0', keep.manifestDigest],
      ['db:latest', keep.manifestDigest],
    ]);
  });

  it('history takes a name, a name:version (current or past) or a digest, and refuses bad names', async () => {
    const one = await commit('mb', '1.0', 'a');
    const two = await commit('mb', '2.0', 'bb');
    const moved = await commit('mb', '1.0', 'ccc');
    await commit('other', '1.0', 'dddd');
    const byName = await templateHistory('mb', { store });
    expect(byName.map((h) => h.digest)).toEqual([
      moved.manifestDigest,
      two.manifestDigest,
      one.manifestDigest,
    ]);
    // name:version shows its name's history, whether the tag names the manifest now or did.
    expect(await templateHistory('mb:2.0', { store })).toEqual(byName);
    expect(await templateHistory('mb:latest', { store })).toEqual(byName);
    // A digest: every name whose tags name or named it; an old version by digest too.
    expect(await templateHistory(two.manifestDigest, { store })).toEqual(byName);
    expect(await templateHistory(one.manifestDigest, { store })).toEqual(byName);
    await tagTemplate(two.manifestDigest, 'alias:1', {}, { store });
    const both = await templateHistory(two.manifestDigest, { store });
    expect(both.find((h) => h.digest === two.manifestDigest)?.tags).toEqual(['alias:1', 'mb:2.0']);
    expect(both.map((h) => h.digest)).toEqual([two.manifestDigest, moved.manifestDigest, one.manifestDigest]);

    await expect(templateHistory('Bad', { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NAME_INVALID',
      exitCode: 2,
    });
    await expect(templateHistory('mb:', { store })).rejects.toMatchObject({ code: 'TEMPLATE_NAME_INVALID' });
    await expect(templateHistory('sha256:abc', { store })).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    await expect(templateHistory('mb:9.9', { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      message: expect.stringContaining('mb:9.9'),
    });
    await expect(templateHistory('nothing', { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      message: expect.stringContaining('no template named nothing'),
    });
    await expect(templateHistory(`sha256:${'0'.repeat(64)}`, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      message: expect.stringContaining('no template sha256:'),
    });
    // A layer blob is in the store but is no template.
    const layer = (await readTemplate(store, 'mb:2.0')).layers[0]!.digest;
    await expect(templateHistory(layer, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      message: expect.stringContaining('not a template manifest'),
    });
  });

  it('rmi and tag of a template that is not there create no store', async () => {
    const missing = join(dir, 'typo');
    await expect(removeTemplate('a:1', { store: missing })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      exitCode: 2,
    });
    await expect(removeTemplate(`sha256:${'0'.repeat(64)}`, { store: missing })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    await expect(tagTemplate('a:1', 'b:1', {}, { store: missing })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    expect(existsSync(missing)).toBe(false);
  });

  it('tag onto an existing tag says to pass --force', async () => {
    await commit('web', '1.0', 'a');
    await commit('web', '1.1', 'bb');
    const error = await tagTemplate('web:1.1', 'web:1.0', {}, { store }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TEMPLATE_EXISTS', exitCode: 2 });
    expect((error as Error & { hint: string }).hint).toMatch(/--force/);
    expect((error as Error & { hint: string }).hint).not.toMatch(/--replace|recipe/);
  });

  it('refuses to tag a manifest that an interrupted gc left without its config or a layer', async () => {
    const a = await commit('web', '1.0', 'a');
    await removeTemplate('web:1.0', { store });
    const indexBefore = await readFile(storeLayout.index(store), 'utf8');
    // gc removes unreachable blobs one by one: killed half-way, the manifest may outlive them.
    await rm(storeLayout.blob(store, a.layers[0]!.digest));
    for (const target of ['web:1.0', 'back:1']) {
      const error = await tagTemplate(a.manifestDigest, target, {}, { store }).catch((e: unknown) => e);
      expect(error).toMatchObject({
        code: 'TEMPLATE_INCOMPLETE',
        exitCode: 1,
        details: { manifest: a.manifestDigest, missing: [a.layers[0]!.digest] },
      });
      expect((error as Error).message).toContain(a.layers[0]!.digest);
      expect((error as Error & { hint: string }).hint).toMatch(/rebuild or pull/);
    }
    // The store's tag checks again under the store lock, as it writes the index.
    await expect(
      tagInStore(store, a.manifestDigest, 'web', '1.0', { requireComplete: true }),
    ).rejects.toMatchObject({ code: 'TEMPLATE_INCOMPLETE' });
    expect(await readFile(storeLayout.index(store), 'utf8')).toBe(indexBefore);

    // Without its config too: still TEMPLATE_INCOMPLETE (not a missing-blob read error).
    await rm(storeLayout.blob(store, a.configDigest));
    await expect(tagTemplate(a.manifestDigest, 'web:1.0', {}, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_INCOMPLETE',
      details: { missing: [a.configDigest, a.layers[0]!.digest] },
    });
    const cli = await runCli(['tag', a.manifestDigest, 'web:1.0', '--store', store]);
    expect(cli.code).toBe(1);
    expect(errorLines(cli).message).toMatch(/misses 2 blobs/);
    expect(await readFile(storeLayout.index(store), 'utf8')).toBe(indexBefore);
  });

  it('never reads a blob over 4 MiB as a manifest, even one that parses as a manifest', async () => {
    const a = await commit('web', '1.0', 'a');
    const blobs = openBlobStore(store);
    const doc = JSON.parse((await blobs.read(a.manifestDigest)).toString('utf8')) as object;
    const text = `${JSON.stringify(doc)}${' '.repeat(MANIFEST_MAX_BYTES)}`;
    const big = await blobs.putBytes(Buffer.from(text), MEDIA_TYPE_MANIFEST);
    expect(big.size).toBeGreaterThan(MANIFEST_MAX_BYTES);
    await expect(resolveTemplate(store, big.digest)).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
      message: expect.stringContaining('not a template manifest'),
    });
    await expect(tagTemplate(big.digest, 'big:1', {}, { store })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    // The same document at its own small size is one (an unlisted manifest can be tagged back).
    const small = await blobs.putBytes(Buffer.from(`${JSON.stringify(doc)}\n`), MEDIA_TYPE_MANIFEST);
    expect((await tagTemplate(small.digest, 'small:1', {}, { store })).digest).toBe(small.digest);
  });

  it('stays a valid OCI layout for skopeo with history entries present', async () => {
    await commit('web', '1.0', 'a');
    const two = await commit('web', '1.0', 'bb');
    const inspect = (ref: string) =>
      JSON.parse(execFileSync('skopeo', ['inspect', `oci:${store}:${ref}`], { encoding: 'utf8' })) as {
        Digest: string;
      };
    expect(inspect('web:1.0').Digest).toBe(two.manifestDigest);
    expect(inspect('web:latest').Digest).toBe(two.manifestDigest);
  });
});

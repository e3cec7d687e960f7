import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pull, push } from '../../src/api/registry.js';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { openBlobStore } from '../../src/store/blob-store.js';
import { MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST } from '../../src/store/oci.js';
import { readTemplate } from '../../src/store/template-query.js';
import { tagTemplate } from '../../src/store/templates.js';
import {
  commitBase,
  commitChild,
  type RegistryProxy,
  type RunningRegistry,
  startRegistry,
  startRegistryProxy,
} from './registry-fixtures.js';

const env = {};

/** Everything a reader of the store can see: blob names, layer directories, the index. */
function visible(store: string): string {
  const list = (d: string) => (existsSync(d) ? readdirSync(d).sort() : []);
  const index = existsSync(join(store, 'index.json')) ? readFileSync(join(store, 'index.json'), 'utf8') : '';
  return JSON.stringify({
    blobs: list(join(store, 'blobs/sha256')),
    layers: list(join(store, 'layers')),
    index,
  });
}

/** Temporaries left behind (the error path removes its own). */
function leftovers(store: string): string[] {
  return ['ingest', 'tmp'].flatMap((d) => (existsSync(join(store, d)) ? readdirSync(join(store, d)) : []));
}

describe('a registry that returns damaged content', () => {
  let dir: string;
  let source: string;
  let registry: RunningRegistry;
  let proxy: RegistryProxy;
  let base: Awaited<ReturnType<typeof commitBase>>;
  let child: Awaited<ReturnType<typeof commitChild>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    source = join(dir, 'source');
    registry = await startRegistry(join(dir, 'registry'));
    base = await commitBase(source);
    child = await commitChild(source, 'base:1.0');
    await push('base:1.0', `${registry.host}/lab/base`, { store: source, insecure: true, env });
    await push('child:1.0', `${registry.host}/lab/child`, { store: source, insecure: true, env });
    proxy = await startRegistryProxy(registry.host);
  });
  afterAll(async () => {
    await proxy?.close();
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails a pull into an empty store with a digest error and leaves it empty', async () => {
    const target = join(dir, 'empty');
    proxy.plan.corruptBlob = base.layers[0]!.digest;
    const attempt = pull(`${proxy.host}/lab/child:1.0`, { store: target, insecure: true, env });
    await expect(attempt).rejects.toMatchObject({ code: 'REGISTRY_DIGEST_MISMATCH', exitCode: 1 });
    await expect(attempt).rejects.toThrow(base.layers[0]!.digest);
    expect(visible(target)).toBe(visible(join(dir, 'never-created')));
    expect(leftovers(target)).toEqual([]);
    // Not even the store directory: a failed pull creates no store.
    expect(existsSync(target)).toBe(false);
  });

  it('leaves a store that has the base exactly as it was when the child layer is damaged', async () => {
    const target = join(dir, 'with-base');
    proxy.plan.corruptBlob = undefined;
    await pull(`${proxy.host}/lab/base:1.0`, { store: target, insecure: true, env });
    const before = visible(target);
    proxy.plan.corruptBlob = child.layer.digest;
    await expect(
      pull(`${proxy.host}/lab/child:1.0`, { store: target, insecure: true, env }),
    ).rejects.toMatchObject({ code: 'REGISTRY_DIGEST_MISMATCH' });
    expect(visible(target)).toBe(before);
    expect(leftovers(target)).toEqual([]);

    proxy.plan.corruptBlob = child.configDigest;
    await expect(
      pull(`${proxy.host}/lab/child:1.0`, { store: target, insecure: true, env }),
    ).rejects.toMatchObject({ code: 'REGISTRY_DIGEST_MISMATCH' });
    expect(visible(target)).toBe(before);

    proxy.plan.corruptBlob = undefined;
    const ok = await pull(`${proxy.host}/lab/child:1.0`, { store: target, insecure: true, env });
    expect(ok.digest).toBe(child.manifestDigest);
  });

  it('fails when a layer decompresses to another diff_id than the config says, importing nothing', async () => {
    const details = await readTemplate(source, 'base:1.0');
    const blobs = openBlobStore(source);
    const wrong = `sha256:${'e'.repeat(64)}`;
    const config = await blobs.putBytes(
      Buffer.from(canonicalJson({ ...details.config, rootfs: { type: 'layers', diff_ids: [wrong] } })),
      MEDIA_TYPE_CONFIG,
    );
    const manifest = await blobs.putBytes(
      Buffer.from(canonicalJson({ ...details.manifest, config })),
      MEDIA_TYPE_MANIFEST,
    );
    await tagTemplate(source, manifest.digest, 'liar', '1.0');
    await push('liar:1.0', `${registry.host}/lab/liar`, { store: source, insecure: true, env });
    const target = join(dir, 'liar');
    await expect(
      pull(`${registry.host}/lab/liar:1.0`, { store: target, insecure: true, env }),
    ).rejects.toMatchObject({ code: 'LAYER_DIFF_ID_MISMATCH' });
    expect(visible(target)).toBe(visible(join(dir, 'never-created')));
    expect(leftovers(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
  });
});

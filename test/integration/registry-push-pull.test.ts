import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pull, push } from '../../src/api/registry.js';
import { tagTemplate } from '../../src/api/tags.js';
import { nativeCalls } from '../../src/assemble/native.js';
import { sha256File } from '../../src/core/digest.js';
import { readPushedRecord } from '../../src/registry/pushed-record.js';
import { checkStore } from '../../src/store/clean.js';
import { exportTemplateTar } from '../../src/store/export-tar.js';
import { readTemplate, readTemplateSbom } from '../../src/store/template-query.js';
import { diffManifests, formatDifference, treeManifest } from '../helpers/tree-manifest.js';
import {
  commitBase,
  commitChild,
  type RegistryProxy,
  type RunningRegistry,
  startRegistry,
  startRegistryProxy,
} from './registry-fixtures.js';

const env = {};

describe('push and pull against docker-registry on 127.0.0.1', () => {
  let dir: string;
  let source: string;
  let registry: RunningRegistry;
  let base: Awaited<ReturnType<typeof commitBase>>;
  let child: Awaited<ReturnType<typeof commitChild>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    source = join(dir, 'source');
    registry = await startRegistry(join(dir, 'registry'));
    base = await commitBase(source);
    child = await commitChild(source, 'base:1.0');
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pushes the base, then the child mounting the base layer and sending only its own blobs', async () => {
    const first = await push('base:1.0', `${registry.host}/lab/base`, { store: source, insecure: true, env });
    expect(first.ref).toBe(`${registry.host}/lab/base:1.0`);
    expect(first.digest).toBe(base.manifestDigest);
    expect(first).toMatchObject({ pushed: 4, skipped: 0, mounted: 0 });
    expect(first.blobs.map((b) => b.kind)).toEqual(['layer', 'config', 'lock', 'sbom']);
    expect(first.bytes).toBeGreaterThan(base.layers[0]!.size);

    const second = await push('child:1.0', `${registry.host}/lab/child:1.0`, {
      store: source,
      insecure: true,
      env,
    });
    const byAction = (action: string) => second.blobs.filter((b) => b.action === action);
    expect(byAction('mounted').map((b) => b.digest)).toEqual([base.layers[0]!.digest]);
    expect(byAction('pushed').map((b) => `${b.kind} ${b.digest}`)).toEqual([
      `layer ${child.layer.digest}`,
      `config ${child.configDigest}`,
      `lock ${child.lock.digest}`,
      `sbom ${child.sbom.digest}`,
    ]);
    expect(second).toMatchObject({ pushed: 4, mounted: 1, skipped: 0 });
    // The base layer's bytes were not sent again.
    expect(second.bytes).toBeLessThan(base.layers[0]!.size);

    const record = await readPushedRecord(source);
    expect(record.blobs[base.layers[0]!.digest]?.map((l) => l.repository)).toEqual(['lab/child', 'lab/base']);
  });

  it('skips every blob on a second push of the same template', async () => {
    const again = await push('child:1.0', `${registry.host}/lab/child`, {
      store: source,
      insecure: true,
      env,
    });
    expect(again).toMatchObject({ pushed: 0, mounted: 0, skipped: 5 });
  });

  it('pulls both into an empty store with the same digests, layers in overlay form, SBOM and lock', async () => {
    const target = join(dir, 'pulled');
    const pulledBase = await pull(`${registry.host}/lab/base:1.0`, { store: target, insecure: true, env });
    expect(pulledBase).toMatchObject({
      template: 'base:1.0',
      digest: base.manifestDigest,
      pulled: 4,
      skipped: 0,
    });
    const pulledChild = await pull(`${registry.host}/lab/child:1.0`, { store: target, insecure: true, env });
    expect(pulledChild).toMatchObject({ template: 'child:1.0', digest: child.manifestDigest, layers: 2 });
    // The base layer came with the base: only the child's blobs travelled.
    expect(pulledChild.blobs.filter((b) => b.action === 'skipped').map((b) => b.digest)).toEqual([
      base.layers[0]!.digest,
    ]);
    expect(pulledChild.pulled).toBe(4);

    const original = await readTemplate(source, 'child:1.0');
    const pulled = await readTemplate(target, 'child:1.0');
    expect(pulled.manifestDigest).toBe(original.manifestDigest);
    expect(pulled.layers.every((l) => l.unpacked)).toBe(true);
    for (const [i, layer] of pulled.layers.entries()) {
      const differences = diffManifests(
        treeManifest(original.layers[i]!.unpackedPath),
        treeManifest(layer.unpackedPath),
      );
      expect(differences.map((d) => formatDifference(d, new Map(), new Map()))).toEqual([]);
    }
    const top = pulled.layers[1]!.unpackedPath;
    const whiteout = lstatSync(join(top, 'etc/hostname'));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
    expect(nativeCalls().lgetxattr(join(top, 'usr/share'), 'trusted.overlay.opaque').toString()).toBe('y');
    expect(lstatSync(join(top, 'usr/share/.wh..wh..opq'), { throwIfNoEntry: false })).toBeUndefined();

    expect(JSON.parse(await readTemplateSbom(target, 'child:1.0'))).toMatchObject({ name: 'child' });
    expect((await checkStore(target, { verifyBlobs: true })).problems).toEqual([]);
    const a = join(dir, 'a.tar');
    const b = join(dir, 'b.tar');
    await exportTemplateTar(source, 'base:1.0', a);
    await exportTemplateTar(target, 'base:1.0', b);
    expect((await sha256File(b)).hex).toBe((await sha256File(a)).hex);
  });

  it('pulls by digest under another name, and a second pull downloads nothing', async () => {
    const target = join(dir, 'pulled');
    const byDigest = await pull(`${registry.host}/lab/child@${child.manifestDigest}`, {
      store: target,
      insecure: true,
      env,
      tag: 'renamed:7',
    });
    expect(byDigest).toMatchObject({ template: 'renamed:7', pulled: 0 });
    const again = await pull(`${registry.host}/lab/child:1.0`, { store: target, insecure: true, env });
    expect(again).toMatchObject({ pulled: 0, skipped: 5 });
  });

  describe('through a proxy', () => {
    let proxy: RegistryProxy;
    afterAll(async () => {
      await proxy?.close();
    });

    it('falls back to chunked uploads when a monolithic PUT is refused', async () => {
      proxy = await startRegistryProxy(registry.host, { rejectMonolithic: true });
      const summary = await push('base:1.0', `${proxy.host}/chunked/base:1`, {
        store: source,
        insecure: true,
        env,
      });
      expect(summary).toMatchObject({ pushed: 4, mounted: 0 });
      expect(proxy.log.filter((l) => l.startsWith('PATCH ')).length).toBeGreaterThanOrEqual(4);
      await proxy.close();
    });

    it('follows blob redirects without sending credentials along', async () => {
      proxy = await startRegistryProxy(registry.host, { redirectBlobs: true });
      const target = join(dir, 'redirected');
      const summary = await pull(`${proxy.host}/lab/child:1.0`, {
        store: target,
        insecure: true,
        env: { ROOTCAST_REGISTRY_USERNAME: 'someone', ROOTCAST_REGISTRY_PASSWORD: 'secret' },
      });
      expect(summary.digest).toBe(child.manifestDigest);
      expect(proxy.storage.length).toBeGreaterThanOrEqual(4);
      expect(proxy.storage.every((r) => !r.authorization)).toBe(true);
      await proxy.close();
    });
  });

  it('pushes a digest that no tag names any more under its version annotation, without a tag in the ref', async () => {
    const store = join(dir, 'history');
    const old = await commitBase(store, 'hist', '3.1');
    const other = await commitBase(store, 'other', '1.0');
    // hist:3.1 moves to another manifest: the old one is an untagged history entry.
    await tagTemplate('other:1.0', 'hist:3.1', { force: true }, { store });
    expect((await readTemplate(store, old.manifestDigest)).entries).toEqual([]);
    const summary = await push(old.manifestDigest, `${registry.host}/lab/hist`, {
      store,
      insecure: true,
      env,
    });
    expect(summary).toMatchObject({ ref: `${registry.host}/lab/hist:3.1`, digest: old.manifestDigest });
    expect(summary.digest).not.toBe(other.manifestDigest);
    const pulled = await pull(`${registry.host}/lab/hist:3.1`, {
      store: join(dir, 'hist-pulled'),
      insecure: true,
      env,
    });
    expect(pulled).toMatchObject({ template: 'hist:3.1', digest: old.manifestDigest });
  });

  it('refuses plain HTTP to a host that is not loopback', async () => {
    await expect(
      push('base:1.0', 'registry.invalid:5000/lab/base', { store: source, insecure: true, env }),
    ).rejects.toMatchObject({ code: 'REGISTRY_INSECURE_NOT_LOCAL', exitCode: 2 });
  });

  it('stacks the pulled layers as an overlay: whiteouts hide, opaque dirs hide, the rest shows', async () => {
    const pulled = await readTemplate(join(dir, 'pulled'), 'child:1.0');
    const view = join(dir, 'view');
    execFileSync('mkdir', ['-p', view]);
    const lower = [...pulled.layers].reverse().map((l) => l.unpackedPath);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lower.join(':')}`, view]);
    try {
      expect(existsSync(join(view, 'etc/hostname'))).toBe(false);
      expect(readFileSync(join(view, 'etc/child.conf'), 'utf8')).toBe('child\n');
      expect(readdirSync(join(view, 'usr/share'))).toEqual(['new']);
      expect(lstatSync(join(view, 'bin/su')).mode & 0o7777).toBe(0o4755);
    } finally {
      execFileSync('umount', [view]);
    }
  });
});

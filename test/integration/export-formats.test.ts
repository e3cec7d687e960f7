import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportTemplate } from '../../src/api/export.js';
import { sha256Digest } from '../../src/core/digest.js';
import { flattenLayers } from '../../src/export/flatten.js';
import { openBlobStore } from '../../src/store/blob-store.js';
import { storeLayout } from '../../src/store/paths.js';
import { tarTree } from '../../src/store/tar-writer.js';
import { readTemplate } from '../../src/store/template-query.js';
import { diffManifests, formatDifference, treeManifest } from '../helpers/tree-manifest.js';
import { buildMerged, commitLayered, EPOCH, type LayeredFixture } from './export-fixtures.js';

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Unpacks a tarball (any compression GNU tar knows) into a new directory. */
function untar(file: string, into: string, member?: string): string {
  execFileSync('mkdir', ['-p', into]);
  const args = ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', file, '-C', into];
  execFileSync('tar', member ? [...args, member] : args);
  return into;
}

function sameTree(left: string, right: string): string[] {
  const a = treeManifest(left);
  const b = treeManifest(right);
  a.delete('/');
  b.delete('/');
  return diffManifests(a, b).map((d) => formatDifference(d, a, b));
}

describe('rootcast export formats', () => {
  let dir: string;
  let store: string;
  let fixture: LayeredFixture;
  let expectedTar: Buffer;
  let flatTree: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-export-'));
    store = join(dir, 'store');
    fixture = await commitLayered(store);
    const merged = join(dir, 'merged');
    await mkdir(merged);
    await buildMerged(merged);
    expectedTar = await collect(tarTree(merged, { sourceDateEpoch: EPOCH }).stream);
    const tar = join(dir, 'flat.tar');
    await exportTemplate('child:1.0', 'tar', tar, { store });
    flatTree = untar(tar, join(dir, 'flat'));
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('flattens a layered template to the tar of the merged tree, byte for byte', async () => {
    const details = await readTemplate(store, 'child:1.0');
    expect(details.layers.map((l) => l.digest)).toEqual([
      fixture.base.layers[0]?.digest,
      fixture.child.layers.at(-1)?.digest,
    ]);
    const out = join(dir, 'tar', 'child.tar');
    const result = await exportTemplate('child:1.0', 'tar', out, { store });
    const bytes = await readFile(out);
    expect(bytes.equals(expectedTar)).toBe(true);
    expect(result.bytes).toBe(bytes.length);
    // Exporting again gives the same bytes; no temporaries stay beside the output.
    await exportTemplate('child:1.0', 'tar', out, { store });
    expect((await readFile(out)).equals(bytes)).toBe(true);
    expect(await readdir(join(dir, 'tar'))).toEqual(['child.tar']);
  });

  it('walks one layer to exactly its blob', async () => {
    const details = await readTemplate(store, 'base:1.0');
    const layer = details.layers[0]!;
    const walked = await collect(flattenLayers([layer.unpackedPath], { sourceDateEpoch: EPOCH }).stream);
    expect(sha256Digest(walked)).toBe(layer.diffId);
  });

  it('writes an OCI layout with the store digests that skopeo reads, and a gzip one umoci unpacks', async () => {
    const oci = join(dir, 'oci');
    const result = await exportTemplate('child:1.0', 'oci', oci, { store });
    expect(result.manifestDigest).toBe(fixture.child.manifestDigest);
    const details = await readTemplate(store, 'child:1.0');
    for (const digest of [details.configDigest, ...details.layers.map((l) => l.digest)]) {
      const hex = digest.slice(7);
      expect(sha256Digest(await readFile(join(oci, 'blobs/sha256', hex)))).toBe(digest);
    }
    const inspected = JSON.parse(
      execFileSync('skopeo', ['inspect', `oci:${oci}:child:1.0`], { encoding: 'utf8' }),
    ) as {
      Digest: string;
      Layers: string[];
      Architecture: string;
    };
    expect(inspected.Digest).toBe(fixture.child.manifestDigest);
    expect(inspected.Layers).toEqual(details.layers.map((l) => l.digest));

    const gz = join(dir, 'oci-gzip');
    const gzResult = await exportTemplate('child:1.0', 'oci', gz, { store, compression: 'gzip' });
    const manifest = JSON.parse(
      (await readFile(join(gz, 'blobs/sha256', gzResult.manifestDigest!.slice(7)))).toString(),
    ) as { config: { digest: string }; layers: { mediaType: string; digest: string }[] };
    expect(manifest.config.digest).toBe(details.configDigest);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar+gzip',
    ]);
    for (const [i, l] of manifest.layers.entries()) {
      const raw = gunzipSync(await readFile(join(gz, 'blobs/sha256', l.digest.slice(7))));
      expect(sha256Digest(raw)).toBe(details.layers[i]!.diffId);
    }
    // Deterministic: a second gzip export names the same manifest.
    const again = await exportTemplate('child:1.0', 'oci', join(dir, 'oci-gzip-2'), {
      store,
      compression: 'gzip',
    });
    expect(again.manifestDigest).toBe(gzResult.manifestDigest);
    // umoci applies the OCI whiteouts itself: its rootfs must equal our flattened tree.
    const bundle = join(dir, 'umoci');
    execFileSync('umoci', ['unpack', '--image', `${gz}:child:1.0`, bundle], { stdio: 'pipe' });
    expect(sameTree(join(bundle, 'rootfs'), flatTree)).toEqual([]);
  }, 60_000);

  it('writes an oci-archive skopeo reads', async () => {
    const archive = join(dir, 'child.oci.tar');
    const result = await exportTemplate('child:1.0', 'oci-archive', archive, { store });
    const inspected = JSON.parse(
      execFileSync('skopeo', ['inspect', `oci-archive:${archive}`], { encoding: 'utf8' }),
    ) as {
      Digest: string;
    };
    expect(inspected.Digest).toBe(fixture.child.manifestDigest);
    const again = join(dir, 'again.oci.tar');
    await exportTemplate('child:1.0', 'oci-archive', again, { store });
    expect((await readFile(again)).equals(await readFile(archive))).toBe(true);
    expect(result.files[0]?.bytes).toBe((await readFile(archive)).length);
  }, 60_000);

  it('writes the OpenVZ template cache tarball under its conventional name, equal to the tar tree', async () => {
    const out = join(dir, 'vz');
    await mkdir(out);
    const result = await exportTemplate('child:1.0', 'openvz', out, { store });
    expect(result.output).toBe(join(out, 'debian-bookworm-x86_64-minbase.tar.gz'));
    expect(sameTree(untar(result.output, join(dir, 'vz-tree')), flatTree)).toEqual([]);
    const listing = execFileSync('tar', ['-tvzf', result.output], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rw-r--r-- 0\/0 /m);
    const xz = await exportTemplate('child:1.0', 'openvz', join(dir, 'vz-x.tar.xz'), { store, level: 0 });
    expect(xz.compression).toBe('xz');
    expect(sameTree(untar(xz.output, join(dir, 'vz-x-tree')), flatTree)).toEqual([]);
  });

  it('writes an Incus image: metadata.yaml as documented, rootfs/ equal to the tar tree', async () => {
    const out = join(dir, 'incus.tar.gz');
    await exportTemplate('child:1.0', 'incus', out, { store });
    const unpacked = untar(out, join(dir, 'incus'));
    const metadata = await readFile(join(unpacked, 'metadata.yaml'), 'utf8');
    expect(metadata).toContain('architecture: x86_64\n');
    expect(metadata).toContain(`creation_date: ${EPOCH}\n`);
    expect(metadata).toMatch(/properties:\n( {2}.*\n)* {2}os: debian\n/);
    expect(metadata).toMatch(/ {2}release: bookworm\n/);
    expect(sameTree(join(unpacked, 'rootfs'), flatTree)).toEqual([]);

    const split = join(dir, 'incus-split');
    const result = await exportTemplate('child:1.0', 'incus', split, { store, split: true, level: 0 });
    expect((await readdir(split)).sort()).toEqual(['incus.tar.xz', 'rootfs.squashfs']);
    expect(result.files.map((f) => f.path)).toEqual([
      join(split, 'incus.tar.xz'),
      join(split, 'rootfs.squashfs'),
    ]);
    const squashed = join(dir, 'squashed');
    execFileSync('unsquashfs', ['-no-progress', '-d', squashed, join(split, 'rootfs.squashfs')], {
      stdio: 'pipe',
    });
    expect(sameTree(squashed, flatTree)).toEqual([]);
  }, 60_000);

  it('writes an LXC image: rootfs.tar.xz and meta.tar.xz with config and excludes', async () => {
    const out = join(dir, 'lxc');
    await exportTemplate('child:1.0', 'lxc', out, { store, level: 0 });
    expect((await readdir(out)).sort()).toEqual(['meta.tar.xz', 'rootfs.tar.xz']);
    expect(sameTree(untar(join(out, 'rootfs.tar.xz'), join(dir, 'lxc-tree')), flatTree)).toEqual([]);
    const meta = untar(join(out, 'meta.tar.xz'), join(dir, 'lxc-meta'));
    expect((await readdir(meta)).sort()).toEqual([
      'config',
      'config-user',
      'create-message',
      'excludes-user',
      'templates',
    ]);
    expect(await readFile(join(meta, 'config'), 'utf8')).toMatch(/^lxc\.arch = x86_64$/m);
    expect(await readFile(join(meta, 'config-user'), 'utf8')).toContain('LXC_TEMPLATE_CONFIG/userns.conf');
    expect(await readFile(join(meta, 'excludes-user'), 'utf8')).toBe('dev/null\n');
  }, 60_000);

  it('fails without leaving anything at the output, and rejects bad requests with exit 2', async () => {
    const out = join(dir, 'fail', 'child.tar');
    await mkdir(join(dir, 'fail'));
    await writeFile(out, 'previous');
    // A corrupt layer blob fails the gzip recompression; the old file stays, no temporaries.
    const details = await readTemplate(store, 'child:1.0');
    const blob = storeLayout.blob(store, details.layers[1]!.digest);
    const bytes = await readFile(blob);
    await rm(blob, { force: true });
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 5] = (damaged[damaged.length - 5] ?? 0) ^ 0xff;
    await writeFile(blob, damaged);
    try {
      await expect(
        exportTemplate('child:1.0', 'oci', join(dir, 'fail', 'layout'), { store, compression: 'gzip' }),
      ).rejects.toMatchObject({ code: 'BLOB_CORRUPT' });
      await expect(
        exportTemplate('child:1.0', 'oci-archive', join(dir, 'fail', 'a.tar'), { store }),
      ).rejects.toMatchObject({
        code: 'BLOB_CORRUPT',
      });
      expect(await readdir(join(dir, 'fail'))).toEqual(['child.tar']);
    } finally {
      await rm(blob, { force: true });
      await writeFile(blob, bytes);
    }
    expect(await openBlobStore(store).has(details.layers[1]!.digest)).toBe(true);

    await expect(exportTemplate('child:1.0', 'vmdk', out, { store })).rejects.toMatchObject({
      code: 'EXPORT_FORMAT_UNKNOWN',
      exitCode: 2,
    });
    await expect(
      exportTemplate('child:1.0', 'tar', join(dir, 'x.tar.gz'), { store, compression: 'xz' }),
    ).rejects.toMatchObject({
      code: 'EXPORT_COMPRESSION_MISMATCH',
      exitCode: 2,
    });
    await expect(
      exportTemplate('child:1.0', 'oci', join(dir, 'o'), { store, compression: 'xz' }),
    ).rejects.toMatchObject({
      code: 'EXPORT_COMPRESSION_UNSUPPORTED',
      exitCode: 2,
    });
    await expect(exportTemplate('child:1.0', 'tar', out, { store, split: true })).rejects.toMatchObject({
      code: 'EXPORT_SPLIT_UNSUPPORTED',
    });
    await expect(exportTemplate('child:1.0', 'oci', join(dir, 'fail'), { store })).rejects.toMatchObject({
      code: 'EXPORT_OUTPUT_EXISTS',
      exitCode: 2,
    });
    await expect(exportTemplate('child:1.0', 'tar', out, { store, level: 42 })).rejects.toMatchObject({
      code: 'EXPORT_LEVEL_INVALID',
    });
    expect(await readFile(out, 'utf8')).toBe('previous');
  });
});

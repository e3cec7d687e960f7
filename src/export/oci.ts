import { chmod, mkdir, rename } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { CountingHash, digestHex, SHA256_PREFIX } from '../core/digest.js';
import { openBlobStore } from '../store/blob-store.js';
import {
  ANNOTATION,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  MEDIA_TYPE_INDEX,
  MEDIA_TYPE_MANIFEST,
  OCI_LAYOUT_VERSION,
} from '../store/oci.js';
import { tarTree } from '../store/tar-writer.js';
import { compressChunks, compressionLevel, tarballCompression } from './compression.js';
import type { Exporter, ExportOutput, ExportRequest } from './exporter.js';
import { atomicDirectory, atomicFile, withScratchDir, writeChunksToFile, writeSmallFile } from './output.js';
import { layerTarStream } from './template-tar.js';

/**
 * `--format oci` (an image layout directory) and `--format oci-archive` (the same layout as
 * one tar), holding this one template, tagged with its `name:version` as
 * `org.opencontainers.image.ref.name`, so `skopeo inspect oci:DIR:name:version` finds it.
 *
 * - zstd (default): the manifest, config and layer blobs are copied from the store as they
 *   are (verified while copied), so every digest equals the store's.
 * - gzip: each layer is read back (digest and diff_id verified) and recompressed with gzip
 *   (no name, mtime 0 in its header: deterministic), under a new manifest that names the
 *   same config (same diff_ids) and keeps the annotations.
 *
 * The lock and SBOM blobs that the manifest's annotations name travel with it, so the layout
 * is a complete copy of the template. The archive is written by the store's tar writer
 * (sorted, numeric owners, mtimes clamped to the template's epoch): deterministic too.
 */
export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Files written into a layout, relative to its root, with their sizes. */
type Written = { path: string; bytes: number }[];

async function copyBlob(
  store: string,
  digest: string,
  blobsDir: string,
  written: Written,
  signal: AbortSignal | undefined,
): Promise<void> {
  const source = await openBlobStore(store).open(digest);
  const bytes = await writeChunksToFile(join(blobsDir, digestHex(digest)), source, signal);
  written.push({ path: `blobs/sha256/${digestHex(digest)}`, bytes });
}

async function gzipLayer(
  store: string,
  layer: ExportRequest['details']['layers'][number],
  blobsDir: string,
  level: number,
  signal: AbortSignal | undefined,
): Promise<Descriptor> {
  const hash = new CountingHash();
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of compressChunks(layerTarStream(store, layer), 'gzip', level)) {
      hash.update(chunk);
      yield chunk;
    }
  }
  const tmp = join(blobsDir, `.gzip-${digestHex(layer.digest)}`);
  await writeChunksToFile(tmp, hashed(), signal);
  const hex = hash.hex();
  await rename(tmp, join(blobsDir, hex));
  return { mediaType: MEDIA_TYPE_LAYER_GZIP, digest: SHA256_PREFIX + hex, size: hash.size };
}

async function putJson(
  blobsDir: string,
  value: unknown,
  written: Written,
): Promise<{ digest: string; size: number }> {
  const bytes = Buffer.from(canonicalJson(value));
  const hash = new CountingHash();
  hash.update(bytes);
  const hex = hash.hex();
  await writeSmallFile(join(blobsDir, hex), bytes);
  written.push({ path: `blobs/sha256/${hex}`, bytes: bytes.length });
  return { digest: SHA256_PREFIX + hex, size: bytes.length };
}

/**
 * Writes the template as an OCI image layout into the empty directory `dir`. Returns the
 * manifest descriptor written to its index.json and the files written (relative paths).
 */
export async function writeOciLayout(
  request: ExportRequest,
  dir: string,
  compression: 'zstd' | 'gzip',
): Promise<{ manifest: Descriptor; files: Written }> {
  const { store, details, facts, signal } = request;
  const written: Written = [];
  const blobsDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobsDir, { recursive: true });
  for (const d of [dir, join(dir, 'blobs'), blobsDir]) await chmod(d, 0o755);
  const layoutFile = canonicalJson({ imageLayoutVersion: OCI_LAYOUT_VERSION });
  await writeSmallFile(join(dir, 'oci-layout'), layoutFile);
  written.push({ path: 'oci-layout', bytes: layoutFile.length });

  const extras = [details.configDigest, details.lockDigest, details.sbomDigest].filter(
    (d): d is string => d !== undefined,
  );
  for (const digest of extras) await copyBlob(store, digest, blobsDir, written, signal);

  let manifest: Descriptor;
  if (compression === 'zstd') {
    for (const layer of details.layers) await copyBlob(store, layer.digest, blobsDir, written, signal);
    await copyBlob(store, details.manifestDigest, blobsDir, written, signal);
    manifest = { mediaType: MEDIA_TYPE_MANIFEST, digest: details.manifestDigest, size: details.manifestSize };
  } else {
    const level = compressionLevel('gzip', request.level);
    const layers: Descriptor[] = [];
    for (const layer of details.layers) {
      const descriptor = await gzipLayer(store, layer, blobsDir, level, signal);
      layers.push(descriptor);
      written.push({ path: `blobs/sha256/${digestHex(descriptor.digest)}`, bytes: descriptor.size });
    }
    const recompressed: ImageManifest = { ...details.manifest, layers };
    manifest = { mediaType: MEDIA_TYPE_MANIFEST, ...(await putJson(blobsDir, recompressed, written)) };
  }
  const platform = {
    architecture: details.config.architecture,
    os: details.config.os,
    ...(details.config.variant ? { variant: details.config.variant } : {}),
  };
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_INDEX,
    manifests: [{ ...manifest, platform, annotations: { [ANNOTATION.refName]: facts.ref } }],
  };
  const indexText = canonicalJson(index);
  await writeSmallFile(join(dir, 'index.json'), indexText);
  written.push({ path: 'index.json', bytes: Buffer.byteLength(indexText) });
  return { manifest, files: written.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)) };
}

function layoutCompression(request: ExportRequest): 'zstd' | 'gzip' {
  return request.compression === 'gzip' ? 'gzip' : 'zstd';
}

export const ociExporter: Exporter = {
  format: 'oci',
  compressions: ['zstd', 'gzip'],
  writes: () => 'directory',
  exampleName: 'layout',
  async export(request): Promise<ExportOutput> {
    const compression = layoutCompression(request);
    const { manifest, files } = await atomicDirectory(request.output, (dir) =>
      writeOciLayout(request, dir, compression),
    );
    return {
      output: request.output,
      files: files.map((f) => ({ path: join(request.output, f.path), bytes: f.bytes })),
      compression,
      manifestDigest: manifest.digest,
    };
  },
};

export const ociArchiveExporter: Exporter = {
  format: 'oci-archive',
  compressions: ['zstd', 'gzip'],
  writes: () => 'file',
  exampleName: 'image.oci.tar',
  async export(request): Promise<ExportOutput> {
    const compression = layoutCompression(request);
    // The archive itself is a plain tar (what skopeo and podman read); -o must not say otherwise.
    tarballCompression(
      undefined,
      basename(request.output),
      ['none'],
      'none',
      'oci-archive',
      'The archive is a plain tar: --compression sets the compression of its layers.',
    );
    let manifest: Descriptor | undefined;
    const bytes = await atomicFile(request.output, (tmp) =>
      withScratchDir(request.output, async (scratch) => {
        const layout = join(scratch, 'layout');
        await mkdir(layout, { mode: 0o755 });
        manifest = (await writeOciLayout(request, layout, compression)).manifest;
        const { stream } = tarTree(layout, { sourceDateEpoch: request.facts.epoch });
        return writeChunksToFile(tmp, stream, request.signal);
      }),
    );
    return {
      output: request.output,
      files: [{ path: request.output, bytes }],
      compression,
      ...(manifest ? { manifestDigest: manifest.digest } : {}),
    };
  },
};

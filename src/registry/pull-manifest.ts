import { RootcastError } from '../core/errors.js';
import { type ImageManifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST } from '../store/oci.js';
import { fetchManifest, isDockerMediaType, MEDIA_TYPE_INDEX_OCI } from './blob-download.js';
import type { RegistryClient } from './client.js';
import { LAYER_MEDIA_TYPES } from './layer-unpack.js';
import type { RegistryRef } from './reference.js';

/**
 * The manifest a pull imports: an OCI image manifest (stored byte for byte, so the pulled
 * template has the pushed digest). An OCI image index is resolved to its entry for this
 * machine's platform (linux and the host's architecture). Docker schema 2 manifests are
 * refused: storing them would need a conversion, and the digest would change.
 */
export interface TemplateManifest {
  bytes: Buffer;
  digest: string;
  manifest: ImageManifest;
}

/** Node's `process.arch` as OCI names architectures. */
export function hostOciArchitecture(arch: string = process.arch): string {
  const table: Record<string, string> = { x64: 'amd64', ia32: '386', ppc64: 'ppc64le', loong64: 'loong64' };
  return table[arch] ?? arch;
}

function unsupported(what: string): RootcastError {
  return new RootcastError({
    code: 'REGISTRY_MANIFEST_UNSUPPORTED',
    message: `the image is ${what}, which rootcast cannot import as a template`,
    hint: 'rootcast pulls OCI image manifests (as rootcast push writes them); convert other images with skopeo copy --format oci.',
  });
}

export async function fetchTemplateManifest(
  client: RegistryClient,
  ref: RegistryRef,
): Promise<TemplateManifest> {
  let fetched = await fetchManifest(client, ref.repository, ref.digest ?? ref.tag ?? 'latest');
  if (fetched.mediaType === MEDIA_TYPE_INDEX_OCI) {
    const index = JSON.parse(fetched.bytes.toString('utf8')) as {
      manifests?: {
        digest?: string;
        mediaType?: string;
        platform?: { os?: string; architecture?: string };
      }[];
    };
    const arch = hostOciArchitecture();
    const entry = index.manifests?.find(
      (m) =>
        m.mediaType === MEDIA_TYPE_MANIFEST && m.platform?.os === 'linux' && m.platform.architecture === arch,
    );
    if (!entry?.digest) throw unsupported(`an image index without a linux/${arch} manifest`);
    fetched = await fetchManifest(client, ref.repository, entry.digest);
  }
  if (isDockerMediaType(fetched.mediaType)) throw unsupported(`a Docker manifest (${fetched.mediaType})`);
  if (fetched.mediaType !== MEDIA_TYPE_MANIFEST)
    throw unsupported(`of media type ${fetched.mediaType || 'unknown'}`);
  const manifest = JSON.parse(fetched.bytes.toString('utf8')) as ImageManifest;
  if (manifest.schemaVersion !== 2 || !manifest.config || !Array.isArray(manifest.layers))
    throw unsupported('a manifest without config or layers');
  if (manifest.config.mediaType !== MEDIA_TYPE_CONFIG)
    throw unsupported(`an artifact (config media type ${manifest.config.mediaType})`);
  for (const d of [manifest.config, ...manifest.layers]) {
    if (
      typeof d.digest !== 'string' ||
      !/^sha256:[0-9a-f]{64}$/.test(d.digest) ||
      !Number.isSafeInteger(d.size) ||
      d.size < 0
    )
      throw unsupported('a manifest with a malformed descriptor');
  }
  for (const layer of manifest.layers)
    if (!LAYER_MEDIA_TYPES.includes(layer.mediaType))
      throw unsupported(`an image with a ${layer.mediaType} layer`);
  return { bytes: fetched.bytes, digest: fetched.digest, manifest };
}

/**
 * The OCI image-spec documents the store is made of (image-spec v1.1, image-layout v1.0.0),
 * reduced to the fields rootcast writes and reads, with the media types and annotation keys
 * it uses. The store is a plain OCI image layout, so `skopeo` and `umoci` read it as it is.
 *
 * Invariants: every document is serialised with `canonicalJson` (sorted keys, compact), so
 * equal values are equal bytes and equal digests; every `digest` is `sha256:<64 hex>`.
 */

export const MEDIA_TYPE_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_TYPE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_TYPE_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MEDIA_TYPE_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const MEDIA_TYPE_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
/** The recipe's lock, stored as a blob and named from the manifest's annotations. */
export const MEDIA_TYPE_LOCK = 'application/vnd.rootcast.lock.v1+json';

export const MEDIA_TYPE_BUILD_INPUTS = 'application/vnd.rootcast.build-inputs.v1+json';

export const OCI_LAYOUT_VERSION = '1.0.0';

/** Annotation keys: the OCI ones rootcast sets, and its own under `org.rootcast.`. */
export const ANNOTATION = {
  refName: 'org.opencontainers.image.ref.name',
  created: 'org.opencontainers.image.created',
  title: 'org.opencontainers.image.title',
  version: 'org.opencontainers.image.version',
  /** Digest of everything that affects the output; equal keys mean an equal template. */
  cacheKey: 'org.rootcast.cache-key',
  recipeDigest: 'org.rootcast.recipe-digest',
  /** Digest of the lock blob (media type `MEDIA_TYPE_LOCK`) this template was built from. */
  lock: 'org.rootcast.lock',
  /** Digest of the SPDX 2.3 JSON blob (media type `application/spdx+json`) describing the template. */
  sbom: 'org.rootcast.sbom',
  name: 'org.rootcast.name',
  /** On a child template's manifest: the manifest digest of the template it was built on. */
  parent: 'org.rootcast.parent',
  /**
   * Digest of the build-inputs blob (media type `MEDIA_TYPE_BUILD_INPUTS`): the canonical JSON
   * the cache key is the digest of, kept so `build --explain` can say which input changed.
   */
  buildInputs: 'org.rootcast.build-inputs',
  /** On an untagged (history) index entry: the `name:version` tag that named this manifest. */
  previousRef: 'org.rootcast.previous-ref',
  /** Decimal order of index entries: max in the index + 1 at each tag or commit (no clocks). */
  sequence: 'org.rootcast.sequence',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE_INDEX;
  manifests: Descriptor[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE_MANIFEST;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  variant?: string;
  os: string;
  config?: {
    Env?: string[];
    Cmd?: string[];
    WorkingDir?: string;
    Labels?: Record<string, string>;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
}

/**
 * OCI platform of a Debian architecture name (the recipe's `arch`), as Go's GOARCH/GOARM
 * spell them, which is what registries and runtimes match on.
 */
export function ociPlatformForDebianArch(debArch: string): Platform {
  const table: Record<string, { architecture: string; variant?: string }> = {
    amd64: { architecture: 'amd64' },
    arm64: { architecture: 'arm64', variant: 'v8' },
    armhf: { architecture: 'arm', variant: 'v7' },
    armel: { architecture: 'arm', variant: 'v5' },
    i386: { architecture: '386' },
    ppc64el: { architecture: 'ppc64le' },
    s390x: { architecture: 's390x' },
    riscv64: { architecture: 'riscv64' },
    mips64el: { architecture: 'mips64le' },
    loong64: { architecture: 'loong64' },
  };
  const found = table[debArch];
  return { os: 'linux', ...(found ?? { architecture: debArch }) };
}

/** `created` dates: SOURCE_DATE_EPOCH (seconds) as RFC 3339 in UTC, without fractions. */
export function rfc3339FromEpoch(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

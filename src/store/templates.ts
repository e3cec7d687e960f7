import { resolve } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { inputError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { SPDX_MEDIA_TYPE } from '../sbom/spdx.js';
import { openBlobStore } from './blob-store.js';
import { compressToBlob, DEFAULT_COMPRESSION_LEVEL, validateCompressionLevel } from './compress.js';
import { LATEST, nextSequence, tagInIndex, templateExists } from './history.js';
import { placeLayerTree } from './layers.js';
import { ensureLayout, readIndex, updateIndex } from './layout.js';
import {
  ANNOTATION,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MEDIA_TYPE_BUILD_INPUTS,
  MEDIA_TYPE_CONFIG,
  MEDIA_TYPE_LAYER_ZSTD,
  MEDIA_TYPE_LOCK,
  MEDIA_TYPE_MANIFEST,
  ociPlatformForDebianArch,
  rfc3339FromEpoch,
} from './oci.js';
import { tarTree } from './tar-writer.js';
import {
  assertTemplateComplete,
  listTemplates,
  readTemplate,
  validateTemplateName,
} from './template-query.js';

/**
 * Committing a finished tree as a template: tar (deterministic) → zstd → layer blob, the tree
 * moved to `layers/<diffid>/`, the lock, config and manifest blobs, and last the tag in
 * `index.json`.
 *
 * Crash safety comes from the order: every blob is verified and renamed into place before
 * anything refers to it, and the tag is written last (atomically, under the store lock). A
 * process killed at any point leaves the previous index intact; what it wrote before dying is
 * either a complete unreferenced blob or layer (gc removes them, a retry reuses them) or a
 * temporary under `ingest/` or `tmp/` (`cleanStore` removes it).
 *
 * Reproducibility: equal trees, epoch, arch, lock, keys and level give an equal manifest
 * digest; nothing in the config or manifest depends on the clock or the machine.
 */
export interface CommitTemplateOptions {
  store: string;
  name: string;
  version: string;
  /** The finished tree, ideally from `createStagingDir(store)`. It is consumed (moved or removed). */
  tree: string;
  /** SOURCE_DATE_EPOCH in seconds: mtimes are clamped to it and it is the `created` date. */
  sourceDateEpoch: number;
  /**
   * Clamp the tree's mtimes on disk too, while archiving it (see `TarTreeOptions.clampOnDisk`),
   * so the unpacked layer matches its tar; a caller that already ran `clampMtimes` can leave
   * it off. The tar is clamped either way.
   */
  clampTree?: boolean;
  /** Debian architecture (`amd64`, `arm64`, `armhf`, …); mapped to the OCI platform. */
  arch: string;
  /** The lock file's text, stored verbatim as a blob. */
  lock: string;
  /** The SPDX 2.3 JSON text describing the tree, stored as a blob when given. */
  sbom?: string;
  recipeDigest: string;
  cacheKey: string;
  /** OCI labels for `config.Labels`. */
  labels?: Record<string, string>;
  /** The canonical JSON whose digest is `cacheKey`, stored as a blob for `build --explain`. */
  buildInputs?: string;
  /**
   * The template this one is built on (`name:version` or a manifest digest). `tree` is then
   * an overlayfs upper directory over the parent's layers: it becomes one more layer (its
   * whiteouts turned into OCI whiteouts), and the manifest lists the parent's layers first.
   */
  parent?: string;
  compressionLevel?: number;
  /**
   * Move an existing `name:version` that points at a different manifest. The manifest it named
   * stays in the index as a history entry (addressable by digest, kept by gc).
   */
  replace?: boolean;
  /** Also point `name:latest` at the new manifest (moved without history). `rootcast build` sets it. */
  latest?: boolean;
  reporter?: Reporter;
  /** Awaited at each step (tests kill the process there; front ends can show progress). */
  onPhase?: (phase: CommitPhase) => void | Promise<void>;
}

export type CommitPhase =
  | 'layer-ingesting'
  | 'layer-blob-committed'
  | 'layer-placed'
  | 'blobs-committed'
  | 'index-locked'
  | 'done';

export interface CommittedLayer {
  digest: string;
  diffId: string;
  /** Compressed size (the blob). */
  size: number;
  uncompressedSize: number;
  /** Where the layer is unpacked. */
  path: string;
  /** True when that layer was already unpacked and the new tree was dropped. */
  reused: boolean;
}

export interface CommitTemplateResult {
  ref: string;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  lockDigest: string;
  layers: CommittedLayer[];
  /** Entries archived and paths skipped (sockets). */
  entries: number;
  skipped: string[];
}

function labelsOf(labels: Record<string, string>): { Labels?: Record<string, string> } {
  return Object.keys(labels).length > 0 ? { Labels: labels } : {};
}

/**
 * Pure: the image config of a template. `parent` is the parent template's config: its
 * diff_ids and history come first, this commit's layer and history entry last.
 */
export function buildImageConfig(options: {
  arch: string;
  sourceDateEpoch: number;
  diffIds: string[];
  name: string;
  version: string;
  recipeDigest: string;
  parent?: ImageConfig;
  /** `config.Labels`; left out when empty. */
  labels?: Record<string, string>;
}): ImageConfig {
  const platform = ociPlatformForDebianArch(options.arch);
  const created = rfc3339FromEpoch(options.sourceDateEpoch);
  return {
    created,
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: 'linux',
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      // A child inherits its parent's labels (as image builders do) and may override them.
      ...labelsOf({ ...options.parent?.config?.Labels, ...options.labels }),
    },
    rootfs: { type: 'layers', diff_ids: [...(options.parent?.rootfs.diff_ids ?? []), ...options.diffIds] },
    history: [
      ...(options.parent?.history ?? []),
      {
        created,
        created_by: `rootcast build ${options.name}:${options.version}`,
        comment: `recipe ${options.recipeDigest}`,
      },
    ],
  };
}

/** Pure: the manifest naming `config`, `layers` and the template's facts in annotations. */
export function buildManifest(options: {
  config: Descriptor;
  layers: Descriptor[];
  name: string;
  version: string;
  sourceDateEpoch: number;
  cacheKey: string;
  recipeDigest: string;
  lockDigest: string;
  sbomDigest?: string;
  /** The parent template's manifest digest (a child template). */
  parentDigest?: string;
  buildInputsDigest?: string;
}): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: options.config,
    layers: options.layers,
    annotations: {
      [ANNOTATION.created]: rfc3339FromEpoch(options.sourceDateEpoch),
      [ANNOTATION.title]: options.name,
      [ANNOTATION.version]: options.version,
      [ANNOTATION.cacheKey]: options.cacheKey,
      [ANNOTATION.recipeDigest]: options.recipeDigest,
      [ANNOTATION.lock]: options.lockDigest,
      ...(options.sbomDigest ? { [ANNOTATION.sbom]: options.sbomDigest } : {}),
      ...(options.parentDigest ? { [ANNOTATION.parent]: options.parentDigest } : {}),
      ...(options.buildInputsDigest ? { [ANNOTATION.buildInputs]: options.buildInputsDigest } : {}),
    },
  };
}

/**
 * `latest` is the pointer commits move (see `CommitTemplateOptions.latest`), so no build may
 * claim it as its version. Throws `TEMPLATE_VERSION_RESERVED` (exit 2).
 */
export function validateCommitVersion(version: string): void {
  if (version === LATEST) {
    throw inputError(
      'TEMPLATE_VERSION_RESERVED',
      'a template cannot be built as version "latest"',
      '"latest" always names the newest build of a name: give the recipe a real version.',
    );
  }
}

export async function commitTemplate(options: CommitTemplateOptions): Promise<CommitTemplateResult> {
  validateTemplateName(options.name, options.version);
  validateCommitVersion(options.version);
  const level = validateCompressionLevel(options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL);
  const store = resolve(options.store);
  const ref = `${options.name}:${options.version}`;
  const phase = async (p: CommitPhase) => {
    await options.onPhase?.(p);
  };
  await ensureLayout(store);
  if (!options.replace) {
    // Fail before the expensive part when the result cannot be identical (another cache key);
    // the exact check is repeated under the store lock at the end.
    const existing = (await listTemplates(store)).find((t) => t.ref === ref);
    if (existing && existing.cacheKey !== options.cacheKey) {
      throw templateExists(ref, existing.manifestDigest, `cache key ${options.cacheKey}`);
    }
  }
  const blobs = openBlobStore(store);
  const parent = options.parent === undefined ? undefined : await readTemplate(store, options.parent);

  const { stream, stats } = tarTree(options.tree, {
    sourceDateEpoch: options.sourceDateEpoch,
    ...(parent ? { overlayUpper: true } : {}),
    ...(options.clampTree ? { clampOnDisk: true } : {}),
    ...(options.reporter ? { reporter: options.reporter } : {}),
  });
  const layerBlob = await compressToBlob(stream, blobs, {
    level,
    transferChunks: true,
    ...(options.reporter ? { reporter: options.reporter } : {}),
    afterFirstWrite: () => phase('layer-ingesting'),
  });
  await phase('layer-blob-committed');
  const placed = await placeLayerTree(store, layerBlob.diffId, options.tree);
  await phase('layer-placed');

  const lockDesc = await blobs.putBytes(Buffer.from(options.lock, 'utf8'), MEDIA_TYPE_LOCK);
  const sbomDesc =
    options.sbom === undefined
      ? undefined
      : await blobs.putBytes(Buffer.from(options.sbom, 'utf8'), SPDX_MEDIA_TYPE);
  const inputsDesc =
    options.buildInputs === undefined
      ? undefined
      : await blobs.putBytes(Buffer.from(options.buildInputs, 'utf8'), MEDIA_TYPE_BUILD_INPUTS);
  const config = buildImageConfig({
    ...(parent ? { parent: parent.config } : {}),
    ...(options.labels ? { labels: options.labels } : {}),
    arch: options.arch,
    sourceDateEpoch: options.sourceDateEpoch,
    diffIds: [layerBlob.diffId],
    name: options.name,
    version: options.version,
    recipeDigest: options.recipeDigest,
  });
  const configDesc = await blobs.putBytes(Buffer.from(canonicalJson(config)), MEDIA_TYPE_CONFIG);
  const layerDesc: Descriptor = {
    mediaType: MEDIA_TYPE_LAYER_ZSTD,
    digest: layerBlob.digest,
    size: layerBlob.size,
  };
  const manifest = buildManifest({
    config: configDesc,
    layers: [...(parent?.manifest.layers ?? []), layerDesc],
    ...(parent ? { parentDigest: parent.manifestDigest } : {}),
    ...(inputsDesc ? { buildInputsDigest: inputsDesc.digest } : {}),
    name: options.name,
    version: options.version,
    sourceDateEpoch: options.sourceDateEpoch,
    cacheKey: options.cacheKey,
    recipeDigest: options.recipeDigest,
    lockDigest: lockDesc.digest,
    ...(sbomDesc ? { sbomDigest: sbomDesc.digest } : {}),
  });
  const manifestDesc = await blobs.putBytes(Buffer.from(canonicalJson(manifest)), MEDIA_TYPE_MANIFEST);
  await phase('blobs-committed');

  const platform = ociPlatformForDebianArch(options.arch);
  const extra = { [ANNOTATION.cacheKey]: options.cacheKey, [ANNOTATION.name]: options.name };
  await updateIndex(
    store,
    (index) => {
      // The tag and `latest` move in one index write, under one sequence number.
      const sequence = nextSequence(index);
      const tagged = tagInIndex(index, ref, { ...manifestDesc, platform }, extra, {
        replace: options.replace ?? false,
        keepHistory: true,
        sequence,
      });
      if (!options.latest) return tagged;
      return tagInIndex(tagged, `${options.name}:${LATEST}`, manifestDesc, extra, {
        replace: true,
        keepHistory: false,
        sequence,
      });
    },
    () => phase('index-locked'),
  );
  await phase('done');
  return {
    ref,
    manifestDigest: manifestDesc.digest,
    manifestSize: manifestDesc.size,
    configDigest: configDesc.digest,
    lockDigest: lockDesc.digest,
    layers: [
      {
        digest: layerBlob.digest,
        diffId: layerBlob.diffId,
        size: layerBlob.size,
        uncompressedSize: layerBlob.uncompressedSize,
        path: placed.path,
        reused: placed.reused,
      },
    ],
    entries: stats.entries,
    skipped: stats.skipped,
  };
}

/**
 * Tags an existing manifest `name:version` (a build-cache hit under another name, or a retag).
 * The manifest must be in the store. A moved tag keeps its old manifest as a history entry
 * (except `latest`). Returns the digest the tag named before, when it moved.
 *
 * With `requireComplete`, every blob the manifest names must be present when the index is
 * written (checked under the store lock, which gc holds while it sweeps, so gc cannot remove
 * one between the check and the tag), else `TEMPLATE_INCOMPLETE`.
 */
export async function tagTemplate(
  store: string,
  manifestDigest: string,
  name: string,
  version: string,
  options: { replace?: boolean; cacheKey?: string; requireComplete?: boolean } = {},
): Promise<{ previous?: string }> {
  validateTemplateName(name, version);
  const size = await openBlobStore(store).size(manifestDigest);
  if (size === undefined) {
    throw new RootcastError({
      code: 'BLOB_NOT_FOUND',
      message: `manifest ${manifestDigest} is not in the store`,
      hint: 'Build or pull the template first.',
    });
  }
  await ensureLayout(store);
  const extra: Record<string, string> = { [ANNOTATION.name]: name };
  if (options.cacheKey) extra[ANNOTATION.cacheKey] = options.cacheKey;
  const ref = `${name}:${version}`;
  let previous: string | undefined;
  await updateIndex(
    store,
    (index) => {
      const current = index.manifests.find((d) => d.annotations?.[ANNOTATION.refName] === ref);
      const next = tagInIndex(
        index,
        ref,
        { mediaType: MEDIA_TYPE_MANIFEST, digest: manifestDigest, size },
        extra,
        {
          replace: options.replace ?? false,
          keepHistory: true,
        },
      );
      previous = next !== index ? current?.digest : undefined;
      return next;
    },
    options.requireComplete ? () => assertTemplateComplete(store, manifestDigest, manifestDigest) : undefined,
  );
  return previous ? { previous } : {};
}

/**
 * Points `name:latest` at an existing manifest, as a commit does, for a build the cache
 * answered: it is still the newest build of that name. No write (and no store lock) when
 * `latest` already names it.
 */
export async function pointLatest(
  store: string,
  name: string,
  manifest: { digest: string; size: number },
  cacheKey: string,
): Promise<void> {
  const ref = `${name}:${LATEST}`;
  const names = (index: ImageIndex) =>
    index.manifests.some((d) => d.annotations?.[ANNOTATION.refName] === ref && d.digest === manifest.digest);
  if (names(await readIndex(store))) return;
  const extra = { [ANNOTATION.cacheKey]: cacheKey, [ANNOTATION.name]: name };
  await updateIndex(store, (index) =>
    names(index)
      ? index
      : tagInIndex(index, ref, { mediaType: MEDIA_TYPE_MANIFEST, ...manifest }, extra, {
          replace: true,
          keepHistory: false,
          sequence: nextSequence(index),
        }),
  );
}

import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { inputError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { SPDX_MEDIA_TYPE } from '../sbom/spdx.js';
import { type BlobWriter, openBlobStore } from '../store/blob-store.js';
import { removeStoreIfEmpty } from '../store/clean.js';
import { placeLayerTree } from '../store/layers.js';
import { ensureLayout } from '../store/layout.js';
import {
  ANNOTATION,
  type ImageConfig,
  type ImageManifest,
  MEDIA_TYPE_CONFIG,
  MEDIA_TYPE_LOCK,
  MEDIA_TYPE_MANIFEST,
} from '../store/oci.js';
import { listTemplates, validateTemplateName } from '../store/template-query.js';
import { tagTemplate } from '../store/templates.js';
import { downloadSmallBlob } from './blob-download.js';
import { RegistryClient } from './client.js';
import type { Credentials } from './credentials.js';
import { fetchLayer, type PendingLayer } from './pull-layer.js';
import { fetchTemplateManifest } from './pull-manifest.js';
import { formatRegistryRef, parseRegistryRef, type RegistryRef } from './reference.js';

/**
 * `rootcast pull REF [--tag NAME:VERSION]`: a template from a registry into the store, whole
 * or not at all.
 *
 * Everything is fetched and checked before anything becomes visible: the manifest (its
 * digest, and its shape: an OCI image manifest rootcast can use), the config, every layer
 * (its digest while it is written to an `ingest/` file, and its diff_id while it is unpacked
 * into a `tmp/` staging directory in overlay format, layer-unpack.ts), and, best effort, the
 * lock and SBOM blobs the annotations name. Only then are the blobs committed, the layer
 * directories moved into `layers/`, the manifest stored and, last, the tag written. A
 * corrupt blob, a diff_id mismatch or a refused layer leaves blobs/, layers/ and index.json
 * as they were (the temporaries go on the error path, or with `cleanStore` after a kill).
 * Blobs and unpacked layers the store already has are not downloaded again.
 */
export interface PullOptions {
  store: string;
  ref: string;
  /** `name:version` to tag; default from the manifest's title and version annotations. */
  tag?: string;
  insecure?: boolean;
  caFile?: string;
  credentials?: Credentials;
  reporter: Reporter;
  signal?: AbortSignal;
  /** Layers fetched at once (default 2). */
  concurrency?: number;
}

export type PulledBlobKind = 'layer' | 'config' | 'lock' | 'sbom';

export interface PullSummary {
  ref: string;
  /** `name:version` in the store. */
  template: string;
  digest: string;
  /** Blobs downloaded. */
  pulled: number;
  /** Blobs (and unpacked layers) the store already had. */
  skipped: number;
  /** Bytes downloaded (manifest and blobs). */
  bytes: number;
  layers: number;
  blobs: { digest: string; kind: PulledBlobKind; size: number; action: 'pulled' | 'skipped' | 'missing' }[];
}

export async function pullTemplate(options: PullOptions): Promise<PullSummary> {
  const parsed = parseRegistryRef(options.ref);
  const ref: RegistryRef = parsed.tag || parsed.digest ? parsed : { ...parsed, tag: 'latest' };
  const store = options.store;
  const client = await RegistryClient.open({
    ref,
    insecure: options.insecure ?? false,
    ...(options.caFile ? { caFile: options.caFile } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    scopes: [`repository:${ref.repository}:pull`],
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const blobs = openBlobStore(store);
  const writers: BlobWriter[] = [];
  const staging: string[] = [];
  // A pull into a store that does not exist creates it only when it succeeds.
  const storeIsNew = !existsSync(store);
  let done = false;
  try {
    const fetched = await fetchTemplateManifest(client, ref);
    const { manifest } = fetched;
    const { name, version } = templateTag(options.tag, manifest, options.ref);
    const template = `${name}:${version}`;
    const existing = (await listTemplates(store)).find((t) => t.ref === template);
    if (existing && existing.manifestDigest !== fetched.digest) {
      throw new RootcastError({
        code: 'TEMPLATE_EXISTS',
        message: `template ${template} already exists as ${existing.manifestDigest} (the pulled one is ${fetched.digest})`,
        hint: 'Templates are immutable: pull it under another name with --tag NAME:VERSION.',
        exitCode: 2,
      });
    }
    const summary: PullSummary = {
      ref: formatRegistryRef(ref),
      template,
      digest: fetched.digest,
      pulled: 0,
      skipped: 0,
      bytes: fetched.bytes.length,
      layers: manifest.layers.length,
      blobs: [],
    };
    const note = (
      digest: string,
      kind: PulledBlobKind,
      size: number,
      action: 'pulled' | 'skipped' | 'missing',
    ) => {
      summary.blobs.push({ digest, kind, size, action });
      if (action === 'pulled') {
        summary.pulled += 1;
        summary.bytes += size;
      } else if (action === 'skipped') summary.skipped += 1;
      options.reporter.log('info', `${action.padEnd(7)} ${kind.padEnd(6)} ${digest}`);
    };

    let configBytes: Buffer;
    if (await blobs.has(manifest.config.digest)) {
      configBytes = await blobs.read(manifest.config.digest);
      note(manifest.config.digest, 'config', manifest.config.size, 'skipped');
    } else {
      configBytes = await downloadSmallBlob(client, ref.repository, manifest.config);
      note(manifest.config.digest, 'config', manifest.config.size, 'pulled');
    }
    const diffIds = parseConfig(configBytes, manifest);

    const task = options.reporter.task(`pull ${summary.ref}`, {
      total: manifest.layers.reduce((n, l) => n + l.size, 0),
      unit: 'bytes',
    });
    const pending: PendingLayer[] = [];
    try {
      const queue = manifest.layers.map((layer, i) => ({ layer, diffId: diffIds[i]! }));
      const worker = async () => {
        for (let item = queue.shift(); item; item = queue.shift()) {
          const result = await fetchLayer({
            client,
            store,
            repository: ref.repository,
            layer: item.layer,
            diffId: item.diffId,
            onBytes: (n) => task.advance(n),
            track: { writers, staging },
          });
          pending.push(result);
          note(item.layer.digest, 'layer', item.layer.size, result.downloaded ? 'pulled' : 'skipped');
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 2) }, worker));
    } finally {
      task.finish();
    }

    const extras: { digest: string; kind: 'lock' | 'sbom'; mediaType: string; bytes?: Buffer }[] = [];
    for (const [kind, key, mediaType] of [
      ['lock', ANNOTATION.lock, MEDIA_TYPE_LOCK],
      ['sbom', ANNOTATION.sbom, SPDX_MEDIA_TYPE],
    ] as const) {
      const digest = manifest.annotations?.[key];
      if (!digest?.startsWith('sha256:')) continue;
      if (await blobs.has(digest)) {
        note(digest, kind, 0, 'skipped');
        continue;
      }
      try {
        const bytes = await downloadSmallBlob(client, ref.repository, { digest });
        extras.push({ digest, kind, mediaType, bytes });
        note(digest, kind, bytes.length, 'pulled');
      } catch (error) {
        options.reporter.log('warn', `${kind} blob ${digest} not pulled: ${(error as Error).message}`);
        note(digest, kind, 0, 'missing');
      }
    }

    // Everything is verified: make it visible, tag last.
    await ensureLayout(store);
    for (const layer of pending) await layer.commit();
    if (!(await blobs.has(manifest.config.digest))) await blobs.putBytes(configBytes, MEDIA_TYPE_CONFIG);
    for (const extra of extras) if (extra.bytes) await blobs.putBytes(extra.bytes, extra.mediaType);
    for (const layer of pending) if (layer.tree) await placeLayerTree(store, layer.diffId, layer.tree);
    await blobs.putBytes(fetched.bytes, MEDIA_TYPE_MANIFEST);
    const cacheKey = manifest.annotations?.[ANNOTATION.cacheKey];
    await tagTemplate(store, fetched.digest, name, version, cacheKey ? { cacheKey } : {});
    done = true;
    return summary;
  } finally {
    await Promise.all(writers.map((w) => w.abort()));
    await Promise.all(staging.map((dir) => rm(dir, { recursive: true, force: true })));
    await client.close();
    if (storeIsNew && !done) await removeStoreIfEmpty(store);
  }
}

/** Pure: the `name:version` to tag, from `--tag` or the manifest's title/version annotations. */
export function templateTag(
  tag: string | undefined,
  manifest: ImageManifest,
  ref: string,
): { name: string; version: string } {
  if (tag !== undefined) {
    const colon = tag.lastIndexOf(':');
    if (colon <= 0) {
      throw inputError(
        'TEMPLATE_REF_INVALID',
        `--tag ${JSON.stringify(tag)} is not name:version`,
        'Give the pulled template a name and a version, e.g. --tag debian-12-web:1.0.',
      );
    }
    const name = tag.slice(0, colon);
    const version = tag.slice(colon + 1);
    validateTemplateName(name, version);
    return { name, version };
  }
  const name = manifest.annotations?.[ANNOTATION.title];
  const version = manifest.annotations?.[ANNOTATION.version];
  if (!name || !version) {
    throw inputError(
      'REGISTRY_TAG_REQUIRED',
      `${ref} carries no org.opencontainers.image.title/version annotations to name the template`,
      'Name it yourself: rootcast pull REF --tag NAME:VERSION.',
    );
  }
  validateTemplateName(name, version);
  return { name, version };
}

/** The config's diff_ids, checked against the manifest (one per layer). */
function parseConfig(bytes: Buffer, manifest: ImageManifest): string[] {
  let config: ImageConfig;
  try {
    config = JSON.parse(bytes.toString('utf8')) as ImageConfig;
  } catch (error) {
    throw manifestInvalid(`its config ${manifest.config.digest} is not JSON`, error);
  }
  const diffIds = config.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length)
    throw manifestInvalid(
      `${manifest.layers.length} layers but ${diffIds?.length ?? 0} diff_ids in its config`,
    );
  for (const d of diffIds)
    if (typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d))
      throw manifestInvalid(`bad diff_id ${String(d)}`);
  return diffIds;
}

export function manifestInvalid(what: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'REGISTRY_MANIFEST_INVALID',
    message: `the pulled image is not a template rootcast can use: ${what}`,
    hint: 'rootcast pulls OCI image manifests with tar, tar+gzip or tar+zstd layers (as rootcast push writes them).',
    cause,
  });
}

import { inputError, RootcastError } from '../core/errors.js';
import { type BlobStore, openBlobStore, parseDigest } from './blob-store.js';
import { hasLayerDir, layerDirPath } from './layers.js';
import { readIndex } from './layout.js';
import {
  ANNOTATION,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MEDIA_TYPE_INDEX,
  MEDIA_TYPE_MANIFEST,
} from './oci.js';

/**
 * Finding and reading templates. A template is a manifest in the store's `index.json` tagged
 * `name:version` through the `org.opencontainers.image.ref.name` annotation (the whole
 * `name:version` is the ref, so `skopeo inspect oci:<store>:<name>:<version>` finds it).
 * Reads take no lock: the index is replaced atomically and blobs never change.
 */

const NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const VERSION = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Checks a template name (without version); throws `TEMPLATE_NAME_INVALID` (exit 2). */
export function validateName(name: string): void {
  if (!NAME.test(name)) {
    throw inputError(
      'TEMPLATE_NAME_INVALID',
      `template name ${JSON.stringify(name)} is not valid`,
      'Names are lowercase letters, digits, ".", "_" and "-", starting with a letter or digit.',
    );
  }
}

/** Checks a template name and version; throws `TEMPLATE_NAME_INVALID` (exit 2). */
export function validateTemplateName(name: string, version: string): void {
  validateName(name);
  if (!VERSION.test(version)) {
    throw inputError(
      'TEMPLATE_NAME_INVALID',
      `template version ${JSON.stringify(version)} is not valid`,
      'Versions are letters, digits, ".", "_" and "-" (at most 128), not starting with "." or "-".',
    );
  }
}

export type TemplateRef = { kind: 'tag'; name: string; version: string } | { kind: 'digest'; digest: string };

/** Parses `name:version` or `sha256:<hex>` (a manifest digest). */
export function parseTemplateRef(ref: string): TemplateRef {
  if (ref.startsWith('sha256:')) {
    parseDigest(ref);
    return { kind: 'digest', digest: ref };
  }
  const colon = ref.lastIndexOf(':');
  if (colon <= 0) {
    throw inputError(
      'TEMPLATE_REF_INVALID',
      `${JSON.stringify(ref)} is not a template reference`,
      'Name a template as name:version (see `rootcast ls`) or by its manifest digest sha256:….',
    );
  }
  const name = ref.slice(0, colon);
  const version = ref.slice(colon + 1);
  validateTemplateName(name, version);
  return { kind: 'tag', name, version };
}

/** One tagged template as listed in the index. */
export interface TemplateEntry {
  /** `name:version`. */
  ref: string;
  name: string;
  version: string;
  manifestDigest: string;
  manifestSize: number;
  cacheKey?: string;
  /** The index entry's annotations. */
  annotations: Record<string, string>;
}

function entryOf(descriptor: Descriptor): TemplateEntry | undefined {
  const ref = descriptor.annotations?.[ANNOTATION.refName];
  if (!ref || descriptor.mediaType !== MEDIA_TYPE_MANIFEST) return undefined;
  const colon = ref.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const cacheKey = descriptor.annotations?.[ANNOTATION.cacheKey];
  return {
    ref,
    name: ref.slice(0, colon),
    version: ref.slice(colon + 1),
    manifestDigest: descriptor.digest,
    manifestSize: descriptor.size,
    ...(cacheKey ? { cacheKey } : {}),
    annotations: descriptor.annotations ?? {},
  };
}

/** Every tagged template, sorted by ref. */
export async function listTemplates(store: string): Promise<TemplateEntry[]> {
  return templatesIn(await readIndex(store));
}

function templatesIn(index: ImageIndex): TemplateEntry[] {
  return index.manifests
    .map(entryOf)
    .filter((e): e is TemplateEntry => e !== undefined)
    .sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
}

/** A resolved reference: the manifest and, when it is tagged, its tags. */
export interface ResolvedTemplate {
  manifestDigest: string;
  manifestSize: number;
  /** Index entries pointing at this manifest (a digest may carry several tags, or none). */
  entries: TemplateEntry[];
}

function notFound(ref: string): RootcastError {
  return inputError(
    'TEMPLATE_NOT_FOUND',
    `no template ${ref} in the store`,
    'List templates with `rootcast ls`, or build the recipe first.',
  );
}

function notAManifest(ref: string): RootcastError {
  return inputError(
    'TEMPLATE_NOT_FOUND',
    `${ref} is a blob in the store but not a template manifest (a layer, config or lock?)`,
    'Name a template by name:version or by its manifest digest: `rootcast ls --all` lists them.',
  );
}

/**
 * Resolves `name:version` or a manifest digest. A digest is a template's manifest when
 * `index.json` lists it (tagged or as history), a listed manifest reaches it (a child's
 * `org.rootcast.parent`, an image index's `manifests`), or it is an unlisted blob that reads
 * as an image manifest (removed by `rmi`, not yet collected): any other blob (a layer, a
 * config, a lock) is `TEMPLATE_NOT_FOUND`, not a corrupt manifest. A manifest found this way that
 * does not parse is still reported as corrupt by `readTemplate`.
 */
export async function resolveTemplate(store: string, ref: string): Promise<ResolvedTemplate> {
  const parsed = parseTemplateRef(ref);
  const index = await readIndex(store);
  const all = templatesIn(index);
  if (parsed.kind === 'tag') {
    const found = all.find((e) => e.ref === ref);
    if (!found) throw notFound(ref);
    const entries = all.filter((e) => e.manifestDigest === found.manifestDigest);
    return { manifestDigest: found.manifestDigest, manifestSize: found.manifestSize, entries };
  }
  const entries = all.filter((e) => e.manifestDigest === parsed.digest);
  const listed = index.manifests.find(
    (d) => d.digest === parsed.digest && d.mediaType === MEDIA_TYPE_MANIFEST,
  );
  const size = entries[0]?.manifestSize ?? listed?.size;
  if (size !== undefined) return { manifestDigest: parsed.digest, manifestSize: size, entries };
  const blobs = openBlobStore(store);
  const blobSize = await blobs.size(parsed.digest);
  if (blobSize === undefined) throw notFound(ref);
  if (
    !(await reachesManifest(blobs, index, parsed.digest)) &&
    !(await isManifestBlob(blobs, parsed.digest, blobSize))
  )
    throw notAManifest(ref);
  return { manifestDigest: parsed.digest, manifestSize: blobSize, entries };
}

/**
 * The most a manifest (or image index) blob may weigh for rootcast to parse it while looking
 * for templates. Real ones are a few KiB; a bigger blob is a layer or something else, and is
 * never read into memory just to find out.
 */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

/**
 * A blob parsed as JSON when it is at most `MANIFEST_MAX_BYTES`; `undefined` when it is bigger,
 * missing, corrupt or not JSON.
 */
async function readSmallJson<T>(blobs: BlobStore, digest: string, size?: number): Promise<T | undefined> {
  try {
    const bytes = size ?? (await blobs.size(digest));
    if (bytes === undefined || bytes > MANIFEST_MAX_BYTES) return undefined;
    return JSON.parse((await blobs.read(digest)).toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Whether an unlisted blob is an image manifest: a template removed with `rmi` stays in the
 * store until gc, and `rootcast tag <digest> name:version` must be able to bring it back.
 * A blob over `MANIFEST_MAX_BYTES` is not one (it is not read).
 */
async function isManifestBlob(blobs: BlobStore, digest: string, size: number): Promise<boolean> {
  const doc = await readSmallJson<{ mediaType?: unknown }>(blobs, digest, size);
  return doc?.mediaType === MEDIA_TYPE_MANIFEST;
}

/**
 * Whether a manifest or image index that `index.json` lists names `digest` as a manifest,
 * directly or through others. Documents that are missing, do not parse or weigh more than
 * `MANIFEST_MAX_BYTES` are skipped (`rootcast fsck` reports them); only manifests are
 * followed, never layers.
 */
async function reachesManifest(blobs: BlobStore, index: ImageIndex, digest: string): Promise<boolean> {
  const isDocument = (d: { mediaType?: unknown }) =>
    d.mediaType === MEDIA_TYPE_MANIFEST || d.mediaType === MEDIA_TYPE_INDEX;
  const queue = index.manifests.filter(isDocument).map((d) => d.digest);
  const seen = new Set(queue);
  while (queue.length > 0) {
    const current = queue.shift()!;
    const doc = await readSmallJson<{ manifests?: unknown; annotations?: Record<string, unknown> }>(
      blobs,
      current,
    );
    if (doc === undefined) continue;
    const named: string[] = [];
    if (Array.isArray(doc?.manifests)) {
      for (const child of doc.manifests as { mediaType?: unknown; digest?: unknown }[])
        if (child && isDocument(child) && typeof child.digest === 'string') named.push(child.digest);
    }
    const parent = doc?.annotations?.[ANNOTATION.parent];
    if (typeof parent === 'string') named.push(parent);
    for (const next of named) {
      if (next === digest) return true;
      if (seen.has(next) || !/^sha256:[0-9a-f]{64}$/.test(next)) continue;
      seen.add(next);
      queue.push(next);
    }
  }
  return false;
}

/**
 * The blobs a manifest names that are not in the store: its config, its layers, and the lock
 * and SBOM its annotations name (an interrupted gc removes unreachable blobs one by one, and
 * may leave a manifest without them). The manifest is read verified.
 */
export async function missingTemplateBlobs(store: string, manifestDigest: string): Promise<string[]> {
  const blobs = openBlobStore(store);
  const manifest = parseJson<ImageManifest>(await blobs.read(manifestDigest), manifestDigest, 'the manifest');
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw manifestInvalid(manifestDigest, 'not an OCI image manifest');
  }
  const isDigest = (d: unknown): d is string => typeof d === 'string' && /^sha256:[0-9a-f]{64}$/.test(d);
  const descriptors: unknown[] = [manifest.config.digest, ...manifest.layers.map((l) => l?.digest)];
  const bad = descriptors.find((d) => !isDigest(d));
  if (bad !== undefined) throw manifestInvalid(manifestDigest, `${JSON.stringify(bad)} is not a digest`);
  // Annotations that name blobs (a foreign value that is no digest names none).
  const annotated = [manifest.annotations?.[ANNOTATION.lock], manifest.annotations?.[ANNOTATION.sbom]];
  const missing: string[] = [];
  for (const digest of [...descriptors, ...annotated].filter(isDigest)) {
    if (!missing.includes(digest) && !(await blobs.has(digest))) missing.push(digest);
  }
  return missing;
}

/**
 * Fails with `TEMPLATE_INCOMPLETE` (exit 1) when the template `ref` names misses a blob (see
 * `missingTemplateBlobs`): such a manifest cannot be cloned, exported or pushed, so it must not
 * be given a tag. `ref` is what the user wrote, for the message.
 */
export async function assertTemplateComplete(
  store: string,
  ref: string,
  manifestDigest: string,
): Promise<void> {
  const missing = await missingTemplateBlobs(store, manifestDigest);
  if (missing.length === 0) return;
  const shown = missing.slice(0, 3).join(', ') + (missing.length > 3 ? `, … (${missing.length} in all)` : '');
  throw new RootcastError({
    code: 'TEMPLATE_INCOMPLETE',
    message: `template ${ref} misses ${missing.length === 1 ? 'a blob' : `${missing.length} blobs`} it names: ${shown}`,
    hint: 'Its blobs were removed (an interrupted `rootcast gc`, or `rootcast fsck --repair`): rebuild or pull the template instead of tagging this manifest.',
    details: { manifest: manifestDigest, missing },
  });
}

/** A layer of a template, with where it is unpacked. */
export interface TemplateLayer {
  mediaType: string;
  digest: string;
  size: number;
  diffId: string;
  /** `<store>/layers/<hex>`: present when `unpacked` is true. */
  unpackedPath: string;
  unpacked: boolean;
}

export interface TemplateDetails extends ResolvedTemplate {
  /** The tag it was resolved by, or for a digest the first tag pointing at it (if any). */
  ref?: string;
  manifest: ImageManifest;
  config: ImageConfig;
  configDigest: string;
  /** The manifest's annotations. */
  annotations: Record<string, string>;
  layers: TemplateLayer[];
  cacheKey?: string;
  lockDigest?: string;
  sbomDigest?: string;
}

function manifestInvalid(digest: string, what: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'STORE_MANIFEST_INVALID',
    message: `manifest ${digest} is not a usable image manifest: ${what}`,
    hint: 'Run `rootcast fsck`; rebuild or pull the template.',
    cause,
  });
}

function parseJson<T>(bytes: Buffer, digest: string, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (error) {
    throw manifestInvalid(digest, `${what} is not JSON`, error);
  }
}

/** The manifest, config and layers of a template, every blob verified against its digest. */
export async function readTemplate(store: string, ref: string): Promise<TemplateDetails> {
  const resolved = await resolveTemplate(store, ref);
  const blobs = openBlobStore(store);
  const digest = resolved.manifestDigest;
  const manifest = parseJson<ImageManifest>(await blobs.read(digest), digest, 'the manifest');
  if (manifest.mediaType !== MEDIA_TYPE_MANIFEST || !manifest.config || !Array.isArray(manifest.layers)) {
    throw manifestInvalid(digest, 'not an OCI image manifest');
  }
  const config = parseJson<ImageConfig>(await blobs.read(manifest.config.digest), digest, 'the config');
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw manifestInvalid(digest, `${manifest.layers.length} layers but ${diffIds.length} diff_ids`);
  }
  const layers: TemplateLayer[] = [];
  for (const [i, layer] of manifest.layers.entries()) {
    const diffId = diffIds[i]!;
    layers.push({
      mediaType: layer.mediaType,
      digest: layer.digest,
      size: layer.size,
      diffId,
      unpackedPath: layerDirPath(store, diffId),
      unpacked: await hasLayerDir(store, diffId),
    });
  }
  const annotations = manifest.annotations ?? {};
  const cacheKey = annotations[ANNOTATION.cacheKey];
  const lockDigest = annotations[ANNOTATION.lock];
  const sbomDigest = annotations[ANNOTATION.sbom];
  const tag = ref.startsWith('sha256:') ? resolved.entries[0]?.ref : ref;
  return {
    ...resolved,
    ...(tag ? { ref: tag } : {}),
    manifest,
    config,
    configDigest: manifest.config.digest,
    annotations,
    layers,
    ...(cacheKey ? { cacheKey } : {}),
    ...(lockDigest ? { lockDigest } : {}),
    ...(sbomDigest ? { sbomDigest } : {}),
  };
}

/** The lock JSON text a template was built from. */
export async function readTemplateLock(store: string, ref: string): Promise<string> {
  const details = await readTemplate(store, ref);
  if (!details.lockDigest) {
    throw new RootcastError({
      code: 'TEMPLATE_LOCK_MISSING',
      message: `template ${ref} records no lock`,
      hint: 'It was not built by rootcast build; rebuild it from its recipe.',
    });
  }
  return (await openBlobStore(store).read(details.lockDigest)).toString('utf8');
}

/**
 * The build cache: a template whose `org.rootcast.cache-key` equals `cacheKey` and whose blobs
 * and unpacked layers are all present, or `undefined`. A build with a matching key can return
 * this template without doing any work. When several tags match, the one named `prefer`
 * (`name:version`) wins, else the first by ref; `ref` of the result is the matching tag.
 */
export async function findByCacheKey(
  store: string,
  cacheKey: string,
  prefer?: string,
): Promise<TemplateDetails | undefined> {
  const blobs = openBlobStore(store);
  const candidates = (await listTemplates(store)).filter((e) => e.cacheKey === cacheKey);
  candidates.sort((a, b) => Number(b.ref === prefer) - Number(a.ref === prefer));
  for (const entry of candidates) {
    let details: TemplateDetails;
    try {
      details = await readTemplate(store, entry.ref);
    } catch (error) {
      if (error instanceof RootcastError) continue;
      throw error;
    }
    if (details.cacheKey !== cacheKey) continue;
    const complete = await Promise.all([
      ...details.layers.map(async (l) => l.unpacked && (await blobs.has(l.digest))),
      details.lockDigest ? blobs.has(details.lockDigest) : Promise.resolve(true),
      details.sbomDigest ? blobs.has(details.sbomDigest) : Promise.resolve(true),
    ]);
    if (complete.every(Boolean)) return details;
  }
  return undefined;
}

/** The SPDX 2.3 JSON text of a template, verified against its digest. */
export async function readTemplateSbom(store: string, ref: string): Promise<string> {
  const details = await readTemplate(store, ref);
  if (!details.sbomDigest) {
    throw new RootcastError({
      code: 'TEMPLATE_SBOM_MISSING',
      message: `template ${ref} carries no SBOM`,
      hint: 'It was built by an older rootcast; rebuild it with `rootcast build --rebuild`.',
    });
  }
  return (await openBlobStore(store).read(details.sbomDigest)).toString('utf8');
}

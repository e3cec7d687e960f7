import { inputError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { openBlobStore } from '../store/blob-store.js';
import { ANNOTATION, MEDIA_TYPE_MANIFEST } from '../store/oci.js';
import { storeLayout } from '../store/paths.js';
import { readTemplate, type TemplateDetails } from '../store/template-query.js';
import { type BlobAction, type LocalBlob, putBlob } from './blob-upload.js';
import { RegistryClient } from './client.js';
import type { Credentials } from './credentials.js';
import { mountSources, readPushedRecord, recordPushed } from './pushed-record.js';
import { formatRegistryRef, parseRegistryRef, type RegistryRef, TAG } from './reference.js';

/**
 * `rootcast push TEMPLATE REF`: a template's blobs, then its manifest, into one repository.
 *
 * Order: every layer (base first), the config, and the lock and SBOM blobs the manifest's
 * annotations name (plain blobs of the repository, so a pull keeps `inspect --sbom`); then
 * the manifest, byte for byte as stored (so its digest is the template's), first by digest
 * and then by tag — a registry never holds a tag to a manifest whose blobs are missing.
 * Each blob is skipped when the repository has it, mounted when the store pushed it to
 * another repository of the same registry, and uploaded otherwise (blob-upload.ts). The
 * store records where each blob went (pushed-record.ts), also after a failed push.
 */
export interface PushOptions {
  store: string;
  /** `name:version` or `sha256:…` in the store. */
  template: string;
  /** `host[:port]/repository[:tag]`; without a tag, the template's version. */
  ref: string;
  insecure?: boolean;
  caFile?: string;
  credentials?: Credentials;
  reporter: Reporter;
  signal?: AbortSignal;
  /** Upload tuning (tests): force chunked uploads, chunk size. */
  chunked?: boolean;
  chunkSize?: number;
  /** Blobs uploaded at once (default 3). */
  concurrency?: number;
}

export type PushedBlobKind = 'layer' | 'config' | 'lock' | 'sbom';

export interface PushSummary {
  /** `host[:port]/repository:tag` pushed to. */
  ref: string;
  digest: string;
  /** Blobs uploaded. */
  pushed: number;
  /** Blobs the repository already had. */
  skipped: number;
  /** Blobs mounted from another repository of the same registry. */
  mounted: number;
  /** Bytes uploaded (blobs and manifest). */
  bytes: number;
  blobs: { digest: string; kind: PushedBlobKind; size: number; action: BlobAction }[];
}

/**
 * The tag a push without one uses: the version of a tag naming the manifest, else (an untagged
 * history entry, pushed by digest) the manifest's `org.opencontainers.image.version`, the
 * annotation `pull` names the template by; `undefined` when neither is a valid tag.
 */
function defaultTag(details: TemplateDetails): string | undefined {
  const version = details.entries[0]?.version ?? details.annotations[ANNOTATION.version];
  return version !== undefined && TAG.test(version) ? version : undefined;
}

export async function pushTemplate(options: PushOptions): Promise<PushSummary> {
  const target = parseRegistryRef(options.ref);
  if (target.digest) {
    throw inputError(
      'REGISTRY_REF_INVALID',
      `cannot push to ${options.ref}: a push names a tag, not a digest`,
      'Write host[:port]/repository[:tag]; the manifest digest is printed after the push.',
    );
  }
  const details = await readTemplate(options.store, options.template);
  const tag = target.tag ?? defaultTag(details);
  if (!tag) {
    throw inputError(
      'REGISTRY_TAG_REQUIRED',
      `${options.ref} names no tag, and ${options.template} has no tag and no version annotation to use as one`,
      `Add a tag to the reference: ${formatRegistryRef(target)}:TAG.`,
    );
  }
  const ref: RegistryRef = { ...target, tag };
  const blobs = openBlobStore(options.store);
  const manifestBytes = await blobs.read(details.manifestDigest);
  const wanted: { digest: string; kind: PushedBlobKind }[] = [
    ...details.layers.map((l) => ({ digest: l.digest, kind: 'layer' as const })),
    { digest: details.configDigest, kind: 'config' },
    ...(details.lockDigest ? [{ digest: details.lockDigest, kind: 'lock' as const }] : []),
    ...(details.sbomDigest ? [{ digest: details.sbomDigest, kind: 'sbom' as const }] : []),
  ];
  const local: (LocalBlob & { kind: PushedBlobKind })[] = [];
  for (const w of wanted) {
    if (local.some((l) => l.digest === w.digest)) continue;
    const size = await blobs.size(w.digest);
    // Lock and SBOM are extras: a template without them still pushes.
    if (size === undefined && (w.kind === 'lock' || w.kind === 'sbom')) continue;
    if (size === undefined) await blobs.open(w.digest); // throws BLOB_NOT_FOUND
    local.push({
      ...w,
      size: size ?? 0,
      path: storeLayout.blob(options.store, w.digest),
      open: () => blobs.open(w.digest),
    });
  }

  const record = await readPushedRecord(options.store);
  const client = await RegistryClient.open({
    ref,
    insecure: options.insecure ?? false,
    ...(options.caFile ? { caFile: options.caFile } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    scopes: [
      `repository:${ref.repository}:pull,push`,
      ...new Set(
        local.flatMap((b) =>
          mountSources(record, b.digest, ref.registry, ref.repository).map((r) => `repository:${r}:pull`),
        ),
      ),
    ],
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const summary: PushSummary = {
    ref: formatRegistryRef(ref),
    digest: details.manifestDigest,
    pushed: 0,
    skipped: 0,
    mounted: 0,
    bytes: 0,
    blobs: [],
  };
  const present: string[] = [];
  const task = options.reporter.task(`push ${summary.ref}`, {
    total: local.reduce((n, b) => n + b.size, 0),
    unit: 'bytes',
  });
  try {
    const queue = [...local];
    const worker = async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) {
        const action = await putBlob(client, ref.repository, blob, {
          mountFrom: mountSources(record, blob.digest, ref.registry, ref.repository),
          ...(options.chunked ? { chunked: true } : {}),
          ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
          onBytes: (n) => {
            summary.bytes += n;
            if (n > 0) task.advance(n);
          },
        });
        if (action !== 'pushed') task.advance(blob.size);
        summary[action] += 1;
        summary.blobs.push({ digest: blob.digest, kind: blob.kind, size: blob.size, action });
        present.push(blob.digest);
        options.reporter.log('info', `${action.padEnd(7)} ${blob.kind.padEnd(6)} ${blob.digest}`);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 3) }, worker));
    summary.blobs.sort(
      (a, b) =>
        wanted.findIndex((w) => w.digest === a.digest) - wanted.findIndex((w) => w.digest === b.digest),
    );
    for (const reference of [details.manifestDigest, tag]) {
      const url = client.url(`/v2/${ref.repository}/manifests/${reference}`);
      const response = await client.send('PUT', url, {
        headers: { 'content-type': MEDIA_TYPE_MANIFEST, 'content-length': String(manifestBytes.length) },
        body: () => manifestBytes,
      });
      if (response.status !== 201 && response.status !== 200)
        throw await client.unexpected(`putting the manifest ${reference} to ${ref.repository}`, response);
      await response.body.dump();
      summary.bytes += manifestBytes.length;
    }
  } finally {
    task.finish();
    await client.close();
    await recordPushed(options.store, present, { registry: ref.registry, repository: ref.repository });
  }
  return summary;
}

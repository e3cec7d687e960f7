import { CountingHash, SHA256_PREFIX, sha256Hex } from '../core/digest.js';
import { inputError, RootcastError } from '../core/errors.js';
import { headerOf, type RegistryClient } from './client.js';

/**
 * Downloads with verification: every byte from a registry is hashed on the way in and
 * compared with the digest that named it, and nothing longer than the descriptor's size is
 * read. `REGISTRY_DIGEST_MISMATCH` and `REGISTRY_SIZE_MISMATCH` are thrown only after the
 * whole body (up to the size) was read, so a caller that also unpacks can tell "the bytes
 * are wrong" (this error) from "the right bytes do not unpack" (its own).
 */

export const MEDIA_TYPE_INDEX_OCI = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  MEDIA_TYPE_INDEX_OCI,
  DOCKER_MANIFEST,
  DOCKER_LIST,
].join(', ');
const MAX_MANIFEST = 4 << 20;
const MAX_UNSIZED = 64 << 20;

export function digestMismatch(what: string, expected: string, actual: string): RootcastError {
  return new RootcastError({
    code: 'REGISTRY_DIGEST_MISMATCH',
    message: `${what} from the registry hashes to ${actual}, not ${expected}`,
    hint: "The registry (or something between it and you) returned damaged content; nothing was imported. Retry, or check the registry's storage.",
    details: { expected, actual },
  });
}

/**
 * Streams blob `d` of `repository` into `onChunk`, then verifies size and digest.
 * Redirects (to storage back ends) are followed without credentials.
 */
export async function downloadBlob(
  client: RegistryClient,
  repository: string,
  d: { digest: string; size?: number },
  onChunk: (chunk: Buffer) => Promise<void> | void,
): Promise<void> {
  // Without a size (blobs named only by an annotation), the limit is MAX_UNSIZED.
  const limit = d.size ?? MAX_UNSIZED;
  const response = await client.send('GET', client.url(`/v2/${repository}/blobs/${d.digest}`), {
    followRedirects: true,
  });
  if (response.status === 404) {
    await response.body.dump();
    throw new RootcastError({
      code: 'REGISTRY_BLOB_NOT_FOUND',
      message: `blob ${d.digest} is not in ${repository} (HTTP 404)`,
      hint: 'The image in the registry is incomplete: push it again.',
    });
  }
  if (response.status !== 200) throw await client.unexpected(`downloading blob ${d.digest}`, response);
  const hash = new CountingHash();
  for await (const raw of response.body) {
    let chunk = raw as Buffer;
    if (hash.size + chunk.length > limit) {
      if (d.size === undefined) {
        await response.body.dump().catch(() => {});
        throw new RootcastError({
          code: 'REGISTRY_SIZE_MISMATCH',
          message: `blob ${d.digest} from the registry is larger than ${limit} bytes`,
          hint: 'That is not a lock or SBOM rootcast wrote; check the registry.',
        });
      }
      chunk = chunk.subarray(0, limit - hash.size);
    }
    hash.update(chunk);
    if (chunk.length > 0) await onChunk(chunk);
    if (d.size !== undefined && hash.size >= d.size) break;
  }
  await response.body.dump().catch(() => {});
  if (d.size !== undefined && hash.size !== d.size) {
    throw new RootcastError({
      code: 'REGISTRY_SIZE_MISMATCH',
      message: `blob ${d.digest} from the registry is ${hash.size} bytes, not ${d.size}`,
      hint: 'The download was cut short or the registry holds damaged content; retry.',
      details: { expected: d.size, actual: hash.size },
    });
  }
  const actual = SHA256_PREFIX + hash.hex();
  if (actual !== d.digest) throw digestMismatch(`blob ${d.digest}`, d.digest, actual);
}

/** A whole small blob (config, lock, SBOM), verified. */
export async function downloadSmallBlob(
  client: RegistryClient,
  repository: string,
  d: { digest: string; size?: number },
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await downloadBlob(client, repository, d, (chunk) => {
    chunks.push(Buffer.from(chunk));
  });
  return Buffer.concat(chunks);
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

/**
 * `GET /v2/<name>/manifests/<reference>`: the exact bytes and their digest. A manifest asked
 * for by digest must hash to it; one asked for by tag must hash to the registry's
 * `Docker-Content-Digest` when the registry sends one.
 */
export async function fetchManifest(
  client: RegistryClient,
  repository: string,
  reference: string,
): Promise<FetchedManifest> {
  const response = await client.send('GET', client.url(`/v2/${repository}/manifests/${reference}`), {
    headers: { accept: MANIFEST_ACCEPT },
  });
  if (response.status === 404) {
    await response.body.dump();
    throw inputError(
      'REGISTRY_MANIFEST_NOT_FOUND',
      `${client.base.host}/${repository} has no manifest ${reference}`,
      'Check the repository and tag (or digest); push the template first.',
    );
  }
  if (response.status !== 200) throw await client.unexpected(`getting manifest ${reference}`, response);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += (chunk as Buffer).length;
    if (size > MAX_MANIFEST) {
      await response.body.dump().catch(() => {});
      throw new RootcastError({
        code: 'REGISTRY_MANIFEST_INVALID',
        message: `manifest ${reference} of ${repository} is larger than ${MAX_MANIFEST} bytes`,
        hint: 'That is not an image manifest rootcast can use.',
      });
    }
    chunks.push(chunk as Buffer);
  }
  const bytes = Buffer.concat(chunks);
  const digest = SHA256_PREFIX + sha256Hex(bytes);
  const announced = headerOf(response.headers, 'docker-content-digest');
  const expected = reference.startsWith('sha256:')
    ? reference
    : announced?.startsWith('sha256:')
      ? announced
      : undefined;
  if (expected && expected !== digest) throw digestMismatch(`manifest ${reference}`, expected, digest);
  let parsed: { mediaType?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
  } catch (error) {
    throw new RootcastError({
      code: 'REGISTRY_MANIFEST_INVALID',
      message: `manifest ${reference} of ${repository} is not JSON`,
      hint: 'That is not an image manifest rootcast can use.',
      cause: error,
    });
  }
  const mediaType =
    typeof parsed.mediaType === 'string'
      ? parsed.mediaType
      : (headerOf(response.headers, 'content-type') ?? '');
  return { bytes, digest, mediaType };
}

export function isDockerMediaType(mediaType: string): boolean {
  return mediaType === DOCKER_MANIFEST || mediaType === DOCKER_LIST;
}

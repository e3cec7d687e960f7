import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { CountingHash, SHA256_PREFIX } from '../core/digest.js';
import { RootcastError } from '../core/errors.js';
import { blobCorruptError } from '../store/blob-store.js';
import { headerOf, type RegistryClient, type RegistryResponse } from './client.js';

/**
 * Getting one blob into a repository, the cheapest way that works (distribution spec,
 * "Pushing blobs"):
 *
 * 1. `HEAD /v2/<name>/blobs/<digest>`: 200 means it is already there (nothing sent);
 * 2. `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>` for each repository of the
 *    same registry the store pushed it to before: 201 means mounted (nothing sent); 202 means
 *    the registry declined and opened an upload session instead, which step 3 uses;
 * 3. monolithic upload: `POST …/uploads/` then one `PUT <location>?digest=<digest>` with the
 *    whole body; when the registry refuses a monolithic PUT (405, 413, 501), a chunked
 *    upload: `PATCH <location>` with `Content-Range` chunks, then the closing `PUT`.
 *
 * The bytes sent come from the store and are verified against the digest as they are read:
 * a damaged local blob fails with `BLOB_CORRUPT` and never completes an upload (the registry
 * checks the digest too).
 */
export type BlobAction = 'pushed' | 'skipped' | 'mounted';

export interface LocalBlob {
  digest: string;
  size: number;
  /** Path of the blob in the store (read for chunked uploads). */
  path: string;
  /** A stream of the blob that fails with `BLOB_CORRUPT` at its end on a mismatch. */
  open(): Promise<Readable>;
}

export interface UploadOptions {
  /** Repositories of the same registry that may hold the blob (mount sources), best first. */
  mountFrom?: readonly string[];
  /** Chunk size for chunked uploads (default 8 MiB, raised to the registry's minimum). */
  chunkSize?: number;
  /** Force the chunked path (tests). */
  chunked?: boolean;
  onBytes?: (bytes: number) => void;
}

const DEFAULT_CHUNK = 8 << 20;

export async function blobExists(
  client: RegistryClient,
  repository: string,
  digest: string,
): Promise<boolean> {
  const response = await client.send('HEAD', client.url(`/v2/${repository}/blobs/${digest}`));
  await response.body.dump();
  if (response.status === 200) return true;
  if (response.status === 404) return false;
  throw await client.unexpected(`checking for blob ${digest} in ${repository}`, response);
}

/** Puts `blob` into `repository`; returns what it took. */
export async function putBlob(
  client: RegistryClient,
  repository: string,
  blob: LocalBlob,
  options: UploadOptions = {},
): Promise<BlobAction> {
  if (await blobExists(client, repository, blob.digest)) return 'skipped';
  let session: URL | undefined;
  for (const from of options.mountFrom ?? []) {
    const target = client.url(`/v2/${repository}/blobs/uploads/`);
    target.searchParams.set('mount', blob.digest);
    target.searchParams.set('from', from);
    const response = await client.send('POST', target, { headers: { 'content-length': '0' } });
    await response.body.dump();
    if (response.status === 201) return 'mounted';
    if (response.status === 202) {
      session = locationOf(response);
      break;
    }
    // Any other answer (the source vanished, no right to read it): try the next, then upload.
  }
  if (!options.chunked) {
    session ??= await startUpload(client, repository);
    const target = new URL(session);
    target.searchParams.set('digest', blob.digest);
    let sent = 0;
    const response = await client.send('PUT', target, {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
      body: async () => {
        // A replay (after a 401) starts from zero: take back what the first attempt reported.
        options.onBytes?.(-sent);
        sent = 0;
        return counting(await blob.open(), (n) => {
          sent += n;
          options.onBytes?.(n);
        });
      },
    });
    if (response.status === 201) {
      await response.body.dump();
      return 'pushed';
    }
    if (![405, 413, 501].includes(response.status))
      throw await client.unexpected(`uploading blob ${blob.digest} to ${repository}`, response);
    await response.body.dump();
    options.onBytes?.(-sent);
    session = undefined;
  }
  await chunkedUpload(client, repository, blob, session, options);
  return 'pushed';
}

async function startUpload(client: RegistryClient, repository: string): Promise<URL> {
  const response = await client.send('POST', client.url(`/v2/${repository}/blobs/uploads/`), {
    headers: { 'content-length': '0' },
  });
  await response.body.dump();
  if (response.status !== 202) throw await client.unexpected(`starting an upload to ${repository}`, response);
  return locationOf(response);
}

async function chunkedUpload(
  client: RegistryClient,
  repository: string,
  blob: LocalBlob,
  existing: URL | undefined,
  options: UploadOptions,
): Promise<void> {
  let location = existing;
  let minimum = 0;
  if (!location) {
    const response = await client.send('POST', client.url(`/v2/${repository}/blobs/uploads/`), {
      headers: { 'content-length': '0' },
    });
    await response.body.dump();
    if (response.status !== 202)
      throw await client.unexpected(`starting an upload to ${repository}`, response);
    location = locationOf(response);
    minimum = Number(headerOf(response.headers, 'oci-chunk-min-length') ?? 0) || 0;
  }
  const chunkSize = Math.max(options.chunkSize ?? DEFAULT_CHUNK, minimum, 1);
  const hash = new CountingHash();
  const handle = await open(blob.path, 'r');
  try {
    let offset = 0;
    while (offset < blob.size) {
      const length = Math.min(chunkSize, blob.size - offset);
      const chunk = Buffer.alloc(length);
      const { bytesRead } = await handle.read(chunk, 0, length, offset);
      if (bytesRead !== length) throw blobCorruptError(blob.digest, `a file of ${offset + bytesRead} bytes`);
      hash.update(chunk);
      const response = await client.send('PATCH', location, {
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(length),
          'content-range': `${offset}-${offset + length - 1}`,
        },
        body: () => chunk,
      });
      await response.body.dump();
      if (response.status !== 202)
        throw await client.unexpected(`uploading a chunk of ${blob.digest} to ${repository}`, response);
      location = locationOf(response);
      offset += length;
      options.onBytes?.(length);
    }
  } finally {
    await handle.close();
  }
  const actual = SHA256_PREFIX + hash.hex();
  if (actual !== blob.digest) throw blobCorruptError(blob.digest, actual);
  const target = new URL(location);
  target.searchParams.set('digest', blob.digest);
  const response = await client.send('PUT', target, { headers: { 'content-length': '0' } });
  if (response.status !== 201)
    throw await client.unexpected(`completing the upload of ${blob.digest} to ${repository}`, response);
  await response.body.dump();
}

function locationOf(response: RegistryResponse): URL {
  const location = headerOf(response.headers, 'location');
  if (!location) {
    throw new RootcastError({
      code: 'REGISTRY_HTTP_FAILED',
      message: `the registry opened an upload without a Location (${response.url.pathname})`,
      hint: 'The registry does not follow the distribution spec; report it to its operator.',
    });
  }
  return new URL(location, response.url);
}

async function* counting(source: Readable, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    onBytes((chunk as Buffer).length);
    yield chunk as Buffer;
  }
}

import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { xz } from '@napi-rs/lzma';
import { hasNativeCalls, nativeCalls } from '../../assemble/native.js';
import { describeError, RootcastError } from '../../core/errors.js';
import type { Reporter } from '../../core/reporter.js';
import type { BodyConsumer, HttpClient } from '../../fetch/http.js';
import type { SignedFile } from './index-cache.js';
import { decodeInXzProcess, XzDecoderProcess } from './xz-process.js';

/**
 * Getting a signed Packages index's bytes into a parser: downloading it (by hash when the
 * Release offers it, checked against the signed size and sha256) and decoding it (xz, gzip
 * or plain), with a large xz index decoded by an `xz` process while it still downloads.
 * Nothing decoded from unverified bytes is ever used: the parser's result counts only once
 * the download matched its signed hash (see `indexConsumer`).
 */

const gunzipAsync = promisify(gunzip);

/**
 * Downloads the signed index `entry` (by hash when the Release offers it), handing it to a
 * consumer per attempt while it arrives: a large xz index is decoded (and parsed) while the
 * rest downloads. Returns the verified compressed bytes, for the store.
 */
export async function downloadIndex(
  entry: SignedFile,
  base: string,
  acquireByHash: boolean,
  env: { http: HttpClient; reporter: Reporter; signal: AbortSignal },
  consumer: () => Promise<BodyConsumer>,
): Promise<Buffer> {
  const { reporter, http } = env;
  const options = { expected: { size: entry.size, sha256: entry.sha256 }, signal: env.signal, consumer };
  const plainUrl = `${base}/${entry.path}`;
  const byHashUrl = `${base}/${entry.path.replace(/[^/]*$/, '')}by-hash/SHA256/${entry.sha256}`;
  try {
    try {
      const url = acquireByHash ? byHashUrl : plainUrl;
      reporter.log('debug', `GET ${url}`);
      return await http.getBuffer(url, options);
    } catch (error) {
      // by-hash is an optimisation against mid-sync mirrors; apt falls back the same way.
      if (!(acquireByHash && error instanceof RootcastError && error.code === 'HTTP_NOT_FOUND')) throw error;
      reporter.log('debug', `GET ${plainUrl} (no by-hash copy)`);
      return await http.getBuffer(plainUrl, options);
    }
  } catch (error) {
    throw recodeIndexError(error, plainUrl);
  }
}

/**
 * What reads a downloading index: an `xz` process fed as the bytes arrive, for a large xz
 * index (decoding overlaps the download: ≈0.2 s off bookworm's main index on a fast
 * mirror); otherwise nothing until the verified body is whole, then `decodeIndex`. Nothing
 * decoded is used before the download is verified: a failure on unverified bytes is
 * reported only after the hash matched (or the attempt is retried when it did not).
 */
export async function indexConsumer(
  entry: SignedFile,
  base: string,
  onChunk: (chunk: Buffer) => void,
  xzProcessMin: number,
  plainSize?: number,
): Promise<BodyConsumer> {
  // Unverified bytes must not decode without bound (a few MB of xz can expand to many GB):
  // past the signed size of the plain index, or 20 times the compressed size when the Release
  // does not list it, decoding stops; `end` reports it only if the hash matched.
  const limit = plainSize ?? Math.max(entry.size * 20, 1 << 20);
  let decoded = 0;
  const bounded = (chunk: Buffer) => {
    decoded += chunk.length;
    if (decoded > limit) throw new Error(`it decodes to more than ${limit} bytes`);
    onChunk(chunk);
  };
  const xz =
    entry.path.endsWith('.xz') && entry.size >= xzProcessMin
      ? await XzDecoderProcess.start(bounded)
      : undefined;
  if (xz === undefined)
    return {
      write() {},
      end: (body) => decodeIndex(body, entry.path, base, onChunk, xzProcessMin),
      abort() {},
    };
  return {
    write: (chunk) => xz.write(chunk),
    end: () => xz.end().catch((error: unknown) => Promise.reject(undecodable(error, base, entry.path))),
    abort: () => xz.abort(),
  };
}

/** A verified index that does not decode (or parse): the repository's fault, not retried. */
function undecodable(error: unknown, base: string, path: string): unknown {
  if (error instanceof RootcastError) return error;
  return new RootcastError({
    code: 'INDEX_MALFORMED',
    message: `${base}/${path} matches its signed hash but cannot be decompressed: ${describeError(error)}`,
    hint: 'The repository published a broken index; use another mirror or report it to the repository.',
    cause: error,
  });
}

/** xz output is handed on in slices of this size when the native decoder is available. */
const XZ_CHUNK = 1 << 20;

/**
 * Decompresses by file name, handing the bytes to `onChunk` in order (a plain index is
 * one chunk). xz streams through the system liblzma when the native addon is built (the
 * chunk buffer is reused: `onChunk` must consume it before returning); otherwise, and for
 * gzip, the whole output is decoded first. Errors `onChunk` throws pass through unchanged.
 */
export async function decodeIndex(
  data: Buffer,
  path: string,
  base: string,
  onChunk: (chunk: Buffer) => void,
  xzProcessMin: number,
): Promise<void> {
  let decoded: Buffer;
  // Set when `onChunk` threw inside the native decoder, so its error is not taken for xz's.
  let rejected: { error: unknown } | undefined;
  try {
    // A large index decodes in an `xz` process, on another core, while this thread parses
    // what it has already produced (≈0.3 s off reading bookworm's main index).
    if (path.endsWith('.xz') && data.length >= xzProcessMin && (await decodeInXzProcess(data, onChunk)))
      return;
    if (path.endsWith('.xz') && hasNativeCalls()) {
      const chunk = Buffer.allocUnsafe(XZ_CHUNK);
      nativeCalls().xzDecode(data, chunk, (bytes) => {
        try {
          onChunk(chunk.subarray(0, bytes));
        } catch (error) {
          rejected = { error };
          throw error;
        }
      });
      return;
    }
    if (path.endsWith('.xz')) decoded = await xz.decompress(data);
    else if (path.endsWith('.gz')) decoded = await gunzipAsync(data);
    else decoded = data;
  } catch (error) {
    if (rejected !== undefined) throw rejected.error;
    throw undecodable(error, base, path);
  }
  onChunk(decoded);
}

function recodeIndexError(error: unknown, url: string): unknown {
  if (!(error instanceof RootcastError)) return error;
  const code =
    error.code === 'DOWNLOAD_HASH_MISMATCH'
      ? 'INDEX_HASH_MISMATCH'
      : error.code === 'DOWNLOAD_SIZE_MISMATCH'
        ? 'INDEX_SIZE_MISMATCH'
        : undefined;
  if (!code) return error;
  return new RootcastError({
    code,
    message: `${url} does not match the signed Release: ${error.message}`,
    hint: 'The mirror is mid-sync or serves tampered files; retry later or use another mirror.',
    details: { ...error.details, url },
    cause: error,
  });
}

import { createWriteStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { commitTemporary, temporaryPathFor } from '../core/atomic.js';
import { CountingHash, SHA256_PREFIX, sha256File } from '../core/digest.js';
import { describeError, RootcastError } from '../core/errors.js';
import { blobCorruptError, openBlobStore } from './blob-store.js';
import { decompressStream } from './compress.js';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD } from './oci.js';
import { storeLayout } from './paths.js';
import { readTemplate } from './template-query.js';

/**
 * zstd may notice damage (its frame checksum) before the blob's digest is checked at the end of
 * the stream: name the real cause, a corrupt blob, when the digest confirms it.
 */
async function explainReadFailure(store: string, digest: string, error: unknown): Promise<RootcastError> {
  const actual = SHA256_PREFIX + (await sha256File(storeLayout.blob(store, digest))).hex;
  if (actual !== digest) return blobCorruptError(digest, actual);
  return new RootcastError({
    code: 'LAYER_DECOMPRESS_FAILED',
    message: `layer ${digest} cannot be decompressed: ${describeError(error)}`,
    hint: 'The layer was not written by a compatible zstd; rebuild the template.',
    cause: error,
  });
}

/**
 * The flattened tree of a template as one uncompressed tar file.
 *
 * For now a template has one layer, so the flattened tree is that layer's tar: the blob is
 * read (verified against its digest), decompressed, checked against the layer's diff_id, and
 * written to a temporary file beside `outFile` that is renamed over it only when every check
 * passed. A failure or a kill leaves `outFile` as it was.
 */
export async function exportTemplateTar(
  store: string,
  ref: string,
  outFile: string,
): Promise<{ diffId: string; size: number }> {
  const details = await readTemplate(store, ref);
  const [layer, ...more] = details.layers;
  if (!layer || more.length > 0) {
    throw new RootcastError({
      code: 'EXPORT_MULTI_LAYER_UNSUPPORTED',
      message: `template ${ref} has ${details.layers.length} layers; only single-layer templates can be flattened yet`,
      hint: 'Export it as an OCI layout instead.',
    });
  }
  if (layer.mediaType !== MEDIA_TYPE_LAYER_ZSTD && layer.mediaType !== MEDIA_TYPE_LAYER_TAR) {
    throw new RootcastError({
      code: 'LAYER_MEDIA_TYPE_UNSUPPORTED',
      message: `layer ${layer.digest} has media type ${layer.mediaType}`,
      hint: 'rootcast reads tar and tar+zstd layers; rebuild the template with rootcast.',
    });
  }
  const destination = resolve(outFile);
  await mkdir(dirname(destination), { recursive: true });
  const tmp = temporaryPathFor(destination);
  const hash = new CountingHash();
  try {
    const source = await openBlobStore(store).open(layer.digest);
    const hashing = async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        yield chunk;
      }
    };
    const sink = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    try {
      if (layer.mediaType === MEDIA_TYPE_LAYER_ZSTD)
        await pipeline(source, decompressStream(), hashing, sink);
      else await pipeline(source, hashing, sink);
    } catch (error) {
      throw error instanceof RootcastError ? error : await explainReadFailure(store, layer.digest, error);
    }
    const diffId = SHA256_PREFIX + hash.hex();
    if (diffId !== layer.diffId) {
      throw new RootcastError({
        code: 'LAYER_DIFF_ID_MISMATCH',
        message: `layer ${layer.digest} decompresses to ${diffId}, but the config says ${layer.diffId}`,
        hint: 'The template is damaged: run `rootcast fsck` and rebuild it.',
      });
    }
    const handle = await open(tmp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await commitTemporary(tmp, destination);
    return { diffId, size: hash.size };
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

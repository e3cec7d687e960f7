import { pipeline } from 'node:stream';
import { CountingHash, SHA256_PREFIX, sha256File } from '../core/digest.js';
import { describeError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { blobCorruptError, openBlobStore } from '../store/blob-store.js';
import { decompressStream } from '../store/compress.js';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD } from '../store/oci.js';
import { storeLayout } from '../store/paths.js';
import type { TemplateDetails, TemplateLayer } from '../store/template-query.js';
import { type FlattenStats, flattenLayers } from './flatten.js';

/**
 * The flattened tree of a template as one tar stream, the input of every export format.
 *
 * - One layer, no prefix: the layer blob itself, read back verified (its digest at the end of
 *   the stream, then its diff_id), so the export is byte for byte the layer's tar.
 * - Otherwise: the unpacked layer directories merged by `flattenLayers`, which writes the
 *   same bytes `tarTree` would for the merged tree (so a one-layer template gives the same
 *   bytes either way).
 *
 * The stream throws at its end when a check fails: consumers must publish nothing before it
 * has ended cleanly (the atomic outputs in output.ts do exactly that).
 */
export interface TemplateTarOptions {
  sourceDateEpoch: number;
  /** See `FlattenOptions.prefix` (Incus's `rootfs/`). */
  prefix?: string;
  /** Append the end-of-archive marker (default true). */
  end?: boolean;
  /** Walk the unpacked layers even for one layer (the caller wants `stats`, e.g. the devices). */
  walk?: boolean;
  reporter?: Reporter;
}

export interface TemplateTar {
  stream: AsyncGenerator<Buffer>;
  /** Filled when the tree was walked (not for a layer blob read back); complete at the end. */
  stats?: FlattenStats;
}

function mediaTypeUnsupported(layer: TemplateLayer): RootcastError {
  return new RootcastError({
    code: 'LAYER_MEDIA_TYPE_UNSUPPORTED',
    message: `layer ${layer.digest} has media type ${layer.mediaType}`,
    hint: 'rootcast reads tar and tar+zstd layers; rebuild the template with rootcast.',
  });
}

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
 * A layer's uncompressed tar, read from its blob: verified against the blob digest and, at
 * the end, against the diff_id (`LAYER_DIFF_ID_MISMATCH`).
 */
export async function* layerTarStream(store: string, layer: TemplateLayer): AsyncGenerator<Buffer> {
  if (layer.mediaType !== MEDIA_TYPE_LAYER_ZSTD && layer.mediaType !== MEDIA_TYPE_LAYER_TAR) {
    throw mediaTypeUnsupported(layer);
  }
  const source = await openBlobStore(store).open(layer.digest);
  const hash = new CountingHash();
  // pipeline() destroys the decompressor with the blob's error (BLOB_CORRUPT), so it reaches us.
  const chunks: AsyncIterable<Buffer> =
    layer.mediaType === MEDIA_TYPE_LAYER_ZSTD ? pipeline(source, decompressStream(), () => {}) : source;
  try {
    for await (const chunk of chunks) {
      hash.update(chunk);
      yield chunk;
    }
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
}

/** The template's flattened tree as a tar stream; see the module comment for which path is taken. */
export function templateTar(
  store: string,
  details: TemplateDetails,
  options: TemplateTarOptions,
): TemplateTar {
  const [first, ...more] = details.layers;
  if (first && more.length === 0 && !options.prefix && (options.end ?? true) && !options.walk) {
    return { stream: layerTarStream(store, first) };
  }
  const missing = details.layers.filter((l) => !l.unpacked);
  if (details.layers.length === 0 || missing.length > 0) {
    throw new RootcastError({
      code: 'EXPORT_LAYER_NOT_UNPACKED',
      message:
        details.layers.length === 0
          ? `template ${details.manifestDigest} has no layers`
          : `layer ${missing[0]?.diffId} of the template is not unpacked in the store`,
      hint: 'Run `rootcast fsck`; rebuild or pull the template again.',
    });
  }
  const { stream, stats } = flattenLayers(
    details.layers.map((l) => l.unpackedPath),
    {
      sourceDateEpoch: options.sourceDateEpoch,
      ...(options.prefix ? { prefix: options.prefix } : {}),
      ...(options.end === false ? { end: false } : {}),
      ...(options.reporter ? { reporter: options.reporter } : {}),
    },
  );
  return { stream, stats };
}

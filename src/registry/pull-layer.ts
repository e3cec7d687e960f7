import { describeError, isRootcastError, RootcastError } from '../core/errors.js';
import { type BlobWriter, openBlobStore } from '../store/blob-store.js';
import { createStagingDir, hasLayerDir } from '../store/layers.js';
import type { Descriptor } from '../store/oci.js';
import { downloadBlob } from './blob-download.js';
import type { RegistryClient } from './client.js';
import { createLayerUnpacker, type LayerUnpacker } from './layer-unpack.js';

/**
 * One layer of a pull, fetched and checked but not yet visible: the blob in an uncommitted
 * `ingest/` writer (its digest checked as it arrived) and the tree unpacked into a `tmp/`
 * staging directory (its diff_id checked). Whatever the store already has is reused: a
 * present blob is unpacked from the store instead of downloaded, a present layer directory
 * is not unpacked again. `commit()` makes the blob visible; the caller places the tree.
 *
 * Writers and staging directories are added to `track` as soon as they exist, so the
 * caller's error path removes them whatever step failed.
 */
export interface PendingLayer {
  digest: string;
  diffId: string;
  /** True when the blob came over the network. */
  downloaded: boolean;
  /** The unpacked tree to place at `layers/<diffId>`, when the store lacks it. */
  tree?: string;
  commit(): Promise<void>;
}

export interface FetchLayerOptions {
  client: RegistryClient;
  store: string;
  repository: string;
  layer: Descriptor;
  diffId: string;
  onBytes: (bytes: number) => void;
  track: { writers: BlobWriter[]; staging: string[] };
}

export async function fetchLayer(options: FetchLayerOptions): Promise<PendingLayer> {
  const { layer, diffId, store } = options;
  const blobs = openBlobStore(store);
  const haveBlob = await blobs.has(layer.digest);
  const haveDir = await hasLayerDir(store, diffId);
  const base = { digest: layer.digest, diffId };
  if (haveBlob && haveDir) {
    options.onBytes(layer.size);
    return { ...base, downloaded: false, commit: async () => {} };
  }
  let tree: string | undefined;
  let unpacker: LayerUnpacker | undefined;
  if (!haveDir) {
    tree = await createStagingDir(store);
    options.track.staging.push(tree);
    unpacker = createLayerUnpacker(tree, layer.mediaType, `layer ${layer.digest}`);
  }
  let writer: BlobWriter | undefined;
  try {
    if (haveBlob) {
      // Verified by the store as it is read (BLOB_CORRUPT at the end on a mismatch).
      for await (const chunk of await blobs.open(layer.digest)) {
        await unpacker?.write(chunk as Buffer);
        options.onBytes((chunk as Buffer).length);
      }
    } else {
      writer = await blobs.ingest();
      options.track.writers.push(writer);
      const sink = writer;
      let unpackError: unknown;
      await downloadBlob(options.client, options.repository, layer, async (chunk) => {
        await sink.write(chunk);
        options.onBytes(chunk.length);
        if (!unpacker || unpackError !== undefined) return;
        try {
          await unpacker.write(chunk);
        } catch (error) {
          // Keep reading: if the bytes are wrong, the digest error is the one to report.
          unpackError = error;
          unpacker.abort();
        }
      });
      if (unpackError !== undefined) throw unpackFailed(layer.digest, unpackError);
    }
    if (unpacker) {
      let unpacked: { diffId: string };
      try {
        unpacked = await unpacker.finish();
      } catch (error) {
        throw unpackFailed(layer.digest, error);
      }
      if (unpacked.diffId !== diffId) {
        throw new RootcastError({
          code: 'LAYER_DIFF_ID_MISMATCH',
          message: `layer ${layer.digest} decompresses to ${unpacked.diffId}, but the config says ${diffId}`,
          hint: 'The image in the registry is inconsistent; nothing was imported. Push it again from a good store.',
          details: { digest: layer.digest, expected: diffId, actual: unpacked.diffId },
        });
      }
    }
  } catch (error) {
    unpacker?.abort();
    throw error;
  }
  const committing = writer;
  return {
    ...base,
    downloaded: !haveBlob,
    ...(tree ? { tree } : {}),
    commit: async () => {
      if (committing) await committing.commit(layer.digest, layer.size);
    },
  };
}

function unpackFailed(digest: string, error: unknown): RootcastError {
  if (isRootcastError(error)) return error;
  return new RootcastError({
    code: 'LAYER_DECOMPRESS_FAILED',
    message: `layer ${digest} cannot be unpacked: ${describeError(error)}`,
    hint: 'The layer has the right digest but is not a valid compressed tar; push it again from a good store.',
    cause: error,
  });
}

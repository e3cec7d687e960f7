import { createHash } from 'node:crypto';
import { isRootcastError } from '../core/errors.js';
import type { ImageConfig } from './oci.js';
import { tarTree } from './tar-writer.js';

/**
 * Whether an unpacked layer (`layers/<hex>/`) still holds what its diff_id names, checked
 * without its compressed blob: the tree is archived again by the store's own tar writer (the
 * one that made it, so equal trees give equal bytes) and the tar's sha256 compared with the
 * diff_id. `fsck --repair` uses it to keep an intact tree when only the layer blob was damaged.
 *
 * A match proves the tree is intact. A mismatch means it changed, or that its tar was not
 * written by rootcast (a layer pulled from an image built elsewhere: other entry order or
 * headers), so the tree cannot be vouched for. Nothing is written: mtimes are only clamped in
 * the archive, never on disk.
 */
export type LayerTreeCheck = 'intact' | 'unverified';

/** SOURCE_DATE_EPOCH values the layer may have been archived with: its history entry's, then the image's. */
export function layerEpochs(config: ImageConfig | undefined, index: number): number[] {
  const seconds = (date: string | undefined) => {
    const ms = date === undefined ? Number.NaN : Date.parse(date);
    return Number.isFinite(ms) && ms >= 0 ? Math.floor(ms / 1000) : undefined;
  };
  const layered = (config?.history ?? []).filter((h) => !h.empty_layer);
  const own =
    layered.length === config?.rootfs?.diff_ids?.length ? seconds(layered[index]?.created) : undefined;
  const epochs = [own, seconds(config?.created)].filter((e): e is number => e !== undefined);
  return [...new Set(epochs)];
}

/**
 * Archives `dir` as layer `index` of an image (a child layer, index > 0, in overlay form) with
 * each candidate epoch until one hashes to `diffId`. Stops with the signal's reason when it is
 * aborted.
 */
export async function checkLayerTree(
  dir: string,
  diffId: string,
  options: { epochs: number[]; overlayUpper: boolean; signal?: AbortSignal },
): Promise<LayerTreeCheck> {
  for (const sourceDateEpoch of options.epochs) {
    options.signal?.throwIfAborted();
    const hash = createHash('sha256');
    try {
      const { stream } = tarTree(dir, { sourceDateEpoch, overlayUpper: options.overlayUpper });
      for await (const chunk of stream) {
        options.signal?.throwIfAborted();
        hash.update(chunk);
      }
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      // A tree that cannot be archived (unreadable, changed, non-UTF-8 names) cannot be vouched for.
      if (isRootcastError(error)) return 'unverified';
      throw error;
    }
    if (`sha256:${hash.digest('hex')}` === diffId) return 'intact';
  }
  return 'unverified';
}

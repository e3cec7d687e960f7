import { mkdirSync } from 'node:fs';
import type { CloneDriver, CloneSource, MadeContainer, MountPlan } from './driver.js';
import { mergeLayers, type ReflinkMode } from './layer-merge.js';
import { runtimeLayout } from './paths.js';

/**
 * `copy` and `reflink`: the container owns a complete tree, `rootfs/`, merged from the
 * template's layers (see `mergeLayers`). `copy` works on every filesystem and lets `cp` share
 * extents where it can (`--reflink=auto`); `reflink` insists on shared extents (FICLONE on
 * xfs or btrfs), so a clone costs metadata only and fails rather than silently copying data.
 * `run` uses the tree as it is: nothing to mount but /proc, /dev and /sys.
 */
export function copyDriverFor(
  name: 'copy' | 'reflink',
  reflink: ReflinkMode,
  probe: CloneDriver['probe'],
): CloneDriver {
  return {
    name,
    probe,
    async create(source: CloneSource, dir: string): Promise<MadeContainer> {
      const rootfs = runtimeLayout.rootfs(dir);
      mkdirSync(rootfs);
      await mergeLayers(source.layers, rootfs, reflink);
      return { upper: rootfs, lowers: [] };
    },
    mountPlan(_source: CloneSource, dir: string): MountPlan {
      return { kind: 'tree', rootfs: runtimeLayout.rootfs(dir) };
    },
    async remove() {},
  };
}

export const copyDriver: CloneDriver = copyDriverFor('copy', 'auto', async () => true);

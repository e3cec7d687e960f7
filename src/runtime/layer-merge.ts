import { lstatSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { runTool } from './exec.js';
import { isOpaque, isWhiteout, lstatOrUndefined } from './overlay-format.js';

/**
 * Flattens a stack of overlayfs-format layer directories into one plain tree, as the overlay
 * view would show it: what `copy`, `reflink` and the btrfs base subvolumes are made of.
 *
 * Each layer is copied by one `cp -a` (owners, modes, times, extended attributes, hardlinks
 * within the layer, devices, FIFOs), with `--reflink` as asked, so a single-layer template
 * costs exactly a `cp -a`. Before each upper layer is copied, one walk of that layer finds
 * what `cp` cannot express: whiteouts (character devices 0:0) delete the path below, opaque
 * directories (`trusted.overlay.opaque=y`) drop the contents below them, and an entry whose
 * type differs from the tree's (a directory over a file, a file over a directory) replaces it.
 * `--remove-destination` makes a changed file a new inode, so a hardlink the lower layer had
 * is not rewritten through. After the copy, the whiteout devices `cp` created are deleted and
 * the opaque marks removed from the merged tree.
 */
export type ReflinkMode = 'auto' | 'always' | 'never';

interface UpperLayerPlan {
  whiteouts: string[];
  opaque: string[];
  replace: string[];
}

/** One walk of an upper layer against the tree merged so far. */
function planUpperLayer(layer: string, tree: string): UpperLayerPlan {
  const plan: UpperLayerPlan = { whiteouts: [], opaque: [], replace: [] };
  const walk = (rel: string): void => {
    for (const entry of readdirSync(join(layer, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      const below = lstatOrUndefined(join(tree, path));
      if (isWhiteout(lstatSync(join(layer, path)))) {
        plan.whiteouts.push(path);
        continue;
      }
      if (entry.isDirectory()) {
        if (below && !below.isDirectory()) plan.replace.push(path);
        if (isOpaque(join(layer, path))) plan.opaque.push(path);
        walk(path);
      } else if (below?.isDirectory()) plan.replace.push(path);
    }
  };
  walk('');
  return plan;
}

async function copyLayer(layer: string, tree: string, reflink: ReflinkMode, upper: boolean): Promise<void> {
  await runTool(
    [
      'cp',
      '-a',
      `--reflink=${reflink === 'never' ? 'never' : reflink}`,
      ...(upper ? ['--remove-destination'] : []),
      '--',
      `${layer}/.`,
      `${tree}/`,
    ],
    {
      check: {
        code: 'CLONE_COPY_FAILED',
        hint: 'Check free space in the store; with --driver reflink the store must be on xfs or btrfs.',
      },
    },
  );
}

/** Merges `layers` (base first) into the existing, empty directory `tree`. */
export async function mergeLayers(
  layers: readonly string[],
  tree: string,
  reflink: ReflinkMode,
): Promise<void> {
  for (const [i, layer] of layers.entries()) {
    if (i === 0) {
      await copyLayer(layer, tree, reflink, false);
      continue;
    }
    const plan = planUpperLayer(layer, tree);
    for (const path of [...plan.whiteouts, ...plan.replace])
      rmSync(join(tree, path), { recursive: true, force: true });
    for (const path of plan.opaque) {
      const dir = join(tree, path);
      if (lstatOrUndefined(dir)?.isDirectory())
        for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    }
    await copyLayer(layer, tree, reflink, true);
    for (const path of plan.whiteouts) unlinkSync(join(tree, path));
    if (plan.opaque.length > 0) {
      await runTool(
        ['setfattr', '-h', '-x', 'trusted.overlay.opaque', '--', ...plan.opaque.map((p) => join(tree, p))],
        {
          check: { code: 'CLONE_COPY_FAILED', hint: 'Install the attr package (setfattr).' },
        },
      );
    }
  }
}

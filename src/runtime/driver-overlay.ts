import { chmodSync, chownSync, lstatSync, mkdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { CloneDriver, CloneSource, MadeContainer, MountPlan } from './driver.js';
import { runTool } from './exec.js';
import { runtimeLayout } from './paths.js';

/**
 * `overlay`: the template's layer directories are the read-only lowers of an overlayfs,
 * the container owns only `upper/` (its changes) and `work/` (overlayfs's scratch). A clone
 * creates two directories and copies the root directory's metadata, whatever the template's
 * size; customization writes straight into `upper/`. The overlay is mounted only by `run`,
 * inside its private mount namespace, on `rootfs/`.
 *
 * The upper directory's root is what overlayfs shows as `/`, so it takes the template root's
 * owner and mode.
 */
export const overlayDriver: CloneDriver = {
  name: 'overlay',

  async probe(scratch) {
    for (const d of ['l1', 'l2', 'u', 'w', 'm']) await mkdir(join(scratch, d));
    await writeFile(join(scratch, 'l2', 'f'), 'x');
    const script =
      'cd "$1" && mount -t overlay overlay -o lowerdir=l1:l2,upperdir=u,workdir=w m && [ -f m/f ] && touch m/g && [ -f u/g ]';
    const out = await runTool([
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      script,
      'probe',
      scratch,
    ]).catch(() => undefined);
    return out?.code === 0;
  },

  async create(source: CloneSource, dir: string): Promise<MadeContainer> {
    const upper = runtimeLayout.upper(dir);
    const top = source.layers[source.layers.length - 1];
    mkdirSync(upper);
    mkdirSync(runtimeLayout.work(dir));
    mkdirSync(runtimeLayout.rootfs(dir));
    if (top !== undefined) {
      const root = lstatSync(top);
      chownSync(upper, root.uid, root.gid);
      chmodSync(upper, root.mode & 0o7777);
    }
    return { upper, lowers: [...source.layers].reverse() };
  },

  mountPlan(source: CloneSource, dir: string): MountPlan {
    return {
      kind: 'overlay',
      lowers: [...source.layers].reverse(),
      upper: runtimeLayout.upper(dir),
      work: runtimeLayout.work(dir),
      rootfs: runtimeLayout.rootfs(dir),
    };
  },

  async remove() {},
};

/** Lower directory names relative to `<store>/layers`, so long stacks fit in mount's option page. */
export function lowerdirOption(lowers: readonly string[]): string {
  return lowers.map((l) => basename(l)).join(':');
}

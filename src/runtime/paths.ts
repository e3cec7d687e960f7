import { join } from 'node:path';

/**
 * Where the runtime keeps things inside a store (see docs/runtime.md):
 *
 * ```
 * <store>/containers/<name>/container.json   the record (written before the directory appears)
 * <store>/containers/<name>/upper/, work/    overlay: the container's own changes, overlay's work dir
 * <store>/containers/<name>/rootfs/          the tree (copy, reflink, btrfs) or the overlay mount point
 * <store>/containers/<name>/running          present while a `run` uses the container: pid and start time
 * <store>/runtime/driver.json                the driver `auto` chose for this store, and the probe results
 * <store>/runtime/dev/                       the device nodes copied into each run's private /dev
 * <store>/runtime/btrfs/<key>/               btrfs: one read-only base subvolume per layer stack
 * ```
 *
 * A container directory only ever appears whole: it is assembled under `<store>/tmp/<pid>-…/`
 * (which `cleanStore` removes once that pid is gone) and renamed into `containers/`.
 */
export const runtimeLayout = {
  containers: (store: string) => join(store, 'containers'),
  container: (store: string, name: string) => join(store, 'containers', name),
  record: (dir: string) => join(dir, 'container.json'),
  upper: (dir: string) => join(dir, 'upper'),
  work: (dir: string) => join(dir, 'work'),
  rootfs: (dir: string) => join(dir, 'rootfs'),
  running: (dir: string) => join(dir, 'running'),
  runtime: (store: string) => join(store, 'runtime'),
  driverChoice: (store: string) => join(store, 'runtime', 'driver.json'),
  devSkeleton: (store: string) => join(store, 'runtime', 'dev'),
  btrfsBases: (store: string) => join(store, 'runtime', 'btrfs'),
  btrfsBase: (store: string, key: string) => join(store, 'runtime', 'btrfs', key),
};

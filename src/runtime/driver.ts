/**
 * The clone-driver contract: how a container's filesystem is made from a template's layers,
 * how `run` mounts it, and how it is freed. One implementation per strategy (`overlay`,
 * `btrfs`, `reflink`, `copy`), all held to one shared test suite
 * (test/integration/runtime-drivers.test.ts): a driver is correct when a container it makes
 * shows exactly the template's merged view, writes to it reach nobody else, and the template's
 * layer directories stay byte for byte unchanged.
 *
 * Vocabulary:
 * - **layers**: the template's unpacked layer directories (`<store>/layers/<hex>/`), base
 *   first, in overlayfs format (a whiteout is a character device 0:0, an opaque directory has
 *   `trusted.overlay.opaque=y`). Read-only by contract: no driver ever writes into them.
 * - **container directory**: `<store>/containers/<name>/`, made in a staging directory under
 *   `<store>/tmp/` and renamed into place whole, so a driver only ever sees a fresh, empty,
 *   private directory in `create`, and a directory nobody can see any more in `remove`.
 * - **view**: where clone-time customization writes. For `overlay` it is the upper directory
 *   read through the layers (the container's own changes); for the others it is the
 *   container's complete `rootfs/` tree.
 *
 * Lifecycle, as clone, run and rm drive it:
 *
 * ```ts
 * const driver = driverByName('overlay');
 * if (!(await driver.probe(scratchDirInStore))) …;        // once per store (see drivers.ts)
 * const made = await driver.create({ store, layers }, stagingDir);
 * customize(new LayeredTree(made.upper, made.lowers), plan); // no mount needed
 * // … record written, staging renamed to containers/<name> …
 * const plan = driver.mountPlan({ store, layers }, containerDir); // run: mounted in a private namespace
 * // … rm: containers/<name> renamed into tmp/, then:
 * await driver.remove(doomedDir);                         // then the caller deletes the directory
 * ```
 *
 * Invariants: `create` touches nothing outside `dir` except driver caches under
 * `<store>/runtime/` (the btrfs base subvolumes); `mountPlan` is pure; `remove` only frees what
 * a recursive delete cannot (subvolumes) and must be safe to call on a half-made directory.
 */
export type DriverName = 'overlay' | 'btrfs' | 'reflink' | 'copy';

export const DRIVER_NAMES: readonly DriverName[] = ['overlay', 'btrfs', 'reflink', 'copy'];

/** What a container is made from. */
export interface CloneSource {
  store: string;
  /** Unpacked layer directories, base first. */
  layers: readonly string[];
}

/** Where clone-time customization writes, and what it reads through (see `LayeredTree`). */
export interface MadeContainer {
  /** The directory writes go to: `upper/` for overlay, `rootfs/` otherwise. */
  upper: string;
  /** Read-only directories below `upper`, top first (empty when `upper` is the whole tree). */
  lowers: string[];
  /** A driver cache the container depends on (btrfs: the base subvolume's key), kept in the record. */
  base?: string;
}

/**
 * How `run` mounts a container, inside its private mount namespace: an overlay of `lowers`
 * (top first) under `upper` with `work`, or the plain tree at `rootfs`.
 */
export type MountPlan =
  | { kind: 'overlay'; lowers: string[]; upper: string; work: string; rootfs: string }
  | { kind: 'tree'; rootfs: string };

export interface CloneDriver {
  readonly name: DriverName;
  /**
   * True when this driver works for a store whose filesystem holds `scratch` (an empty
   * directory inside the store; the probe may fill it, the caller removes it). Never throws
   * for "does not work here".
   */
  probe(scratch: string): Promise<boolean>;
  /** Makes the container's filesystem under `dir` (fresh, empty, on the store's filesystem). */
  create(source: CloneSource, dir: string): Promise<MadeContainer>;
  /** Pure: how `run` mounts the container whose directory is `dir`. */
  mountPlan(source: CloneSource, dir: string): MountPlan;
  /** Frees what a recursive delete of `dir` cannot; safe on a half-made directory. */
  remove(dir: string): Promise<void>;
}

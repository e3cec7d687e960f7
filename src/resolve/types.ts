import type { BinaryPackage } from '../distro/deb/types.js';

/**
 * The resolver's contract: a request (what the recipe asks for) plus repository indexes in,
 * a package set out. `resolve()` is pure: the same request over the same indexes always
 * yields the same set, so a lock can be recomputed and compared. It never does I/O.
 */

/** The package sets of mmdebstrap's `--variant`, named as it names them (`minbase` = `required`). */
export type Variant = 'essential' | 'apt' | 'minbase' | 'required' | 'important' | 'standard';

export const VARIANTS: readonly Variant[] = [
  'essential',
  'apt',
  'minbase',
  'required',
  'important',
  'standard',
];

export interface ResolveRequest {
  /** Native architecture (`amd64`); only packages of this architecture or `all` are considered. */
  arch: string;
  variant: Variant;
  /**
   * `packages.install` of the recipe: `name`, `name=version` (exactly that version) or
   * `name/suite` (the best version from that suite or codename).
   */
  install: string[];
  /** `packages.exclude`: names removed from consideration (real or virtual). */
  exclude: string[];
  /**
   * The release the variant's roots are drawn from (mmdebstrap's SUITE argument, e.g.
   * `bookworm`): Essential and Priority roots must have a version in an index whose suite or
   * codename is this. Without it every index counts, as mmdebstrap does without a suite.
   */
  release?: string;
  /**
   * A child template's base: the packages its parent already has installed (exact versions).
   * Given, the variant's roots are not installed again: the base is marked first, as apt sees
   * an installed system, and `install` is resolved on top of it. The resolution then lists
   * only what the child adds; a base package the child would have to change is an error.
   */
  installed?: readonly InstalledPackage[];
}

/** A package already installed in a parent template. */
export interface InstalledPackage {
  name: string;
  version: string;
  arch: string;
}

export interface Resolution {
  /** The selected packages, sorted by name, one per name. */
  packages: BinaryPackage[];
}

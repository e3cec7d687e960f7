/**
 * What the unpacker hands to the installer.
 *
 * Lifecycle: `unpackPackages` (unpack.ts) extracts each locked `.deb` exactly once into the
 * staging tree and returns one `UnpackedPackage` per package, in lock order. The dpkg
 * database writer (dpkg-db.ts) registers them as unpacked, and the configure step runs their
 * maintainer scripts in the sandbox. The staging tree is owned by one build; nothing else
 * writes to it while a build runs.
 */
export interface UnpackedPackage {
  name: string;
  version: string;
  /** Architecture field of the package (`all` or a real architecture). */
  architecture: string;
  multiArch: 'no' | 'same' | 'foreign' | 'allowed';
  /** The `control` file of the package's control member, exactly as shipped (text). */
  control: string;
  /**
   * Every other file of the control member (`preinst`, `postinst`, `prerm`, `postrm`,
   * `config`, `md5sums`, `conffiles`, `triggers`, `shlibs`, `symbols`, `templates`, …) by
   * name, with its mode and mtime (seconds), which dpkg keeps when it moves them into `info/`.
   */
  controlFiles: Map<string, { data: Buffer; mode: number; mtime: number }>;
  /**
   * Paths of the data member in archive order, as dpkg writes them in `info/<pkg>.list`:
   * absolute, without trailing slash, `./` → `/.`.
   */
  paths: string[];
}

/** A package from the lock together with its verified file in the package cache. */
export interface PackageFile {
  name: string;
  version: string;
  arch: string;
  /** Absolute path of the `.deb` in the package cache. */
  file: string;
  /** Its size in bytes, when known (the lock's); the unpacker starts with the largest. */
  size?: number;
  /**
   * Settles once `file` is complete and verified in the cache (a build unpacks while the
   * rest of the lock downloads); rejects when it never will be. Absent: already there.
   */
  ready?: Promise<void>;
}

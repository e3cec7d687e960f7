import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { RootcastError } from '../core/errors.js';

/**
 * The Linux calls Node lacks, from the small node-api addon in `native/` (built by the
 * package's `install` script with node-gyp): device nodes and FIFOs (`mknod`), extended
 * attributes that never follow a final symlink (`lsetxattr`, `llistxattr`, `lgetxattr`),
 * streaming xz decoding and the ext4 top-directory hint (`markTopDirectory`).
 *
 * The addon is loaded on first use and cached for the life of the process (or worker). When
 * it was not built, `nativeCalls()` throws `NATIVE_ADDON_MISSING`: the caller only needs it
 * for trees that hold devices, FIFOs or extended attributes. Failures inside a call throw an
 * Error whose `code` is the errno name, as Node's fs does.
 */
export interface NativeCalls {
  /** `mode` includes the file type (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`) and permission bits. */
  mknod(path: string, mode: number, major: number, minor: number): void;
  lsetxattr(path: string, name: string, value: Buffer): void;
  llistxattr(path: string): string[];
  lgetxattr(path: string, name: string): Buffer;
  /** flock(2) with LOCK_NB on `fd`: true when taken, false when held elsewhere. Optional: older builds lack it. */
  flockTry?(fd: number, shared: boolean): boolean;
  /** glibc malloc_trim(0): give freed heap back to the system. Optional: older builds lack it. */
  mallocTrim?(): boolean;
  /**
   * glibc mallopt(M_MMAP_THRESHOLD, bytes): blocks at least this large are mapped and unmapped
   * instead of kept in the arenas (and the threshold stops growing). Optional: older builds lack it.
   */
  mallocMmapThreshold?(bytes: number): boolean;
  /**
   * Decodes the whole xz stream in `input` with the system liblzma, filling `chunk` and
   * calling `onChunk(bytes)` whenever it is full and at the end; `chunk` is reused, so the
   * callback must consume `chunk.subarray(0, bytes)` before returning. Throws code `EXZ`.
   */
  xzDecode(input: Buffer, chunk: Buffer, onChunk: (bytes: number) => void): void;
  /**
   * Sets the directory's "top of a hierarchy" flag (`chattr +T`, FS_TOPDIR_FL), the hint that
   * makes ext2/3/4 place each directory created in it in a fresh block group. Best effort:
   * false where it cannot be set (another filesystem, no permission), never throws.
   */
  markTopDirectory(path: string): boolean;
}

// src/assemble and dist/assemble are both two levels below the package root.
const addonPath = new URL('../../native/build/Release/rootcast_native.node', import.meta.url).pathname;

let loaded: NativeCalls | undefined;

export function nativeCalls(): NativeCalls {
  if (loaded !== undefined) return loaded;
  if (!existsSync(addonPath)) {
    throw new RootcastError({
      code: 'NATIVE_ADDON_MISSING',
      message: `the native addon is not built (${addonPath} is missing)`,
      hint: 'Run `npm rebuild rootcast` or `npx node-gyp rebuild --directory native` (needs a C compiler).',
    });
  }
  loaded = createRequire(import.meta.url)(addonPath) as NativeCalls;
  return loaded;
}

/** True when the addon is built and loadable, for tests and diagnostics. */
export function hasNativeCalls(): boolean {
  try {
    nativeCalls();
    return true;
  } catch {
    return false;
  }
}

/**
 * Keeps large freed blocks from staying resident, for long jobs that move many 1 MiB buffers
 * between threads (index parsing, unpacking, compressing a layer). glibc's default mmap
 * threshold grows to the largest block freed, so after the first 1 MiB buffer is released
 * every later one comes from an arena and the arena keeps it: a minbase build peaked 30 to
 * 60 MiB higher. Fixed at 128 KiB, such blocks are mapped and unmapped, for no measurable
 * time here. Process-wide and idempotent; does nothing without the addon.
 */
export function returnLargeBlocksPromptly(): void {
  if (hasNativeCalls()) nativeCalls().mallocMmapThreshold?.(128 * 1024);
}

import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import zstdBinding from 'zstd-napi/binding.js';

/**
 * A cache of decompressed `.deb` data members, for rebuilds: Debian compresses them with xz,
 * whose decoding is most of the unpacker's CPU time (1.8 s of CPU for bookworm minbase),
 * while zstd decodes the same bytes several times faster. The first unpack of an xz member
 * writes a zstd copy of its tar (`<store>/packages/members/<deb sha256>.tar.zst`, fast level,
 * frame checksum on): on the way, or — in a build — raw first, compressed later by
 * `MemberCacheCompressor` while a core is idle. Later unpacks of the same `.deb` read the copy.
 *
 * Trust: the copy is derived data kept in the same store as the verified `.deb` it came
 * from, named by that `.deb`'s digest. Damage is caught by zstd's frame checksum (the
 * unpack fails with `MEMBER_CACHE_CORRUPT` and the copy is removed, so the next build
 * decodes the `.deb` again). gc removes a copy together with its package.
 *
 * Writes are atomic: a temporary `.tmp-<name>-<pid>-<random>` beside the copy, renamed once
 * complete; an unpack that fails leaves no copy (cleanStore removes abandoned temporaries).
 */
/** zstd's fast mode: the copy costs little CPU to write, and decodes as fast. */
export const MEMBER_CACHE_LEVEL = -2;

/** Read in slices, so a large member never sits in memory whole. */
const READ_CHUNK = 1 << 20;

/**
 * Streams the cached tar of `path` to `onChunk`; false when there is no copy. A damaged copy
 * throws (zstd's frame checksum, or a truncated frame).
 */
export function readMemberCache(path: string, onChunk: (chunk: Buffer) => void): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  try {
    const dctx = new zstdBinding.DCtx();
    const input = Buffer.allocUnsafe(READ_CHUNK);
    const out = Buffer.allocUnsafe(zstdBinding.dStreamOutSize());
    let hint = 1;
    for (;;) {
      const read = readSync(fd, input, 0, READ_CHUNK, null);
      if (read === 0) break;
      let src = input.subarray(0, read);
      // Drain until this slice is consumed and the decoder holds nothing more for it.
      for (;;) {
        const [next, produced, consumed] = dctx.decompressStream(out, src);
        // A call that moves nothing (empty input after a full output buffer) reports the
        // start of a next frame: only calls that did something tell where the frame is.
        if (produced > 0 || consumed > 0) hint = next;
        src = src.subarray(consumed);
        if (produced > 0) onChunk(out.subarray(0, produced));
        if (src.length === 0 && produced < out.length) break;
      }
    }
    if (hint !== 0) throw new Error('truncated zstd frame');
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * `<store>/packages/sha256/<hex>` → `<store>/packages/members/<hex>.tar.zst`; undefined for a
 * `.deb` outside a package cache (nothing is cached beside arbitrary files).
 */
export function memberCachePath(debFile: string): string | undefined {
  const name = basename(debFile);
  if (!/^[0-9a-f]{64}$/.test(name) || basename(dirname(debFile)) !== 'sha256') return undefined;
  return join(dirname(dirname(debFile)), 'members', `${name}.tar.zst`);
}

/**
 * A decoded member written as it is, to be compressed into the cache later
 * (`MemberCacheCompressor`): the unpacker hands the raw file over instead of spending its
 * CPU on zstd while every core is decoding xz.
 */
export interface PendingMemberCache {
  /** The raw tar, an atomic-write temporary beside `path` (cleanStore removes it if abandoned). */
  raw: string;
  /** Where the zstd copy goes. */
  path: string;
}

/**
 * Streams tar bytes towards the member cache. Inline: compressed into a zstd file that
 * appears at `path` only when `commit()` runs. Deferred: written raw to a temporary, which
 * `commit()` returns as a `PendingMemberCache` for `MemberCacheCompressor`.
 */
export class MemberCacheWriter {
  readonly #path: string;
  readonly #temp: string;
  readonly #fd: number;
  readonly #cctx: zstdBinding.CCtx | undefined;
  readonly #out: Buffer | undefined;
  #closed = false;

  constructor(path: string, options: { deferred?: boolean } = {}) {
    this.#path = path;
    mkdirSync(dirname(path), { recursive: true });
    this.#temp = temporaryBeside(path);
    this.#fd = openSync(this.#temp, 'wx', 0o644);
    if (!options.deferred) {
      this.#cctx = new zstdBinding.CCtx();
      this.#out = Buffer.allocUnsafe(zstdBinding.cStreamOutSize());
      this.#cctx.setParameter(zstdBinding.CParameter.compressionLevel, MEMBER_CACHE_LEVEL);
      this.#cctx.setParameter(zstdBinding.CParameter.checksumFlag, 1);
    }
  }

  write(chunk: Buffer): void {
    if (this.#cctx) this.#compress(chunk, zstdBinding.EndDirective.continue);
    else writeAll(this.#fd, chunk);
  }

  /** Inline: the copy is in place, undefined is returned. Deferred: the raw file to compress. */
  commit(): PendingMemberCache | undefined {
    if (this.#cctx) this.#compress(Buffer.alloc(0), zstdBinding.EndDirective.end);
    closeSync(this.#fd);
    this.#closed = true;
    if (!this.#cctx) return { raw: this.#temp, path: this.#path };
    renameSync(this.#temp, this.#path);
    return undefined;
  }

  abort(): void {
    if (!this.#closed) {
      this.#closed = true;
      closeSync(this.#fd);
    }
    rmSync(this.#temp, { force: true });
  }

  #compress(input: Buffer, op: zstdBinding.EndDirective): void {
    const cctx = this.#cctx as zstdBinding.CCtx;
    const out = this.#out as Buffer;
    let src = input;
    for (;;) {
      const [remaining, written, consumed] = cctx.compressStream2(out, src, op);
      if (written > 0) writeAll(this.#fd, out.subarray(0, written));
      src = src.subarray(consumed);
      const done =
        op === zstdBinding.EndDirective.end ? remaining === 0 : src.length === 0 && written < out.length;
      if (done) return;
    }
  }
}

/** `.tmp-<name>-<pid>-<random>` beside `path`: the name cleanStore knows as abandoned when the pid is gone. */
export function temporaryBeside(path: string): string {
  return join(dirname(path), `.tmp-${basename(path)}-${process.pid}-${randomBytes(6).toString('hex')}`);
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let offset = 0; offset < data.length; ) offset += writeSync(fd, data, offset, data.length - offset);
}

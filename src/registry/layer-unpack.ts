import { once } from 'node:events';
import { lchownSync, lstatSync, lutimesSync, mkdirSync } from 'node:fs';
import { PassThrough, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { nativeCalls } from '../assemble/native.js';
import { memberRelativePath } from '../assemble/resolve-in-root.js';
import { type TarEntry, TarReader, type TarSink } from '../assemble/tar-reader.js';
import { TreeWriter } from '../assemble/tree-writer.js';
import { applyDirectoryRecords } from '../assemble/unpack.js';
import { CountingHash, SHA256_PREFIX } from '../core/digest.js';
import { RootcastError } from '../core/errors.js';
import { decompressStream } from '../store/compress.js';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD } from '../store/oci.js';

/**
 * Unpacks one OCI layer tar into an empty directory in overlayfs format, as the store keeps
 * layers (`<store>/layers/<hex of diff_id>/`, the lower directories of clones):
 *
 * - `dir/.wh.name` (a whiteout) becomes a character device 0:0 `dir/name`, with the entry's
 *   owner, mode and mtime; an entry for `name` in the same layer wins over its whiteout;
 * - `dir/.wh..wh..opq` (an opaque directory) becomes the xattr `trusted.overlay.opaque=y` on
 *   `dir`; other `.wh..wh.*` names (aufs bookkeeping) are dropped;
 * - every other member goes through the package unpacker's `TreeWriter` (tree-writer.ts):
 *   numeric owners, full modes, xattrs, devices, hardlinks, mtimes, and its path safety
 *   (names resolved inside the root, final components never followed, members that go
 *   through a symlink of the same layer refused); directory metadata is applied at the end.
 *   `trusted.overlay.*` xattrs in the tar are dropped: only whiteout entries may make overlay
 *   metadata, so a layer cannot forge a redirect or an opaque mark.
 *
 * Lifecycle: `createLayerUnpacker(root, mediaType, label)`, then `write()` the compressed
 * bytes in order (awaiting each), then `finish()`, which returns the diff_id (sha256 of the
 * uncompressed tar) for the caller to compare; or `abort()` on any failure. The directory
 * is left partial on failure: callers unpack into a staging directory and discard it.
 */
export interface LayerUnpacker {
  write(chunk: Buffer): Promise<void>;
  finish(): Promise<{ diffId: string; size: number }>;
  abort(): void;
}

export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const LAYER_MEDIA_TYPES: readonly string[] = [
  MEDIA_TYPE_LAYER_ZSTD,
  MEDIA_TYPE_LAYER_GZIP,
  MEDIA_TYPE_LAYER_TAR,
];

const S_IFCHR = 0o020000;
const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

function decompressorFor(mediaType: string): Transform {
  if (mediaType === MEDIA_TYPE_LAYER_ZSTD) return decompressStream();
  if (mediaType === MEDIA_TYPE_LAYER_GZIP) return createGunzip();
  if (mediaType === MEDIA_TYPE_LAYER_TAR) return new PassThrough();
  throw new RootcastError({
    code: 'LAYER_MEDIA_TYPE_UNSUPPORTED',
    message: `layer media type ${mediaType} is not supported`,
    hint: 'rootcast reads OCI layers that are tar, tar+gzip or tar+zstd.',
  });
}

export function createLayerUnpacker(root: string, mediaType: string, label: string): LayerUnpacker {
  const input = new PassThrough();
  const decompressor = decompressorFor(mediaType);
  const writer = new TreeWriter(root, label);
  const sink = new OverlaySink(root, writer, label);
  const reader = new TarReader(sink, label);
  const diff = new CountingHash();
  const done = pipeline(input, decompressor, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      diff.update(chunk);
      reader.push(chunk);
    }
  });
  // Awaited in write() and finish(); never left as an unhandled rejection meanwhile.
  done.catch(() => {});
  let aborted = false;
  return {
    async write(chunk) {
      if (!input.write(chunk)) await Promise.race([once(input, 'drain'), done]);
    },
    async finish() {
      input.end();
      await done;
      reader.end();
      applyDirectoryRecords([writer.result().directories]);
      return { diffId: SHA256_PREFIX + diff.hex(), size: diff.size };
    },
    abort() {
      if (aborted) return;
      aborted = true;
      writer.abort();
      input.destroy();
      decompressor.destroy();
    },
  };
}

/** Turns OCI whiteouts into overlayfs ones and hands everything else to the TreeWriter. */
class OverlaySink implements TarSink {
  private skipping = false;

  constructor(
    private readonly root: string,
    private readonly writer: TreeWriter,
    private readonly label: string,
  ) {}

  entry(entry: TarEntry): void {
    const rel = memberRelativePath(entry.path);
    const slash = rel === undefined ? -1 : rel.lastIndexOf('/');
    const name = rel === undefined ? '' : rel.slice(slash + 1);
    if (rel === undefined || !name.startsWith(WHITEOUT)) {
      for (const key of [...entry.xattrs.keys()])
        if (key.startsWith('trusted.overlay.')) entry.xattrs.delete(key);
      this.writer.entry(entry);
      return;
    }
    this.skipping = true;
    const dir = this.realDirectory(slash < 0 ? '' : rel.slice(0, slash), entry);
    if (name === OPAQUE) {
      nativeCalls().lsetxattr(dir, 'trusted.overlay.opaque', Buffer.from('y'));
      return;
    }
    if (name.startsWith(`${WHITEOUT}${WHITEOUT}`)) return;
    const hidden = name.slice(WHITEOUT.length);
    if (hidden === '' || hidden === '.' || hidden === '..') throw this.invalid(entry, 'whites out nothing');
    const path = `${dir}/${hidden}`;
    if (lstatSync(path, { throwIfNoEntry: false })) return;
    nativeCalls().mknod(path, S_IFCHR | (entry.mode & 0o7777), 0, 0);
    lchownSync(path, entry.uid, entry.gid);
    lutimesSync(path, entry.mtime, entry.mtime);
  }

  data(chunk: Buffer): void {
    if (!this.skipping) this.writer.data(chunk);
  }

  entryEnd(): void {
    if (this.skipping) {
      this.skipping = false;
      return;
    }
    this.writer.entryEnd();
  }

  /** The real directory `rel` under the root, created when missing; symlinks are refused. */
  private realDirectory(rel: string, entry: TarEntry): string {
    let path = this.root;
    for (const part of rel === '' ? [] : rel.split('/')) {
      path = `${path}/${part}`;
      const stats = lstatSync(path, { throwIfNoEntry: false });
      if (stats === undefined) mkdirSync(path, 0o755);
      else if (!stats.isDirectory())
        throw this.invalid(entry, `lies under ${path.slice(this.root.length)}, which is not a directory`);
    }
    return path;
  }

  private invalid(entry: TarEntry, what: string): RootcastError {
    return new RootcastError({
      code: 'LAYER_WHITEOUT_INVALID',
      message: `${this.label}: whiteout ${entry.path} ${what}`,
      hint: 'The layer is broken or hostile; it was not unpacked. Pull it from a trusted source.',
      details: { member: entry.path },
    });
  }
}

import { gunzipSync } from 'node:zlib';
import { xz } from '@napi-rs/lzma';
import zstdBinding from 'zstd-napi/binding.js';
import { hasNativeCalls, nativeCalls } from '../../assemble/native.js';
import { RootcastError } from '../../core/errors.js';

/**
 * The `.deb` container: an `ar` archive holding `debian-binary` (`2.0\n`), then
 * `control.tar[.gz|.xz|.zst]`, then `data.tar[.gz|.xz|.zst|.bz2…]` (dpkg also allows members
 * named `_*` in between, which it ignores; so do we).
 *
 * Lifecycle: the caller reads the whole package file (packages are small compared with what
 * they unpack to), `readDebArchive()` finds the two tar members without copying, and
 * `decompressMember()` turns one into tar bytes, handed to `onChunk` in order. zstd and xz
 * (with the native addon's liblzma decoder) stream in bounded chunks; gzip members, and xz
 * ones without the addon, come back as one buffer, so peak memory per package is then its
 * largest uncompressed tar member. Everything is synchronous: it runs inside unpack workers.
 *
 * Errors: `DEB_BAD_ARCHIVE` (not an ar archive / missing or misordered members),
 * `DEB_UNSUPPORTED_COMPRESSION`, `DEB_DECOMPRESS_FAILED`; each message names `source`.
 */
export type DebCompression = 'none' | 'gzip' | 'xz' | 'zstd';

export interface DebMember {
  /** Member name as stored, without ar's trailing `/` or blanks. */
  name: string;
  compression: DebCompression;
  /** The member's bytes: a view into the package buffer. */
  bytes: Buffer;
}

export interface DebArchive {
  control: DebMember;
  data: DebMember;
}

const AR_MAGIC = '!<arch>\n';
const AR_HEADER = 60;

export function readDebArchive(file: Buffer, source: string): DebArchive {
  if (file.length < AR_MAGIC.length || file.toString('latin1', 0, AR_MAGIC.length) !== AR_MAGIC) {
    throw badArchive(source, 'is not an ar archive');
  }
  const members: { name: string; bytes: Buffer }[] = [];
  let pos = AR_MAGIC.length;
  while (pos < file.length) {
    if (pos + AR_HEADER > file.length) throw badArchive(source, 'ends inside an ar member header');
    const header = file.subarray(pos, pos + AR_HEADER);
    if (header[58] !== 0x60 || header[59] !== 0x0a)
      throw badArchive(source, 'has a corrupt ar member header');
    const name = header.toString('latin1', 0, 16).trimEnd().replace(/\/$/, '');
    const sizeText = header.toString('latin1', 48, 58).trim();
    const size = Number(sizeText);
    if (!/^[0-9]+$/.test(sizeText) || pos + AR_HEADER + size > file.length) {
      throw badArchive(source, `has a bad size for ar member ${name}`);
    }
    members.push({ name, bytes: file.subarray(pos + AR_HEADER, pos + AR_HEADER + size) });
    pos += AR_HEADER + size + (size % 2);
  }
  const [binary, ...rest] = members;
  if (binary?.name !== 'debian-binary' || !/^2\.\d+\n/.test(binary.bytes.toString('latin1'))) {
    throw badArchive(source, 'does not start with a debian-binary member of format 2.x');
  }
  const payload = rest.filter((m) => !m.name.startsWith('_'));
  const control = payload[0];
  const data = payload[1];
  if (control === undefined || !control.name.startsWith('control.tar')) {
    throw badArchive(source, 'has no control.tar member in second place');
  }
  if (data === undefined || !data.name.startsWith('data.tar')) {
    throw badArchive(source, 'has no data.tar member after control.tar');
  }
  return {
    control: { ...control, compression: compressionOf(control.name, source) },
    data: { ...data, compression: compressionOf(data.name, source) },
  };
}

/** zstd output is handed on in slices of this size, so a huge member never sits whole in memory. */
const ZSTD_CHUNK = 1 << 20;

/**
 * Decompresses `member`, calling `onChunk` with consecutive pieces of the tar stream. A piece
 * is only valid during the call (the buffer is reused).
 */
export function decompressMember(member: DebMember, source: string, onChunk: (chunk: Buffer) => void): void {
  try {
    switch (member.compression) {
      case 'none':
        onChunk(member.bytes);
        return;
      case 'gzip':
        onChunk(gunzipSync(member.bytes));
        return;
      case 'xz':
        decompressXz(member.bytes, onChunk);
        return;
      case 'zstd':
        decompressZstd(member.bytes, onChunk);
        return;
    }
  } catch (error) {
    if (error instanceof RootcastError) throw error;
    throw new RootcastError({
      code: 'DEB_DECOMPRESS_FAILED',
      message: `${source}: cannot decompress ${member.name}: ${(error as Error).message}`,
      hint: 'The package file is damaged: delete it from the package cache and fetch again.',
      cause: error,
    });
  }
}

/** xz output is handed on in slices of this size when the native decoder is available. */
const XZ_CHUNK = 1 << 20;

function decompressXz(input: Buffer, onChunk: (chunk: Buffer) => void): void {
  // The system liblzma streams and is ~1.5x faster; the pure-Rust decoder is the fallback
  // when the native addon was not built.
  if (!hasNativeCalls()) {
    onChunk(xz.decompressSync(input));
    return;
  }
  const chunk = Buffer.allocUnsafe(XZ_CHUNK);
  nativeCalls().xzDecode(input, chunk, (bytes) => onChunk(chunk.subarray(0, bytes)));
}

function decompressZstd(input: Buffer, onChunk: (chunk: Buffer) => void): void {
  const dctx = new zstdBinding.DCtx();
  const out = Buffer.allocUnsafe(ZSTD_CHUNK);
  let src = input;
  let lastHint = 1;
  // Keep calling until the input is consumed and the decoder has flushed everything it holds:
  // a full output buffer means more may be pending even when no input is left.
  for (;;) {
    const [hint, produced, consumed] = dctx.decompressStream(out, src);
    src = src.subarray(consumed);
    if (produced > 0) onChunk(out.subarray(0, produced));
    // A call that moves nothing reports the start of a next frame, not this one's end.
    if (produced > 0 || consumed > 0) lastHint = hint;
    if (src.length === 0 && produced < out.length) break;
    if (consumed === 0 && produced === 0) break;
  }
  if (lastHint !== 0) throw new Error('truncated zstd frame');
}

function compressionOf(name: string, source: string): DebCompression {
  const suffix = name.slice(name.indexOf('.tar') + 4);
  switch (suffix) {
    case '':
      return 'none';
    case '.gz':
      return 'gzip';
    case '.xz':
      return 'xz';
    case '.zst':
      return 'zstd';
    default:
      throw new RootcastError({
        code: 'DEB_UNSUPPORTED_COMPRESSION',
        message: `${source}: member ${name} uses a compression rootcast does not read`,
        hint: 'rootcast reads gzip, xz, zstd and uncompressed members; bzip2 and lzma packages are obsolete.',
      });
  }
}

function badArchive(source: string, what: string): RootcastError {
  return new RootcastError({
    code: 'DEB_BAD_ARCHIVE',
    message: `${source} ${what}`,
    hint: 'The file is not a valid Debian package: delete it from the package cache and fetch again.',
  });
}

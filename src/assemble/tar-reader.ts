import { RootcastError } from '../core/errors.js';

/**
 * A streaming reader for the tar dialects found in packages: ustar, GNU (long names `L`/`K`,
 * base-256 numbers) and POSIX pax (`x` per-entry and `g` global extended headers, including
 * `SCHILY.xattr.*` extended attributes).
 *
 * Lifecycle: make one `TarReader` per archive with a `TarSink`, `push()` the archive's bytes
 * in chunks of any size, then call `end()`. For each member the sink sees `entry()` once,
 * then — for regular files only — `data()` with slices that add up to exactly `size` bytes,
 * then `entryEnd()`. Slices are views into the pushed chunks (no copies): a sink that keeps
 * one past the call must copy it. The reader stops at the end-of-archive marker (two zero
 * blocks) and ignores anything after it; an archive that ends mid-member is an error.
 *
 * Everything is synchronous, so one reader can run on the main thread or in a worker.
 * Errors are `RootcastError`s with codes `TAR_BAD_CHECKSUM`, `TAR_BAD_HEADER`,
 * `TAR_UNSUPPORTED_ENTRY`, `TAR_BAD_NAME`, `TAR_TRUNCATED`; their message names `source`.
 */
export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'directory' | 'fifo';

export interface TarEntry {
  /** The member name exactly as archived (pax/GNU long names applied), e.g. `./usr/bin/`. */
  path: string;
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (`0o7777` at most). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Bytes of data that follow; 0 for everything but regular files. */
  size: number;
  /** Seconds since the epoch; pax headers may make it fractional. */
  mtime: number;
  /** Symlink target, or hardlink target member name; '' otherwise. */
  linkpath: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.<name>` pax records, values as raw bytes. */
  xattrs: Map<string, Buffer>;
}

/** Receives the members of an archive; see `TarReader` for the call order. */
export interface TarSink {
  entry(entry: TarEntry): void;
  data(chunk: Buffer): void;
  entryEnd(): void;
}

const BLOCK = 512;
/** Long names and pax headers are buffered; a hostile archive must not make that unbounded. */
const MAX_META_SIZE = 1 << 20;

type State = 'header' | 'data' | 'meta' | 'padding' | 'done';

interface PaxRecords {
  path?: string;
  linkpath?: string;
  size?: number;
  mtime?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Buffer>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class TarReader {
  private state: State = 'header';
  private readonly header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Bytes left in the current member's data (state 'data' or 'meta'). */
  private remaining = 0;
  private padding = 0;
  private meta: Buffer[] = [];
  private metaType = '';
  private zeroBlocks = 0;
  private pending: PaxRecords = {};
  private global: PaxRecords = {};
  private longName: string | undefined;
  private longLink: string | undefined;
  private offset = 0;

  constructor(
    private readonly sink: TarSink,
    private readonly source: string,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    const len = chunk.length;
    while (pos < len && this.state !== 'done') {
      switch (this.state) {
        case 'header': {
          const take = Math.min(BLOCK - this.headerFill, len - pos);
          if (this.headerFill === 0 && take === BLOCK) {
            pos += BLOCK;
            this.onHeader(chunk.subarray(pos - BLOCK, pos));
          } else {
            chunk.copy(this.header, this.headerFill, pos, pos + take);
            this.headerFill += take;
            pos += take;
            if (this.headerFill === BLOCK) {
              this.headerFill = 0;
              this.onHeader(this.header);
            }
          }
          break;
        }
        case 'data': {
          const take = Math.min(this.remaining, len - pos);
          this.sink.data(chunk.subarray(pos, pos + take));
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.finishData();
          break;
        }
        case 'meta': {
          const take = Math.min(this.remaining, len - pos);
          this.meta.push(Buffer.from(chunk.subarray(pos, pos + take)));
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.finishMeta();
          break;
        }
        case 'padding': {
          const take = Math.min(this.padding, len - pos);
          pos += take;
          this.padding -= take;
          if (this.padding === 0) this.state = 'header';
          break;
        }
      }
    }
    this.offset += len;
  }

  /** Declares the input complete; throws when it stopped inside a member. */
  end(): void {
    if (this.state === 'done') return;
    // GNU tar accepts archives without the end marker when they end on a member boundary.
    if (this.state === 'header' && this.headerFill === 0 && this.metaType === '' && !this.hasPendingMeta())
      return;
    throw this.error(
      'TAR_TRUNCATED',
      'ends in the middle of a member',
      'The package file is damaged: fetch it again.',
    );
  }

  private hasPendingMeta(): boolean {
    return this.longName !== undefined || this.longLink !== undefined || Object.keys(this.pending).length > 0;
  }

  private onHeader(block: Buffer): void {
    if (isZeroBlock(block)) {
      this.zeroBlocks += 1;
      if (this.zeroBlocks === 2) this.state = 'done';
      return;
    }
    this.zeroBlocks = 0;
    verifyChecksum(block, () =>
      this.error('TAR_BAD_CHECKSUM', 'has a header with a bad checksum', damagedHint),
    );
    const typeflag = block[156] === 0 ? '0' : String.fromCharCode(block[156] ?? 48);
    const size = this.numeric(block, 124, 12);
    switch (typeflag) {
      case 'x':
      case 'g':
      case 'L':
      case 'K':
        if (size > MAX_META_SIZE) {
          throw this.error('TAR_BAD_HEADER', `has a ${size}-byte extended header`, damagedHint);
        }
        this.metaType = typeflag;
        this.meta = [];
        this.remaining = size;
        this.padding = padTo(size);
        if (size === 0) this.finishMeta();
        else this.state = 'meta';
        return;
    }
    const entry = this.buildEntry(block, typeflag, size);
    this.sink.entry(entry);
    this.remaining = entry.type === 'file' ? entry.size : 0;
    // Whatever the type, the archive carries `size` bytes of data for it (hardlinks in some
    // pax writers do); only files hand them to the sink.
    const stored = entry.type === 'file' ? entry.size : size;
    this.padding = padTo(stored) + (entry.type === 'file' ? 0 : stored);
    if (entry.type === 'file' && this.remaining > 0) {
      this.state = 'data';
    } else {
      this.sink.entryEnd();
      this.state = this.padding > 0 ? 'padding' : 'header';
    }
  }

  private finishData(): void {
    this.sink.entryEnd();
    this.state = this.padding > 0 ? 'padding' : 'header';
  }

  private finishMeta(): void {
    const body = Buffer.concat(this.meta);
    this.meta = [];
    switch (this.metaType) {
      case 'x':
        Object.assign(this.pending, this.parsePax(body));
        break;
      case 'g':
        Object.assign(this.global, this.parsePax(body));
        break;
      case 'L':
        this.longName = this.decodeName(cString(body, 0, body.length));
        break;
      case 'K':
        this.longLink = this.decodeName(cString(body, 0, body.length));
        break;
    }
    this.metaType = '';
    this.state = this.padding > 0 ? 'padding' : 'header';
  }

  private buildEntry(block: Buffer, typeflag: string, size: number): TarEntry {
    const type = entryType(typeflag);
    if (type === undefined) {
      throw this.error(
        'TAR_UNSUPPORTED_ENTRY',
        `has a member of unsupported type '${typeflag}'`,
        'Packages hold files, directories, links, devices and FIFOs only; this archive is not a package rootcast can install.',
      );
    }
    const magic = block.toString('latin1', 257, 263);
    let name = this.decodeName(cString(block, 0, 100));
    if (magic === 'ustar\0' && block[345] !== 0) {
      name = `${this.decodeName(cString(block, 345, 155))}/${name}`;
    }
    const pax: PaxRecords = { ...this.global, ...this.pending };
    if (this.global.xattrs !== undefined || this.pending.xattrs !== undefined) {
      pax.xattrs = new Map([...(this.global.xattrs ?? []), ...(this.pending.xattrs ?? [])]);
    }
    const entry: TarEntry = {
      path: pax.path ?? this.longName ?? name,
      type,
      mode: this.numeric(block, 100, 8) & 0o7777,
      uid: pax.uid ?? this.numeric(block, 108, 8),
      gid: pax.gid ?? this.numeric(block, 116, 8),
      uname: pax.uname ?? this.decodeName(cString(block, 265, 32)),
      gname: pax.gname ?? this.decodeName(cString(block, 297, 32)),
      size: type === 'file' ? (pax.size ?? size) : 0,
      mtime: pax.mtime ?? this.numeric(block, 136, 12),
      linkpath: pax.linkpath ?? this.longLink ?? this.decodeName(cString(block, 157, 100)),
      devmajor: pax.devmajor ?? (type === 'chardev' || type === 'blockdev' ? this.numeric(block, 329, 8) : 0),
      devminor: pax.devminor ?? (type === 'chardev' || type === 'blockdev' ? this.numeric(block, 337, 8) : 0),
      xattrs: pax.xattrs ?? new Map(),
    };
    this.pending = {};
    this.longName = undefined;
    this.longLink = undefined;
    if (entry.path === '') throw this.error('TAR_BAD_HEADER', 'has a member with an empty name', damagedHint);
    return entry;
  }

  private parsePax(body: Buffer): PaxRecords {
    const records: PaxRecords = {};
    let pos = 0;
    while (pos < body.length) {
      const space = body.indexOf(0x20, pos);
      const length = space < 0 ? Number.NaN : Number(body.toString('latin1', pos, space));
      if (
        !Number.isSafeInteger(length) ||
        length <= 0 ||
        pos + length > body.length ||
        body[pos + length - 1] !== 0x0a
      ) {
        throw this.error('TAR_BAD_HEADER', 'has a malformed pax extended header', damagedHint);
      }
      const record = body.subarray(space + 1, pos + length - 1);
      pos += length;
      const eq = record.indexOf(0x3d);
      if (eq < 0) throw this.error('TAR_BAD_HEADER', 'has a pax record without "="', damagedHint);
      const key = this.decodeName(record.subarray(0, eq));
      const value = record.subarray(eq + 1);
      this.applyPaxRecord(records, key, value);
    }
    return records;
  }

  private applyPaxRecord(records: PaxRecords, key: string, value: Buffer): void {
    if (key.startsWith('SCHILY.xattr.')) {
      records.xattrs ??= new Map();
      records.xattrs.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
      return;
    }
    switch (key) {
      case 'path':
        records.path = this.decodeName(value);
        return;
      case 'linkpath':
        records.linkpath = this.decodeName(value);
        return;
      case 'uname':
        records.uname = this.decodeName(value);
        return;
      case 'gname':
        records.gname = this.decodeName(value);
        return;
      case 'size':
      case 'uid':
      case 'gid':
      case 'SCHILY.devmajor':
      case 'SCHILY.devminor': {
        const text = value.toString('latin1');
        const n = Number(text);
        if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n)) {
          throw this.error('TAR_BAD_HEADER', `has a bad pax ${key} value`, damagedHint);
        }
        const field = key === 'SCHILY.devmajor' ? 'devmajor' : key === 'SCHILY.devminor' ? 'devminor' : key;
        records[field as 'size' | 'uid' | 'gid' | 'devmajor' | 'devminor'] = n;
        return;
      }
      case 'mtime': {
        const text = value.toString('latin1');
        const n = Number(text);
        if (!/^-?[0-9]+(\.[0-9]+)?$/.test(text) || !Number.isFinite(n)) {
          throw this.error('TAR_BAD_HEADER', 'has a bad pax mtime value', damagedHint);
        }
        records.mtime = n;
        return;
      }
      default:
        // atime, ctime, comment, charset, GNU sparse keys…: nothing a tree needs.
        return;
    }
  }

  private numeric(block: Buffer, start: number, length: number): number {
    const first = block[start] ?? 0;
    if (first & 0x80) {
      // GNU base-256: big-endian two's complement with the high bit as the marker.
      if (first === 0xff) throw this.error('TAR_BAD_HEADER', 'has a negative numeric field', damagedHint);
      let value = first & 0x7f;
      for (let i = start + 1; i < start + length; i++) value = value * 256 + (block[i] ?? 0);
      if (!Number.isSafeInteger(value))
        throw this.error('TAR_BAD_HEADER', 'has an oversized numeric field', damagedHint);
      return value;
    }
    let value = 0;
    let i = start;
    const end = start + length;
    while (i < end && block[i] === 0x20) i++;
    for (; i < end; i++) {
      const c = block[i] ?? 0;
      if (c === 0 || c === 0x20) break;
      if (c < 0x30 || c > 0x37)
        throw this.error('TAR_BAD_HEADER', 'has a non-octal numeric field', damagedHint);
      value = value * 8 + (c - 0x30);
    }
    return value;
  }

  private decodeName(bytes: Uint8Array): string {
    let ascii = true;
    for (const b of bytes) {
      if (b & 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
    try {
      return utf8.decode(bytes);
    } catch {
      throw this.error(
        'TAR_BAD_NAME',
        'has a member name that is not UTF-8',
        'rootcast installs only packages whose file names are UTF-8, as Debian policy requires.',
      );
    }
  }

  private error(code: string, what: string, hint: string): RootcastError {
    return new RootcastError({
      code,
      message: `${this.source}: tar archive ${what} (near byte ${this.offset})`,
      hint,
      details: { source: this.source },
    });
  }
}

const damagedHint =
  'The package file is damaged or not a valid package: fetch it again or report it upstream.';

function entryType(typeflag: string): TarEntryType | undefined {
  switch (typeflag) {
    case '0':
    case '7':
      return 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '3':
      return 'chardev';
    case '4':
      return 'blockdev';
    case '5':
      return 'directory';
    case '6':
      return 'fifo';
    default:
      return undefined;
  }
}

function padTo(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

function cString(block: Buffer, start: number, length: number): Buffer {
  const end = block.indexOf(0, start);
  return block.subarray(start, end < 0 || end > start + length ? start + length : end);
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function verifyChecksum(block: Buffer, fail: () => RootcastError): void {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  let stored = 0;
  for (let i = 148; i < 156; i++) {
    const c = block[i] ?? 0;
    if (c === 0 || c === 0x20) {
      if (stored > 0) break;
      continue;
    }
    if (c < 0x30 || c > 0x37) throw fail();
    stored = stored * 8 + (c - 0x30);
  }
  if (stored !== unsigned && stored !== signed) throw fail();
}

/**
 * Pure encoding of tar headers: POSIX ustar, with a PAX extended header (typeflag `x`) in
 * front of an entry only when ustar cannot hold it (long names or link targets, big sizes,
 * ids, times or device numbers, extended attributes).
 *
 * Determinism: the same `TarEntry` always encodes to the same bytes. Owners are numeric only
 * (uname/gname empty), there are no atime/ctime records, PAX records are sorted by key, and
 * the PAX header's own name and fields are derived from the entry alone (GNU tar's default
 * puts the writer's pid there).
 */
export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

export interface TarEntry {
  /** Relative path, UTF-8, no leading `./` or `/`; directories end with `/`. */
  path: string;
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (`mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Content length; 0 for everything but regular files. */
  size: number;
  /** Whole seconds since the epoch (already clamped by the caller). */
  mtime: number;
  /** Symlink target, or the path of the entry a hardlink points to. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, already sorted by name. */
  xattrs?: Array<[string, Buffer]>;
}

export const BLOCK = 512;

const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

/** Largest value an octal field of `width` bytes holds (width-1 digits and a NUL). */
function octalMax(width: number): number {
  return 8 ** (width - 1) - 1;
}

function fitsOctal(value: number, width: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value <= octalMax(width);
}

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  const v = fitsOctal(value, width) ? value : 0;
  block.write(`${v.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'latin1');
}

function writeBytes(block: Buffer, offset: number, width: number, value: Buffer): void {
  value.copy(block, offset, 0, Math.min(width, value.length));
}

/** `value` cut to at most `max` UTF-8 bytes without splitting a character. */
function truncateUtf8(value: string, max: number): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

interface UstarFields {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeBytes(block, 0, 100, f.name);
  writeOctal(block, 100, 8, f.mode);
  writeOctal(block, 108, 8, f.uid);
  writeOctal(block, 116, 8, f.gid);
  writeOctal(block, 124, 12, f.size);
  writeOctal(block, 136, 12, f.mtime);
  block.write('        ', 148, 8, 'latin1');
  block.write(f.typeflag, 156, 1, 'latin1');
  writeBytes(block, 157, 100, f.linkname);
  block.write('ustar\u000000', 257, 8, 'latin1');
  // uname (265) and gname (297) stay empty: owners are numeric only.
  writeOctal(block, 329, 8, f.devmajor);
  writeOctal(block, 337, 8, f.devminor);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/** One PAX record, `"<len> <key>=<value>\n"`, where len counts the whole record. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length), 'latin1'), body]);
}

function paxRecordsFor(entry: TarEntry): Array<[string, Buffer]> {
  const records: Array<[string, Buffer]> = [];
  const text = (key: string, value: string) => records.push([key, Buffer.from(value, 'utf8')]);
  if (Buffer.byteLength(entry.path, 'utf8') > 100) text('path', entry.path);
  if (entry.linkname !== undefined && Buffer.byteLength(entry.linkname, 'utf8') > 100) {
    text('linkpath', entry.linkname);
  }
  if (!fitsOctal(entry.size, 12)) text('size', String(entry.size));
  if (!fitsOctal(entry.uid, 8)) text('uid', String(entry.uid));
  if (!fitsOctal(entry.gid, 8)) text('gid', String(entry.gid));
  if (!fitsOctal(entry.mtime, 12)) text('mtime', String(entry.mtime));
  // Not in POSIX; GNU tar and libarchive read these for device numbers beyond ustar's 21 bits.
  if (entry.devmajor !== undefined && !fitsOctal(entry.devmajor, 8)) {
    text('SCHILY.devmajor', String(entry.devmajor));
  }
  if (entry.devminor !== undefined && !fitsOctal(entry.devminor, 8)) {
    text('SCHILY.devminor', String(entry.devminor));
  }
  for (const [name, value] of entry.xattrs ?? []) records.push([`SCHILY.xattr.${name}`, value]);
  return records.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** The header blocks of `entry` (PAX header and its data if needed, then the ustar header). */
export function encodeEntryHeader(entry: TarEntry): Buffer {
  const typeflag = TYPEFLAG[entry.type];
  const main = ustarBlock({
    name: truncateUtf8(entry.path, 100),
    mode: entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.type === 'file' ? entry.size : 0,
    mtime: entry.mtime,
    typeflag,
    linkname: truncateUtf8(entry.linkname ?? '', 100),
    devmajor: entry.devmajor ?? 0,
    devminor: entry.devminor ?? 0,
  });
  const records = paxRecordsFor(entry);
  if (records.length === 0) return main;
  const data = Buffer.concat(records.map(([key, value]) => paxRecord(key, value)));
  const base = entry.path.replace(/\/$/, '').split('/').pop() ?? '';
  const pax = ustarBlock({
    name: truncateUtf8(`PaxHeaders/${base}`, 100),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: data.length,
    mtime: fitsOctal(entry.mtime, 12) ? entry.mtime : 0,
    typeflag: 'x',
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([pax, data, Buffer.alloc(padding(data.length)), main]);
}

/** Zero bytes that follow `size` bytes of content up to the next block boundary. */
export function contentPadding(size: number): number {
  return padding(size);
}

/** The end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2);

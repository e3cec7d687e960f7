import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { xz } from '@napi-rs/lzma';
import { Parser } from 'tar';
import { compress as zstdCompress } from 'zstd-napi';
import type { PackageFile } from '../../src/assemble/types.js';

/**
 * Builds real `.deb` files for tests, byte by byte, so tests can make any archive a package
 * could hold — including hostile ones no well-behaved tar writer would produce (absolute
 * names, `..`, links out of the tree, devices anywhere). Names longer than ustar's 100
 * bytes go into a pax header by default or a GNU `L`/`K` header with `longNames: 'gnu'`.
 */
export type TarSpecType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'chardev' | 'blockdev' | 'fifo';

export interface TarSpec {
  /** Written verbatim as the member name (no `./` added). */
  path: string;
  type: TarSpecType;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch; default 1700000000. */
  mtime?: number;
  data?: Buffer | string;
  linkpath?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer | string>;
  /** Extra pax records for this member. */
  pax?: Record<string, string>;
}

export type Compression = 'gzip' | 'xz' | 'zstd' | 'none';

const TYPEFLAG: Record<TarSpecType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  chardev: '3',
  blockdev: '4',
  dir: '5',
  fifo: '6',
};

export function buildTar(entries: TarSpec[], options: { longNames?: 'pax' | 'gnu' } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const spec of entries) {
    const data = spec.type === 'file' ? Buffer.from(spec.data ?? '') : Buffer.alloc(0);
    const pax: Record<string, string | Buffer> = { ...spec.pax };
    for (const [name, value] of Object.entries(spec.xattrs ?? {})) pax[`SCHILY.xattr.${name}`] = value;
    let name = spec.path;
    let linkpath = spec.linkpath ?? '';
    if (Buffer.byteLength(name) > 100) {
      if (options.longNames === 'gnu') blocks.push(...gnuLong('L', name));
      else pax.path = name;
      name = Buffer.from(name).subarray(0, 100).toString('latin1');
    }
    if (Buffer.byteLength(linkpath) > 100) {
      if (options.longNames === 'gnu') blocks.push(...gnuLong('K', linkpath));
      else pax.linkpath = linkpath;
      linkpath = linkpath.slice(0, 100);
    }
    if (Object.keys(pax).length > 0) {
      const body = paxBody(pax);
      blocks.push(header({ name: 'PaxHeader', typeflag: 'x', size: body.length }), pad(body));
    }
    blocks.push(
      header({
        name,
        typeflag: TYPEFLAG[spec.type],
        size: data.length,
        mode: spec.mode ?? (spec.type === 'dir' ? 0o755 : spec.type === 'symlink' ? 0o777 : 0o644),
        uid: spec.uid ?? 0,
        gid: spec.gid ?? 0,
        uname: spec.uname ?? 'root',
        gname: spec.gname ?? 'root',
        mtime: spec.mtime ?? 1_700_000_000,
        linkpath,
        devmajor: spec.devmajor ?? 0,
        devminor: spec.devminor ?? 0,
      }),
    );
    if (data.length > 0) blocks.push(pad(data));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

interface HeaderFields {
  name: string;
  typeflag: string;
  size: number;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: number;
  linkpath?: string;
  devmajor?: number;
  devminor?: number;
}

/** One raw ustar header block; `name` may be anything (hostile tests rely on that). */
export function header(fields: HeaderFields): Buffer {
  const block = Buffer.alloc(512);
  block.write(fields.name, 0, 100, 'utf8');
  octal(block, 100, 8, fields.mode ?? 0o644);
  numeric(block, 108, 8, fields.uid ?? 0);
  numeric(block, 116, 8, fields.gid ?? 0);
  numeric(block, 124, 12, fields.size);
  octal(block, 136, 12, fields.mtime ?? 1_700_000_000);
  block.write(fields.typeflag, 156, 1, 'latin1');
  block.write(fields.linkpath ?? '', 157, 100, 'utf8');
  block.write('ustar\u000000', 257, 8, 'latin1');
  block.write(fields.uname ?? 'root', 265, 32, 'utf8');
  block.write(fields.gname ?? 'root', 297, 32, 'utf8');
  octal(block, 329, 8, fields.devmajor ?? 0);
  octal(block, 337, 8, fields.devminor ?? 0);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  return block;
}

function octal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'latin1');
}

/** Octal when it fits, else GNU base-256 (big uids, sizes over 8 GiB). */
function numeric(block: Buffer, offset: number, length: number, value: number): void {
  if (value < 8 ** (length - 1)) {
    octal(block, offset, length, value);
    return;
  }
  let rest = value;
  for (let i = offset + length - 1; i > offset; i--) {
    block[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  block[offset] = 0x80;
}

function gnuLong(typeflag: 'L' | 'K', value: string): Buffer[] {
  const body = Buffer.concat([Buffer.from(value), Buffer.alloc(1)]);
  return [header({ name: '././@LongLink', typeflag, size: body.length }), pad(body)];
}

function paxBody(records: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const payload = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
    let length = payload.length + 1;
    while (String(length).length + payload.length !== length) length = String(length).length + payload.length;
    parts.push(Buffer.from(String(length)), payload);
  }
  return Buffer.concat(parts);
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

export function compress(data: Buffer, compression: Compression): Buffer {
  switch (compression) {
    case 'gzip':
      return gzipSync(data);
    case 'xz':
      return xz.compressSync(data);
    case 'zstd':
      return zstdCompress(data);
    case 'none':
      return data;
  }
}

const SUFFIX: Record<Compression, string> = { gzip: '.gz', xz: '.xz', zstd: '.zst', none: '' };

export function buildAr(members: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [Buffer.from('!<arch>\n')];
  for (const member of members) {
    const head = Buffer.alloc(60, 0x20);
    head.write(`${member.name}/`, 0, 16, 'latin1');
    head.write('0', 16, 12, 'latin1');
    head.write('0', 28, 6, 'latin1');
    head.write('0', 34, 6, 'latin1');
    head.write('100644', 40, 8, 'latin1');
    head.write(String(member.data.length), 48, 10, 'latin1');
    head.write('`\n', 58, 2, 'latin1');
    parts.push(head, member.data);
    if (member.data.length % 2 === 1) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

export interface DebSpec {
  name: string;
  version?: string;
  arch?: string;
  multiArch?: string;
  entries: TarSpec[];
  /** Control member files other than `control` (postinst, md5sums…). */
  controlFiles?: Record<string, { data: string; mode?: number }>;
  controlCompression?: Compression;
  dataCompression?: Compression;
  longNames?: 'pax' | 'gnu';
}

export function controlText(spec: DebSpec): string {
  const lines = [
    `Package: ${spec.name}`,
    `Version: ${spec.version ?? '1.0'}`,
    `Architecture: ${spec.arch ?? 'amd64'}`,
    ...(spec.multiArch === undefined ? [] : [`Multi-Arch: ${spec.multiArch}`]),
    'Maintainer: Test <test@example.org>',
    `Description: test package ${spec.name}`,
  ];
  return `${lines.join('\n')}\n`;
}

export function buildDeb(spec: DebSpec): Buffer {
  const control = buildTar([
    { path: './', type: 'dir' },
    { path: './control', type: 'file', data: controlText(spec) },
    ...Object.entries(spec.controlFiles ?? {}).map(
      ([name, file]): TarSpec => ({
        path: `./${name}`,
        type: 'file',
        data: file.data,
        mode: file.mode ?? 0o644,
      }),
    ),
  ]);
  const controlCompression = spec.controlCompression ?? 'xz';
  const dataCompression = spec.dataCompression ?? 'xz';
  return buildAr([
    { name: 'debian-binary', data: Buffer.from('2.0\n') },
    { name: `control.tar${SUFFIX[controlCompression]}`, data: compress(control, controlCompression) },
    {
      name: `data.tar${SUFFIX[dataCompression]}`,
      data: compress(buildTar(spec.entries, { longNames: spec.longNames ?? 'pax' }), dataCompression),
    },
  ]);
}

/** Writes the package into `dir` and returns it as the lock would describe it. */
export async function writeDeb(dir: string, spec: DebSpec): Promise<PackageFile> {
  const file = join(dir, `${spec.name}.deb`);
  await writeFile(file, buildDeb(spec));
  return { name: spec.name, version: spec.version ?? '1.0', arch: spec.arch ?? 'amd64', file };
}

/** One member of a package's data archive as an independent reader (dpkg-deb + node-tar) sees it. */
export interface ReferenceEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'chardev' | 'blockdev' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkpath: string;
  devmajor: number;
  devminor: number;
  /** Hex sha256 of a regular file's content. */
  sha256?: string;
}

const REFERENCE_TYPES: Record<string, ReferenceEntry['type']> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'dir',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
  CharacterDevice: 'chardev',
  BlockDevice: 'blockdev',
  FIFO: 'fifo',
};

/**
 * Lists a package's data member with tools independent of rootcast's reader: dpkg-deb
 * extracts the tar stream, node-tar parses it.
 */
export function referenceListing(debFile: string): Promise<ReferenceEntry[]> {
  return new Promise((resolve, reject) => {
    const entries: ReferenceEntry[] = [];
    const parser = new Parser({
      onReadEntry(entry) {
        const type = REFERENCE_TYPES[entry.type];
        if (type === undefined) {
          reject(new Error(`unexpected tar type ${entry.type} for ${entry.path}`));
          return;
        }
        const item: ReferenceEntry = {
          path: entry.path,
          type,
          mode: (entry.mode ?? 0) & 0o7777,
          uid: entry.uid ?? 0,
          gid: entry.gid ?? 0,
          size: entry.size,
          mtime: Math.floor((entry.mtime?.getTime() ?? 0) / 1000),
          linkpath: entry.linkpath ?? '',
          devmajor: entry.header.devmaj ?? 0,
          devminor: entry.header.devmin ?? 0,
        };
        entries.push(item);
        if (type === 'file') {
          const hash = createHash('sha256');
          entry.on('data', (chunk: Buffer) => hash.update(chunk));
          entry.on('end', () => {
            item.sha256 = hash.digest('hex');
          });
        } else {
          entry.resume();
        }
      },
    });
    const child = spawn('dpkg-deb', ['--fsys-tarfile', debFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdout.pipe(parser);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`dpkg-deb --fsys-tarfile ${debFile} failed: ${stderr}`));
    });
    parser.on('end', () => resolve(entries));
    parser.on('error', reject);
  });
}

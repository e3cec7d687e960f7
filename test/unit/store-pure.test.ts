import { describe, expect, it } from 'vitest';
import { validateCompressionLevel } from '../../src/store/compress.js';
import { tagInIndex } from '../../src/store/history.js';
import { emptyIndex } from '../../src/store/layout.js';
import { ANNOTATION, ociPlatformForDebianArch, rfc3339FromEpoch } from '../../src/store/oci.js';
import { ownerPidOf } from '../../src/store/paths.js';
import { encodeEntryHeader, paxRecord, type TarEntry } from '../../src/store/tar-header.js';
import { splitDevice } from '../../src/store/tar-writer.js';
import { parseTemplateRef } from '../../src/store/template-query.js';
import { buildImageConfig } from '../../src/store/templates.js';
import { parseGetfattrDump } from '../../src/store/xattrs.js';

function field(block: Buffer, offset: number, width: number): string {
  return block
    .subarray(offset, offset + width)
    .toString('latin1')
    .replace(/\0.*$/s, '');
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return Number.parseInt(field(block, 148, 8).trim(), 8) === sum;
}

const base: TarEntry = {
  path: 'etc/hostname',
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 8,
  mtime: 1000,
};

describe('tar headers', () => {
  it('encodes a plain ustar header with a valid checksum and numeric owners only', () => {
    const block = encodeEntryHeader({ ...base, mode: 0o104755, uid: 1000, gid: 1001 });
    expect(block.length).toBe(512);
    expect(field(block, 0, 100)).toBe('etc/hostname');
    expect(field(block, 100, 8)).toBe('0004755');
    expect(field(block, 108, 8)).toBe('0001750');
    expect(field(block, 124, 12)).toBe('00000000010');
    expect(field(block, 136, 12)).toBe('00000001750');
    expect(field(block, 156, 1)).toBe('0');
    expect(block.subarray(257, 265).toString('latin1')).toBe('ustar\u000000');
    expect(field(block, 265, 32)).toBe('');
    expect(field(block, 297, 32)).toBe('');
    expect(checksumOk(block)).toBe(true);
  });

  it('adds a PAX header, records sorted, only for what ustar cannot hold', () => {
    const longPath = `${'d/'.repeat(60)}file`;
    const blocks = encodeEntryHeader({
      ...base,
      path: longPath,
      size: 2 ** 34,
      xattrs: [
        ['user.b', Buffer.from('2')],
        ['security.capability', Buffer.from([0, 1, 2])],
      ],
    });
    const pax = blocks.subarray(0, 512);
    expect(field(pax, 156, 1)).toBe('x');
    expect(checksumOk(pax)).toBe(true);
    const size = Number.parseInt(field(pax, 124, 12), 8);
    const records = blocks.subarray(512, 512 + size).toString('latin1');
    const keys = records
      .split('\n')
      .filter(Boolean)
      .map((r) => r.slice(r.indexOf(' ') + 1, r.indexOf('=')));
    expect(keys).toEqual(['SCHILY.xattr.security.capability', 'SCHILY.xattr.user.b', 'path', 'size']);
    const main = blocks.subarray(blocks.length - 512);
    expect(checksumOk(main)).toBe(true);
    expect(field(main, 124, 12)).toBe('00000000000');
    expect(encodeEntryHeader(base).length).toBe(512);
  });

  it('computes PAX record lengths that include their own digits', () => {
    for (const n of [1, 2, 3, 4, 5, 90, 91, 92, 93, 994, 995, 996]) {
      const record = paxRecord('k', Buffer.alloc(n, 0x61));
      expect(Number.parseInt(record.toString('latin1'), 10)).toBe(record.length);
    }
  });

  it('splits Linux device numbers', () => {
    expect(splitDevice(0x103n)).toEqual({ major: 1, minor: 3 });
    // makedev(511, 300000) in glibc's encoding.
    const dev =
      ((511n & 0xfffn) << 8n) | ((511n & ~0xfffn) << 32n) | (300000n & 0xffn) | ((300000n & ~0xffn) << 12n);
    expect(splitDevice(dev)).toEqual({ major: 511, minor: 300000 });
  });
});

describe('getfattr dumps', () => {
  it('parses escaped names and hex values, sorted by name', () => {
    const dump = [
      '# file: /t/bin/ping',
      'user.comment=0x68656c6c6f',
      'security.capability=0x0100',
      '',
      '# file: /t/caf\\303\\251 a\\\\b',
      'user.x=0x',
      '',
    ].join('\n');
    const map = parseGetfattrDump(dump);
    expect(map.get('/t/bin/ping')).toEqual([
      ['security.capability', Buffer.from([1, 0])],
      ['user.comment', Buffer.from('hello')],
    ]);
    expect(map.get('/t/café a\\b')).toEqual([['user.x', Buffer.alloc(0)]]);
  });
});

describe('OCI values', () => {
  it('maps Debian architectures to OCI platforms and epochs to RFC 3339', () => {
    expect(ociPlatformForDebianArch('amd64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(ociPlatformForDebianArch('armhf')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(ociPlatformForDebianArch('i386').architecture).toBe('386');
    expect(ociPlatformForDebianArch('ppc64el').architecture).toBe('ppc64le');
    expect(rfc3339FromEpoch(0)).toBe('1970-01-01T00:00:00Z');
    expect(rfc3339FromEpoch(1_700_000_000)).toBe('2023-11-14T22:13:20Z');
  });

  it('builds configs that depend only on their inputs', () => {
    const input = {
      arch: 'arm64',
      sourceDateEpoch: 1,
      diffIds: ['sha256:a'],
      name: 'n',
      version: '1',
      recipeDigest: 'r',
    };
    const config = buildImageConfig(input);
    expect(config).toEqual(buildImageConfig({ ...input }));
    expect(config).toMatchObject({
      architecture: 'arm64',
      variant: 'v8',
      os: 'linux',
      created: '1970-01-01T00:00:01Z',
    });
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: ['sha256:a'] });
  });

  it('tags manifests in the index, immutably unless replacing', () => {
    const d = (digest: string) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest,
      size: 1,
    });
    const one = tagInIndex(emptyIndex(), 'b:1', d('sha256:1'), {}, { replace: false, keepHistory: false });
    const two = tagInIndex(
      one,
      'a:1',
      d('sha256:2'),
      { [ANNOTATION.cacheKey]: 'k' },
      { replace: false, keepHistory: false },
    );
    expect(two.manifests.map((m) => m.annotations?.[ANNOTATION.refName])).toEqual(['a:1', 'b:1']);
    expect(two.manifests[0]?.annotations?.[ANNOTATION.cacheKey]).toBe('k');
    expect(tagInIndex(two, 'a:1', d('sha256:2'), {}, { replace: false, keepHistory: false })).toBe(two);
    expect(() => tagInIndex(two, 'a:1', d('sha256:3'), {}, { replace: false, keepHistory: false })).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_EXISTS' }),
    );
    expect(
      tagInIndex(two, 'a:1', d('sha256:3'), {}, { replace: true, keepHistory: false }).manifests.map(
        (m) => m.digest,
      ),
    ).toEqual(['sha256:3', 'sha256:1']);
  });
});

describe('names and values', () => {
  it('parses template references', () => {
    expect(parseTemplateRef('debian-12-minbase:1.0')).toEqual({
      kind: 'tag',
      name: 'debian-12-minbase',
      version: '1.0',
    });
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(parseTemplateRef(digest)).toEqual({ kind: 'digest', digest });
    expect(() => parseTemplateRef('nameonly')).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_REF_INVALID' }),
    );
    expect(() => parseTemplateRef('Upper:1')).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_NAME_INVALID' }),
    );
    expect(() => parseTemplateRef('x:-1')).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_NAME_INVALID' }),
    );
    expect(() => parseTemplateRef('sha256:zz')).toThrow(expect.objectContaining({ code: 'DIGEST_INVALID' }));
  });

  it('reads owner pids from temporary names', () => {
    expect(ownerPidOf('1234-00ff')).toBe(1234);
    expect(ownerPidOf('.tmp-index.json-99-0a0b')).toBe(99);
    expect(ownerPidOf('index.json')).toBeUndefined();
    expect(ownerPidOf('abc-00ff')).toBeUndefined();
  });

  it('accepts zstd levels 1 to 19 only', () => {
    expect(validateCompressionLevel(3)).toBe(3);
    expect(() => validateCompressionLevel(0)).toThrow(
      expect.objectContaining({ code: 'COMPRESSION_LEVEL_INVALID' }),
    );
    expect(() => validateCompressionLevel(22)).toThrow(
      expect.objectContaining({ code: 'COMPRESSION_LEVEL_INVALID' }),
    );
    expect(() => validateCompressionLevel(2.5)).toThrow(
      expect.objectContaining({ code: 'COMPRESSION_LEVEL_INVALID' }),
    );
  });
});

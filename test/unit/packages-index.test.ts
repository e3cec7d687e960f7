import { describe, expect, it } from 'vitest';
import { isRootcastError } from '../../src/core/errors.js';
import {
  PackagesIndexParser,
  parsePackagesIndex,
  relationTargets,
} from '../../src/distro/deb/packages-index.js';
import type { BinaryPackage } from '../../src/distro/deb/types.js';

const SHA_A = 'a'.repeat(64);
const SHA_B = '0123456789abcdef'.repeat(4);

function stanza(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
}

const BASE = {
  Package: 'foo',
  Version: '1.0-1',
  Architecture: 'amd64',
  Maintainer: 'Someone <someone@example.org>',
  Description: 'a test package\n with a long description\n .\n and more',
  Filename: 'pool/main/f/foo/foo_1.0-1_amd64.deb',
  Size: '1234',
  SHA256: SHA_A,
};

/** A plain copy with every relation field read, for comparing whole records. */
function materialise(pkg: BinaryPackage): BinaryPackage {
  return {
    ...pkg,
    preDepends: pkg.preDepends,
    depends: pkg.depends,
    recommends: pkg.recommends,
    conflicts: pkg.conflicts,
    breaks: pkg.breaks,
    provides: pkg.provides,
  };
}

function errorOf(fn: () => unknown): { code: string; message: string; cause: unknown } | undefined {
  try {
    fn();
  } catch (error) {
    if (isRootcastError(error)) return { code: error.code, message: error.message, cause: error.cause };
    throw error;
  }
  return undefined;
}

describe('parsePackagesIndex', () => {
  it('builds a package with defaults for absent fields', () => {
    const [pkg, ...rest] = parsePackagesIndex(stanza(BASE) + '\n', 'bookworm/main');
    expect(rest).toEqual([]);
    expect(materialise(pkg!)).toEqual({
      name: 'foo',
      version: '1.0-1',
      architecture: 'amd64',
      multiArch: 'no',
      essential: false,
      priority: 'optional',
      preDepends: [],
      depends: [],
      recommends: [],
      conflicts: [],
      breaks: [],
      provides: [],
      filename: 'pool/main/f/foo/foo_1.0-1_amd64.deb',
      size: 1234,
      sha256: SHA_A,
      repository: 'bookworm/main',
    });
  });

  it('reads every field BinaryPackage holds', () => {
    const text = stanza({
      ...BASE,
      Package: 'libc-bin',
      Source: 'glibc (2.36-9+deb12u10)',
      Essential: 'yes',
      Priority: 'Required',
      Section: 'libs',
      'Multi-Arch': 'foreign',
      'Pre-Depends': 'libc6 (>> 2.36)',
      Depends: 'libc6 (>= 2.36), debconf (>= 0.5) | debconf-2.0',
      Recommends: 'manpages',
      Conflicts: 'old-libc-bin (<< 2)',
      Breaks: 'hurd (<< 1:0.9.git20220301-2), nscd (<< 2.36)',
      Provides: 'libc-tools, libc-bin-abi (= 2.36)',
      SHA256: SHA_B.toUpperCase(),
      'Installed-Size': '2000',
    });
    const [pkg] = parsePackagesIndex(text, 'r');
    expect(pkg).toMatchObject({
      name: 'libc-bin',
      source: 'glibc (2.36-9+deb12u10)',
      essential: true,
      priority: 'required',
      section: 'libs',
      multiArch: 'foreign',
      preDepends: [[{ name: 'libc6', op: '>>', version: '2.36' }]],
      depends: [
        [{ name: 'libc6', op: '>=', version: '2.36' }],
        [{ name: 'debconf', op: '>=', version: '0.5' }, { name: 'debconf-2.0' }],
      ],
      recommends: [[{ name: 'manpages' }]],
      conflicts: [{ name: 'old-libc-bin', op: '<<', version: '2' }],
      breaks: [
        { name: 'hurd', op: '<<', version: '1:0.9.git20220301-2' },
        { name: 'nscd', op: '<<', version: '2.36' },
      ],
      provides: [{ name: 'libc-tools' }, { name: 'libc-bin-abi', version: '2.36' }],
      sha256: SHA_B,
    });
  });

  it('reads field names case-insensitively and Essential no as false', () => {
    const text =
      'package: foo\nVERSION: 2\narchitecture: all\nessential: no\nmulti-arch: same\n' +
      `filename: pool/f.deb\nsize: 1\nsha256: ${SHA_A}\n`;
    const [pkg] = parsePackagesIndex(text, 'r');
    expect(pkg).toMatchObject({
      name: 'foo',
      version: '2',
      architecture: 'all',
      essential: false,
      multiArch: 'same',
    });
  });

  it('keeps index order across many stanzas and ignores unknown fields', () => {
    const text = ['a', 'b', 'c']
      .map((name) => stanza({ ...BASE, Package: name, 'X-Unknown': 'whatever' }))
      .join('\n\n');
    expect(parsePackagesIndex(text, 'r').map((p) => p.name)).toEqual(['a', 'b', 'c']);
  });

  it('reads an index fed in chunks of any size as it reads the whole', () => {
    const text = ['a', 'b', 'c', 'd']
      .map((name, i) =>
        stanza({
          ...BASE,
          Package: name,
          Maintainer: 'J\u00f6rg <j@example.org>',
          Depends: i > 0 ? 'a (>= 1), b | c' : 'libc6',
          Priority: i % 2 ? 'Required' : 'optional',
          Section: 'libs',
        }),
      )
      .join('\n\n');
    const bytes = Buffer.from(text, 'utf8');
    const whole = parsePackagesIndex(bytes, 'r').map(materialise);
    expect(whole.map((p) => [p.name, p.priority, p.section])).toEqual([
      ['a', 'optional', 'libs'],
      ['b', 'required', 'libs'],
      ['c', 'optional', 'libs'],
      ['d', 'required', 'libs'],
    ]);
    expect(parsePackagesIndex(text, 'r').map(materialise)).toEqual(whole);
    for (const size of [1, 3, 10, 100, 333]) {
      const parser = new PackagesIndexParser('r');
      const chunk = Buffer.alloc(size);
      for (let i = 0; i < bytes.length; i += size) {
        const n = bytes.copy(chunk, 0, i, i + size);
        parser.write(chunk.subarray(0, n));
        chunk.fill(0x20);
      }
      expect(parser.end().map(materialise)).toEqual(whole);
    }
  });

  it('returns no packages for an empty index', () => {
    expect(parsePackagesIndex('', 'r')).toEqual([]);
  });

  it.each(['Filename', 'SHA256', 'Size', 'Version', 'Architecture'] as const)(
    'rejects a stanza without %s with INDEX_MALFORMED naming the package',
    (field) => {
      const fields: Record<string, string> = { ...BASE, Package: 'broken-pkg' };
      delete fields[field];
      const text = stanza(BASE) + '\n\n' + stanza(fields) + '\n';
      const error = errorOf(() => parsePackagesIndex(text, 'bookworm/main'));
      expect(error?.code).toBe('INDEX_MALFORMED');
      expect(error?.message).toContain('broken-pkg');
      expect(error?.message).toContain(field);
      expect(error?.message).toContain('bookworm/main');
    },
  );

  it('rejects a stanza without Package, naming its line', () => {
    const fields: Record<string, string> = { ...BASE };
    delete fields.Package;
    const error = errorOf(() => parsePackagesIndex(stanza(BASE) + '\n\n' + stanza(fields), 'r'));
    expect(error?.code).toBe('INDEX_MALFORMED');
    expect(error?.message).toContain('line 13');
  });

  it.each([
    ['Size', '12a'],
    ['Size', '-1'],
    ['SHA256', 'abc'],
    ['SHA256', 'g'.repeat(64)],
    ['Multi-Arch', 'sometimes'],
  ])('rejects an invalid %s %j', (field, value) => {
    const error = errorOf(() => parsePackagesIndex(stanza({ ...BASE, [field]: value }), 'r'));
    expect(error?.code).toBe('INDEX_MALFORMED');
    expect(error?.message).toContain('foo');
  });

  it('wraps a relation syntax error with the package and field, when the field is read', () => {
    const [pkg] = parsePackagesIndex(stanza({ ...BASE, Depends: 'libc6 (>= 2.34' }), 'r');
    expect(pkg?.name).toBe('foo');
    expect(pkg?.preDepends).toEqual([]);
    const error = errorOf(() => pkg?.depends);
    expect(error?.code).toBe('INDEX_MALFORMED');
    expect(error?.message).toContain('foo');
    expect(error?.message).toContain('Depends');
    expect(isRootcastError(error?.cause) && error.cause.code).toBe('RELATION_INVALID');
  });

  it('reports a broken relation field every time it is read, and only that field', () => {
    const [pkg] = parsePackagesIndex(stanza({ ...BASE, Breaks: 'a | b', Depends: 'c' }), 'r');
    expect(errorOf(() => pkg?.breaks)?.message).toContain('Breaks');
    expect(errorOf(() => pkg?.breaks)?.code).toBe('INDEX_MALFORMED');
    expect(pkg?.depends).toEqual([[{ name: 'c' }]]);
  });

  it('parses each relation field once and keeps the result', () => {
    const [pkg] = parsePackagesIndex(stanza({ ...BASE, Depends: 'a, b | c', Provides: 'x (= 1)' }), 'r');
    expect(pkg?.depends).toBe(pkg?.depends);
    expect(pkg?.provides).toBe(pkg?.provides);
    expect(pkg?.conflicts).toBe(pkg?.conflicts);
  });

  it('lists relation targets in apt order, before and after the fields are parsed', () => {
    const text = stanza({
      ...BASE,
      'Pre-Depends': 'pre (>= 1:2,3)',
      Depends: 'libc6 (>= 2.36), debconf (>= 0.5) | debconf-2.0, python3:any, x [amd64]',
      Recommends: 'rec <!nocheck>',
      Conflicts: 'con',
      Breaks: 'br (<< 2)',
      Provides: 'prov (= 1), prov2',
    });
    const expected = [
      'pre',
      'libc6',
      'debconf',
      'debconf-2.0',
      'python3',
      'x',
      'con',
      'br',
      'rec',
      'prov',
      'prov2',
    ];
    const [fresh] = parsePackagesIndex(text, 'r');
    const names = (pkg: BinaryPackage) => {
      const out: string[] = [];
      relationTargets(pkg, { add: (text, start, end) => out.push(text.slice(start, end)) });
      return out;
    };
    expect(names(fresh!)).toEqual(expected);
    materialise(fresh!);
    expect(names(fresh!)).toEqual(expected);
    expect(names(materialise(fresh!))).toEqual(expected);
  });

  it('surfaces control-format errors', () => {
    expect(errorOf(() => parsePackagesIndex('Package: a\nno colon here\n', 'r'))?.code).toBe(
      'DEB822_MALFORMED',
    );
  });
});

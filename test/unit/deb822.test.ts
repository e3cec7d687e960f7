import { describe, expect, it } from 'vitest';
import { isRootcastError } from '../../src/core/errors.js';
import {
  Deb822RecordReader,
  parseDeb822,
  parseDeb822Single,
  scanDeb822Records,
} from '../../src/distro/deb/deb822.js';

function errorOf(fn: () => unknown): { code: string; message: string } | undefined {
  try {
    fn();
  } catch (error) {
    if (isRootcastError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  return undefined;
}

const TWO = [
  'Package: foo',
  'Version: 1.0-1',
  'Description: short',
  ' long line one',
  ' .',
  '   indented',
  'Depends: a,',
  '\tb',
  '',
  'Package: bar',
  'Version: 2',
  '',
].join('\n');

describe('parseDeb822', () => {
  it('splits paragraphs and lower-cases field names', () => {
    const [foo, bar] = parseDeb822(TWO);
    expect(foo?.get('package')).toBe('foo');
    expect(foo?.get('version')).toBe('1.0-1');
    expect(bar?.get('package')).toBe('bar');
    expect(foo?.has('Package')).toBe(false);
  });

  it('keeps continuation lines after newlines, minus the one marker blank', () => {
    const [foo] = parseDeb822(TWO);
    expect(foo?.get('description')).toBe('short\nlong line one\n.\n  indented');
    expect(foo?.get('depends')).toBe('a,\nb');
  });

  it('keeps fields in file order', () => {
    const [foo] = parseDeb822(TWO);
    expect([...(foo?.keys() ?? [])]).toEqual(['package', 'version', 'description', 'depends']);
  });

  it('treats blank-only lines as separators, CRLF as LF, and skips comments', () => {
    const text = '# comment\r\nA: 1\r\n  \t\r\nB: 2  \r\n#inside\r\nC:   3\r\n';
    const paragraphs = parseDeb822(text);
    expect(paragraphs.map((p) => Object.fromEntries(p))).toEqual([{ a: '1' }, { b: '2', c: '3' }]);
  });

  it('accepts a last paragraph without a final newline and many blank lines between', () => {
    const paragraphs = parseDeb822('\n\nA: 1\n\n\n\nB: 2');
    expect(paragraphs.map((p) => Object.fromEntries(p))).toEqual([{ a: '1' }, { b: '2' }]);
  });

  it('keeps an empty first line (Release SHA256 lists) and values with colons', () => {
    const [p] = parseDeb822('SHA256:\n abc 1 main/x\nURL: http://h:80/p\nEmpty:\n');
    expect(p?.get('sha256')).toBe('\nabc 1 main/x');
    expect(p?.get('url')).toBe('http://h:80/p');
    expect(p?.get('empty')).toBe('');
  });

  it('returns nothing for empty input', () => {
    expect(parseDeb822('')).toEqual([]);
    expect(parseDeb822('\n \n\n')).toEqual([]);
  });

  it('keeps only the requested fields when asked', () => {
    const [foo] = parseDeb822(TWO, 'x', { fields: new Set(['version', 'depends']) });
    expect(Object.fromEntries(foo ?? [])).toEqual({ version: '1.0-1', depends: 'a,\nb' });
  });

  it.each([
    ['a line without a colon', 'Package: a\nnot a field\n', 'x:2:'],
    ['a field with an empty name', ': value\n', 'x:1:'],
    ['a continuation before any field', ' orphan\nA: 1\n', 'x:1:'],
    ['a continuation right after a paragraph break', 'A: 1\n\n cont\n', 'x:3:'],
    ['a repeated field, in any case', 'Package: a\nVersion: 1\npackage: b\n', 'x:3:'],
  ])('rejects %s with DEB822_MALFORMED and a line number', (_what, text, where) => {
    const error = errorOf(() => parseDeb822(text, 'x'));
    expect(error?.code).toBe('DEB822_MALFORMED');
    expect(error?.message.startsWith(where)).toBe(true);
  });
});

describe('parseDeb822Single', () => {
  it('returns the one paragraph', () => {
    expect(parseDeb822Single('A: 1\n\n').get('a')).toBe('1');
  });

  it('rejects zero or two paragraphs', () => {
    expect(errorOf(() => parseDeb822Single(''))?.code).toBe('DEB822_MALFORMED');
    expect(errorOf(() => parseDeb822Single('A: 1\n\nB: 2\n'))?.code).toBe('DEB822_MALFORMED');
  });
});

describe('scanDeb822Records', () => {
  it('fills one slot per requested field, case-insensitively, with the paragraph line', () => {
    const seen: { values: (string | undefined)[]; line: number }[] = [];
    const text = 'PACKAGE: foo\nX-Other: skip\n me\nversion: 1\n\nPackage: bar\nVersion:2\nDepends: z\n';
    scanDeb822Records(text, 'x', ['package', 'version', 'depends'], (values, line) => {
      seen.push({ values: [...values], line });
    });
    expect(seen).toEqual([
      { values: ['foo', '1', undefined], line: 1 },
      { values: ['bar', '2', 'z'], line: 6 },
    ]);
  });

  it('does not match a field that only shares a prefix or length', () => {
    const seen: (string | undefined)[][] = [];
    scanDeb822Records('Packagex: 1\nPackages: 2\nPackage-: 3\n', 'x', ['package'], (v) => seen.push([...v]));
    expect(seen).toEqual([[undefined]]);
  });

  it('rejects a repeated requested field', () => {
    const error = errorOf(() => scanDeb822Records('Package: a\nPACKAGE: b\n', 'idx', ['package'], () => {}));
    expect(error?.code).toBe('DEB822_MALFORMED');
    expect(error?.message).toContain('idx:2');
  });
});

describe('Deb822RecordReader', () => {
  const FIELDS = ['package', 'version', 'depends'];
  // CRLF and LF breaks, a blank-only separator, comments, a continuation of a kept field
  // and of a skipped one, several empty lines, and no final newline.
  const TEXT = [
    '# head',
    'Package: a\r',
    'Version: 1\r',
    '\r',
    'Package: b',
    'Description: long',
    ' more',
    'Depends: x,',
    ' y',
    ' \t ',
    'Package: c',
    '#inside',
    'Version: 3',
    '',
    '',
    '',
    'Package: d',
  ].join('\n');
  const EXPECTED = [
    { values: ['a', '1', undefined], line: 2 },
    { values: ['b', undefined, 'x,\ny'], line: 5 },
    { values: ['c', '3', undefined], line: 11 },
    { values: ['d', undefined, undefined], line: 17 },
  ];

  function readInChunks(text: string, size: number, fields = FIELDS, encoding?: 'utf8' | 'latin1') {
    const seen: { values: (string | undefined)[]; line: number }[] = [];
    const reader = new Deb822RecordReader(
      'x',
      fields,
      (values, line) => seen.push({ values: [...values], line }),
      encoding,
    );
    const bytes = Buffer.from(text, 'utf8');
    // One buffer reused for every chunk, as the xz decoder does.
    const chunk = Buffer.alloc(size);
    for (let i = 0; i < bytes.length; i += size) {
      const n = bytes.copy(chunk, 0, i, i + size);
      reader.write(chunk.subarray(0, n));
      chunk.fill(0x41);
    }
    reader.end();
    return seen;
  }

  it.each([1, 2, 3, 5, 7, 16, 64, 1000])('reads the same records in chunks of %i bytes', (size) => {
    expect(readInChunks(TEXT, size)).toEqual(EXPECTED);
  });

  it('matches scanDeb822Records on the whole text', () => {
    const whole: { values: (string | undefined)[]; line: number }[] = [];
    scanDeb822Records(TEXT, 'x', FIELDS, (values, line) => whole.push({ values: [...values], line }));
    expect(whole).toEqual(EXPECTED);
  });

  it('hands out each paragraph once a chunk holds the break after it, before end', () => {
    const seen: string[] = [];
    const reader = new Deb822RecordReader('x', ['package'], (values) => seen.push(values[0]!));
    reader.write(Buffer.from('Package: a\n\nPack'));
    expect(seen).toEqual(['a']);
    reader.write(Buffer.from('age: b\n'));
    expect(seen).toEqual(['a']);
    reader.write(Buffer.from('Version: 2\n\nPackage: c\n'));
    expect(seen).toEqual(['a', 'b']);
    reader.end();
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it.each([1, 4, 9, 1000])('counts lines across chunks of %i bytes in errors', (size) => {
    const text = 'Package: a\n\nPackage: b\nVersion: 1\n\n\nPackage: c\nno colon\n';
    expect(() => readInChunks(text, size)).toThrow(/^x:8: expected 'Field: value', got 'no colon'$/);
    const duplicate = 'Package: a\n\n\nPackage: b\nVersion: 1\npackage: c\n';
    expect(() => readInChunks(duplicate, size)).toThrow(/^x:6: duplicate field 'package'$/);
  });

  it('decodes kept values as UTF-8 or one character per byte', () => {
    const text = 'Package: j\u00f6rg\n';
    expect(readInChunks(text, 3, ['package'], 'utf8')[0]?.values).toEqual(['j\u00f6rg']);
    expect(readInChunks(text, 3, ['package'], 'latin1')[0]?.values).toEqual(['j\u00c3\u00b6rg']);
  });
});

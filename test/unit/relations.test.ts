import { describe, expect, it } from 'vitest';
import { isRootcastError } from '../../src/core/errors.js';
import {
  parseProvides,
  parseRelationGroups,
  parseRelationList,
  relationNames,
} from '../../src/distro/deb/relations.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isRootcastError(error) ? error.code : 'not a RootcastError';
  }
  return undefined;
}

describe('parseRelationGroups', () => {
  it('parses a real Depends line', () => {
    expect(parseRelationGroups('libc6 (>= 2.34), libgcc-s1 (>= 3.4), zlib1g (>= 1:1.2.0), libenet7')).toEqual(
      [
        [{ name: 'libc6', op: '>=', version: '2.34' }],
        [{ name: 'libgcc-s1', op: '>=', version: '3.4' }],
        [{ name: 'zlib1g', op: '>=', version: '1:1.2.0' }],
        [{ name: 'libenet7' }],
      ],
    );
  });

  it('parses alternatives', () => {
    expect(parseRelationGroups('default-mta | mail-transport-agent, debconf (>= 0.5) | debconf-2.0')).toEqual(
      [
        [{ name: 'default-mta' }, { name: 'mail-transport-agent' }],
        [{ name: 'debconf', op: '>=', version: '0.5' }, { name: 'debconf-2.0' }],
      ],
    );
  });

  it('accepts any spacing, including none and newlines from folded fields', () => {
    const expected = [[{ name: 'a', op: '>=', version: '1.0' }], [{ name: 'b', op: '<<', version: '2' }]];
    expect(parseRelationGroups('a(>=1.0),b(<<2)')).toEqual(expected);
    expect(parseRelationGroups('  a ( >= 1.0 ) ,\n b\t(<< 2)  ')).toEqual(expected);
    expect(parseRelationGroups('a (>=1.0),\n b (<<2)')).toEqual(expected);
  });

  it('reads every operator and normalises the obsolete < and > to <= and >=', () => {
    const ops = parseRelationGroups('a (<< 1), b (<= 1), c (= 1), d (>= 1), e (>> 1), f (< 1), g (> 1)').map(
      (g) => g[0]?.op,
    );
    expect(ops).toEqual(['<<', '<=', '=', '>=', '>>', '<=', '>=']);
  });

  it('reads architecture qualifiers', () => {
    expect(parseRelationGroups('python3:any (>= 3.11), libfoo:amd64, perl:native')).toEqual([
      [{ name: 'python3', archQualifier: 'any', op: '>=', version: '3.11' }],
      [{ name: 'libfoo', archQualifier: 'amd64' }],
      [{ name: 'perl', archQualifier: 'native' }],
    ]);
  });

  it('keeps architecture restrictions and drops build profiles', () => {
    expect(
      parseRelationGroups(
        'libseccomp-dev [amd64 !i386] <!nocheck> <stage1 cross>, foo (>= 1) [linux-any] | bar',
      ),
    ).toEqual([
      [{ name: 'libseccomp-dev', archRestriction: ['amd64', '!i386'] }],
      [{ name: 'foo', op: '>=', version: '1', archRestriction: ['linux-any'] }, { name: 'bar' }],
    ]);
    expect(parseRelationGroups('debhelper-compat (= 13) <!pkg.foo.bar>')).toEqual([
      [{ name: 'debhelper-compat', op: '=', version: '13' }],
    ]);
  });

  it('skips empty groups from stray commas and returns [] for an empty field', () => {
    expect(parseRelationGroups('a, , b,')).toEqual([[{ name: 'a' }], [{ name: 'b' }]]);
    expect(parseRelationGroups('')).toEqual([]);
    expect(parseRelationGroups('  \n ')).toEqual([]);
  });

  it('keeps package names with + . and digits intact', () => {
    expect(parseRelationGroups('libstdc++6 (>= 12), libsdl2-2.0-0')).toEqual([
      [{ name: 'libstdc++6', op: '>=', version: '12' }],
      [{ name: 'libsdl2-2.0-0' }],
    ]);
  });

  it.each([
    ['a (>= 1.0', "expected ')'"],
    ['a (1.0)', 'version operator'],
    ['a (>=)', 'a version'],
    ['a ()', 'version operator'],
    ['a |', 'empty alternative'],
    ['a | , b', 'empty alternative'],
    ['| a', 'package name'],
    ['a b', "unexpected 'b'"],
    ['a [amd64', "unterminated '['"],
    ['a []', 'empty architecture restriction'],
    ['a <!nocheck', "unterminated '<'"],
    ['a <>', 'empty build profile'],
    ['a:', 'architecture qualifier'],
    ['a (>= 1) (>= 2)', "unexpected '('"],
  ])('rejects %j with RELATION_INVALID (%s)', (value, reason) => {
    let message = '';
    try {
      parseRelationGroups(value, { field: 'Depends' });
    } catch (error) {
      if (!isRootcastError(error)) throw error;
      expect(error.code).toBe('RELATION_INVALID');
      message = error.message;
    }
    expect(message).toContain('Depends');
    expect(message).toContain(reason);
  });

  it('refuses architecture restrictions when told to', () => {
    expect(codeOf(() => parseRelationGroups('a [amd64]', { allowArchRestrictions: false }))).toBe(
      'RELATION_INVALID',
    );
  });
});

describe('parseRelationList', () => {
  it('parses Conflicts and Breaks without groups', () => {
    expect(parseRelationList('foo (<< 1.2~), bar, baz:any')).toEqual([
      { name: 'foo', op: '<<', version: '1.2~' },
      { name: 'bar' },
      { name: 'baz', archQualifier: 'any' },
    ]);
    expect(parseRelationList('')).toEqual([]);
  });

  it('rejects alternatives, naming the field', () => {
    let message = '';
    try {
      parseRelationList('a | b', { field: 'Breaks' });
    } catch (error) {
      if (!isRootcastError(error)) throw error;
      expect(error.code).toBe('RELATION_INVALID');
      message = error.message;
    }
    expect(message).toContain('Breaks');
  });
});

describe('parseProvides', () => {
  it('parses unversioned and exact-versioned provides', () => {
    expect(parseProvides('mail-transport-agent, libfoo-abi-2 (= 2.1-3), python3.11-foo (=1)')).toEqual([
      { name: 'mail-transport-agent' },
      { name: 'libfoo-abi-2', version: '2.1-3' },
      { name: 'python3.11-foo', version: '1' },
    ]);
  });

  it.each(['a (>= 1)', 'a (<< 1)', 'a | b', 'a:any', 'a [amd64]'])('rejects %j', (value) => {
    expect(codeOf(() => parseProvides(value))).toBe('RELATION_INVALID');
  });
});

describe('relationNames', () => {
  const names = (value: string) => {
    const out: string[] = [];
    relationNames(value, { add: (text, start, end) => out.push(text.slice(start, end)) });
    return out;
  };

  it.each([
    'libc6 (>= 2.34), libgcc-s1 (>= 3.4), zlib1g (>= 1:1.2.0), libenet7',
    'debconf (>= 0.5) | debconf-2.0',
    'python3:any (>= 3.9~), perl:native',
    'foo [amd64 !i386], bar <!nocheck> <stage1 cross>',
    'a(>=1)|b(<<2),c',
    '  spaced,\n   over ( >= 1 )\n | lines ,',
    'odd (>= 1,2|3), next',
    'x (= 1:2.0-1+deb12u1), ',
    '',
  ])("gives the parser's names for %j", (value) => {
    expect(names(value)).toEqual(parseRelationGroups(value).flatMap((group) => group.map((r) => r.name)));
  });

  it('reads Provides and Conflicts the same way', () => {
    expect(names('mail-transport-agent, libc-bin-abi (= 2.36)')).toEqual(
      parseProvides('mail-transport-agent, libc-bin-abi (= 2.36)').map((p) => p.name),
    );
    expect(names('old (<< 2), other')).toEqual(parseRelationList('old (<< 2), other').map((r) => r.name));
  });

  it('never throws on text the parsers reject', () => {
    expect(names('libc6 (>= 2.34')).toEqual(['libc6']);
    expect(names('(>= 1), a | | b')).toEqual(['a', 'b']);
  });
});

import { describe, expect, it } from 'vitest';
import { isRootcastError } from '../../src/core/errors.js';
import type { VersionOp } from '../../src/distro/deb/types.js';
import {
  compareVersions,
  isValidVersion,
  parseVersion,
  versionSatisfies,
} from '../../src/distro/deb/version.js';

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isRootcastError(error) ? error.code : 'not a RootcastError';
  }
  return undefined;
}

describe('parseVersion', () => {
  it('splits epoch, upstream and revision', () => {
    expect(parseVersion('1:2.36-9+deb12u10')).toEqual({ epoch: 1, upstream: '2.36', revision: '9+deb12u10' });
    expect(parseVersion('2.36')).toEqual({ epoch: 0, upstream: '2.36', revision: '' });
    expect(parseVersion('0.0.26-3')).toEqual({ epoch: 0, upstream: '0.0.26', revision: '3' });
  });

  it('splits the revision at the last hyphen and keeps colons after the epoch', () => {
    expect(parseVersion('1.2-3-4')).toEqual({ epoch: 0, upstream: '1.2-3', revision: '4' });
    expect(parseVersion('1:2:3-4')).toEqual({ epoch: 1, upstream: '2:3', revision: '4' });
  });

  it('trims surrounding blanks as dpkg does', () => {
    expect(parseVersion('  1.0-1\t')).toEqual({ epoch: 0, upstream: '1.0', revision: '1' });
  });

  it('reads large and zero-padded epochs numerically', () => {
    expect(parseVersion('007:1').epoch).toBe(7);
    expect(parseVersion('2147483647:1').epoch).toBe(2147483647);
  });

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['1.0 1', 'embedded spaces'],
    [':1.0', 'epoch in version is empty'],
    ['a:1.0', 'epoch in version is empty'],
    ['1a:1.0', 'not number'],
    ['-1:1.0', 'negative'],
    ['2147483648:1', 'too big'],
    ['99999999999:1', 'too big'],
    ['1:', 'nothing after colon'],
    ['1.0-', 'revision number is empty'],
    ['1:-1', 'version number is empty'],
    ['-1', 'version number is empty'],
    ['a1.0', 'does not start with digit'],
    ['1_0', 'invalid character in version'],
    ['1.0-1_1', 'invalid character in revision'],
    ['1:1.0-1:1', 'invalid character in revision'],
  ])('rejects %j (%s) with VERSION_INVALID', (v, reason) => {
    let error: unknown;
    try {
      parseVersion(v);
    } catch (e) {
      error = e;
    }
    expect(isRootcastError(error)).toBe(true);
    if (!isRootcastError(error)) return;
    expect(error.code).toBe('VERSION_INVALID');
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(reason);
    expect(error.hint).not.toBe('');
    expect(isValidVersion(v)).toBe(false);
  });
});

describe('compareVersions', () => {
  it.each([
    // The brief's named cases.
    ['1.0~rc1', '1.0', -1],
    ['1:0', '9', 1],
    ['1.0-1', '1.0', 1],
    ['1.0a', '1.0+', -1],
    ['a', '+', -1],
    // Absent revision equals revision 0; absent epoch equals epoch 0.
    ['1.0', '1.0-0', 0],
    ['0:1.0', '1.0', 0],
    ['1.0-0', '1.0-00', 0],
    // Digit runs compare numerically, leading zeros ignored.
    ['01', '1', 0],
    ['1.001', '1.1', 0],
    ['1.10', '1.9', 1],
    ['1a', '11', -1],
    ['1.2.10', '1.2.9', 1],
    ['10:1', '9:1', 1],
    ['2:1', '1:99', 1],
    // Letters sort before non-letters; uppercase before lowercase (ASCII).
    ['1.0.', '1.0a', 1],
    ['1.0Z', '1.0a', -1],
    ['1.0-a', '1.0-0', 1],
    // Tilde sorts before anything, even the end of the string.
    ['1.0~', '1.0', -1],
    ['1.0~~', '1.0~', -1],
    ['1.0~~a', '1.0~~', 1],
    ['1.0~-1', '1.0-1', -1],
    ['1.0-1~bpo1', '1.0-1', -1],
    ['2.36-9+deb12u10', '2.36-9+deb12u9', 1],
    ['1.0-1+b1', '1.0-1', 1],
    ['1.0+dfsg-1', '1.0-1', 1],
    ['1.0+really0.9', '1.0', 1],
    ['1.0.0', '1.0', 1],
    ['1.0', '1.0.', -1],
    ['1.2-3-4', '1.2-3-3', 1],
    ['1.2-3-4', '1.2-4-1', -1],
    // Upstream decides before revision.
    ['1.1-1', '1.0-99', 1],
    ['  1.0', '1.0', 0],
  ] as const)('%s vs %s → %i', (a, b, expected) => {
    expect(sign(compareVersions(a, b))).toBe(expected);
    expect(sign(compareVersions(b, a))).toBe(expected === 0 ? 0 : -expected);
  });

  it('orders policy’s tilde example: ~~ < ~~a < ~ < (empty) < a', () => {
    const ordered = ['1.0~~', '1.0~~a', '1.0~', '1.0', '1.0a'];
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        expect(sign(compareVersions(ordered[i]!, ordered[j]!)), `${ordered[i]} vs ${ordered[j]}`).toBe(
          sign(i - j),
        );
      }
    }
  });

  it('sorts a mixed list into dpkg order', () => {
    const sorted = [
      '0.9',
      '1.0~alpha',
      '1.0~beta1',
      '1.0~beta2',
      '1.0~rc1',
      '1.0',
      '1.0-0.1',
      '1.0-1~bpo11+1',
      '1.0-1',
      '1.0-1+b1',
      '1.0-1.1',
      '1.0-2',
      '1.0-10',
      '1.0a',
      '1.0+dfsg',
      '1.0.1',
      '1.1',
      '1.10',
      '2',
      '1:0.1',
      '1:1.0',
      '2:0',
    ];
    const shuffled = [...sorted].reverse();
    shuffled.sort(compareVersions);
    expect(shuffled).toEqual(sorted);
  });

  it('compares dpkg-warning versions instead of throwing, as dpkg --compare-versions does', () => {
    expect(sign(compareVersions('a', '1'))).toBe(1);
    expect(sign(compareVersions('1_0', '1.1'))).toBe(1);
  });

  it('throws VERSION_INVALID for what dpkg refuses to compare', () => {
    expect(codeOf(() => compareVersions('1.0-', '1.0'))).toBe('VERSION_INVALID');
    expect(codeOf(() => compareVersions('1.0', '1:'))).toBe('VERSION_INVALID');
    expect(codeOf(() => compareVersions('x:1', 'x:1'))).toBe('VERSION_INVALID');
    expect(codeOf(() => compareVersions('', ''))).toBe('VERSION_INVALID');
    expect(codeOf(() => compareVersions('1 0', '1'))).toBe('VERSION_INVALID');
  });

  it('is consistent when two comparisons interleave (shared scratch state)', () => {
    const pairs: [string, string][] = [
      ['1:1.0-1', '2.0'],
      ['1.0~rc1', '1.0'],
      ['3', '2:1'],
    ];
    const first = pairs.map(([a, b]) => compareVersions(a, b));
    const again = pairs.map(([a, b]) => compareVersions(a, b));
    expect(again).toEqual(first);
    expect(first.map(sign)).toEqual([1, -1, -1]);
  });
});

describe('versionSatisfies', () => {
  const table: [string, VersionOp, string, boolean][] = [
    ['1.0', '<<', '1.1', true],
    ['1.1', '<<', '1.1', false],
    ['1.1', '<=', '1.1', true],
    ['1.2', '<=', '1.1', false],
    ['1.1-0', '=', '1.1', true],
    ['1.1-1', '=', '1.1', false],
    ['1.1', '>=', '1.1', true],
    ['1.1~rc1', '>=', '1.1', false],
    ['2.36-9', '>=', '2.34', true],
    ['1.1', '>>', '1.1', false],
    ['1:0.1', '>>', '9.9', true],
    ['72.1-3', '>=', '72.1~rc-1~', true],
  ];
  it.each(table)('%s %s %s → %s', (candidate, op, required, expected) => {
    expect(versionSatisfies(candidate, op, required)).toBe(expected);
  });
});

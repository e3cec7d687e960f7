import { describe, expect, it } from 'vitest';
import { isRootcastError } from '../../src/core/errors.js';
import { parseRelease, parseReleaseDate } from '../../src/distro/deb/release.js';

const H1 = '1'.repeat(64);
const H2 = 'ABCDEF0123456789'.repeat(4);

const RELEASE = [
  'Origin: Debian',
  'Label: Debian',
  'Suite: stable',
  'Version: 12.10',
  'Codename: bookworm',
  'Date: Sat, 10 May 2025 08:30:41 UTC',
  'Valid-Until: Sat, 17 May 2025 08:30:41 UTC',
  'Acquire-By-Hash: yes',
  'No-Support-for-Architecture-all: Packages',
  'Architectures: all amd64 arm64',
  'Components: main contrib non-free-firmware non-free',
  'Description: Debian 12.10 Released 15 March 2025',
  'MD5Sum:',
  ' 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all',
  'SHA256:',
  ` ${H1}  1484322 contrib/Contents-all`,
  ` ${H2}  8790396 main/binary-amd64/Packages.xz`,
  ` ${H1}        0 main/binary-amd64/Packages.empty`,
  '',
].join('\n');

function errorOf(fn: () => unknown): { code: string; message: string } | undefined {
  try {
    fn();
  } catch (error) {
    if (isRootcastError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  return undefined;
}

describe('parseRelease', () => {
  it('reads the facts of a Debian Release file', () => {
    const info = parseRelease(RELEASE, 'f'.repeat(64));
    expect(info).toEqual({
      sha256: 'f'.repeat(64),
      date: '2025-05-10T08:30:41.000Z',
      validUntil: '2025-05-17T08:30:41.000Z',
      suite: 'stable',
      codename: 'bookworm',
      origin: 'Debian',
      label: 'Debian',
      notAutomatic: false,
      butAutomaticUpgrades: false,
      acquireByHash: true,
      architectures: ['all', 'amd64', 'arm64'],
      components: ['main', 'contrib', 'non-free-firmware', 'non-free'],
      files: new Map([
        ['contrib/Contents-all', { size: 1484322, sha256: H1 }],
        ['main/binary-amd64/Packages.xz', { size: 8790396, sha256: H2.toLowerCase() }],
        ['main/binary-amd64/Packages.empty', { size: 0, sha256: H1 }],
      ]),
    });
  });

  it('reads NotAutomatic and ButAutomaticUpgrades, and leaves absent optional fields out', () => {
    const text = [
      'Date: Mon, 02 Jun 2025 20:00:00 +0000',
      'NotAutomatic: yes',
      'ButAutomaticUpgrades: yes',
      'SHA256:',
      ` ${H1} 10 main/binary-amd64/Packages`,
    ].join('\n');
    const info = parseRelease(text, 'x');
    expect(info.notAutomatic).toBe(true);
    expect(info.butAutomaticUpgrades).toBe(true);
    expect(info.acquireByHash).toBe(false);
    expect(info.architectures).toEqual([]);
    expect(info.components).toEqual([]);
    expect('validUntil' in info).toBe(false);
    expect('suite' in info).toBe(false);
  });

  it.each([
    ['no Date', RELEASE.replace(/^Date: .*\n/m, ''), 'Date'],
    ['an unreadable Date', RELEASE.replace(/^Date: .*$/m, 'Date: yesterday'), 'Date'],
    ['an unreadable Valid-Until', RELEASE.replace(/^Valid-Until: .*$/m, 'Valid-Until: soon'), 'Valid-Until'],
    ['no SHA256 list', RELEASE.slice(0, RELEASE.indexOf('SHA256:')), 'SHA256'],
    ['an empty SHA256 list', RELEASE.slice(0, RELEASE.indexOf('SHA256:')) + 'SHA256:\n', 'SHA256'],
    ['a short hash', RELEASE.replace(H2, 'abc'), 'SHA256 line'],
    ['a bad size', RELEASE.replace('8790396', '87x'), 'SHA256 line'],
    ['a missing path', RELEASE.replace(' main/binary-amd64/Packages.xz', ''), 'SHA256 line'],
    ['two paragraphs', RELEASE + '\nOrigin: other\n', 'paragraph'],
    ['broken syntax', 'Date Sat\n', 'paragraph'],
  ])('rejects a Release with %s as RELEASE_MALFORMED', (_what, text, mention) => {
    const error = errorOf(() => parseRelease(text, 'x'));
    expect(error?.code).toBe('RELEASE_MALFORMED');
    expect(error?.message).toContain(mention);
  });
});

describe('parseReleaseDate', () => {
  it.each([
    ['Sat, 10 May 2025 08:30:41 UTC', '2025-05-10T08:30:41.000Z'],
    ['Sat, 11 Jul 2026 10:16:37 UTC', '2026-07-11T10:16:37.000Z'],
    ['10 May 2025 08:30:41 GMT', '2025-05-10T08:30:41.000Z'],
    ['Sat,10 May 2025 08:30:41 Z', '2025-05-10T08:30:41.000Z'],
    ['Sat, 1 Feb 2025 00:00 UTC', '2025-02-01T00:00:00.000Z'],
    ['Sat, 10 May 2025 10:30:41 +0200', '2025-05-10T08:30:41.000Z'],
    ['Fri, 09 May 2025 23:30:41 -0900', '2025-05-10T08:30:41.000Z'],
    ['  Thu, 29 Feb 2024 12:00:00 utc  ', '2024-02-29T12:00:00.000Z'],
  ])('%j → %s', (text, iso) => {
    expect(parseReleaseDate(text)).toBe(iso);
  });

  it.each([
    '',
    '2025-05-10T08:30:41Z',
    'Sat, 10 Foo 2025 08:30:41 UTC',
    'Sat, 31 Feb 2025 08:30:41 UTC',
    'Sat, 29 Feb 2025 08:30:41 UTC',
    'Sat, 10 May 2025 24:00:00 UTC',
    'Sat, 10 May 2025 08:60:00 UTC',
    'Sat, 10 May 2025 08:30:41 CEST',
    'Sat, 10 May 2025 08:30:41',
    'Sat, 10 May 25 08:30:41 UTC',
  ])('rejects %j', (text) => {
    expect(parseReleaseDate(text)).toBeUndefined();
  });
});

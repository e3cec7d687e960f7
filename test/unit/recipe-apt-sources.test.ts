import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  aptMirrorsWithOrigin,
  mirrorEnvName,
  mirrorNameOf,
  mirrorsFromAptSources,
  parseDeb822Sources,
  parseOneLineSources,
  readHostAptSources,
} from '../../src/recipe/apt-sources.js';

describe('apt sources', () => {
  it('parses one-line entries with options and comments, skipping what is not deb/deb-src', () => {
    const text = [
      '# a comment',
      'deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://a.test/debian bookworm main contrib # trailing',
      'deb-src http://a.test/debian bookworm main',
      'rpm http://a.test/x y z',
      'deb http://a.test/incomplete',
      '',
    ].join('\n');
    expect(parseOneLineSources(text, 'f.list')).toEqual([
      {
        types: ['deb'],
        uris: ['http://a.test/debian'],
        suites: ['bookworm'],
        components: ['main', 'contrib'],
        enabled: true,
        file: 'f.list',
      },
      {
        types: ['deb-src'],
        uris: ['http://a.test/debian'],
        suites: ['bookworm'],
        components: ['main'],
        enabled: true,
        file: 'f.list',
      },
    ]);
  });

  it('parses deb822 stanzas with comments, continuation lines and Enabled: no', () => {
    const text = [
      'Types: deb deb-src',
      '# a comment inside the stanza',
      'URIs: http://a.test/debian',
      'Suites: bookworm',
      '  bookworm-updates',
      'Components: main',
      'Signed-By: /usr/share/keyrings/k.gpg',
      '',
      'Types: deb',
      'URIs: http://b.test/debian-security',
      'Suites: bookworm-security',
      'Components: main',
      'Enabled: no',
      '',
      'X-Not-A-Source: yes',
    ].join('\n');
    const entries = parseDeb822Sources(text, 'f.sources');
    expect(entries).toEqual([
      {
        types: ['deb', 'deb-src'],
        uris: ['http://a.test/debian'],
        suites: ['bookworm', 'bookworm-updates'],
        components: ['main'],
        enabled: true,
        file: 'f.sources',
      },
      {
        types: ['deb'],
        uris: ['http://b.test/debian-security'],
        suites: ['bookworm-security'],
        components: ['main'],
        enabled: false,
        file: 'f.sources',
      },
    ]);
    // A disabled entry names no mirror.
    expect([...mirrorsFromAptSources(entries)]).toEqual([['debian', 'http://a.test/debian']]);
  });

  it('reads sources.list before sources.list.d, in name order, and the first mirror of a name wins', async () => {
    const root = await mkdtemp(join(tmpdir(), 'rootcast-'));
    try {
      await mkdir(join(root, 'sources.list.d'));
      await writeFile(join(root, 'sources.list'), 'deb http://first.test/debian/ bookworm main\n');
      await writeFile(
        join(root, 'sources.list.d', 'b.sources'),
        'Types: deb\nURIs: http://second.test/debian http://c.test/debian-security\nSuites: bookworm\n',
      );
      await writeFile(
        join(root, 'sources.list.d', 'a.list'),
        'deb-src http://src.test/other bookworm main\n',
      );
      await writeFile(join(root, 'sources.list.d', 'ignored.txt'), 'deb http://ignored.test/ignored x y\n');
      const entries = await readHostAptSources(root);
      expect(entries.map((e) => e.file)).toEqual([
        join(root, 'sources.list'),
        join(root, 'sources.list.d', 'a.list'),
        join(root, 'sources.list.d', 'b.sources'),
      ]);
      expect(Object.fromEntries(mirrorsFromAptSources(entries))).toEqual({
        debian: 'http://first.test/debian',
        'debian-security': 'http://c.test/debian-security',
      });
      expect(aptMirrorsWithOrigin(entries).get('debian-security')).toEqual({
        uri: 'http://c.test/debian-security',
        file: join(root, 'sources.list.d', 'b.sources'),
      });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('treats a missing apt directory as no sources', async () => {
    expect(await readHostAptSources(join(tmpdir(), 'rootcast-does-not-exist'))).toEqual([]);
  });

  it('names mirrors and their environment variables', () => {
    expect(mirrorNameOf('http://a.test/debian/')).toBe('debian');
    expect(mirrorNameOf('http://a.test/Debian-Security')).toBe('debian-security');
    expect(mirrorNameOf('not a uri')).toBeUndefined();
    expect(mirrorEnvName('debian-security')).toBe('ROOTCAST_MIRROR_DEBIAN_SECURITY');
  });
});

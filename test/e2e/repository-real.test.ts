import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContext } from '../../src/core/context.js';
import { type DebSource, loadIndexes } from '../../src/distro/deb/repository.js';
import { HttpClient } from '../../src/fetch/http.js';
import { mirror } from '../helpers/mirror.js';

/**
 * Loads real Debian indexes from the mirror the host's apt uses (overridable with
 * ROOTCAST_MIRROR_DEBIAN / ROOTCAST_MIRROR_DEBIAN_SECURITY), verified with the host's
 * Debian archive keyring.
 */
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

describe('loadIndexes against the real Debian mirror', () => {
  let store: string;
  let sources: DebSource[];

  beforeAll(async () => {
    store = await mkdtemp(join(tmpdir(), 'rootcast-'));
    sources = [
      {
        uri: await mirror('debian'),
        uriTemplate: '{{mirror.debian}}',
        suites: ['bookworm', 'bookworm-updates'],
        components: ['main'],
        keyring: KEYRING,
      },
      {
        uri: await mirror('debian-security'),
        uriTemplate: '{{mirror.debian-security}}',
        suites: ['bookworm-security'],
        components: ['main'],
        keyring: KEYRING,
      },
    ];
  });

  afterAll(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it('verifies and parses bookworm, bookworm-updates and bookworm-security', async () => {
    const http = new HttpClient();
    try {
      const indexes = await loadIndexes(sources, 'amd64', createContext({ store }), { http });
      expect(indexes.map((i) => i.id)).toEqual([
        'bookworm/main',
        'bookworm-updates/main',
        'bookworm-security/main',
      ]);
      const [main, updates, security] = indexes;
      expect(main!.packages.length).toBeGreaterThan(50_000);
      expect(main!.release.codename).toBe('bookworm');
      expect(main!.packages.some((p) => p.name === 'libc6')).toBe(true);
      expect(updates!.release.codename).toBe('bookworm-updates');
      expect(security!.release.codename).toBe('bookworm-security');
      expect(security!.packages.length).toBeGreaterThan(100);
      for (const index of indexes) {
        expect(index.release.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(index.release.acquireByHash).toBe(true);
      }

      // A second load with unchanged Releases: one request per suite, nothing else.
      const before = http.stats.requests;
      const again = await loadIndexes(sources, 'amd64', createContext({ store }), { http });
      expect(http.stats.requests - before).toBe(3);
      expect(again.map((i) => i.packages.length)).toEqual(indexes.map((i) => i.packages.length));
    } finally {
      await http.close();
    }
  });
});

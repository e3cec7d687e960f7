import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BinaryPackage, RepoIndex } from '../../src/distro/deb/types.js';
import { diffLocks, lockMismatches } from '../../src/lock/compare-lock.js';
import { createLock } from '../../src/lock/create-lock.js';
import { lockPathFor, readLock, serializeLock, writeLock } from '../../src/lock/lock-file.js';
import type { LoadedRecipe } from '../../src/recipe/types.js';

const HEX = (c: string) => c.repeat(64);

function loadedRecipe(digest = `sha256:${HEX('d')}`): LoadedRecipe {
  return {
    path: '/r/demo.yaml',
    recipe: {
      name: 'demo',
      version: '1.0',
      distro: 'debian',
      release: 'bookworm',
      arch: 'amd64',
      variant: 'minbase',
      sources: [
        { uri: 'http://127.0.0.1:9/debian', suites: ['bookworm'], components: ['main'], keyring: '/k.gpg' },
      ],
      packages: { install: [], exclude: [] },
      files: [],
      steps: [],
      values: {},
      labels: {},
    },
    sourceUriTemplates: ['{{mirror.debian}}'],
    digest,
    variables: {},
    locate: () => undefined,
  };
}

function pkg(name: string, version: string): BinaryPackage {
  return {
    name,
    version,
    architecture: 'amd64',
    multiArch: 'no',
    essential: false,
    priority: 'required',
    preDepends: [],
    depends: [],
    recommends: [],
    conflicts: [],
    breaks: [],
    provides: [],
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_amd64.deb`,
    size: 100,
    sha256: HEX('a'),
    repository: 'bookworm/main',
  };
}

const index: RepoIndex = {
  id: 'bookworm/main',
  repository: {
    id: 'bookworm/main',
    uriTemplate: '{{mirror.debian}}',
    uri: 'http://127.0.0.1:9/debian',
    suite: 'bookworm',
    component: 'main',
    arch: 'amd64',
  },
  release: {
    sha256: HEX('b'),
    date: '2025-05-17T09:00:00.000Z',
    notAutomatic: false,
    butAutomaticUpgrades: false,
    acquireByHash: true,
    architectures: ['amd64'],
    components: ['main'],
    files: new Map(),
  },
  pin: 500,
  packages: [],
};

describe('createLock', () => {
  it('sorts packages by name, records the symbolic mirror and the Release digest', () => {
    const lock = createLock(loadedRecipe(), [index], [pkg('zlib1g', '1:1.2.13'), pkg('bash', '5.2.15-2')]);
    expect(lock.packages.map((p) => p.name)).toEqual(['bash', 'zlib1g']);
    expect(lock.repositories).toEqual([
      {
        id: 'bookworm/main',
        uri: '{{mirror.debian}}',
        suite: 'bookworm',
        component: 'main',
        release: { sha256: HEX('b'), date: '2025-05-17T09:00:00.000Z' },
      },
    ]);
    expect(lock.packages[0]).toEqual({
      name: 'bash',
      version: '5.2.15-2',
      arch: 'amd64',
      path: 'pool/main/b/bash/bash_5.2.15-2_amd64.deb',
      size: 100,
      sha256: HEX('a'),
      repository: 'bookworm/main',
      priority: 'required',
    });
    expect(serializeLock(lock)).not.toContain('127.0.0.1');
  });

  it('is deterministic whatever the order packages arrive in', () => {
    const a = createLock(loadedRecipe(), [index], [pkg('a', '1'), pkg('b', '1')]);
    const b = createLock(loadedRecipe(), [index], [pkg('b', '1'), pkg('a', '1')]);
    expect(serializeLock(a)).toBe(serializeLock(b));
  });
});

describe('lock freshness', () => {
  it('matches its own recipe and notices a changed one', () => {
    const lock = createLock(loadedRecipe(), [index], [pkg('bash', '5')]);
    expect(lockMismatches(lock, loadedRecipe())).toEqual([]);
    const reasons = lockMismatches(lock, loadedRecipe(`sha256:${HEX('e')}`));
    expect(reasons[0]).toMatch(/recipe changed/);
  });

  it('notices a repository the recipe no longer has', () => {
    const lock = createLock(loadedRecipe(), [index], [pkg('bash', '5')]);
    const moved = loadedRecipe();
    moved.sourceUriTemplates = ['{{mirror.other}}'];
    expect(lockMismatches(lock, moved).join(' ')).toMatch(/not among the recipe's sources/);
  });

  it('reports added, removed and changed packages', () => {
    const before = createLock(loadedRecipe(), [index], [pkg('a', '1'), pkg('b', '1')]);
    const after = createLock(loadedRecipe(), [index], [pkg('b', '2'), pkg('c', '1')]);
    expect(diffLocks(before, after)).toEqual({
      added: [{ name: 'c', version: '1' }],
      removed: [{ name: 'a', version: '1' }],
      changed: [{ name: 'b', from: '1', to: '2' }],
    });
  });
});

describe('lock files', () => {
  it('round-trips, and refuses what is not a lock with exit code 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    try {
      expect(lockPathFor(join(dir, 'x.yaml'))).toBe(join(dir, 'x.lock.json'));
      const path = join(dir, 'x.lock.json');
      expect(await readLock(path)).toBeUndefined();
      const lock = createLock(loadedRecipe(), [index], [pkg('bash', '5')]);
      await writeLock(path, lock);
      expect(await readLock(path)).toEqual(lock);
      expect(await readFile(path, 'utf8')).toBe(serializeLock(lock));

      await writeFile(path, '{"lockVersion": 1');
      await expect(readLock(path)).rejects.toMatchObject({ code: 'LOCK_INVALID', exitCode: 2 });
      await writeFile(path, JSON.stringify({ ...lock, packages: [{ name: 'x' }] }));
      await expect(readLock(path)).rejects.toMatchObject({
        code: 'LOCK_INVALID',
        message: expect.stringContaining('packages.0'),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

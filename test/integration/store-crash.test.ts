import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/core/digest.js';
import { cleanStore } from '../../src/store/clean.js';
import { createStagingDir } from '../../src/store/layers.js';
import { acquireLock, storeLockPath } from '../../src/store/lock.js';
import { storeLayout } from '../../src/store/paths.js';
import { listTemplates } from '../../src/store/template-query.js';
import { type CommitPhase, commitTemplate } from '../../src/store/templates.js';
import { buildFixtureTree, FIXTURE_EPOCH } from './store-fixtures.js';

const DIST = pathToFileURL(join(import.meta.dirname, '../../dist/store/')).href;

// The child stages a copy of the tree as a build would, commits it and stops dead at one phase,
// announcing it on stdout; the test then SIGKILLs it. It runs the compiled dist/ (built by the
// global setup).
const CHILD = `
import { execFileSync } from 'node:child_process';
import { commitTemplate } from ${JSON.stringify(`${DIST}templates.js`)};
import { createStagingDir } from ${JSON.stringify(`${DIST}layers.js`)};
const [store, source, pauseAt] = process.argv.slice(2);
const tree = await createStagingDir(store);
execFileSync('cp', ['-a', source + '/.', tree]);
await commitTemplate({
  store, tree, name: 'crash', version: '1', sourceDateEpoch: ${FIXTURE_EPOCH}, arch: 'amd64',
  lock: '{}', recipeDigest: 'r', cacheKey: 'k',
  onPhase: async (phase) => {
    if (phase !== pauseAt) return;
    process.stdout.write('paused\\n');
    await new Promise(() => {});
  },
});
process.stdout.write('finished\\n');
`;

function runUntil(script: string, args: string[]): Promise<{ child: ChildProcess; line: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve({ child, line: out.trim() });
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code} before pausing: ${err}`)));
  });
}

async function killed(child: ChildProcess): Promise<void> {
  child.removeAllListeners('exit');
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** Every visible blob hashes to its name: nothing half-written is visible. */
async function assertBlobsWhole(store: string): Promise<number> {
  const names = existsSync(storeLayout.blobs(store)) ? await readdir(storeLayout.blobs(store)) : [];
  for (const name of names) {
    expect((await sha256File(join(storeLayout.blobs(store), name))).hex).toBe(name);
  }
  return names.length;
}

describe('a commit killed at any moment leaves nothing half-visible', () => {
  let dir: string;
  let script: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    script = join(dir, 'child.mjs');
    await writeFile(script, CHILD);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const phases: CommitPhase[] = [
    'layer-ingesting',
    'layer-blob-committed',
    'layer-placed',
    'blobs-committed',
    'index-locked',
  ];
  for (const phase of phases) {
    it(`killed at ${phase}`, async () => {
      const store = join(dir, 'store');
      const source = join(dir, 'source');
      await buildFixtureTree(source);
      const { child, line } = await runUntil(script, [store, source, phase]);
      expect(line).toBe('paused');
      if (phase === 'layer-ingesting') {
        // The layer is being written: it exists only under ingest/.
        expect((await readdir(storeLayout.ingest(store))).length).toBe(1);
      }
      await killed(child);

      expect(await listTemplates(store)).toEqual([]);
      expect(JSON.parse(await readFile(storeLayout.index(store), 'utf8')).manifests).toEqual([]);
      await assertBlobsWhole(store);

      const { removed } = await cleanStore(store);
      expect(await readdir(storeLayout.ingest(store))).toEqual([]);
      expect(await readdir(storeLayout.tmp(store))).toEqual([]);
      if (phase === 'layer-ingesting') expect(removed.some((p) => p.includes('/ingest/'))).toBe(true);

      // The next commit succeeds, even though the dead process held the store lock.
      const retry = await createStagingDir(store);
      await buildFixtureTree(retry);
      const result = await commitTemplate({
        store,
        tree: retry,
        name: 'crash',
        version: '1',
        sourceDateEpoch: FIXTURE_EPOCH,
        arch: 'amd64',
        lock: '{}',
        recipeDigest: 'r',
        cacheKey: 'k',
      });
      expect((await listTemplates(store)).map((t) => [t.ref, t.manifestDigest])).toEqual([
        ['crash:1', result.manifestDigest],
      ]);
      expect(await assertBlobsWhole(store)).toBe(4);
    });
  }
});

describe('store locks', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('excludes a second holder until released, and times out when asked to', async () => {
    const path = storeLockPath(dir);
    const first = await acquireLock(path);
    expect((await readFile(path, 'utf8')).trim()).toBe(String(process.pid));
    await expect(acquireLock(path, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'STORE_LOCK_TIMEOUT' });
    const started = Date.now();
    await expect(acquireLock(path, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'STORE_LOCK_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    let acquired = false;
    const waiting = acquireLock(path).then((lock) => {
      acquired = true;
      return lock;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(acquired).toBe(false);
    await first.release();
    const second = await waiting;
    expect(acquired).toBe(true);
    await second.release();
    await second.release();
  });

  it('is shared with util-linux flock, so other tools respect it', async () => {
    const path = storeLockPath(dir);
    const lock = await acquireLock(path);
    const busy = spawnSync('flock', ['--nonblock', path, 'true']);
    expect(busy.status).toBe(1);
    await lock.release();
    expect(spawnSync('flock', ['--nonblock', path, 'true']).status).toBe(0);
  });
});

describe('cleanStore', () => {
  it('removes temporaries of dead processes only', async () => {
    const store = await mkdtemp(join(tmpdir(), 'rootcast-'));
    try {
      const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
      await mkdir(storeLayout.ingest(store), { recursive: true });
      await mkdir(join(storeLayout.tmp(store), `${dead}-00ff`, 'etc'), { recursive: true });
      await writeFile(join(storeLayout.ingest(store), `${dead}-abcd`), 'partial');
      await writeFile(join(storeLayout.ingest(store), `${process.pid}-abcd`), 'live');
      await writeFile(join(store, `.tmp-index.json-${dead}-0a0b`), '{');
      await writeFile(join(store, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
      const { removed } = await cleanStore(store);
      expect(removed.length).toBe(3);
      expect(await readdir(storeLayout.ingest(store))).toEqual([`${process.pid}-abcd`]);
      expect(await readdir(storeLayout.tmp(store))).toEqual([]);
      expect((await readdir(store)).sort()).toEqual(['index.json', 'ingest', 'tmp']);
    } finally {
      await rm(store, { recursive: true, force: true });
    }
  });
});

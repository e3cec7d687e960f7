import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LockFile } from '../../src/lock/lock-file.js';
import { errorLines, runCli } from '../helpers/cli.js';
import { documentedFields, expectDocumented } from '../helpers/json-docs.js';

/**
 * The real command line against the host's real mirror: lock, fetch twice, frozen checks,
 * and an unknown package pointed at its recipe line.
 */
describe('rootcast lock + fetch on bookworm minbase', () => {
  let dir: string;
  let recipe: string;
  let store: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-e2e-'));
    recipe = join(dir, 'minbase.yaml');
    store = join(dir, 'store');
    await copyFile(new URL('../../recipes/debian-12-minbase.yaml', import.meta.url), recipe);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a sorted, canonical lock beside the recipe', async () => {
    const result = await runCli(['lock', recipe, '--store', store, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as {
      status: string;
      written: boolean;
      packages: number;
      variables: Record<string, { value: string; origin: string }>;
    };
    expect(summary).toMatchObject({ status: 'resolved', written: true });
    expectDocumented(summary, documentedFields('lock'));
    // Where each value came from: the recipe's own fields, and the mirrors from apt (or env/--set).
    expect(summary.variables.release).toEqual({ value: 'bookworm', origin: 'recipe' });
    expect(summary.variables['mirror.debian']?.origin).toMatch(/^(apt |env |--set)/);
    const lock = JSON.parse(await readFile(join(dir, 'minbase.lock.json'), 'utf8')) as LockFile;
    expect(lock.packages.length).toBe(summary.packages);
    const names = lock.packages.map((p) => p.name);
    expect(names).toEqual([...names].sort());
    for (const essential of ['base-files', 'bash', 'coreutils', 'dpkg', 'libc6'])
      expect(names).toContain(essential);
    expect(lock.recipe.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(lock.repositories.map((r) => r.id).sort()).toEqual([
      'bookworm-security/main',
      'bookworm-updates/main',
      'bookworm/main',
    ]);
    for (const repo of lock.repositories) expect(repo.uri).toMatch(/^\{\{mirror\.debian(-security)?\}\}$/);
  });

  it('keeps a lock that still fits, and --update reports nothing moved', async () => {
    const before = await readFile(join(dir, 'minbase.lock.json'), 'utf8');
    const again = await runCli(['lock', recipe, '--store', store, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ status: 'unchanged', written: false });
    const update = await runCli(['lock', '--update', recipe, '--store', store, '--json']);
    expect(update.code).toBe(0);
    expect(JSON.parse(update.stdout)).toMatchObject({
      status: 'resolved',
      written: false,
      added: [],
      removed: [],
      changed: [],
    });
    expect(await readFile(join(dir, 'minbase.lock.json'), 'utf8')).toBe(before);
  });

  it('fetches every package once, verified, and the second fetch downloads nothing', async () => {
    const lock = JSON.parse(await readFile(join(dir, 'minbase.lock.json'), 'utf8')) as LockFile;
    const first = await runCli(['fetch', recipe, '--store', store, '--json', '--progress', 'json']);
    expect(first.code).toBe(0);
    const one = JSON.parse(first.stdout) as { downloaded: number; reused: number; bytes: number };
    expectDocumented(one, documentedFields('fetch'));
    // --progress json: stderr is one JSON event per line, ending with the download's total.
    const events = first.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { event: string; value?: number; total?: number });
    expect(events[0]).toMatchObject({ event: 'start', total: one.bytes });
    expect(events.at(-1)).toMatchObject({ event: 'done', value: one.bytes, total: one.bytes });
    expect(one.downloaded + one.reused).toBe(lock.packages.length);
    expect(one.downloaded).toBe(lock.packages.length);
    expect(one.bytes).toBe(lock.packages.reduce((sum, p) => sum + p.size, 0));

    const second = await runCli(['fetch', recipe, '--store', store, '--json']);
    expect(JSON.parse(second.stdout)).toEqual({ downloaded: 0, reused: lock.packages.length, bytes: 0 });

    const cached = await readdir(join(store, 'packages', 'sha256'));
    expect(cached.sort()).toEqual(lock.packages.map((p) => p.sha256).sort());
    for (const pkg of lock.packages.slice(0, 10)) {
      const data = await readFile(join(store, 'packages', 'sha256', pkg.sha256));
      expect(createHash('sha256').update(data).digest('hex')).toBe(pkg.sha256);
    }
  });

  it('--frozen refuses a lock that no longer fits the recipe, and leaves it alone', async () => {
    const lockPath = join(dir, 'minbase.lock.json');
    const before = await readFile(lockPath, 'utf8');
    const changed = (await readFile(recipe, 'utf8')).replace(/install: \[[^\]]*\]/, 'install: [hello]');
    const other = join(dir, 'changed.yaml');
    await writeFile(other, changed);
    await copyFile(lockPath, join(dir, 'changed.lock.json'));
    for (const verb of ['lock', 'fetch']) {
      const result = await runCli([verb, '--frozen', other, '--store', store]);
      expect(result.code).toBe(2);
      const { message, hint } = errorLines(result);
      expect(message).toMatch(/recipe changed/);
      expect(hint).toMatch(/rootcast lock --update/);
    }
    expect(await readFile(join(dir, 'changed.lock.json'), 'utf8')).toBe(before);
  });

  it('points an unknown package at its line in the recipe', async () => {
    const text = await readFile(recipe, 'utf8');
    const broken = join(dir, 'unknown.yaml');
    await writeFile(
      broken,
      text.replace(/install: \[[^\]]*\]/, 'install: [ca-certificates, no-such-package-xyz]'),
    );
    const line = text.split('\n').findIndex((l) => /install: \[/.test(l)) + 1;
    const result = await runCli(['lock', broken, '--store', store]);
    expect(result.code).toBe(2);
    const { message } = errorLines(result);
    expect(message).toMatch(
      new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:\\d+: .*no-such-package-xyz`),
    );
  });
});

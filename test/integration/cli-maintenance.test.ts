import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorLines, runCli } from '../helpers/cli.js';
import { commitSmall, lockText } from './maintenance-fixtures.js';

/** diff, fsck and gc through the real command line, on small committed templates. */
describe('diff, fsck and gc on the command line', () => {
  let store: string;
  beforeAll(async () => {
    store = await mkdtemp(join(tmpdir(), 'rootcast-cli-maint-'));
    await commitSmall(
      store,
      'one',
      { 'etc/a': 'a', 'etc/b': 'b' },
      lockText('one', { base: { version: '1', content: 'x' } }),
    );
    await commitSmall(
      store,
      'two',
      { 'etc/a': 'A', 'etc/c': 'c' },
      lockText('two', { base: { version: '2', content: 'y' } }),
    );
  });
  afterAll(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it('diff names the changed package and the added, removed and changed files', async () => {
    const human = await runCli(['diff', 'one:1.0', 'two:1.0', '--store', store]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/base/);
    expect(human.stdout).toMatch(/etc\/a/);
    expect(human.stdout).toMatch(/etc\/b/);
    expect(human.stdout).toMatch(/etc\/c/);
    const json = await runCli(['diff', 'one:1.0', 'two:1.0', '--store', store, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.stringify(JSON.parse(json.stdout))).toMatch(/"2"/);
    const missing = await runCli(['diff', 'one:1.0', 'nope:1.0', '--store', store]);
    expect(missing.code).toBe(2);
    expect(errorLines(missing).message).toMatch(/nope:1\.0/);
  });

  it('fsck passes on a sound store and fails on a flipped byte; gc removes nothing reachable', async () => {
    expect((await runCli(['fsck', '--store', store])).code).toBe(0);
    expect((await runCli(['gc', '--dry-run', '--store', store])).code).toBe(0);
    const blobs = join(store, 'blobs', 'sha256');
    const names = await readdir(blobs);
    const sizes = await Promise.all(names.map(async (n) => (await readFile(join(blobs, n))).length));
    const biggest = names[sizes.indexOf(Math.max(...sizes))]!;
    const bytes = await readFile(join(blobs, biggest));
    const middle = bytes.length >> 1;
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    await writeFile(join(blobs, biggest), bytes);
    const broken = await runCli(['fsck', '--store', store, '--json']);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain(biggest);
    // gc refuses to decide reachability from a damaged store, and removes nothing.
    const before = await readdir(blobs);
    const gc = await runCli(['gc', '--store', store]);
    if (gc.code !== 0) expect(errorLines(gc).hint.length).toBeGreaterThan(0);
    expect(await readdir(blobs)).toEqual(before);
  });
});

import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorLines, runCli } from '../helpers/cli.js';

const BROKEN = fileURLToPath(new URL('../fixtures/recipes/broken/', import.meta.url));
const GOOD = fileURLToPath(new URL('../fixtures/recipes/good/minimal.yaml', import.meta.url));

/** Variables that would change what the fixtures mean. */
const CLEAN_ENV = Object.fromEntries(
  Object.keys(process.env)
    .filter((k) => k.startsWith('ROOTCAST_'))
    .map((k) => [k, undefined]),
);

/**
 * Every broken recipe, through the real command line: exit 2, one line naming file:line,
 * one line of hint, no stack trace, and a JSON error with the stable code under --json.
 */
describe('broken recipes on the command line', () => {
  let store: string;
  beforeAll(async () => {
    store = await mkdtemp(join(tmpdir(), 'rootcast-cli-'));
  });
  afterAll(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it('has at least ten broken recipes to try', async () => {
    expect((await readdir(BROKEN)).filter((f) => f.endsWith('.yaml')).length).toBeGreaterThanOrEqual(10);
  });

  it.each(
    readdirSync(BROKEN)
      .filter((f) => f.endsWith('.yaml'))
      .sort(),
  )('%s', async (file) => {
    // Relative to the working directory, as a user would type it.
    const path = relative(process.cwd(), join(BROKEN, file));
    const result = await runCli(['lock', path, '--store', store], { env: CLEAN_ENV });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const { message, hint } = errorLines(result);
    expect(message.startsWith(`${path}:`)).toBe(true);
    expect(message).toMatch(/^[^:]+:\d+:\d+: \S/);
    expect(hint.length).toBeGreaterThan(10);
    expect(result.stderr).not.toMatch(/\n\s+at /);

    const json = await runCli(['lock', path, '--store', store, '--json'], { env: CLEAN_ENV });
    expect(json.code).toBe(2);
    const { error } = JSON.parse(json.stdout) as { error: { code: string; hint: string } };
    expect(error.code).toMatch(/^RECIPE_[A-Z_]+$/);
    expect(error.hint).toBe(hint);
    // The first line of every fixture says what is wrong with it; make sure it is not the store that failed.
    expect((await readFile(join(BROKEN, file), 'utf8')).startsWith('#')).toBe(true);
    expect(await readdir(store)).toEqual([]);
  });

  it('rejects a malformed --set with exit 2', async () => {
    const result = await runCli(['lock', GOOD, '--set', 'novalue', '--store', store], { env: CLEAN_ENV });
    expect(result.code).toBe(2);
    expect(errorLines(result).message).toMatch(/novalue/);
  });

  it('rejects unknown verbs and options with exit 2', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['lock', GOOD, '--no-such-flag'])).code).toBe(2);
    expect((await runCli(['lock'])).code).toBe(2);
  });

  it('prints help and version with exit 0', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/lock/);
    expect((await runCli(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

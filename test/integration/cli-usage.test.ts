import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, errorLines, runCli } from '../helpers/cli.js';

/** Variables that would change what a command line means. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  ...Object.fromEntries(
    Object.keys(process.env)
      .filter((k) => k.startsWith('ROOTCAST_'))
      .map((k) => [k, undefined]),
  ),
  SOURCE_DATE_EPOCH: undefined,
};

interface JsonError {
  error: { code: string; message: string; hint: string; details?: Record<string, unknown> };
}

/**
 * Asserts that `args` fail as bad usage in rootcast's own format: exit 2, the two-line error on
 * stderr and nothing on stdout; then, with `--json`, the same error as JSON on stdout.
 */
async function expectUsageError(args: string[], code: string): Promise<{ hint: string; json: JsonError }> {
  const human = await runCli(args, { env: CLEAN_ENV });
  expect(human.code, human.stderr).toBe(2);
  expect(human.stdout).toBe('');
  // Exactly two lines: commander printed nothing of its own (no bare `error: …`).
  const { message, hint } = errorLines(human);
  expect(human.stderr).not.toMatch(/^error: /m);

  // `--json` right after the verb, where it cannot be taken for another option's value.
  const withJson = await runCli([...args.slice(0, 1), '--json', ...args.slice(1)], { env: CLEAN_ENV });
  expect(withJson.code, withJson.stderr).toBe(2);
  const json = JSON.parse(withJson.stdout) as JsonError;
  expect(json.error.code).toBe(code);
  expect(json.error.message).toBe(message);
  expect(json.error.hint).toBe(hint);
  expect(errorLines(withJson)).toEqual({ message, hint });
  return { hint, json };
}

describe('usage errors on the command line', () => {
  let store: string;
  beforeAll(async () => {
    store = await mkdtemp(join(tmpdir(), 'rootcast-usage-'));
  });
  afterAll(async () => {
    await rm(store, { recursive: true, force: true });
  });

  const cases: [string, string, string[], string | undefined][] = [
    ['a required option missing', 'USAGE_OPTION_MISSING', ['export', 'a:1', '-o', 'x'], 'export'],
    ['-o missing', 'USAGE_OPTION_MISSING', ['export', 'a:1', '--format', 'tar'], 'export'],
    ['a required argument missing', 'USAGE_ARGUMENT_MISSING', ['build'], 'build'],
    ['an unknown option', 'USAGE_OPTION_UNKNOWN', ['ls', '--bogus'], 'ls'],
    ['a value outside the choices', 'USAGE_OPTION_INVALID', ['ls', '--progress', 'fancy'], 'ls'],
    ['a value its parser rejects', 'USAGE_OPTION_INVALID', ['lock', 'r.yaml', '--jobs', '99'], 'lock'],
    ['an option without its value', 'USAGE_OPTION_NO_VALUE', ['ls', '--store'], 'ls'],
    ['an extra argument', 'USAGE_ARGUMENT_EXTRA', ['ls', 'extra'], 'ls'],
    ['an unknown option before any verb', 'USAGE_OPTION_UNKNOWN', ['--bogus'], undefined],
  ];

  it.each(cases)('%s is %s', async (_what, code, args, verb) => {
    const { hint, json } = await expectUsageError(args, code);
    expect(hint).toContain(verb ? `\`rootcast ${verb} --help\`` : '`rootcast --help`');
    if (verb) expect(json.error.details).toMatchObject({ verb });
  });

  it('suggests the verb meant for an unknown verb', async () => {
    const { hint, json } = await expectUsageError(['bulid'], 'USAGE_VERB_UNKNOWN');
    expect(json.error.message).toMatch(/bulid/);
    expect(hint).toMatch(/did you mean `rootcast build`\?/i);
    expect(json.error.details).toEqual({ suggestion: 'build' });
    const far = await expectUsageError(['zzzzzz'], 'USAGE_VERB_UNKNOWN');
    expect(far.hint).toBe('See `rootcast --help` for every verb.');
  });

  it('suggests the option meant for an unknown option', async () => {
    const { hint } = await expectUsageError(['ls', '--al', '--store', store], 'USAGE_OPTION_UNKNOWN');
    expect(hint).toMatch(/did you mean --all\?/i);
  });

  it('keeps --json after `--` for the command run inside a container', async () => {
    const result = await runCli(['ls', 'extra', '--', '--json'], { env: CLEAN_ENV });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    errorLines(result);
  });
});

describe('option values with documented codes', () => {
  let store: string;
  beforeAll(async () => {
    store = await mkdtemp(join(tmpdir(), 'rootcast-usage-'));
  });
  afterAll(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it.each([['99'], ['0'], ['abc'], ['3.5']])(
    'build --compression %s is COMPRESSION_LEVEL_INVALID',
    async (level) => {
      const { json } = await expectUsageError(
        ['build', 'missing.yaml', '--compression', level, '--store', store],
        'COMPRESSION_LEVEL_INVALID',
      );
      expect(json.error.message).toContain(level);
      expect(await readdir(store)).toEqual([]);
    },
  );

  it.each([['99'], ['-1'], ['x']])('export --level %s is EXPORT_LEVEL_INVALID', async (level) => {
    await expectUsageError(
      ['export', 'a:1', '--format', 'tar', '-o', join(store, 'x.tar'), '--level', level, '--store', store],
      'EXPORT_LEVEL_INVALID',
    );
  });

  it("checks --level against the named compressor's range before reading the store", async () => {
    const args = ['export', 'missing:1.0', '--format', 'tar', '-o', join(store, 'x.tar')];
    const { json } = await expectUsageError(
      [...args, '--compression', 'gzip', '--level', '12', '--store', store],
      'EXPORT_LEVEL_INVALID',
    );
    expect(json.error.message).toMatch(/gzip/);
    // In range for gzip: the level passes, and the missing template is what fails.
    const ok = await runCli([...args, '--compression', 'gzip', '--level', '9', '--store', store, '--json'], {
      env: CLEAN_ENV,
    });
    expect((JSON.parse(ok.stdout) as JsonError).error.code).toBe('TEMPLATE_NOT_FOUND');
  });

  it('a bad SOURCE_DATE_EPOCH is SOURCE_DATE_EPOCH_INVALID, not an internal error', async () => {
    const result = await runCli(['build', 'missing.yaml', '--store', store, '--json'], {
      env: { ...CLEAN_ENV, SOURCE_DATE_EPOCH: 'yesterday' },
    });
    expect(result.code).toBe(2);
    expect((JSON.parse(result.stdout) as JsonError).error.code).toBe('SOURCE_DATE_EPOCH_INVALID');
    expect(errorLines(result).message).toMatch(/yesterday/);
  });
});

describe('help, version and no verb', () => {
  const helpOn = (result: CliResult, stream: 'stdout' | 'stderr') =>
    expect(result[stream]).toMatch(/^Usage: rootcast/);

  it('prints help on stdout and exits 0 when asked', async () => {
    for (const args of [['--help'], ['-h'], ['help'], ['ls', '--help'], ['help', 'export']]) {
      const result = await runCli(args, { env: CLEAN_ENV });
      expect(result.code, args.join(' ')).toBe(0);
      helpOn(result, 'stdout');
      expect(result.stderr).toBe('');
    }
    const version = await runCli(['--version'], { env: CLEAN_ENV });
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('prints help on stderr and exits 2 when no verb is given', async () => {
    const result = await runCli([], { env: CLEAN_ENV });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    helpOn(result, 'stderr');
    expect(result.stderr).toMatch(/Commands:/);
  });

  it('exits 2 for help on a verb that does not exist', async () => {
    const result = await runCli(['help', 'bogus'], { env: CLEAN_ENV });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
  });
});

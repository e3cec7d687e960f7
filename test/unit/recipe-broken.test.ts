import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRootcastError, type RootcastError } from '../../src/core/errors.js';
import { loadRecipe, parseSetFlags } from '../../src/recipe/load.js';

/**
 * Every file under test/fixtures/recipes/broken is a recipe with one mistake, described on
 * its first line. Each must fail with its own code, exit 2, a one-line `file:line:col:`
 * message pointing at the mistake, and a one-line hint.
 */
const BROKEN = 'test/fixtures/recipes/broken';
const GOOD = 'test/fixtures/recipes/good/minimal.yaml';

interface Expectation {
  code: string;
  line: number;
  column?: number;
  field: string;
  message: RegExp;
  hint: RegExp;
}

const EXPECTED: Record<string, Expectation> = {
  'bad-yaml.yaml': {
    code: 'RECIPE_YAML',
    line: 11,
    field: '',
    message: /invalid YAML: .*Flow sequence/,
    hint: /YAML syntax/,
  },
  'duplicate-key.yaml': {
    code: 'RECIPE_YAML',
    line: 7,
    column: 1,
    field: '',
    message: /unique/,
    hint: /same name/,
  },
  'unknown-field.yaml': {
    code: 'RECIPE_UNKNOWN_FIELD',
    line: 5,
    column: 1,
    field: 'relase',
    message: /unknown field `relase` in the recipe/,
    hint: /Did you mean `release`\?/,
  },
  'unknown-nested-field.yaml': {
    code: 'RECIPE_UNKNOWN_FIELD',
    line: 10,
    column: 5,
    field: 'sources[0].suite',
    message: /unknown field `suite` in sources\[0\]/,
    hint: /Did you mean `suites`\?.*uri, suites, components, keyring/,
  },
  'wrong-type.yaml': {
    code: 'RECIPE_INVALID_TYPE',
    line: 10,
    column: 13,
    field: 'sources[0].suites',
    message: /sources\[0\]\.suites: expected a list, got a string/,
    hint: /as a list/,
  },
  'version-number.yaml': {
    code: 'RECIPE_INVALID_TYPE',
    line: 3,
    column: 10,
    field: 'version',
    message: /version: expected a string, got a number \(1\.0\)/,
    hint: /version: "1\.0"/,
  },
  'version-latest.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 3,
    column: 10,
    field: 'version',
    message: /version "latest" must not be "latest"/,
    hint: /version: "1\.0".*newest build/,
  },
  'unquoted-mode.yaml': {
    code: 'RECIPE_INVALID_TYPE',
    line: 16,
    field: 'files[0].mode',
    message: /files\[0\]\.mode: expected a string/,
    hint: /mode: "0644"/,
  },
  'not-a-mapping.yaml': {
    code: 'RECIPE_INVALID_TYPE',
    line: 2,
    field: '',
    message: /expected a mapping, got a list/,
    hint: /mapping of fields/,
  },
  'unknown-variant.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 7,
    column: 10,
    field: 'variant',
    message: /variant: unknown value "minimal"/,
    hint: /essential, apt, minbase, required, important, standard/,
  },
  'bad-arch.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 6,
    field: 'arch',
    message: /arch: unknown value "x86_64"/,
    hint: /amd64, arm64, i386/,
  },
  'bad-name.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 2,
    column: 7,
    field: 'name',
    message: /name "Debian_12" must be lowercase/,
    hint: /lowercase letters/,
  },
  'relative-file-path.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 14,
    field: 'files[0].path',
    message: /files\[0\]\.path "etc\/motd" must be an absolute path/,
    hint: /absolute path/,
  },
  'file-template-and-content.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 16,
    field: 'files[0].content',
    message: /template or content, not both/,
    hint: /exactly one of `template`/,
  },
  'empty-sources.yaml': {
    code: 'RECIPE_INVALID_VALUE',
    line: 8,
    field: 'sources',
    message: /sources: must list at least one source/,
    hint: /at least one source/,
  },
  'missing-field.yaml': {
    code: 'RECIPE_MISSING_FIELD',
    line: 2,
    column: 1,
    field: 'release',
    message: /missing required field `release` in the recipe/,
    hint: /Add `release: bookworm`/,
  },
  'missing-keyring.yaml': {
    code: 'RECIPE_KEYRING_MISSING',
    line: 12,
    column: 14,
    field: 'sources[0].keyring',
    message: /sources\[0\]\.keyring: no such file: .*broken\/no-such-keyring\.gpg/,
    hint: /keyring/,
  },
  'undefined-variable.yaml': {
    code: 'RECIPE_VARIABLE_UNDEFINED',
    line: 9,
    column: 13,
    field: 'sources[0].uri',
    message: /variable `mirror\.nowhere` is not defined/,
    hint: /--set mirror\.nowhere=URI.*ROOTCAST_MIRROR_NOWHERE/,
  },
  'bad-template.yaml': {
    code: 'RECIPE_TEMPLATE',
    line: 9,
    field: 'sources[0].uri',
    message: /sources\[0\]\.uri: invalid handlebars template/,
    hint: /\{\{/,
  },
};

let emptyAptRoot: string;
beforeAll(async () => {
  emptyAptRoot = await mkdtemp(join(tmpdir(), 'rootcast-'));
});
afterAll(async () => {
  await rm(emptyAptRoot, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<RootcastError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isRootcastError(error)) throw new Error(`expected a RootcastError, got ${String(error)}`);
  return error;
}

function expectOneLine(text: string): void {
  expect(text.trim()).not.toBe('');
  expect(text).not.toMatch(/[\r\n]/);
}

describe('broken recipes', () => {
  it('has an expectation for every fixture, and a comment on line 1 of each', async () => {
    const files = (await readdir(BROKEN)).filter((f) => f.endsWith('.yaml')).sort();
    expect(files).toEqual(Object.keys(EXPECTED).sort());
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const file of files) {
      const first = (await readFile(join(BROKEN, file), 'utf8')).split('\n')[0];
      expect(first, file).toMatch(/^# \S/);
    }
  });

  for (const [file, expected] of Object.entries(EXPECTED)) {
    it(`${file} fails with ${expected.code} at line ${expected.line}`, async () => {
      const path = join(BROKEN, file);
      const error = await failure(loadRecipe(path, { env: {}, aptRoot: emptyAptRoot }));
      expect(error.code).toBe(expected.code);
      expect(error.exitCode).toBe(2);
      expectOneLine(error.message);
      expectOneLine(error.hint);
      const prefix = `${path}:${expected.line}:${expected.column ?? ''}`;
      expect(error.message.startsWith(prefix), `${error.message} starts with ${prefix}`).toBe(true);
      expect(error.message).toMatch(/^[^:]+:\d+:\d+: \S/);
      expect(error.message).toMatch(expected.message);
      expect(error.hint).toMatch(expected.hint);
      expect(error.details).toMatchObject({ file: path, line: expected.line, field: expected.field });
    });
  }

  it('rejects --set without "=" as USAGE_SET', () => {
    for (const flag of ['mirror.debian', '=value', 'bad key=1', 'a..b=1']) {
      let error: unknown;
      try {
        parseSetFlags([flag]);
      } catch (e) {
        error = e;
      }
      expect(isRootcastError(error), flag).toBe(true);
      const e = error as RootcastError;
      expect(e.code).toBe('USAGE_SET');
      expect(e.exitCode).toBe(2);
      expectOneLine(e.message);
      expectOneLine(e.hint);
    }
  });

  it('rejects --set of a recipe field, given as an option to loadRecipe', async () => {
    const error = await failure(
      loadRecipe(GOOD, { set: { release: 'trixie' }, env: {}, aptRoot: emptyAptRoot }),
    );
    expect(error.code).toBe('USAGE_SET');
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/`release` is a recipe field/);
    expectOneLine(error.hint);
  });

  it('reports a missing recipe file as RECIPE_NOT_FOUND', async () => {
    const error = await failure(loadRecipe(join(BROKEN, 'no-such-recipe.yaml'), { env: {} }));
    expect(error.code).toBe('RECIPE_NOT_FOUND');
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(`${join(BROKEN, 'no-such-recipe.yaml')}: no such recipe file`);
    expectOneLine(error.hint);
  });
});

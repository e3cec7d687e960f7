import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isRootcastError } from '../../src/core/errors.js';
import { loadRecipe, parseSetFlags } from '../../src/recipe/load.js';

const MAIN = 'http://apt-main.test/debian';
const SECURITY = 'http://apt-security.test/debian-security';

let dir: string;
let aptRoot: string;

/** A recipe in the temp dir, with a keyring beside it, and the host apt config under aptRoot. */
async function writeRecipe(body: string, name = 'recipe.yaml'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, body);
  return path;
}

function recipeText(overrides: { release?: string; install?: string[] } = {}): string {
  const release = overrides.release ?? 'bookworm';
  return [
    'name: test-recipe',
    'version: "1.0"',
    'distro: debian',
    `release: ${release}`,
    'arch: amd64',
    'variant: minbase',
    'sources:',
    '  - uri: "{{mirror.debian}}"',
    '    suites: ["{{release}}", "{{release}}-updates"]',
    '    keyring: keyring.gpg',
    '  - uri: "{{mirror.debian-security}}"',
    '    suites: ["{{release}}-security"]',
    '    components: [main]',
    '    keyring: keyring.gpg',
    'packages:',
    `  install: [${(overrides.install ?? ['ca-certificates', 'curl']).join(', ')}]`,
    '',
  ].join('\n');
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
  await writeFile(join(dir, 'keyring.gpg'), 'not a real keyring; only its existence is checked\n');
  aptRoot = join(dir, 'apt');
  await mkdir(join(aptRoot, 'sources.list.d'), { recursive: true });
  // Both formats: a one-line .list for the main archive, a deb822 .sources for security.
  await writeFile(join(aptRoot, 'sources.list'), `deb ${MAIN}/ bookworm main\n`);
  await writeFile(
    join(aptRoot, 'sources.list.d', 'security.sources'),
    `Types: deb\nURIs: ${SECURITY}\nSuites: bookworm-security\nComponents: main\n`,
  );
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadRecipe', () => {
  it('renders mirrors from the host apt sources and recipe fields as variables', async () => {
    const loaded = await loadRecipe(await writeRecipe(recipeText()), { env: {}, aptRoot });
    expect(loaded.path).toBe(join(dir, 'recipe.yaml'));
    expect(loaded.recipe.sources).toEqual([
      {
        uri: MAIN,
        suites: ['bookworm', 'bookworm-updates'],
        components: ['main'],
        keyring: join(dir, 'keyring.gpg'),
      },
      {
        uri: SECURITY,
        suites: ['bookworm-security'],
        components: ['main'],
        keyring: join(dir, 'keyring.gpg'),
      },
    ]);
    expect(loaded.recipe.packages).toEqual({ install: ['ca-certificates', 'curl'], exclude: [] });
    expect(loaded.recipe.files).toEqual([]);
    expect(loaded.recipe.steps).toEqual([]);
    expect(loaded.sourceUriTemplates).toEqual(['{{mirror.debian}}', '{{mirror.debian-security}}']);
    expect(loaded.variables['mirror.debian']).toEqual({
      value: MAIN,
      origin: `apt ${join(aptRoot, 'sources.list')}`,
    });
    expect(loaded.variables['mirror.debian-security']).toEqual({
      value: SECURITY,
      origin: `apt ${join(aptRoot, 'sources.list.d', 'security.sources')}`,
    });
    expect(loaded.variables.release).toEqual({ value: 'bookworm', origin: 'recipe' });
    expect(loaded.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('takes --set over the environment over the apt sources', async () => {
    const path = await writeRecipe(recipeText());
    const fromEnv = await loadRecipe(path, {
      env: {
        ROOTCAST_MIRROR_DEBIAN: 'http://env.test/debian/',
        ROOTCAST_MIRROR_DEBIAN_SECURITY: 'http://env.test/sec',
      },
      aptRoot,
    });
    expect(fromEnv.recipe.sources.map((s) => s.uri)).toEqual([
      'http://env.test/debian',
      'http://env.test/sec',
    ]);
    expect(fromEnv.variables['mirror.debian']?.origin).toBe('env ROOTCAST_MIRROR_DEBIAN');

    const fromSet = await loadRecipe(path, {
      set: parseSetFlags(['mirror.debian=http://set.test/debian']),
      env: { ROOTCAST_MIRROR_DEBIAN: 'http://env.test/debian' },
      aptRoot,
    });
    expect(fromSet.recipe.sources.map((s) => s.uri)).toEqual(['http://set.test/debian', SECURITY]);
    expect(fromSet.variables['mirror.debian']).toEqual({ value: 'http://set.test/debian', origin: '--set' });
    expect(fromSet.variables['mirror.debian-security']?.origin).toMatch(/^apt /);
  });

  it('keeps the digest when only the mirror changes', async () => {
    const path = await writeRecipe(recipeText());
    const a = await loadRecipe(path, { env: {}, aptRoot });
    const b = await loadRecipe(path, {
      set: { 'mirror.debian': 'http://elsewhere.test/debian', 'mirror.debian-security': 'http://x.test/s' },
      env: {},
      aptRoot,
    });
    expect(b.recipe.sources[0]?.uri).not.toBe(a.recipe.sources[0]?.uri);
    expect(b.digest).toBe(a.digest);
  });

  it('changes the digest with the release or the packages, not with steps', async () => {
    const base = await loadRecipe(await writeRecipe(recipeText(), 'a.yaml'), { env: {}, aptRoot });
    const trixie = await loadRecipe(await writeRecipe(recipeText({ release: 'trixie' }), 'b.yaml'), {
      env: {},
      aptRoot,
    });
    const more = await loadRecipe(
      await writeRecipe(recipeText({ install: ['ca-certificates', 'curl', 'git'] }), 'c.yaml'),
      {
        env: {},
        aptRoot,
      },
    );
    const withStep = await loadRecipe(
      await writeRecipe(`${recipeText()}steps:\n  - run: apt-get clean\n`, 'd.yaml'),
      {
        env: {},
        aptRoot,
      },
    );
    expect(trixie.recipe.sources[0]?.suites).toEqual(['trixie', 'trixie-updates']);
    expect(trixie.digest).not.toBe(base.digest);
    expect(more.digest).not.toBe(base.digest);
    expect(new Set([base.digest, trixie.digest, more.digest]).size).toBe(3);
    expect(withStep.recipe.steps).toEqual([{ run: 'apt-get clean', network: false }]);
    expect(withStep.digest).toBe(base.digest);
  });

  it('gives the digest of the recipe as written, whatever its default fields spell', async () => {
    const implicit = await loadRecipe(await writeRecipe(recipeText(), 'a.yaml'), { env: {}, aptRoot });
    const explicit = await loadRecipe(
      await writeRecipe(
        recipeText().replace(
          '    keyring: keyring.gpg\n',
          '    components: [main]\n    keyring: keyring.gpg\n',
        ),
        'b.yaml',
      ),
      { env: {}, aptRoot },
    );
    expect(explicit.digest).toBe(implicit.digest);
  });

  it('locates fields for errors found later (an unknown package)', async () => {
    const loaded = await loadRecipe(await writeRecipe(recipeText()), { env: {}, aptRoot });
    // packages.install is on line 16: `  install: [ca-certificates, curl]`
    expect(loaded.locate(['packages', 'install', 1])).toEqual({ line: 16, column: 30 });
    expect(loaded.locate(['packages', 'install', 0])).toEqual({ line: 16, column: 13 });
    expect(loaded.locate(['sources', 1, 'uri'])).toEqual({ line: 11, column: 10 });
    expect(loaded.locate(['release'])).toEqual({ line: 4, column: 10 });
    expect(loaded.locate(['packages', 'install', 7])).toBeUndefined();
    expect(loaded.locate(['nope'])).toBeUndefined();
  });

  it('accepts the bracket spelling of a hyphenated variable, with the same digest', async () => {
    const plain = await loadRecipe(await writeRecipe(recipeText(), 'a.yaml'), { env: {}, aptRoot });
    const bracket = await loadRecipe(
      await writeRecipe(
        recipeText().replace('{{mirror.debian-security}}', '{{mirror.[debian-security]}}'),
        'b.yaml',
      ),
      { env: {}, aptRoot },
    );
    expect(bracket.recipe.sources[1]?.uri).toBe(SECURITY);
    expect(bracket.sourceUriTemplates[1]).toBe('{{mirror.debian-security}}');
    expect(bracket.digest).toBe(plain.digest);
  });

  it('reads plain variables from --set and ROOTCAST_VAR_*, and keeps escaped braces', async () => {
    const text = `${recipeText()}files:\n  - path: /etc/motd\n    content: "{{greeting}} from {{name}} \\\\{{not_a_variable}}\\n"\n`;
    const path = await writeRecipe(text);
    const fromEnv = await loadRecipe(path, { env: { ROOTCAST_VAR_GREETING: 'hello' }, aptRoot });
    expect(fromEnv.recipe.files[0]?.content).toBe('hello from test-recipe {{not_a_variable}}\n');
    expect(fromEnv.variables.greeting).toEqual({ value: 'hello', origin: 'env ROOTCAST_VAR_GREETING' });
    const fromSet = await loadRecipe(path, {
      set: { greeting: 'hi' },
      env: { ROOTCAST_VAR_GREETING: 'hello' },
      aptRoot,
    });
    expect(fromSet.recipe.files[0]?.content).toBe('hi from test-recipe {{not_a_variable}}\n');

    const missing = await loadRecipe(path, { env: {}, aptRoot }).catch((e: unknown) => e);
    expect(isRootcastError(missing) && missing.code).toBe('RECIPE_VARIABLE_UNDEFINED');
    expect(isRootcastError(missing) && missing.hint).toMatch(
      /--set greeting=VALUE or set ROOTCAST_VAR_GREETING=VALUE/,
    );
    expect(isRootcastError(missing) && missing.message).toMatch(
      /recipe\.yaml:19:\d+: files\[0\]\.content: variable `greeting`/,
    );
  });

  it('lets recipe fields use outside variables, but not each other', async () => {
    const templated = recipeText().replace('release: bookworm', 'release: "{{my_release}}"');
    const loaded = await loadRecipe(await writeRecipe(templated, 'a.yaml'), {
      set: { my_release: 'trixie' },
      env: {},
      aptRoot,
    });
    expect(loaded.recipe.release).toBe('trixie');
    expect(loaded.recipe.sources[1]?.suites).toEqual(['trixie-security']);

    const circular = recipeText().replace('release: bookworm', 'release: "{{name}}"');
    const error = await loadRecipe(await writeRecipe(circular, 'b.yaml'), { env: {}, aptRoot }).catch(
      (e: unknown) => e,
    );
    expect(isRootcastError(error) && error.code).toBe('RECIPE_VARIABLE_UNDEFINED');
    expect(isRootcastError(error) && error.message).toMatch(/b\.yaml:4:\d+: release: variable `name`/);
  });

  it('checks a templated value once it is rendered', async () => {
    const templated = recipeText().replace('arch: amd64', 'arch: "{{target}}"');
    const path = await writeRecipe(templated);
    const ok = await loadRecipe(path, { set: { target: 'arm64' }, env: {}, aptRoot });
    expect(ok.recipe.arch).toBe('arm64');
    const bad = await loadRecipe(path, { set: { target: 'x86_64' }, env: {}, aptRoot }).catch(
      (e: unknown) => e,
    );
    expect(isRootcastError(bad) && bad.code).toBe('RECIPE_INVALID_VALUE');
    expect(isRootcastError(bad) && bad.message).toMatch(/recipe\.yaml:5:7: arch: unknown value "x86_64"/);
  });

  it('rejects helpers other than the built-in ones, at the helper', async () => {
    const text = `${recipeText()}steps:\n  - run: "echo {{upper name}}"\n`;
    const error = await loadRecipe(await writeRecipe(text), { env: {}, aptRoot }).catch((e: unknown) => e);
    expect(isRootcastError(error) && error.code).toBe('RECIPE_TEMPLATE');
    expect(isRootcastError(error) && error.message).toMatch(
      /recipe\.yaml:18:18: steps\[0\]\.run: unknown handlebars helper `upper`/,
    );
    const fine = `${recipeText()}steps:\n  - run: "{{#if name}}echo {{name}}{{else}}true{{/if}}"\n`;
    const loaded = await loadRecipe(await writeRecipe(fine, 'b.yaml'), { env: {}, aptRoot });
    expect(loaded.recipe.steps[0]?.run).toBe('echo test-recipe');
  });

  it('reports an unknown field before an undefined variable elsewhere', async () => {
    const text = recipeText().replace('variant: minbase', 'variant: minbase\nmirrors: "{{nothing}}"');
    const error = await loadRecipe(await writeRecipe(text), { env: {}, aptRoot }).catch((e: unknown) => e);
    expect(isRootcastError(error) && error.code).toBe('RECIPE_UNKNOWN_FIELD');
    expect(isRootcastError(error) && error.message).toMatch(/recipe\.yaml:7:1: unknown field `mirrors`/);
  });

  it('loads the shipped recipes against a host with both mirrors', async () => {
    for (const [file, release] of [
      ['recipes/debian-12-minbase.yaml', 'bookworm'],
      ['recipes/debian-13-minbase.yaml', 'trixie'],
    ] as const) {
      const loaded = await loadRecipe(file, { env: {}, aptRoot });
      expect(loaded.recipe.release).toBe(release);
      expect(loaded.recipe.variant).toBe('minbase');
      expect(loaded.sourceUriTemplates).toEqual(['{{mirror.debian}}', '{{mirror.debian-security}}']);
      expect(loaded.recipe.sources.map((s) => [s.uri, s.suites])).toEqual([
        [MAIN, [release, `${release}-updates`]],
        [SECURITY, [`${release}-security`]],
      ]);
    }
  });
});

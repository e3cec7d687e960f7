import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CLI, errorLines, jsonError, runCli, runProcess } from '../helpers/cli.js';
import { startFileServer, type TestServer } from '../helpers/http-server.js';
import { createSignedRepo, type SignedRepo, testRecipeText } from '../helpers/signed-repo.js';

/**
 * Lock files and keyrings that are the user's to fix, through the real command line against a
 * signed repository on 127.0.0.1: a lock path that is a directory (`LOCK_INVALID` naming the
 * path, under every flag), a corrupt lock (refused, but replaced by `lock --update`, which is
 * "resolve again and rewrite"; `--frozen` still refuses), and a keyring the user cannot read
 * (`KEYRING_UNREADABLE`, saying why) as opposed to one that is not a keyring (`KEYRING_INVALID`).
 */
describe('lock files and keyrings on the command line', () => {
  let repo: SignedRepo;
  let server: TestServer;
  let dir: string;
  let store: string;
  let recipe: string;
  let lockPath: string;

  const recipeText = (keyring: string) =>
    testRecipeText({ name: 'r', uri: server.url, keyring, install: ['main-pkg0'] });

  beforeAll(async () => {
    repo = await createSignedRepo({ packagesPerComponent: 2 });
    server = await startFileServer(repo.root);
    dir = await mkdtemp(join(tmpdir(), 'rootcast-err-lock-'));
    store = join(dir, 'store');
    recipe = join(dir, 'r.yaml');
    lockPath = join(dir, 'r.lock.json');
    await writeFile(recipe, recipeText(repo.keyringBinary));
  });
  afterAll(async () => {
    await server.close();
    await repo.cleanup();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await rm(lockPath, { recursive: true, force: true });
    server.resetCounts();
  });

  const cli = (...args: string[]) => runCli([...args, '--store', store]);

  describe('a lock path that is a directory', () => {
    it.each([
      ['lock', ['lock']],
      ['lock --update', ['lock', '--update']],
      ['lock --frozen', ['lock', '--frozen']],
      ['fetch', ['fetch']],
      ['build', ['build']],
    ])('%s: LOCK_INVALID naming the path, exit 2', async (_label, [verb, ...flags]) => {
      await mkdir(lockPath);
      const result = await cli(verb!, ...flags, recipe);
      expect(result.code, result.stderr).toBe(2);
      const { message, hint } = errorLines(result);
      expect(message).toBe(`${lockPath}: is a directory, not a lock file`);
      expect(hint).toContain(lockPath);
      const json = await cli(verb!, ...flags, recipe, '--json');
      expect(jsonError(json).code).toBe('LOCK_INVALID');
      expect(server.total()).toBe(0);
    });
  });

  describe('a corrupt lock', () => {
    const corruptions = [
      ['not JSON', '{"lockVersion": 1,'],
      ['not a lock', '{"lockVersion": 99}\n'],
    ] as const;

    it.each(corruptions)('%s: refused without --update, with a hint naming --update', async (_kind, text) => {
      await writeFile(lockPath, text);
      for (const flags of [[], ['--frozen'], ['--update', '--frozen']]) {
        const result = await cli('lock', ...flags, recipe);
        expect(result.code, `${flags.join(' ')}: ${result.stderr}`).toBe(2);
        const { hint } = errorLines(result);
        expect(hint).toContain(`rootcast lock --update ${recipe}`);
        expect(jsonError(await cli('lock', ...flags, recipe, '--json')).code).toBe('LOCK_INVALID');
      }
      const fetch = await cli('fetch', recipe, '--json');
      expect(fetch.code).toBe(2);
      expect(jsonError(fetch).code).toBe('LOCK_INVALID');
      expect(await readFile(lockPath, 'utf8')).toBe(text);
      expect(server.total()).toBe(0);
    });

    it.each(corruptions)('%s: lock --update replaces it, with a warning', async (_kind, text) => {
      await writeFile(lockPath, text);
      const result = await cli('lock', '--update', recipe);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(
        new RegExp(`^warning: ${lockPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not .*; replacing it`, 'm'),
      );
      expect(result.stdout).toMatch(/: replaced, \d+ packages/);
      const lock = JSON.parse(await readFile(lockPath, 'utf8')) as {
        lockVersion: number;
        packages: unknown[];
      };
      expect(lock.lockVersion).toBe(1);
      expect(lock.packages.length).toBeGreaterThan(0);
      // The replaced lock is a good one: a plain lock keeps it.
      const again = await cli('lock', recipe, '--json');
      expect(again.code, again.stderr).toBe(0);
      expect((JSON.parse(again.stdout) as { status: string }).status).toBe('unchanged');
    });
  });

  describe('keyrings', () => {
    it('a keyring that is not OpenPGP keys: KEYRING_INVALID', async () => {
      const bogus = join(dir, 'bogus.gpg');
      await writeFile(bogus, 'not a key\n');
      const path = join(dir, 'bogus.yaml');
      await writeFile(path, recipeText(bogus));
      const result = await cli('lock', path);
      expect(result.code).toBe(2);
      expect(errorLines(result).message).toContain(`keyring ${bogus} is not an OpenPGP keyring`);
      expect(jsonError(await cli('lock', path, '--json')).code).toBe('KEYRING_INVALID');
    });

    it('a keyring the user cannot read: KEYRING_UNREADABLE, permission denied', async () => {
      // Root reads any file: run the command line as nobody, with a keyring only root may read.
      const shared = await mkdtemp(join(tmpdir(), 'rootcast-err-nobody-'));
      try {
        await chmod(shared, 0o755);
        const keyring = join(shared, 'keyring.gpg');
        await copyFile(repo.keyringBinary, keyring);
        await chmod(keyring, 0o000);
        const path = join(shared, 'r.yaml');
        await writeFile(path, recipeText(keyring));
        await chmod(path, 0o644);
        const nobodyStore = join(shared, 'store');
        await mkdir(nobodyStore);
        await chmod(nobodyStore, 0o777);
        const asNobody = (...args: string[]) =>
          runProcess(
            'setpriv',
            [
              '--reuid=65534',
              '--regid=65534',
              '--clear-groups',
              process.execPath,
              CLI,
              ...args,
              '--store',
              nobodyStore,
            ],
            { env: { ...process.env, HOME: shared }, cwd: shared },
          );
        server.resetCounts();
        const result = await asNobody('lock', path);
        expect(result.code, result.stderr).toBe(2);
        const { message, hint } = errorLines(result);
        // Found while the recipe is read, at the keyring's line, before any request to the mirror.
        expect(message).toMatch(
          new RegExp(
            `^${path}:\\d+:\\d+: sources\\[0\\]\\.keyring: cannot be read \\(permission denied\\): ${keyring}$`,
          ),
        );
        expect(server.total()).toBe(0);
        expect(hint).toMatch(/readable/);
        expect(hint).not.toMatch(/OpenPGP keyring \(binary/);
        const json = await asNobody('lock', path, '--json');
        expect(json.code).toBe(2);
        expect(jsonError(json).code).toBe('KEYRING_UNREADABLE');
      } finally {
        await rm(shared, { recursive: true, force: true });
      }
    });
  });
});

import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContext } from '../../src/core/context.js';
import { readKeyring } from '../../src/distro/deb/keyring.js';
import { lockProblemOf, readLock } from '../../src/lock/lock-file.js';

/**
 * Paths that exist but are the wrong kind of thing, in real temp dirs: the store (checked by
 * `createContext`, which every verb goes through), the lock and the keyring.
 */
describe('paths of the wrong kind', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-paths-'));
    await writeFile(join(dir, 'file'), 'x');
    await mkdir(join(dir, 'dir'));
    await symlink(join(dir, 'dir'), join(dir, 'link-to-dir'));
    await symlink(join(dir, 'file'), join(dir, 'link-to-file'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('createContext', () => {
    it.each(['dir', 'link-to-dir', 'missing', 'missing/deeper'])('accepts a store at %s', (name) => {
      expect(createContext({ store: join(dir, name) }).store).toBe(join(dir, name));
    });

    it.each(['file', 'link-to-file', 'file/sub'])('refuses a store at %s: STORE_NOT_A_DIRECTORY', (name) => {
      const store = join(dir, name);
      expect(() => createContext({ store })).toThrow(
        expect.objectContaining({ code: 'STORE_NOT_A_DIRECTORY', exitCode: 2, details: { store } }),
      );
    });

    it('checks ROOTCAST_STORE too, the default when no store is given', () => {
      const before = process.env.ROOTCAST_STORE;
      process.env.ROOTCAST_STORE = join(dir, 'file');
      try {
        expect(() => createContext()).toThrow(expect.objectContaining({ code: 'STORE_NOT_A_DIRECTORY' }));
      } finally {
        if (before === undefined) delete process.env.ROOTCAST_STORE;
        else process.env.ROOTCAST_STORE = before;
      }
    });
  });

  describe('readLock', () => {
    it('a directory: LOCK_INVALID (unreadable), naming the path in the hint', async () => {
      const path = join(dir, 'dir');
      const error = await readLock(path).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'LOCK_INVALID', exitCode: 2 });
      expect((error as Error).message).toBe(`${path}: is a directory, not a lock file`);
      expect((error as { hint: string }).hint).toContain(path);
      expect(lockProblemOf(error)).toBe('unreadable');
    });

    it('bad JSON and a non-lock say which, and the hint names lock --update with the recipe', async () => {
      const path = join(dir, 'bad.lock.json');
      await writeFile(path, '{');
      const json = await readLock(path, { recipe: '/r/bad.yaml' }).catch((e: unknown) => e);
      expect(lockProblemOf(json)).toBe('json');
      expect((json as { hint: string }).hint).toContain('rootcast lock --update /r/bad.yaml');
      await writeFile(path, '{"lockVersion": 1}');
      expect(lockProblemOf(await readLock(path).catch((e: unknown) => e))).toBe('schema');
      expect(lockProblemOf(new Error('other'))).toBeUndefined();
    });
  });

  describe('readKeyring', () => {
    it('a directory: KEYRING_UNREADABLE, saying it is a directory', async () => {
      const path = join(dir, 'dir');
      const error = await readKeyring(path).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'KEYRING_UNREADABLE', exitCode: 2 });
      expect((error as Error).message).toBe(`keyring ${path} cannot be read: it is a directory`);
    });

    it('content that is not keys: KEYRING_INVALID', async () => {
      const error = await readKeyring(join(dir, 'file')).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'KEYRING_INVALID', exitCode: 2 });
      expect((error as Error).message).toMatch(/is not an OpenPGP keyring/);
    });
  });
});

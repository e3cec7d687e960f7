import { readFile } from 'node:fs/promises';
import { type Key, readKeys } from 'openpgp';
import { describeError, RootcastError } from '../../core/errors.js';

/**
 * Reads the OpenPGP keyring a recipe source names: the keys a repository's Release must
 * be signed by. Accepts binary keyrings (`.gpg`, several keys concatenated, as
 * `/usr/share/keyrings/*.gpg` are) and armored ones (`.asc`, one or more
 * `PUBLIC KEY BLOCK`s). The file's content decides the format, not its name.
 *
 * A missing file is `KEYRING_MISSING` and an unreadable one `KEYRING_INVALID`, both input
 * errors (exit code 2): the recipe names the keyring. An empty keyring is invalid too,
 * because it could never verify anything.
 */
export async function readKeyring(path: string): Promise<Key[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new RootcastError({
        code: 'KEYRING_MISSING',
        message: `keyring ${path} does not exist`,
        hint: 'Install the distribution keyring package (e.g. debian-archive-keyring) or fix the keyring path in the recipe.',
        exitCode: 2,
        cause: error,
      });
    }
    throw invalid(path, describeError(error), error);
  }
  let keys: Key[];
  try {
    keys = isArmored(bytes)
      ? await readArmored(bytes.toString('utf8'))
      : await readKeys({ binaryKeys: bytes });
  } catch (error) {
    throw invalid(path, describeError(error), error);
  }
  if (keys.length === 0) throw invalid(path, 'it holds no keys');
  return keys;
}

function isArmored(bytes: Buffer): boolean {
  return bytes.subarray(0, 4096).toString('latin1').includes('-----BEGIN PGP ');
}

/** openpgp reads one armor block at a time; `.asc` files may hold several. */
async function readArmored(text: string): Promise<Key[]> {
  const blocks = text.match(
    /-----BEGIN PGP (?:PUBLIC|PRIVATE) KEY BLOCK-----[\s\S]*?-----END PGP (?:PUBLIC|PRIVATE) KEY BLOCK-----/g,
  );
  if (!blocks) throw new Error('no PGP key block found');
  const keys: Key[] = [];
  for (const block of blocks) keys.push(...(await readKeys({ armoredKeys: block })));
  return keys;
}

function invalid(path: string, reason: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'KEYRING_INVALID',
    message: `keyring ${path} cannot be read: ${reason}`,
    hint: 'Point the recipe at an OpenPGP keyring (binary .gpg or armored .asc), e.g. from the distribution keyring package.',
    exitCode: 2,
    cause,
  });
}

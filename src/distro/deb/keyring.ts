import { readFile } from 'node:fs/promises';
import { type Key, readKeys } from 'openpgp';
import { describeError, RootcastError } from '../../core/errors.js';

/**
 * Reads the OpenPGP keyring a recipe source names: the keys a repository's Release must
 * be signed by. Accepts binary keyrings (`.gpg`, several keys concatenated, as
 * `/usr/share/keyrings/*.gpg` are) and armored ones (`.asc`, one or more
 * `PUBLIC KEY BLOCK`s). The file's content decides the format, not its name.
 *
 * A missing file is `KEYRING_MISSING`, one that cannot be read (permissions, a directory, an
 * I/O error) `KEYRING_UNREADABLE` with the system's reason, and one whose content is not
 * OpenPGP keys `KEYRING_INVALID`: input errors (exit code 2), the recipe names the keyring,
 * except an I/O error (exit code 1). An empty keyring is invalid too, because it could never
 * verify anything.
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
    throw unreadable(path, error);
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

/** The reasons a keyring cannot be read, in words (the errno name stays in the cause). */
const READ_FAILURES: Record<string, { reason: string; hint: string }> = {
  EACCES: {
    reason: 'permission denied',
    hint: 'Make the keyring readable by the user running rootcast (check its mode, owner and directories), or run as a user who can read it.',
  },
  EPERM: {
    reason: 'operation not permitted',
    hint: 'Make the keyring readable by the user running rootcast, or run as a user who can read it.',
  },
  EISDIR: {
    reason: 'it is a directory',
    hint: 'Point the recipe at a keyring file (binary .gpg or armored .asc), not a directory.',
  },
};

function unreadable(path: string, error: unknown): RootcastError {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const known = READ_FAILURES[code];
  return new RootcastError({
    code: 'KEYRING_UNREADABLE',
    message: `keyring ${path} cannot be read: ${known?.reason ?? describeError(error)}`,
    hint:
      known?.hint ??
      'Check that the keyring file is readable (permissions, disk), or point the recipe at another keyring.',
    // Permissions and a directory are the user's to fix; an I/O error is the machine's.
    exitCode: known ? 2 : 1,
    cause: error,
    details: { path, ...(code ? { errno: code } : {}) },
  });
}

function invalid(path: string, reason: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'KEYRING_INVALID',
    message: `keyring ${path} is not an OpenPGP keyring: ${reason}`,
    hint: 'Point the recipe at an OpenPGP keyring (binary .gpg or armored .asc), e.g. from the distribution keyring package.',
    exitCode: 2,
    cause,
  });
}

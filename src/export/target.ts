import { lstat, readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { inputError, type RootcastError } from '../core/errors.js';
import { outputExists } from './output.js';

/**
 * What `-o` may name, checked before an export does any work (reads the template, writes a
 * byte): every refusal here is exit 2 and leaves the filesystem as it was.
 *
 * - `file` formats (tar, oci-archive, incus): a new file, or a regular file to replace whole.
 *   An existing directory (also `-o ''`, `.`, or a name ending in `/`) is
 *   `EXPORT_OUTPUT_IS_DIRECTORY`; a FIFO, device or socket is `EXPORT_OUTPUT_INVALID`.
 * - `directory` formats (oci, lxc, incus --split): a new or empty directory
 *   (`EXPORT_OUTPUT_EXISTS` otherwise).
 * - `file-or-directory` (openvz): an existing directory, or a name ending in `/` (created), is
 *   the directory to write the conventionally named file into; anything else is the file.
 *
 * For all of them `-o` must not be empty or `-` (exports never go to standard output), and the
 * nearest existing ancestor must be a directory (`EXPORT_OUTPUT_INVALID`); missing parent
 * directories are created by the export (and removed again if it fails).
 */
export type OutputKind = 'file' | 'directory' | 'file-or-directory';

export interface OutputTarget {
  /** Absolute path of -o. */
  path: string;
  /** The export writes a directory at `path`, or (openvz) a file inside the directory `path`. */
  directory: boolean;
}

function invalid(message: string, hint: string): RootcastError {
  return inputError('EXPORT_OUTPUT_INVALID', message, hint);
}

/** stat that says `undefined` for a path that does not exist (or lies under a non-directory). */
async function statOrAbsent(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

/** The nearest existing ancestor of `path` must be a directory (symlinks to one are fine). */
async function checkAncestors(path: string): Promise<void> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const st = await statOrAbsent(dir);
    if (st?.isDirectory()) return;
    if (st !== undefined) {
      throw invalid(
        `cannot write ${path}: ${dir} is not a directory`,
        `Choose an -o whose parent is a directory (missing parents are created), or move ${dir} away.`,
      );
    }
    if (dirname(dir) === dir) return;
  }
}

/**
 * Checks `output` (as given with -o) for a format writing `kind`; returns the absolute
 * target. `example` is a file name to suggest inside a directory (`rootfs.tar`).
 */
export async function checkOutput(
  output: string,
  kind: OutputKind,
  format: string,
  example: string,
): Promise<OutputTarget> {
  if (output === '') {
    throw invalid(
      '-o is empty',
      kind === 'file'
        ? `Name the file to write, e.g. -o ${example}.`
        : `Name the ${kind === 'directory' ? 'directory' : 'file or directory'} to write (-o . for the working directory).`,
    );
  }
  if (output === '-') {
    throw invalid(
      `-o - would be a file named "-": exports are not written to standard output`,
      `Name the file to write (e.g. -o ${example}) and read it from there, or say -o ./- for a file named "-".`,
    );
  }
  const path = resolve(output);
  // `dir/`, `.`, `..`, `dir/.`: the user names a directory.
  const namesDirectory = output.endsWith('/') || /(^|\/)\.\.?$/.test(output);
  if (kind === 'file' && namesDirectory) {
    const slash = output.endsWith('/');
    throw inputError(
      'EXPORT_OUTPUT_IS_DIRECTORY',
      `-o ${output} ${slash ? 'ends in /, so it names' : 'names'} a directory, but --format ${format} writes a file`,
      `${slash ? `Drop the / to write the file ${path}, or name` : 'Name'} a file inside it, e.g. -o ${join(path, example)}.`,
    );
  }
  await checkAncestors(path);
  const st = await statOrAbsent(path);
  if (st === undefined) return { path, directory: kind === 'directory' || namesDirectory };
  if (st.isDirectory()) {
    if (kind === 'file') {
      throw inputError(
        'EXPORT_OUTPUT_IS_DIRECTORY',
        `${path} is a directory, but --format ${format} writes a file`,
        `Name the file to write inside it, e.g. -o ${join(path, example)}.`,
      );
    }
    // A directory output replaces an empty directory, never a symlink to one; checked again
    // just before the finished directory is renamed onto it (output.ts).
    if (kind === 'directory' && (!(await lstat(path)).isDirectory() || (await readdir(path)).length > 0))
      throw outputExists(path);
    return { path, directory: true };
  }
  if (kind === 'directory') throw outputExists(path);
  if (namesDirectory) {
    throw invalid(
      `-o ${output} ends in /, but ${path} is not a directory`,
      `Drop the / to write the file ${path}, or name a directory.`,
    );
  }
  if (!st.isFile()) {
    throw invalid(
      `${path} exists and is not a regular file (a device, FIFO or socket is never replaced)`,
      `Name a new file or a regular file to replace, e.g. -o ${example}.`,
    );
  }
  return { path, directory: false };
}

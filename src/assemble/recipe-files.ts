import { constants } from 'node:fs';
import { chmod, chown, lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import Handlebars from 'handlebars';
import { describeError, inputError } from '../core/errors.js';
import type { RecipeFile } from '../recipe/types.js';
import { resolveInRoot } from './resolve-in-root.js';

/**
 * Recipe `files:` written into an assembled tree.
 *
 * Lifecycle: runs after the packages are configured and before recipe steps, once per
 * build, on a tree nothing else writes to. Each file is rendered (a handlebars template
 * from `templates/`, or inline `content` taken verbatim), written atomically inside the
 * tree, then given its owner, group and mode. Owner and group names are looked up in the
 * TREE's `/etc/passwd` and `/etc/group`, never the host's: the host's ids mean nothing in
 * the image. Paths are resolved inside the root, so a recipe (or a symlink a package left
 * in the tree) can never make rootcast write outside it.
 */
export interface RecipeFilesOptions {
  /** Directory holding the `*.hbs` templates (the project's `templates/`). */
  templatesDir: string;
  /** Values the templates see (`{{name}}`, `{{release}}`, …), as the recipe renders them. */
  variables: Record<string, unknown>;
}

/** `{ name → id }` from a passwd- or group-format file of the tree (missing file: empty). */
export async function readIdDatabase(file: string): Promise<Map<string, number>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw error;
  }
  const ids = new Map<string, number>();
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    const id = Number(fields[2]);
    if (fields.length >= 3 && fields[0] && Number.isInteger(id)) ids.set(fields[0], id);
  }
  return ids;
}

/** A numeric id, or a name looked up in `ids`; throws FILE_OWNER_UNKNOWN when it is neither. */
export function lookupId(
  value: string | number | undefined,
  ids: Map<string, number>,
  what: string,
  path: string,
): number {
  if (value === undefined) return 0;
  if (typeof value === 'number') return value;
  if (/^\d+$/.test(value)) return Number(value);
  const id = ids.get(value);
  if (id === undefined) {
    throw inputError(
      'FILE_OWNER_UNKNOWN',
      `${path}: ${what} '${value}' does not exist in the tree's /etc/${what === 'owner' ? 'passwd' : 'group'}`,
      `Use a numeric id, or a ${what} that a package or an earlier step creates.`,
    );
  }
  return id;
}

/** Parses a recipe mode (`"0644"`, `"755"`, `"u=rw"` is not accepted); default 0644. */
export function parseMode(mode: string | undefined, path: string): number {
  if (mode === undefined) return 0o644;
  if (!/^0?[0-7]{3,4}$/.test(mode)) {
    throw inputError(
      'FILE_MODE_INVALID',
      `${path}: mode '${mode}' is not an octal mode`,
      'Write modes as octal strings, e.g. "0644" or "0755".',
    );
  }
  return Number.parseInt(mode, 8) & 0o7777;
}

async function renderContent(file: RecipeFile, options: RecipeFilesOptions): Promise<Buffer> {
  if (file.content !== undefined) return Buffer.from(file.content);
  if (file.template === undefined) {
    throw inputError(
      'FILE_SOURCE_MISSING',
      `${file.path}: neither template nor content is set`,
      'Give the file a template (templates/*.hbs) or inline content.',
    );
  }
  if (file.template.includes('/') || file.template.startsWith('.')) {
    throw inputError(
      'FILE_TEMPLATE_INVALID',
      `${file.path}: template '${file.template}' is not a file name in templates/`,
      'Name a template file directly, e.g. hostname.hbs.',
    );
  }
  let source: string;
  try {
    source = await readFile(join(options.templatesDir, file.template), 'utf8');
  } catch (error) {
    throw inputError(
      'FILE_TEMPLATE_MISSING',
      `${file.path}: cannot read template ${file.template}: ${describeError(error)}`,
      `Add templates/${file.template} or fix the recipe's template name.`,
      error,
    );
  }
  try {
    return Buffer.from(Handlebars.compile(source, { strict: true, noEscape: true })(options.variables));
  } catch (error) {
    throw inputError(
      'FILE_TEMPLATE_FAILED',
      `${file.path}: template ${file.template} failed: ${describeError(error)}`,
      'Check the variables the template uses against the recipe.',
      error,
    );
  }
}

/**
 * Writes every recipe file into `root`, in recipe order (a later entry for the same path
 * wins). Parent directories are created 0755 root:root, as dpkg would. The destination's
 * final component is never followed: a symlink there is replaced, not written through.
 */
export async function applyRecipeFiles(
  root: string,
  files: readonly RecipeFile[],
  options: RecipeFilesOptions,
): Promise<void> {
  const users = await readIdDatabase(resolveInRoot(root, '/etc/passwd', undefined, { followFinal: true }));
  const groups = await readIdDatabase(resolveInRoot(root, '/etc/group', undefined, { followFinal: true }));
  for (const file of files) {
    if (!file.path.startsWith('/') || posix.normalize(file.path) === '/') {
      throw inputError(
        'FILE_PATH_INVALID',
        `file path '${file.path}' must be absolute and name a file`,
        'Write recipe file paths as absolute paths inside the image, e.g. /etc/motd.',
      );
    }
    const uid = lookupId(file.owner, users, 'owner', file.path);
    const gid = lookupId(file.group, groups, 'group', file.path);
    const mode = parseMode(file.mode, file.path);
    const data = await renderContent(file, options);
    const target = resolveInRoot(root, posix.normalize(file.path));
    const existing = await lstat(target).catch(() => undefined);
    if (existing?.isDirectory()) {
      throw inputError(
        'FILE_PATH_INVALID',
        `${file.path} is a directory in the tree`,
        'Recipe files may only replace files and symlinks.',
      );
    }
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    const tmp = `${target}.rootcast-tmp`;
    await rm(tmp, { force: true });
    await writeFile(tmp, data, {
      mode: 0o600,
      flag: constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW,
    });
    await chown(tmp, uid, gid);
    // chmod after chown: chown clears setuid/setgid bits.
    await chmod(tmp, mode);
    await rename(tmp, target);
  }
}

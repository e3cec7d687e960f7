import { dirname, resolve as resolvePath } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { sha256Digest } from '../core/digest.js';
import { inputError, isRootcastError } from '../core/errors.js';
import { type LockFile, type LockParent, lockFileSchema } from '../lock/lock-file.js';
import type { LoadedRecipe } from '../recipe/types.js';
import type { InstalledPackage } from '../resolve/types.js';
import { ANNOTATION } from '../store/oci.js';
import { readTemplate, readTemplateLock } from '../store/template-query.js';

/**
 * A child recipe's parent (`from:`): either a recipe (a path ending in `.yaml`/`.yml`,
 * relative to the child's directory) or a template already in the store (`name:version`,
 * or `name` for `name:latest`).
 *
 * The parent's installed set is the union of the locks along its chain (each lock lists what
 * its layer adds), which is exactly the package set dpkg has installed in the parent's tree:
 * the child is resolved on top of it and its lock pins the set's digest, so a parent whose
 * packages change makes the child's lock stale. Read without building anything: a recipe
 * parent needs only its lock (made on demand, as `lock` does), a template parent only the
 * lock blobs in the store.
 */
export interface ParentBase {
  lockParent: LockParent;
  installed: InstalledPackage[];
  /** The parent recipe's absolute path, when `from:` names a recipe. */
  recipePath?: string;
  /** The parent template's reference in the store, when `from:` names a template. */
  templateRef?: string;
}

/** `from:` names a recipe file rather than a template. */
export function isRecipeReference(from: string): boolean {
  return /\.ya?ml$/i.test(from);
}

/** The parent recipe's absolute path for a child recipe at `childPath`. */
export function parentRecipePath(childPath: string, from: string): string {
  return resolvePath(dirname(childPath), from);
}

/** `name` alone means `name:latest`. */
export function parentTemplateRef(from: string): string {
  return from.includes(':') ? from : `${from}:latest`;
}

/** Pure: the digest a child's lock pins its parent's package set with. */
export function installedDigest(installed: readonly InstalledPackage[]): string {
  const sorted = [...installed]
    .map((p) => ({ name: p.name, version: p.version, arch: p.arch }))
    .sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : a.arch < b.arch ? -1 : a.arch > b.arch ? 1 : 0,
    );
  return sha256Digest(canonicalJson(sorted));
}

export interface ParentLookup {
  store: string;
  /** Locks a recipe (its own parent first) and returns it; `lockedRecipe` in api/lock.ts. */
  lockRecipe: (path: string) => Promise<{ loaded: LoadedRecipe; lock: LockFile }>;
  /** Recipe paths being resolved, for cycle detection. */
  seen?: ReadonlySet<string>;
}

/** The parent of `loaded`, or undefined when the recipe has no `from:`. */
export async function parentBase(
  loaded: LoadedRecipe,
  lookup: ParentLookup,
): Promise<ParentBase | undefined> {
  const from = loaded.recipe.from;
  if (from === undefined) return undefined;
  const seen = new Set(lookup.seen ?? []);
  seen.add(loaded.path);
  if (isRecipeReference(from)) {
    const path = parentRecipePath(loaded.path, from);
    if (seen.has(path)) {
      throw inputError(
        'FROM_CYCLE',
        `${loaded.path}: \`from: ${from}\` leads back to ${path}`,
        'A recipe cannot be its own ancestor: point `from:` at a base recipe.',
      );
    }
    const { loaded: parentLoaded, lock } = await lookup.lockRecipe(path);
    checkSameBase(loaded, from, parentLoaded.recipe);
    const grand = await parentBase(parentLoaded, { ...lookup, seen });
    const installed = [...(grand?.installed ?? []), ...lock.packages.map(installedOf)];
    return { lockParent: { from, packages: installedDigest(installed) }, installed, recipePath: path };
  }
  const ref = parentTemplateRef(from);
  const { installed, lock } = await templateInstalledSet(lookup.store, ref, loaded.path, from);
  checkSameBase(loaded, from, lock);
  return { lockParent: { from, packages: installedDigest(installed) }, installed, templateRef: ref };
}

function installedOf(p: { name: string; version: string; arch: string }): InstalledPackage {
  return { name: p.name, version: p.version, arch: p.arch };
}

/** The fields a child must share with its parent, in the order they are checked. */
const BASE_FIELDS = ['distro', 'release', 'arch', 'variant'] as const;

/**
 * A child adds one layer to its parent's tree, so it must be the same distribution, release
 * and architecture (a trixie layer on a bookworm tree locks and builds, and is broken), and
 * name the parent's variant (the child's is not resolved; a different one would only mislead
 * `inspect` and the export names). Throws `FROM_MISMATCH` at the child's line for the field.
 */
function checkSameBase(
  child: LoadedRecipe,
  from: string,
  parent: Readonly<Record<(typeof BASE_FIELDS)[number], string>>,
): void {
  for (const field of BASE_FIELDS) {
    const mine = child.recipe[field];
    if (mine === parent[field]) continue;
    const at = child.locate([field]);
    const where = at ? `${child.path}:${at.line}:${at.column}` : child.path;
    throw inputError(
      'FROM_MISMATCH',
      `${where}: ${field} is ${mine}, but the parent ${from} is ${parent[field]}`,
      `A child adds a layer to its parent's tree: write the parent's ${field} (${parent[field]}), or build a new base without \`from:\`.`,
    );
  }
}

/** The union of the lock blobs along a template's parent chain, and the template's own lock. */
async function templateInstalledSet(
  store: string,
  ref: string,
  recipePath: string,
  from: string,
): Promise<{ installed: InstalledPackage[]; lock: LockFile }> {
  const out: InstalledPackage[] = [];
  let own: LockFile | undefined;
  let current: string | undefined = ref;
  const visited = new Set<string>();
  while (current !== undefined) {
    let details: Awaited<ReturnType<typeof readTemplate>>;
    try {
      details = await readTemplate(store, current);
    } catch (error) {
      if (isRootcastError(error) && error.code === 'TEMPLATE_NOT_FOUND' && current === ref) {
        throw inputError(
          'FROM_NOT_FOUND',
          `${recipePath}: \`from: ${from}\`: no template ${ref} in the store`,
          'Build the parent first, or name its recipe instead (from: ./parent.yaml).',
        );
      }
      throw error;
    }
    if (visited.has(details.manifestDigest)) break;
    visited.add(details.manifestDigest);
    const lock = lockFileSchema.parse(JSON.parse(await readTemplateLock(store, details.manifestDigest)));
    own ??= lock;
    out.unshift(...lock.packages.map(installedOf));
    current = details.annotations[ANNOTATION.parent];
  }
  // The loop runs at least once (a missing `ref` throws), so `own` is the template's lock.
  return { installed: out, lock: own as LockFile };
}

import { createContext } from '../core/context.js';
import { inputError, isRootcastError } from '../core/errors.js';
import { loadRecipe } from '../recipe/load.js';
import { openBlobStore } from '../store/blob-store.js';
import { ANNOTATION } from '../store/oci.js';
import { readTemplate, resolveTemplate } from '../store/template-query.js';
import type { BuildOptions, BuildResult } from './build.js';
import { type BuildInputs, describeChange, diffInputs } from './build-inputs.js';
import { recipeLoadOptions } from './lock.js';
import { isRecipeReference, parentRecipePath, parentTemplateRef } from './parent.js';

/**
 * The two questions a build asks of templates already in the store: which parent a child
 * builds on (a recipe parent is built first, through the caller's `build`), and, with
 * `--explain`, which inputs changed since the tag's current build.
 */
export interface ParentTemplate {
  digest: string;
  /** The parent's own build, when `from:` names a recipe. */
  result?: BuildResult;
}

/**
 * The template a child builds on: a recipe parent is built first (a cache hit when it is
 * current), a template parent must be in the store.
 */
export async function buildParent(
  recipePath: string,
  options: BuildOptions,
  buildRecipe: (path: string, options: BuildOptions) => Promise<BuildResult>,
): Promise<ParentTemplate | undefined> {
  const loaded = await loadRecipe(recipePath, recipeLoadOptions(options));
  const from = loaded.recipe.from;
  if (from === undefined) return undefined;
  if (isRecipeReference(from)) {
    const path = parentRecipePath(loaded.path, from);
    const ancestry = [...(options.ancestry ?? []), loaded.path];
    if (ancestry.includes(path)) {
      throw inputError(
        'FROM_CYCLE',
        `${loaded.path}: \`from: ${from}\` leads back to ${path}`,
        'A recipe cannot be its own ancestor: point `from:` at a base recipe.',
      );
    }
    // --rebuild and --explain apply to the recipe asked for, not to its ancestors.
    const { rebuild: _rebuild, explain: _explain, ...rest } = options;
    const result = await buildRecipe(path, { ...rest, ancestry });
    return { digest: result.digest, result };
  }
  const ref = parentTemplateRef(from);
  try {
    return { digest: (await resolveTemplate(createContext(options).store, ref)).manifestDigest };
  } catch (error) {
    if (isRootcastError(error) && error.code === 'TEMPLATE_NOT_FOUND') {
      throw inputError(
        'FROM_NOT_FOUND',
        `${loaded.path}: \`from: ${from}\`: no template ${ref} in the store`,
        'Build the parent first, or name its recipe instead (from: ./parent.yaml).',
      );
    }
    throw error;
  }
}

/** Why this build is or is not answered by the cache: the inputs that changed since the tag's build. */
export async function explainBuild(
  store: string,
  ref: string,
  inputs: BuildInputs,
  cacheKey: string,
): Promise<string[]> {
  let previous: Awaited<ReturnType<typeof readTemplate>>;
  try {
    previous = await readTemplate(store, ref);
  } catch (error) {
    if (isRootcastError(error) && error.code === 'TEMPLATE_NOT_FOUND')
      return [`${ref}: never built in this store`];
    throw error;
  }
  if (previous.cacheKey === cacheKey) return [`${ref}: unchanged (cache key ${cacheKey})`];
  const digest = previous.annotations[ANNOTATION.buildInputs];
  if (!digest) return [`${ref}: its current build records no inputs (built by an older rootcast)`];
  const before: unknown = JSON.parse((await openBlobStore(store).read(digest)).toString('utf8'));
  const changes = diffInputs(before, inputs);
  return changes.length === 0
    ? [`${ref}: the cache key changed but no recorded input did`]
    : changes.map((c) => `${ref}: ${describeChange(c)}`);
}

import pLimit from 'p-limit';
import { createContext } from '../core/context.js';
import { inputError } from '../core/errors.js';
import { fetchPackages, type PackageToFetch } from '../fetch/package-cache.js';
import { loadRecipe } from '../recipe/load.js';
import { type BuildOptions, type BuildResult, build } from './build.js';
import { lockedRecipe, recipeLoadOptions, repositoryBaseUris } from './lock.js';
import { isRecipeReference, parentRecipePath, parentTemplateRef } from './parent.js';

/**
 * `rootcast build A B C …`: several recipes as one graph. A recipe whose `from:` names
 * another recipe of the call (by path, or by the `name:version` it builds) comes after it;
 * recipes of the same level build in parallel. Before each level, the level's locks are made
 * and the union of their packages is fetched once, so a package two recipes share is
 * downloaded once. Results come back in the order the recipes were given.
 */
export interface GraphNode {
  path: string;
  ref: string;
  /** Indexes of the recipes (in the call) this one builds on. */
  after: number[];
}

/** Pure: the levels of the graph (each a list of node indexes), parents before children. */
export function graphLevels(nodes: readonly GraphNode[]): number[][] {
  const level = new Map<number, number>();
  const visiting = new Set<number>();
  const depth = (i: number): number => {
    const known = level.get(i);
    if (known !== undefined) return known;
    if (visiting.has(i)) {
      throw inputError(
        'FROM_CYCLE',
        `${nodes[i]!.path}: its \`from:\` chain leads back to itself`,
        'A recipe cannot be its own ancestor: point `from:` at a base recipe.',
      );
    }
    visiting.add(i);
    const d = Math.max(-1, ...nodes[i]!.after.map(depth)) + 1;
    visiting.delete(i);
    level.set(i, d);
    return d;
  };
  const levels: number[][] = [];
  nodes.forEach((_, i) => {
    const d = depth(i);
    while (levels.length <= d) levels.push([]);
    levels[d]!.push(i);
  });
  return levels;
}

export async function buildGraph(
  recipePaths: readonly string[],
  options: BuildOptions = {},
): Promise<BuildResult[]> {
  const ctx = createContext(options);
  const loaded = await Promise.all(recipePaths.map((p) => loadRecipe(p, recipeLoadOptions(options))));
  const byPath = new Map(loaded.map((l, i) => [l.path, i]));
  const byRef = new Map(loaded.map((l, i) => [`${l.recipe.name}:${l.recipe.version}`, i]));
  const nodes: GraphNode[] = loaded.map((l) => {
    const from = l.recipe.from;
    let parent: number | undefined;
    if (from !== undefined) {
      parent = isRecipeReference(from)
        ? byPath.get(parentRecipePath(l.path, from))
        : (byRef.get(parentTemplateRef(from)) ??
          loaded.findIndex((o) => !from.includes(':') && o.recipe.name === from));
      if (parent === -1) parent = undefined;
    }
    return {
      path: l.path,
      ref: `${l.recipe.name}:${l.recipe.version}`,
      after: parent === undefined ? [] : [parent],
    };
  });
  const levels = graphLevels(nodes);
  const results: BuildResult[] = new Array(nodes.length);
  // Two builds at a time: each already spreads unpacking over every CPU.
  const limit = pLimit(2);
  for (const level of levels) {
    const items: PackageToFetch[] = [];
    for (const i of level) {
      const { loaded: recipe, lock } = await lockedRecipe(nodes[i]!.path, options);
      const bases = repositoryBaseUris(lock, recipe);
      for (const p of lock.packages) items.push({ ...p, baseUri: bases.get(p.repository)! });
    }
    await fetchPackages(items, ctx);
    await Promise.all(
      level.map((i) =>
        limit(async () => {
          results[i] = await build(nodes[i]!.path, options);
        }),
      ),
    );
  }
  return results;
}

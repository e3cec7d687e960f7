/**
 * A recipe as the rest of rootcast sees it: validated, with its handlebars variables
 * rendered. The YAML text is parsed and checked by `parse.ts` against `schema.ts`; the
 * zod schema there is the single source of truth for the shape, and this file names the
 * types the pipeline passes around.
 */
export const VARIANTS = ['essential', 'apt', 'minbase', 'required', 'important', 'standard'] as const;
export type Variant = (typeof VARIANTS)[number];

export interface RecipeSource {
  /** Rendered repository URI (`http://…/debian`). */
  uri: string;
  suites: string[];
  components: string[];
  /** Absolute path of the keyring file (binary or armored OpenPGP keys). */
  keyring: string;
}

export interface RecipeFile {
  path: string;
  template?: string;
  content?: string;
  owner?: string | number;
  group?: string | number;
  mode?: string;
}

export interface RecipeStep {
  run: string;
  network?: boolean;
}

export interface Recipe {
  name: string;
  version: string;
  distro: 'debian';
  release: string;
  arch: string;
  variant: Variant;
  from?: string;
  sources: RecipeSource[];
  packages: { install: string[]; exclude: string[] };
  files: RecipeFile[];
  steps: RecipeStep[];
  /**
   * Default values of the recipe's own variables (`student.name: alice`), used when neither
   * `--set` nor the environment gives one.
   */
  values: Record<string, string>;
  /** OCI image labels (`config.Labels`) of the template. */
  labels: Record<string, string>;
}

/** Where a value sits in the recipe file, for errors that name file:line. */
export interface SourcePosition {
  line: number;
  column: number;
}

/** A path into the recipe document, e.g. `['packages', 'install', 2]`. */
export type RecipePath = readonly (string | number)[];

export interface LoadedRecipe {
  /** Absolute path of the recipe file. */
  path: string;
  recipe: Recipe;
  /**
   * Source URIs as written before rendering (`{{mirror.debian}}`), index-aligned with
   * `recipe.sources`, so that locks do not depend on the mirror.
   */
  sourceUriTemplates: string[];
  /**
   * `sha256:` of the canonical JSON of the recipe rendered with every variable except
   * the mirrors: what the lock is pinned to, and what `--frozen` compares.
   */
  digest: string;
  /** The variables used to render, and where each came from (`--set`, env, apt, default). */
  variables: Record<string, { value: string; origin: string }>;
  /** Line and column of a value in the file, when it can be found. */
  locate(path: RecipePath): SourcePosition | undefined;
}

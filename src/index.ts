/**
 * rootcast as a library: the typed API that the CLI and other front ends call.
 */
export { type BuildOptions, type BuildResult, build } from './api/build.js';
export { buildGraph } from './api/build-graph.js';
export {
  EXPORT_FORMATS,
  type ExportFormat,
  type ExportOptions,
  type ExportResult,
  exportTemplate,
} from './api/export.js';
export { type FetchResult, fetch } from './api/fetch.js';
export { type LockOptions, type LockResult, lock, type RecipeOptions } from './api/lock.js';
export { type PullSummary, type PushSummary, pull, push, type RegistryOptions } from './api/registry.js';
export { type Context, type ContextOptions, createContext } from './core/context.js';
export { isRootcastError, RootcastError } from './core/errors.js';
export type { LogLevel, Reporter, TaskHandle } from './core/reporter.js';
export type { LockFile, LockPackage, LockRepository } from './lock/lock-file.js';
export { loadRecipe } from './recipe/load.js';
export type { LoadedRecipe, Recipe } from './recipe/types.js';
export { VERSION } from './version.js';

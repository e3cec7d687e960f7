/** The resolver's public surface: `resolve()` and its request/result types. */
export { resolve } from './resolve.js';
export type { Resolution, ResolveRequest, Variant } from './types.js';
export { VARIANTS } from './types.js';

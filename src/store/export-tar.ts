/**
 * Kept for callers of the store API (docs/store.md): the flattened tree as a tar moved to
 * src/export/ with the other export formats, and now flattens templates of any number of
 * layers. Prefer importing from src/export/tar.ts.
 */
export { exportTemplateTar } from '../export/tar.js';

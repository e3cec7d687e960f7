import { type ContextOptions, createContext } from '../core/context.js';
import { lockFileSchema } from '../lock/lock-file.js';
import { ANNOTATION } from '../store/oci.js';
import { readTemplate, readTemplateLock, readTemplateSbom } from '../store/template-query.js';
import { templatePackageChain } from '../store/template-view.js';

/** What `rootcast inspect` shows: everything a person or a script asks of a template. */
export interface TemplateInfo {
  template: string;
  digest: string;
  created: string;
  architecture: string;
  os: string;
  layers: { digest: string; diffId: string; size: number; mediaType: string }[];
  /** Compressed bytes of all layers. */
  size: number;
  recipe: { name: string; version: string; digest: string };
  /** Every installed package: the locks along the parent chain, base first. */
  packages: { name: string; version: string; arch: string }[];
  /** The packages this template's own layer added (all of them for a base). */
  added: number;
  /** The parent template's manifest digest, for a layered template. */
  parent?: string;
  labels?: Record<string, string>;
  cacheKey?: string;
}

export async function inspectTemplate(ref: string, options: ContextOptions = {}): Promise<TemplateInfo> {
  const { store } = createContext(options);
  const details = await readTemplate(store, ref);
  const lock = lockFileSchema.parse(JSON.parse(await readTemplateLock(store, ref)));
  const chain = (await templatePackageChain(store, details.manifestDigest)) ?? lock.packages;
  const parent = details.annotations[ANNOTATION.parent];
  const labels = details.config.config?.Labels;
  const layers = details.layers.map((l) => ({
    digest: l.digest,
    diffId: l.diffId,
    size: l.size,
    mediaType: l.mediaType,
  }));
  return {
    template: details.entries[0]?.ref ?? ref,
    digest: details.manifestDigest,
    created: details.config.created ?? details.annotations[ANNOTATION.created] ?? '',
    architecture: details.config.architecture,
    os: details.config.os,
    layers,
    size: layers.reduce((sum, l) => sum + l.size, 0),
    recipe: {
      name: lock.recipe.name,
      version: lock.recipe.version,
      digest: details.annotations[ANNOTATION.recipeDigest] ?? lock.recipe.digest,
    },
    packages: chain.map((p) => ({ name: p.name, version: p.version, arch: p.arch })),
    added: lock.packages.length,
    ...(parent ? { parent } : {}),
    ...(labels ? { labels } : {}),
    ...(details.cacheKey ? { cacheKey: details.cacheKey } : {}),
  };
}

/** The template's SPDX 2.3 document, as stored (verified against its digest). */
export async function templateSbom(ref: string, options: ContextOptions = {}): Promise<unknown> {
  const { store } = createContext(options);
  return JSON.parse(await readTemplateSbom(store, ref)) as unknown;
}

// `rootcast export` moved to ./export.js with its formats; re-exported for existing callers.
export { EXPORT_FORMATS, type ExportOptions, type ExportResult, exportTemplate } from './export.js';

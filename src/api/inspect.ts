import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type ContextOptions, createContext } from '../core/context.js';
import { inputError } from '../core/errors.js';
import { lockFileSchema } from '../lock/lock-file.js';
import { exportTemplateTar } from '../store/export-tar.js';
import { ANNOTATION } from '../store/oci.js';
import { readTemplate, readTemplateLock, readTemplateSbom } from '../store/template-query.js';

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
  packages: { name: string; version: string; arch: string }[];
  cacheKey?: string;
}

export async function inspectTemplate(ref: string, options: ContextOptions = {}): Promise<TemplateInfo> {
  const { store } = createContext(options);
  const details = await readTemplate(store, ref);
  const lock = lockFileSchema.parse(JSON.parse(await readTemplateLock(store, ref)));
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
    packages: lock.packages.map((p) => ({ name: p.name, version: p.version, arch: p.arch })),
    ...(details.cacheKey ? { cacheKey: details.cacheKey } : {}),
  };
}

/** The template's SPDX 2.3 document, as stored (verified against its digest). */
export async function templateSbom(ref: string, options: ContextOptions = {}): Promise<unknown> {
  const { store } = createContext(options);
  return JSON.parse(await readTemplateSbom(store, ref)) as unknown;
}

export const EXPORT_FORMATS = ['tar'] as const;

/** `rootcast export`: for now the flattened tree as a tar; OCI, LXC and OpenVZ come later. */
export async function exportTemplate(
  ref: string,
  format: string,
  output: string,
  options: ContextOptions = {},
): Promise<{ output: string; format: string; bytes: number; diffId: string }> {
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
    throw inputError(
      'EXPORT_FORMAT_UNKNOWN',
      `unknown export format ${format}`,
      `Use one of: ${EXPORT_FORMATS.join(', ')}.`,
    );
  }
  const { store } = createContext(options);
  const path = resolve(output);
  const result = await exportTemplateTar(store, ref, path);
  return { output: path, format, bytes: (await stat(path)).size, diffId: result.diffId };
}

import { type ContextOptions, createContext } from '../core/context.js';
import { inputError } from '../core/errors.js';
import { parseCompression } from '../export/compression.js';
import { readTemplateFacts } from '../export/facts.js';
import { EXPORT_FORMATS, EXPORTERS, type ExportFormat } from '../export/formats.js';
import { checkOutput } from '../export/target.js';
import { readTemplate } from '../store/template-query.js';

export { EXPORT_FORMATS, type ExportFormat } from '../export/formats.js';

/** `rootcast export` options besides the store, reporter and signal. */
export interface ExportOptions extends ContextOptions {
  /** `zstd`/`gzip` for OCI layers; `gzip`/`xz`/`zstd`/`none` for tarballs (see docs/export.md). */
  compression?: string;
  /** Compression level (gzip 1–9, xz 0–9, zstd 1–19); each format has its default. */
  level?: number;
  /** Incus: a metadata tarball and a squashfs rootfs instead of one unified tarball. */
  split?: boolean;
}

/** What an export wrote. */
export interface ExportResult {
  template: string;
  /** The template's manifest digest in the store. */
  digest: string;
  format: ExportFormat;
  /** The file or directory written (for openvz into a directory: the tarball inside it). */
  output: string;
  /** Total bytes of `files`. */
  bytes: number;
  files: { path: string; bytes: number }[];
  compression?: string;
  /** OCI formats: the manifest digest in the exported layout (the store's one unless recompressed). */
  manifestDigest?: string;
}

function isFormat(value: string): value is ExportFormat {
  return (EXPORT_FORMATS as readonly string[]).includes(value);
}

/**
 * `rootcast export`: writes the template `ref` (`name:version` or `sha256:…`) at `output` in
 * `format`. The request (format, compression, what `output` names: src/export/target.ts) is
 * checked before any work, exit 2 when wrong. Atomic: on failure or a kill nothing new is
 * visible at `output` (missing parent directories it created are removed again).
 */
export async function exportTemplate(
  ref: string,
  format: string,
  output: string,
  options: ExportOptions = {},
): Promise<ExportResult> {
  if (!isFormat(format)) {
    throw inputError(
      'EXPORT_FORMAT_UNKNOWN',
      `unknown export format ${format}`,
      `Use one of: ${EXPORT_FORMATS.join(', ')}.`,
    );
  }
  const exporter = EXPORTERS[format];
  const compression = parseCompression(options.compression, exporter.compressions, format);
  if (options.split && format !== 'incus') {
    throw inputError(
      'EXPORT_SPLIT_UNSUPPORTED',
      `--split is for --format incus, not ${format}`,
      'Drop --split.',
    );
  }
  const target = await checkOutput(
    output,
    exporter.writes(Boolean(options.split)),
    format,
    exporter.exampleName,
  );
  const ctx = createContext(options);
  const details = await readTemplate(ctx.store, ref);
  const facts = await readTemplateFacts(ctx.store, details);
  const written = await exporter.export({
    store: ctx.store,
    details,
    facts,
    output: target.path,
    outputIsDirectory: target.directory,
    ...(compression ? { compression } : {}),
    ...(options.level !== undefined ? { level: options.level } : {}),
    ...(options.split ? { split: true } : {}),
    reporter: ctx.reporter,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  return {
    template: facts.ref,
    digest: details.manifestDigest,
    format,
    output: written.output,
    bytes: written.files.reduce((sum, f) => sum + f.bytes, 0),
    files: written.files,
    ...(written.compression ? { compression: written.compression } : {}),
    ...(written.manifestDigest ? { manifestDigest: written.manifestDigest } : {}),
  };
}

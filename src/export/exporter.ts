import type { Reporter } from '../core/reporter.js';
import type { TemplateDetails } from '../store/template-query.js';
import type { Compression } from './compression.js';
import type { TemplateFacts } from './facts.js';
import type { OutputKind } from './target.js';

/**
 * One export format (DESIGN.md's `Exporter`): turns a template of the store into the files
 * another runtime reads.
 *
 * Lifecycle: `exportTemplate` (src/api/export.ts) checks `--compression` against
 * `compressions` and -o against `writes` (target.ts) before any work, then resolves the
 * reference, reads the template (every blob verified) and its facts, and calls `export`
 * once. The exporter writes only through output.ts's atomic helpers, so when `export`
 * rejects, or the process dies, nothing new is visible at `output`; when it resolves,
 * everything it lists in `files` is complete and fsynced. Exporters never write into the
 * store.
 */
export interface Exporter {
  readonly format: string;
  /** Compressions `--compression` may pick, the first being the default. Empty: fixed. */
  readonly compressions: readonly Compression[];
  /** What -o names (see target.ts); `split` is `--split`. */
  writes(split: boolean): OutputKind;
  /** A file name to suggest when -o names a directory but a file is written (`rootfs.tar`). */
  readonly exampleName: string;
  export(request: ExportRequest): Promise<ExportOutput>;
}

export interface ExportRequest {
  store: string;
  details: TemplateDetails;
  facts: TemplateFacts;
  /** Absolute path given with -o. */
  output: string;
  /**
   * -o is a directory: the one to write (directory formats), or for openvz the one to write
   * the conventionally named file into (an existing directory, or -o ending in `/`).
   */
  outputIsDirectory: boolean;
  /** `--compression`, already checked against `compressions`; undefined: the format decides. */
  compression?: Compression;
  /** `--level`, unchecked (see compression.ts `compressionLevel`). */
  level?: number;
  /** Incus: a metadata tarball and a squashfs rootfs instead of one unified tarball. */
  split?: boolean;
  reporter: Reporter;
  /** Aborting stops the export between chunks; the temporary output is removed. */
  signal?: AbortSignal;
}

export interface ExportOutput {
  /** The file or directory written. */
  output: string;
  /** Every file written, with its size. */
  files: { path: string; bytes: number }[];
  compression?: Compression;
  /** OCI formats: the digest of the manifest in the exported layout. */
  manifestDigest?: string;
}

import type { Exporter } from './exporter.js';
import { incusExporter } from './incus.js';
import { lxcExporter } from './lxc.js';
import { ociArchiveExporter, ociExporter } from './oci.js';
import { openvzExporter } from './openvz.js';
import { tarExporter } from './tar.js';

/** Every export format, by the name `--format` takes. A new format is one entry here. */
export const EXPORTERS = {
  tar: tarExporter,
  oci: ociExporter,
  'oci-archive': ociArchiveExporter,
  lxc: lxcExporter,
  incus: incusExporter,
  openvz: openvzExporter,
} as const satisfies Record<string, Exporter>;

export type ExportFormat = keyof typeof EXPORTERS;

export const EXPORT_FORMATS = Object.keys(EXPORTERS) as ExportFormat[];

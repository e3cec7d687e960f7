import { basename, join } from 'node:path';
import {
  type Compression,
  compressChunks,
  compressionLevel,
  TAR_SUFFIX,
  tarballCompression,
} from './compression.js';
import type { Exporter } from './exporter.js';
import { openvzTemplateName } from './facts.js';
import { atomicFile, writeChunksToFile } from './output.js';
import { templateTar } from './template-tar.js';

/**
 * `--format openvz`: the OS template cache tarball vzctl unpacks into a container's private
 * area, `<distro>-<release>-<arch>[-<variant>].tar.<gz|xz|zst>` (the name is the OSTEMPLATE
 * vzctl is given). The tar is the flattened tree with numeric owners only (the store's tar
 * encoding never writes user or group names), so it unpacks to the tree `--format tar` gives.
 *
 * With -o naming a directory (an existing one, or a name ending in `/`, created) the tarball
 * gets that conventional name inside it; otherwise -o is the file, and its suffix chooses the
 * compression. gzip is the default: it is the one every vzctl reads.
 */
export const openvzExporter: Exporter = {
  format: 'openvz',
  compressions: ['gzip', 'xz', 'zstd'],
  writes: () => 'file-or-directory',
  exampleName: 'template.tar.gz',
  async export(request) {
    let file = request.output;
    let compression: Compression;
    if (request.outputIsDirectory) {
      compression = request.compression ?? 'gzip';
      file = join(request.output, `${openvzTemplateName(request.facts)}${TAR_SUFFIX[compression]}`);
    } else {
      compression = tarballCompression(
        request.compression,
        basename(file),
        this.compressions,
        'gzip',
        'openvz',
      );
    }
    const level = compressionLevel(compression, request.level);
    const { stream } = templateTar(request.store, request.details, {
      sourceDateEpoch: request.facts.clampEpoch,
      reporter: request.reporter,
    });
    const bytes = await atomicFile(file, (tmp) =>
      writeChunksToFile(tmp, compressChunks(stream, compression, level, request.signal), request.signal),
    );
    return { output: file, files: [{ path: file, bytes }], compression };
  },
};

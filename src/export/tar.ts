import { basename, resolve } from 'node:path';
import { CountingHash, SHA256_PREFIX } from '../core/digest.js';
import { readTemplate } from '../store/template-query.js';
import { compressChunks, compressionLevel, tarballCompression } from './compression.js';
import type { Exporter } from './exporter.js';
import { epochOfDate } from './facts.js';
import { atomicFile, writeChunksToFile } from './output.js';
import { templateTar } from './template-tar.js';

/**
 * `--format tar`: the flattened tree as one tarball (uncompressed unless the file name or
 * `--compression` says otherwise). For a one-layer template the uncompressed tarball is the
 * layer's tar byte for byte; for a stack it is the merged tree in the same encoding.
 */
export const tarExporter: Exporter = {
  format: 'tar',
  compressions: ['none', 'gzip', 'xz', 'zstd'],
  writes: () => 'file',
  exampleName: 'rootfs.tar',
  async export(request) {
    const compression = tarballCompression(
      request.compression,
      basename(request.output),
      this.compressions,
      'none',
      'tar',
    );
    const level = compressionLevel(compression, request.level);
    const { stream } = templateTar(request.store, request.details, {
      sourceDateEpoch: request.facts.clampEpoch,
      reporter: request.reporter,
    });
    const bytes = await atomicFile(request.output, (tmp) =>
      writeChunksToFile(tmp, compressChunks(stream, compression, level, request.signal), request.signal),
    );
    return { output: request.output, files: [{ path: request.output, bytes }], compression };
  },
};

/**
 * The flattened tree of `ref` as an uncompressed tar at `outFile`, atomically. Returns the
 * sha256 of the tar (for a one-layer template, that layer's diff_id) and its size.
 */
export async function exportTemplateTar(
  store: string,
  ref: string,
  outFile: string,
): Promise<{ diffId: string; size: number }> {
  const details = await readTemplate(store, ref);
  const epoch = epochOfDate(details.config.created) ?? Number.MAX_SAFE_INTEGER;
  const { stream } = templateTar(store, details, { sourceDateEpoch: epoch });
  const hash = new CountingHash();
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of stream) {
      hash.update(chunk);
      yield chunk;
    }
  }
  await atomicFile(resolve(outFile), (tmp) => writeChunksToFile(tmp, hashed()));
  return { diffId: SHA256_PREFIX + hash.hex(), size: hash.size };
}

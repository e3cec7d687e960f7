import { spawn } from 'node:child_process';
import { chmod, chown, lstat, mkdir, utimes } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { describeError, RootcastError } from '../core/errors.js';
import {
  type Compression,
  compressChunks,
  compressionLevel,
  oneChunk,
  TAR_SUFFIX,
  tarballCompression,
} from './compression.js';
import type { Exporter, ExportRequest } from './exporter.js';
import { kernelArch, type TemplateFacts } from './facts.js';
import { atomicDirectory, atomicFile, withScratchDir, writeChunksToFile } from './output.js';
import { smallTar, smallTarEntries } from './small-tar.js';
import { templateTar } from './template-tar.js';

/**
 * `--format incus`: an Incus (and LXD) container image.
 *
 * - Unified (default): one tarball holding `metadata.yaml` and `rootfs/` (the flattened tree,
 *   with a `rootfs/` entry carrying the root directory's metadata). `incus image import FILE`.
 * - Split (`--split`): a directory with `incus.tar.<xz|gz|zst>` (metadata.yaml alone) and
 *   `rootfs.squashfs` made by mksquashfs (squashfs-tools), the layout Incus's image servers
 *   publish. `incus image import incus.tar.xz rootfs.squashfs`. Needs mksquashfs:
 *   `EXPORT_TOOL_MISSING` without it.
 *
 * metadata.yaml carries what Incus documents as mandatory, `architecture` (the kernel's name,
 * `x86_64`) and `creation_date` (seconds: the template's SOURCE_DATE_EPOCH), and the commonly
 * used `properties` (os, release, architecture, variant, name, description, serial), from
 * the template's lock.
 */

/** Pure: the metadata.yaml document of a template. */
export function incusMetadata(facts: TemplateFacts): string {
  const properties: Record<string, string> = {
    architecture: facts.debArch,
    description: [facts.distro, facts.release, facts.debArch, facts.variant, `(rootcast ${facts.ref})`]
      .filter(Boolean)
      .join(' '),
    name: facts.name,
    serial: facts.version,
  };
  if (facts.distro) properties.os = facts.distro;
  if (facts.release) properties.release = facts.release;
  if (facts.variant) properties.variant = facts.variant;
  const document = {
    architecture: kernelArch(facts.debArch),
    creation_date: facts.epoch,
    properties,
    templates: {},
  };
  return stringify(document, { sortMapEntries: true });
}

async function writeUnified(request: ExportRequest, compression: Compression, file: string): Promise<number> {
  const level = compressionLevel(compression, request.level);
  const head = smallTarEntries(
    [{ path: 'metadata.yaml', content: incusMetadata(request.facts) }],
    request.facts.epoch,
  );
  const { stream } = templateTar(request.store, request.details, {
    sourceDateEpoch: request.facts.clampEpoch,
    prefix: 'rootfs',
    reporter: request.reporter,
  });
  async function* whole(): AsyncGenerator<Buffer> {
    yield head;
    yield* stream;
  }
  return atomicFile(file, (tmp) =>
    writeChunksToFile(tmp, compressChunks(whole(), compression, level, request.signal), request.signal),
  );
}

/** Runs a tool to completion; an aborted `signal` kills it (and the export fails with the reason). */
function run(
  command: string,
  args: string[],
  signal: AbortSignal | undefined,
  stdin?: AsyncIterable<Buffer>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [stdin ? 'pipe' : 'ignore', 'ignore', 'pipe'],
      ...(signal ? { signal, killSignal: 'SIGKILL' as const } : {}),
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (error) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new RootcastError({
          code: missing ? 'EXPORT_TOOL_MISSING' : 'EXPORT_TOOL_FAILED',
          message: `cannot run ${command}: ${describeError(error)}`,
          hint: missing
            ? `Install ${command === 'mksquashfs' ? 'squashfs-tools' : command}, or export without --split.`
            : 'Retry; check free disk space.',
          cause: error,
        }),
      );
    });
    child.on('close', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new RootcastError({
            code: 'EXPORT_TOOL_FAILED',
            message: `${command} failed (exit ${code}): ${stderr.trim().split('\n').pop() ?? ''}`,
            hint: 'Check free disk space, then retry.',
          }),
        );
    });
    if (stdin && child.stdin) {
      const sink = child.stdin;
      sink.on('error', () => {});
      (async () => {
        try {
          for await (const chunk of stdin) {
            // A killed tool (an abort) closes its stdin, which then never drains.
            if (sink.destroyed || sink.writableEnded) break;
            if (!sink.write(chunk))
              await new Promise<void>((r) => {
                const settle = () => {
                  sink.off('drain', settle);
                  sink.off('close', settle);
                  r();
                };
                sink.once('drain', settle);
                sink.once('close', settle);
              });
          }
          sink.end();
        } catch (error) {
          child.kill('SIGKILL');
          reject(error);
        }
      })();
    }
  });
}

/**
 * The directory mksquashfs reads: the layer itself for a one-layer template (read only),
 * else the flattened tree unpacked into `scratch` with the root's metadata copied over.
 */
async function squashSource(request: ExportRequest, scratch: string): Promise<string> {
  const layers = request.details.layers;
  if (layers.length === 1 && layers[0]?.unpacked) return layers[0].unpackedPath;
  const tree = join(scratch, 'rootfs');
  await mkdir(tree);
  const { stream } = templateTar(request.store, request.details, {
    sourceDateEpoch: request.facts.clampEpoch,
    reporter: request.reporter,
  });
  await run(
    'tar',
    ['-x', '-p', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', '-', '-C', tree],
    request.signal,
    stream,
  );
  const top = layers[layers.length - 1];
  if (top) {
    const st = await lstat(top.unpackedPath);
    await chown(tree, st.uid, st.gid);
    await chmod(tree, st.mode & 0o7777);
    await utimes(tree, st.atime, st.mtime);
  }
  return tree;
}

async function writeSplit(request: ExportRequest, compression: Compression, dir: string) {
  const level = compressionLevel(compression, request.level);
  const metaName = `incus${TAR_SUFFIX[compression]}`;
  const meta = smallTar(
    [{ path: 'metadata.yaml', content: incusMetadata(request.facts) }],
    request.facts.epoch,
  );
  const metaBytes = await writeChunksToFile(
    join(dir, metaName),
    compressChunks(oneChunk(meta), compression, level, request.signal),
    request.signal,
  );
  const squashfs = join(dir, 'rootfs.squashfs');
  await withScratchDir(join(dir, 'rootfs'), async (scratch) => {
    const source = await squashSource(request, scratch);
    const epoch = String(request.facts.epoch);
    await run(
      'mksquashfs',
      [source, squashfs, '-noappend', '-no-progress', '-mkfs-time', epoch, '-quiet'],
      request.signal,
    );
  });
  const { size } = await lstat(squashfs);
  return [
    { path: metaName, bytes: metaBytes },
    { path: 'rootfs.squashfs', bytes: size },
  ];
}

export const incusExporter: Exporter = {
  format: 'incus',
  compressions: ['gzip', 'xz', 'zstd', 'none'],
  writes: (split) => (split ? 'directory' : 'file'),
  exampleName: 'image.tar.gz',
  async export(request) {
    if (request.split) {
      const compression = request.compression ?? 'xz';
      const files = await atomicDirectory(request.output, (dir) => writeSplit(request, compression, dir));
      return {
        output: request.output,
        files: files.map((f) => ({ path: join(request.output, f.path), bytes: f.bytes })),
        compression,
      };
    }
    const compression = tarballCompression(
      request.compression,
      basename(request.output),
      this.compressions,
      'gzip',
      'incus',
    );
    const bytes = await writeUnified(request, compression, request.output);
    return { output: request.output, files: [{ path: request.output, bytes }], compression };
  },
};

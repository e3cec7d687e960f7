import { readFileSync, rmSync } from 'node:fs';
import { isMainThread, parentPort } from 'node:worker_threads';
import { RootcastError } from '../core/errors.js';
import { type DebMember, decompressMember, readDebArchive } from '../distro/deb/deb-archive.js';
import { parseDeb822Single } from '../distro/deb/deb822.js';
import {
  MemberCacheWriter,
  memberCachePath,
  type PendingMemberCache,
  readMemberCache,
} from './member-cache.js';
import { type TarEntry, TarReader, type TarSink } from './tar-reader.js';
import { type DirectoryCache, TreeWriter, type WrittenTree } from './tree-writer.js';
import type { PackageFile } from './types.js';

/**
 * Unpacking one package, start to finish, synchronously: read the `.deb`, check its control
 * member against the lock, decompress the data member and write it into the tree. Run in a
 * worker thread (this file is also the worker's entry point) so decompression and the many
 * small file-system calls use every core and never block the caller's event loop; unpack.ts
 * owns the pool and everything that spans packages.
 *
 * Messages: the pool posts an `UnpackJob`; the worker answers with one `UnpackReply` per
 * job, in order. Errors travel as plain fields and are rebuilt as `RootcastError` on the
 * other side.
 */
export interface UnpackJob {
  id: number;
  pkg: PackageFile;
  root: string;
  /** Write a decoded xz member raw, for compressing into the member cache later. */
  deferMemberCache?: boolean;
}

export interface UnpackOutcome extends WrittenTree {
  /** With `deferMemberCache`: the raw member, still to be compressed into the cache. */
  pendingMember?: PendingMemberCache;
  control: string;
  controlFiles: [string, { data: Buffer; mode: number; mtime: number }][];
  architecture: string;
  multiArch: 'no' | 'same' | 'foreign' | 'allowed';
}

export type UnpackReply =
  | { id: number; ok: true; outcome: UnpackOutcome }
  | {
      id: number;
      ok: false;
      error: { code: string; message: string; hint: string; details?: Record<string, unknown> };
    };

/** Unpacks `pkg` into `root`. `cache` carries directory resolutions between packages of one thread. */
export function unpackOne(
  pkg: PackageFile,
  root: string,
  cache: DirectoryCache = new Map(),
  options: { deferMemberCache?: boolean } = {},
): UnpackOutcome {
  const source = `${pkg.name}_${pkg.version}_${pkg.arch}.deb`;
  const archive = readDebArchive(readFileSync(pkg.file), source);
  const control = readControl(archive.control, source);
  const fields = checkControl(control.text, pkg, source);
  const writer = new TreeWriter(root, pkg.name, cache);
  const reader = new TarReader(writer, `${source} (${archive.data.name})`);
  const cachePath = archive.data.compression === 'xz' ? memberCachePath(pkg.file) : undefined;
  let copy: MemberCacheWriter | undefined;
  let pendingMember: PendingMemberCache | undefined;
  try {
    let fromCache = false;
    if (cachePath) {
      try {
        fromCache = readMemberCache(cachePath, (chunk) => reader.push(chunk));
      } catch (error) {
        if (error instanceof RootcastError) throw error;
        rmSync(cachePath, { force: true });
        throw new RootcastError({
          code: 'MEMBER_CACHE_CORRUPT',
          message: `${source}: the cached copy of ${archive.data.name} is damaged (removed)`,
          hint: 'Run the build again: the member is decoded from the package this time.',
          cause: error,
        });
      }
    }
    if (!fromCache) {
      copy =
        cachePath === undefined
          ? undefined
          : new MemberCacheWriter(cachePath, { deferred: options.deferMemberCache === true });
      decompressMember(archive.data, source, (chunk) => {
        copy?.write(chunk);
        reader.push(chunk);
      });
    }
    reader.end();
    pendingMember = copy?.commit();
    copy = undefined;
  } finally {
    copy?.abort();
    writer.abort();
  }
  return {
    ...writer.result(),
    ...(pendingMember ? { pendingMember } : {}),
    control: control.text,
    controlFiles: control.files,
    ...fields,
  };
}

function readControl(
  member: DebMember,
  source: string,
): { text: string; files: UnpackOutcome['controlFiles'] } {
  const files: UnpackOutcome['controlFiles'] = [];
  let current: { name: string; mode: number; mtime: number; chunks: Buffer[] } | undefined;
  const sink: TarSink = {
    entry(entry: TarEntry) {
      current = undefined;
      if (entry.type !== 'file') return;
      const name = entry.path.replace(/^(\.\/)+/, '');
      if (name === '' || name.includes('/')) return;
      current = { name, mode: entry.mode, mtime: entry.mtime, chunks: [] };
    },
    data(chunk) {
      current?.chunks.push(Buffer.from(chunk));
    },
    entryEnd() {
      if (current !== undefined)
        files.push([
          current.name,
          { data: Buffer.concat(current.chunks), mode: current.mode, mtime: current.mtime },
        ]);
      current = undefined;
    },
  };
  const reader = new TarReader(sink, `${source} (${member.name})`);
  decompressMember(member, source, (chunk) => reader.push(chunk));
  reader.end();
  const controlFile = files.find(([name]) => name === 'control');
  if (controlFile === undefined) {
    throw new RootcastError({
      code: 'DEB_BAD_ARCHIVE',
      message: `${source} has no control file in its control member`,
      hint: 'The file is not a valid Debian package: delete it from the package cache and fetch again.',
    });
  }
  return { text: controlFile[1].data.toString('utf8'), files: files.filter(([name]) => name !== 'control') };
}

function checkControl(
  text: string,
  pkg: PackageFile,
  source: string,
): Pick<UnpackOutcome, 'architecture' | 'multiArch'> {
  const fields = parseDeb822Single(text, `${source}: control`);
  const name = fields.get('package');
  const version = fields.get('version');
  const architecture = fields.get('architecture') ?? '';
  if (name !== pkg.name || version !== pkg.version || (architecture !== pkg.arch && architecture !== 'all')) {
    throw new RootcastError({
      code: 'UNPACK_CONTROL_MISMATCH',
      message: `${pkg.file} says it is ${name ?? '?'} ${version ?? '?'} (${architecture}), but the lock expects ${pkg.name} ${pkg.version} (${pkg.arch})`,
      hint: 'The package cache or the lock is inconsistent: run `rootcast fetch` again.',
      details: { package: pkg.name },
    });
  }
  const multiArch = fields.get('multi-arch') ?? 'no';
  return {
    architecture,
    multiArch: multiArch === 'same' || multiArch === 'foreign' || multiArch === 'allowed' ? multiArch : 'no',
  };
}

/** The plain-object form of any thrown value, for posting across threads. */
export function serializeError(error: unknown): Extract<UnpackReply, { ok: false }>['error'] {
  if (error instanceof RootcastError) {
    return { code: error.code, message: error.message, hint: error.hint, details: error.details };
  }
  return {
    code: 'UNPACK_FAILED',
    message: error instanceof Error ? error.message : String(error),
    hint: 'This is a bug in rootcast or a problem with the staging directory; rerun with --debug.',
  };
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  const cache: DirectoryCache = new Map();
  port.on('message', (job: UnpackJob) => {
    let reply: UnpackReply;
    try {
      const options = { deferMemberCache: job.deferMemberCache === true };
      reply = { id: job.id, ok: true, outcome: unpackOne(job.pkg, job.root, cache, options) };
    } catch (error) {
      reply = { id: job.id, ok: false, error: serializeError(error) };
    }
    port.postMessage(reply);
  });
}

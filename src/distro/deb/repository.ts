import { join } from 'node:path';
import type { Key } from 'openpgp';
import pLimit from 'p-limit';
import { writeFileAtomic } from '../../core/atomic.js';
import type { Context } from '../../core/context.js';
import { storePaths } from '../../core/context.js';
import { isSha256Hex, sha256Hex } from '../../core/digest.js';
import { RootcastError } from '../../core/errors.js';
import { HttpClient } from '../../fetch/http.js';
import type { RecipeSource } from '../../recipe/types.js';
import {
  compressedIndexPath,
  PlainIndexCopy,
  plainIndexPath,
  readCompressedIndex,
  readPlainIndex,
  type SignedFile,
} from './index-cache.js';
import { decodeIndex, downloadIndex, indexConsumer } from './index-download.js';
import { PackagesIndexParser } from './packages-index.js';
import { parseRelease } from './release.js';
import { checkReleaseDates, checkReleaseSuite, pinPriority } from './release-checks.js';
import type { VerifiedRelease } from './signature.js';
import type { BinaryPackage, ReleaseInfo, RepoIndex } from './types.js';
import { XZ_PROCESS_MIN } from './xz-process.js';

/**
 * The Debian repository client: turns recipe sources into verified, parsed indexes.
 *
 * For each (source, suite) it fetches `dists/<suite>/InRelease` (or `Release` +
 * `Release.gpg` when there is no InRelease), verifies it against the source's keyring,
 * checks its Date and Valid-Until against `ctx.now()`, and then, for each component, the
 * compressed Packages index the Release lists, checked against the Release's size and
 * sha256 before it is decompressed and parsed. Nothing unverified is ever parsed or stored.
 * An index is parsed as it is decompressed, a chunk at a time, so its ~57 MB of text
 * never exists whole in memory (the peak of a lock from an empty store).
 *
 * Store layout (under `ctx.store`):
 * - `indexes/sha256/<hex>`: compressed Packages indexes, named by the sha256 the signed
 *   Release gives them, re-hashed whenever they are read. An unchanged Release therefore
 *   costs one request (the InRelease) and no index downloads.
 * - `indexes/plain/sha256/<hex>.zst`: each index decompressed (then zstd-compressed),
 *   named by the sha256 the Release gives the plain `Packages` file and re-hashed against
 *   it when read, so a warm load skips xz (index-cache.ts). Only made when the Release
 *   lists the plain file; otherwise every load decompresses the compressed copy.
 * - `indexes/releases/sha256/<hex>`: the verified InRelease (or Release) bytes, with
 *   `<hex>.gpg` beside a detached signature, kept for offline and frozen use. Written
 *   only after every component of the suite loaded.
 *
 * Suites load in parallel; results come back in source, suite, component order.
 */
export interface DebSource extends RecipeSource {
  /** The URI as written in the recipe, before mirror variables are rendered. */
  uriTemplate: string;
}

export interface LoadIndexesOptions {
  /** Client to use (and leave open); by default one is made for the call and closed after. */
  http?: HttpClient;
  /** How far a Release Date may lie in the future, for clock skew (default 10 minutes). */
  maxFutureSkewMs?: number;
  /**
   * xz indexes at least this large (compressed) are decoded by an `xz` process on another
   * core, fed while they download (default 1 MiB; smaller ones decode in-process).
   */
  xzProcessMinBytes?: number;
}

export async function loadIndexes(
  sources: readonly DebSource[],
  arch: string,
  ctx: Context,
  options: LoadIndexesOptions = {},
): Promise<RepoIndex[]> {
  const http =
    options.http ?? new HttpClient({ ...(ctx.signal ? { signal: ctx.signal } : {}), onRetry: logRetry(ctx) });
  // OpenPGP (~0.1 s to load) is imported now but awaited only once a Release has arrived,
  // so loading it and reading the keyrings overlap the first requests.
  const openpgp = loadVerification();
  const keyrings = new Map<string, Promise<Key[]>>();
  const keyringOf = (path: string) => {
    let keys = keyrings.get(path);
    if (!keys) {
      keys = openpgp.then((v) => v.readKeyring(path));
      // Handled where it is awaited; this only keeps an early failure from counting as unhandled.
      keys.catch(() => {});
      keyrings.set(path, keys);
    }
    return keys;
  };
  const jobs = sources.flatMap((source) => source.suites.map((suite) => ({ source, suite })));
  const task = ctx.reporter.task('Repository indexes', {
    total: jobs.reduce((n, j) => n + j.source.components.length, 0),
    unit: 'items',
  });
  // One failure cancels the other suites, and nothing is stored unless every suite loaded.
  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
  const env = {
    ctx,
    http,
    signal,
    openpgp,
    maxFutureSkewMs: options.maxFutureSkewMs ?? 10 * 60 * 1000,
    xzProcessMinBytes: options.xzProcessMinBytes ?? XZ_PROCESS_MIN,
  };
  const limit = pLimit(Math.max(1, Math.min(ctx.concurrency, 8)));
  try {
    const settled = await Promise.allSettled(
      jobs.map(({ source, suite }) =>
        limit(async () => {
          try {
            const loaded = await loadSuite(source, suite, arch, keyringOf(source.keyring), env);
            task.advance(loaded.indexes.length);
            return loaded;
          } catch (error) {
            stop.abort();
            throw error;
          }
        }),
      ),
    );
    const failures = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
    const first = failures.find((e) => !(e instanceof RootcastError && e.code === 'ABORTED')) ?? failures[0];
    if (first !== undefined) throw first;
    const loaded = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    for (const { writes } of loaded) {
      for (const write of writes) await writeFileAtomic(write.path, write.data);
    }
    return loaded.flatMap((l) => l.indexes);
  } finally {
    task.finish();
    if (!options.http) await http.close();
  }
}

interface SuiteEnv {
  ctx: Context;
  http: HttpClient;
  /** Cancels this load: the context's signal or the first failure of another suite. */
  signal: AbortSignal;
  openpgp: Promise<Verification>;
  maxFutureSkewMs: number;
  xzProcessMinBytes: number;
}

/** The modules that need OpenPGP, loaded on first use (see `loadIndexes`). */
type Verification = typeof import('./keyring.js') & typeof import('./signature.js');

async function loadVerification(): Promise<Verification> {
  const [keyring, signature] = await Promise.all([import('./keyring.js'), import('./signature.js')]);
  return { ...keyring, ...signature };
}

/** A verified file to store once the whole load succeeded. */
interface PendingWrite {
  path: string;
  data: Buffer;
}

interface FetchedRelease {
  bytes: Buffer;
  signature?: Buffer;
  verified: VerifiedRelease;
  url: string;
}

async function loadSuite(
  source: DebSource,
  suite: string,
  arch: string,
  keys: Promise<Key[]>,
  env: SuiteEnv,
): Promise<{ indexes: RepoIndex[]; writes: PendingWrite[] }> {
  const { ctx } = env;
  const base = `${source.uri.replace(/\/+$/, '')}/dists/${suite}`;
  let fetched: FetchedRelease;
  try {
    fetched = await fetchRelease(base, keys, env);
  } catch (error) {
    // A keyring the recipe names wrongly is the error to report, whatever the network did.
    await keys;
    throw error;
  }
  const releaseSha = sha256Hex(fetched.bytes);
  const release = parseRelease(fetched.verified.text, releaseSha);
  ctx.reporter.log('debug', `${fetched.url}: signed by ${fetched.verified.signer}, sha256 ${releaseSha}`);
  checkReleaseSuite(release, suite, fetched.url);
  checkReleaseDates(release, ctx.now(), fetched.url, env.maxFutureSkewMs);
  if (release.architectures.length > 0 && !release.architectures.includes(arch)) {
    throw new RootcastError({
      code: 'INDEX_MISSING',
      message: `${fetched.url} lists no architecture ${arch} (only ${release.architectures.join(', ')})`,
      hint: `Pick an architecture the repository carries, or a repository that carries ${arch}.`,
      exitCode: 2,
    });
  }

  const writes: PendingWrite[] = [];
  const indexes = await Promise.all(
    source.components.map(async (component): Promise<RepoIndex> => {
      const id = `${suite}/${component}`;
      return {
        id,
        repository: { id, uriTemplate: source.uriTemplate, uri: source.uri, suite, component, arch },
        release,
        pin: pinPriority(release),
        packages: await loadPackages(id, base, release, component, arch, fetched.url, env, writes),
      };
    }),
  );

  const releases = join(storePaths.indexes(ctx.store), 'releases', 'sha256');
  writes.push({ path: join(releases, releaseSha), data: fetched.bytes });
  if (fetched.signature) writes.push({ path: join(releases, `${releaseSha}.gpg`), data: fetched.signature });
  return { indexes, writes };
}

/** Fetches the suite's InRelease (or Release + Release.gpg) and verifies it with `keys`. */
async function fetchRelease(base: string, keys: Promise<Key[]>, env: SuiteEnv): Promise<FetchedRelease> {
  const { http, ctx } = env;
  const signal = { signal: env.signal };
  const inReleaseUrl = `${base}/InRelease`;
  let inRelease: Buffer | undefined;
  try {
    ctx.reporter.log('debug', `GET ${inReleaseUrl}`);
    inRelease = await http.getBuffer(inReleaseUrl, { ...signal, maxBytes: 64 * 1024 * 1024 });
  } catch (error) {
    if (!(error instanceof RootcastError && error.code === 'HTTP_NOT_FOUND')) throw error;
  }
  const now = ctx.now();
  if (inRelease) {
    const { verifyInRelease } = await env.openpgp;
    const verified = await verifyInRelease(inRelease, await keys, now).catch(rethrowFor(inReleaseUrl));
    return { bytes: inRelease, verified, url: inReleaseUrl };
  }
  const releaseUrl = `${base}/Release`;
  ctx.reporter.log('debug', `no InRelease; GET ${releaseUrl} and Release.gpg`);
  const [bytes, signature] = await Promise.all([
    http.getBuffer(releaseUrl, { ...signal, maxBytes: 64 * 1024 * 1024 }),
    http.getBuffer(`${releaseUrl}.gpg`, { ...signal, maxBytes: 1024 * 1024 }).catch((error: unknown) => {
      if (error instanceof RootcastError && error.code === 'HTTP_NOT_FOUND') {
        throw new RootcastError({
          code: 'RELEASE_UNSIGNED',
          message: `${base} has neither InRelease nor Release.gpg: the repository is not signed`,
          hint: 'rootcast only uses signed repositories; sign it or use a mirror that serves its signatures.',
          cause: error,
        });
      }
      throw error;
    }),
  ]);
  const { verifyDetachedRelease } = await env.openpgp;
  const verified = await verifyDetachedRelease(bytes, signature, await keys, now).catch(
    rethrowFor(releaseUrl),
  );
  return { bytes, signature, verified, url: releaseUrl };
}

/**
 * The records of one component's Packages index. Warm path: the decompressed copy in the
 * store, parsed as it streams out and counted only if it matches the sha256 the Release
 * gives the plain `Packages` file (no xz). Otherwise the compressed index (from the store
 * or the mirror, checked against its own signed hash) is decompressed and parsed chunk by
 * chunk, and, when the Release lists the plain file and the bytes match it, a
 * decompressed copy is queued for the store.
 */
async function loadPackages(
  id: string,
  base: string,
  release: ReleaseInfo,
  component: string,
  arch: string,
  releaseUrl: string,
  env: SuiteEnv,
  writes: PendingWrite[],
): Promise<BinaryPackage[]> {
  const { ctx } = env;
  const plainEntry = signedEntry(release, `${component}/binary-${arch}/Packages`, releaseUrl);
  if (plainEntry) {
    const parser = new PackagesIndexParser(id);
    if (await readPlainIndex(ctx.store, plainEntry, ctx.reporter, parser)) return parser.end();
  }
  const entry = choosePackagesFile(release, component, arch, releaseUrl);
  // A fresh parser (and plain copy) for each reading: a retried download starts over.
  const reading: { parser: PackagesIndexParser; copy: PlainIndexCopy | undefined } = {
    parser: new PackagesIndexParser(id),
    copy: undefined,
  };
  const sink = (): ((chunk: Buffer) => void) => {
    const parser = new PackagesIndexParser(id);
    const copy = plainEntry && plainEntry.path !== entry.path ? new PlainIndexCopy(plainEntry) : undefined;
    Object.assign(reading, { parser, copy });
    return (chunk) => {
      copy?.write(chunk);
      parser.write(chunk);
    };
  };
  const cached = await readCompressedIndex(ctx.store, entry, ctx.reporter);
  if (cached) {
    await decodeIndex(cached, entry.path, base, sink(), env.xzProcessMinBytes);
  } else {
    const data = await downloadIndex(
      entry,
      base,
      release.acquireByHash,
      { ...env, reporter: ctx.reporter },
      () => indexConsumer(entry, base, sink(), env.xzProcessMinBytes, plainEntry?.size),
    );
    writes.push({ path: compressedIndexPath(ctx.store, entry), data });
  }
  const packages = reading.parser.end();
  if (plainEntry && reading.copy) {
    const data = reading.copy.finish();
    if (data) {
      writes.push({ path: plainIndexPath(ctx.store, plainEntry), data });
    } else {
      // The signed compressed file is what apt trusts too; only the shortcut is lost.
      ctx.reporter.log(
        'warn',
        `${base}/${entry.path} decompresses to a text that does not match the Release's ${plainEntry.path}; not caching it`,
      );
    }
  }
  return packages;
}

/** The Release's entry for `path`, if listed; a listed entry with a malformed hash throws. */
function signedEntry(release: ReleaseInfo, path: string, releaseUrl: string): SignedFile | undefined {
  const entry = release.files.get(path);
  if (!entry) return undefined;
  if (!isSha256Hex(entry.sha256)) {
    throw new RootcastError({
      code: 'INDEX_MISSING',
      message: `${releaseUrl} gives ${path} a malformed sha256 (${entry.sha256})`,
      hint: 'The repository metadata is broken; use another mirror or report it to the repository.',
    });
  }
  return { path, ...entry };
}

/** Picks the Packages file the Release lists, preferring xz, then gzip, then plain. */
function choosePackagesFile(
  release: ReleaseInfo,
  component: string,
  arch: string,
  releaseUrl: string,
): SignedFile {
  for (const name of ['Packages.xz', 'Packages.gz', 'Packages']) {
    const entry = signedEntry(release, `${component}/binary-${arch}/${name}`, releaseUrl);
    if (entry) return entry;
  }
  const listed = release.components.length > 0 ? release.components.join(', ') : 'none';
  throw new RootcastError({
    code: 'INDEX_MISSING',
    message: `${releaseUrl} lists no Packages index for ${component}/binary-${arch}`,
    hint: release.components.includes(component)
      ? `The repository does not carry ${arch} in ${component}; check the recipe's arch.`
      : `Components in this suite: ${listed}; fix the recipe's components.`,
    exitCode: 2,
  });
}

/** Prefixes the URL to verification errors, keeping their code and hint. */
function rethrowFor(url: string): (error: unknown) => never {
  return (error: unknown) => {
    if (error instanceof RootcastError) {
      throw new RootcastError({
        code: error.code,
        message: `${url}: ${error.message}`,
        hint: error.hint,
        exitCode: error.exitCode,
        ...(error.details ? { details: error.details } : {}),
        cause: error,
      });
    }
    throw error;
  };
}

function logRetry(ctx: Context) {
  return (info: { url: string; attempt: number; delayMs: number; reason: string }) =>
    ctx.reporter.log(
      'debug',
      `retrying ${info.url} in ${info.delayMs} ms (attempt ${info.attempt}: ${info.reason})`,
    );
}

import { rm, stat } from 'node:fs/promises';
import pLimit from 'p-limit';
import { type Context, storePaths } from '../core/context.js';
import { isSha256Hex, sha256File } from '../core/digest.js';
import { RootcastError } from '../core/errors.js';
import { HttpClient } from './http.js';

/**
 * The package cache: downloaded packages stored by content, `packages/sha256/<hex>` in
 * the store, so a second build with the same lock downloads nothing.
 *
 * Invariants: a file under that name always has that sha256, because it only gets there
 * through `HttpClient.download`, which verifies size and hash before the atomic rename. A
 * file already present is reused when its size matches (and, with `verify`, its hash); a
 * file that does not match is removed and fetched again. When one package fails, the
 * other downloads are cancelled and awaited before the error is thrown, so nothing is
 * still writing into the store when `fetchPackages` returns.
 */
export interface PackageToFetch {
  name: string;
  version: string;
  /** Repository root URI (rendered), without trailing slash or with, either works. */
  baseUri: string;
  /** Path relative to `baseUri` (`pool/main/…`), from the verified index. */
  path: string;
  size: number;
  /** Lower-case hex. */
  sha256: string;
}

export interface FetchPackagesOptions {
  /** Re-hash cached files instead of trusting their size (slower, for fsck-like runs). */
  verify?: boolean;
  /** Client to use (and leave open); by default one is made for the call and closed after. */
  http?: HttpClient;
  /**
   * Called once per distinct sha256 as soon as that file is verified in the cache (found
   * there, or downloaded), so a caller can start using it while the rest downloads.
   */
  onAvailable?: (sha256: string) => void;
}

export interface FetchPackagesResult {
  downloaded: number;
  reused: number;
  /** Bytes downloaded during this call. */
  bytes: number;
}

export async function fetchPackages(
  items: readonly PackageToFetch[],
  ctx: Context,
  options: FetchPackagesOptions = {},
): Promise<FetchPackagesResult> {
  const unique = dedupe(items);
  const result: FetchPackagesResult = { downloaded: 0, reused: 0, bytes: 0 };

  const limit = pLimit(Math.max(1, ctx.concurrency));
  const cached = await Promise.all(
    unique.map((item) => limit(() => isCached(item, ctx, options.verify ?? false))),
  );
  for (const [i, item] of unique.entries()) if (cached[i]) options.onAvailable?.(item.sha256);
  // Largest first: the unpacker starts with the largest files, and a big download started
  // last would finish last.
  const missing = unique.filter((_, i) => !cached[i]).sort((a, b) => b.size - a.size);
  result.reused = unique.length - missing.length;
  if (missing.length === 0) return result;

  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
  const http =
    options.http ??
    new HttpClient({
      onRetry: (info) =>
        ctx.reporter.log('debug', `retrying ${info.url} in ${info.delayMs} ms (${info.reason})`),
    });
  const task = ctx.reporter.task('Downloading packages', {
    total: missing.reduce((n, item) => n + item.size, 0),
    unit: 'bytes',
  });
  try {
    const settled = await Promise.allSettled(
      missing.map((item) =>
        limit(async () => {
          const url = `${item.baseUri.replace(/\/+$/, '')}/${item.path.replace(/^\/+/, '')}`;
          ctx.reporter.log('debug', `GET ${url}`);
          try {
            await http.download(url, storePaths.packageFile(ctx.store, item.sha256), {
              expected: { size: item.size, sha256: item.sha256 },
              signal,
              onProgress: (n) => task.advance(n),
            });
          } catch (error) {
            if (!stop.signal.aborted) stop.abort();
            throw packageError(item, error);
          }
          result.downloaded++;
          result.bytes += item.size;
          options.onAvailable?.(item.sha256);
        }),
      ),
    );
    // The first real failure, not the cancellations it caused in the other downloads.
    const failures = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
    const first = failures.find((e) => !(e instanceof RootcastError && e.code === 'ABORTED')) ?? failures[0];
    if (first !== undefined) throw first;
    return result;
  } finally {
    task.finish();
    if (!options.http) await http.close();
  }
}

function dedupe(items: readonly PackageToFetch[]): PackageToFetch[] {
  const seen = new Map<string, PackageToFetch>();
  for (const item of items) {
    if (!isSha256Hex(item.sha256)) {
      throw new RootcastError({
        code: 'PACKAGE_BAD_DIGEST',
        message: `${item.name} ${item.version} has a malformed sha256 (${item.sha256})`,
        hint: 'The lock or index is damaged; run `rootcast lock` again.',
        exitCode: 2,
      });
    }
    if (!seen.has(item.sha256)) seen.set(item.sha256, item);
  }
  return [...seen.values()];
}

async function isCached(item: PackageToFetch, ctx: Context, verify: boolean): Promise<boolean> {
  const path = storePaths.packageFile(ctx.store, item.sha256);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return false;
  }
  if (size === item.size && (!verify || (await sha256File(path)).hex === item.sha256)) return true;
  ctx.reporter.log('warn', `cached ${item.name} ${item.version} (${path}) is damaged; fetching it again`);
  await rm(path, { force: true });
  return false;
}

function packageError(item: PackageToFetch, error: unknown): RootcastError {
  const what = `${item.name} ${item.version}`;
  if (!(error instanceof RootcastError)) {
    return new RootcastError({
      code: 'PACKAGE_FETCH_FAILED',
      message: `${what}: ${String(error)}`,
      hint: 'Retry; if it persists, check the mirror and the network.',
      cause: error,
    });
  }
  const recoded: Record<string, { code: string; hint: string }> = {
    DOWNLOAD_HASH_MISMATCH: {
      code: 'PACKAGE_HASH_MISMATCH',
      hint: 'The mirror serves a file that differs from the signed index (mid-sync or tampering); retry later or use another mirror.',
    },
    DOWNLOAD_SIZE_MISMATCH: {
      code: 'PACKAGE_SIZE_MISMATCH',
      hint: 'The mirror serves a file whose size differs from the signed index; retry later or use another mirror.',
    },
  };
  const mapped = recoded[error.code];
  return new RootcastError({
    code: mapped?.code ?? error.code,
    message: `${what}: ${error.message}`,
    hint: mapped?.hint ?? error.hint,
    exitCode: error.exitCode,
    details: { ...error.details, package: item.name, version: item.version },
    cause: error,
  });
}

import { randomInt } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Dispatcher, EnvHttpProxyAgent } from 'undici';
import { commitTemporary, temporaryPathFor } from '../core/atomic.js';
import { CountingHash } from '../core/digest.js';
import { describeError, RootcastError } from '../core/errors.js';
import { VERSION } from '../version.js';

/** What a caller knows a body must be; checked before the body is returned or stored. */
export interface ExpectedContent {
  size?: number;
  /** Lower-case hex. */
  sha256?: string;
}

export interface HttpClientOptions {
  /** Retries after the first attempt for transient failures (default 5). */
  retries?: number;
  /** Base of the exponential backoff in ms (default 250); capped at `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Connect timeout in ms (default 15 s). */
  connectTimeoutMs?: number;
  /** Time to wait for response headers, and the longest silence inside a body (default 60 s). */
  timeoutMs?: number;
  userAgent?: string;
  /** Cancels every request made through this client. */
  signal?: AbortSignal;
  /** Use this dispatcher instead of the environment-configured proxy agent (tests, embedding). */
  dispatcher?: Dispatcher;
  /** Called before each retry, for logs. */
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

export interface RequestOptions {
  expected?: ExpectedContent;
  signal?: AbortSignal;
  /** Refuse bodies larger than this when no size is expected (default 1 GiB). */
  maxBytes?: number;
  /**
   * Also hands the body to a consumer while it arrives (a decoder working while the rest
   * downloads); called once per attempt, so a retried request starts a fresh consumer.
   */
  consumer?: () => BodyConsumer | Promise<BodyConsumer>;
}

/**
 * Sees one attempt's body as it arrives, before it is verified.
 *
 * Lifecycle: made per attempt; `write` gets every chunk in order; then exactly one of `end`
 * (the whole body arrived and matched what was expected: finish, and throw a RootcastError
 * if what was consumed is unusable — that is not retried) or `abort` (the attempt failed and
 * will be retried or reported: release everything). `write` must not throw for bad bytes:
 * they are unverified, so it records the problem and `end` reports it once they are checked.
 */
export interface BodyConsumer {
  write(chunk: Buffer): void | Promise<void>;
  /** The verified body, whole (for consumers that decode only at the end). */
  end(body: Buffer): Promise<void>;
  abort(): void;
}

export interface DownloadOptions {
  expected: { size: number; sha256: string };
  signal?: AbortSignal;
  /** Called with each chunk's length; a negative value rolls back bytes of a failed attempt. */
  onProgress?: (bytes: number) => void;
}

/** Counters for tests and logs: what this client has asked the network for. */
export interface HttpStats {
  requests: number;
  retries: number;
  bytes: number;
}

const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024;

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** A failure worth another attempt; `final` is what to throw when attempts run out. */
class TransientError extends Error {
  constructor(
    message: string,
    readonly final?: RootcastError,
  ) {
    super(message);
  }
}

/** Whole content that is not what was expected: retried once, then `error` is thrown. */
class ContentMismatch extends Error {
  constructor(readonly error: RootcastError) {
    super(error.message);
  }
}

function isTransientNetworkError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && TRANSIENT_CODES.has(code)) return true;
    if (e.message === 'other side closed' || e.message === 'terminated') return true;
    e = e.cause;
  }
  return false;
}

export function defaultUserAgent(): string {
  return `rootcast/${VERSION}`;
}

/**
 * The one HTTP client rootcast uses to reach repositories.
 *
 * Lifecycle: create one per operation (or share one across a command), call `getBuffer`
 * and `download` as often as needed, concurrently, then `close()` to release pooled
 * connections. Proxies come from the environment (`http_proxy`, `https_proxy`,
 * `no_proxy`, upper-case too, read when the client is created); plain-HTTP requests go to
 * the proxy in absolute form rather than through CONNECT, which is what caching proxies
 * such as apt-cacher-ng expect.
 *
 * Invariants:
 * - Transient failures (connection reset or refused, timeouts, 5xx, 408, 429, a body
 *   shorter than announced or expected) are retried with exponential backoff and jitter,
 *   up to `retries` times. Other 4xx fail at once: 404 as `HTTP_NOT_FOUND`, the rest as
 *   `HTTP_FAILED`, both naming the URL.
 * - Content that arrives whole but differs from what the caller expects (size or sha256)
 *   is retried exactly once, because a mirror may be mid-sync, and then fails with
 *   `DOWNLOAD_SIZE_MISMATCH` / `DOWNLOAD_HASH_MISMATCH`, which callers re-code
 *   (`PACKAGE_…`, `INDEX_…`). `details` carries url, expected and actual values.
 * - `download` never makes an unverified file visible: bytes go to a temporary file in the
 *   destination's directory, are hashed as they are written, and only a verified file is
 *   renamed into place. The temporary file is removed on every failure.
 */
export class HttpClient {
  readonly stats: HttpStats = { requests: 0, retries: 0, bytes: 0 };
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timeoutMs: number;
  private readonly userAgent: string;

  constructor(private readonly options: HttpClientOptions = {}) {
    this.retries = options.retries ?? 5;
    this.backoffMs = options.backoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.userAgent = options.userAgent ?? defaultUserAgent();
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      new EnvHttpProxyAgent({
        proxyTunnel: false,
        connect: { timeout: options.connectTimeoutMs ?? 15_000 },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
  }

  /**
   * Fetches a whole body into memory, checked against `expected` when given; with a
   * `consumer`, also streams it there, and returns once the consumer has ended.
   */
  async getBuffer(url: string, options: RequestOptions = {}): Promise<Buffer> {
    const signal = this.combineSignal(options.signal);
    return this.withRetries(url, signal, async () => {
      const chunks: Buffer[] = [];
      const limit = options.expected?.size ?? options.maxBytes ?? DEFAULT_MAX_BYTES;
      const consumer = await options.consumer?.();
      let hash: CountingHash;
      try {
        hash = await this.fetchInto(url, signal, limit, (chunk) => {
          chunks.push(chunk);
          return consumer?.write(chunk);
        });
        checkContent(url, hash, options.expected);
      } catch (error) {
        consumer?.abort();
        throw error;
      }
      const body = Buffer.concat(chunks, hash.size);
      // The consumer has seen a verified body: it ends (and its errors are final).
      await consumer?.end(body);
      return body;
    });
  }

  /** Streams a body into `destination`, which appears only once size and sha256 match. */
  async download(url: string, destination: string, options: DownloadOptions): Promise<void> {
    const signal = this.combineSignal(options.signal);
    await mkdir(dirname(destination), { recursive: true });
    await this.withRetries(url, signal, async () => {
      const tmp = temporaryPathFor(destination);
      const handle = await open(tmp, 'wx', 0o644);
      let reported = 0;
      try {
        let hash: CountingHash;
        try {
          hash = await this.fetchInto(url, signal, options.expected.size, async (chunk) => {
            await handle.write(chunk);
            reported += chunk.length;
            options.onProgress?.(chunk.length);
          });
          checkContent(url, hash, options.expected);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await commitTemporary(tmp, destination);
      } catch (error) {
        await rm(tmp, { force: true });
        if (reported > 0) options.onProgress?.(-reported);
        throw error;
      }
    });
  }

  /** Releases pooled connections; the client must not be used afterwards. */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private combineSignal(signal: AbortSignal | undefined): AbortSignal | undefined {
    const signals = [this.options.signal, signal].filter((s): s is AbortSignal => s !== undefined);
    if (signals.length <= 1) return signals[0];
    return AbortSignal.any(signals);
  }

  /**
   * One attempt: sends the request and feeds the body to `sink`, stopping as soon as it
   * exceeds `limit` so a hostile server cannot fill memory or disk.
   */
  private async fetchInto(
    url: string,
    signal: AbortSignal | undefined,
    limit: number,
    sink: (chunk: Buffer) => void | Promise<void>,
  ): Promise<CountingHash> {
    this.stats.requests++;
    const response = await this.dispatcher.request({
      ...splitUrl(url),
      method: 'GET',
      headers: { 'user-agent': this.userAgent, accept: '*/*' },
      signal,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const { statusCode, body } = response;
    if (statusCode < 200 || statusCode >= 300) {
      await body.dump().catch(() => undefined);
      throw statusError(url, statusCode);
    }
    const header = response.headers['content-length'];
    const announced = typeof header === 'string' && /^\d+$/.test(header) ? Number(header) : undefined;
    const hash = new CountingHash();
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        hash.update(buf);
        this.stats.bytes += buf.length;
        if (hash.size > limit) throw new ContentMismatch(tooLarge(url, limit, hash.size));
        await sink(buf);
      }
    } catch (error) {
      body.destroy();
      throw error;
    }
    if (announced !== undefined && hash.size < announced) {
      throw new TransientError(`body truncated: ${hash.size} of ${announced} bytes`);
    }
    return hash;
  }

  private async withRetries<T>(
    url: string,
    signal: AbortSignal | undefined,
    attempt: () => Promise<T>,
  ): Promise<T> {
    let transientFailures = 0;
    let mismatches = 0;
    for (let n = 0; ; n++) {
      if (signal?.aborted) throw abortError(url, signal.reason);
      let reason: string;
      try {
        return await attempt();
      } catch (error) {
        if (signal?.aborted) throw abortError(url, signal.reason);
        if (error instanceof ContentMismatch) {
          if (++mismatches > 1) throw error.error;
          reason = error.message;
        } else if (error instanceof TransientError || isTransientNetworkError(error)) {
          if (++transientFailures > this.retries) {
            if (error instanceof TransientError && error.final) throw error.final;
            throw networkError(url, error);
          }
          reason = describeError(error);
        } else if (error instanceof RootcastError) {
          throw error;
        } else {
          throw otherError(url, error);
        }
      }
      const delayMs = this.backoff(n);
      this.stats.retries++;
      this.options.onRetry?.({ url, attempt: n + 1, delayMs, reason });
      try {
        await sleep(delayMs, undefined, signal ? { signal } : undefined);
      } catch {
        throw abortError(url, signal?.reason);
      }
    }
  }

  /** Full jitter over an exponential ceiling, so many clients do not retry in step. */
  private backoff(attempt: number): number {
    const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt);
    return Math.floor(ceiling / 2) + randomInt(Math.max(1, Math.ceil(ceiling / 2)));
  }
}

function splitUrl(url: string): { origin: string; path: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new RootcastError({
      code: 'HTTP_BAD_URL',
      message: `not a valid URL: ${url}`,
      hint: 'Check the repository URI in the recipe or the mirror variable.',
      exitCode: 2,
      cause: error,
    });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new RootcastError({
      code: 'HTTP_BAD_URL',
      message: `unsupported URL scheme ${parsed.protocol} in ${url}`,
      hint: 'Repository URIs must start with http:// or https://.',
      exitCode: 2,
    });
  }
  return { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
}

function checkContent(url: string, hash: CountingHash, expected: ExpectedContent | undefined): void {
  if (expected?.size !== undefined && hash.size !== expected.size) {
    const error = new RootcastError({
      code: 'DOWNLOAD_SIZE_MISMATCH',
      message: `${url} is ${hash.size} bytes, expected ${expected.size}`,
      hint: 'The mirror may be mid-sync or damaged; retry later or use another mirror.',
      details: { url, expectedSize: expected.size, actualSize: hash.size },
    });
    // A short body is most likely a cut connection: worth the full retry budget.
    if (hash.size < expected.size) throw new TransientError(error.message, error);
    throw new ContentMismatch(error);
  }
  if (expected?.sha256 !== undefined) {
    const actual = hash.hex();
    if (actual !== expected.sha256.toLowerCase()) {
      throw new ContentMismatch(
        new RootcastError({
          code: 'DOWNLOAD_HASH_MISMATCH',
          message: `${url} has sha256 ${actual}, expected ${expected.sha256}`,
          hint: 'The mirror may be mid-sync or tampered with; retry later or use another mirror.',
          details: { url, expectedSha256: expected.sha256, actualSha256: actual },
        }),
      );
    }
  }
}

function statusError(url: string, status: number): Error {
  if (status >= 500 || status === 408 || status === 429) {
    return new TransientError(
      `HTTP ${status}`,
      new RootcastError({
        code: 'HTTP_FAILED',
        message: `GET ${url} failed with HTTP ${status}`,
        hint: 'The server is failing or overloaded; retry later or use another mirror.',
        details: { url, status },
      }),
    );
  }
  if (status === 404 || status === 410) {
    return new RootcastError({
      code: 'HTTP_NOT_FOUND',
      message: `GET ${url}: not found (HTTP ${status})`,
      hint: 'Check the repository URI, suite and component; the mirror may have dropped this file.',
      details: { url, status },
    });
  }
  return new RootcastError({
    code: 'HTTP_FAILED',
    message: `GET ${url} failed with HTTP ${status}`,
    hint: 'Check the repository URI and any proxy settings (http_proxy, https_proxy, no_proxy).',
    details: { url, status },
  });
}

function networkError(url: string, cause: unknown): RootcastError {
  return new RootcastError({
    code: 'HTTP_NETWORK',
    message: `GET ${url} failed: ${describeError(cause)}`,
    hint: 'Check the network, the mirror and any proxy settings (http_proxy, https_proxy, no_proxy).',
    details: { url },
    cause,
  });
}

const LOCAL_FAILURES = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'EMFILE', 'ENFILE']);

/** Errors of this machine (disk full, permissions) are not the network's fault. */
function otherError(url: string, cause: unknown): RootcastError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code && LOCAL_FAILURES.has(code)) {
    return new RootcastError({
      code: 'STORE_WRITE_FAILED',
      message: `cannot store ${url}: ${describeError(cause)}`,
      hint: 'Check free space and permissions of the store directory (--store / ROOTCAST_STORE).',
      cause,
    });
  }
  return networkError(url, cause);
}

function tooLarge(url: string, limit: number, received: number): RootcastError {
  return new RootcastError({
    code: 'DOWNLOAD_SIZE_MISMATCH',
    message: `${url} sent more than ${limit} bytes (${received} so far)`,
    hint: 'The mirror may be mid-sync or hostile; retry later or use another mirror.',
    details: { url, expectedSize: limit, actualSize: received },
  });
}

function abortError(url: string, reason: unknown): RootcastError {
  return new RootcastError({
    code: 'ABORTED',
    message: `GET ${url} was cancelled`,
    hint: 'The operation was cancelled; run it again to continue.',
    cause: reason,
  });
}

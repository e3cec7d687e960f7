import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { rootCertificates } from 'node:tls';
import { type Dispatcher, EnvHttpProxyAgent, request } from 'undici';
import { describeError, inputError, RootcastError } from '../core/errors.js';
import { defaultUserAgent } from '../fetch/http.js';
import {
  basicAuthorization,
  type Challenge,
  mergeScopes,
  parseChallenge,
  tokenFromResponse,
  tokenUrl,
} from './auth.js';
import type { Credentials } from './credentials.js';
import { isLoopbackHost, type RegistryRef } from './reference.js';

/**
 * An HTTP client for one registry (the distribution spec's `/v2/` API), over undici.
 *
 * Lifecycle: `RegistryClient.open(options)` checks the transport policy, loads the CA file
 * and pings `/v2/`, learning the registry's authentication challenge (and, for Bearer,
 * getting a token for the scopes the operation needs) before any request with a body is
 * sent; then `send()` as often as needed, concurrently; then `close()`.
 *
 * Invariants:
 * - Plain HTTP only with `insecure`, and only to localhost, 127.0.0.1 or ::1; everything else
 *   is HTTPS, verified against the system roots plus the optional CA file.
 * - Credentials (Basic, or the Bearer token) go only to the registry's own origin and, for
 *   the token, to the realm the registry named. Redirects are followed (for downloads) with
 *   no `Authorization` header at all, and never from HTTPS down to HTTP outside loopback.
 * - A 401 is answered once: with new credentials (Basic) or a new token (Bearer); a second
 *   401 is `REGISTRY_UNAUTHORIZED`. Bodies are given as factories, so that retry resends
 *   them whole.
 * - GET and HEAD are retried on connection failures, 429 and 5xx (3 attempts); requests
 *   with a body are not.
 */
export interface RegistryClientOptions {
  ref: Pick<RegistryRef, 'registry' | 'hostname'>;
  /** Allow plain HTTP (loopback hosts only). */
  insecure?: boolean;
  /** PEM file of extra CA certificates to trust, besides the system roots. */
  caFile?: string;
  credentials?: Credentials;
  /** Token scopes the operation needs (`repository:<name>:pull,push`). */
  scopes: string[];
  /** Instead of the environment-configured agent (tests, embedding); not closed by `close()`. */
  dispatcher?: Dispatcher;
  signal?: AbortSignal;
}

export type Body = Buffer | NodeJS.ReadableStream | AsyncIterable<Uint8Array>;

export interface SendOptions {
  headers?: Record<string, string>;
  /** Called once per attempt; a body must be produced afresh each time. */
  body?: () => Body | Promise<Body>;
  /** Follow redirects, without credentials (blob downloads). */
  followRedirects?: boolean;
}

export interface RegistryResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered (after redirects). */
  url: URL;
}

const MAX_REDIRECTS = 5;
const ATTEMPTS = 3;

export class RegistryClient {
  private authorization: string | undefined;
  private basicSent = false;
  private readonly triedTokens = new Set<string>();

  private constructor(
    readonly base: URL,
    private readonly options: RegistryClientOptions,
    private readonly dispatcher: Dispatcher,
    private readonly ownsDispatcher: boolean,
  ) {}

  static async open(options: RegistryClientOptions): Promise<RegistryClient> {
    const { registry, hostname } = options.ref;
    if (options.insecure && !isLoopbackHost(hostname)) {
      throw inputError(
        'REGISTRY_INSECURE_NOT_LOCAL',
        `--insecure (plain HTTP) is refused for ${registry}: only localhost, 127.0.0.1 and ::1 may be reached without TLS`,
        'Give the registry a TLS certificate; trust a private CA with --ca-file or ROOTCAST_REGISTRY_CA_FILE.',
      );
    }
    let dispatcher = options.dispatcher;
    if (!dispatcher) {
      let ca: string[] | undefined;
      if (options.caFile) {
        try {
          ca = [...rootCertificates, await readFile(options.caFile, 'utf8')];
        } catch (error) {
          throw inputError(
            'REGISTRY_CA_FILE_UNREADABLE',
            `cannot read the CA file ${options.caFile}: ${describeError(error)}`,
            'Pass a readable PEM file with --ca-file or ROOTCAST_REGISTRY_CA_FILE.',
            error,
          );
        }
      }
      dispatcher = new EnvHttpProxyAgent(ca ? { connect: { ca }, requestTls: { ca } } : {});
    }
    const base = new URL(`${options.insecure ? 'http' : 'https'}://${registry}`);
    const client = new RegistryClient(base, options, dispatcher, !options.dispatcher);
    try {
      await client.ping();
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close().catch(() => {});
  }

  /** `/v2/<repository>/<rest>` on this registry. */
  url(path: string): URL {
    return new URL(path, this.base);
  }

  /** Sends one request; answers 401 once with credentials or a token, then returns any status. */
  async send(method: string, target: URL, options: SendOptions = {}): Promise<RegistryResponse> {
    let response = await this.attempt(method, target, options);
    if (response.status === 401) {
      const challenge = parseChallenge(headerOf(response.headers, 'www-authenticate'));
      await response.body.dump();
      if (!(await this.answer(challenge))) throw this.unauthorized(target, challenge);
      response = await this.attempt(method, target, options);
      if (response.status === 401) {
        await response.body.dump();
        throw this.unauthorized(target, challenge);
      }
    }
    if (response.status === 403) {
      const text = await errorText(response);
      throw new RootcastError({
        code: 'REGISTRY_DENIED',
        message: `${this.options.ref.registry} denied ${method} ${target.pathname}${text}`,
        hint: 'The credentials are valid but lack the right for this repository: check the account, or push elsewhere.',
      });
    }
    if (options.followRedirects && isRedirect(response.status)) return this.follow(method, response, target);
    return response;
  }

  /** An error for an unexpected status, with the registry's own error message when it sent one. */
  async unexpected(what: string, response: RegistryResponse): Promise<RootcastError> {
    const text = await errorText(response);
    return new RootcastError({
      code: 'REGISTRY_HTTP_FAILED',
      message: `${what}: ${this.options.ref.registry} answered HTTP ${response.status}${text}`,
      hint: 'Check the registry (its logs, free space, quotas) and retry.',
      details: { status: response.status, url: response.url.href },
    });
  }

  private async ping(): Promise<void> {
    const target = this.url('/v2/');
    const response = await this.attempt('GET', target, {});
    if (response.status === 401) {
      const challenge = parseChallenge(headerOf(response.headers, 'www-authenticate'));
      await response.body.dump();
      // Authenticate up front when we can, so uploads never need to be replayed after a 401.
      if (this.options.credentials || challenge?.scheme === 'bearer') await this.answer(challenge);
      return;
    }
    if (response.status >= 200 && response.status < 300) {
      await response.body.dump();
      return;
    }
    if (response.status === 404) {
      await response.body.dump();
      throw new RootcastError({
        code: 'REGISTRY_API_UNSUPPORTED',
        message: `${this.options.ref.registry} does not serve the registry API (/v2/ answered 404)`,
        hint: 'Check the host and port: rootcast speaks the OCI distribution API (Docker Registry v2).',
      });
    }
    throw await this.unexpected('checking the registry API (/v2/)', response);
  }

  /** Sets `authorization` for `challenge`; false when there is nothing new to try. */
  private async answer(challenge: Challenge | undefined): Promise<boolean> {
    const credentials = this.options.credentials;
    if (challenge?.scheme === 'basic') {
      if (!credentials || this.basicSent) return false;
      this.authorization = basicAuthorization(credentials.username, credentials.password);
      this.basicSent = true;
      return true;
    }
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      const scopes = mergeScopes([...this.options.scopes, challenge.params.scope ?? '']);
      const key = scopes.join(' ');
      if (this.triedTokens.has(key)) return false;
      this.triedTokens.add(key);
      this.authorization = `Bearer ${await this.fetchToken(challenge, scopes)}`;
      return true;
    }
    return false;
  }

  private async fetchToken(challenge: Challenge, scopes: string[]): Promise<string> {
    let url: URL;
    try {
      url = tokenUrl(challenge, scopes);
    } catch (error) {
      throw this.tokenFailed(`the token realm ${JSON.stringify(challenge.params.realm)} is not a URL`, error);
    }
    this.checkScheme(url);
    const credentials = this.options.credentials;
    const headers: Record<string, string> = { 'user-agent': defaultUserAgent() };
    if (credentials) headers.authorization = basicAuthorization(credentials.username, credentials.password);
    const response = await this.raw('GET', url, headers, undefined);
    if (response.status === 401 || response.status === 403) {
      await response.body.dump();
      throw this.unauthorized(url, challenge);
    }
    if (response.status !== 200) throw await this.unexpected(`getting a token from ${url.origin}`, response);
    let token: string | undefined;
    try {
      token = tokenFromResponse(await response.body.json());
    } catch (error) {
      throw this.tokenFailed('the token endpoint did not answer JSON', error);
    }
    if (!token) throw this.tokenFailed('the token endpoint answered no token');
    return token;
  }

  private tokenFailed(why: string, cause?: unknown): RootcastError {
    return new RootcastError({
      code: 'REGISTRY_TOKEN_FAILED',
      message: `cannot authenticate to ${this.options.ref.registry}: ${why}`,
      hint: 'The registry or its token service is misconfigured; check its WWW-Authenticate realm.',
      cause,
    });
  }

  private unauthorized(target: URL, challenge: Challenge | undefined): RootcastError {
    const has = this.options.credentials;
    return new RootcastError({
      code: 'REGISTRY_UNAUTHORIZED',
      message: has
        ? `${this.options.ref.registry} rejected the credentials from ${has.source} (for ${target.pathname})`
        : `${this.options.ref.registry} requires authentication (for ${target.pathname}) and no credentials were found`,
      hint: has
        ? 'Check the user name and password (docker login, or ROOTCAST_REGISTRY_USERNAME/PASSWORD).'
        : 'Set ROOTCAST_REGISTRY_USERNAME and ROOTCAST_REGISTRY_PASSWORD, or log in with `docker login` (auths in ~/.docker/config.json).',
      details: { registry: this.options.ref.registry, ...(challenge ? { scheme: challenge.scheme } : {}) },
    });
  }

  private async follow(method: string, first: RegistryResponse, from: URL): Promise<RegistryResponse> {
    let response = first;
    let current = from;
    for (let hops = 0; isRedirect(response.status); hops++) {
      const location = headerOf(response.headers, 'location');
      await response.body.dump();
      if (!location || hops >= MAX_REDIRECTS) {
        throw new RootcastError({
          code: 'REGISTRY_REDIRECT_REFUSED',
          message: `${from.pathname}: ${location ? 'too many redirects' : 'a redirect without Location'}`,
          hint: 'The registry or its storage is misconfigured.',
        });
      }
      current = new URL(location, current);
      if (
        current.protocol !== 'https:' &&
        !(this.options.insecure && isLoopbackHost(bare(current.hostname)))
      ) {
        throw new RootcastError({
          code: 'REGISTRY_REDIRECT_REFUSED',
          message: `${from.pathname} redirects to ${current.origin}, which is not HTTPS`,
          hint: 'rootcast downloads only over HTTPS (plain HTTP only to localhost with --insecure).',
        });
      }
      // Storage back ends (S3, CDNs) get presigned URLs: credentials stay with the registry.
      response = await this.attemptWith(method, current, { 'user-agent': defaultUserAgent() }, undefined);
    }
    return response;
  }

  private attempt(method: string, target: URL, options: SendOptions): Promise<RegistryResponse> {
    const headers: Record<string, string> = { 'user-agent': defaultUserAgent(), ...options.headers };
    if (this.authorization && target.origin === this.base.origin) headers.authorization = this.authorization;
    return this.attemptWith(method, target, headers, options.body);
  }

  /** One request, retried when it is safe to (GET/HEAD) and the failure looks transient. */
  private async attemptWith(
    method: string,
    target: URL,
    headers: Record<string, string>,
    body: SendOptions['body'],
  ): Promise<RegistryResponse> {
    this.checkScheme(target);
    const idempotent = method === 'GET' || method === 'HEAD';
    for (let attempt = 1; ; attempt++) {
      let response: RegistryResponse;
      try {
        response = await this.raw(method, target, headers, body ? await body() : undefined);
      } catch (error) {
        if (idempotent && attempt < ATTEMPTS && !isTlsError(error)) {
          await sleep(200 * 4 ** (attempt - 1));
          continue;
        }
        throw this.networkError(target, error);
      }
      if (idempotent && attempt < ATTEMPTS && (response.status === 429 || response.status >= 500)) {
        await response.body.dump();
        await sleep(200 * 4 ** (attempt - 1));
        continue;
      }
      return response;
    }
  }

  private async raw(
    method: string,
    target: URL,
    headers: Record<string, string>,
    body: Body | undefined,
  ): Promise<RegistryResponse> {
    const response = await request(target, {
      method: method as Dispatcher.HttpMethod,
      headers,
      dispatcher: this.dispatcher,
      ...(body !== undefined ? { body: body as Dispatcher.DispatchOptions['body'] } : {}),
      ...(this.options.signal ? { signal: this.options.signal } : {}),
    });
    return { status: response.statusCode, headers: response.headers, body: response.body, url: target };
  }

  private checkScheme(url: URL): void {
    if (url.protocol === 'https:') return;
    if (url.protocol === 'http:' && this.options.insecure && isLoopbackHost(bare(url.hostname))) return;
    throw inputError(
      'REGISTRY_INSECURE_NOT_LOCAL',
      `refusing plain HTTP to ${url.origin}`,
      'Only localhost, 127.0.0.1 and ::1 may be reached without TLS, and only with --insecure.',
    );
  }

  private networkError(target: URL, error: unknown): RootcastError {
    if (isTlsError(error)) {
      return new RootcastError({
        code: 'REGISTRY_TLS_FAILED',
        message: `TLS with ${target.host} failed: ${describeError(error)}`,
        hint: "Trust the registry's CA with --ca-file (or ROOTCAST_REGISTRY_CA_FILE); for a local plain-HTTP registry use --insecure.",
        cause: error,
      });
    }
    return new RootcastError({
      code: 'REGISTRY_UNREACHABLE',
      message: `cannot reach ${target.host}: ${describeError(error)}`,
      hint: 'Check the host and port, that the registry runs, and your proxy settings; for a local plain-HTTP registry use --insecure.',
      cause: error,
    });
  }
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/** `[::1]` → `::1`. */
function bare(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
}

export function headerOf(headers: RegistryResponse['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function isTlsError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = String((e as NodeJS.ErrnoException).code ?? '');
    if (/CERT|TLS|SSL|UNABLE_TO_VERIFY|SELF_SIGNED/.test(code) || /certificate|SSL routines/i.test(e.message))
      return true;
    e = e.cause;
  }
  return false;
}

/** ` (<registry's first error message>)`, or '' — consumes the body. */
async function errorText(response: RegistryResponse): Promise<string> {
  try {
    const text = await response.body.text();
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) return `: ${[first.code, first.message].filter(Boolean).join(' ')}`;
  } catch {
    // not JSON: the status says enough
  }
  return '';
}

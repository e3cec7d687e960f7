import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createContext } from '../../src/core/context.js';
import { sha256Hex } from '../../src/core/digest.js';
import { RootcastError } from '../../src/core/errors.js';
import { HttpClient } from '../../src/fetch/http.js';
import { fetchPackages, type PackageToFetch } from '../../src/fetch/package-cache.js';
import { startFileServer, type TestServer } from '../helpers/http-server.js';
import { createSignedRepo, type SignedRepo } from '../helpers/signed-repo.js';

let repo: SignedRepo;
let server: TestServer;
let store: string;

beforeAll(async () => {
  repo = await createSignedRepo({ packagesPerComponent: 12 });
  server = await startFileServer(repo.root);
});

afterAll(async () => {
  await server.close();
  await repo.cleanup();
});

beforeEach(async () => {
  store = await mkdtemp(join(tmpdir(), 'rootcast-'));
  server.setFaults(undefined);
  server.resetCounts();
});

afterEach(async () => {
  await rm(store, { recursive: true, force: true });
});

const fastClient = () => new HttpClient({ backoffMs: 2, maxBackoffMs: 20 });

function itemsFor(r: SignedRepo, baseUri: string): PackageToFetch[] {
  return r.packages.map((p) => ({
    name: p.name,
    version: p.version,
    baseUri,
    path: p.path,
    size: p.size,
    sha256: p.sha256,
  }));
}

/** Every file under the store, relative; temp files included, so leftovers show. */
async function storeFiles(): Promise<string[]> {
  const entries = await readdir(store, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(store.length + 1));
}

async function expectError(promise: Promise<unknown>): Promise<RootcastError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RootcastError);
  const rootcast = error as RootcastError;
  expect(rootcast.hint.length).toBeGreaterThan(0);
  return rootcast;
}

describe('fetchPackages', () => {
  it('downloads every package into the cache by hash, then reuses them without a request', async () => {
    const ctx = createContext({ store });
    const items = itemsFor(repo, server.url);
    const http = fastClient();
    const first = await fetchPackages(items, ctx, { http });
    expect(first).toEqual({
      downloaded: items.length,
      reused: 0,
      bytes: items.reduce((n, i) => n + i.size, 0),
    });
    for (const item of items) {
      expect(sha256Hex(await readFile(join(store, 'packages', 'sha256', item.sha256)))).toBe(item.sha256);
    }
    // The fixture's packages are real archives, readable by dpkg.
    const first0 = join(store, 'packages', 'sha256', items[0]!.sha256);
    expect(execFileSync('dpkg-deb', ['--field', first0, 'Package'], { encoding: 'utf8' }).trim()).toBe(
      items[0]!.name,
    );
    server.resetCounts();
    const second = await fetchPackages(items, ctx, { http, verify: true });
    expect(second).toEqual({ downloaded: 0, reused: items.length, bytes: 0 });
    expect(server.total()).toBe(0);
    await http.close();
  });

  it('refuses a package whose bytes differ from the index: PACKAGE_HASH_MISMATCH, nothing cached', async () => {
    const ctx = createContext({ store });
    const items = itemsFor(repo, server.url);
    const victim = repo.packages[2]!;
    await repo.tamper(victim.path);
    try {
      const error = await expectError(fetchPackages(items, ctx, { http: fastClient() }));
      expect(error.code).toBe('PACKAGE_HASH_MISMATCH');
      expect(error.message).toContain(victim.name);
      // Retried once (a mirror mid-sync), not forever.
      expect(server.count(`/${victim.path}`)).toBe(2);
      const files = await storeFiles();
      expect(files).not.toContain(join('packages', 'sha256', victim.sha256));
      expect(files.filter((f) => f.includes('.tmp-'))).toEqual([]);
    } finally {
      await repo.write(victim.path, victim.bytes);
    }
  });

  it('replaces a damaged cached file instead of reusing it', async () => {
    const ctx = createContext({ store });
    const items = itemsFor(repo, server.url).slice(0, 1);
    await fetchPackages(items, ctx, { http: fastClient() });
    const cached = join(store, 'packages', 'sha256', items[0]!.sha256);
    const bytes = await readFile(cached);
    bytes[0] = (bytes[0]! + 1) & 0xff;
    await writeFile(cached, bytes);
    const again = await fetchPackages(items, ctx, { http: fastClient(), verify: true });
    expect(again.downloaded).toBe(1);
    expect(sha256Hex(await readFile(cached))).toBe(items[0]!.sha256);
  });

  it('completes with correct hashes through dropped connections, truncated bodies and 500s', async () => {
    server.setFaults({ dropEvery: 3, truncateEvery: 4, errorEvery: 7 });
    const ctx = createContext({ store, concurrency: 4 });
    const items = itemsFor(repo, server.url);
    const http = fastClient();
    const result = await fetchPackages(items, ctx, { http });
    expect(result.downloaded).toBe(items.length);
    expect(server.faultsInjected()).toBeGreaterThanOrEqual(items.length / 3);
    expect(http.stats.retries).toBe(server.faultsInjected());
    for (const item of items) {
      expect(sha256Hex(await readFile(join(store, 'packages', 'sha256', item.sha256)))).toBe(item.sha256);
    }
    expect((await storeFiles()).filter((f) => f.includes('.tmp-'))).toEqual([]);
    await http.close();
  });

  it('gives up after the retry budget when the server keeps failing', async () => {
    server.setFaults({ errorEvery: 1 });
    const ctx = createContext({ store });
    const http = new HttpClient({ retries: 2, backoffMs: 1, maxBackoffMs: 2 });
    const error = await expectError(fetchPackages(itemsFor(repo, server.url).slice(0, 1), ctx, { http }));
    expect(error.code).toBe('HTTP_FAILED');
    expect(server.total()).toBe(3);
    await http.close();
  });

  it('fails a missing package at once with HTTP_NOT_FOUND naming the URL and the package', async () => {
    const ctx = createContext({ store });
    const item = { ...itemsFor(repo, server.url)[0]!, path: 'pool/main/n/nope/nope_1_amd64.deb' };
    const error = await expectError(fetchPackages([item], ctx, { http: fastClient() }));
    expect(error.code).toBe('HTTP_NOT_FOUND');
    expect(error.message).toContain(`${server.url}/pool/main/n/nope/nope_1_amd64.deb`);
    expect(error.message).toContain(item.name);
    expect(server.count('/pool/main/n/nope/nope_1_amd64.deb')).toBe(1);
    expect(await storeFiles()).toEqual([]);
  });

  it('reports each file as soon as it is in the cache, downloads largest first', async () => {
    const ctx = createContext({ store });
    const items = itemsFor(repo, server.url);
    const cachedFirst = items[0]!;
    const http = fastClient();
    await fetchPackages([cachedFirst], ctx, { http });
    server.resetCounts();
    const seen: string[] = [];
    const onAvailable = (sha256: string) => {
      // Reported only once the verified file is in place.
      expect(
        execFileSync('sha256sum', [join(store, 'packages', 'sha256', sha256)], { encoding: 'utf8' }),
      ).toMatch(new RegExp(`^${sha256} `));
      seen.push(sha256);
    };
    await fetchPackages([...items, ...items], ctx, { http, onAvailable });
    await http.close();
    expect(seen[0]).toBe(cachedFirst.sha256);
    expect([...seen].sort()).toEqual(items.map((i) => i.sha256).sort());
    // Eight at a time, largest first: the server sees the eight largest before any other
    // (the ninth starts only once one of them has finished).
    const requested = server.log.map((path) => items.find((i) => path.endsWith(i.path))!.size);
    const missing = items.filter((i) => i !== cachedFirst).map((i) => i.size);
    const largest = [...missing].sort((a, b) => b - a).slice(0, 8);
    expect(requested.slice(0, 8).sort((a, b) => b - a)).toEqual(largest);
  });

  it('stops when the context is aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const ctx = createContext({ store, signal: controller.signal });
    const error = await expectError(fetchPackages(itemsFor(repo, server.url), ctx, { http: fastClient() }));
    expect(error.code).toBe('ABORTED');
    expect(await storeFiles()).toEqual([]);
  });
});

describe('HttpClient', () => {
  it('checks getBuffer content against the expected size and hash', async () => {
    const pkg = repo.packages[0]!;
    const http = fastClient();
    const body = await http.getBuffer(`${server.url}/${pkg.path}`, {
      expected: { size: pkg.size, sha256: pkg.sha256 },
    });
    expect(sha256Hex(body)).toBe(pkg.sha256);
    const error = await expectError(
      http.getBuffer(`${server.url}/${pkg.path}`, { expected: { sha256: '0'.repeat(64) } }),
    );
    expect(error.code).toBe('DOWNLOAD_HASH_MISMATCH');
    const tooBig = await expectError(http.getBuffer(`${server.url}/${pkg.path}`, { maxBytes: 100 }));
    expect(tooBig.code).toBe('DOWNLOAD_SIZE_MISMATCH');
    await http.close();
  });

  it('streams each attempt to a fresh consumer, ends it only with a verified body', async () => {
    const pkg = repo.packages[1]!;
    const http = fastClient();
    const attempts: { bytes: number; ended?: Buffer; aborted: boolean }[] = [];
    const consumer = () => {
      const attempt: { bytes: number; ended?: Buffer; aborted: boolean } = { bytes: 0, aborted: false };
      attempts.push(attempt);
      return {
        write: (chunk: Buffer) => {
          attempt.bytes += chunk.length;
        },
        end: async (body: Buffer) => {
          attempt.ended = body;
        },
        abort: () => {
          attempt.aborted = true;
        },
      };
    };
    server.setFaults({ truncateEvery: 1, maxFaults: 1 });
    const body = await http.getBuffer(`${server.url}/${pkg.path}`, {
      expected: { size: pkg.size, sha256: pkg.sha256 },
      consumer,
    });
    expect(sha256Hex(body)).toBe(pkg.sha256);
    expect(attempts).toHaveLength(2);
    expect(attempts[0]?.aborted).toBe(true);
    expect(attempts[0]?.ended).toBeUndefined();
    expect(attempts[0]!.bytes).toBeGreaterThan(0);
    expect(attempts[1]).toMatchObject({ aborted: false, bytes: pkg.size });
    expect(attempts[1]!.ended?.equals(body)).toBe(true);

    // A mismatching body is retried once, each attempt aborted, none ended.
    attempts.length = 0;
    const mismatch = await expectError(
      http.getBuffer(`${server.url}/${pkg.path}`, { expected: { sha256: '0'.repeat(64) }, consumer }),
    );
    expect(mismatch.code).toBe('DOWNLOAD_HASH_MISMATCH');
    expect(attempts.map((a) => [a.aborted, a.ended])).toEqual([
      [true, undefined],
      [true, undefined],
    ]);

    // What the consumer throws at the end is final: no retry.
    attempts.length = 0;
    const refused = new RootcastError({ code: 'INDEX_MALFORMED', message: 'no', hint: 'none' });
    const ending = await expectError(
      http.getBuffer(`${server.url}/${pkg.path}`, {
        consumer: () => ({ ...consumer(), end: () => Promise.reject(refused) }),
      }),
    );
    expect(ending).toBe(refused);
    expect(attempts).toHaveLength(1);
    await http.close();
  });

  describe('through a proxy from the environment', () => {
    let proxy: Server;
    let proxied: string[];
    const saved: Record<string, string | undefined> = {};
    const names = ['http_proxy', 'HTTP_PROXY', 'no_proxy', 'NO_PROXY'];

    beforeAll(async () => {
      proxied = [];
      // A minimal forward proxy: absolute-form requests, relayed to the origin.
      proxy = createServer((req, res) => {
        proxied.push(req.url ?? '');
        const target = new URL(req.url ?? '');
        const upstream = httpRequest(
          {
            host: target.hostname,
            port: target.port,
            path: target.pathname + target.search,
            headers: req.headers,
          },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.on('error', () => res.destroy());
        req.pipe(upstream);
      });
      await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
      for (const name of names) saved[name] = process.env[name];
      for (const name of names) delete process.env[name];
      process.env.http_proxy = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      for (const name of names) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    });

    it('sends requests through http_proxy', async () => {
      const ctx = createContext({ store });
      const items = itemsFor(repo, server.url).slice(0, 3);
      const result = await fetchPackages(items, ctx);
      expect(result.downloaded).toBe(3);
      expect(proxied.sort()).toEqual(items.map((i) => `${server.url}/${i.path}`).sort());
      expect(server.total()).toBe(3);
    });

    it('bypasses the proxy for hosts in no_proxy', async () => {
      process.env.no_proxy = '127.0.0.1';
      try {
        proxied.length = 0;
        const result = await fetchPackages(itemsFor(repo, server.url).slice(0, 2), createContext({ store }));
        expect(result.downloaded).toBe(2);
        expect(proxied).toEqual([]);
      } finally {
        delete process.env.no_proxy;
      }
    });
  });
});

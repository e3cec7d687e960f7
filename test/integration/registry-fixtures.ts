import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, utimes, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { SPDX_MEDIA_TYPE } from '../../src/sbom/spdx.js';
import { openBlobStore } from '../../src/store/blob-store.js';
import { compressToBlob } from '../../src/store/compress.js';
import { createStagingDir, placeLayerTree } from '../../src/store/layers.js';
import {
  ANNOTATION,
  type ImageConfig,
  type ImageManifest,
  MEDIA_TYPE_CONFIG,
  MEDIA_TYPE_LAYER_ZSTD,
  MEDIA_TYPE_LOCK,
  MEDIA_TYPE_MANIFEST,
} from '../../src/store/oci.js';
import { tarTree } from '../../src/store/tar-writer.js';
import { readTemplate } from '../../src/store/template-query.js';
import { commitTemplate, tagTemplate } from '../../src/store/templates.js';
import { buildFixtureTree, FIXTURE_EPOCH, OLD_MTIME } from './store-fixtures.js';

/**
 * Registry test fixtures: Debian's `docker-registry` (distribution 2.8) started on
 * 127.0.0.1 per test file, a fault-injecting proxy in front of it, and synthetic templates
 * (a base, and a child layer with OCI whiteouts whose manifest is made by hand until
 * `commitTemplate({ parent })` exists).
 */
export interface RunningRegistry {
  /** `127.0.0.1:<port>` (the registry part of a reference). */
  host: string;
  dir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startRegistry(
  dir: string,
  options: { htpasswd?: { username: string; password: string }; tls?: { cert: string; key: string } } = {},
): Promise<RunningRegistry> {
  await mkdir(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(8).toString('hex')}`,
  ];
  if (options.tls)
    lines.push('  tls:', `    certificate: ${options.tls.cert}`, `    key: ${options.tls.key}`);
  if (options.htpasswd) {
    const file = join(dir, 'htpasswd');
    const entry = execFileSync('htpasswd', ['-Bbn', options.htpasswd.username, options.htpasswd.password]);
    await writeFile(file, entry);
    lines.push('auth:', '  htpasswd:', '    realm: rootcast-test', `    path: ${file}`);
  }
  const config = join(dir, 'config.yml');
  await writeFile(config, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn('docker-registry', ['serve', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const scheme = options.tls ? 'https' : 'http';
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    try {
      await new Promise<void>((resolve, reject) => {
        if (scheme === 'https') {
          // A TCP connect is enough to know it listens.
          const socket = new Socket();
          socket.once('error', reject);
          socket.connect(port, '127.0.0.1', () => {
            socket.destroy();
            resolve();
          });
          return;
        }
        const req = httpRequest({ host: '127.0.0.1', port, path: '/v2/' }, (res) => {
          res.resume();
          resolve();
        });
        req.once('error', reject);
        req.end();
      });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`docker-registry did not start: ${stderr}`);
      await sleep(100);
    }
  }
  return {
    host: `127.0.0.1:${port}`,
    dir,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** What the proxy does to the traffic it forwards. */
export interface ProxyPlan {
  /** Flip a byte in the body of GET /v2/<repo>/blobs/<this digest>. */
  corruptBlob?: string;
  /** Require Bearer tokens, issued by the proxy's /token for these credentials. */
  bearer?: { username: string; password: string };
  /** Answer blob GETs with a 307 to another origin (a "storage" server) serving the bytes. */
  redirectBlobs?: boolean;
  /** Refuse monolithic upload PUTs that carry a body (413), forcing chunked uploads. */
  rejectMonolithic?: boolean;
}

export interface RegistryProxy {
  host: string;
  plan: ProxyPlan;
  /** `METHOD path` of every request the proxy saw. */
  log: string[];
  /** Requests the storage server got, and whether each carried an Authorization header. */
  storage: { path: string; authorization: boolean }[];
  tokens: { scopes: string[] }[];
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>) {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    handler(req, res).catch(() => req.socket.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function forward(
  upstream: string,
  req: IncomingMessage,
  path: string,
  headers: Record<string, string | string[] | undefined>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const [host, port] = upstream.split(':');
  return new Promise((resolve, reject) => {
    const out = httpRequest({ host, port: Number(port), method: req.method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    out.on('error', reject);
    req.pipe(out);
  });
}

export async function startRegistryProxy(upstream: string, plan: ProxyPlan = {}): Promise<RegistryProxy> {
  const log: string[] = [];
  const storage: RegistryProxy['storage'] = [];
  const tokens: RegistryProxy['tokens'] = [];
  const issued = new Set<string>();
  const storageServer = await listen(async (req, res) => {
    storage.push({ path: req.url ?? '', authorization: req.headers.authorization !== undefined });
    const up = await forward(upstream, req, `/v2${req.url ?? ''}`, {});
    res.writeHead(up.status, { 'content-length': up.body.length }).end(up.body);
  });
  const proxy = await listen(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    log.push(`${req.method} ${url.pathname}`);
    if (url.pathname === '/token') {
      const expected = `Basic ${Buffer.from(`${plan.bearer?.username}:${plan.bearer?.password}`).toString('base64')}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401).end();
        return;
      }
      const token = randomBytes(8).toString('hex');
      issued.add(token);
      tokens.push({ scopes: url.searchParams.getAll('scope') });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token }));
      return;
    }
    const repo = /^\/v2\/(.+?)\/(blobs|manifests|tags)\//.exec(url.pathname)?.[1];
    if (plan.bearer) {
      const auth = req.headers.authorization ?? '';
      if (!auth.startsWith('Bearer ') || !issued.has(auth.slice(7))) {
        const scope = repo ? `,scope="repository:${repo}:pull"` : '';
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="http://${proxyHost()}/token",service="proxy-test"${scope}`,
            'content-type': 'application/json',
          })
          .end('{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}');
        req.resume();
        return;
      }
    }
    const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (blob && req.method === 'GET' && plan.redirectBlobs) {
      res.writeHead(307, { location: `http://${storageServer.host}/${blob[1]}/blobs/${blob[2]}` }).end();
      return;
    }
    if (plan.rejectMonolithic && req.method === 'PUT' && url.pathname.includes('/blobs/uploads/')) {
      if (Number(req.headers['content-length'] ?? 0) > 0) {
        req.resume();
        res.writeHead(413).end();
        return;
      }
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    const up = await forward(upstream, req, req.url ?? '/', headers);
    let body = up.body;
    if (blob && req.method === 'GET' && blob[2] === plan.corruptBlob && body.length > 0) {
      body = Buffer.from(body);
      const i = Math.floor(body.length / 2);
      body[i] = (body[i] ?? 0) ^ 0xff;
    }
    const outHeaders = { ...up.headers };
    delete outHeaders['transfer-encoding'];
    delete outHeaders.connection;
    if (req.method !== 'HEAD') outHeaders['content-length'] = String(body.length);
    res.writeHead(up.status, outHeaders).end(req.method === 'HEAD' ? undefined : body);
  });
  const proxyHost = () => proxy.host;
  return {
    host: proxy.host,
    plan,
    log,
    storage,
    tokens,
    async close() {
      await proxy.close();
      await storageServer.close();
    },
  };
}

export const LOCK_TEXT = '{"lockVersion":1,"packages":[]}\n';
const RECIPE = 'sha256:1111111111111111111111111111111111111111111111111111111111111111';

/** A base template (the rich store fixture tree) with a lock and an SBOM. */
export async function commitBase(store: string, name = 'base', version = '1.0') {
  const tree = await createStagingDir(store);
  await buildFixtureTree(tree);
  return commitTemplate({
    store,
    name,
    version,
    tree,
    clampTree: true,
    sourceDateEpoch: FIXTURE_EPOCH,
    arch: 'amd64',
    lock: LOCK_TEXT,
    sbom: JSON.stringify({ spdxVersion: 'SPDX-2.3', name }),
    recipeDigest: RECIPE,
    cacheKey: `sha256:${'3'.repeat(63)}${name.length % 10}`,
  });
}

/**
 * A child template on `parentRef`: one layer whose tar holds OCI whiteouts (`etc/.wh.hostname`
 * hides the base's /etc/hostname, `usr/share/.wh..wh..opq` makes /usr/share opaque) and new
 * files; its unpacked directory is the overlay form, made by hand, so a pull can be compared.
 */
export async function commitChild(store: string, parentRef: string, name = 'child', version = '1.0') {
  const parent = await readTemplate(store, parentRef);
  const oci = await createStagingDir(store);
  const overlay = await createStagingDir(store);
  for (const root of [oci, overlay]) {
    await mkdir(join(root, 'etc'), { mode: 0o755 });
    await mkdir(join(root, 'usr/share'), { recursive: true, mode: 0o755 });
    await writeFile(join(root, 'etc/child.conf'), 'child\n');
    await writeFile(join(root, 'usr/share/new'), 'only this is left in /usr/share\n');
  }
  await writeFile(join(oci, 'etc/.wh.hostname'), '');
  await writeFile(join(oci, 'usr/share/.wh..wh..opq'), '');
  execFileSync('mknod', ['-m', '0644', join(overlay, 'etc/hostname'), 'c', '0', '0']);
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(overlay, 'usr/share')]);
  for (const root of [oci, overlay]) {
    const paths = [
      'etc/child.conf',
      'usr/share/new',
      'etc/hostname',
      'etc/.wh.hostname',
      'usr/share/.wh..wh..opq',
    ];
    for (const p of paths) await chmod(join(root, p), 0o644).catch(() => {});
    for (const p of [...paths, 'usr/share', 'usr', 'etc'])
      await utimes(join(root, p), OLD_MTIME, OLD_MTIME).catch(() => {});
  }
  const blobs = openBlobStore(store);
  const { stream } = tarTree(oci, { sourceDateEpoch: FIXTURE_EPOCH });
  const layer = await compressToBlob(stream, blobs, { level: 3 });
  await placeLayerTree(store, layer.diffId, overlay);
  const lock = await blobs.putBytes(Buffer.from(`${LOCK_TEXT}\n`), MEDIA_TYPE_LOCK);
  const sbom = await blobs.putBytes(
    Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', name })),
    SPDX_MEDIA_TYPE,
  );
  const config: ImageConfig = {
    ...parent.config,
    rootfs: { type: 'layers', diff_ids: [...parent.config.rootfs.diff_ids, layer.diffId] },
    history: [...(parent.config.history ?? []), { created_by: `rootcast build ${name}:${version}` }],
  };
  const configDesc = await blobs.putBytes(Buffer.from(canonicalJson(config)), MEDIA_TYPE_CONFIG);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: configDesc,
    layers: [
      ...parent.manifest.layers,
      { mediaType: MEDIA_TYPE_LAYER_ZSTD, digest: layer.digest, size: layer.size },
    ],
    annotations: {
      [ANNOTATION.title]: name,
      [ANNOTATION.version]: version,
      [ANNOTATION.lock]: lock.digest,
      [ANNOTATION.sbom]: sbom.digest,
      'org.rootcast.parent': parent.manifestDigest,
    },
  };
  const manifestDesc = await blobs.putBytes(Buffer.from(canonicalJson(manifest)), MEDIA_TYPE_MANIFEST);
  await tagTemplate(store, manifestDesc.digest, name, version);
  return { manifestDigest: manifestDesc.digest, layer, configDigest: configDesc.digest, lock, sbom };
}

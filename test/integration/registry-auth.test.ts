import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pull, push } from '../../src/api/registry.js';
import { commitBase, type RunningRegistry, startRegistry, startRegistryProxy } from './registry-fixtures.js';

const USER = 'student';
const PASSWORD = 'correct horse';

describe('registry authentication and TLS', () => {
  let dir: string;
  let store: string;
  let registry: RunningRegistry;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    store = join(dir, 'store');
    registry = await startRegistry(join(dir, 'registry'), {
      htpasswd: { username: USER, password: PASSWORD },
    });
    await commitBase(store);
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const noCredentials = () => ({ HOME: join(dir, 'nohome') });

  it('fails with a clear error without credentials, and with wrong ones', async () => {
    const attempt = push('base:1.0', `${registry.host}/auth/base`, {
      store,
      insecure: true,
      env: noCredentials(),
    });
    await expect(attempt).rejects.toMatchObject({ code: 'REGISTRY_UNAUTHORIZED', exitCode: 1 });
    await expect(attempt).rejects.toThrow(/requires authentication/);
    await expect(
      push('base:1.0', `${registry.host}/auth/base`, {
        store,
        insecure: true,
        env: { ...noCredentials(), ROOTCAST_REGISTRY_USERNAME: USER, ROOTCAST_REGISTRY_PASSWORD: 'wrong' },
      }),
    ).rejects.toThrow(/rejected the credentials from ROOTCAST_REGISTRY_USERNAME/);
  });

  it('pushes and pulls with Basic credentials from the environment', async () => {
    const env = {
      ...noCredentials(),
      ROOTCAST_REGISTRY_USERNAME: USER,
      ROOTCAST_REGISTRY_PASSWORD: PASSWORD,
    };
    const summary = await push('base:1.0', `${registry.host}/auth/base`, { store, insecure: true, env });
    expect(summary).toMatchObject({ pushed: 4 });
    const pulled = await pull(`${registry.host}/auth/base:1.0`, {
      store: join(dir, 'p1'),
      insecure: true,
      env,
    });
    expect(pulled.digest).toBe(summary.digest);
  });

  it('reads credentials from $DOCKER_CONFIG/config.json', async () => {
    const config = join(dir, 'docker');
    await mkdir(config, { recursive: true });
    const auth = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
    await writeFile(
      join(config, 'config.json'),
      JSON.stringify({ auths: { [`http://${registry.host}`]: { auth } } }),
    );
    const summary = await push('base:1.0', `${registry.host}/auth/other:2`, {
      store,
      insecure: true,
      env: { ...noCredentials(), DOCKER_CONFIG: config },
    });
    // Mounted from auth/base, which the store remembers pushing to.
    expect(summary).toMatchObject({ mounted: 4, pushed: 0 });
  });

  it('gets a Bearer token from the realm the registry names, with the scopes it needs', async () => {
    const open = await startRegistry(join(dir, 'open-registry'));
    const proxy = await startRegistryProxy(open.host, { bearer: { username: USER, password: PASSWORD } });
    try {
      const env = {
        ...noCredentials(),
        ROOTCAST_REGISTRY_USERNAME: USER,
        ROOTCAST_REGISTRY_PASSWORD: PASSWORD,
      };
      const summary = await push('base:1.0', `${proxy.host}/tok/base`, { store, insecure: true, env });
      expect(summary).toMatchObject({ pushed: 4 });
      expect(proxy.tokens[0]?.scopes).toEqual(['repository:tok/base:pull,push']);
      const pulled = await pull(`${proxy.host}/tok/base:1.0`, {
        store: join(dir, 'p2'),
        insecure: true,
        env,
      });
      expect(pulled.digest).toBe(summary.digest);
      await expect(
        pull(`${proxy.host}/tok/base:1.0`, { store: join(dir, 'p3'), insecure: true, env: noCredentials() }),
      ).rejects.toMatchObject({ code: 'REGISTRY_UNAUTHORIZED' });
    } finally {
      await proxy.close();
      await open.stop();
    }
  });

  it('trusts a private CA only when given --ca-file', async () => {
    const pki = join(dir, 'pki');
    await mkdir(pki);
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: 'ignore' });
    ssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=rootcast test CA',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    );
    ssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      'srv.key',
      '-out',
      'srv.csr',
    );
    await writeFile(join(pki, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
    ssl(
      'x509',
      '-req',
      '-in',
      'srv.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'ext',
      '-out',
      'srv.pem',
    );
    const tls = await startRegistry(join(dir, 'tls-registry'), {
      tls: { cert: join(pki, 'srv.pem'), key: join(pki, 'srv.key') },
    });
    try {
      await expect(
        push('base:1.0', `${tls.host}/tls/base`, { store, env: noCredentials() }),
      ).rejects.toMatchObject({ code: 'REGISTRY_TLS_FAILED' });
      const summary = await push('base:1.0', `${tls.host}/tls/base`, {
        store,
        env: { ...noCredentials(), ROOTCAST_REGISTRY_CA_FILE: join(pki, 'ca.pem') },
      });
      expect(summary.pushed).toBe(4);
    } finally {
      await tls.stop();
    }
  });
});

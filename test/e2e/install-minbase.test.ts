import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clampMtimes } from '../../src/assemble/clamp-mtimes.js';
import { cleanupTree } from '../../src/assemble/cleanup.js';
import { configurePackages } from '../../src/assemble/configure.js';
import { registerUnpacked } from '../../src/assemble/dpkg-db.js';
import { runInSandbox } from '../../src/assemble/sandbox.js';
import type { PackageFile } from '../../src/assemble/types.js';
import { setupMergedUsr, unpackPackages } from '../../src/assemble/unpack.js';
import type { RootcastError } from '../../src/core/errors.js';
import { silentReporter } from '../../src/core/reporter.js';
import type { LockFile } from '../../src/lock/lock-file.js';
import { runCli } from '../helpers/cli.js';
import { writeDeb } from '../helpers/deb-builder.js';

/**
 * A real bookworm minbase, installed the rootcast way: lock and fetch with the command
 * line, then unpack, register, configure in the sandbox, clean up and clamp, and check the
 * result with the tree's own tools, chrooted.
 */
const exec = promisify(execFile);

describe('installing bookworm minbase', () => {
  let dir: string;
  let root: string;
  let lock: LockFile;
  let epoch: number;
  let mountsBefore: string;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-install-'));
    const recipe = join(dir, 'minbase.yaml');
    const store = join(dir, 'store');
    root = join(dir, 'root');
    await copyFile(new URL('../../recipes/debian-12-minbase.yaml', import.meta.url), recipe);
    for (const verb of ['lock', 'fetch']) {
      const result = await runCli([verb, recipe, '--store', store]);
      if (result.code !== 0) throw new Error(`rootcast ${verb} failed:\n${result.stderr}`);
    }
    lock = JSON.parse(await readFile(join(dir, 'minbase.lock.json'), 'utf8')) as LockFile;
    epoch = Math.max(...lock.repositories.map((r) => Math.floor(Date.parse(r.release.date) / 1000)));
    mountsBefore = await readFile('/proc/self/mountinfo', 'utf8');

    const files: PackageFile[] = lock.packages.map((p) => ({
      name: p.name,
      version: p.version,
      arch: p.arch,
      file: join(store, 'packages', 'sha256', p.sha256),
    }));
    const ctx = { reporter: silentReporter, sourceDateEpoch: epoch };
    let mark = performance.now();
    const lap = (name: string) => {
      const now = performance.now();
      timings[name] = Math.round(now - mark);
      mark = now;
    };
    await mkdir(root);
    setupMergedUsr(root, lock.release, lock.arch);
    const unpacked = await unpackPackages(files, root);
    lap('unpack');
    await registerUnpacked(root, unpacked, lock.arch);
    lap('register');
    const configure = await configurePackages(root, unpacked, lock.packages, ctx);
    lap('configure');
    for (const [i, p] of configure.phases.entries()) timings[`configure phase ${i + 1}`] = Math.round(p.ms);
    await cleanupTree(root);
    lap('cleanup');
    await clampMtimes(root, epoch);
    lap('clamp');
    console.info(`install-minbase timings (ms): ${JSON.stringify(timings)}`);
  }, 600_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const inTree = (script: string) => runInSandbox(root, ['/bin/sh', '-c', script]);

  it('is clean and clamped: no logs, no volatile caches, nothing newer than SOURCE_DATE_EPOCH', async () => {
    for (const path of ['var/log/dpkg.log', 'var/log/alternatives.log', 'var/cache/ldconfig/aux-cache']) {
      expect(await lstat(join(root, path)).catch(() => undefined)).toBeUndefined();
    }
    // The clamp ran last, so a second one finds nothing to change (this test runs first:
    // the later ones run commands in the tree, and apt-get check writes its caches).
    const again = await clampMtimes(root, epoch);
    expect(again.entries).toBeGreaterThan(5000);
    expect(again.clamped).toBe(0);
    // shadow honours SOURCE_DATE_EPOCH: the last-change day is the epoch's, not today's.
    const shadow = await readFile(join(root, 'etc/shadow'), 'utf8');
    expect(shadow.split('\n')[0]?.split(':')[2]).toBe(String(Math.floor(epoch / 86400)));
  });

  it('passes dpkg --audit with no output', async () => {
    const result = await inTree('dpkg --audit');
    expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('has every locked package installed (ii), at its locked version', async () => {
    // dpkg-query's ${field} syntax, kept out of template-literal look-alikes.
    const format = ['db:Status-Abbrev', 'Package', 'Version'].map((f) => `$\{${f}}`).join('|');
    const result = await inTree(`dpkg-query -W -f='${format}\\n'`);
    expect(result.code).toBe(0);
    const rows = result.stdout
      .trim()
      .split('\n')
      .map((line) => line.split('|'));
    expect(rows.length).toBe(lock.packages.length);
    for (const [status] of rows) expect(status).toBe('ii ');
    const installed = new Map(rows.map(([, name, version]) => [name, version]));
    for (const pkg of lock.packages) expect(installed.get(pkg.name)).toBe(pkg.version);
  });

  it('passes apt-get check', async () => {
    const result = await inTree('apt-get check');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('left no mount on the host and none of the sandbox helpers in the tree', async () => {
    expect(await readFile('/proc/self/mountinfo', 'utf8')).toBe(mountsBefore);
    for (const path of [
      'usr/sbin/policy-rc.d',
      'usr/sbin/start-stop-daemon.REAL',
      'var/lib/dpkg/tmp.ci',
      'etc/resolv.conf',
    ]) {
      expect(await lstat(join(root, path)).catch(() => undefined)).toBeUndefined();
    }
    expect((await lstat(join(root, 'usr/sbin/start-stop-daemon'))).size).toBeGreaterThan(1000);
  });

  // Runs last: it installs into a copy of the tree, so the checks above see the tree as built.
  it.each([
    [
      'preinst',
      'rootcast-bad-preinst preinst install failed with exit code 1 (package rootcast-bad-preinst)',
    ],
    ['postinst', 'dpkg --configure -a failed with exit code 1'],
  ])(
    'stops at a failing %s with CONFIGURE_FAILED and its output',
    async (script, message) => {
      const copy = join(dir, `root-${script}`);
      await exec('cp', ['-a', root, copy]);
      try {
        const name = `rootcast-bad-${script}`;
        const pkg = await writeDeb(dir, {
          name,
          entries: [{ path: './', type: 'dir' }],
          controlFiles: {
            [script]: { data: `#!/bin/sh\necho "${name} fails on purpose" >&2\nexit 3\n`, mode: 0o755 },
          },
        });
        const unpacked = await unpackPackages([pkg], copy);
        await registerUnpacked(copy, unpacked, lock.arch);
        const locked = [
          { name, version: '1.0', arch: 'amd64', repository: 'test', path: '', size: 0, sha256: '' },
        ];
        const error = await configurePackages(copy, unpacked, locked, { reporter: silentReporter }).then(
          () => undefined,
          (e: unknown) => e as RootcastError,
        );
        expect(error?.code).toBe('CONFIGURE_FAILED');
        expect(error?.message).toBe(message);
        expect(String(error?.details?.output)).toContain(`${name} fails on purpose`);
        // A failed preinst stops the phase before dpkg runs: the package stays unpacked, not half-configured.
        const format = `-f=$\{db:Status-Abbrev}`;
        const status = await runInSandbox(copy, ['dpkg-query', '-W', format, name]);
        expect(status.stdout).toBe(script === 'preinst' ? 'iU ' : 'iF ');
        expect(await lstat(join(copy, 'var/lib/dpkg/tmp.ci')).catch(() => undefined)).toBeUndefined();
      } finally {
        await rm(copy, { recursive: true, force: true });
      }
    },
    120_000,
  );
});

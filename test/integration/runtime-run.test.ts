import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clone, listContainers, removeContainers } from '../../src/api/runtime.js';
import { RootcastError } from '../../src/core/errors.js';
import { cloneContainers } from '../../src/runtime/clone.js';
import { chooseDriver } from '../../src/runtime/drivers.js';
import { readTemplate } from '../../src/store/template-query.js';
import { startProcess } from '../helpers/cli.js';
import { installHostTools, makeTemplate, mountsUnder, tempDir } from './runtime-fixtures.js';

/**
 * `run` as a separate process, the way the CLI drives it (signals relayed, stdio passed
 * through): exit status, stdin/stdout, environment, working directory, namespaces, signals,
 * one run at a time, `--rm`, and a run killed with SIGKILL (no mount, no process, no
 * container left).
 */
const api = new URL('../../dist/api/runtime.js', import.meta.url).pathname;

/** In the `tiny` template only, never on the host. */
const PRELOAD = '/rootcast-preload-only-in-the-container.so';

function hostLibc(): string {
  const match = /(\/\S+\/libc\.so\.6)/.exec(execFileSync('ldd', ['/bin/dash'], { encoding: 'utf8' }));
  if (!match?.[1]) throw new Error('cannot find the host libc');
  return match[1];
}

describe('run', () => {
  const dir = tempDir();
  const store = join(dir.path, 'store');
  const runner = join(dir.path, 'run.mjs');
  const hostOnlyLibs = join(dir.path, 'host-only-libs');

  /** Starts `run` in a child process; `options` is the API's RunOptions as JSON. */
  const start = (target: string, options: Record<string, unknown>, stdin = '') => {
    const started = startProcess(process.execPath, [runner, target, JSON.stringify({ store, ...options })], {
      stdin,
    });
    return { ...started, output: () => started.output().stdout };
  };
  const runIt = async (target: string, options: Record<string, unknown>, stdin = '') => {
    const { code, stdout, stderr } = await start(target, options, stdin).done;
    return { code, stdout, stderr };
  };
  const until = async (check: () => boolean) => {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
  };

  beforeAll(async () => {
    mkdirSync(store);
    writeFileSync(
      runner,
      `const { run } = await import(${JSON.stringify(api)});
       const opts = JSON.parse(process.argv[3]);
       try {
         const r = await run(process.argv[2], { ...opts, forwardSignals: true });
         process.exitCode = r.exitCode;
       } catch (e) { process.stderr.write(e.code + ': ' + e.message + '\\n'); process.exitCode = 99; }`,
    );
    await makeTemplate({
      store,
      name: 'tiny',
      build: (tree) => {
        installHostTools(tree);
        // A real shared object at a path only the container has (preloading libc again is a no-op).
        copyFileSync(hostLibc(), join(tree, PRELOAD.slice(1)));
      },
    });
    await clone('tiny:1.0', 'box', { store });
    // No /bin/sh: loader variables cannot be applied after the chroot.
    await makeTemplate({
      store,
      name: 'nosh',
      build: (tree) => {
        installHostTools(tree);
        unlinkSync(join(tree, 'usr/bin/sh'));
      },
    });
    await clone('nosh:1.0', 'nosh-box', { store });
    // A libc.so.6 that no program can load, at a path only the host has: a host program that
    // got LD_LIBRARY_PATH=hostOnlyLibs fails to start; the container's command does not see it.
    mkdirSync(hostOnlyLibs);
    writeFileSync(join(hostOnlyLibs, 'libc.so.6'), 'not a shared object\n');
  }, 60_000);
  afterAll(() => dir.cleanup());

  it('passes stdin and stdout through and returns the exit status', async () => {
    const r = await runIt(
      'box',
      { argv: ['/bin/sh', '-c', 'cat; echo "to stderr" >&2; exit 42'] },
      'from stdin\n',
    );
    expect(r).toEqual({ code: 42, stdout: 'from stdin\n', stderr: 'to stderr\n' });
  });

  it('runs in its own namespaces with the container as root', async () => {
    const r = await runIt('box', {
      argv: [
        '/bin/sh',
        '-c',
        // The count uses the shell's own glob, not a pipeline: `ls | wc` raced (wc may not
        // have been forked yet when ls read /proc).
        'set -- /proc/[0-9]*; echo $#; cat /etc/hostname; pwd; echo "$GREETING $HOME"; ls /dev',
      ],
      env: { GREETING: 'hi' },
      workdir: '/tmp',
    });
    expect(r.code).toBe(0);
    const [processes, hostname, cwd, env, ...dev] = r.stdout.trim().split('\n');
    expect(processes).toBe('2'); // a new pid namespace: only the init and this sh
    expect(hostname).toBe('box');
    expect(cwd).toBe('/tmp');
    expect(env).toBe('hi /root');
    expect(dev).toEqual([
      'fd',
      'full',
      'null',
      'ptmx',
      'pts',
      'random',
      'shm',
      'stderr',
      'stdin',
      'stdout',
      'tty',
      'urandom',
      'zero',
    ]);
    // Exactly the documented environment: nothing of the host or the init script (OLDPWD,
    // PWD, its own variables, whose names -e may reuse).
    const environ = await runIt('box', {
      argv: ['/usr/bin/cat', '/proc/self/environ'],
      env: { GREETING: 'hi', dev: 'mine', r: "it's" },
      workdir: '/tmp',
    });
    expect(environ.code).toBe(0);
    expect(environ.stdout.split('\0').filter(Boolean).sort()).toEqual([
      'GREETING=hi',
      'HOME=/root',
      'HOSTNAME=box',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'container=rootcast',
      'dev=mine',
      "r=it's",
    ]);
    const pwd = await runIt('box', { argv: ['/usr/bin/cat', '/proc/self/environ'], env: { PWD: '/set' } });
    expect(pwd.stdout.split('\0')).toContain('PWD=/set');
    const none = await runIt('box', { argv: ['/bin/cat', '/proc/net/dev'], network: 'none' });
    expect(
      none.stdout
        .trim()
        .split('\n')
        .slice(2)
        .map((l) => l.trim().split(':')[0]),
    ).toEqual(['lo']);
    expect(mountsUnder(store)).toEqual([]);
  });

  it('gives LD_* and the other loader variables to the command only, never to a host program', async () => {
    expect(existsSync(PRELOAD)).toBe(false);
    // The host's env and unshare would each print "cannot be preloaded" for a path they lack.
    const preload = await runIt('box', {
      argv: ['/bin/sh', '-c', 'echo "$LD_PRELOAD"'],
      env: { LD_PRELOAD: PRELOAD },
    });
    expect(preload).toEqual({ code: 0, stdout: `${PRELOAD}\n`, stderr: '' });
    // A host-only library path would keep the host's env from starting at all.
    const libs = await runIt('box', {
      argv: ['/bin/sh', '-c', 'echo "$LD_LIBRARY_PATH"'],
      env: { LD_LIBRARY_PATH: hostOnlyLibs },
    });
    expect(libs).toEqual({ code: 0, stdout: `${hostOnlyLibs}\n`, stderr: '' });
    // Still exactly the documented environment: the container's /bin/sh that sets them adds
    // nothing of its own (no PWD, no OLDPWD), and a PWD of the command's own is kept.
    const environ = await runIt('box', {
      argv: ['/usr/bin/cat', '/proc/self/environ'],
      env: { LD_PRELOAD: PRELOAD, GCONV_PATH: '/nowhere', PWD: '/set', it: "'s" },
      workdir: '/tmp',
    });
    expect(environ.code).toBe(0);
    expect(environ.stdout.split('\0').filter(Boolean).sort()).toEqual([
      'GCONV_PATH=/nowhere',
      'HOME=/root',
      'HOSTNAME=box',
      `LD_PRELOAD=${PRELOAD}`,
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'PWD=/set',
      'container=rootcast',
      "it='s",
    ]);
  });

  it("applies an image Env's LD_LIBRARY_PATH after the chroot only", async () => {
    // As a pulled image's config would have it (commitTemplate writes only PATH).
    const details = await readTemplate(store, 'tiny:1.0');
    const config = details.config.config ?? {};
    await cloneContainers(
      store,
      {
        ...details,
        config: {
          ...details.config,
          config: { ...config, Env: [...(config.Env ?? []), `LD_LIBRARY_PATH=${hostOnlyLibs}`] },
        },
      },
      [{ name: 'img-env', values: { name: 'img-env' } }],
      { driver: await chooseDriver(store), ref: 'tiny:1.0' },
    );
    try {
      const r = await runIt('img-env', { argv: ['/bin/sh', '-c', 'echo "$LD_LIBRARY_PATH"'] });
      expect(r).toEqual({ code: 0, stdout: `${hostOnlyLibs}\n`, stderr: '' });
    } finally {
      await removeContainers(['img-env'], { store });
    }
  });

  it('refuses loader variables when the container has no /bin/sh to set them', async () => {
    const plain = await runIt('nosh-box', { argv: ['/usr/bin/true'] });
    expect(plain.code).toBe(0);
    const refused = await runIt('nosh-box', {
      argv: ['/usr/bin/true'],
      env: { LD_PRELOAD: '/x.so', TZDIR: '/zones', OTHER: '1' },
    });
    expect(refused.code).toBe(99);
    expect(refused.stderr).toBe(
      'RUN_ENV_NEEDS_SHELL: LD_PRELOAD (-e), TZDIR (-e): container nosh-box has no executable /bin/sh to set them after the chroot\n',
    );
    // --rm TEMPLATE: refused before a disposable clone is made.
    const before = readdirSync(join(store, 'containers')).sort();
    const disposable = await runIt('nosh:1.0', {
      rm: true,
      argv: ['/usr/bin/true'],
      env: { LD_DEBUG: 'all' },
    });
    expect(disposable.stderr).toMatch(/^RUN_ENV_NEEDS_SHELL: LD_DEBUG \(-e\): template nosh:1\.0 has no/);
    expect(readdirSync(join(store, 'containers')).sort()).toEqual(before);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    await removeContainers(['nosh-box'], { store });
  });

  it('relays SIGTERM to the command and returns 128 + its number', async () => {
    const r = start('box', {
      argv: ['/bin/sh', '-c', 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done'],
    });
    await until(() => r.output().includes('ready'));
    r.child.kill('SIGTERM');
    expect(await r.done).toMatchObject({ code: 3, stdout: 'ready\ngot TERM\n' });
    const plain = start('box', { argv: ['/bin/sh', '-c', 'echo ready; exec /usr/bin/sleep 100'] });
    await until(() => plain.output().includes('ready'));
    plain.child.kill('SIGINT'); // no terminal here: relayed too
    expect((await plain.done).code).toBe(130);
  });

  it('allows one run at a time per container', async () => {
    const first = start('box', { argv: ['/bin/sh', '-c', 'echo ready; exec /usr/bin/sleep 100'] });
    await until(() => first.output().includes('ready'));
    const second = await runIt('box', { argv: ['/usr/bin/true'] });
    expect(second.code).toBe(99);
    expect(second.stderr).toMatch(/^CONTAINER_BUSY: /);
    await expect(removeContainers(['box'], { store })).rejects.toMatchObject({ code: 'CONTAINER_RUNNING' });
    first.child.kill('SIGTERM');
    await first.done;
  });

  it('leaves no mount, process or container when killed with SIGKILL', async () => {
    const marker = `rootcast-kill-test-${process.pid}`;
    const r = start('tiny:1.0', {
      rm: true,
      argv: ['/bin/sh', '-c', `echo ready; /usr/bin/sleep 100; : ${marker}`],
    });
    await until(() => r.output().includes('ready'));
    const disposable = (await listContainers({ store })).filter((c) => c.disposable);
    expect(disposable).toHaveLength(1);
    expect(disposable[0]?.state).toBe('running');
    r.child.kill('SIGKILL');
    await r.done;
    await until(() => !execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(marker));
    expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(marker);
    expect(mountsUnder(store)).toEqual([]);
    // The next command sweeps the disposable container its killed run left.
    expect((await listContainers({ store })).map((c) => c.name)).toEqual(['box']);
    expect(existsSync(join(store, 'containers', disposable[0]!.name))).toBe(false);
  });

  it('--rm on a template runs in a disposable clone and removes it', async () => {
    const r = await runIt('tiny:1.0', { rm: true, argv: ['/bin/sh', '-c', 'cat /etc/hostname; exit 5'] });
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/^tiny-[0-9a-f]{8}\n$/);
    expect((await listContainers({ store })).map((c) => c.name)).toEqual(['box']);
    const refused = await runIt('tiny:1.0', { argv: ['/usr/bin/true'] });
    expect(refused.stderr).toMatch(/^RUN_TARGET_IS_TEMPLATE: /);
  });

  it('fails cleanly for a missing container', async () => {
    await expect(
      (await import('../../src/api/runtime.js')).run('nope', { store, argv: ['/usr/bin/true'] }),
    ).rejects.toBeInstanceOf(RootcastError);
  });
});

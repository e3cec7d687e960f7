import { execFileSync } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRecipeFiles } from '../../src/assemble/recipe-files.js';
import { runRecipeSteps } from '../../src/assemble/recipe-steps.js';
import { runInSandbox } from '../../src/assemble/sandbox.js';
import { isRootcastError } from '../../src/core/errors.js';
import { silentReporter } from '../../src/core/reporter.js';

/**
 * The sandbox against a tiny real tree: the host's dash and the libraries it links, in a
 * merged-/usr layout. Every probe uses shell builtins only, so the tree needs nothing else.
 */
async function makeTree(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'rootcast-sandbox-'));
  for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'etc', 'tmp'])
    await mkdir(join(root, dir), { recursive: true });
  for (const dir of ['bin', 'sbin', 'lib', 'lib64']) await symlink(`usr/${dir}`, join(root, dir));
  const dash = execFileSync('sh', ['-c', 'command -v dash'], { encoding: 'utf8' }).trim();
  await copyFile(dash, join(root, 'usr/bin/dash'));
  await symlink('dash', join(root, 'usr/bin/sh'));
  const libs = execFileSync('ldd', [dash], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.match(/(\/\S+)/)?.[1])
    .filter((path): path is string => path !== undefined);
  for (const lib of libs) {
    const target = join(root, 'usr', lib.replace(/^\/(usr\/)?/, ''));
    await mkdir(dirname(target), { recursive: true });
    await copyFile(lib, target);
  }
  await writeFile(
    join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nsvc:x:101:102::/nonexistent:/usr/sbin/nologin\n',
  );
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nsvc:x:102:\n');
  return root;
}

const mountinfo = () => readFile('/proc/self/mountinfo', 'utf8');
const sh = (script: string) => ['/bin/sh', '-c', script];
const exists = async (path: string) => (await lstat(path).catch(() => undefined)) !== undefined;

describe('runInSandbox', () => {
  let root: string;
  let before: string;

  beforeAll(async () => {
    root = await makeTree();
    before = await mountinfo();
  });
  afterAll(async () => {
    // Nothing may stay mounted under the tree, whatever the tests did.
    expect(await mountinfo()).toBe(before);
    await rm(root, { recursive: true, force: true });
  });

  it('runs in its own pid namespace, with the setup shell as pid 1 and no host process visible', async () => {
    const result = await runInSandbox(
      root,
      sh('n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; read c < /proc/1/comm; echo "$n $c $$"'),
    );
    expect(result.code).toBe(0);
    const [count, comm, pid] = result.stdout.trim().split(' ');
    expect(comm).toBe('sh');
    expect(Number(count)).toBeLessThan(5);
    expect(Number(pid)).toBeLessThan(50);
  });

  it('sets its own hostname, never the host one', async () => {
    const read = sh('read h < /proc/sys/kernel/hostname; echo $h');
    expect((await runInSandbox(root, read)).stdout).toBe('localhost\n');
    expect((await runInSandbox(root, read, { hostname: 'image' })).stdout).toBe('image\n');
  });

  it('has no network but loopback unless asked, and binds the host resolver only for that run', async () => {
    const interfaces = sh('while read i rest; do case $i in *:) echo "$i";; esac; done < /proc/net/dev');
    const off = await runInSandbox(root, interfaces);
    expect(off.stdout.trim().split('\n')).toEqual(['lo:']);
    const hostInterfaces = (await readFile('/proc/net/dev', 'utf8'))
      .split('\n')
      .filter((l) => l.includes(':')).length;
    const on = await runInSandbox(root, interfaces, { network: true });
    expect(on.stdout.trim().split('\n').length).toBe(hostInterfaces);
    const resolv = await runInSandbox(
      root,
      sh('while IFS= read -r l; do echo "$l"; done < /etc/resolv.conf'),
      { network: true },
    );
    expect(resolv.stdout).toBe(await readFile('/etc/resolv.conf', 'utf8'));
    expect(await exists(join(root, 'etc/resolv.conf'))).toBe(false);
  });

  it('gives a clean environment and the host none of its variables', async () => {
    process.env.ROOTCAST_SANDBOX_LEAK = 'leaked';
    try {
      const result = await runInSandbox(root, sh('export -p'), {
        env: { EXTRA: 'yes' },
        sourceDateEpoch: 1700000000,
      });
      expect(result.stdout).not.toContain('ROOTCAST_SANDBOX_LEAK');
      for (const expected of [
        "LC_ALL='C.UTF-8'",
        "DEBIAN_FRONTEND='noninteractive'",
        "DEBCONF_NONINTERACTIVE_SEEN='true'",
        "HOME='/root'",
        "SOURCE_DATE_EPOCH='1700000000'",
        "EXTRA='yes'",
      ]) {
        expect(result.stdout).toContain(expected);
      }
    } finally {
      delete process.env.ROOTCAST_SANDBOX_LEAK;
    }
  });

  it('holds services with policy-rc.d and a fake start-stop-daemon only while it runs', async () => {
    await writeFile(join(root, 'usr/sbin/start-stop-daemon'), '#!/bin/sh\necho REAL\n', { mode: 0o755 });
    const result = await runInSandbox(
      root,
      sh('[ -x /usr/sbin/policy-rc.d ] && /usr/sbin/policy-rc.d; echo policy=$?; /sbin/start-stop-daemon'),
    );
    expect(result.stdout).toBe('policy=101\n');
    expect(result.stderr).toContain('Fake start-stop-daemon called');
    expect(await exists(join(root, 'usr/sbin/policy-rc.d'))).toBe(false);
    expect(await exists(join(root, 'usr/sbin/start-stop-daemon.REAL'))).toBe(false);
    expect(await readFile(join(root, 'usr/sbin/start-stop-daemon'), 'utf8')).toBe('#!/bin/sh\necho REAL\n');
    await rm(join(root, 'usr/sbin/start-stop-daemon'));
  });

  it('mounts /proc, a read-only /sys and a private /dev inside only', async () => {
    const result = await runInSandbox(
      root,
      sh(
        'while read a m t o rest; do echo "$m $t $o"; done < /proc/mounts; echo x > /dev/null && echo devnull-ok; (: > /sys/x) 2>/dev/null || echo sys-ro',
      ),
    );
    expect(result.stdout).toMatch(/^\/proc proc /m);
    expect(result.stdout).toMatch(/^\/sys sysfs ro,/m);
    expect(result.stdout).toMatch(/^\/dev tmpfs /m);
    expect(result.stdout).toMatch(/^\/dev\/pts devpts /m);
    expect(result.stdout).toContain('devnull-ok');
    expect(result.stdout).toContain('sys-ro');
    // The mount points it had to create are gone again; the host saw no mount at all.
    for (const dir of ['proc', 'sys', 'dev']) expect(await exists(join(root, dir))).toBe(false);
    expect(await mountinfo()).toBe(before);
  });

  it('passes stdin and cwd, returns the exit code, and throws SANDBOX_FAILED with the output tail when checked', async () => {
    await mkdir(join(root, 'tmp/work'), { recursive: true });
    const piped = await runInSandbox(root, sh('read x; echo "$x in $PWD"'), {
      stdin: 'hello\n',
      cwd: '/tmp/work',
    });
    expect(piped.stdout).toBe('hello in /tmp/work\n');
    expect((await runInSandbox(root, sh('echo out; echo err >&2; exit 3'))).code).toBe(3);
    const error = await runInSandbox(root, sh('echo first; echo last-line >&2; exit 4'), {
      check: true,
    }).catch((e: unknown) => e);
    expect(isRootcastError(error) && error.code).toBe('SANDBOX_FAILED');
    expect(String((error as Error).message)).toContain('exited with code 4');
    expect(isRootcastError(error) && error.hint).toContain('last-line');
  });

  it('kills the whole namespace on timeout and leaves nothing mounted', async () => {
    const started = Date.now();
    const error = await runInSandbox(
      root,
      sh('sleep_forever() { while :; do :; done; }; sleep_forever & sleep_forever'),
      { timeoutMs: 700 },
    ).catch((e: unknown) => e);
    expect(isRootcastError(error) && error.code).toBe('SANDBOX_FAILED');
    expect(String((error as Error).message)).toContain('timed out');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await mountinfo()).toBe(before);
  });

  it('refuses a tree whose /proc is a symlink, without mounting through it', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'rootcast-outside-'));
    await symlink(outside, join(root, 'proc'));
    try {
      const error = await runInSandbox(root, sh('true')).catch((e: unknown) => e);
      expect(isRootcastError(error) && error.code).toBe('SANDBOX_FAILED');
      expect(String((error as Error).message)).toContain('/proc is not a directory');
      expect(await mountinfo()).toBe(before);
    } finally {
      await rm(join(root, 'proc'));
      await rm(outside, { recursive: true });
    }
  });
});

describe('recipe files and steps in a tree', () => {
  let root: string;
  beforeAll(async () => {
    root = await makeTree();
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes templates and inline files with owners from the tree, never through a symlink', async () => {
    const templates = await mkdtemp(join(tmpdir(), 'rootcast-templates-'));
    await writeFile(join(templates, 'motd.hbs'), 'Welcome to {{name}} {{release}}\n');
    const outside = join(templates, 'victim');
    await writeFile(outside, 'host file\n');
    await symlink(outside, join(root, 'etc/motd'));
    try {
      await applyRecipeFiles(
        root,
        [
          { path: '/etc/motd', template: 'motd.hbs', mode: '0640', owner: 'svc', group: 'svc' },
          { path: '/etc/app/conf', content: 'x=1\n', owner: 0, group: 102, mode: '4755' },
        ],
        { templatesDir: templates, variables: { name: 'web', release: 'bookworm' } },
      );
      const motd = await stat(join(root, 'etc/motd'));
      expect(await readFile(join(root, 'etc/motd'), 'utf8')).toBe('Welcome to web bookworm\n');
      expect([motd.uid, motd.gid, motd.mode & 0o7777]).toEqual([101, 102, 0o640]);
      expect(await readFile(outside, 'utf8')).toBe('host file\n');
      const conf = await stat(join(root, 'etc/app/conf'));
      expect([conf.uid, conf.gid, conf.mode & 0o7777]).toEqual([0, 102, 0o4755]);
      const unknown = await applyRecipeFiles(root, [{ path: '/etc/x', content: '', owner: 'nobody-here' }], {
        templatesDir: templates,
        variables: {},
      }).catch((e: unknown) => e);
      expect(isRootcastError(unknown) && unknown.code).toBe('FILE_OWNER_UNKNOWN');
    } finally {
      await rm(templates, { recursive: true, force: true });
    }
  });

  it('runs steps in order and stops at the first failure with STEP_FAILED and its index', async () => {
    const ctx = { reporter: silentReporter };
    const timings = await runRecipeSteps(
      root,
      [{ run: 'echo one > /tmp/steps' }, { run: 'echo two >> /tmp/steps' }],
      ctx,
    );
    expect(timings.map((t) => t.index)).toEqual([0, 1]);
    expect(await readFile(join(root, 'tmp/steps'), 'utf8')).toBe('one\ntwo\n');
    const error = await runRecipeSteps(
      root,
      [{ run: 'true' }, { run: 'echo broken >&2; exit 7' }, { run: 'echo never > /tmp/never' }],
      ctx,
    ).catch((e: unknown) => e);
    expect(isRootcastError(error) && error.code).toBe('STEP_FAILED');
    expect(isRootcastError(error) && error.details).toMatchObject({ index: 1, code: 7 });
    expect(isRootcastError(error) && error.hint).toContain('broken');
    expect(await exists(join(root, 'tmp/never'))).toBe(false);
  });
});

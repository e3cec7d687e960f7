import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli } from '../helpers/cli.js';
import { mountsUnder, viewListing } from '../integration/runtime-fixtures.js';

/**
 * The runtime on a real Debian template, through the command line (issue 5's acceptance):
 * clone and run, `run --rm` leaving nothing, writes private to one container with the
 * template's layers unchanged, the copy driver equal to the overlay view and no slower than
 * `cp -a`, a lab of 30 from a CSV, and killed runs and clones leaving no mounts.
 */
describe('runtime on debian-12-minbase', () => {
  let dir: string;
  let store: string;
  let layer: string;
  const rc = (...args: string[]) => runCli([...args.slice(0, 1), '--store', store, ...args.slice(1)]);
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await rc(...args, '--json');
    if (r.code !== 0) throw new Error(`${args.join(' ')} failed:\n${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-e2e-runtime-'));
    store = join(dir, 'store');
    const recipe = join(dir, 'debian-12-minbase.yaml');
    await copyFile(new URL('../../recipes/debian-12-minbase.yaml', import.meta.url), recipe);
    const built = await runCli(['build', recipe, '--store', store, '--json']);
    if (built.code !== 0) throw new Error(`build failed:\n${built.stderr}`);
    const inspect = JSON.parse(
      (await runCli(['inspect', 'debian-12-minbase:1.0', '--store', store, '--json'])).stdout,
    ) as {
      layers: { diffId: string }[];
    };
    layer = join(store, 'layers', inspect.layers[0]!.diffId.slice('sha256:'.length));
  }, 600_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('clones and runs, and run --rm leaves nothing behind (acceptance 1)', async () => {
    const cloned = await json<{ containers: { name: string; ms: number }[]; driver: string }>(
      'clone',
      'debian-12-minbase:1.0',
      'c1',
    );
    expect(cloned.containers).toEqual([{ name: 'c1', ms: expect.any(Number) }]);
    expect(cloned.driver).toBe('overlay');
    const ran = await rc('run', 'c1', '--', 'cat', '/etc/debian_version');
    expect(ran).toMatchObject({ code: 0, stderr: '' });
    expect(ran.stdout).toMatch(/^12\.\d+\n$/);
    const once = await rc('run', '--rm', 'debian-12-minbase:1.0', '--', 'true');
    expect(once.code).toBe(0);
    expect((await json<{ name: string }[]>('containers')).map((c) => c.name)).toEqual(['c1']);
    expect(await readdir(join(store, 'tmp'))).toEqual([]);
    expect(mountsUnder(store)).toEqual([]);
    const status = await rc('run', 'c1', '--', 'sh', '-c', 'exit 3');
    expect(status.code).toBe(3);
  });

  it('keeps a write in its container; the template layers stay byte for byte (acceptance 3)', async () => {
    const before = await viewListing(layer);
    await json('clone', 'debian-12-minbase:1.0', 'c2');
    expect(
      (await rc('run', 'c1', '--', 'sh', '-c', 'echo private > /etc/only-c1 && rm /etc/motd')).code,
    ).toBe(0);
    expect((await rc('run', 'c1', '--', 'cat', '/etc/only-c1')).stdout).toBe('private\n');
    expect(
      (await rc('run', 'c2', '--', 'sh', '-c', 'test ! -e /etc/only-c1 && test -f /etc/motd')).code,
    ).toBe(0);
    expect(
      (await rc('run', '--rm', 'debian-12-minbase:1.0', '--', 'sh', '-c', 'test ! -e /etc/only-c1')).code,
    ).toBe(0);
    expect(await viewListing(layer)).toEqual(before);
  });

  it('the copy driver gives the overlay view (acceptance 4; its speed against cp -a is in bench/clone.sh)', async () => {
    // Timing belongs to the benchmark, not to a test: only the tree is checked here.
    const cloned = await json<{ containers: { ms: number }[]; driver: string }>(
      'clone',
      'debian-12-minbase:1.0',
      'copied0',
      '--driver',
      'copy',
    );
    expect(cloned.driver).toBe('copy');
    const overlayDir = join(store, 'containers', 'c2');
    const [overlayView, copyView] = await Promise.all([
      viewListing(join(overlayDir, 'rootfs'), {
        lowers: [layer],
        upper: join(overlayDir, 'upper'),
        work: join(overlayDir, 'work'),
      }),
      viewListing(join(store, 'containers', 'copied0', 'rootfs')),
    ]);
    const strip = (v: typeof overlayView) =>
      Object.fromEntries(
        Object.entries(v)
          .filter(
            ([p]) => !['/etc/hostname', '/etc/hosts', '/etc/machine-id', '/etc/resolv.conf'].includes(p),
          )
          .map(([p, { ino: _i, mtime: _m, ...e }]) => [p, e]),
      );
    expect(strip(copyView)).toEqual(strip(overlayView));
    await rc('rm', 'copied0');
  });

  it('clones a lab of 30 from a CSV of names and keys (acceptance 5)', async () => {
    const csv = join(dir, 'students.csv');
    const key = (i: number) =>
      `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${String(i).padStart(2, '0')}uQPeKICkSsfXZFRfBIsppcEoxfPzqIGX2fCiW92u4 student${i}`;
    const rows = Array.from({ length: 30 }, (_, i) => `student${i + 1},${key(i + 1)}`);
    await writeFile(csv, `user,ssh_key\n${rows.join('\n')}\n`);
    const batch = await json<{ containers: { name: string; ms: number }[] }>(
      'clone',
      'debian-12-minbase:1.0',
      '--name',
      'lab-{{index}}',
      '--values',
      csv,
    );
    expect(batch.containers.map((c) => c.name)).toEqual(rows.map((_, i) => `lab-${i + 1}`));
    const ids = new Set<string>();
    for (let i = 1; i <= 30; i++) {
      const r = await rc(
        'run',
        `lab-${i}`,
        '--',
        'sh',
        '-c',
        `hostname; id -u student${i}; stat -c %U /home/student${i}/.ssh/authorized_keys; cat /home/student${i}/.ssh/authorized_keys /etc/machine-id`,
      );
      expect(r.code).toBe(0);
      const [hostname, uid, owner, authorized, machineId] = r.stdout.trim().split('\n');
      expect([hostname, uid, owner, authorized]).toEqual([`lab-${i}`, '1000', `student${i}`, key(i)]);
      ids.add(machineId!);
    }
    expect(ids.size).toBe(30);
    expect((await rc('rm', ...batch.containers.map((c) => c.name))).code).toBe(0);
  });

  it('killed run and clone leave no mounts and consistent containers (acceptance 6)', async () => {
    await json('clone', 'debian-12-minbase:1.0', 'victim');
    const run = spawn(
      process.execPath,
      [CLI, 'run', '--store', store, 'victim', '--', 'sh', '-c', 'echo ready; sleep 100'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      run.stdout.once('data', () => resolve());
      run.once('exit', (code) =>
        reject(new Error(`rootcast run exited (${code}) before the command started`)),
      );
    });
    expect(
      (await json<{ name: string; state: string }[]>('containers')).find((c) => c.name === 'victim')?.state,
    ).toBe('running');
    run.kill('SIGKILL');
    await new Promise((resolve) => run.on('close', resolve));
    // The kernel tears the namespaces down once their last process is reaped: poll, not a fixed wait.
    for (let i = 0; i < 200 && mountsUnder(store).length > 0; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(mountsUnder(store)).toEqual([]);
    expect(
      (await json<{ name: string; state: string }[]>('containers')).find((c) => c.name === 'victim')?.state,
    ).toBe('stopped');
    expect((await rc('run', 'victim', '--', 'true')).code).toBe(0);
    const clone = spawn(
      process.execPath,
      [CLI, 'clone', '--store', store, 'debian-12-minbase:1.0', '--count', '3000', '--name', 'k{{index}}'],
      { stdio: 'ignore' },
    );
    const cloneClosed = new Promise((resolve) => clone.on('close', resolve));
    await new Promise((r) => setTimeout(r, 1000));
    clone.kill('SIGKILL');
    await cloneClosed;
    const listed = await json<{ name: string }[]>('containers');
    const last = listed.filter((c) => c.name.startsWith('k')).at(-1);
    if (last)
      expect((await rc('run', last.name, '--', 'cat', '/etc/hostname')).stdout).toBe(`${last.name}\n`);
    expect(mountsUnder(store)).toEqual([]);
    const killed = listed.filter((c) => c.name.startsWith('k')).map((c) => c.name);
    if (killed.length > 0) expect((await rc('rm', ...killed)).code).toBe(0);
    expect((await rc('gc')).code).toBe(0);
    expect(await readdir(join(store, 'tmp'))).toEqual([]);
  });
});

import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clone, listContainers } from '../../src/api/runtime.js';
import { cloneContainers } from '../../src/runtime/clone.js';
import { chooseDriver } from '../../src/runtime/drivers.js';
import { readTemplate } from '../../src/store/template-query.js';
import { CLI, type CliResult, errorLines, runCli, runProcess, startProcess } from '../helpers/cli.js';
import { installHostTools, makeTemplate, mountsUnder, tempDir } from './runtime-fixtures.js';

/**
 * The container verbs as a user drives them, from the audit: Ctrl-C during `clone --count`
 * and `rm` of many, `rm` of a damaged container, a name given twice to `rm`, `--count`
 * parsing, and what `run` checks before it starts (working directory, layers, `--driver`),
 * plus `run --json`.
 */
describe('container verbs (CLI)', () => {
  const dir = tempDir();
  const store = join(dir.path, 'store');
  // --store right after the verb: what follows `run … --` belongs to the command.
  const withStore = ([verb = '', ...rest]: string[]) => [verb, '--store', store, ...rest];
  const cli = (...args: string[]) => runCli(withStore(args));
  const containers = () =>
    existsSync(join(store, 'containers')) ? readdirSync(join(store, 'containers')) : [];
  const temporaries = () => (existsSync(join(store, 'tmp')) ? readdirSync(join(store, 'tmp')) : []);
  const json = (r: CliResult) => JSON.parse(r.stdout) as Record<string, unknown>;
  const until = async (check: () => boolean, ms = 20_000) => {
    for (const end = Date.now() + ms; !check() && Date.now() < end; )
      await new Promise((r) => setTimeout(r, 5));
  };
  /** Starts the CLI, sends SIGINT once `ready()` holds, and collects its output. */
  const interrupted = async (args: string[], ready: () => boolean): Promise<CliResult> => {
    const started = startProcess(process.execPath, [CLI, ...withStore(args)]);
    let exited = false;
    void started.done.then(() => {
      exited = true;
    });
    await until(() => exited || ready());
    started.child.kill('SIGINT');
    // 130 either way: an exit status, or death by the signal re-raised after the report.
    const { code, stdout, stderr } = await started.done;
    return { code, stdout, stderr };
  };

  beforeAll(async () => {
    mkdirSync(store);
    await makeTemplate({
      store,
      name: 'tiny',
      build: (tree) => {
        installHostTools(tree);
        // Exists on the host, not in the container: a workdir must be resolved inside.
        symlinkSync(dir.path, join(tree, 'escape'));
        symlinkSync('/tmp', join(tree, 'scratch'));
      },
    });
  }, 60_000);
  afterAll(() => dir.cleanup());

  it('stops clone --count and rm of many at Ctrl-C, between whole containers', async () => {
    // A handful is enough: the batch of 5000 cannot end before the signal comes.
    const cloned = await interrupted(
      ['clone', 'tiny:1.0', '--count', '5000', '--name', 'k{{index}}', '--json'],
      () => containers().length >= 5,
    );
    expect(cloned.code).toBe(130);
    expect(json(cloned)).toMatchObject({ error: { code: 'ABORTED' } });
    const made = containers();
    expect(made.length).toBeGreaterThanOrEqual(5);
    expect(made.length).toBeLessThan(5000);
    expect(cloned.stderr).toContain(
      `warning: clone interrupted after ${made.length} of 5000 container(s): the ${made.length} made (k1 … k${made.length}) are kept`,
    );
    // Every container kept is complete; nothing half-made is left.
    expect((await listContainers({ store })).filter((c) => c.state === 'stopped')).toHaveLength(made.length);
    for (const name of made)
      expect(existsSync(join(store, 'containers', name, 'upper/etc/hostname'))).toBe(true);
    expect(temporaries()).toEqual([]);

    // The first container rm removes carries thousands of files: the signal, sent as soon as
    // that container has left containers/, comes while they are deleted, long before the
    // last container's turn.
    const ballast = join(store, 'containers', made[0]!, 'upper/ballast');
    for (let i = 0; i < 40; i++) {
      mkdirSync(join(ballast, String(i)), { recursive: true });
      for (let j = 0; j < 200; j++) writeFileSync(join(ballast, String(i), String(j)), '');
    }
    const removing = await interrupted(['rm', ...made, '--json'], () => containers().length < made.length);
    expect(removing.code).toBe(130);
    expect(json(removing)).toMatchObject({ error: { code: 'ABORTED' } });
    const left = containers();
    expect(left.length).toBeGreaterThan(0);
    expect(left.length).toBeLessThan(made.length);
    expect(removing.stderr).toContain(
      `warning: rm interrupted after removing ${made.length - left.length} of ${made.length} container(s)`,
    );
    expect(temporaries()).toEqual([]);
    expect((await cli('rm', ...left)).code).toBe(0);
    expect(containers()).toEqual([]);
  }, 60_000);

  it('rm --force removes a container whose record is damaged; containers lists it as damaged', async () => {
    await clone('tiny:1.0', 'x-1', { store });
    writeFileSync(join(store, 'containers/x-1/container.json'), '{"schema":1,\n');
    const listed = await cli('containers', '--json');
    expect(listed.code).toBe(0);
    expect(listed.stderr).toBe('');
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({
        name: 'x-1',
        state: 'damaged',
        problem: expect.stringContaining('not JSON'),
      }),
    ]);
    expect((await cli('containers')).stdout).toMatch(/^x-1 +damaged +- +.*not JSON.*rootcast rm --force x-1/);

    const plain = await cli('rm', 'x-1');
    expect(plain.code).toBe(1);
    expect(errorLines(plain).hint).toContain('`rootcast rm --force x-1`');
    const run = await cli('run', 'x-1', '--', '/usr/bin/true');
    expect(run.code).toBe(1);
    expect(errorLines(run).hint).toContain('`rootcast rm --force x-1`');

    // Something mounted under it (by hand, in this namespace) is unmounted, not emptied.
    const mountPoint = join(store, 'containers/x-1/rootfs');
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mountPoint]);
    try {
      writeFileSync(join(mountPoint, 'kept'), '');
      const forced = await cli('rm', '--force', 'x-1', '--json');
      expect(forced.code).toBe(0);
      expect(json(forced)).toEqual({ removed: ['x-1'] });
    } finally {
      if (mountsUnder(store).length > 0) execFileSync('umount', ['-l', mountPoint]);
    }
    expect(mountsUnder(store)).toEqual([]);
    expect(containers()).toEqual([]);
    expect(temporaries()).toEqual([]);
  });

  it('removes a container named twice once', async () => {
    await clone('tiny:1.0', 'b-1', { store });
    const r = await cli('rm', 'b-1', 'b-1', '--json');
    expect(r.code).toBe(0);
    expect(json(r)).toEqual({ removed: ['b-1'] });
    expect(containers()).toEqual([]);
  });

  it('takes --count in decimal digits only', async () => {
    for (const count of ['0x3', '1e3', ' 2', '2.0', '+2']) {
      const r = await cli('clone', 'tiny:1.0', '--count', count, '--name', 'n{{index}}', '--json');
      expect(r.code, count).toBe(2);
      expect(json(r), count).toMatchObject({ error: { code: 'USAGE_OPTION_INVALID' } });
    }
    expect(containers()).toEqual([]);
    const ok = await cli('clone', 'tiny:1.0', '--count', '02', '--name', 'n{{index}}', '-q');
    expect(ok.code).toBe(0);
    expect(containers()).toEqual(['n1', 'n2']);
    await cli('rm', 'n1', 'n2');
  });

  it('checks the working directory inside the container before starting', async () => {
    await clone('tiny:1.0', 'wd', { store });
    const relative = await cli('run', '-w', 'tmp', 'wd', '--json', '--', '/bin/sh', '-c', 'pwd');
    expect(relative.code).toBe(2);
    expect(json(relative)).toMatchObject({ error: { code: 'RUN_WORKDIR_INVALID' } });
    for (const workdir of ['/nonexistent', '/escape', '/etc/passwd']) {
      const missing = await cli('run', '-w', workdir, 'wd', '--', '/bin/sh', '-c', 'pwd');
      expect(missing.code, workdir).toBe(2);
      expect(errorLines(missing).message, workdir).toBe(`${workdir} is not a directory in container wd`);
    }
    const linked = await cli('run', '-w', '/scratch', 'wd', '--', '/bin/sh', '-c', 'pwd -P');
    expect(linked).toMatchObject({ code: 0, stdout: '/tmp\n' });
    // /proc, /sys and /dev are mounted by the run: not checked against the template's tree.
    const proc = await cli('run', '-w', '/proc/sys', 'wd', '--', '/bin/sh', '-c', 'pwd');
    expect(proc).toMatchObject({ code: 0, stdout: '/proc/sys\n' });
    // --rm TEMPLATE: checked in the template's tree, before the disposable clone is made (no
    // container appeared in, or left, containers/: its mtime is unchanged).
    const mtime = statSync(join(store, 'containers')).mtimeMs;
    const disposable = await cli('run', '--rm', '-w', '/nope', 'tiny:1.0', '--', '/usr/bin/true');
    expect(disposable.code).toBe(2);
    expect(errorLines(disposable).message).toBe('/nope is not a directory in template tiny:1.0');
    expect(containers()).toEqual(['wd']);
    expect(statSync(join(store, 'containers')).mtimeMs).toBe(mtime);
    // --rm CONTAINER: a run refused before its command started leaves the container.
    const kept = await cli('run', '--rm', '-w', '/nonexistent', 'wd', '--json', '--', '/usr/bin/true');
    expect(kept.code).toBe(2);
    expect(json(kept)).toMatchObject({ error: { code: 'RUN_WORKDIR_MISSING' } });
    expect(containers()).toEqual(['wd']);
  });

  it("suggests -w / to create a missing WorkingDir of the template's", async () => {
    // As a pulled image's config could have it (commitTemplate writes no WorkingDir).
    const details = await readTemplate(store, 'tiny:1.0');
    const workingDir = "/srv/it's here";
    await cloneContainers(
      store,
      {
        ...details,
        config: { ...details.config, config: { ...details.config.config, WorkingDir: workingDir } },
      },
      [{ name: 'img-wd', values: { name: 'img-wd' } }],
      { driver: await chooseDriver(store), ref: 'tiny:1.0' },
    );
    const r = await cli('run', 'img-wd', '--', '/usr/bin/true');
    expect(r.code).toBe(2);
    const { message, hint } = errorLines(r);
    expect(message).toBe(`${workingDir} is not a directory in container img-wd (the template's WorkingDir)`);
    const suggested = hint.slice(hint.indexOf('rootcast run '));
    expect(suggested).toBe(`rootcast run -w / img-wd -- mkdir -p '/srv/it'\\''s here'`);
    // A shell reads it back as the path; with -w / the run itself starts.
    const words = execFileSync('/bin/sh', ['-c', `rootcast() { printf '%s\\n' "$@"; }; ${suggested}`], {
      encoding: 'utf8',
    });
    expect(words.split('\n').slice(-2, -1)).toEqual([workingDir]);
    expect(await cli('run', '-w', '/', 'img-wd', '--', '/usr/bin/true')).toMatchObject({ code: 0 });
    await cli('rm', 'img-wd');
  });

  it('prints the run result with --json after the command output, and refuses --driver for a container', async () => {
    const r = await cli('run', 'wd', '--json', '--', '/bin/sh', '-c', 'echo from the command; exit 3');
    expect(r.code).toBe(3);
    const [first, ...rest] = r.stdout.split('\n');
    expect(first).toBe('from the command');
    expect(JSON.parse(rest.join('\n'))).toEqual({ container: 'wd', exitCode: 3, removed: false });
    const driver = await cli('run', '--driver', 'copy', 'wd', '--json', '--', '/usr/bin/true');
    expect(driver.code).toBe(2);
    expect(json(driver)).toMatchObject({ error: { code: 'RUN_ARGS_INVALID' } });
    const env = await cli('run', '-e', 'A-B=1', 'wd', '--json', '--', '/usr/bin/true');
    expect(env.code).toBe(2);
    expect(json(env)).toMatchObject({ error: { code: 'RUN_ARGS_INVALID' } });
    await cli('rm', 'wd');
  });

  it('fails with CLONE_LAYER_MISSING when the template layer of a container is gone', async () => {
    await makeTemplate({
      store,
      name: 'gone',
      build: (tree) => {
        installHostTools(tree);
        writeFileSync(join(tree, 'etc/gone'), 'a layer of its own\n');
      },
    });
    const layer = (await readTemplate(store, 'gone:1.0')).layers[0]!.unpackedPath;
    await clone('gone:1.0', 'w1', { store });
    rmSync(layer, { recursive: true, force: true });
    const r = await cli('run', 'w1', '--', '/usr/bin/true');
    expect(r.code).toBe(1);
    const { message, hint } = errorLines(r);
    expect(message).toBe(
      'container w1 cannot run: 1 layer(s) of its template gone:1.0 are missing from the store',
    );
    expect(hint).toContain('Rebuild or pull gone:1.0');
    expect(mountsUnder(store)).toEqual([]);
    expect(existsSync(join(store, 'containers/w1/running'))).toBe(false);
    // With --rm too: the command never ran, so the container (and its own changes) stays.
    const rm = await cli('run', '--rm', 'w1', '--json', '--', '/usr/bin/true');
    expect(rm.code).toBe(1);
    expect(json(rm)).toMatchObject({ error: { code: 'CLONE_LAYER_MISSING' } });
    expect(containers()).toContain('w1');
    await cli('rm', 'w1');
  }, 60_000);

  it('run --rm CONTAINER removes it once its command has run', async () => {
    await clone('tiny:1.0', 'once', { store });
    const r = await cli('run', '--rm', 'once', '--json', '--', '/bin/sh', '-c', 'exit 4');
    expect(r.code).toBe(4);
    expect(JSON.parse(r.stdout)).toEqual({ container: 'once', exitCode: 4, removed: true });
    expect(containers()).not.toContain('once');
  });

  it('rm unmounts what is mounted under a container of a store reached through a symlink', async () => {
    await clone('tiny:1.0', 'via-link', { store });
    const outside = join(dir.path, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'kept'), "not the container's\n");
    const linked = join(dir.path, 'store-link');
    symlinkSync(store, linked);
    const mountPoint = join(store, 'containers/via-link/rootfs');
    execFileSync('mount', ['--bind', outside, mountPoint]);
    try {
      const r = await runCli(['rm', '--store', linked, 'via-link', '--json']);
      expect(r.code).toBe(0);
      expect(json(r)).toEqual({ removed: ['via-link'] });
    } finally {
      if (mountsUnder(store).length > 0) execFileSync('umount', ['-l', mountPoint]);
    }
    expect(readFileSync(join(outside, 'kept'), 'utf8')).toBe("not the container's\n");
    expect(mountsUnder(store)).toEqual([]);
    expect(containers()).not.toContain('via-link');
    expect(temporaries()).toEqual([]);
  });

  it('rm --force refuses a containers/NAME that is a symlink, and touches nothing', async () => {
    const target = join(dir.path, 'elsewhere');
    mkdirSync(join(target, 'rootfs'), { recursive: true });
    writeFileSync(join(target, 'container.json'), '{"schema":1,\n');
    writeFileSync(join(target, 'rootfs/kept'), '');
    symlinkSync(target, join(store, 'containers/sneaky'));
    await clone('tiny:1.0', 'plain', { store });
    const r = await cli('rm', '--force', 'plain', 'sneaky', '--json');
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ error: { code: 'CONTAINER_NOT_DIRECTORY' } });
    expect(lstatSync(join(store, 'containers/sneaky')).isSymbolicLink()).toBe(true);
    expect(existsSync(join(target, 'rootfs/kept'))).toBe(true);
    expect(containers()).toContain('plain'); // all names are checked before any is removed
    expect(temporaries()).toEqual([]);
    unlinkSync(join(store, 'containers/sneaky'));
    await cli('rm', 'plain');
  });

  it('rm --force does not take a plain directory with inode 256 for a btrfs subvolume', async (context) => {
    // A store on a fresh tmpfs, in a private mount namespace (nothing is left mounted), whose
    // damaged container has a rootfs/ with inode 256, the number of a subvolume's root on btrfs.
    const root = join(dir.path, 'tmpfs-store');
    mkdirSync(root);
    const script = [
      'set -e',
      'mount -t tmpfs tmpfs "$1"',
      'cd "$1"',
      'mkdir -p store/containers/d1 spare',
      'printf \'{"schema":1,\\n\' > store/containers/d1/container.json',
      'i=0; while [ $i -lt 400 ]; do mkdir spare/$i; i=$((i+1)); done',
      'hit=$(find spare -mindepth 1 -maxdepth 1 -inum 256)',
      '[ -n "$hit" ] || exit 77',
      'touch "$hit/file"',
      'mv "$hit" store/containers/d1/rootfs',
      '"$2" "$3" rm --store "$1/store" --force d1 --json',
      '[ ! -e store/containers/d1 ] && [ -z "$(ls store/tmp)" ]',
    ].join('\n');
    const r = await runProcess('unshare', [
      '--mount',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      script,
      'inode-256',
      root,
      process.execPath,
      CLI,
    ]);
    if (r.code === 77) context.skip('this kernel does not number tmpfs inodes from 1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(json(r)).toEqual({ removed: ['d1'] });
  });
});

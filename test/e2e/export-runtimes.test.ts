import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownerPidOf } from '../../src/store/paths.js';
import { CLI, runCli } from '../helpers/cli.js';
import { diffManifests, formatDifference, treeManifest } from '../helpers/tree-manifest.js';

const exec = promisify(execFile);

/**
 * The exports of a real Debian minbase, read by the runtimes they are for (issue 6,
 * acceptance 1 and 5): podman runs the oci-archive, skopeo reads the layouts, LXC's `local`
 * template installs the lxc export and `lxc-execute` runs a command in it, and the OpenVZ
 * tarball unpacks to the tree `export --format tar` gives.
 */

/** True when /sys/fs/cgroup has v1 controllers and a cgroup2 `unified` mount (systemd's hybrid mode). */
function hybridCgroups(): boolean {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  return / \/sys\/fs\/cgroup\/unified cgroup2 /.test(mounts);
}

/**
 * Runs podman as root with everything it writes under `root`: its storage (vfs, so no
 * kernel overlay on top of overlay is needed), run and tmp directories; `/run` (crun's and
 * libpod's state) and the image cache are tmpfs in a private mount namespace, so nothing is
 * left on the host. crun refuses systemd's hybrid cgroup layout; in the namespace the
 * cgroup2 `unified` mount is detached so it sees plain v1. The host's hard limits are below
 * podman's default rlimits, hence the explicit ulimits.
 */
async function podman(root: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const global = [
    `--root=${root}/storage`,
    `--runroot=${root}/run`,
    `--tmpdir=${root}/tmp`,
    '--storage-driver=vfs',
    '--cgroup-manager=cgroupfs',
    '--events-backend=file',
  ];
  const quoted = [...global, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = [
    'set -e',
    hybridCgroups() ? 'umount /sys/fs/cgroup/unified' : ':',
    'mount -t tmpfs tmpfs /run',
    `mkdir -p ${root}/var-tmp ${root}/containers-cache`,
    'mount --bind ' + `${root}/var-tmp /var/tmp`,
    existsSync('/var/lib/containers') ? `mount --bind ${root}/containers-cache /var/lib/containers` : ':',
    `exec podman ${quoted}`,
  ].join('\n');
  return exec('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
    maxBuffer: 16 << 20,
  });
}

const RUN_FLAGS = ['--rm', '--network=none', '--ulimit=nofile=1024:1024', '--ulimit=nproc=1024:1024'];

/** LXC keeps lock directories under /run/lxc/lock/<lxcpath>: remove ours and the empty parents. */
async function removeLxcLocks(lxcpath: string): Promise<void> {
  const base = '/run/lxc/lock';
  await rm(join(base, lxcpath), { recursive: true, force: true });
  for (let d = dirname(join(base, lxcpath)); d.startsWith(`${base}/`); d = dirname(d)) {
    try {
      await rmdir(d);
    } catch {
      break;
    }
  }
}

function untar(file: string, into: string): string {
  execFileSync('mkdir', ['-p', into]);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', file, '-C', into]);
  return into;
}

describe('exports of debian-12-minbase, run by their runtimes', () => {
  let dir: string;
  let store: string;
  let tarTree: string;
  const ref = 'debian-12-minbase:1.0';
  const cli = (args: string[]) => runCli([...args, '--store', store]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-export-e2e-'));
    store = join(dir, 'store');
    const recipe = join(dir, 'debian-12-minbase.yaml');
    await copyFile(new URL('../../recipes/debian-12-minbase.yaml', import.meta.url), recipe);
    const built = await runCli(['build', recipe, '--store', store, '--json']);
    if (built.code !== 0) throw new Error(`build failed:\n${built.stderr}`);
    const tar = join(dir, 'tree.tar');
    const exported = await cli(['export', ref, '--format', 'tar', '-o', tar]);
    if (exported.code !== 0) throw new Error(`export failed:\n${exported.stderr}`);
    tarTree = untar(tar, join(dir, 'tree'));
  }, 600_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('podman runs the oci-archive; skopeo reads the oci and oci-archive exports', async () => {
    const archive = join(dir, 'minbase.oci.tar');
    const result = await cli(['export', ref, '--format', 'oci-archive', '-o', archive, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as { digest: string; manifestDigest: string };
    expect(summary.manifestDigest).toBe(summary.digest);
    const inspected = JSON.parse((await exec('skopeo', ['inspect', `oci-archive:${archive}`])).stdout) as {
      Digest: string;
      Architecture: string;
      Os: string;
    };
    expect(inspected).toMatchObject({ Digest: summary.digest, Architecture: 'amd64', Os: 'linux' });

    const layout = join(dir, 'layout-gzip');
    expect((await cli(['export', ref, '--format', 'oci', '--compression', 'gzip', '-o', layout])).code).toBe(
      0,
    );
    const raw = (await exec('skopeo', ['inspect', '--raw', `oci:${layout}:${ref}`])).stdout;
    const gz = JSON.parse(raw) as { layers: { mediaType: string }[] };
    expect(gz.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip']);

    const root = join(dir, 'podman');
    await mkdir(root);
    const debianVersion = (await readFile(join(tarTree, 'etc/debian_version'), 'utf8')).trim();
    const ran = await podman(root, [
      'run',
      ...RUN_FLAGS,
      `oci-archive:${archive}`,
      'cat',
      '/etc/debian_version',
    ]);
    expect(ran.stdout.trim()).toBe(debianVersion);
    const loaded = await podman(root, ['load', '-i', archive]);
    expect(loaded.stdout).toContain(`Loaded image: localhost/${ref}`);
  }, 300_000);

  it('installs the lxc export with the local template and runs a command with lxc-execute', async () => {
    const out = join(dir, 'lxc');
    expect((await cli(['export', ref, '--format', 'lxc', '--level', '1', '-o', out])).code).toBe(0);
    const lxcpath = join(dir, 'lxcpath');
    await mkdir(lxcpath);
    const config = join(dir, 'lxc.conf');
    await writeFile(config, 'lxc.net.0.type = empty\n');
    await exec('lxc-create', [
      ...['-P', lxcpath, '-n', 'rc1', '-f', config, '-t', 'local', '--'],
      ...['--metadata', join(out, 'meta.tar.xz'), '--fstree', join(out, 'rootfs.tar.xz')],
    ]);
    const conf = await readFile(join(lxcpath, 'rc1', 'config'), 'utf8');
    expect(conf).toContain('lxc.arch = x86_64');
    expect(conf).toContain('lxc.include = /usr/share/lxc/config/common.conf');
    try {
      const ran = await exec('lxc-execute', ['-P', lxcpath, '-n', 'rc1', '--', 'cat', '/etc/debian_version']);
      expect(ran.stdout.trim()).toBe((await readFile(join(tarTree, 'etc/debian_version'), 'utf8')).trim());
    } finally {
      await exec('lxc-destroy', ['-P', lxcpath, '-n', 'rc1']).catch(() => undefined);
      await removeLxcLocks(lxcpath);
    }
  }, 300_000);

  it('writes an OpenVZ tarball that unpacks to the tar export, and an Incus image with its metadata', async () => {
    const vz = join(dir, 'vz');
    await mkdir(vz);
    const result = await cli(['export', ref, '--format', 'openvz', '-o', vz, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const { output } = JSON.parse(result.stdout) as { output: string };
    expect(output).toBe(join(vz, 'debian-bookworm-x86_64-minbase.tar.gz'));
    const left = treeManifest(untar(output, join(dir, 'vz-tree')));
    const right = treeManifest(tarTree);
    expect(diffManifests(left, right).map((d) => formatDifference(d, left, right))).toEqual([]);

    const incus = join(dir, 'incus.tar.gz');
    expect((await cli(['export', ref, '--format', 'incus', '-o', incus])).code).toBe(0);
    const metadata = (await exec('tar', ['-xzOf', incus, 'metadata.yaml'])).stdout;
    expect(metadata).toMatch(/^architecture: x86_64$/m);
    expect(metadata).toMatch(/^creation_date: \d+$/m);
    expect(metadata).toMatch(/^ {2}os: debian$/m);
    expect(metadata).toMatch(/^ {2}release: bookworm$/m);
  }, 300_000);

  // Waits until the export's xz is running (it compresses rootfs.tar.xz for tens of seconds
  // at the default level), so a kill lands midway however slow the machine is.
  const xzChildrenOf = (pid: number | undefined) =>
    // (ps ORs its selections, so: select by parent, keep the xz; it exits 1 when none match.)
    spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(([, comm]) => comm === 'xz')
      .map(([pid]) => Number(pid));
  const untilXz = async (pid: number | undefined) => {
    for (let i = 0; i < 600 && xzChildrenOf(pid).length === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    const found = xzChildrenOf(pid);
    expect(found.length, 'xz never started').toBeGreaterThan(0);
    // A moment into the compression, so the temporary holds a part of it.
    await new Promise((r) => setTimeout(r, 500));
    return found;
  };

  it('leaves nothing at the output when the export is killed midway', async () => {
    const out = join(dir, 'killed');
    const child = spawn(
      process.execPath,
      [CLI, 'export', ref, '--format', 'lxc', '-o', out, '--store', store],
      {
        stdio: 'ignore',
      },
    );
    await untilXz(child.pid);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    expect(existsSync(out)).toBe(false);
    const left = (await readdir(dir)).filter((n) => n.startsWith('.tmp-killed-'));
    expect(left).toHaveLength(1);
    expect(ownerPidOf(left[0]!)).toBe(child.pid);
  }, 60_000);

  it('stops on Ctrl-C midway, removing its temporary and killing xz', async () => {
    const out = join(dir, 'interrupted');
    const child = spawn(
      process.execPath,
      [CLI, 'export', ref, '--format', 'lxc', '-o', out, '--store', store, '--json'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const closed = new Promise<NodeJS.Signals | null>((r) => child.once('close', (_code, by) => r(by)));
    const xzPids = await untilXz(child.pid);
    child.kill('SIGINT');
    // It dies by the signal after cleaning up, as a shell expects of Ctrl-C.
    expect(await closed).toBe('SIGINT');
    expect(JSON.parse(stdout)).toMatchObject({ error: { code: 'ABORTED' } });
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((n) => n.startsWith('.tmp-interrupted-'))).toEqual([]);
    // The xz it had started is gone too (after the SIGKILL above, one runs on until its input ends).
    const alive = () => xzPids.filter((pid) => existsSync(`/proc/${pid}`));
    for (let i = 0; i < 100 && alive().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(alive()).toEqual([]);
  }, 60_000);
});

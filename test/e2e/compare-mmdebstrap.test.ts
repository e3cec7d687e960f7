import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newestReleaseEpoch } from '../../src/api/build.js';
import type { LockFile } from '../../src/lock/lock-file.js';
import { runCli } from '../helpers/cli.js';
import { mirror } from '../helpers/mirror.js';
import {
  diffManifests,
  formatDifference,
  type Manifest,
  type ManifestDifference,
  mtimeDifferences,
  treeManifest,
} from '../helpers/tree-manifest.js';

/**
 * Acceptance 3 of the build: the tree rootcast builds equals, file by file, what mmdebstrap
 * builds from the same package versions (type, mode, owner, group, link target, size and
 * content hash, xattrs, device numbers, hardlink count), except for the paths of
 * `ALLOWED_DIFFERENCES`, each with its reason, mirrored in docs/reproducibility.md
 * ("Differences from mmdebstrap"). The set of differences must equal the list exactly, down
 * to which properties differ: a new difference fails, and so does an entry that no longer
 * differs (remove it, here and in the docs).
 *
 * How: lock the recipe, then build it with rootcast and run the real mmdebstrap at the same
 * time, with mmdebstrap's SOURCE_DATE_EPOCH set to the epoch rootcast derives from the lock.
 * rootcast's tree is the one it committed (its layer, unpacked in the store); mmdebstrap's is
 * its tar output unpacked by GNU tar, which keeps owners, modes, devices and xattrs. If mmdebstrap installed other versions than the lock names, the
 * mirror moved between the two: everything runs once more.
 *
 * The sources go to mmdebstrap as one multi-line argument, the sources.list mmdebstrap writes
 * by default for a Debian suite; given one argument per line it would separate them with
 * blank lines.
 */

const RELEASE = 'bookworm';
const RECIPE = new URL('../../recipes/debian-12-minbase.yaml', import.meta.url);
const execFileAsync = promisify(execFile);

/** How a path differs, as `describeDifference` spells it: `only in …` or the differing fields. */
type Expected = string;

interface AllowedDifference {
  path: string;
  differs: Expected;
  reason: string;
}

/** Keep in step with docs/reproducibility.md, "Differences from mmdebstrap". */
const ALLOWED_DIFFERENCES: AllowedDifference[] = [
  {
    path: '/etc/hostname',
    differs: 'only in mmdebstrap',
    reason: 'mmdebstrap copies the host file; rootcast never copies host files',
  },
  {
    path: '/etc/resolv.conf',
    differs: 'only in mmdebstrap',
    reason: 'mmdebstrap copies the host file; rootcast never copies host files',
  },
  {
    path: '/etc/shells',
    differs: 'content',
    reason:
      "same lines, other order: mmdebstrap's tree is converted to merged /usr by usrmerge's postinst after debianutils wrote the /bin entries",
  },
  {
    path: '/usr/bin/gunzip',
    differs: 'links',
    reason: 'gzip ships it hardlinked to uncompress; usrmerge copies /bin into /usr/bin file by file',
  },
  {
    path: '/usr/bin/uncompress',
    differs: 'links',
    reason: 'gzip ships it hardlinked to gunzip; usrmerge copies /bin into /usr/bin file by file',
  },
  {
    path: '/var/lib/dpkg/status-old',
    differs: 'content',
    reason: "dpkg's status before its last run, and the last runs differ (apt's batches vs --configure -a)",
  },
  {
    path: '/var/lib/apt/extended_states',
    differs: 'content',
    reason:
      "the same Auto-Installed packages, in apt's internal order in mmdebstrap's and sorted by name in rootcast's",
  },
  {
    path: '/var/lib/apt/lists/lock',
    differs: 'only in mmdebstrap',
    reason: 'created by apt when it runs; rootcast runs no apt',
  },
  {
    path: '/var/cache/apt/archives/lock',
    differs: 'only in mmdebstrap',
    reason: 'created by apt when it runs; rootcast runs no apt',
  },
  {
    path: '/var/lib/apt/lists/partial',
    differs: 'mode,owner',
    reason: 'apt makes it _apt:root 0700 when it runs; rootcast runs no apt',
  },
  {
    path: '/var/cache/apt/archives/partial',
    differs: 'mode,owner',
    reason: 'apt makes it _apt:root 0700 when it runs; rootcast runs no apt',
  },
];

function describeDifference(d: ManifestDifference): Expected {
  if (d.kind === 'differs') return d.fields.join(',');
  return d.kind === 'only-left' ? 'only in rootcast' : 'only in mmdebstrap';
}

async function cli(args: string[]): Promise<string> {
  // The build's default epoch (from the lock) is what is under test, not the caller's.
  const result = await runCli(args, { env: { SOURCE_DATE_EPOCH: undefined } });
  if (result.code !== 0) throw new Error(`rootcast ${args[0]} failed:\n${result.stderr}`);
  return result.stdout;
}

/** `name=version` of every package in a dpkg status file that is `install ok installed`. */
function installedVersions(status: string): { installed: string[]; otherStates: string[] } {
  const installed: string[] = [];
  const otherStates: string[] = [];
  for (const stanza of status.split(/\n\n+/)) {
    const field = (name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(stanza)?.[1];
    const pkg = field('Package');
    if (pkg === undefined) continue;
    if (field('Status') === 'install ok installed') installed.push(`${pkg}=${field('Version')}`);
    else otherStates.push(`${pkg}: ${field('Status')}`);
  }
  return { installed: installed.sort(), otherStates };
}

interface BuildJson {
  layers: { diffId: string }[];
}

interface Run {
  work: string;
  /** The tree rootcast committed (its layer, unpacked in the store) and mmdebstrap's, untarred. */
  trees: { rootcast: string; mmdebstrap: string };
  epoch: number;
  locked: string[];
  mmdebstrap: { installed: string[]; otherStates: string[] };
  seconds: { rootcast: number; mmdebstrap: number };
}

async function buildBoth(debian: string, security: string): Promise<Run> {
  const work = await mkdtemp(join(tmpdir(), 'rootcast-mmcmp-'));
  const recipe = join(work, 'debian-12-minbase.yaml');
  const store = join(work, 'store');
  await copyFile(RECIPE, recipe);
  await cli(['lock', recipe, '--store', store]);
  const lockPath = join(work, 'debian-12-minbase.lock.json');
  const lockText = await readFile(lockPath, 'utf8');
  const lock = JSON.parse(lockText) as LockFile;
  const epoch = newestReleaseEpoch(lock);

  const timed = async (task: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await task();
    return Math.round(performance.now() - t0) / 1000;
  };
  const sources = [
    `deb ${debian} ${RELEASE} main`,
    `deb ${debian} ${RELEASE}-updates main`,
    `deb ${security} ${RELEASE}-security main`,
  ].join('\n');
  let layer = '';
  const [rootcast, mmdebstrap] = await Promise.all([
    timed(async () => {
      const built = JSON.parse(await cli(['build', recipe, '--store', store, '--json'])) as BuildJson;
      if (built.layers.length !== 1) throw new Error(`expected one layer, got ${built.layers.length}`);
      layer = join(store, 'layers', built.layers[0]!.diffId.replace(/^sha256:/, ''));
    }),
    timed(() =>
      execFileAsync(
        'mmdebstrap',
        ['--variant=minbase', '--components=main', RELEASE, join(work, 'mmdebstrap.tar'), sources],
        {
          maxBuffer: 64 * 1024 * 1024,
          env: { ...process.env, LC_ALL: 'C.UTF-8', SOURCE_DATE_EPOCH: String(epoch) },
        },
      ),
    ),
  ]);
  // The build must not have locked again (that would change the epoch under mmdebstrap).
  if ((await readFile(lockPath, 'utf8')) !== lockText) throw new Error('rootcast build rewrote the lock');
  await mkdir(join(work, 'mmdebstrap'));
  await execFileAsync('tar', [
    '--xattrs',
    '--xattrs-include=*',
    '--numeric-owner',
    '-xpf',
    join(work, 'mmdebstrap.tar'),
    '-C',
    join(work, 'mmdebstrap'),
  ]);
  await rm(join(work, 'mmdebstrap.tar'));
  return {
    work,
    trees: { rootcast: layer, mmdebstrap: join(work, 'mmdebstrap') },
    epoch,
    locked: lock.packages.map((p) => `${p.name}=${p.version}`).sort(),
    mmdebstrap: installedVersions(await readFile(join(work, 'mmdebstrap/var/lib/dpkg/status'), 'utf8')),
    seconds: { rootcast, mmdebstrap },
  };
}

describe('the rootcast tree equals the mmdebstrap tree, file by file', () => {
  let run: Run;
  let rootcast: Manifest;
  let mmdebstrap: Manifest;

  beforeAll(async () => {
    if (process.getuid?.() !== 0)
      throw new Error('this test runs mmdebstrap in root mode and must run as root');
    const debian = await mirror('debian');
    const security = await mirror('debian-security');
    for (let attempt = 1; ; attempt++) {
      run = await buildBoth(debian, security);
      const same = run.mmdebstrap.installed.join() === run.locked.join();
      if (same || attempt === 2) break;
      await rm(run.work, { recursive: true, force: true });
      console.info('mmdebstrap installed other versions than the lock: the mirror moved; running again');
    }
    const t0 = performance.now();
    rootcast = treeManifest(run.trees.rootcast);
    mmdebstrap = treeManifest(run.trees.mmdebstrap);
    console.info(
      `compare-mmdebstrap: rootcast ${run.seconds.rootcast} s, mmdebstrap ` +
        `${run.seconds.mmdebstrap} s, walk ${Math.round(performance.now() - t0)} ms, ` +
        `${rootcast.size} / ${mmdebstrap.size} entries`,
    );
  }, 300_000);

  afterAll(async () => {
    if (run) await rm(run.work, { recursive: true, force: true });
  });

  it('mmdebstrap installed exactly the locked package versions', () => {
    expect(run.mmdebstrap.otherStates).toEqual([]);
    expect(run.mmdebstrap.installed).toEqual(run.locked);
    expect(run.locked.length).toBeGreaterThan(80);
  });

  it('differs exactly in the documented paths, and in the documented properties', () => {
    const differences = diffManifests(rootcast, mmdebstrap);
    const actual = Object.fromEntries(differences.map((d) => [d.path, describeDifference(d)]));
    const expected = Object.fromEntries(ALLOWED_DIFFERENCES.map((a) => [a.path, a.differs]));
    const detail = differences.map((d) => formatDifference(d, rootcast, mmdebstrap)).join('\n');
    expect(actual, `differences (rootcast | mmdebstrap):\n${detail}`).toEqual(expected);
    // The comparison is not vacuous: both trees are whole systems.
    expect(rootcast.size).toBeGreaterThan(5000);
    expect(rootcast.get('/usr/bin/dpkg')?.content).toBe(mmdebstrap.get('/usr/bin/dpkg')?.content);
  });

  it('has /etc/shells with the same lines as mmdebstrap', async () => {
    const lines = async (tree: string) =>
      (await readFile(join(tree, 'etc/shells'), 'utf8')).split('\n').sort();
    expect(await lines(run.trees.rootcast)).toEqual(await lines(run.trees.mmdebstrap));
  });

  it('marks the same packages Auto-Installed as apt did for mmdebstrap', async () => {
    const stanzas = async (tree: string) =>
      (await readFile(join(tree, 'var/lib/apt/extended_states'), 'utf8'))
        .split('\n\n')
        .map((s) => s.trim())
        .filter(Boolean)
        .sort();
    const ours = await stanzas(run.trees.rootcast);
    expect(ours.length).toBeGreaterThan(5);
    expect(ours).toEqual(await stanzas(run.trees.mmdebstrap));
  });

  it('lists every allowed difference in docs/reproducibility.md', async () => {
    const docs = await readFile(new URL('../../docs/reproducibility.md', import.meta.url), 'utf8');
    const section = docs.slice(docs.indexOf('## Differences from mmdebstrap'));
    for (const { path } of ALLOWED_DIFFERENCES) expect(section, path).toContain(`\`${path}\``);
  });

  it('has the same mtimes for every non-directory; reports the directories', () => {
    for (const [path, entry] of rootcast) {
      expect(entry.mtime, `${path} is newer than SOURCE_DATE_EPOCH`).toBeLessThanOrEqual(run.epoch);
    }
    const differing = mtimeDifferences(rootcast, mmdebstrap);
    const directories = differing.filter((d) => d.type === 'dir');
    const others = differing.filter((d) => d.type !== 'dir');
    // docs/reproducibility.md explains the directories: they keep their package's mtime in
    // rootcast and the time dpkg last wrote into them in mmdebstrap.
    console.info(`mtimes differ on ${directories.length} directories (epoch ${run.epoch})`);
    expect(others.map((d) => `${d.path} ${d.left} | ${d.right}`)).toEqual([]);
  });
});

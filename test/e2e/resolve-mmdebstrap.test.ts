import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContext } from '../../src/core/context.js';
import { type DebSource, loadIndexes } from '../../src/distro/deb/repository.js';
import type { RepoIndex } from '../../src/distro/deb/types.js';
import { resolve } from '../../src/resolve/index.js';
import type { Variant } from '../../src/resolve/types.js';
import { mirror } from '../helpers/mirror.js';

/**
 * The resolver's acceptance test: for each variant, our package set over the indexes
 * rootcast loads must equal the set the real mmdebstrap installs from the same mirror at
 * the same moment (docs/resolver.md, "Known differences": there are none, so the test
 * asserts equality).
 *
 * How mmdebstrap is run (measured on 2 cores, see docs/resolver.md):
 * - essential, apt: `--simulate`. Both are one apt call, and the simulated call is the one
 *   the real run makes, only printing `Inst` lines instead of unpacking (~2.5 s each).
 * - minbase, important, standard (and minbase with --include): a real `--mode=root`
 *   build to the null format, because their second stage runs apt against the essential set
 *   installed by the first, which `--simulate` cannot reproduce (it resolves the second
 *   stage from an empty status). A customize hook prints `dpkg-query -W` and copies apt's
 *   InRelease files, so we can check mmdebstrap saw exactly the Release we verified
 *   (~15-35 s each).
 * Sameness in time: our indexes are loaded before and after the mmdebstrap runs; if the
 * mirror changed in between, everything is run once more.
 */

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const RELEASE = 'bookworm';
const execFileAsync = promisify(execFile);

interface Case {
  name: string;
  variant: Variant;
  include: string[];
  mode: 'simulate' | 'root';
}

const CASES: Case[] = [
  { name: 'essential', variant: 'essential', include: [], mode: 'simulate' },
  { name: 'apt', variant: 'apt', include: [], mode: 'simulate' },
  { name: 'minbase', variant: 'minbase', include: [], mode: 'root' },
  { name: 'important', variant: 'important', include: [], mode: 'root' },
  { name: 'standard', variant: 'standard', include: [], mode: 'root' },
  { name: 'minbase+include', variant: 'minbase', include: ['openssh-server', 'curl'], mode: 'root' },
];

interface MmdebstrapResult {
  packages: string[];
  /** sha256 of each InRelease apt used (root mode only). */
  inReleaseDigests: string[];
  seconds: number;
}

function sourceLines(debian: string, security: string): string[] {
  return [
    `deb ${debian} ${RELEASE} main`,
    `deb ${debian} ${RELEASE}-updates main`,
    `deb ${security} ${RELEASE}-security main`,
  ];
}

async function runMmdebstrap(c: Case, lines: string[], work: string): Promise<MmdebstrapResult> {
  const out = join(work, c.name.replace(/[^a-z0-9]/g, '_'));
  await mkdir(join(out, 'lists'), { recursive: true });
  const args = [`--variant=${c.variant}`];
  if (c.include.length > 0) args.push(`--include=${c.include.join(',')}`);
  if (c.mode === 'simulate') {
    args.push('--simulate', '--verbose');
  } else {
    args.push(
      '--mode=root',
      '--format=null',
      `--customize-hook=chroot "$1" dpkg-query -W -f='\${Package}\\n' > ${out}/packages`,
      `--customize-hook=cp "$1"/var/lib/apt/lists/*_InRelease ${out}/lists/`,
    );
  }
  args.push(RELEASE, '/dev/null', ...lines);
  const started = performance.now();
  const { stdout, stderr } = await execFileAsync('mmdebstrap', args, {
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, LC_ALL: 'C.UTF-8' },
  });
  const seconds = (performance.now() - started) / 1000;
  if (c.mode === 'simulate') {
    const names = `${stdout}\n${stderr}`
      .split('\n')
      .map((line) => /^Inst (\S+) /.exec(line)?.[1])
      .filter((name): name is string => name !== undefined);
    return { packages: [...new Set(names)].sort(), inReleaseDigests: [], seconds };
  }
  const packages = (await readFile(join(out, 'packages'), 'utf8')).split('\n').filter(Boolean).sort();
  const inReleaseDigests: string[] = [];
  for (const file of (await readdir(join(out, 'lists'))).sort()) {
    const bytes = await readFile(join(out, 'lists', file));
    inReleaseDigests.push(createHash('sha256').update(bytes).digest('hex'));
  }
  return { packages, inReleaseDigests: inReleaseDigests.sort(), seconds };
}

function releaseDigests(indexes: readonly RepoIndex[]): string[] {
  return [...new Set(indexes.map((i) => i.release.sha256))].sort();
}

describe('resolve() selects the same packages as mmdebstrap', () => {
  let work: string;
  let indexes: RepoIndex[];
  const results = new Map<string, MmdebstrapResult>();

  beforeAll(async () => {
    if (process.getuid?.() !== 0)
      throw new Error('this test runs mmdebstrap --mode=root and must run as root');
    work = await mkdtemp(join(tmpdir(), 'rootcast-'));
    const debian = await mirror('debian');
    const security = await mirror('debian-security');
    const sources: DebSource[] = [
      {
        uri: debian,
        uriTemplate: '{{mirror.debian}}',
        suites: [RELEASE, `${RELEASE}-updates`],
        components: ['main'],
        keyring: KEYRING,
      },
      {
        uri: security,
        uriTemplate: '{{mirror.debian-security}}',
        suites: [`${RELEASE}-security`],
        components: ['main'],
        keyring: KEYRING,
      },
    ];
    const ctx = createContext({ store: join(work, 'store') });
    for (let attempt = 1; ; attempt++) {
      const before = await loadIndexes(sources, 'amd64', ctx);
      const limit = pLimit(2);
      const runs = await Promise.all(
        CASES.map((c) =>
          limit(async () => [c.name, await runMmdebstrap(c, sourceLines(debian, security), work)] as const),
        ),
      );
      const after = await loadIndexes(sources, 'amd64', ctx);
      const unchanged = releaseDigests(before).join() === releaseDigests(after).join();
      if (unchanged || attempt === 2) {
        indexes = after;
        for (const [name, result] of runs) results.set(name, result);
        console.log(
          'mmdebstrap seconds:',
          runs.map(([name, r]) => `${name} ${r.seconds.toFixed(1)}`),
        );
        expect(unchanged, 'the mirror changed twice while mmdebstrap ran').toBe(true);
        break;
      }
    }
  }, 900_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(CASES)('$name: same package names', (c) => {
    const started = performance.now();
    const ours = resolve(
      { arch: 'amd64', variant: c.variant, install: c.include, exclude: [], release: RELEASE },
      indexes,
    ).packages.map((p) => p.name);
    const ms = performance.now() - started;
    console.log(`resolve ${c.name}: ${ours.length} packages in ${ms.toFixed(1)} ms`);
    const theirs = results.get(c.name)!.packages;
    const onlyOurs = ours.filter((n) => !theirs.includes(n));
    const onlyTheirs = theirs.filter((n) => !ours.includes(n));
    // docs/resolver.md "Known differences": none for these variants, so no allowance.
    expect({ onlyOurs, onlyTheirs }).toEqual({ onlyOurs: [], onlyTheirs: [] });
    expect(theirs.length).toBeGreaterThan(40);
  });

  it('mmdebstrap read exactly the InRelease files rootcast verified', () => {
    const ours = releaseDigests(indexes);
    for (const c of CASES.filter((x) => x.mode === 'root')) {
      expect(results.get(c.name)!.inReleaseDigests, c.name).toEqual(ours);
    }
  });
});

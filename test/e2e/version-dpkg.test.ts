import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { xz } from '@napi-rs/lzma';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { parsePackagesIndex } from '../../src/distro/deb/packages-index.js';
import type { BinaryPackage } from '../../src/distro/deb/types.js';
import { compareVersions } from '../../src/distro/deb/version.js';
import { mirror } from '../helpers/mirror.js';

/**
 * Acceptance test for `compareVersions`: every pair of real versions taken from bookworm's
 * main amd64 Packages index (from the mirror the host's apt uses, or ROOTCAST_MIRROR_DEBIAN)
 * must be ordered exactly as the host's `dpkg --compare-versions` orders it.
 *
 * For each pair we compute our verdict (lt/eq/gt) and ask dpkg to confirm just that one
 * relation: since the three are exclusive and exhaustive, one dpkg run per pair proves
 * agreement. The runs are spread over one bash loop per core, so ~20k pairs take seconds.
 */

type Verdict = 'lt' | 'eq' | 'gt';
type Pair = readonly [string, string];

async function downloadPackagesIndex(): Promise<string> {
  const url = `${(await mirror('debian')).replace(/\/+$/, '')}/dists/bookworm/main/binary-amd64/Packages.xz`;
  const response = await request(url);
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new Error(`GET ${url}: HTTP ${response.statusCode}`);
  }
  const compressed = Buffer.from(await response.body.arrayBuffer());
  return (await xz.decompress(compressed)).toString('utf8');
}

/** mulberry32: a tiny seeded PRNG, so a failing run can be reproduced exactly. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Caps per kind keep the run near 20k dpkg calls (~20 s on 2 cores) while every kind stays
// well represented; sampling is seeded, so a failure reproduces.
const CAPS: Record<string, number> = { 'required-vs-available': 6000, 'shared-prefix': 4000, random: 4000 };
const DEFAULT_CAP = 2000;

/** Builds the pair set: same-name, shared-prefix, epoch, tilde and random pairs, deduplicated. */
function choosePairs(packages: readonly BinaryPackage[]): { pairs: Pair[]; kinds: Record<string, number> } {
  const next = random(20250510);
  const candidates = new Map<string, Pair[]>();
  const add = (kind: string, a: string | undefined, b: string | undefined) => {
    if (a === undefined || b === undefined) return;
    const list = candidates.get(kind) ?? [];
    list.push([a, b]);
    candidates.set(kind, list);
  };

  // Same package name: what a package requires of a dependency vs the versions that exist.
  const byName = new Map<string, Set<string>>();
  const byNameAdd = (name: string, version: string) => {
    const set = byName.get(name) ?? new Set<string>();
    set.add(version);
    byName.set(name, set);
  };
  for (const p of packages) byNameAdd(p.name, p.version);
  for (const p of packages) {
    for (const provide of p.provides) if (provide.version) byNameAdd(provide.name, provide.version);
  }
  for (const p of packages) {
    for (const r of [...p.preDepends.flat(), ...p.depends.flat(), ...p.breaks, ...p.conflicts]) {
      if (r.version === undefined) continue;
      for (const v of byName.get(r.name) ?? []) add('required-vs-available', v, r.version);
    }
  }
  for (const set of byName.values()) {
    const versions = [...set];
    for (let i = 1; i < versions.length; i++) add('same-name', versions[i - 1], versions[i]);
  }
  // Same source package: binNMUs, split versions, epochs added later.
  const bySource = new Map<string, Set<string>>();
  for (const p of packages) {
    const source = (p.source ?? p.name).split(' ')[0]!;
    const set = bySource.get(source) ?? new Set<string>();
    set.add(p.version);
    bySource.set(source, set);
  }
  for (const set of bySource.values()) {
    const [first, ...rest] = set;
    for (const v of rest) add('same-source', first, v);
  }

  const all = [...new Set([...byName.values()].flatMap((set) => [...set]))];
  // Shared prefixes: lexicographic neighbours differ late in the string.
  const lexical = [...all].sort();
  for (let i = 1; i < lexical.length; i++) add('shared-prefix', lexical[i - 1], lexical[i]);
  // Epochs: against each other, and against the same version without its epoch.
  const epochs = lexical.filter((v) => v.includes(':'));
  for (let i = 1; i < epochs.length; i++) add('epoch', epochs[i - 1], epochs[i]);
  for (const v of epochs) add('epoch-stripped', v, v.slice(v.indexOf(':') + 1));
  // Tildes: against each other, and against the version with the ~ part cut off.
  const tildes = lexical.filter((v) => v.includes('~'));
  for (let i = 1; i < tildes.length; i++) add('tilde', tildes[i - 1], tildes[i]);
  for (const v of tildes) {
    const cut = v.slice(0, v.indexOf('~'));
    if (/^(\d+:)?\d[^:]*[^-]$/.test(cut)) add('tilde-cut', v, cut);
  }
  // Spellings dpkg treats as the same version.
  for (let i = 0; i < all.length; i += 50) {
    const v = all[i]!;
    add('self', v, v);
    if (!v.includes(':')) add('zero-epoch', v, `0:${v}`);
  }
  const pick = () => all[Math.floor(next() * all.length)];
  for (let i = 0; i < 2 * (CAPS.random ?? DEFAULT_CAP); i++) add('random', pick(), pick());

  const seen = new Set<string>();
  const pairs: Pair[] = [];
  const kinds: Record<string, number> = {};
  for (const [kind, list] of candidates) {
    // Seeded Fisher-Yates, then take up to the cap of distinct, not yet chosen pairs.
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [list[i], list[j]] = [list[j]!, list[i]!];
    }
    const cap = CAPS[kind] ?? DEFAULT_CAP;
    let taken = 0;
    for (const [a, b] of list) {
      if (taken >= cap) break;
      const key = `${a} ${b}`;
      if (seen.has(key)) continue;
      seen.add(key);
      pairs.push([a, b]);
      taken++;
    }
    kinds[kind] = taken;
  }
  return { pairs, kinds };
}

function verdictOf(a: string, b: string): Verdict {
  const c = compareVersions(a, b);
  return c < 0 ? 'lt' : c > 0 ? 'gt' : 'eq';
}

/** Runs `dpkg --compare-versions a op b` for each line in one bash loop; resolves to 0/1 per line. */
function dpkgConfirms(lines: readonly string[]): Promise<boolean[]> {
  return new Promise((resolve, reject) => {
    const script =
      'while read -r a op b; do if dpkg --compare-versions "$a" "$op" "$b"; then echo 1; else echo 0; fi; done';
    const child = spawn('bash', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const results = out.split('\n').filter(Boolean);
      if (code !== 0 || results.length !== lines.length) {
        reject(new Error(`dpkg worker exited ${code} after ${results.length}/${lines.length} lines: ${err}`));
        return;
      }
      resolve(results.map((r) => r === '1'));
    });
    child.stdin.end(lines.map((l) => `${l}\n`).join(''));
  });
}

async function dpkgConfirmsAll(lines: readonly string[]): Promise<boolean[]> {
  const workers = Math.max(2, Math.min(8, availableParallelism()));
  const size = Math.ceil(lines.length / workers);
  const chunks: string[][] = [];
  for (let i = 0; i < lines.length; i += size) chunks.push(lines.slice(i, i + size));
  return (await Promise.all(chunks.map(dpkgConfirms))).flat();
}

describe('compareVersions agrees with dpkg on real bookworm versions', () => {
  let packages: BinaryPackage[];

  beforeAll(async () => {
    const text = await downloadPackagesIndex();
    packages = parsePackagesIndex(text, 'bookworm/main');
  }, 120_000);

  it('harness: dpkg rejects deliberately wrong claims', async () => {
    const results = await dpkgConfirms(['1.0 gt 2.0', '1.0~rc1 eq 1.0', '1:0 lt 9', '1.0 eq 1.0-0']);
    expect(results).toEqual([false, false, false, true]);
  });

  it('orders at least 10,000 real pairs exactly as dpkg --compare-versions', async () => {
    expect(packages.length).toBeGreaterThan(50_000);
    const { pairs, kinds } = choosePairs(packages);
    expect(pairs.length).toBeGreaterThanOrEqual(10_000);
    for (const kind of ['required-vs-available', 'same-name', 'shared-prefix', 'epoch', 'tilde', 'random']) {
      expect(kinds[kind] ?? 0, `pairs of kind ${kind}`).toBeGreaterThan(50);
    }

    const lines = pairs.map(([a, b]) => `${a} ${verdictOf(a, b)} ${b}`);
    const confirmed = await dpkgConfirmsAll(lines);
    const mismatches = lines.filter((_, i) => !confirmed[i]);
    expect(
      mismatches,
      `compareVersions disagrees with dpkg (ours shown): ${mismatches.slice(0, 50).join('; ')}`,
    ).toEqual([]);
  }, 120_000);
});

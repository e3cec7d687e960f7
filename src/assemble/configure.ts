import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { parseProvides, parseRelationGroups } from '../distro/deb/relations.js';
import type { LockPackage } from '../lock/lock-file.js';
import { infoName, parseControl } from './dpkg-db.js';
import { resolveInRoot } from './resolve-in-root.js';
import { outputTail, runInSandbox, type SandboxResult } from './sandbox.js';
import type { UnpackedPackage } from './types.js';

/**
 * Configuring a registered tree: the maintainer scripts dpkg would have run.
 *
 * Lifecycle: after `registerUnpacked`, every package is `unpacked` but none of its
 * `preinst install` has run (rootcast's unpacker does not run scripts). `configurePackages`
 * runs them the way mmdebstrap's root mode ends up running them, in two phases:
 *
 * 1. the Essential set and everything it (pre-)depends on — what mmdebstrap extracts and
 *    installs with `dpkg --install --force-depends`: their `preinst install` in dependency
 *    order, then the tree's own `dpkg --configure` of exactly those packages;
 * 2. the rest — what mmdebstrap installs through apt with the Essential set already
 *    configured: their `preinst install` in dependency order, then `dpkg --configure -a`,
 *    which also processes every pending trigger.
 *
 * All of it runs in the sandbox with the network off and services held. A script that fails
 * stops the build with CONFIGURE_FAILED and its output; nothing is retried.
 */
export interface ConfigureContext {
  reporter: Reporter;
  signal?: AbortSignal;
  /** Exported to every script, so tools that honour it stamp files reproducibly. */
  sourceDateEpoch?: number;
  /** Per sandbox run; default the sandbox's own (30 minutes). */
  timeoutMs?: number;
  /**
   * The tree's dpkg version when dpkg is not among `packages` (a child layer configured on a
   * parent that has it installed).
   */
  dpkgVersion?: string;
}

/** How long each phase took, for the build's timings. */
export interface ConfigureTimings {
  /** Each phase's preinsts and dpkg run, in order. */
  phases: Array<{ packages: number; ms: number }>;
}

interface OrderNode {
  pkg: UnpackedPackage;
  essential: boolean;
  /** Pre-Depends groups first, then Depends groups; each group its alternatives. */
  groups: string[][];
}

function nodesOf(packages: readonly UnpackedPackage[]): Map<string, OrderNode> {
  const nodes = new Map<string, OrderNode>();
  for (const pkg of packages) {
    const fields = new Map(parseControl(pkg.control).map(([k, v]) => [k.toLowerCase(), v]));
    const groups: string[][] = [];
    for (const field of ['pre-depends', 'depends']) {
      const value = fields.get(field);
      if (!value) continue;
      for (const group of parseRelationGroups(value.replace(/\n/g, ' '), { field }))
        groups.push(group.map((r) => r.name));
    }
    nodes.set(pkg.name, { pkg, essential: fields.get('essential')?.toLowerCase() === 'yes', groups });
  }
  return nodes;
}

/** Real package names by the names they answer to (their own and what they provide). */
function providers(packages: readonly UnpackedPackage[]): Map<string, string[]> {
  const byName = new Map<string, string[]>();
  const add = (name: string, pkg: string) => byName.set(name, [...(byName.get(name) ?? []), pkg]);
  for (const pkg of packages) add(pkg.name, pkg.name);
  for (const pkg of packages) {
    const value = parseControl(pkg.control).find(([k]) => k.toLowerCase() === 'provides')?.[1];
    if (value)
      for (const p of parseProvides(value.replace(/\n/g, ' ')))
        if (p.name !== pkg.name) add(p.name, pkg.name);
  }
  for (const list of byName.values()) list.sort();
  return byName;
}

/**
 * The two install phases and the order of each: phase one is the Essential packages and
 * their (pre-)dependency closure, phase two the rest. Within a phase a package comes after
 * what it pre-depends on, then after what it depends on, taking the first alternative that
 * is present; cycles are broken where the depth-first walk (packages by name) meets them.
 * Pure and deterministic.
 */
export function installPhases(packages: readonly UnpackedPackage[]): [UnpackedPackage[], UnpackedPackage[]] {
  const nodes = nodesOf(packages);
  const provided = providers(packages);
  const edges = (node: OrderNode): string[] => {
    const out: string[] = [];
    for (const group of node.groups) {
      const hit = group.map((name) => provided.get(name)?.[0]).find((name) => name !== undefined);
      if (hit && hit !== node.pkg.name && !out.includes(hit)) out.push(hit);
    }
    return out;
  };
  const names = [...nodes.keys()].sort();
  const first = new Set<string>();
  const queue = names.filter((n) => nodes.get(n)?.essential);
  while (queue.length > 0) {
    const name = queue.shift() as string;
    if (first.has(name)) continue;
    first.add(name);
    const node = nodes.get(name);
    if (node) queue.push(...edges(node));
  }
  const order = (members: string[]): UnpackedPackage[] => {
    const inPhase = new Set(members);
    const done = new Set<string>();
    const visiting = new Set<string>();
    const out: UnpackedPackage[] = [];
    const visit = (name: string) => {
      if (done.has(name) || visiting.has(name) || !inPhase.has(name)) return;
      visiting.add(name);
      const node = nodes.get(name) as OrderNode;
      for (const dep of edges(node)) visit(dep);
      visiting.delete(name);
      done.add(name);
      out.push(node.pkg);
    };
    for (const name of members) visit(name);
    return out;
  };
  return [order(names.filter((n) => first.has(n))), order(names.filter((n) => !first.has(n)))];
}

/** The dpkg version in the tree, which dpkg exports to scripts as DPKG_RUNNING_VERSION. */
function dpkgVersion(packages: readonly UnpackedPackage[]): string {
  return packages.find((p) => p.name === 'dpkg')?.version ?? '';
}

const PREINST_FAILED = 'rootcast-preinst-failed';
/** Where each package's control member waits for its turn as dpkg's `tmp.ci`. */
const STAGING = '/var/lib/dpkg/rootcast-ci';

/**
 * One shell script for a whole phase, so the sandbox is set up once per phase: the staged
 * preinsts in order, each from `/var/lib/dpkg/tmp.ci` with the package's whole control member
 * beside it, as dpkg's unpack does (debconf's frontend names a preinst's package from
 * `tmp.ci/control`, so a preinst run from `info/` would register its templates to
 * "unknown"); then, after a `--`, the phase's dpkg command, with the maintainer-script
 * variables unset (dpkg sets its own for the scripts it runs). Arguments are passed
 * positionally, never interpolated. A failing preinst prints PREINST_FAILED and exits 1
 * before dpkg runs.
 */
export function phaseScript(): string {
  return [
    'set -u',
    'ci=/var/lib/dpkg/tmp.ci',
    'while [ "$1" != -- ]; do',
    '  pkg=$1; arch=$2; staged=$3; shift 3',
    `  rm -rf "$ci" && mv "$staged" "$ci" || { echo "${PREINST_FAILED} $pkg staging" >&2; exit 1; }`,
    '  DPKG_MAINTSCRIPT_PACKAGE=$pkg DPKG_MAINTSCRIPT_ARCH=$arch DPKG_MAINTSCRIPT_NAME=preinst "$ci/preinst" install',
    '  code=$?',
    `  if [ $code -ne 0 ]; then echo "${PREINST_FAILED} $pkg $code" >&2; exit 1; fi`,
    '  rm -rf "$ci"',
    'done',
    'shift',
    'unset DPKG_ADMINDIR DPKG_ROOT DPKG_RUNNING_VERSION DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT DPKG_MAINTSCRIPT_DEBUG',
    'exec "$@"',
  ].join('\n');
}

/** Writes each package's control member under STAGING; returns the script's arguments. */
async function stageControlMembers(root: string, phase: readonly UnpackedPackage[]): Promise<string[]> {
  const args: string[] = [];
  for (const [index, pkg] of phase.entries()) {
    if (!pkg.controlFiles.has('preinst')) continue;
    const inTree = `${STAGING}/${index}`;
    const dir = resolveInRoot(root, inTree);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await writeFile(join(dir, 'control'), pkg.control, { mode: 0o644 });
    for (const [name, { data, mode }] of pkg.controlFiles) {
      if (name === 'control' || name.includes('/')) continue;
      await writeFile(join(dir, name), data, { mode: mode & 0o7777 });
      await chmod(join(dir, name), mode & 0o7777);
    }
    args.push(pkg.name, pkg.architecture, inTree);
  }
  return args;
}

function configureFailed(what: string, result: SandboxResult, pkg?: string): RootcastError {
  return new RootcastError({
    code: 'CONFIGURE_FAILED',
    message: `${what} failed with exit code ${result.code}${pkg ? ` (package ${pkg})` : ''}`,
    hint: `Its output ended with:\n${outputTail(result)}`,
    details: {
      package: pkg,
      code: result.code,
      output: outputTail(result, 60),
      stdout: result.stdout,
      stderr: result.stderr,
    },
  });
}

/**
 * Runs a phase in one sandbox: its packages' `preinst install` in order, then `argv` (the
 * tree's dpkg configuring them). Throws CONFIGURE_FAILED naming the preinst's package, or
 * dpkg's command, with the output.
 */
async function runPhase(
  root: string,
  phase: readonly UnpackedPackage[],
  argv: readonly string[],
  env: Record<string, string>,
  ctx: ConfigureContext,
): Promise<void> {
  const staging = resolveInRoot(root, STAGING);
  let result: SandboxResult;
  try {
    const args = await stageControlMembers(root, phase);
    result = await runInSandbox(
      root,
      ['/bin/sh', '-c', phaseScript(), 'rootcast-configure', ...args, '--', ...argv],
      sandboxOptions(env, ctx),
    );
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(resolveInRoot(root, '/var/lib/dpkg/tmp.ci'), { recursive: true, force: true });
  }
  if (result.code === 0) return;
  const marker = result.stderr.split('\n').find((l) => l.startsWith(PREINST_FAILED));
  if (marker) {
    const pkg = marker.split(' ')[1];
    throw configureFailed(`${pkg ?? 'a'} preinst install`, result, pkg);
  }
  throw configureFailed(argv.join(' '), result);
}

function sandboxOptions(env: Record<string, string>, ctx: ConfigureContext) {
  return {
    env,
    reporter: ctx.reporter,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: ctx.sourceDateEpoch }),
    ...(ctx.timeoutMs === undefined ? {} : { timeoutMs: ctx.timeoutMs }),
  };
}

/**
 * Runs every package's `preinst install` and configures the tree with its own dpkg. The
 * packages must be the ones `registerUnpacked` recorded, and match `lockPackages` one for
 * one (a mismatch is a bug upstream and throws CONFIGURE_FAILED before anything runs).
 */
export async function configurePackages(
  root: string,
  packages: readonly UnpackedPackage[],
  lockPackages: readonly LockPackage[],
  ctx: ConfigureContext,
): Promise<ConfigureTimings> {
  const locked = new Set(lockPackages.map((p) => `${p.name}=${p.version}`));
  const missing = packages.filter((p) => !locked.has(`${p.name}=${p.version}`)).map((p) => p.name);
  if (missing.length > 0 || locked.size !== packages.length) {
    throw new RootcastError({
      code: 'CONFIGURE_FAILED',
      message: `the unpacked packages do not match the lock${missing.length > 0 ? ` (${missing.slice(0, 5).join(', ')})` : ''}`,
      hint: 'Unpack exactly the packages of the lock before configuring; this is a bug in the build pipeline.',
    });
  }
  const env = {
    DPKG_ADMINDIR: '/var/lib/dpkg',
    DPKG_ROOT: '',
    DPKG_RUNNING_VERSION: dpkgVersion(packages) || (ctx.dpkgVersion ?? ''),
    DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT: '1',
    DPKG_MAINTSCRIPT_DEBUG: '0',
  };
  const phases = installPhases(packages);
  const timings: ConfigureTimings = { phases: [] };
  const lastIndex = phases.findLastIndex((phase) => phase.length > 0);
  for (const [index, phase] of phases.entries()) {
    if (phase.length === 0) continue;
    const task = ctx.reporter.task(index === 0 ? 'configuring essential packages' : 'configuring packages', {
      total: phase.length,
      unit: 'items',
    });
    const started = performance.now();
    // The last phase configures everything left, and runs the triggers still pending.
    const argv =
      index === lastIndex ? ['dpkg', '--configure', '-a'] : ['dpkg', '--configure', ...phase.map(infoName)];
    await runPhase(root, phase, argv, env, ctx);
    task.advance(phase.length);
    task.finish();
    timings.phases.push({ packages: phase.length, ms: performance.now() - started });
  }
  return timings;
}

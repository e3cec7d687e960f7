import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { isolatedNamespaceArgs } from '../assemble/namespaces.js';
import { hasNativeCalls, nativeCalls } from '../assemble/native.js';
import { sha256Hex } from '../core/digest.js';
import { describeError, inputError, RootcastError } from '../core/errors.js';
import { storeLayout, temporaryName } from '../store/paths.js';
import type { MountPlan } from './driver.js';
import { loadDriver } from './drivers.js';
import { LayeredTree } from './layered-tree.js';
import { runtimeLayout } from './paths.js';
import { type ContainerRecord, currentProcess, isProcessRunning } from './record.js';
import { initArguments, RUN_INIT_SCRIPT, splitEnvironment } from './run-init.js';

/**
 * Running a command in a container: `setpriv --pdeathsig KILL -- unshare --mount --pid --ipc
 * --uts [--net] --fork --kill-child --propagation private -- /bin/sh init.sh …`, with
 * stdin, stdout and stderr passed through (a terminal included) and the command's exit status
 * returned.
 *
 * Nothing is ever mounted in the host's namespace: every mount lives in the run's private
 * mount namespace and goes with it. If rootcast dies, however it dies, setpriv's parent-death
 * signal kills unshare, `--kill-child` kills the namespace's init, and the kernel kills
 * everything else in the pid namespace: no process and no mount outlives the run.
 *
 * One run at a time per container: `containers/<name>/running` (created exclusively, holding
 * this process's pid and start time) claims it; a claim whose process is gone is taken over.
 * Another run gets `CONTAINER_BUSY`, `rm` gets `CONTAINER_RUNNING`.
 *
 * Signals: the caller relays SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 (and, when no terminal is
 * attached, SIGINT and SIGQUIT) with `kill()`, which sends them to the namespace's init, which
 * passes them to the command. With a terminal, Ctrl-C and Ctrl-\ already reach the command
 * from the terminal (it is in the terminal's foreground process group), so they are not
 * relayed a second time.
 */
export interface RunRequest {
  /** The command; default the template's Cmd (`/bin/sh`). */
  argv?: readonly string[];
  /** Added to the template's environment (`-e K=V`). */
  env?: Record<string, string>;
  /** Working directory inside the container, absolute; default the template's, else `/`. */
  workdir?: string;
  /** `host` (default) shares the host's network; `none` gives an empty network namespace. */
  network?: 'host' | 'none';
}

export interface RunHandle {
  /** Resolves with the command's exit status (128 + n when a signal ended it). */
  readonly done: Promise<number>;
  /** Relays a signal to the command (through the namespace's init). */
  kill(signal: NodeJS.Signals): void;
}

const DEVICES: [string, number, number][] = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
];

/** `<store>/runtime/dev/`: the device nodes and links every run's /dev starts from, made once. */
export function ensureDevSkeleton(store: string): string {
  const target = runtimeLayout.devSkeleton(store);
  if (lstatSync(join(target, 'tty'), { throwIfNoEntry: false })) return target;
  const tmp = join(storeLayout.tmp(store), temporaryName());
  mkdirSync(join(tmp, 'pts'), { recursive: true, mode: 0o755 });
  mkdirSync(join(tmp, 'shm'), { mode: 0o755 });
  for (const [name, major, minor] of DEVICES) {
    const path = join(tmp, name);
    if (hasNativeCalls()) {
      nativeCalls().mknod(path, constants.S_IFCHR | 0o666, major, minor);
      chmodSync(path, 0o666); // mknod's mode is masked by the umask
    } else {
      const out = spawnSync('mknod', ['-m', '0666', path, 'c', String(major), String(minor)]);
      if (out.status !== 0)
        throw setupFailed(`cannot create device ${name}: ${out.stderr?.toString().trim()}`);
    }
  }
  for (const [name, to] of [
    ['ptmx', 'pts/ptmx'],
    ['fd', '/proc/self/fd'],
    ['stdin', '/proc/self/fd/0'],
    ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'],
  ] as const)
    symlinkSync(to, join(tmp, name));
  mkdirSync(runtimeLayout.runtime(store), { recursive: true });
  try {
    renameSync(tmp, target);
  } catch {
    // Made by another run meanwhile.
    void rm(tmp, { recursive: true, force: true });
  }
  return target;
}

/**
 * The init script as a file, `<store>/runtime/init-<hash>.sh` (so the command's `ps` shows a
 * path, not the script's text); the hash in the name makes a changed script a new file.
 */
function ensureInitScript(store: string): string {
  const path = join(runtimeLayout.runtime(store), `init-${sha256Hex(RUN_INIT_SCRIPT).slice(0, 12)}.sh`);
  if (existsSync(path)) return path;
  mkdirSync(runtimeLayout.runtime(store), { recursive: true });
  const tmp = join(runtimeLayout.runtime(store), `.tmp-init-${temporaryName()}`);
  writeFileSync(tmp, RUN_INIT_SCRIPT, { mode: 0o644 });
  renameSync(tmp, path);
  return path;
}

function setupFailed(message: string, cause?: unknown): RootcastError {
  return new RootcastError({
    code: 'RUN_SETUP_FAILED',
    message,
    hint: 'rootcast run needs root, util-linux (unshare, setpriv, mount) and overlayfs for overlay containers.',
    cause,
  });
}

/** Claims the container for this process; `CONTAINER_BUSY` when another live run holds it. */
function claim(dir: string, name: string): () => void {
  const path = runtimeLayout.running(dir);
  const me = currentProcess();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      writeSync(fd, `${me.pid} ${me.start}\n`);
      closeSync(fd);
      return () => unlinkSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const [pid, start] = readFileSync(path, 'utf8').trim().split(' ');
      const holder = { pid: Number(pid), start: start ?? '' };
      if (isProcessRunning(holder)) {
        throw new RootcastError({
          code: 'CONTAINER_BUSY',
          message: `container ${name} is already running a command (rootcast run pid ${holder.pid})`,
          hint: 'Wait for that command to end; one run at a time per container.',
        });
      }
      unlinkSync(path);
    }
  }
  throw new RootcastError({
    code: 'CONTAINER_BUSY',
    message: `cannot claim container ${name}`,
    hint: 'Retry.',
  });
}

function environment(target: RunTarget, extra: Record<string, string>, tty: boolean): Record<string, string> {
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    HOSTNAME: target.hostname,
    container: 'rootcast',
  };
  for (const pair of target.config.env) {
    const eq = pair.indexOf('=');
    if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  if (tty && process.env.TERM) env.TERM = process.env.TERM;
  return { ...env, ...extra };
}

/**
 * `CLONE_LAYER_MISSING` when an overlay container's template layers are not all in the store
 * (removed by `fsck --repair`, say): mount would only say "special device overlay does not
 * exist". Tree containers (copy, reflink, btrfs) own their whole tree and need no layer.
 */
function checkLayers(store: string, record: ContainerRecord, plan: MountPlan): void {
  if (plan.kind !== 'overlay') return;
  const missing = record.layers.filter((diffId) => !existsSync(storeLayout.layer(store, diffId)));
  if (missing.length === 0) return;
  const template = record.template.ref ?? record.template.digest;
  throw new RootcastError({
    code: 'CLONE_LAYER_MISSING',
    message: `container ${record.name} cannot run: ${missing.length} layer(s) of its template ${template} are missing from the store`,
    hint: `Rebuild or pull ${template} again so its layers are unpacked (\`rootcast fsck\` lists what is missing); the container's own changes are kept.`,
    details: { container: record.name, template, diffIds: missing },
  });
}

/** What the kernel mounts over the tree at run time: not checked against the template's files. */
const RUNTIME_MOUNTS = new Set(['proc', 'sys', 'dev']);

/** What the checks before a run need to know of the container (or of the template, before a disposable clone). */
interface RunTarget {
  /** `container NAME`, or `template REF` before a disposable clone. */
  what: string;
  name: string;
  hostname: string;
  disposable: boolean;
  config: ContainerRecord['config'];
}

/** `path`'s canonical path in the view, its symlinks resolved inside it; undefined for a loop. */
function resolveIn(view: LayeredTree, path: string): string | undefined {
  try {
    return view.resolve(path);
  } catch {
    return undefined; // a symlink loop
  }
}

/** A POSIX shell word: `path` in single quotes. */
function shellQuote(path: string): string {
  return `'${path.replaceAll("'", "'\\''")}'`;
}

/**
 * `RUN_WORKDIR_MISSING` (exit 2) when the working directory is not a directory in the
 * container. It is resolved in the container's own view (symlinks inside the tree, never on
 * the host; overlay layers and whiteouts applied), before anything is mounted. Paths under
 * /proc, /sys and /dev are left to the run (they are mounted then).
 */
function checkWorkdir(view: LayeredTree, target: RunTarget, workdir: string, fromImage: boolean): void {
  const resolved = resolveIn(view, workdir);
  if (resolved !== undefined) {
    if (RUNTIME_MOUNTS.has(resolved.split('/')[0]!)) return;
    if (view.lookup(resolved)?.stats.isDirectory()) return;
  }
  throw inputError(
    'RUN_WORKDIR_MISSING',
    `${workdir} is not a directory in ${target.what}${fromImage ? " (the template's WorkingDir)" : ''}`,
    target.disposable
      ? 'Pass -w with a directory the template has (-w / always works).'
      : // -w /: the template's WorkingDir may be the very directory that is missing.
        `Pass -w with a directory that exists, or create it first: rootcast run -w / ${target.name} -- mkdir -p ${shellQuote(workdir)}`,
  );
}

/**
 * `RUN_ENV_NEEDS_SHELL` (exit 2) when the command's environment has loader-sensitive
 * variables (`LD_PRELOAD`, …: see run-init.ts) and the container has no executable
 * `/bin/sh` to apply them after the chroot (they never reach a host program). `/bin/sh` is
 * resolved in the container's own view, like the working directory.
 */
function checkShell(
  view: LayeredTree,
  target: RunTarget,
  names: readonly string[],
  fromCli: Set<string>,
): void {
  if (names.length === 0) return;
  const resolved = resolveIn(view, '/bin/sh');
  const found = resolved === undefined ? undefined : view.lookup(resolved);
  if (found?.stats.isFile() && (found.stats.mode & 0o111) !== 0) return;
  const listed = names.map((n) => `${n} (${fromCli.has(n) ? '-e' : "the template's Env"})`).join(', ');
  throw inputError(
    'RUN_ENV_NEEDS_SHELL',
    `${listed}: ${target.what} has no executable /bin/sh to set ${names.length === 1 ? 'it' : 'them'} after the chroot`,
    'rootcast never passes LD_* and the other loader variables to host programs; leave them out (-e), rebuild the template without them in its Env, or give it a /bin/sh.',
  );
}

/**
 * Everything `run` refuses about the tree before it starts (all exit 2): the working
 * directory, and a missing /bin/sh when the environment needs one. `view` is the container's
 * tree, or the template's before a disposable clone is made.
 */
function checkTree(view: LayeredTree, target: RunTarget, request: RunRequest): string {
  const workdir = request.workdir ?? target.config.workingDir ?? '/';
  checkWorkdir(view, target, workdir, request.workdir === undefined);
  const { names } = splitEnvironment(environment(target, request.env ?? {}, false));
  checkShell(view, target, names, new Set(Object.keys(request.env ?? {})));
  return workdir;
}

/**
 * The checks of `startRun` that do not need the container, made on the template before `run
 * --rm TEMPLATE` clones it (so a refused run makes no container). `layers`: the template's
 * unpacked layer directories, base first, all present.
 */
export function checkTemplateRun(
  template: { name: string; layers: readonly string[]; config: ContainerRecord['config'] },
  request: RunRequest = {},
): void {
  const [top, ...below] = [...template.layers].reverse();
  if (top === undefined) return;
  const target = {
    what: `template ${template.name}`,
    name: template.name,
    hostname: template.name,
    disposable: true,
    config: template.config,
  };
  checkTree(new LayeredTree(top, below), target, request);
}

/** Starts `request` in the container of `record`; the container must exist in `store`. */
export async function startRun(
  store: string,
  record: ContainerRecord,
  request: RunRequest = {},
): Promise<RunHandle> {
  const dir = runtimeLayout.container(store, record.name);
  const source = { store, layers: record.layers.map((d) => storeLayout.layer(store, d)) };
  const plan = (await loadDriver(record.driver)).mountPlan(source, dir);
  checkLayers(store, record, plan);
  const view =
    plan.kind === 'overlay' ? new LayeredTree(plan.upper, plan.lowers) : new LayeredTree(plan.rootfs, []);
  const target = {
    what: `container ${record.name}`,
    name: record.name,
    hostname: record.hostname,
    disposable: Boolean(record.disposable),
    config: record.config,
  };
  const workdir = checkTree(view, target, request);
  const devSkeleton = ensureDevSkeleton(store);
  const release = claim(dir, record.name);
  const terminal = Boolean(process.stdin.isTTY || process.stdout.isTTY || process.stderr.isTTY);
  let tty = '';
  if (process.stdin.isTTY) {
    try {
      tty = readlinkSync('/proc/self/fd/0');
    } catch {
      tty = '';
    }
  }
  const network = request.network ?? 'host';
  const argv = request.argv && request.argv.length > 0 ? request.argv : record.config.cmd;
  const args = [
    '--pdeathsig',
    'KILL',
    '--',
    'unshare',
    ...isolatedNamespaceArgs(network === 'none'),
    '--',
    '/bin/sh',
    ensureInitScript(store),
    ...initArguments({
      plan,
      layersDir: storeLayout.layers(store),
      hostname: record.hostname,
      workdir,
      network,
      devSkeleton,
      tty,
      forward: terminal ? 'term' : 'all',
      argv,
    }),
  ];
  const env = splitEnvironment(environment(target, request.env ?? {}, terminal));
  const child = spawn('setpriv', args, {
    // The setup tools see only the host's PATH; the command gets exactly its own environment,
    // its loader-sensitive part applied only after the chroot (see run-init.ts).
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      ROOTCAST_RUN_ENV: env.safe,
      ROOTCAST_RUN_LOADER: env.loader,
    },
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
  });
  let ready = false;
  const status = child.stdio[3];
  if (status && 'on' in status) status.on('data', () => (ready = true));
  const done = new Promise<number>((resolve, reject) => {
    let failure: unknown;
    child.on('error', (error) => {
      failure = setupFailed(`cannot start setpriv/unshare: ${describeError(error)}`, error);
    });
    child.on('close', (code, signal) => {
      try {
        release();
      } catch {
        // the container was force-removed meanwhile
      }
      const exit = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
      if (failure) reject(failure);
      else if (!ready)
        reject(
          setupFailed(`cannot set up container ${record.name} (exit ${exit}); the reason is printed above`),
        );
      else resolve(exit);
    });
  });
  return {
    done,
    kill(signal) {
      if (!terminal || (signal !== 'SIGINT' && signal !== 'SIGQUIT')) {
        const init = initPid(child.pid);
        if (init !== undefined) {
          try {
            process.kill(init, signal);
          } catch {
            // already gone
          }
        }
      }
    },
  };
}

/** The host pid of the namespace's init: the only child of `unshare --fork`. */
function initPid(unsharePid: number | undefined): number | undefined {
  if (unsharePid === undefined) return undefined;
  try {
    const first = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8')
      .trim()
      .split(' ')[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

/** Signals a `rootcast run` relays to its command while it runs. */
export const RELAYED_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR1',
  'SIGUSR2',
];

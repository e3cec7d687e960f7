import { spawn } from 'node:child_process';
import { chmod, lstat, mkdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { describeError, RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import { isolatedNamespaceArgs } from './namespaces.js';
import { resolveInRoot } from './resolve-in-root.js';

/**
 * Running a command inside an assembled tree, isolated from the host.
 *
 * Each call spawns util-linux `unshare` with new mount, pid, ipc and uts namespaces (and a
 * new, empty network namespace unless `network: true`), mount propagation private. Inside,
 * a small host `sh` script mounts /proc, a read-only /sys and a fresh /dev (tmpfs with the
 * usual nodes, its own devpts and shm) under the tree, then chroots into it and runs the
 * command. Those mounts exist only in the namespace: when its last process exits the
 * kernel drops them, so nothing is ever left mounted on the host, even after a crash or a
 * timeout (`--kill-child` takes the namespace's pid 1 down with `unshare`).
 *
 * For the duration of the call, and only then, the tree holds services from starting the
 * way mmdebstrap does in root mode: `/usr/sbin/policy-rc.d` (exit 101) and a fake
 * `start-stop-daemon` with the real one moved to `start-stop-daemon.REAL`. Both are undone
 * in a `finally`, as are mount points and the resolv.conf stand-in this call had to create.
 * With `network: true` the host's `/etc/resolv.conf` is bind-mounted over the tree's for
 * that call only, so the host's resolver never lands in the tree.
 *
 * Invariant: one call at a time per tree (the build owns its tree).
 */
export interface SandboxOptions {
  /** Keep the host's network namespace and its resolver; default false (no network at all). */
  network?: boolean;
  /** Extra environment on top of the clean one (see `sandboxEnvironment`). */
  env?: Record<string, string>;
  stdin?: string | Buffer;
  /** Working directory inside the tree; default `/`. */
  cwd?: string;
  reporter?: Reporter;
  /** Hostname inside the uts namespace; default `localhost`, never the host's. */
  hostname?: string;
  /** Kill the whole namespace after this long; default 30 minutes. */
  timeoutMs?: number;
  /** SOURCE_DATE_EPOCH exported to the command, when known. */
  sourceDateEpoch?: number;
  /** Throw SANDBOX_FAILED when the command exits non-zero, instead of returning the code. */
  check?: boolean;
  signal?: AbortSignal;
}

export interface SandboxResult {
  code: number;
  stdout: string;
  stderr: string;
}

const OUTPUT_LIMIT = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The whole environment a sandboxed command sees: nothing is inherited from the host. */
export function sandboxEnvironment(
  options: Pick<SandboxOptions, 'env' | 'sourceDateEpoch'>,
): Record<string, string> {
  return {
    PATH,
    LC_ALL: 'C.UTF-8',
    DEBIAN_FRONTEND: 'noninteractive',
    DEBCONF_NONINTERACTIVE_SEEN: 'true',
    HOME: '/root',
    ...(options.sourceDateEpoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(options.sourceDateEpoch) }),
    ...options.env,
  };
}

// Runs as pid 1 of the new pid namespace, with the host's tools. $1 root, $2 hostname,
// $3 "net" when the host resolver is to be bound, $4 cwd, then the command. It refuses
// mount points that are not plain directories: a symlink planted by a package would make
// mount follow it. The setup reports success on fd 3, so a failed setup is told apart from
// a command that fails.
const SETUP_SCRIPT = `set -eu
r=$1; h=$2; net=$3; wd=$4; shift 4
for d in proc sys dev; do
  if [ -L "$r/$d" ] || [ ! -d "$r/$d" ]; then echo "rootcast-sandbox: /$d is not a directory" >&2; exit 125; fi
done
printf '%s' "$h" > /proc/sys/kernel/hostname
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys" 2>/dev/null || { mount --rbind /sys "$r/sys" && mount -o remount,bind,ro "$r/sys"; }
mount -t tmpfs -o nosuid,mode=0755,size=64m tmpfs "$r/dev"
mk() { mknod -m 0666 "$r/dev/$1" c "$2" "$3" 2>/dev/null || { : > "$r/dev/$1"; mount --bind "/dev/$1" "$r/dev/$1"; }; }
mk null 1 3; mk zero 1 5; mk full 1 7; mk random 1 8; mk urandom 1 9; mk tty 5 0
mkdir -m 0755 "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$r/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$r/dev/shm"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
if [ "$net" = net ]; then mount --bind /etc/resolv.conf "$r/etc/resolv.conf"; mount -o remount,bind,ro "$r/etc/resolv.conf"; fi
echo ready >&3
exec 3>&-
unshare --root="$r" --wd="$wd" -- "$@"
`;

/** Undo actions run after the command, last first. */
type Undo = () => Promise<void>;

async function ensureDirectory(path: string, undo: Undo[]): Promise<void> {
  const stat = await lstat(path).catch(() => undefined);
  if (stat) return;
  await mkdir(path, { mode: 0o755 });
  undo.push(() => rmdir(path));
}

/** policy-rc.d and the fake start-stop-daemon, exactly as mmdebstrap writes them. */
async function holdServices(root: string, undo: Undo[]): Promise<void> {
  const sbin = resolveInRoot(root, '/usr/sbin', undefined, { followFinal: true });
  const sbinStat = await lstat(sbin).catch(() => undefined);
  if (sbinStat?.isDirectory()) {
    const policy = join(sbin, 'policy-rc.d');
    if (!(await lstat(policy).catch(() => undefined))) {
      await writeFile(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
      await chmod(policy, 0o755);
      undo.push(() => rm(policy, { force: true }));
    }
  }
  const daemon = resolveInRoot(root, '/sbin/start-stop-daemon');
  const daemonStat = await lstat(daemon).catch(() => undefined);
  if (daemonStat?.isFile()) {
    const real = `${daemon}.REAL`;
    if (await lstat(real).catch(() => undefined)) {
      throw new RootcastError({
        code: 'SANDBOX_FAILED',
        message: `${real} already exists: an earlier run did not restore start-stop-daemon`,
        hint: 'The tree was left half-assembled; rebuild it from scratch.',
      });
    }
    await rename(daemon, real);
    undo.push(async () => {
      await rm(daemon, { force: true });
      await rename(real, daemon);
    });
    await writeFile(daemon, '#!/bin/sh\necho "Warning: Fake start-stop-daemon called, doing nothing">&2\n', {
      mode: 0o755,
    });
    await chmod(daemon, 0o755);
  }
}

/** Makes sure `/etc/resolv.conf` in the tree is a plain file that a bind mount can cover. */
async function prepareResolvConf(root: string, undo: Undo[]): Promise<void> {
  const etc = join(root, 'etc');
  await ensureDirectory(etc, undo);
  const file = join(etc, 'resolv.conf');
  const stat = await lstat(file).catch(() => undefined);
  if (stat?.isFile()) return;
  if (stat) {
    const saved = join(etc, '.resolv.conf.rootcast-saved');
    await rename(file, saved);
    undo.push(() => rename(saved, file));
  }
  await writeFile(file, '', { mode: 0o644 });
  undo.push(() => rm(file, { force: true }));
}

function tail(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** The last lines of a command's output, for error messages and details. */
export function outputTail(result: Pick<SandboxResult, 'stdout' | 'stderr'>, lines = 20): string {
  return tail(`${result.stdout}${result.stdout && result.stderr ? '\n' : ''}${result.stderr}`, lines);
}

/**
 * Runs `argv` chrooted into `root` in fresh namespaces and collects its output. Resolves
 * with the exit code (a signal counts as 128 + its number); with `check`, a non-zero code
 * throws SANDBOX_FAILED. A sandbox that cannot be set up, a timeout and an abort always
 * throw SANDBOX_FAILED.
 */
export async function runInSandbox(
  root: string,
  argv: readonly string[],
  options: SandboxOptions = {},
): Promise<SandboxResult> {
  if (argv.length === 0)
    throw new RootcastError({
      code: 'SANDBOX_FAILED',
      message: 'no command to run in the sandbox',
      hint: 'This is a bug in the caller.',
    });
  const undo: Undo[] = [];
  try {
    for (const dir of ['proc', 'sys', 'dev']) await ensureDirectory(join(root, dir), undo);
    await holdServices(root, undo);
    if (options.network) await prepareResolvConf(root, undo);
    options.reporter?.log('debug', `sandbox${options.network ? ' (network)' : ''}: ${argv.join(' ')}`);
    const result = await spawnSandbox(root, argv, options);
    if (options.check && result.code !== 0) {
      throw new RootcastError({
        code: 'SANDBOX_FAILED',
        message: `'${argv.join(' ')}' exited with code ${result.code} in the sandbox`,
        hint: `Its output ended with:\n${outputTail(result)}`,
        details: { argv: [...argv], code: result.code, output: outputTail(result) },
      });
    }
    return result;
  } finally {
    for (const action of undo.reverse()) await action();
  }
}

function spawnSandbox(
  root: string,
  argv: readonly string[],
  options: SandboxOptions,
): Promise<SandboxResult> {
  const args = [
    ...isolatedNamespaceArgs(!options.network),
    '--',
    '/bin/sh',
    '-c',
    SETUP_SCRIPT,
    'rootcast-sandbox',
    root,
    options.hostname ?? 'localhost',
    options.network ? 'net' : '',
    options.cwd ?? '/',
    ...argv,
  ];
  return new Promise((resolve, reject) => {
    // setpriv's parent-death signal takes unshare down if rootcast itself is killed, and
    // --kill-child then takes the namespace's pid 1 (and so every process in it) with it:
    // a killed build leaves no maintainer script running against a tree being removed.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'unshare', ...args], {
      env: sandboxEnvironment(options),
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let sizes = [0, 0];
    let ready = false;
    let failure: RootcastError | undefined;
    const collect = (into: Buffer[], index: 0 | 1) => (chunk: Buffer) => {
      if ((sizes[index] ?? 0) < OUTPUT_LIMIT) into.push(chunk);
      sizes =
        index === 0
          ? [(sizes[0] ?? 0) + chunk.length, sizes[1] ?? 0]
          : [sizes[0] ?? 0, (sizes[1] ?? 0) + chunk.length];
    };
    child.stdout?.on('data', collect(stdout, 0));
    child.stderr?.on('data', collect(stderr, 1));
    const status = child.stdio[3];
    if (status && 'on' in status) status.on('data', () => (ready = true));
    const kill = (reason: string) => {
      failure ??= new RootcastError({
        code: 'SANDBOX_FAILED',
        message: `'${argv.join(' ')}' ${reason}`,
        hint: 'The namespace and every process in it were killed; check what the command waits for.',
        details: { argv: [...argv] },
      });
      child.kill('SIGKILL');
    };
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timer = setTimeout(() => kill(`timed out after ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
    const onAbort = () => kill('was aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // An abort before the spawn fires no event: the listener alone would let the command run.
    if (options.signal?.aborted) onAbort();
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.stdin ?? '');
    child.on('error', (error) => {
      failure ??= new RootcastError({
        code: 'SANDBOX_FAILED',
        message: `cannot start unshare: ${describeError(error)}`,
        hint: 'rootcast needs util-linux unshare and root privileges to run maintainer scripts.',
        cause: error,
      });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      const result: SandboxResult = {
        code: code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0),
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      };
      if (failure) {
        failure.details && Object.assign(failure.details, { output: outputTail(result) });
        reject(failure);
      } else if (!ready) {
        reject(
          new RootcastError({
            code: 'SANDBOX_FAILED',
            message: `cannot set up the sandbox in ${root} (exit code ${result.code}): ${tail(result.stderr, 3) || 'no output'}`,
            hint: 'The sandbox needs root, util-linux unshare and a tree with /proc, /sys and /dev directories.',
            details: { argv: [...argv], code: result.code, output: outputTail(result) },
          }),
        );
      } else {
        resolve(result);
      }
    });
  });
}

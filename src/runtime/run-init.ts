import type { MountPlan } from './driver.js';

/**
 * The program that becomes pid 1 of a run's namespaces: a host `/bin/sh` script (no helper
 * binary to build or ship), kept as `<store>/runtime/init-<hash>.sh` and started by
 * `unshare --mount --pid --ipc --uts [--net] --fork`.
 *
 * It mounts, inside the new mount namespace only: the overlay (lowers given relative to
 * `<store>/layers`, so a deep stack still fits in mount's one-page option string) on
 * `rootfs/`, then /proc, a read-only /sys, and a fresh tmpfs /dev filled from the store's
 * device skeleton with its own devpts and /dev/shm; with a terminal, the terminal bound on
 * /dev/console; with host networking, the host's resolv.conf bound read-only. It sets the
 * hostname, reports "ready" on fd 3 (so a failed setup is told apart from a failed command),
 * and runs the command chrooted (`unshare --root --wd`) as its child.
 *
 * It stays pid 1 instead of exec'ing the command because the kernel drops every signal sent
 * to a namespace's init that has no handler: a `sleep` as pid 1 would ignore SIGTERM. The
 * script traps the signals rootcast relays and passes each on to the command. The command is
 * started in the background (`&`), where a non-interactive shell ignores SIGINT and SIGQUIT
 * and reads stdin from /dev/null: `env --default-signal` restores the signals before chroot,
 * and stdin is handed over through fd 4. When the command ends, the script
 * exits with its status (128 + n for a signal), and the kernel tears the namespaces down:
 * every remaining process is killed and every mount is gone, whatever happened.
 *
 * Environment: the script and the host tools it runs for setup (`mount`, `cp`, `ip`) see only
 * `PATH` (the host's), `ROOTCAST_RUN_ENV` and `ROOTCAST_RUN_LOADER` (text, acted on by nobody
 * but this script). `ROOTCAST_RUN_ENV` holds the command's environment as `export NAME='value'`
 * lines (see `exportLines`) *without* the loader-sensitive variables (`isLoaderSensitive`:
 * `LD_*`, `GCONV_PATH`, …). The command is started from a subshell that unsets those two (and
 * the `PWD` and `OLDPWD` the shell itself exports) and evaluates the lines, so the command's
 * environment is exactly the one rootcast chose, whatever names it uses (one of the script's
 * own variables, `PWD`). That subshell execs the HOST's `env` and `unshare`, which therefore
 * run as root with those variables: this is why the loader-sensitive ones are never among
 * them (an image's `Env: LD_PRELOAD=…` would load into host root programs). When there are
 * any, `ROOTCAST_RUN_LOADER` holds their `export` lines (plus `PWD`/`OLDPWD` when the command
 * sets them), and `unshare` starts, after the chroot, the CONTAINER's own `/bin/sh`, which
 * unsets its `PWD`/`OLDPWD`, evaluates those lines (passed as an argument, not in its
 * environment) and execs the command. `run` checks beforehand that the container has an
 * executable `/bin/sh` when it is needed (`RUN_ENV_NEEDS_SHELL`).
 */
export const RUN_INIT_SCRIPT = `set -eu
r=$1 layers=$2 lowers=$3 up=$4 wk=$5 h=$6 wd=$7 net=$8 dev=$9; shift 9
tty=$1 fwd=$2; shift 2
if [ -n "$lowers" ]; then
  (cd "$layers" && mount -t overlay overlay -o "lowerdir=$lowers,upperdir=$up,workdir=$wk" "$r")
fi
for d in proc sys dev; do
  if [ -L "$r/$d" ] || [ ! -d "$r/$d" ]; then echo "rootcast: /$d is not a directory in the container" >&2; exit 125; fi
done
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys" 2>/dev/null || mount -o rbind,ro /sys "$r/sys"
mount -t tmpfs -o nosuid,mode=0755,size=64m tmpfs "$r/dev"
cp -a "$dev/." "$r/dev/"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$r/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$r/dev/shm"
if [ -n "$tty" ]; then : > "$r/dev/console"; mount --bind "$tty" "$r/dev/console"; fi
if [ "$net" = host ] && [ -f /etc/resolv.conf ] && [ -d "$r/etc" ] && [ ! -L "$r/etc" ] && [ ! -L "$r/etc/resolv.conf" ]; then
  [ -e "$r/etc/resolv.conf" ] || : > "$r/etc/resolv.conf"
  mount -o bind,ro /etc/resolv.conf "$r/etc/resolv.conf"
fi
if [ "$net" = none ]; then ip link set lo up 2>/dev/null || :; fi
printf '%s' "$h" > /proc/sys/kernel/hostname
e=$(command -v env); u=$(command -v unshare)
echo ready >&3
exec 3>&-
c= p=
f() { if [ -n "$c" ]; then kill -s "$1" "$c" 2>/dev/null || :; else p=$1; fi; }
trap 'f TERM' TERM; trap 'f HUP' HUP; trap 'f USR1' USR1; trap 'f USR2' USR2
if [ "$fwd" = all ]; then trap 'f INT' INT; trap 'f QUIT' QUIT; else trap : INT QUIT; fi
exec 4<&0
(
  if [ -n "$ROOTCAST_RUN_LOADER" ]; then
    set -- /bin/sh -c 'unset PWD OLDPWD; eval "$1"; shift; exec "$@"' rootcast-env "$ROOTCAST_RUN_LOADER" "$@"
  fi
  set -- "$ROOTCAST_RUN_ENV" "$e" --default-signal=INT,QUIT "$u" --root="$r" --wd="$wd" -- "$@"
  unset ROOTCAST_RUN_ENV ROOTCAST_RUN_LOADER PATH PWD OLDPWD
  eval "$1"; shift
  exec "$@"
) <&4 4<&- &
exec 4<&-
c=$!
if [ -n "$p" ]; then kill -s "$p" "$c" 2>/dev/null || :; fi
while :; do
  s=0; wait "$c" || s=$?
  kill -0 "$c" 2>/dev/null || break
done
exit "$s"
`;

/** Names a POSIX shell can export; others cannot be passed through the init script. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * glibc's "unsecure" variables that do not start with `LD_` (the ones ld.so drops for setuid
 * programs): they make a program load code or data from a path they name. As one string so
 * the upper-snake names are not mistaken for error codes.
 */
const LOADER_NAMES = new Set(
  'GCONV_PATH GETCONF_DIR GLIBC_TUNABLES HOSTALIASES LOCALDOMAIN LOCPATH MALLOC_TRACE NIS_PATH NLSPATH RESOLV_HOST_CONF RES_OPTIONS TZDIR'.split(
    ' ',
  ),
);

/**
 * True for a variable the dynamic loader or glibc acts on (every `LD_*`, and glibc's unsecure
 * list): never put in the environment of a host program, only applied after the chroot.
 */
export function isLoaderSensitive(name: string): boolean {
  return name.startsWith('LD_') || LOADER_NAMES.has(name);
}

/**
 * Pure: splits the command's environment into the `export` lines the host subshell evaluates
 * (`safe`: never a loader-sensitive variable) and those the container's own `/bin/sh`
 * evaluates after the chroot (`loader`: '' when there is none; else the loader-sensitive
 * variables, plus `PWD`/`OLDPWD` if set, which that shell would otherwise replace).
 * `names`: the loader-sensitive names, for messages.
 */
export function splitEnvironment(env: Record<string, string>): {
  safe: string;
  loader: string;
  names: string[];
} {
  const names = Object.keys(env).filter((name) => ENV_NAME.test(name) && isLoaderSensitive(name));
  const safe = Object.fromEntries(Object.entries(env).filter(([name]) => !isLoaderSensitive(name)));
  if (names.length === 0) return { safe: exportLines(safe), loader: '', names };
  const inner = Object.fromEntries(
    Object.entries(env).filter(([name]) => isLoaderSensitive(name) || name === 'PWD' || name === 'OLDPWD'),
  );
  return { safe: exportLines(safe), loader: exportLines(inner), names };
}

/**
 * Pure: the command's environment as `export NAME='value'` lines for the init script's
 * `eval` (single quotes, `'` written as `'\''`). Names `ENV_NAME` rejects are left out.
 */
export function exportLines(env: Record<string, string>): string {
  return Object.entries(env)
    .filter(([name]) => ENV_NAME.test(name))
    .map(([name, value]) => `export ${name}='${value.replaceAll("'", "'\\''")}'`)
    .join('\n');
}

export interface InitArguments {
  plan: MountPlan;
  /** `<store>/layers`: the overlay's lowers are named relative to it. */
  layersDir: string;
  hostname: string;
  workdir: string;
  network: 'host' | 'none';
  devSkeleton: string;
  /** The terminal on stdin, bound on /dev/console; '' without one. */
  tty: string;
  /** 'all': INT and QUIT are relayed too (no terminal sends them to the command itself). */
  forward: 'all' | 'term';
  argv: readonly string[];
}

/** Pure: the operands of the init script ($0 and on). */
export function initArguments(a: InitArguments): string[] {
  const p = a.plan;
  const overlay =
    p.kind === 'overlay'
      ? [a.layersDir, p.lowers.map((l) => l.slice(l.lastIndexOf('/') + 1)).join(':'), p.upper, p.work]
      : ['', '', '', ''];
  return [p.rootfs, ...overlay, a.hostname, a.workdir, a.network, a.devSkeleton, a.tty, a.forward, ...a.argv];
}

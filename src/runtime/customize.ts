import { randomBytes } from 'node:crypto';
import { addAccount, hostsFile, type UserSpec, validateHostname, validateUser } from './etc-files.js';
import type { LayeredTree } from './layered-tree.js';
import { generateHostKey } from './ssh-keys.js';
import { renderPattern, usersOf, type Values } from './values.js';

/**
 * What makes each container its own machine, written into its view at clone time (no mount,
 * no process: see `LayeredTree`):
 *
 * - `/etc/hostname` and `/etc/hosts` (values `hostname`, default the container's name, and
 *   `domain`);
 * - a fresh `/etc/machine-id` (and `/var/lib/dbus/machine-id` when it is a file of its own);
 * - accounts from the values (`usersOf`): passwd/shadow/group/gshadow entries, a home made
 *   from /etc/skel, `~/.ssh/authorized_keys`;
 * - `/etc/motd` from the `motd` value (a handlebars pattern over the values);
 * - when the template has sshd: its host keys replaced by fresh ed25519 and ECDSA keys.
 *
 * `planCustomization` validates and decides (pure but for pattern rendering); `applyCustomization`
 * only writes.
 */
export interface CustomizationPlan {
  hostname: string;
  domain?: string;
  motd?: string;
  users: UserSpec[];
  /** 32 lowercase hex digits, as systemd writes it. */
  machineId: string;
}

export async function planCustomization(name: string, values: Values): Promise<CustomizationPlan> {
  const hostname = values.hostname === undefined ? name : String(values.hostname);
  const domain = values.domain === undefined || values.domain === '' ? undefined : String(values.domain);
  validateHostname(hostname, domain);
  const users = usersOf(values);
  for (const u of users) validateUser(u);
  const motd =
    values.motd === undefined ? undefined : await renderPattern(String(values.motd), { ...values, hostname });
  return {
    hostname,
    ...(domain ? { domain } : {}),
    ...(motd === undefined ? {} : { motd: motd.endsWith('\n') ? motd : `${motd}\n` }),
    users,
    machineId: randomBytes(16).toString('hex'),
  };
}

const SHADOW = { mode: 0o640, uid: 0, gid: 42 };

function shellFor(view: LayeredTree): string {
  return view.stat('/bin/bash')?.isFile() ? '/bin/bash' : '/bin/sh';
}

/** Copies /etc/skel's files (and directories) into a new home, owned by the user. */
function copySkel(view: LayeredTree, from: string, to: string, uid: number, gid: number): void {
  for (const name of view.readdir(from)) {
    const source = `${from}/${name}`;
    const stats = view.stat(source);
    if (stats?.isDirectory()) {
      view.mkdirp(`${to}/${name}`, { mode: stats.mode & 0o7777, uid, gid });
      copySkel(view, source, `${to}/${name}`, uid, gid);
    } else if (stats?.isFile()) {
      view.writeFile(`${to}/${name}`, view.readFile(source) ?? '', { mode: stats.mode & 0o7777, uid, gid });
    }
  }
}

function applyUsers(view: LayeredTree, users: readonly UserSpec[]): void {
  if (users.length === 0) return;
  const read = (path: string) => view.readFile(path)?.toString('utf8') ?? '';
  let files = {
    passwd: read('/etc/passwd'),
    shadow: read('/etc/shadow'),
    group: read('/etc/group'),
    gshadow: read('/etc/gshadow'),
  };
  const today = Math.floor(Date.now() / 86_400_000);
  const shell = shellFor(view);
  const homes: { user: UserSpec; uid: number; gid: number; home: string; created: boolean }[] = [];
  for (const user of users) {
    const result = addAccount(files, user, today, shell);
    files = result.files;
    homes.push({ user, ...result });
  }
  view.writeFile('/etc/passwd', files.passwd);
  view.writeFile('/etc/group', files.group);
  view.writeFile('/etc/shadow', files.shadow, view.stat('/etc/shadow') ? undefined : SHADOW);
  view.writeFile('/etc/gshadow', files.gshadow, view.stat('/etc/gshadow') ? undefined : SHADOW);
  for (const { user, uid, gid, home, created } of homes) {
    if (created && !view.stat(home)) {
      view.mkdirp(home, { mode: 0o700, uid, gid });
      copySkel(view, '/etc/skel', home, uid, gid);
    }
    if (user.sshKeys.length > 0) {
      view.mkdirp(`${home}/.ssh`, { mode: 0o700, uid, gid });
      view.writeFile(`${home}/.ssh/authorized_keys`, `${user.sshKeys.join('\n')}\n`, {
        mode: 0o600,
        uid,
        gid,
      });
    }
  }
}

function applyHostKeys(view: LayeredTree, hostname: string): void {
  if (!view.stat('/usr/sbin/sshd')?.isFile()) return;
  for (const name of view.readdir('/etc/ssh'))
    if (name.startsWith('ssh_host_')) view.remove(`/etc/ssh/${name}`);
  for (const type of ['ed25519', 'ecdsa'] as const) {
    const key = generateHostKey(type, `root@${hostname}`);
    view.writeFile(`/etc/ssh/${key.file}`, key.privateKey, { mode: 0o600, uid: 0, gid: 0 });
    view.writeFile(`/etc/ssh/${key.file}.pub`, key.publicKey, { mode: 0o644, uid: 0, gid: 0 });
  }
}

export function applyCustomization(view: LayeredTree, plan: CustomizationPlan): void {
  view.writeFile('/etc/hostname', `${plan.hostname}\n`, { mode: 0o644, uid: 0, gid: 0 });
  view.writeFile('/etc/hosts', hostsFile(plan.hostname, plan.domain), { mode: 0o644, uid: 0, gid: 0 });
  view.writeFile('/etc/machine-id', `${plan.machineId}\n`, { mode: 0o444, uid: 0, gid: 0 });
  const dbus = '/var/lib/dbus/machine-id';
  if (view.lookup(view.resolve(dbus, false))?.stats.isFile()) view.writeFile(dbus, `${plan.machineId}\n`);
  if (plan.motd !== undefined) view.writeFile('/etc/motd', plan.motd);
  applyUsers(view, plan.users);
  applyHostKeys(view, plan.hostname);
}

import { inputError } from '../core/errors.js';

/**
 * Pure edits of a Debian tree's account and host files, as `adduser` and the installer make
 * them. No I/O: the caller reads the files through the container's view and writes the
 * results back.
 */

/** One account to create or update at clone time. */
export interface UserSpec {
  name: string;
  /** A crypt(3) hash (`$y$…`, `$6$…`), or undefined for no password (key-only login). */
  passwordHash?: string;
  /** authorized_keys lines. */
  sshKeys: string[];
  /** Supplementary groups, which must exist in the template. */
  groups: string[];
  uid?: number;
  shell?: string;
}

export interface AccountFiles {
  passwd: string;
  shadow: string;
  group: string;
  gshadow: string;
}

export interface AccountResult {
  files: AccountFiles;
  uid: number;
  gid: number;
  home: string;
  /** False when the account existed already (only its password and keys were set). */
  created: boolean;
}

const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
// crypt(3) hashes: "$id$…" (yescrypt, sha512, …), or the locking values "!"/"*" with anything after.
const HASH = /^(\$[0-9a-z]+\$[./0-9A-Za-z$=,]+|[!*].*)$/;
const SSH_KEY =
  /^(?:\S+\s+)?(?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+)\s+[A-Za-z0-9+/]+={0,3}(?:\s.*)?$/;

/** Checks a user spec's fields; throws `CLONE_VALUE_INVALID` (exit 2). */
export function validateUser(user: UserSpec): void {
  const bad = (what: string, hint: string) =>
    inputError('CLONE_VALUE_INVALID', `user ${JSON.stringify(user.name)}: ${what}`, hint);
  if (!USER_NAME.test(user.name))
    throw bad(
      'not a valid user name',
      'Use lowercase letters, digits, "_" and "-", at most 32, not starting with a digit.',
    );
  if (user.passwordHash !== undefined && (!HASH.test(user.passwordHash) || /[:\n]/.test(user.passwordHash)))
    throw bad(
      'password_hash is not a crypt(3) hash',
      'Give a hash, e.g. from `mkpasswd -m yescrypt` or `openssl passwd -6`.',
    );
  for (const key of user.sshKeys)
    if (!SSH_KEY.test(key))
      throw bad(
        `ssh_key ${JSON.stringify(key.slice(0, 40))} is not a public key line`,
        'Give a line as found in ~/.ssh/id_ed25519.pub.',
      );
  if (user.uid !== undefined && (!Number.isInteger(user.uid) || user.uid < 0 || user.uid > 65533))
    throw bad('uid is not a number from 0 to 65533', 'Leave uid out to take the next free one from 1000.');
  if (user.shell !== undefined && !/^\/[^:\n]*$/.test(user.shell))
    throw bad('shell is not an absolute path', 'For example /bin/bash.');
}

function lines(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(':'));
}

function unlines(rows: string[][]): string {
  return rows.map((r) => r.join(':')).join('\n') + (rows.length > 0 ? '\n' : '');
}

/** The first id from 1000 that no account and no group uses. */
function freeId(taken: Set<number>): number {
  for (let id = 1000; id < 60000; id++) if (!taken.has(id)) return id;
  throw inputError(
    'CLONE_VALUE_INVALID',
    'no free uid from 1000 to 59999',
    'Give each user an explicit uid.',
  );
}

/**
 * Adds (or updates) one account: passwd, shadow, its own group and gshadow entries, and its
 * membership of `groups`. `today` is days since 1970 (shadow's last-change field).
 */
export function addAccount(files: AccountFiles, user: UserSpec, today: number, shell: string): AccountResult {
  const passwd = lines(files.passwd);
  const shadow = lines(files.shadow);
  const group = lines(files.group);
  const gshadow = lines(files.gshadow);
  const hash = user.passwordHash ?? '*';
  const existing = passwd.find((r) => r[0] === user.name);
  let uid: number;
  let gid: number;
  let home: string;
  if (existing) {
    uid = Number(existing[2]);
    gid = Number(existing[3]);
    home = existing[5] ?? `/home/${user.name}`;
    const row = shadow.find((r) => r[0] === user.name);
    if (row && user.passwordHash !== undefined) row[1] = hash;
    else if (!row) shadow.push([user.name, hash, String(today), '0', '99999', '7', '', '', '']);
  } else {
    const taken = new Set([...passwd.map((r) => Number(r[2])), ...group.map((r) => Number(r[2]))]);
    uid = user.uid ?? freeId(taken);
    if (passwd.some((r) => Number(r[2]) === uid))
      throw inputError(
        'CLONE_VALUE_INVALID',
        `user ${user.name}: uid ${uid} is taken`,
        'Choose another uid, or leave it out.',
      );
    gid = group.some((r) => Number(r[2]) === uid) ? freeId(taken) : uid;
    home = `/home/${user.name}`;
    passwd.push([user.name, 'x', String(uid), String(gid), '', home, user.shell ?? shell]);
    shadow.push([user.name, hash, String(today), '0', '99999', '7', '', '', '']);
    if (!group.some((r) => r[0] === user.name)) {
      group.push([user.name, 'x', String(gid), '']);
      gshadow.push([user.name, '!', '', '']);
    } else gid = Number(group.find((r) => r[0] === user.name)?.[2]);
  }
  for (const name of user.groups) {
    const row = group.find((r) => r[0] === name);
    if (!row)
      throw inputError(
        'CLONE_VALUE_INVALID',
        `user ${user.name}: group ${name} does not exist in the template`,
        'Name groups the template has (see /etc/group), e.g. sudo once sudo is installed.',
      );
    const members = (row[3] ?? '').split(',').filter((m) => m !== '');
    if (!members.includes(user.name)) row[3] = [...members, user.name].join(',');
    const srow = gshadow.find((r) => r[0] === name);
    if (srow) {
      const smembers = (srow[3] ?? '').split(',').filter((m) => m !== '');
      if (!smembers.includes(user.name)) srow[3] = [...smembers, user.name].join(',');
    }
  }
  return {
    files: {
      passwd: unlines(passwd),
      shadow: unlines(shadow),
      group: unlines(group),
      gshadow: unlines(gshadow),
    },
    uid,
    gid,
    home,
    created: !existing,
  };
}

/** /etc/hosts as Debian's installer writes it. */
export function hostsFile(hostname: string, domain?: string): string {
  const names = domain ? `${hostname}.${domain}\t${hostname}` : hostname;
  return [
    '127.0.0.1\tlocalhost',
    `127.0.1.1\t${names}`,
    '',
    '# The following lines are desirable for IPv6 capable hosts',
    '::1     localhost ip6-localhost ip6-loopback',
    'ff02::1 ip6-allnodes',
    'ff02::2 ip6-allrouters',
    '',
  ].join('\n');
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** Checks a hostname (one label) and domain (dot-separated labels); `CLONE_VALUE_INVALID`. */
export function validateHostname(hostname: string, domain?: string): void {
  if (!LABEL.test(hostname))
    throw inputError(
      'CLONE_VALUE_INVALID',
      `hostname ${JSON.stringify(hostname)} is not valid`,
      'A hostname is one label of letters, digits and "-"; put the rest in the domain value.',
    );
  if (domain !== undefined && (domain.length > 190 || !domain.split('.').every((l) => LABEL.test(l))))
    throw inputError(
      'CLONE_VALUE_INVALID',
      `domain ${JSON.stringify(domain)} is not valid`,
      'For example lab.example.org.',
    );
}

import { execFileSync } from 'node:child_process';
import { chmod, chown, link, lutimes, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A small tree with every kind of entry the tar writer must keep: setuid/setgid/sticky modes,
 * foreign owners, hardlinks, short and long symlinks, a long path, a FIFO, char and block
 * devices, extended attributes (user, trusted, security.capability), a non-ASCII name, a file
 * spanning several tar chunks, and mtimes before and after the epoch used by the tests.
 *
 * `order: 'reverse'` creates the same tree in the opposite order (different inode numbers,
 * different readdir order, the other hardlink created first), which must not change the tar.
 * Needs root (chown, mknod, trusted.* xattrs) and setfattr (package attr).
 */
export const FIXTURE_EPOCH = 1_700_000_000;
export const OLD_MTIME = 1_600_000_000;
export const LONG_DIR = `usr/share/${'long-directory-name-'.repeat(4)}x`;
export const LONG_TARGET = `../${'far/'.repeat(40)}target`;
// cap_net_raw=ep, VFS_CAP_REVISION_2.
export const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');

type Step = () => Promise<void>;

function big(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 2654435761) >>> 24;
  return out;
}

export async function buildFixtureTree(
  root: string,
  order: 'forward' | 'reverse' = 'forward',
): Promise<void> {
  const p = (rel: string) => join(root, rel);
  const file =
    (rel: string, content: string | Buffer, mode = 0o644): Step =>
    async () => {
      await writeFile(p(rel), content);
      await chmod(p(rel), mode);
      await utimes(p(rel), OLD_MTIME, OLD_MTIME);
    };
  const dirs = ['bin', 'dev', 'etc', 'run', 'tmp', 'usr', 'usr/bin', 'usr/share', LONG_DIR, 'a', 'a/b'];
  const steps: Step[] = [
    file('etc/hostname', 'fixture\n'),
    file('etc/empty', ''),
    file('etc/café', 'unicode name\n'),
    file('bin/su', '#!/bin/sh\n', 0o4755),
    file('bin/wall', '#!/bin/sh\n', 0o2755),
    file('usr/bin/perl', 'perl binary\n', 0o755),
    file('usr/share/big', big(3 * 1024 * 1024 + 123)),
    file(`${LONG_DIR}/file-with-a-long-path`, 'deep\n'),
    file('a-c', 'sorts before a/ bytewise but after a in a walk\n'),
    file('a/b/c', 'c\n'),
    async () => {
      await writeFile(p('etc/new'), 'newer than the epoch\n');
      await chmod(p('etc/new'), 0o644);
      await utimes(p('etc/new'), FIXTURE_EPOCH + 1000, FIXTURE_EPOCH + 1000);
    },
    async () => {
      await writeFile(p('etc/owned'), 'owned by 1000:1001\n');
      await chown(p('etc/owned'), 1000, 1001);
      await chmod(p('etc/owned'), 0o644);
      await utimes(p('etc/owned'), OLD_MTIME, OLD_MTIME);
    },
    async () => {
      await writeFile(p('bin/ping'), 'ping\n');
      await chmod(p('bin/ping'), 0o755);
      execFileSync('setfattr', [
        '-n',
        'security.capability',
        '-v',
        `0x${CAPABILITY.toString('hex')}`,
        p('bin/ping'),
      ]);
      execFileSync('setfattr', ['-n', 'user.comment', '-v', 'hello', p('bin/ping')]);
      await utimes(p('bin/ping'), OLD_MTIME, OLD_MTIME);
    },
    async () => {
      execFileSync('setfattr', ['-n', 'user.dir', '-v', 'on a directory', p('usr/share')]);
    },
    async () => {
      await symlink('dash', p('bin/sh'));
      execFileSync('setfattr', ['-h', '-n', 'trusted.note', '-v', 'on a symlink', p('bin/sh')]);
      await lutimes(p('bin/sh'), OLD_MTIME, OLD_MTIME);
    },
    async () => {
      await symlink(LONG_TARGET, p('usr/share/long-link'));
      await lutimes(p('usr/share/long-link'), OLD_MTIME, OLD_MTIME);
    },
    async () => {
      await symlink('/etc/hostname', p('etc/absolute-link'));
      await lutimes(p('etc/absolute-link'), OLD_MTIME, OLD_MTIME);
    },
    async () => {
      execFileSync('mkfifo', ['-m', '0600', p('run/initctl')]);
      await utimes(p('run/initctl'), OLD_MTIME, OLD_MTIME);
    },
    async () => {
      execFileSync('mknod', ['-m', '0666', p('dev/null'), 'c', '1', '3']);
      execFileSync('mknod', ['-m', '0660', p('dev/loop0'), 'b', '7', '0']);
      execFileSync('mknod', ['-m', '0600', p('dev/wide'), 'c', '511', '300000']);
      await utimes(p('dev/null'), OLD_MTIME, OLD_MTIME);
    },
  ];
  const links: Step = async () => {
    // Hardlinks: whichever name is created first, the tar stores the first in walk order.
    const names = ['usr/bin/perl5.36', 'bin/perl-link'];
    for (const name of order === 'forward' ? names : [...names].reverse())
      await link(p('usr/bin/perl'), p(name));
  };
  const ordered = order === 'forward' ? [...dirs] : [...dirs].reverse();
  for (const dir of ordered) await mkdir(p(dir), { recursive: true });
  for (const step of order === 'forward' ? steps : [...steps].reverse()) await step();
  await links();
  // Explicit modes: the golden digests must not depend on the umask.
  for (const dir of dirs) await chmod(p(dir), 0o755);
  await chmod(p('tmp'), 0o1777);
}

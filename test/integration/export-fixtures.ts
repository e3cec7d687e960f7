import { execFileSync } from 'node:child_process';
import { chmod, link, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nativeCalls } from '../../src/assemble/native.js';
import { createStagingDir } from '../../src/store/layers.js';
import { type CommitTemplateResult, commitTemplate } from '../../src/store/templates.js';

/**
 * A two-layer template for the export tests, and the tree it must flatten to.
 *
 * base:  etc/hostname, etc/removed, etc/keep, usr/share/doc/{a,b}, var/lib/x/y, bin/tool
 *        (+ a hardlink bin/tool-link), dev/null, a symlink with an xattr and a file with one.
 * child: changes etc/hostname, deletes etc/removed (whiteout), makes usr/share/doc opaque
 *        with only `c` in it, replaces the directory var/lib/x by a file, deletes the first
 *        name of the hardlink pair (bin/tool) so bin/tool-link must carry the content, adds
 *        opt/new/file.
 *
 * `buildMerged` writes, by hand, the tree an overlay mount of child over base shows; the
 * flattened export of the child must equal the store's tar of that tree byte for byte.
 */
export const EPOCH = 1_700_000_000;
const OLD = 1_600_000_000;
const LOCK = JSON.stringify({
  lockVersion: 1,
  recipe: {
    name: 'fx',
    version: '1',
    digest: 'sha256:1111111111111111111111111111111111111111111111111111111111111111',
  },
  distro: 'debian',
  release: 'bookworm',
  arch: 'amd64',
  variant: 'minbase',
  repositories: [],
  packages: [],
});

async function file(root: string, rel: string, content: string, mode = 0o644): Promise<void> {
  await mkdir(join(root, rel, '..'), { recursive: true });
  await writeFile(join(root, rel), content);
  await chmod(join(root, rel), mode);
  await utimes(join(root, rel), OLD, OLD);
}

async function buildBase(root: string): Promise<void> {
  await file(root, 'etc/hostname', 'base\n');
  await file(root, 'etc/removed', 'gone in the child\n');
  await file(root, 'etc/keep', 'kept\n');
  await file(root, 'usr/share/doc/a', 'a\n');
  await file(root, 'usr/share/doc/b', 'b\n');
  await file(root, 'var/lib/x/y', 'y\n');
  await file(root, 'bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  await link(join(root, 'bin/tool'), join(root, 'bin/tool-link'));
  await symlink('tool-link', join(root, 'bin/alias'));
  // A symlink's own xattr (user.* is refused on links): layers, pulls and exports keep it.
  nativeCalls().lsetxattr(join(root, 'bin/alias'), 'trusted.note', Buffer.from('link'));
  await mkdir(join(root, 'dev'), { recursive: true });
  nativeCalls().mknod(join(root, 'dev/null'), 0o020666, 1, 3);
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'base', join(root, 'etc/keep')]);
}

/** The child's changes in overlayfs upper-directory format. */
async function buildUpper(root: string): Promise<void> {
  await file(root, 'etc/hostname', 'child\n');
  await mkdir(join(root, 'etc'), { recursive: true });
  nativeCalls().mknod(join(root, 'etc/removed'), 0o020000, 0, 0);
  await file(root, 'usr/share/doc/c', 'c\n');
  nativeCalls().lsetxattr(join(root, 'usr/share/doc'), 'trusted.overlay.opaque', Buffer.from('y'));
  await file(root, 'var/lib/x', 'now a file\n');
  await mkdir(join(root, 'bin'), { recursive: true });
  nativeCalls().mknod(join(root, 'bin/tool'), 0o020000, 0, 0);
  await file(root, 'opt/new/file', 'new\n');
}

/** The merged view, written as a plain tree. */
export async function buildMerged(root: string): Promise<void> {
  await buildBase(root);
  await rm(join(root, 'etc/removed'));
  await rm(join(root, 'bin/tool'));
  await rm(join(root, 'etc/hostname'));
  await file(root, 'etc/hostname', 'child\n');
  await rm(join(root, 'usr/share/doc'), { recursive: true });
  await file(root, 'usr/share/doc/c', 'c\n');
  await rm(join(root, 'var/lib/x'), { recursive: true });
  await file(root, 'var/lib/x', 'now a file\n');
  await file(root, 'opt/new/file', 'new\n');
  await normalizeDirs(root, TREE_DIRS);
}

/** Directory modes and times the trees share, so only content decides equality. */
export async function normalizeDirs(root: string, dirs: readonly string[]): Promise<void> {
  for (const d of ['', ...dirs]) {
    await chmod(join(root, d), 0o755);
    await utimes(join(root, d), OLD, OLD);
  }
}

export const TREE_DIRS = [
  'bin',
  'dev',
  'etc',
  'opt',
  'opt/new',
  'usr',
  'usr/share',
  'usr/share/doc',
  'var',
  'var/lib',
];

export interface LayeredFixture {
  base: CommitTemplateResult;
  child: CommitTemplateResult;
}

/** Commits `base:1.0` and `child:1.0` (on base) into `store`. */
export async function commitLayered(store: string): Promise<LayeredFixture> {
  const common = {
    store,
    sourceDateEpoch: EPOCH,
    arch: 'amd64',
    lock: LOCK,
    recipeDigest: 'sha256:1111111111111111111111111111111111111111111111111111111111111111',
  };
  const baseTree = await createStagingDir(store);
  await buildBase(baseTree);
  await normalizeDirs(
    baseTree,
    TREE_DIRS.filter((d) => !d.startsWith('opt')),
  );
  const base = await commitTemplate({
    ...common,
    name: 'base',
    version: '1.0',
    tree: baseTree,
    cacheKey: 'sha256:2222222222222222222222222222222222222222222222222222222222222222',
  });
  const upper = await createStagingDir(store);
  await buildUpper(upper);
  await normalizeDirs(upper, [
    'bin',
    'etc',
    'opt',
    'opt/new',
    'usr',
    'usr/share',
    'usr/share/doc',
    'var',
    'var/lib',
  ]);
  const child = await commitTemplate({
    ...common,
    name: 'child',
    version: '1.0',
    tree: upper,
    parent: 'base:1.0',
    cacheKey: 'sha256:3333333333333333333333333333333333333333333333333333333333333333',
  });
  return { base, child };
}

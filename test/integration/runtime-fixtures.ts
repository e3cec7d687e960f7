import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createStagingDir } from '../../src/store/layers.js';
import { commitTemplate } from '../../src/store/templates.js';
import { runProcess } from '../helpers/cli.js';

/**
 * Small, fast templates for the runtime's tests, built from the host's own binaries (dash,
 * coreutils' cat/sleep/true/touch/ls with their libraries), so `run` has something to run,
 * plus whatever a test adds. `viewListing` describes a mounted or plain tree for comparisons.
 */
export const EPOCH = 1_700_000_000;

const HOST_TOOLS = [
  '/bin/dash',
  '/usr/bin/cat',
  '/usr/bin/sleep',
  '/usr/bin/true',
  '/usr/bin/touch',
  '/usr/bin/ls',
  '/usr/bin/rm',
  '/usr/bin/wc',
];

/** Copies the host tools and the libraries they load into `tree` (merged-/usr layout). */
export function installHostTools(tree: string): void {
  const files = new Set<string>(HOST_TOOLS);
  for (const tool of HOST_TOOLS) {
    const out = execFileSync('ldd', [tool], { encoding: 'utf8' });
    for (const match of out.matchAll(/(\/\S+\.so[.\d]*)/g)) files.add(match[1]!);
  }
  for (const dir of [
    'usr/bin',
    'usr/lib',
    'usr/lib64',
    'usr/sbin',
    'etc',
    'proc',
    'sys',
    'dev',
    'tmp',
    'root',
  ])
    mkdirSync(join(tree, dir), { recursive: true });
  for (const [link, to] of [
    ['bin', 'usr/bin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
    ['sbin', 'usr/sbin'],
  ] as const)
    execFileSync('ln', ['-s', to, join(tree, link)]);
  for (const file of files) {
    const inTree = join(tree, file.replace(/^\/(bin|lib|lib64|sbin)\//, '/usr/$1/'));
    mkdirSync(dirname(inTree), { recursive: true });
    if (!existsSync(inTree)) copyFileSync(file, inTree);
  }
  execFileSync('ln', ['-s', 'dash', join(tree, 'usr/bin/sh')]);
  chmodSync(join(tree, 'tmp'), 0o1777);
  writeFileSync(
    join(tree, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  );
  writeFileSync(join(tree, 'etc/group'), 'root:x:0:\nshadow:x:42:\nusers:x:100:\nnogroup:x:65534:\n');
  writeFileSync(join(tree, 'etc/shadow'), 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n', {
    mode: 0o640,
  });
  writeFileSync(join(tree, 'etc/gshadow'), 'root:*::\nshadow:*::\nusers:*::\nnogroup:*::\n', { mode: 0o640 });
  execFileSync('chown', ['0:42', join(tree, 'etc/shadow'), join(tree, 'etc/gshadow')]);
  mkdirSync(join(tree, 'etc/skel'));
  writeFileSync(join(tree, 'etc/skel/.profile'), '# skel profile\n');
}

export interface TemplateOptions {
  store: string;
  name: string;
  version?: string;
  /** Fills the staging tree (an overlayfs upper directory when `parent` is set). */
  build: (tree: string) => void | Promise<void>;
  parent?: string;
}

/** Commits a template from a tree made by `build`; returns its manifest digest. */
export async function makeTemplate(options: TemplateOptions): Promise<string> {
  const tree = await createStagingDir(options.store);
  await options.build(tree);
  const result = await commitTemplate({
    store: options.store,
    name: options.name,
    version: options.version ?? '1.0',
    tree,
    sourceDateEpoch: EPOCH,
    arch: 'amd64',
    lock: '{}',
    recipeDigest: `sha256:${'0'.repeat(64)}`,
    cacheKey: `sha256:${Buffer.from(options.name).toString('hex').padEnd(64, '0').slice(0, 64)}`,
    compressionLevel: 1,
    ...(options.parent ? { parent: options.parent } : {}),
  });
  return result.manifestDigest;
}

export function tempDir(prefix = 'rootcast-runtime-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

// Runs inside the namespace: lists the tree at argv[2] as JSON, one entry per path.
const LISTER = `
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
const { nativeCalls } = await import(process.argv[3]);
const native = nativeCalls();
const root = process.argv[2];
const out = {};
const walk = (rel) => {
  const path = rel === '' ? root : join(root, rel);
  const s = lstatSync(path);
  const type = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : s.isCharacterDevice() ? 'chr' : s.isBlockDevice() ? 'blk' : s.isFIFO() ? 'fifo' : 'sock';
  const e = { type, mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid, mtime: Math.floor(s.mtimeMs / 1000) };
  if (type === 'file') { e.size = s.size; e.sha = createHash('sha256').update(readFileSync(path)).digest('hex'); e.ino = s.ino; }
  if (type === 'symlink') e.target = readlinkSync(path);
  if (type === 'chr' || type === 'blk') e.rdev = s.rdev;
  e.xattrs = native.llistxattr(path).sort().map((n) => n + '=' + createHash('sha256').update(native.lgetxattr(path, n)).digest('hex').slice(0, 16));
  out['/' + rel] = e;
  if (type === 'dir') for (const n of readdirSync(path).sort()) walk(rel === '' ? n : rel + '/' + n);
};
walk('');
process.stdout.write(JSON.stringify(out));
`;

export interface ListingEntry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  mtime: number;
  size?: number;
  sha?: string;
  ino?: number;
  target?: string;
  rdev?: number;
  xattrs: string[];
}

/**
 * Lists a tree. With `overlay` (lowers top first, optional upper/work), the tree is first
 * mounted at `root` inside a private mount namespace, so nothing stays mounted.
 */
export async function viewListing(
  root: string,
  overlay?: { lowers: string[]; upper?: string; work?: string },
): Promise<Record<string, ListingEntry>> {
  const dir = mkdtempSync(join(tmpdir(), 'rootcast-lister-'));
  const lister = join(dir, 'lister.mjs');
  writeFileSync(lister, LISTER);
  const nativeModule = new URL('../../dist/assemble/native.js', import.meta.url).pathname;
  let mount = '';
  if (overlay) {
    const options =
      overlay.upper && overlay.work
        ? `lowerdir=${overlay.lowers.join(':')},upperdir=${overlay.upper},workdir=${overlay.work}`
        : `lowerdir=${overlay.lowers.join(':')}`;
    mount = `mount -t overlay overlay -o "${options}" "$1" && `;
  }
  const script = `${mount}exec "$2" "$3" "$1" "$4"`;
  const args = ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'list', root];
  const listed = await runProcess('unshare', [...args, process.execPath, lister, nativeModule]).finally(() =>
    rmSync(dir, { recursive: true, force: true }),
  );
  if (listed.code !== 0) throw new Error(`listing ${root} failed (${listed.code}): ${listed.stderr}`);
  return JSON.parse(listed.stdout) as Record<string, ListingEntry>;
}

/** Mount lines of this process's namespace that mention `path`. */
export function mountsUnder(path: string): string[] {
  return execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(path));
}

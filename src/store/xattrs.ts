import { spawn } from 'node:child_process';
import { hasNativeCalls, nativeCalls } from '../assemble/native.js';
import { describeError, RootcastError } from '../core/errors.js';

/**
 * Reading a file's extended attributes without following a final symlink (`llistxattr` +
 * `lgetxattr`), for the tar writer's `SCHILY.xattr.*` records.
 *
 * This is the only place the store reads xattrs, so the mechanism can change without touching
 * the tar writer. It prefers the node-api addon in `native/` (one syscall pair per file); when
 * the addon is not built it falls back to one `getfattr -R` spawn over the whole tree, taken
 * when the reader is opened (the tree must not change afterwards, which holds for a finished
 * build tree).
 *
 * A reader returns attributes sorted by name (bytewise) so tar output is deterministic, and an
 * empty list on filesystems without xattr support.
 */
export type XattrList = Array<[name: string, value: Buffer]>;
export type XattrReader = (path: string) => XattrList;

/** Which mechanism `openXattrReader` chose, for reports and tests. */
export type XattrSource = 'native' | 'getfattr';

function byName(a: [string, Buffer], b: [string, Buffer]): number {
  return Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0]));
}

const NONE: XattrList = [];

function readNative(path: string): XattrList {
  const calls = nativeCalls();
  let names: string[];
  try {
    names = calls.llistxattr(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTSUP') return NONE;
    throw error;
  }
  if (names.length === 0) return NONE;
  const out: XattrList = [];
  for (const name of names) {
    try {
      out.push([name, calls.lgetxattr(path, name)]);
    } catch (error) {
      // Removed between list and get: it is not part of the tree any more.
      if ((error as NodeJS.ErrnoException).code === 'ENODATA') continue;
      throw error;
    }
  }
  return out.sort(byName);
}

/** Undoes getfattr's escaping of names: `\ooo` octal bytes and `\\`. */
function unescapeGetfattr(text: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(text, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && raw[i + 1] === 0x5c) {
      bytes.push(0x5c);
      i++;
    } else if (c === 0x5c && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(Number.parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Parses `getfattr -d -m - -e hex --absolute-names` output into path → sorted attributes. */
export function parseGetfattrDump(text: string): Map<string, XattrList> {
  const out = new Map<string, XattrList>();
  let current: XattrList | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = [];
      out.set(unescapeGetfattr(line.slice('# file: '.length)), current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) continue;
    const name = unescapeGetfattr(line.slice(0, eq));
    const value = line.slice(eq + 1);
    current.push([name, value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : Buffer.alloc(0)]);
  }
  for (const list of out.values()) list.sort(byName);
  return out;
}

async function snapshotWithGetfattr(root: string): Promise<Map<string, XattrList>> {
  const args = ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root];
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn('getfattr', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('error', reject);
      child.on('close', (c) =>
        resolve({ code: c ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: err }),
      );
    },
  ).catch((error: unknown) => {
    throw new RootcastError({
      code: 'XATTR_READER_UNAVAILABLE',
      message: `cannot read extended attributes: the native addon is not built and getfattr failed (${describeError(error)})`,
      hint: 'Build the addon (`npx node-gyp rebuild --directory native`) or install the attr package.',
      cause: error,
    });
  });
  // getfattr exits 1 when some file has no xattr support; anything on stdout is still valid.
  if (code !== 0 && stdout.length === 0 && stderr.trim() !== '') {
    throw new RootcastError({
      code: 'XATTR_READER_UNAVAILABLE',
      message: `getfattr failed on ${root}: ${stderr.trim().split('\n')[0]}`,
      hint: 'Build the native addon (`npx node-gyp rebuild --directory native`).',
    });
  }
  return parseGetfattrDump(stdout);
}

/**
 * A reader for the tree under `root`. `prefer` forces a mechanism (tests use it to exercise
 * both); by default the addon when it is built, else getfattr.
 */
export async function openXattrReader(
  root: string,
  prefer?: XattrSource,
): Promise<{ source: XattrSource; read: XattrReader }> {
  if (prefer === 'native' || (prefer === undefined && hasNativeCalls())) {
    nativeCalls();
    return { source: 'native', read: readNative };
  }
  const snapshot = await snapshotWithGetfattr(root);
  return { source: 'getfattr', read: (path) => snapshot.get(path) ?? NONE };
}

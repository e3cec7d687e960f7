import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportTemplate } from '../../src/api/export.js';
import { storeLayout } from '../../src/store/paths.js';
import { readTemplate } from '../../src/store/template-query.js';
import { errorLines, jsonError, runCli } from '../helpers/cli.js';
import { commitLayered } from './export-fixtures.js';

/**
 * What `-o` may name, for every export format: refusals come before any work (an unknown
 * template is not even looked up) with exit 2, and leave nothing at or beside the output.
 */

/** Every path under `root`, relative, sorted (directories end in /). */
async function listing(root: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = join(prefix, entry.name);
    if (entry.isDirectory()) out.push(`${rel}/`, ...(await listing(root, rel)));
    else out.push(rel);
  }
  return out.sort();
}

async function magic(file: string): Promise<string> {
  return (await readFile(file)).subarray(0, 6).toString('hex');
}

const GZIP = /^1f8b/;
const XZ = /^fd377a585a00/;
const ZSTD = /^28b52ffd/;

describe('rootcast export -o', () => {
  let dir: string;
  let store: string;
  let cases = 0;
  /** A new empty directory for one case. */
  const place = async (): Promise<string> => {
    const p = join(dir, `case-${++cases}`);
    await mkdir(p);
    return p;
  };
  const cli = (args: string[], cwd?: string) =>
    runCli(['export', ...args, '--store', store], cwd ? { cwd } : {});

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-export-output-'));
    store = join(dir, 'store');
    await commitLayered(store);
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses an existing directory for the formats that write a file, before any work', async () => {
    const p = await place();
    const out = join(p, 'existing');
    await mkdir(out);
    await writeFile(join(out, 'keep'), 'kept\n');
    await symlink('existing', join(p, 'link'));
    for (const format of ['tar', 'oci-archive', 'incus']) {
      for (const target of [out, `${out}/`, join(p, 'link')]) {
        await expect(exportTemplate('child:1.0', format, target, { store })).rejects.toMatchObject({
          code: 'EXPORT_OUTPUT_IS_DIRECTORY',
          exitCode: 2,
        });
        await expect(exportTemplate('missing:9', format, target, { store })).rejects.toMatchObject({
          code: 'EXPORT_OUTPUT_IS_DIRECTORY',
        });
      }
    }
    expect(await listing(p)).toEqual(['existing/', 'existing/keep', 'link']);

    const shown = await cli(['child:1.0', '--format', 'tar', '-o', out]);
    expect(shown.code).toBe(2);
    const { message, hint } = errorLines(shown);
    expect(message).toContain(`${out} is a directory`);
    expect(hint).toContain(join(out, 'rootfs.tar'));
    expect(await listing(p)).toEqual(['existing/', 'existing/keep', 'link']);
  });

  it("refuses -o '' (the working directory) and -o - (no standard output), writing nothing", async () => {
    const p = await place();
    await writeFile(join(p, 'keep'), 'kept\n');
    for (const output of ['', '-']) {
      for (const format of ['tar', 'openvz', 'oci']) {
        await expect(exportTemplate('missing:9', format, output, { store })).rejects.toMatchObject({
          code: 'EXPORT_OUTPUT_INVALID',
          exitCode: 2,
        });
      }
      const shown = await cli(['child:1.0', '--format', 'tar', '-o', output, '--json'], p);
      expect(shown.code).toBe(2);
      expect(jsonError(shown).code).toBe('EXPORT_OUTPUT_INVALID');
    }
    const dash = errorLines(await cli(['child:1.0', '--format', 'tar', '-o', '-'], p));
    expect(dash.message).toContain('standard output');
    expect(dash.hint).toContain('./-');
    expect(await listing(p)).toEqual(['keep']);
  });

  it('refuses an output under a regular file, for every kind of output', async () => {
    const p = await place();
    await writeFile(join(p, 'afile'), 'a file\n');
    const cases: [string, string][] = [
      ['tar', 'afile/x.tar'],
      ['tar', 'afile/deeper/x.tar'],
      ['lxc', 'afile/lxc'],
      ['oci', 'afile/layout/'],
      ['openvz', 'afile/vz.tar.gz'],
      ['incus', 'afile/incus.tar.gz'],
    ];
    for (const [format, rel] of cases) {
      await expect(exportTemplate('missing:9', format, join(p, rel), { store })).rejects.toMatchObject({
        code: 'EXPORT_OUTPUT_INVALID',
        exitCode: 2,
      });
    }
    const shown = await cli(['child:1.0', '--format', 'tar', '-o', join(p, 'afile/x.tar')]);
    expect(shown.code).toBe(2);
    expect(errorLines(shown).message).toContain(`${join(p, 'afile')} is not a directory`);
    expect(await listing(p)).toEqual(['afile']);
    expect(await readFile(join(p, 'afile'), 'utf8')).toBe('a file\n');
  });

  it('refuses to replace what is not a regular file, and a directory format refuses a file', async () => {
    const p = await place();
    execFileSync('mkfifo', [join(p, 'fifo')]);
    await expect(exportTemplate('missing:9', 'tar', join(p, 'fifo'), { store })).rejects.toMatchObject({
      code: 'EXPORT_OUTPUT_INVALID',
      exitCode: 2,
    });
    expect((await lstat(join(p, 'fifo'))).isFIFO()).toBe(true);
    await writeFile(join(p, 'plain'), 'plain\n');
    await expect(exportTemplate('missing:9', 'lxc', join(p, 'plain'), { store })).rejects.toMatchObject({
      code: 'EXPORT_OUTPUT_EXISTS',
      exitCode: 2,
    });
    await expect(exportTemplate('missing:9', 'openvz', join(p, 'plain/'), { store })).rejects.toMatchObject({
      code: 'EXPORT_OUTPUT_INVALID',
      exitCode: 2,
    });
    // A directory output never replaces a symlink, even one to an empty directory.
    await mkdir(join(p, 'empty'));
    await symlink('empty', join(p, 'to-empty'));
    await expect(exportTemplate('missing:9', 'oci', join(p, 'to-empty'), { store })).rejects.toMatchObject({
      code: 'EXPORT_OUTPUT_EXISTS',
      exitCode: 2,
    });
    expect(await listing(p)).toEqual(['empty/', 'fifo', 'plain', 'to-empty']);
  });

  it('refuses a compression suffix the format cannot write; other suffixes get the default', async () => {
    const p = await place();
    const refused: [string, string][] = [
      ['tar', 'x.tar.bz2'],
      ['tar', 'x.tbz2'],
      ['tar', 'x.tar.lz4'],
      ['tar', 'x.tar.Z'],
      ['openvz', 'vz.tar.bz2'],
      ['openvz', 'vz.tar'],
      ['incus', 'i.tar.lzma'],
      ['oci-archive', 'a.tar.gz'],
      ['oci-archive', 'a.zst'],
    ];
    for (const [format, name] of refused) {
      await expect(exportTemplate('child:1.0', format, join(p, name), { store })).rejects.toMatchObject({
        code: 'EXPORT_COMPRESSION_UNSUPPORTED',
        exitCode: 2,
      });
    }
    const shown = await cli(['child:1.0', '--format', 'tar', '-o', join(p, 'x.tar.bz2')]);
    expect(shown.code).toBe(2);
    const { message, hint } = errorLines(shown);
    expect(message).toContain('bzip2');
    expect(hint).toContain('.tar.gz');
    expect(await listing(p)).toEqual([]);

    await exportTemplate('child:1.0', 'tar', join(p, 'rootfs.img'), { store });
    expect((await readFile(join(p, 'rootfs.img'))).subarray(257, 262).toString()).toBe('ustar');
    await exportTemplate('child:1.0', 'tar', join(p, 'xz.img'), { store, compression: 'xz', level: 0 });
    expect(await magic(join(p, 'xz.img'))).toMatch(XZ);
    const gz = await exportTemplate('child:1.0', 'tar', join(p, 'rootfs.gz'), { store });
    expect(gz.compression).toBe('gzip');
    expect(await magic(join(p, 'rootfs.gz'))).toMatch(GZIP);
    await exportTemplate('child:1.0', 'tar', join(p, 'UPPER.TAR.ZST'), { store });
    expect(await magic(join(p, 'UPPER.TAR.ZST'))).toMatch(ZSTD);
    const vz = await exportTemplate('child:1.0', 'openvz', join(p, 'vz-default'), { store });
    expect(vz.compression).toBe('gzip');
    expect(await magic(join(p, 'vz-default'))).toMatch(GZIP);
    expect(await listing(p)).toEqual(['UPPER.TAR.ZST', 'rootfs.gz', 'rootfs.img', 'vz-default', 'xz.img']);
  });

  it('says which suffix and which --compression conflict, and how to fix it', async () => {
    const p = await place();
    const shown = await cli([
      'child:1.0',
      '--format',
      'tar',
      '-o',
      join(p, 'x.tar'),
      '--compression',
      'gzip',
    ]);
    expect(shown.code).toBe(2);
    const { message, hint } = errorLines(shown);
    expect(message).toContain('x.tar');
    expect(message).toContain('uncompressed');
    expect(message).toContain('--compression gzip');
    expect(message).not.toContain('none');
    expect(hint).toContain('x.tar.gz');
    expect(hint).toContain('drop --compression');
    await expect(
      exportTemplate('child:1.0', 'incus', join(p, 'i.tar.gz'), { store, compression: 'xz' }),
    ).rejects.toMatchObject({ code: 'EXPORT_COMPRESSION_MISMATCH', exitCode: 2, hint: /i\.tar\.xz/ });
    expect(await listing(p)).toEqual([]);
  });

  it('a trailing slash names a directory: refused for a file, created for a directory output', async () => {
    const p = await place();
    await expect(exportTemplate('missing:9', 'tar', join(p, 'newdir/'), { store })).rejects.toMatchObject({
      code: 'EXPORT_OUTPUT_IS_DIRECTORY',
      exitCode: 2,
    });
    const shown = await cli(['child:1.0', '--format', 'incus', '-o', `${join(p, 'newdir')}/`]);
    expect(shown.code).toBe(2);
    expect(errorLines(shown).message).toContain('ends in /');
    expect(await listing(p)).toEqual([]);

    const vz = await exportTemplate('child:1.0', 'openvz', `${join(p, 'vz')}/`, { store, level: 1 });
    expect(vz.output).toBe(join(p, 'vz', 'debian-bookworm-x86_64-minbase.tar.gz'));
    await exportTemplate('child:1.0', 'lxc', `${join(p, 'lxc')}/`, { store, level: 0 });
    expect(await listing(p)).toEqual([
      'lxc/',
      'lxc/meta.tar.xz',
      'lxc/rootfs.tar.xz',
      'vz/',
      'vz/debian-bookworm-x86_64-minbase.tar.gz',
    ]);
  });

  it('creates missing parent directories, and removes them again when the export fails', async () => {
    const p = await place();
    const made = await exportTemplate('child:1.0', 'tar', join(p, 'nodir/sub/a.tar'), { store });
    expect(made.output).toBe(join(p, 'nodir/sub/a.tar'));
    expect(await listing(p)).toEqual(['nodir/', 'nodir/sub/', 'nodir/sub/a.tar']);

    // A corrupt layer blob fails the export after the parents were made.
    const layer = (await readTemplate(store, 'base:1.0')).layers[0]!;
    const blob = storeLayout.blob(store, layer.digest);
    const bytes = await readFile(blob);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 5] = (damaged[damaged.length - 5] ?? 0) ^ 0xff;
    await rm(blob, { force: true });
    await writeFile(blob, damaged);
    try {
      const failing: [string, string, string | undefined][] = [
        ['tar', 'gone/sub/a.tar', undefined],
        ['openvz', 'vz-gone/', undefined],
        ['oci-archive', 'nodir/more/a.tar', 'gzip'],
        ['oci', 'gone/layout', 'gzip'],
      ];
      for (const [format, rel, compression] of failing) {
        await expect(
          exportTemplate('base:1.0', format, join(p, rel), {
            store,
            ...(compression ? { compression } : {}),
          }),
        ).rejects.toMatchObject({ code: 'BLOB_CORRUPT' });
      }
    } finally {
      await rm(blob, { force: true });
      await writeFile(blob, bytes);
    }
    expect(await listing(p)).toEqual(['nodir/', 'nodir/sub/', 'nodir/sub/a.tar']);
  });
});

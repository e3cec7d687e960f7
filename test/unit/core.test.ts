import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src/core/atomic.js';
import { canonicalJson, canonicalJsonPretty } from '../../src/core/canonical-json.js';
import { digestHex, sha256Digest, sha256File } from '../../src/core/digest.js';
import { inputError, RootcastError } from '../../src/core/errors.js';

describe('canonical JSON', () => {
  it('sorts keys at every depth and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });
  it('gives equal bytes for equal values built in different orders', () => {
    const one = { name: 'x', packages: [{ version: '1', name: 'a' }] };
    const two = { packages: [{ name: 'a', version: '1' }], name: 'x' };
    expect(canonicalJsonPretty(one)).toBe(canonicalJsonPretty(two));
    expect(canonicalJsonPretty(one).endsWith('}\n')).toBe(true);
  });
  it('refuses values JSON cannot hold exactly', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/NaN at \$\.a/);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(/function/);
  });
});

describe('digests', () => {
  it('hashes bytes and files alike', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    try {
      await writeFile(join(dir, 'f'), 'abc');
      const file = await sha256File(join(dir, 'f'));
      expect(file).toEqual({
        hex: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
        size: 3,
      });
      expect(sha256Digest('abc')).toBe(`sha256:${file.hex}`);
      expect(digestHex(sha256Digest('abc'))).toBe(file.hex);
      expect(() => digestHex('sha256:xyz')).toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('atomic writes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  it('replaces the whole file and leaves no temporary behind', async () => {
    const target = join(dir, 'sub', 'file.json');
    await writeFileAtomic(target, 'one');
    await writeFileAtomic(target, 'two');
    expect(await readFile(target, 'utf8')).toBe('two');
    expect(await readdir(join(dir, 'sub'))).toEqual(['file.json']);
  });
  it('leaves the old file when the write fails', async () => {
    const target = join(dir, 'file');
    await writeFileAtomic(target, 'old');
    // A directory where the temporary file's parent should be makes open fail.
    await expect(writeFileAtomic(join(target, 'child'), 'new')).rejects.toThrow();
    expect(await readFile(target, 'utf8')).toBe('old');
  });
});

describe('errors', () => {
  it('carry code, hint and exit code', () => {
    const error = inputError('RECIPE_YAML', 'bad', 'fix it');
    expect(error).toBeInstanceOf(RootcastError);
    expect([error.code, error.hint, error.exitCode]).toEqual(['RECIPE_YAML', 'fix it', 2]);
    expect(new RootcastError({ code: 'X', message: 'm', hint: 'h' }).exitCode).toBe(1);
  });
});

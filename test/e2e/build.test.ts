import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInSandbox } from '../../src/assemble/sandbox.js';
import { runCli } from '../helpers/cli.js';
import { documentedFields, expectDocumented } from '../helpers/json-docs.js';

const exec = promisify(execFile);

interface BuildJson {
  template: string;
  digest: string;
  layers: { digest: string; diffId: string; size: number }[];
  cached: boolean;
  packages: number;
}

/**
 * The main job, as a user runs it: build each shipped recipe, export the tree, and check in
 * the exported tree (chrooted, in the sandbox) that it is a correctly installed Debian system.
 */
describe.each([
  ['debian-12-minbase', 'bookworm'],
  ['debian-13-minbase', 'trixie'],
])('rootcast build %s', (name, release) => {
  let dir: string;
  let recipe: string;
  let store: string;
  let built: BuildJson;
  let tree: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `rootcast-build-${release}-`));
    recipe = join(dir, `${name}.yaml`);
    store = join(dir, 'store');
    await copyFile(new URL(`../../recipes/${name}.yaml`, import.meta.url), recipe);
    const result = await runCli(['build', recipe, '--store', store, '--json']);
    if (result.code !== 0) throw new Error(`build failed:\n${result.stderr}`);
    built = JSON.parse(result.stdout) as BuildJson;
    const tar = join(dir, 'tree.tar');
    const exported = await runCli(['export', `${name}:1.0`, '--format', 'tar', '-o', tar, '--store', store]);
    if (exported.code !== 0) throw new Error(`export failed:\n${exported.stderr}`);
    tree = join(dir, 'tree');
    await mkdir(tree);
    await exec('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tar, '-C', tree]);
  }, 600_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('commits a tagged template with one zstd layer', async () => {
    expect(built.template).toBe(`${name}:1.0`);
    expect(built.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(built.layers).toHaveLength(1);
    expect(built.cached).toBe(false);
    const ls = JSON.parse((await runCli(['ls', '--store', store, '--json'])).stdout) as {
      template: string;
      digest: string;
    }[];
    expect(ls).toEqual([
      { template: `${name}:1.0`, digest: built.digest },
      { template: `${name}:latest`, digest: built.digest },
    ]);
    const inspect = JSON.parse(
      (await runCli(['inspect', `${name}:1.0`, '--store', store, '--json'])).stdout,
    ) as {
      packages: unknown[];
      architecture: string;
    };
    expect(inspect.packages).toHaveLength(built.packages);
    expect(inspect.architecture).toBe('amd64');
    // The --json shapes are what docs/json.md says they are.
    expectDocumented(built, documentedFields('build'));
    expectDocumented(inspect, documentedFields('inspect'));
    for (const row of ls) expectDocumented(row, documentedFields('ls'));
    const all = JSON.parse((await runCli(['ls', '--all', '--store', store, '--json'])).stdout) as object[];
    const withHistory = documentedFields('ls', 1);
    const plain = documentedFields('ls');
    for (const row of all)
      expectDocumented(row, { required: [...plain.required, ...withHistory.required], optional: [] });
  });

  it('passes dpkg --audit, has every package installed, and apt-get check passes', async () => {
    const audit = await runInSandbox(tree, ['dpkg', '--audit']);
    expect(audit.code).toBe(0);
    expect(audit.stdout + audit.stderr).toBe('');
    // dpkg-query's own format syntax, not a template literal.
    const format = '-f=$' + '{db:Status-Abbrev}|$' + '{Package}\n';
    const status = await runInSandbox(tree, ['dpkg-query', '-W', format]);
    const lines = status.stdout.trim().split('\n');
    expect(lines).toHaveLength(built.packages);
    expect(lines.filter((l) => !l.startsWith('ii |'))).toEqual([]);
    const check = await runInSandbox(tree, ['apt-get', 'check']);
    expect(check.code, check.stderr).toBe(0);
  });

  it('carries an SPDX SBOM listing exactly the packages dpkg-query lists', async () => {
    const sbom = await runCli(['inspect', '--sbom', `${name}:1.0`, '--store', store]);
    expect(sbom.code, sbom.stderr).toBe(0);
    const doc = JSON.parse(sbom.stdout) as {
      spdxVersion: string;
      packages: { name: string; versionInfo: string }[];
    };
    expect(doc.spdxVersion).toBe('SPDX-2.3');
    const format = '-f=$' + '{Package} $' + '{Version}\n';
    const listed = await runInSandbox(tree, ['dpkg-query', '-W', format]);
    const fromDpkg = listed.stdout.trim().split('\n').sort();
    expect(doc.packages.map((p) => `${p.name} ${p.versionInfo}`).sort()).toEqual(fromDpkg);
  });

  it('installs and runs hello from the network', async () => {
    const result = await runInSandbox(
      tree,
      ['/bin/sh', '-c', 'apt-get update -qq && apt-get install -y -qq hello >/dev/null && hello'],
      { network: true },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n').at(-1)).toBe('Hello, world!');
  });

  it('answers an unchanged build from the cache, and --rebuild gives the same digest', async () => {
    const again = JSON.parse(
      (await runCli(['build', recipe, '--store', store, '--json'])).stdout,
    ) as BuildJson;
    expect(again).toMatchObject({ cached: true, digest: built.digest });
    const rebuilt = JSON.parse(
      (await runCli(['build', '--rebuild', recipe, '--store', store, '--json'])).stdout,
    ) as BuildJson;
    expect(rebuilt).toMatchObject({ cached: false, digest: built.digest });
  });

  it('gives the same manifest digest when built into another empty store', async () => {
    const other = join(dir, 'store2');
    const result = await runCli(['build', recipe, '--store', other, '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as BuildJson).digest).toBe(built.digest);
  });
});

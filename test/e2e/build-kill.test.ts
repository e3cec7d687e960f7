import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/digest.js';
import { checkStore } from '../../src/store/clean.js';
import { CLI, runCli } from '../helpers/cli.js';

/**
 * Killing a build at any moment (SIGKILL: no chance to clean up) leaves no template, tag or
 * half-written blob visible, no sandbox process behind, and the next build succeeds.
 */
describe('a build killed at any moment', () => {
  let dir: string;
  let recipe: string;
  let store: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-kill-'));
    recipe = join(dir, 'minbase.yaml');
    store = join(dir, 'store');
    await copyFile(new URL('../../recipes/debian-12-minbase.yaml', import.meta.url), recipe);
    const fetched = await runCli(['fetch', recipe, '--store', store]);
    if (fetched.code !== 0) throw new Error(fetched.stderr);
  }, 300_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Each kill waits for the build to announce a phase (`-v` prints `<phase>…`), then lets it
  // run a moment into it, so every phase is hit whatever the machine's speed. (Clamping
  // mtimes happens inside `commit`, while the tree is archived.)
  it.each(['fetch', 'unpack', 'configure', 'cleanup', 'commit'])('SIGKILL during %s', async (target) => {
    // Downloads run beside the assembly: with an empty package cache the kill lands among them.
    if (target === 'fetch') await rm(join(store, 'packages'), { recursive: true, force: true });
    const child = spawn(process.execPath, [CLI, 'build', '--rebuild', recipe, '--store', store, '-v'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const reached = new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes(`${target}…`)) resolve();
      });
      void exited.then(() => resolve());
    });
    await reached;
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    const code = await exited;
    expect(log, 'the build ended before the kill').toContain(`${target}…`);
    expect(code).toBeNull();

    // Nothing half-done is visible: either no tag, or (a kill after the index was written)
    // `1.0` and `latest` both naming one complete manifest, which checkStore then verifies.
    const index = await readFile(join(store, 'index.json'), 'utf8').catch(() => '{"manifests":[]}');
    const entries = (JSON.parse(index) as { manifests: { digest: string }[] }).manifests;
    expect(new Set(entries.map((e) => e.digest)).size).toBeLessThanOrEqual(1);
    // Every visible blob verifies; leftovers are only temporaries that the next run removes.
    const { problems } = await checkStore(store, { verifyBlobs: true });
    expect(problems).toEqual([]);
    // …and so does every visible package in the cache (downloads appear only verified).
    const cached = join(store, 'packages', 'sha256');
    for (const name of await readdir(cached).catch(() => [] as string[])) {
      if (name.startsWith('.tmp-')) continue;
      expect(sha256Hex(await readFile(join(cached, name)))).toBe(name);
    }
    // No sandbox survived its build. The parent-death signals take a moment to land: poll.
    const sandboxes = async () => {
      const ps = await new Promise<string>((resolve) => {
        const p = spawn('ps', ['-eo', 'args'], { stdio: ['ignore', 'pipe', 'ignore'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        p.on('close', () => resolve(out));
      });
      return ps.split('\n').filter((l) => l.includes(store) && l.includes('unshare'));
    };
    for (let i = 0; i < 100 && (await sandboxes()).length > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(await sandboxes()).toEqual([]);
  });

  // Ctrl-C and SIGTERM are not SIGKILL: the build unwinds, removes what it had started, and
  // then dies by the same signal (so a shell running it stops its script too).
  it.each([
    ['SIGINT', 'fetch'],
    ['SIGINT', 'configure'],
    ['SIGTERM', 'unpack'],
  ] as const)(
    '%s during %s stops the build, removes its temporaries and dies by the signal',
    async (signal, target) => {
      if (target === 'fetch') await rm(join(store, 'packages'), { recursive: true, force: true });
      const child = spawn(
        process.execPath,
        [CLI, 'build', '--rebuild', recipe, '--store', store, '-v', '--json'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let log = '';
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      const exited = new Promise<{ code: number | null; by: NodeJS.Signals | null }>((resolve) =>
        child.on('close', (code, by) => resolve({ code, by })),
      );
      await new Promise<void>((resolve) => {
        child.stderr.on('data', (d: Buffer) => {
          log += d.toString();
          if (log.includes(`${target}…`)) resolve();
        });
        void exited.then(() => resolve());
      });
      await new Promise((r) => setTimeout(r, 150));
      child.kill(signal);
      const end = await exited;
      expect(log, 'the build ended before the signal').toContain(`${target}…`);
      expect(end, log).toEqual({ code: null, by: signal });
      expect(JSON.parse(stdout)).toMatchObject({
        error: { code: 'ABORTED', message: `interrupted by ${signal}` },
      });
      // Unlike after SIGKILL, nothing is left for the next build to clean.
      expect(await readdir(join(store, 'tmp')).catch(() => [])).toEqual([]);
      expect(await readdir(join(store, 'ingest')).catch(() => [])).toEqual([]);
      const cached = await readdir(join(store, 'packages', 'sha256')).catch(() => [] as string[]);
      expect(cached.filter((n) => n.startsWith('.tmp-'))).toEqual([]);
      expect((await checkStore(store, { verifyBlobs: true })).problems).toEqual([]);
    },
  );

  it('builds successfully after all the kills, leaving no temporaries', async () => {
    const result = await runCli(['build', '--rebuild', recipe, '--store', store, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const ls = JSON.parse((await runCli(['ls', '--store', store, '--json'])).stdout) as {
      template: string;
    }[];
    expect(ls.map((t) => t.template)).toEqual(['debian-12-minbase:1.0', 'debian-12-minbase:latest']);
    expect((await checkStore(store, { verifyBlobs: true })).problems).toEqual([]);
    expect(await readdir(join(store, 'tmp')).catch(() => [])).toEqual([]);
    expect(await readdir(join(store, 'ingest')).catch(() => [])).toEqual([]);
  });
});

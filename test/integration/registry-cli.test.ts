import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, errorLines, runProcess } from '../helpers/cli.js';
import { commitBase, type RunningRegistry, startRegistry } from './registry-fixtures.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Runs `push`/`pull` from the compiled `dist/cli/registry.js`, registered on a program the
 * way main.ts registers every verb (so this runs before main.ts wires them in).
 */
function runRegistryCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const script = `
    import { Command, CommanderError } from 'commander';
    import { registerRegistryVerbs } from './dist/cli/registry.js';
    const program = new Command('rootcast').exitOverride();
    let code = 0;
    registerRegistryVerbs(program, (c) => { code = c; });
    try { await program.parseAsync(process.argv); } catch (e) { code = e instanceof CommanderError ? 2 : 1; }
    process.exitCode = code;`;
  return runProcess(process.execPath, ['--input-type=module', '-e', script, 'rootcast', ...args], {
    cwd: ROOT,
    env: { ...process.env, HOME: '/nonexistent', ...env },
  });
}

describe('rootcast push / pull on the command line', () => {
  let dir: string;
  let store: string;
  let registry: RunningRegistry;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-'));
    store = join(dir, 'store');
    registry = await startRegistry(join(dir, 'registry'));
    await commitBase(store);
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('prints the push summary as JSON', async () => {
    const result = await runRegistryCli([
      'push',
      'base:1.0',
      `${registry.host}/cli/base`,
      '--insecure',
      '--json',
      '--store',
      store,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({
      pushed: 4,
      skipped: 0,
      mounted: 0,
      ref: `${registry.host}/cli/base:1.0`,
    });
    expect(summary.bytes).toBeGreaterThan(0);
  });

  it('prints the pull summary as JSON and tags with --tag', async () => {
    const target = join(dir, 'pulled');
    const result = await runRegistryCli([
      'pull',
      `${registry.host}/cli/base:1.0`,
      '--tag',
      'mine:2',
      '--insecure',
      '--json',
      '--store',
      target,
    ]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ template: 'mine:2', pulled: 4, skipped: 0 });
  });

  it('exits 2 with a two-line error for a bad reference or --insecure to a remote host', async () => {
    const bad = await runRegistryCli(['pull', 'no-host-here', '--store', store]);
    expect(bad.code).toBe(2);
    expect(errorLines(bad).message).toMatch(/names no registry host/);
    const remote = await runRegistryCli([
      'push',
      'base:1.0',
      'registry.invalid/x',
      '--insecure',
      '--store',
      store,
    ]);
    expect(remote.code).toBe(2);
    expect(errorLines(remote).message).toMatch(/only localhost, 127.0.0.1 and ::1/);
  });

  it('exits 1 with a JSON error when nothing listens', async () => {
    const result = await runRegistryCli([
      'pull',
      '127.0.0.1:9/x/y:1',
      '--insecure',
      '--json',
      '--store',
      store,
    ]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: { code: 'REGISTRY_UNREACHABLE' } });
  });
});

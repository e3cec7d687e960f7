import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tagTemplate } from '../../src/api/tags.js';
import type { CommitTemplateResult } from '../../src/store/templates.js';
import { errorLines, runCli } from '../helpers/cli.js';
import { commitSmall, lockText, writeContainerSync } from './maintenance-fixtures.js';

/** Audit findings on the command line: history, rmi, tag, gc, diff and push messages and side effects. */
describe('history, rmi, tag, gc, diff and push on the command line', () => {
  let dir: string;
  let store: string;
  let old: CommitTemplateResult;
  let current: CommitTemplateResult;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rootcast-cli-audit-'));
    store = join(dir, 'store');
    old = await commitSmall(store, 'mb', { 'etc/a': 'a' }, lockText('mb', {}));
    current = await commitSmall(store, 'next', { 'etc/a': 'b' }, lockText('mb', {}));
    // mb:1.0 moves on: the first manifest is an untagged history entry.
    await tagTemplate('next:1.0', 'mb:1.0', { force: true }, { store });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('history takes name:version and digests; a bad name is TEMPLATE_NAME_INVALID', async () => {
    const byName = await runCli(['history', 'mb', '--store', store]);
    expect(byName.code, byName.stderr).toBe(0);
    for (const ref of ['mb:1.0', old.manifestDigest]) {
      const result = await runCli(['history', ref, '--store', store]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe(byName.stdout);
    }
    expect(byName.stdout).toContain(`${old.manifestDigest}  (was mb:1.0)`);
    const bad = await runCli(['history', 'Bad', '--store', store, '--json']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ error: { code: 'TEMPLATE_NAME_INVALID' } });
  });

  it('rmi, tag and gc on a store that does not exist create nothing', async () => {
    const typo = join(dir, 'x', 'typo');
    const rmi = await runCli(['rmi', 'a:1', '--store', typo]);
    expect(rmi.code).toBe(2);
    expect(errorLines(rmi).message).toMatch(/no template a:1/);
    const tag = await runCli(['tag', 'a:1', 'b:1', '--store', typo]);
    expect(tag.code).toBe(2);
    const gc = await runCli(['gc', '--store', typo, '--json']);
    expect(gc.code, gc.stderr).toBe(0);
    expect(JSON.parse(gc.stdout)).toMatchObject({ removed: [], bytesFreed: 0 });
    const dry = await runCli(['gc', '--dry-run', '--store', typo]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/would remove 0 items/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });

  it('gc --dry suggests --dry-run and does nothing', async () => {
    const result = await runCli(['gc', '--dry', '--store', store]);
    expect(result.code).toBe(2);
    const { message, hint } = errorLines(result);
    expect(message).toMatch(/unknown option '--dry'/);
    expect(hint).toMatch(/Did you mean --dry-run\?/);
    expect(existsSync(join(store, 'locks', 'gc.lock'))).toBe(false);
    const help = await runCli(['gc', '--help']);
    expect(help.stdout).not.toMatch(/--dry\b(?!-)/);
  });

  it('tag onto an existing tag hints at --force', async () => {
    const result = await runCli(['tag', old.manifestDigest, 'next:1.0', '--store', store]);
    expect(result.code).toBe(2);
    const { hint } = errorLines(result);
    expect(hint).toMatch(/--force/);
    expect(hint).not.toMatch(/--replace|recipe/);
  });

  it('diff names a digest once when no tag names it', async () => {
    const result = await runCli(['diff', old.manifestDigest, 'next:1.0', '--store', store]);
    expect(result.code, result.stderr).toBe(0);
    const [minus, plus] = result.stdout.split('\n');
    expect(minus).toBe(`--- ${old.manifestDigest}`);
    expect(plus).toBe(`+++ next:1.0 ${current.manifestDigest}`);
    const reverse = await runCli(['diff', 'next:1.0', old.manifestDigest, '--store', store]);
    expect(reverse.stdout.split('\n')[1]).toBe(`+++ ${old.manifestDigest}`);
  });

  it('rmi of a template a container uses names its digest once', async () => {
    const solo = await commitSmall(store, 'solo', { 'etc/solo': 's' }, lockText('solo', {}));
    const container = async (name: string, template: CommitTemplateResult) =>
      writeContainerSync(store, name, template);
    await container('c1', current);
    await container('c2', old);
    await container('c3', solo);
    try {
      const byDigest = await runCli(['rmi', current.manifestDigest, '--store', store]);
      expect(byDigest.code).toBe(2);
      expect(errorLines(byDigest).message).toBe(`${current.manifestDigest} is used by container(s) c1`);
      const byTag = await runCli(['rmi', 'solo:1.0', '--store', store]);
      expect(byTag.code).toBe(2);
      expect(errorLines(byTag).message).toBe(`solo:1.0 (${solo.manifestDigest}) is used by container(s) c3`);
      // mb:1.0's history entry (old) would go with the tag.
      const history = await runCli(['rmi', 'mb:1.0', '--store', store]);
      expect(history.code).toBe(2);
      expect(errorLines(history).message).toBe(
        `removing mb:1.0 would also remove ${old.manifestDigest} (was mb:1.0), which container(s) c2 use`,
      );
    } finally {
      await rm(join(store, 'containers'), { recursive: true, force: true });
    }
  });

  it('push to a port outside 1-65535 is REGISTRY_REF_INVALID (exit 2), before any connection', async () => {
    for (const ref of ['127.0.0.1:99999/lab/minbase', '127.0.0.1:0/lab/minbase']) {
      const result = await runCli(['push', 'mb:1.0', ref, '--insecure', '--store', store, '--json']);
      expect(result.code).toBe(2);
      expect(JSON.parse(result.stdout)).toMatchObject({ error: { code: 'REGISTRY_REF_INVALID' } });
    }
    const pull = await runCli(['pull', '127.0.0.1:99999/lab/minbase:1', '--insecure', '--store', store]);
    expect(pull.code).toBe(2);
    expect(errorLines(pull).message).toMatch(/port 99999/);
  });
});

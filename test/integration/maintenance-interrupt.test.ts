import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { diffTemplates } from '../../src/api/diff.js';
import { checkStoreIntegrity, collectGarbage, containersUsing } from '../../src/api/maintenance.js';
import { RootcastError } from '../../src/core/errors.js';
import { templatesInUse } from '../../src/runtime/record.js';
import { fsckStore } from '../../src/store/fsck.js';
import { gcStore } from '../../src/store/gc.js';
import { updateIndex } from '../../src/store/layout.js';
import { acquireLock, storeLockPath } from '../../src/store/lock.js';
import { ANNOTATION } from '../../src/store/oci.js';
import { storeLayout } from '../../src/store/paths.js';
import type { CommitTemplateResult } from '../../src/store/templates.js';
import { CLI } from '../helpers/cli.js';
import { commitSmall, lockText } from './maintenance-fixtures.js';

/** The reason the CLI aborts with on Ctrl-C (src/cli/interrupt.ts). */
function aborted(): RootcastError {
  return new RootcastError({ code: 'ABORTED', message: 'interrupted by SIGINT', hint: 'run it again' });
}

/** Waits until `condition` holds, polling; fails naming what it waited for after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A hex signal mask line (`SigCgt:`, `ShdPnd:`, …) of /proc/<pid>/status or a thread's, as a bigint. */
function maskOf(status: string, field: string): bigint {
  const hex = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1];
  if (hex === undefined) throw new Error(`no ${field} in /proc status`);
  return BigInt(`0x${hex}`);
}

function bitOf(signal: NodeJS.Signals): bigint {
  return 1n << BigInt((osConstants.signals[signal] ?? 0) - 1);
}

/** Whether process `pid` has a handler for `signal` (Node installs one when JS listens for it). */
function signalCaught(pid: number, signal: NodeJS.Signals): boolean {
  return (maskOf(readFileSync(`/proc/${pid}/status`, 'utf8'), 'SigCgt') & bitOf(signal)) !== 0n;
}

/** Whether `signal` is still pending for `pid`, process-wide or in any of its threads. */
function signalPending(pid: number, signal: NodeJS.Signals): boolean {
  const bit = bitOf(signal);
  if ((maskOf(readFileSync(`/proc/${pid}/status`, 'utf8'), 'ShdPnd') & bit) !== 0n) return true;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
    } catch {
      continue; // the thread ended since readdir
    }
    if ((maskOf(status, 'SigPnd') & bit) !== 0n) return true;
  }
  return false;
}

/** Ctrl-C: gc, fsck and diff stop with the signal's reason instead of running to the end. */
describe('gc, fsck and diff stop when their signal is aborted', () => {
  let store: string;
  let a: CommitTemplateResult;
  let b: CommitTemplateResult;
  beforeEach(async () => {
    store = join(await mkdtemp(join(tmpdir(), 'rootcast-')), 'store');
    a = await commitSmall(store, 'a', { 'etc/a': 'a\n', 'etc/same': 'x' }, lockText('a', {}));
    b = await commitSmall(store, 'b', { 'etc/b': 'b\n', 'etc/same': 'y' }, lockText('b', {}));
  });
  afterEach(async () => {
    await rm(join(store, '..'), { recursive: true, force: true });
  });

  const untagB = () =>
    updateIndex(store, (index) => ({
      ...index,
      manifests: index.manifests.filter((d) => d.annotations?.[ANNOTATION.refName] !== 'b:1.0'),
    }));

  it('gc aborted before it starts removes nothing', async () => {
    await untagB();
    const before = await readdir(storeLayout.blobs(store));
    const controller = new AbortController();
    controller.abort(aborted());
    await expect(gcStore(store, { templatesInUse, signal: controller.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    await expect(collectGarbage({ store, signal: controller.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(await readdir(storeLayout.blobs(store))).toEqual(before);
  });

  it('gc aborted while it marks stops before the first removal; the next gc collects everything', async () => {
    await untagB();
    const before = await readdir(storeLayout.blobs(store));
    const controller = new AbortController();
    // templatesInUse runs at the end of the mark, under the locks: Ctrl-C arrives there.
    const interrupted = (s: string) => {
      controller.abort(aborted());
      return templatesInUse(s);
    };
    await expect(
      gcStore(store, { templatesInUse: interrupted, signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await readdir(storeLayout.blobs(store))).toEqual(before);
    expect(existsSync(storeLayout.layer(store, b.layers[0]!.diffId))).toBe(true);
    // The locks were released: the next gc runs, and removes b.
    const report = await gcStore(store, { templatesInUse });
    expect(report.removed.map((r) => r.kind)).toEqual(['blob', 'blob', 'blob', 'blob', 'layer']);
    expect(existsSync(storeLayout.blob(store, a.manifestDigest))).toBe(true);
  });

  it('rootcast gc stops on Ctrl-C and reports ABORTED, removing nothing after the signal', async () => {
    await untagB();
    const garbage = storeLayout.blob(store, b.manifestDigest);
    // Hold the store lock, so gc waits for it after taking gc.lock: Ctrl-C arrives there.
    const storeLock = await acquireLock(storeLockPath(store));
    const child = spawn(process.execPath, [CLI, 'gc', '--store', store], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, signal) => resolve({ code, signal })),
    );
    try {
      // gc writes its pid into gc.lock once it holds it; then it waits for the store lock.
      const gcLock = storeLayout.lock(store, 'gc');
      await waitFor('gc to hold locks/gc.lock', async () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`gc ended early: ${stderr}`);
        return (await readFile(gcLock, 'utf8').catch(() => '')).trim() === String(child.pid);
      });
      await waitFor('the SIGINT handler to be installed', () => signalCaught(child.pid!, 'SIGINT'));
      child.kill('SIGINT');
      // Delivered (no longer pending) means Node's handler has queued it for the event loop,
      // while gc still waits for the store lock we hold: the abort is seen long before gc,
      // once it has the lock, reads the index and reaches its first removal.
      await waitFor('SIGINT to be delivered', () => !signalPending(child.pid!, 'SIGINT'));
    } finally {
      await storeLock.release();
    }
    const { code, signal } = await ended;
    // The CLI unwinds, then dies by the signal it got (so a shell stops a script).
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGINT' });
    expect(stderr).toMatch(/interrupted by SIGINT/);
    expect(existsSync(garbage)).toBe(true);
  });

  it('fsck and fsck --repair aborted remove nothing', async () => {
    const blob = storeLayout.blob(store, a.layers[0]!.digest);
    await chmod(blob, 0o644);
    const bytes = await readFile(blob);
    bytes[10] = (bytes[10] ?? 0) ^ 0xff;
    await writeFile(blob, bytes);
    const controller = new AbortController();
    const interrupted = (s: string) => {
      controller.abort(aborted());
      return containersUsing(s);
    };
    await expect(
      fsckStore(store, { repair: true, containersUsing: interrupted, signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'ABORTED' });
    expect(existsSync(blob)).toBe(true);
    await expect(
      checkStoreIntegrity({ store, repair: true, signal: controller.signal }),
    ).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(existsSync(blob)).toBe(true);
    // Not aborted, the same repair removes it.
    expect((await fsckStore(store, { repair: true, containersUsing })).removed).toEqual([blob]);
  });

  it('diff aborted before it starts, or while it runs, fails with the reason', async () => {
    const controller = new AbortController();
    const running = diffTemplates('a:1.0', 'b:1.0', { store, signal: controller.signal });
    controller.abort(aborted());
    await expect(running).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(diffTemplates('a:1.0', 'b:1.0', { store, signal: controller.signal })).rejects.toMatchObject(
      {
        code: 'ABORTED',
      },
    );
    // Not aborted, it runs to the end.
    const diff = await diffTemplates('a:1.0', 'b:1.0', { store, signal: new AbortController().signal });
    expect(diff.files.changed.map((f) => f.path)).toEqual(['/etc/same']);
  });
});

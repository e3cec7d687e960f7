import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { describeError } from '../core/errors.js';
import { type Reporter, silentReporter } from '../core/reporter.js';
import { MEMBER_CACHE_LEVEL, type PendingMemberCache, temporaryBeside } from './member-cache.js';

/**
 * Finishing the member cache in the background: the raw members an unpack left
 * (`UnpackOptions.deferMemberCache`) are compressed into `packages/members/` by one worker
 * thread, one at a time, while the build configures the tree — a phase that keeps one core
 * busy and leaves the other idle, where the unpack before it had both cores decoding xz
 * (zstd there cost the unpack ≈0.2 s of its wall time on two cores).
 *
 * Lifecycle: `add` queues raw members (the compressor then owns their files); `start`
 * begins; `finish` resolves once every queued member is in the cache (or was dropped: a
 * failure is logged and only costs the next rebuild an xz decode, never the build);
 * `cancel` stops the worker and removes every raw file and temporary not yet renamed. After
 * `finish` or `cancel`, nothing of the compressor runs or is left on disk but finished copies.
 */
export class MemberCacheCompressor {
  private readonly queue: PendingMemberCache[] = [];
  private worker: Worker | undefined;
  private running: Promise<void> | undefined;
  private current: { item: PendingMemberCache; temp: string } | undefined;
  private cancelled = false;
  private spawnFailed = false;

  constructor(private readonly reporter: Reporter = silentReporter) {}

  add(item: PendingMemberCache): void {
    this.queue.push(item);
  }

  start(): void {
    this.running ??= this.drain();
  }

  async finish(): Promise<void> {
    this.start();
    await this.running;
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.worker?.terminate();
    const left = [...this.queue.splice(0), ...(this.current ? [this.current.item] : [])];
    const temp = this.current?.temp;
    await Promise.all([
      ...left.map((item) => rm(item.raw, { force: true })),
      ...(temp ? [rm(temp, { force: true })] : []),
    ]);
    await this.running?.catch(() => undefined);
  }

  private async drain(): Promise<void> {
    while (!this.cancelled) {
      const item = this.queue.shift();
      if (item === undefined) break;
      const temp = temporaryBeside(item.path);
      this.current = { item, temp };
      try {
        await this.compress({ raw: item.raw, temp, path: item.path });
      } catch (error) {
        if (this.cancelled) break;
        this.reporter.log('warn', `member cache: ${item.path} not written (${describeError(error)})`);
        // The cache is optional: nothing here may fail a build that has already committed.
        await Promise.all([rm(item.raw, { force: true }), rm(temp, { force: true })]).catch(() => undefined);
        if (this.spawnFailed) {
          // Without a thread nothing else will be compressed either: drop the rest at once.
          const rest = this.queue.splice(0);
          await Promise.all(rest.map((r) => rm(r.raw, { force: true }))).catch(() => undefined);
          break;
        }
      }
      this.current = undefined;
    }
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private compress(job: { raw: string; temp: string; path: string }): Promise<void> {
    const worker = this.spawn();
    return new Promise((resolve, reject) => {
      const onMessage = (reply: { error?: string }) => {
        cleanup();
        if (reply.error === undefined) resolve();
        else reject(new Error(reply.error));
      };
      const onExit = (code: number) => {
        cleanup();
        this.worker = undefined;
        reject(new Error(`compression thread exited with code ${code}`));
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('exit', onExit);
      worker.postMessage(job);
    });
  }

  private spawn(): Worker {
    if (this.worker) return this.worker;
    try {
      const bindingPath = createRequire(import.meta.url).resolve('zstd-napi/binding');
      this.worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { bindingPath, level: MEMBER_CACHE_LEVEL },
      });
    } catch (error) {
      this.spawnFailed = true;
      throw error;
    }
    // A build never waits on an idle compressor to exit.
    this.worker.unref();
    this.worker.on('error', () => {});
    return this.worker;
  }
}

// CommonJS evaluated in the worker (no build step: vitest runs the TypeScript sources). Reads
// the raw member in slices, writes a checksummed zstd frame to the temporary, renames it into
// place and removes the raw file; replies `{}` or `{ error }`.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const binding = require(workerData.bindingPath);
const SLICE = 1 << 20;
parentPort.on('message', ({ raw, temp, path }) => {
  let input, output;
  try {
    const cctx = new binding.CCtx();
    cctx.setParameter(binding.CParameter.compressionLevel, workerData.level);
    cctx.setParameter(binding.CParameter.checksumFlag, 1);
    const out = Buffer.allocUnsafe(binding.cStreamOutSize());
    const slice = Buffer.allocUnsafe(SLICE);
    input = fs.openSync(raw, 'r');
    output = fs.openSync(temp, 'wx', 0o644);
    const put = (n) => { for (let o = 0; o < n; ) o += fs.writeSync(output, out, o, n - o); };
    for (;;) {
      const read = fs.readSync(input, slice, 0, SLICE, null);
      const end = read === 0;
      let src = slice.subarray(0, read);
      const op = end ? binding.EndDirective.end : binding.EndDirective.continue;
      for (;;) {
        const [remaining, written, consumed] = cctx.compressStream2(out, src, op);
        if (written > 0) put(written);
        src = src.subarray(consumed);
        if (end ? remaining === 0 : src.length === 0 && written < out.length) break;
      }
      if (end) break;
    }
    fs.closeSync(output);
    output = undefined;
    fs.renameSync(temp, path);
    fs.closeSync(input);
    input = undefined;
    fs.rmSync(raw, { force: true });
    parentPort.postMessage({});
  } catch (error) {
    if (output !== undefined) fs.closeSync(output);
    if (input !== undefined) fs.closeSync(input);
    parentPort.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
});
`;

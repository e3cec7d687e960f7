import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';

/** Indexes at least this large (compressed) are decoded by an `xz` process when there is one. */
export const XZ_PROCESS_MIN = 1 << 20;

/**
 * An `xz -dc` process decoding a stream fed piece by piece, on another core, while this
 * thread consumes what it has produced.
 *
 * Lifecycle: `start` spawns it (undefined when no `xz` can be started: the caller decodes
 * in-process instead); `write` feeds compressed bytes in order (waiting while xz's pipe is
 * full); `end` closes the input and settles once xz has exited and every decoded chunk has
 * gone to `onChunk`; `abort` kills it at any point, and `end` is then never called.
 *
 * Errors never surface from `write`: the first one (an exception of `onChunk`, or xz dying)
 * stops the decoding, later writes are dropped, and `end` throws it — `onChunk`'s error as
 * it is, xz's as a plain Error naming its exit code. So a caller can keep receiving bytes
 * it has not verified yet and decide what a failure means only once it has checked them.
 */
export class XzDecoderProcess {
  private failure: { error: unknown } | undefined;
  private readonly exited: Promise<number>;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    onChunk: (chunk: Buffer) => void,
  ) {
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code ?? -1)));
    child.stdin.on('error', () => {});
    child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (this.failure) return;
      try {
        onChunk(chunk);
      } catch (error) {
        this.failure = { error };
        child.kill('SIGKILL');
      }
    });
  }

  static async start(onChunk: (chunk: Buffer) => void): Promise<XzDecoderProcess | undefined> {
    const child = spawn('xz', ['-dc', '-T1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const started = await new Promise<boolean>((resolve) => {
      child.once('spawn', () => resolve(true));
      child.once('error', () => resolve(false));
    });
    return started ? new XzDecoderProcess(child, onChunk) : undefined;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.failure || this.child.exitCode !== null || this.child.signalCode !== null) return;
    if (this.child.stdin.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.child.stdin.off('drain', done);
        this.child.off('close', done);
        resolve();
      };
      this.child.stdin.once('drain', done);
      this.child.once('close', done);
    });
  }

  async end(): Promise<void> {
    this.child.stdin.end();
    const code = await this.exited;
    if (this.failure) throw this.failure.error;
    if (code !== 0) throw new Error(`xz exited ${code}: ${this.stderr.trim().split('\n')[0] ?? ''}`);
  }

  abort(): void {
    this.failure ??= { error: new Error('xz decoding was aborted') };
    this.child.kill('SIGKILL');
  }
}

/**
 * Streams `data` through `xz -dc`, handing each decoded chunk to `onChunk` as it arrives.
 * False when no `xz` can be started (the caller decodes in-process instead); an error of
 * `onChunk` stops xz and is rethrown as it is; xz failing throws a plain Error (the caller
 * reports it as a broken index).
 */
export async function decodeInXzProcess(data: Buffer, onChunk: (chunk: Buffer) => void): Promise<boolean> {
  const decoder = await XzDecoderProcess.start(onChunk);
  if (decoder === undefined) return false;
  await decoder.write(data);
  await decoder.end();
  return true;
}

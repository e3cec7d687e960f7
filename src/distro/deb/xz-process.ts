import { spawn } from 'node:child_process';

/** Indexes at least this large (compressed) are decoded by an `xz` process when there is one. */
export const XZ_PROCESS_MIN = 1 << 20;

/**
 * Streams `data` through `xz -dc`, handing each decoded chunk to `onChunk` as it arrives.
 * False when no `xz` can be started (the caller decodes in-process instead); an error of
 * `onChunk` stops xz and is rethrown as it is; xz failing throws a plain Error (the caller
 * reports it as a broken index).
 */
export async function decodeInXzProcess(data: Buffer, onChunk: (chunk: Buffer) => void): Promise<boolean> {
  const child = spawn('xz', ['-dc', '-T1'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const started = await new Promise<boolean>((resolve) => {
    child.once('spawn', () => resolve(true));
    child.once('error', () => resolve(false));
  });
  if (!started) return false;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number>((resolve) => child.once('close', (code) => resolve(code ?? -1)));
  child.stdin.on('error', () => {});
  child.stdin.end(data);
  try {
    for await (const chunk of child.stdout) onChunk(chunk as Buffer);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  const code = await exited;
  if (code !== 0) throw new Error(`xz exited ${code}: ${stderr.trim().split('\n')[0] ?? ''}`);
  return true;
}

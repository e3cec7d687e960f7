import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real command line (compiled `dist/`) as a user would, and collects its output. */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  return runProcess(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...options.env },
  });
}

/** Runs a command to its end and collects its output (stdin closed); rejects only if it cannot start. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.env ? { env: options.env } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Asserts the shape every user-facing error must have: one line of what, one line of hint, no stack. */
export function errorLines(result: CliResult): { message: string; hint: string } {
  const lines = result.stderr.trimEnd().split('\n');
  if (lines.length !== 2 || !lines[0]?.startsWith('rootcast: error: ') || !lines[1]?.startsWith('hint: ')) {
    throw new Error(`expected a two-line error on stderr, got:\n${result.stderr}`);
  }
  return { message: lines[0].slice('rootcast: error: '.length), hint: lines[1].slice('hint: '.length) };
}

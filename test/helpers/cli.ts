import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
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

/** A started process: the live child (for signals and stdin), its output so far, and its end. */
export interface StartedProcess {
  child: ChildProcessWithoutNullStreams;
  output(): { stdout: string; stderr: string };
  /** Its exit: `code` is 128 + n when it died by signal n (as a shell reports it). */
  done: Promise<CliResult & { signal: NodeJS.Signals | null }>;
}

/** Starts a command with piped stdio and collects its output; `done` rejects only if it cannot start. */
export function startProcess(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; stdin?: string } = {},
): StartedProcess {
  const child = spawn(command, args, {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.env ? { env: options.env } : {}),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.on('error', () => {});
  child.stdin.end(options.stdin ?? '');
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<CliResult & { signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code: code ?? 128 + (signal ? osConstants.signals[signal] : 0), signal, stdout, stderr }),
    );
  });
  return { child, output: () => ({ stdout, stderr }), done };
}

/** Runs a command to its end and collects its output (stdin closed); rejects only if it cannot start. */
export async function runProcess(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  const { code, stdout, stderr } = await startProcess(command, args, options).done;
  return { code, stdout, stderr };
}

/** Asserts the shape every user-facing error must have: one line of what, one line of hint, no stack. */
export function errorLines(result: CliResult): { message: string; hint: string } {
  const lines = result.stderr.trimEnd().split('\n');
  if (lines.length !== 2 || !lines[0]?.startsWith('rootcast: error: ') || !lines[1]?.startsWith('hint: ')) {
    throw new Error(`expected a two-line error on stderr, got:\n${result.stderr}`);
  }
  return { message: lines[0].slice('rootcast: error: '.length), hint: lines[1].slice('hint: '.length) };
}

/** The `{"error": …}` document a failing verb prints under `--json`. */
export function jsonError(result: CliResult): { code: string; message: string; hint: string } {
  return (JSON.parse(result.stdout) as { error: { code: string; message: string; hint: string } }).error;
}

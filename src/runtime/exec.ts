import { spawn } from 'node:child_process';
import { describeError, RootcastError } from '../core/errors.js';

/**
 * Runs a host tool (cp, btrfs, mount inside unshare…) to completion and collects its output.
 * A tool that cannot be started throws `RUNTIME_TOOL_MISSING`; a non-zero exit is returned,
 * not thrown, unless `check` names the error code to throw with.
 */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runTool(
  argv: readonly string[],
  options: { check?: { code: string; hint: string }; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ToolResult> {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('runTool: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (error) =>
      reject(
        new RootcastError({
          code: 'RUNTIME_TOOL_MISSING',
          message: `cannot run ${command}: ${describeError(error)}`,
          hint: `Install the package that provides ${command} (see docs/runtime.md, "Requirements").`,
          cause: error,
        }),
      ),
    );
    child.on('close', (code, signal) => {
      const result = { code: code ?? 128, stdout, stderr };
      if (options.check && result.code !== 0) {
        reject(
          new RootcastError({
            code: options.check.code,
            message: `${argv.join(' ')} failed (${signal ?? `exit ${result.code}`}): ${stderr.trim().split('\n').slice(-3).join(' ') || 'no message'}`,
            hint: options.check.hint,
          }),
        );
      } else resolve(result);
    });
  });
}

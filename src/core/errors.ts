/**
 * The one error type rootcast throws across module boundaries.
 *
 * Every failure a user can see carries a stable `code` (for scripts and tests to branch on),
 * a one-line `message` saying what happened and a one-line `hint` saying what to do next.
 * `exitCode` is 2 for bad usage or bad input (the user can fix it by changing what they
 * passed) and 1 for failures of the world (network, signatures, disk). Errors are thrown
 * deep in the library and only printed by `src/cli/`.
 */
export type ExitCode = 1 | 2;

export interface RootcastErrorOptions {
  code: string;
  message: string;
  hint: string;
  cause?: unknown;
  /** 2 for bad usage or bad input; 1 (the default) for everything else. */
  exitCode?: ExitCode;
  /** Machine-readable facts about the failure, carried into `--json` output. */
  details?: Record<string, unknown>;
}

export class RootcastError extends Error {
  readonly code: string;
  readonly hint: string;
  readonly exitCode: ExitCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(options: RootcastErrorOptions) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RootcastError';
    this.code = options.code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
    this.details = options.details;
  }
}

/** An error the user caused with their input: exit code 2. */
export function inputError(code: string, message: string, hint: string, cause?: unknown): RootcastError {
  return new RootcastError({ code, message, hint, cause, exitCode: 2 });
}

export function isRootcastError(value: unknown): value is RootcastError {
  return value instanceof RootcastError;
}

/** A short description of any thrown value, for wrapping foreign errors. */
export function describeError(value: unknown): string {
  if (value instanceof Error) {
    const code = (value as NodeJS.ErrnoException).code;
    return code && !value.message.includes(code) ? `${code}: ${value.message}` : value.message;
  }
  return String(value);
}

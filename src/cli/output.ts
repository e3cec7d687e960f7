import { describeError, isRootcastError } from '../core/errors.js';

/**
 * The only place that turns results and errors into text and exit codes. Errors are two
 * lines on stderr (what happened, what to do); with `--json` they are also one JSON object
 * on stdout, so scripts never have to parse prose. Stack traces only with `--debug`.
 */
export interface GlobalFlags {
  json?: boolean;
  /** `auto`, `json` or `none`. */
  progress?: string;
  debug?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function reportError(error: unknown, flags: GlobalFlags): number {
  if (isRootcastError(error)) {
    process.stderr.write(`rootcast: error: ${oneLine(error.message)}\n`);
    process.stderr.write(`hint: ${oneLine(error.hint)}\n`);
    if (flags.debug) process.stderr.write(`${error.stack ?? ''}\n${causeChain(error)}`);
    if (flags.json) {
      printJson({
        error: {
          code: error.code,
          message: error.message,
          hint: error.hint,
          ...(error.details ? { details: error.details } : {}),
        },
      });
    }
    return error.exitCode;
  }
  process.stderr.write(`rootcast: internal error: ${oneLine(describeError(error))}\n`);
  process.stderr.write('hint: this is a bug in rootcast; rerun with --debug and report the output\n');
  if (flags.debug && error instanceof Error)
    process.stderr.write(`${error.stack ?? ''}\n${causeChain(error)}`);
  if (flags.json)
    printJson({ error: { code: 'INTERNAL', message: describeError(error), hint: 'rerun with --debug' } });
  return 1;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

function causeChain(error: Error): string {
  let out = '';
  let cause = error.cause;
  while (cause instanceof Error) {
    out += `caused by: ${cause.stack ?? cause.message}\n`;
    cause = cause.cause;
  }
  return out;
}

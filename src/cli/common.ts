import type { RecipeOptions } from '../api/lock.js';
import { type Command, InvalidArgumentError, Option } from './commander.js';
import { watchInterrupts } from './interrupt.js';
import type { GlobalFlags } from './output.js';
import { reportError } from './output.js';
import { createTerminalReporter } from './terminal-reporter.js';

/** Flags every verb that reads a recipe shares. */
export interface RecipeFlags extends GlobalFlags {
  set?: string[];
  store?: string;
  jobs?: number;
}

export function addGlobalFlags(command: Command): Command {
  return command
    .option('--json', 'print a JSON result on stdout (for scripts)')
    .addOption(
      new Option(
        '--progress <mode>',
        'progress: auto (bars on a terminal), json (one JSON object per line on stderr), none',
      )
        .choices(['auto', 'json', 'none'])
        .default('auto'),
    )
    .option('-q, --quiet', 'print only errors')
    .option('-v, --verbose', 'print debug messages')
    .option('--debug', 'print stack traces on errors');
}

export function addRecipeFlags(command: Command): Command {
  return addGlobalFlags(command)
    .option(
      '--set <key=value>',
      'set a recipe variable (repeatable), e.g. mirror.debian=http://…',
      collect,
      [],
    )
    .option('--store <dir>', 'store directory (default: $ROOTCAST_STORE or ./cache)')
    .option('-j, --jobs <n>', 'downloads at a time (default 8)', positiveInt);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new InvalidArgumentError('expected an integer from 1 to 64');
  return n;
}

/**
 * Runs one verb: builds the reporter and API options from the flags, calls `body`, and
 * turns any error into output and an exit code. Unless `signals` is `'own'` (a verb that
 * handles them itself, `run`), Ctrl-C/SIGTERM/SIGHUP abort the options' signal, the verb
 * reports `ABORTED` once the work has unwound, and the process then dies by the signal
 * (a shell sees 128 + its number): see interrupt.ts.
 */
export async function runVerb(
  flags: RecipeFlags,
  setExit: (code: number) => void,
  body: (options: RecipeOptions) => Promise<void>,
  signals: 'interrupt' | 'own' = 'interrupt',
): Promise<void> {
  const reporter = createTerminalReporter({
    verbose: Boolean(flags.verbose || flags.debug),
    quiet: Boolean(flags.quiet || flags.json),
    noProgress: Boolean(flags.json || flags.quiet || flags.progress === 'none'),
    jsonProgress: flags.progress === 'json',
  });
  const interrupts = signals === 'interrupt' ? watchInterrupts() : undefined;
  try {
    // The recipe modules (yaml, zod, handlebars) load only when a verb runs.
    const set =
      flags.set && flags.set.length > 0
        ? (await import('../recipe/load.js')).parseSetFlags(flags.set)
        : undefined;
    const options: RecipeOptions = {
      reporter,
      ...(set ? { set } : {}),
      ...(flags.store ? { store: flags.store } : {}),
      ...(flags.jobs ? { concurrency: flags.jobs } : {}),
      ...(interrupts ? { signal: interrupts.signal } : {}),
    };
    await body(options);
  } catch (error) {
    reporter.stop();
    if (interrupts?.received()) reportError(interrupts.errorAfterSignal(error), flags);
    else setExit(reportError(error, flags));
    // After a signal the process now dies by it (a shell then stops its script too).
    interrupts?.finish();
    return;
  }
  reporter.stop();
  // The verb finished before it noticed the signal: its result stands, and the process still
  // ends by the signal, as the user asked.
  interrupts?.finish();
}

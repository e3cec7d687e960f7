import { createRequire } from 'node:module';
import type * as CommanderModule from 'commander';
import { RootcastError } from '../core/errors.js';

/**
 * commander, loaded through `require`: it is a CommonJS package, and importing it as ESM makes
 * Node scan its source for named exports before running it (a few milliseconds of every
 * command's start-up, which `rootcast clone` and `run` are meant not to have).
 */
const commander = createRequire(import.meta.url)('commander') as typeof CommanderModule;

export const { Command, CommanderError, InvalidArgumentError, Option } = commander;
export type Command = CommanderModule.Command;
export type CommanderError = CommanderModule.CommanderError;

/** commander's exits that are not errors: help and version asked for, printed on stdout. */
const NOT_ERRORS = new Set(['commander.help', 'commander.helpDisplayed', 'commander.version']);

/** Each of commander's parse errors, as one of rootcast's `USAGE_*` codes (docs/errors.md). */
const USAGE_CODES: Record<string, string> = {
  'commander.unknownCommand': 'USAGE_VERB_UNKNOWN',
  'commander.unknownOption': 'USAGE_OPTION_UNKNOWN',
  'commander.missingMandatoryOptionValue': 'USAGE_OPTION_MISSING',
  'commander.optionMissingArgument': 'USAGE_OPTION_NO_VALUE',
  'commander.conflictingOption': 'USAGE_OPTION_CONFLICT',
  'commander.missingArgument': 'USAGE_ARGUMENT_MISSING',
  'commander.excessArguments': 'USAGE_ARGUMENT_EXTRA',
};

/**
 * Makes every parse error of `program` and its verbs a `RootcastError` (exit 2), thrown out of
 * `parseAsync` so it is reported like any other error, and keeps commander from printing its own
 * `error: …` line. Help and version still throw commander's own error (see `isHelpOrVersion`).
 * Call it after the verbs are registered: each verb's errors name that verb in their hint.
 */
export function routeUsageErrors(program: Command): void {
  for (const command of [program, ...program.commands]) {
    const verb = command === program ? undefined : command.name();
    // Each command holds its own copy of the output settings, taken when it was created.
    command.configureOutput({ outputError: () => {} });
    command.exitOverride((error) => {
      throw isHelpOrVersion(error) ? error : usageError(error, verb);
    });
  }
}

/** Help or version output that commander printed itself; `exitCode` is 1 for help shown for want of a verb. */
export function isHelpOrVersion(error: unknown): error is CommanderError {
  return error instanceof CommanderError && NOT_ERRORS.has(error.code);
}

/** The `USAGE_*` error for one of commander's parse errors in `verb` (undefined: before any verb). */
export function usageError(error: CommanderError, verb: string | undefined): RootcastError {
  // commander's messages start with `error: `; suggestions follow on a line of their own.
  const [first = '', ...rest] = error.message.replace(/^error: /, '').split('\n');
  const suggestion = /^\(Did you mean (.+)\?\)$/.exec(rest.join(' ').trim())?.[1];
  const help = verb ? `rootcast ${verb} --help` : 'rootcast --help';
  let code = USAGE_CODES[error.code] ?? 'USAGE_INVALID';
  // `too many arguments for 'ls'`: the verb is named once, in front.
  let message = verb ? first.replace(` for '${verb}'`, '') : first;
  let hint = `See \`${help}\`.`;
  if (error.code === 'commander.invalidArgument')
    code = first.startsWith('command-argument') ? 'USAGE_ARGUMENT_INVALID' : 'USAGE_OPTION_INVALID';
  if (code === 'USAGE_VERB_UNKNOWN') {
    message = first.replace(/^unknown command/, 'unknown verb');
    hint = suggestion
      ? `Did you mean \`rootcast ${suggestion}\`? See \`${help}\` for every verb.`
      : `See \`${help}\` for every verb.`;
  } else if (suggestion) {
    hint = `Did you mean ${suggestion}? See \`${help}\`.`;
  }
  return new RootcastError({
    code,
    message: verb ? `${verb}: ${message}` : message,
    hint,
    exitCode: 2,
    ...(verb || suggestion
      ? { details: { ...(verb ? { verb } : {}), ...(suggestion ? { suggestion } : {}) } }
      : {}),
  });
}

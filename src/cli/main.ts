#!/usr/bin/env node
import { VERSION } from '../version.js';
import { Command, isHelpOrVersion, routeUsageErrors } from './commander.js';
import { reportError } from './output.js';
import { registerVerbs } from './verbs.js';

/**
 * Entry point: parses arguments, hands each verb to the API, prints, and sets the exit
 * code (0 ok, 1 failure, 2 bad usage or input). No logic of its own lives here.
 */
async function main(argv: string[]): Promise<number> {
  const program = new Command('rootcast')
    .description('Build, clone and ship container OS templates')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError()
    .exitOverride();

  let exitCode = 0;
  const setExit = (code: number) => {
    exitCode = code;
  };
  await registerVerbs(program, setExit, argv);
  // Usage errors become USAGE_* errors, printed below like every other error.
  routeUsageErrors(program);

  try {
    await program.parseAsync(argv);
  } catch (error) {
    // Help asked for (or `--version`): 0. Help shown because no verb was given: 2, nothing was done.
    if (isHelpOrVersion(error)) return error.exitCode === 0 ? 0 : 2;
    return reportError(error, flagsOf(argv));
  }
  return exitCode;
}

/** `--json` and `--debug` anywhere before `--` (what follows it belongs to `run`'s command). */
function flagsOf(argv: string[]): { json: boolean; debug: boolean } {
  const end = argv.indexOf('--');
  const own = end === -1 ? argv : argv.slice(0, end);
  return { json: own.includes('--json'), debug: own.includes('--debug') };
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError(error, flagsOf(process.argv));
  },
);

#!/usr/bin/env node
import { VERSION } from '../version.js';
import { Command, CommanderError } from './commander.js';
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
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  let exitCode = 0;
  const setExit = (code: number) => {
    exitCode = code;
  };
  await registerVerbs(program, setExit, argv);

  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
      )
        return 0;
      return 2;
    }
    return reportError(error, { debug: argv.includes('--debug'), json: argv.includes('--json') });
  }
  return exitCode;
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError(error, { debug: process.argv.includes('--debug') });
  },
);

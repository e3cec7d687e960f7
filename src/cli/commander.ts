import { createRequire } from 'node:module';
import type * as CommanderModule from 'commander';

/**
 * commander, loaded through `require`: it is a CommonJS package, and importing it as ESM makes
 * Node scan its source for named exports before running it (a few milliseconds of every
 * command's start-up, which `rootcast clone` and `run` are meant not to have).
 */
const commander = createRequire(import.meta.url)('commander') as typeof CommanderModule;

export const { Command, CommanderError, InvalidArgumentError, Option } = commander;
export type Command = CommanderModule.Command;
export type CommanderError = CommanderModule.CommanderError;

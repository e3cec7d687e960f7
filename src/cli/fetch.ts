import type { Command } from './commander.js';
import { addRecipeFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';
import { formatBytes } from './terminal-reporter.js';

interface FetchFlags extends RecipeFlags {
  frozen?: boolean;
}

export function registerFetch(program: Command, setExit: (code: number) => void): void {
  addRecipeFlags(
    program
      .command('fetch')
      .description("download every package of the recipe's lock into the package cache, verified")
      .argument('<recipe>', 'recipe file (YAML)')
      .option('--frozen', 'fail if the lock is missing or no longer matches the recipe'),
  ).action(async (recipe: string, flags: FetchFlags) => {
    await runVerb(flags, setExit, async (options) => {
      const { fetch } = await import('../api/fetch.js');
      const result = await fetch(recipe, { ...options, frozen: Boolean(flags.frozen) });
      if (flags.json) {
        printJson({ downloaded: result.downloaded, reused: result.reused, bytes: result.bytes });
        return;
      }
      if (flags.quiet) return;
      process.stdout.write(
        `${result.packages} packages: ${result.downloaded} downloaded (${formatBytes(result.bytes)}), ${result.reused} already in the cache\n`,
      );
    });
  });
}

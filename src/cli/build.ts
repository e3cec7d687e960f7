import { type Command, InvalidArgumentError } from 'commander';
import { addRecipeFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';

interface BuildFlags extends RecipeFlags {
  rebuild?: boolean;
  frozen?: boolean;
  compression?: number;
}

export function registerBuild(program: Command, setExit: (code: number) => void): void {
  addRecipeFlags(
    program
      .command('build')
      .description('build a recipe into a template in the store (locks and fetches first if needed)')
      .argument('<recipe>', 'recipe file (YAML)')
      .option(
        '--rebuild',
        'assemble again even if an identical template exists (the package cache is still used)',
      )
      .option('--frozen', 'fail if the lock is missing or no longer matches the recipe')
      .option('--compression <level>', 'zstd level of the layer, 1-19 (default 3)', level),
  ).action(async (recipe: string, flags: BuildFlags) => {
    await runVerb(flags, setExit, async (options) => {
      const { build } = await import('../api/build.js');
      const sourceDateEpoch = process.env.SOURCE_DATE_EPOCH
        ? epochOf(process.env.SOURCE_DATE_EPOCH)
        : undefined;
      const result = await build(recipe, {
        ...options,
        rebuild: Boolean(flags.rebuild),
        frozen: Boolean(flags.frozen),
        ...(flags.compression !== undefined ? { compressionLevel: flags.compression } : {}),
        ...(sourceDateEpoch !== undefined ? { sourceDateEpoch } : {}),
      });
      if (flags.json) {
        printJson({
          template: result.template,
          digest: result.digest,
          layers: result.layers,
          cached: result.cached,
          packages: result.packages,
          seconds: result.seconds,
          phases: result.phases,
        });
        return;
      }
      if (flags.quiet) return;
      const how = result.cached ? 'up to date' : `built in ${result.seconds.toFixed(1)} s`;
      process.stdout.write(`${result.template} ${result.digest} (${result.packages} packages, ${how})\n`);
    });
  });
}

function level(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 19)
    throw new InvalidArgumentError('expected an integer from 1 to 19');
  return n;
}

function epochOf(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new InvalidArgumentError(`SOURCE_DATE_EPOCH must be a non-negative integer, not ${value}`);
  }
  return n;
}

import type { BuildResult } from '../api/build.js';
import { inputError } from '../core/errors.js';
import type { Command } from './commander.js';
import { addRecipeFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';

interface BuildFlags extends RecipeFlags {
  rebuild?: boolean;
  frozen?: boolean;
  compression?: number;
  explain?: boolean;
}

export function registerBuild(program: Command, setExit: (code: number) => void): void {
  addRecipeFlags(
    program
      .command('build')
      .description(
        'build recipes into templates in the store (locks and fetches first if needed); several recipes build as one graph, parents first',
      )
      .argument('<recipes...>', 'recipe files (YAML)')
      .option(
        '--rebuild',
        'assemble again even if an identical template exists (the package cache is still used)',
      )
      .option('--frozen', 'fail if the lock is missing or no longer matches the recipe')
      .option('--explain', 'say which inputs changed since the current build of each template')
      .option('--compression <level>', 'zstd level of the layer, 1-19 (default 3)', level),
  ).action(async (recipes: string[], flags: BuildFlags) => {
    await runVerb(flags, setExit, async (options) => {
      const started = performance.now();
      const sourceDateEpoch = process.env.SOURCE_DATE_EPOCH
        ? epochOf(process.env.SOURCE_DATE_EPOCH)
        : undefined;
      const buildOptions = {
        ...options,
        rebuild: Boolean(flags.rebuild),
        frozen: Boolean(flags.frozen),
        explain: Boolean(flags.explain),
        ...(flags.compression !== undefined ? { compressionLevel: flags.compression } : {}),
        ...(sourceDateEpoch !== undefined ? { sourceDateEpoch } : {}),
      };
      let results: BuildResult[];
      if (recipes.length === 1) {
        // The resolve worker (when the recipe has no lock) starts before the build's modules
        // load, so its index requests go out while they do.
        const { startEarlyResolve } = await import('../api/early-resolve.js');
        const earlyResolve = startEarlyResolve(recipes[0]!, buildOptions);
        const { build } = await import('../api/build.js').catch(async (error: unknown) => {
          (await earlyResolve)?.cancel();
          throw error;
        });
        results = [await build(recipes[0]!, { ...buildOptions, earlyResolve })];
      } else {
        const { buildGraph } = await import('../api/build-graph.js');
        results = await buildGraph(recipes, buildOptions);
      }
      if (flags.json) {
        const seconds = Math.round(performance.now() - started) / 1000;
        printJson(results.length === 1 ? jsonOf(results[0]!) : { templates: results.map(jsonOf), seconds });
        return;
      }
      if (flags.quiet) return;
      for (const result of results) {
        for (const line of result.explain ?? []) process.stdout.write(`${line}\n`);
        const how = result.cached ? 'up to date' : `built in ${result.seconds.toFixed(1)} s`;
        const layers = result.layers.length > 1 ? `, ${result.layers.length} layers` : '';
        process.stdout.write(
          `${result.template} ${result.digest} (${result.packages} packages${layers}, ${how})\n`,
        );
      }
    });
  });
}

function jsonOf(result: BuildResult): Record<string, unknown> {
  return {
    template: result.template,
    digest: result.digest,
    layers: result.layers,
    cached: result.cached,
    packages: result.packages,
    seconds: result.seconds,
    phases: result.phases,
    ...(result.explain ? { explain: result.explain } : {}),
    ...(result.parent ? { parent: { template: result.parent.template, cached: result.parent.cached } } : {}),
  };
}

/** `--compression`: a zstd level (the store checks it again; here it fails before any work). */
function level(value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 19) {
    throw inputError(
      'COMPRESSION_LEVEL_INVALID',
      `--compression ${value}: zstd level must be an integer from 1 to 19`,
      'Use --compression 1–19 (default 3), or leave it out.',
    );
  }
  return n;
}

function epochOf(value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw inputError(
      'SOURCE_DATE_EPOCH_INVALID',
      `SOURCE_DATE_EPOCH must be a non-negative integer, not ${value}`,
      'Set SOURCE_DATE_EPOCH to a whole number of seconds since 1970, or unset it.',
    );
  }
  return n;
}

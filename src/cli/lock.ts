import type { Command } from './commander.js';
import { addRecipeFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';

interface LockFlags extends RecipeFlags {
  update?: boolean;
  frozen?: boolean;
}

export function registerLock(program: Command, setExit: (code: number) => void): void {
  addRecipeFlags(
    program
      .command('lock')
      .description('resolve a recipe against its signed repositories and write <recipe>.lock.json')
      .argument('<recipe>', 'recipe file (YAML)')
      .option('--update', 'resolve again even if the lock still matches the recipe')
      .option('--frozen', 'fail if the lock is missing or no longer matches the recipe'),
  ).action(async (recipe: string, flags: LockFlags) => {
    await runVerb(flags, setExit, async (options) => {
      // Imported here so `--help`, `--version` and usage errors never load the pipeline.
      const { lock } = await import('../api/lock.js');
      const result = await lock(recipe, {
        ...options,
        update: Boolean(flags.update),
        frozen: Boolean(flags.frozen),
      });
      const { changes } = result;
      if (flags.json) {
        printJson({
          lock: result.path,
          status: result.status,
          written: result.written,
          packages: result.lock.packages.length,
          added: changes.added,
          removed: changes.removed,
          changed: changes.changed,
          seconds: result.seconds,
          variables: result.variables,
        });
        return;
      }
      if (flags.quiet) return;
      const count = result.lock.packages.length;
      if (result.status === 'unchanged') {
        process.stdout.write(`${result.path}: up to date (${count} packages)\n`);
        return;
      }
      if (!result.created) {
        for (const p of changes.added) process.stdout.write(`  + ${p.name} ${p.version}\n`);
      }
      for (const p of changes.removed) process.stdout.write(`  - ${p.name} ${p.version}\n`);
      for (const p of changes.changed) process.stdout.write(`  ~ ${p.name} ${p.from} → ${p.to}\n`);
      const verb = result.replaced
        ? 'replaced'
        : result.created
          ? 'created'
          : result.written
            ? 'updated'
            : 'unchanged';
      process.stdout.write(
        `${result.path}: ${verb}, ${count} packages (resolved in ${result.seconds.resolve.toFixed(2)} s)\n`,
      );
    });
  });
}

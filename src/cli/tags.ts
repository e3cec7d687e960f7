import type { Command } from './commander.js';
import { addGlobalFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';

const STORE_HELP = 'store directory (default: $ROOTCAST_STORE or ./cache)';

/** `history`, `tag` and `rmi`: versions of templates (`ls --all` lives with `ls`). */
export function registerTagVerbs(program: Command, setExit: (code: number) => void): void {
  addGlobalFlags(
    program.command('history').description("every manifest a template name's tags have named, newest first"),
  )
    .argument('<template>', 'template name, name:version (its name) or sha256:digest (the names it had)')
    .option('--store <dir>', STORE_HELP)
    .action(async (ref: string, flags: RecipeFlags) => {
      await runVerb(flags, setExit, async (options) => {
        const { templateHistory } = await import('../api/tags.js');
        const items = await templateHistory(ref, options);
        if (flags.json) {
          printJson(items);
          return;
        }
        for (const item of items) {
          const tags = item.current ? item.tags.join(', ') : `(was ${item.previousTags.join(', ')})`;
          process.stdout.write(`${String(item.sequence).padStart(4)}  ${item.digest}  ${tags}\n`);
        }
      });
    });

  addGlobalFlags(program.command('tag').description('tag a template (or a digest) as name:version'))
    .argument('<source>', 'name:version or sha256:digest')
    .argument('<target>', 'name:version')
    .option('--force', 'move an existing target tag (its old manifest stays in history)')
    .option('--store <dir>', STORE_HELP)
    .action(async (source: string, target: string, flags: RecipeFlags & { force?: boolean }) => {
      await runVerb(flags, setExit, async (options) => {
        const { tagTemplate } = await import('../api/tags.js');
        const result = await tagTemplate(source, target, { force: Boolean(flags.force) }, options);
        if (flags.json) printJson(result);
        else if (!flags.quiet) {
          const was = result.previous ? ` (was ${result.previous})` : '';
          process.stdout.write(`${result.template} → ${result.digest}${was}\n`);
        }
      });
    });

  addGlobalFlags(
    program
      .command('rmi')
      .description('remove a tag and its history, or every entry of a digest (rootcast gc frees the space)'),
  )
    .argument('<template>', 'name:version or sha256:digest')
    .option('--store <dir>', STORE_HELP)
    .action(async (ref: string, flags: RecipeFlags) => {
      await runVerb(flags, setExit, async (options) => {
        const { removeTemplate } = await import('../api/tags.js');
        const result = await removeTemplate(ref, options);
        if (flags.json) {
          printJson(result);
          return;
        }
        if (flags.quiet) return;
        for (const e of result.removed) {
          const label = e.ref ?? `${e.previousRef ?? '-'} (history)`;
          process.stdout.write(`removed ${label} ${e.digest}\n`);
        }
        // A `latest` that went is already among the removed entries.
        for (const l of result.latest) if (l.digest) process.stdout.write(`moved ${l.ref} → ${l.digest}\n`);
      });
    });
}

import { type Command, InvalidArgumentError } from './commander.js';
import { addGlobalFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';

const STORE_HELP = 'store directory (default: $ROOTCAST_STORE or ./cache)';
const DRIVER_HELP = 'clone driver: auto (default; probed once per store), overlay, btrfs, reflink, copy';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Decimal digits only: `Number()` would also take `0x3`, `1e3` and ` 2`. */
function count(value: string): number {
  const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 10_000)
    throw new InvalidArgumentError('expected an integer from 1 to 10000 (decimal digits)');
  return n;
}

function envPair(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected KEY=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function network(value: string): 'host' | 'none' {
  if (value !== 'host' && value !== 'none') throw new InvalidArgumentError('expected host or none');
  return value;
}

interface CloneFlags extends RecipeFlags {
  count?: number;
  name?: string;
  values?: string;
  driver?: string;
}

/** `clone`, `containers`, `rm` and `run`: containers made from templates (src/api/runtime.ts). */
export function registerRuntimeVerbs(program: Command, setExit: (code: number) => void): void {
  addGlobalFlags(
    program
      .command('clone')
      .description('clone a template into a new container, or a batch of them (--count, --name, --values)'),
  )
    .argument('<template>', 'name:version or sha256:digest')
    .argument('[name]', 'container name (also its hostname)')
    .option('-n, --count <n>', 'clone a batch of N containers', count)
    .option(
      '--name <pattern>',
      "batch name pattern, e.g. 'lab-{{index}}' (handlebars, over each row's values)",
    )
    .option('--values <file>', 'values file: CSV (one row per container), JSON or YAML')
    .option(
      '--set <key=value>',
      'set a value for every container (repeatable): hostname, motd, user…',
      collect,
      [],
    )
    .option('--driver <driver>', DRIVER_HELP)
    .option('--store <dir>', STORE_HELP)
    .action(async (template: string, name: string | undefined, flags: CloneFlags) => {
      const { set, ...rest } = flags;
      await runVerb(rest, setExit, async (options) => {
        const api = await import('../api/runtime.js');
        const { parseDriverName } = await import('../runtime/drivers.js');
        const result = await api.clone(template, name, {
          ...options,
          ...(set && set.length > 0 ? { set } : {}),
          ...(flags.values ? { valuesFile: flags.values } : {}),
          ...(flags.count ? { count: flags.count } : {}),
          ...(flags.name ? { namePattern: flags.name } : {}),
          ...(flags.driver ? { driver: parseDriverName(flags.driver) } : {}),
        });
        if (flags.json) printJson(result);
        else if (!flags.quiet) {
          for (const c of result.containers) process.stdout.write(`${c.name}\t${c.ms.toFixed(1)} ms\n`);
        }
      });
    });

  addGlobalFlags(program.command('containers').description('list the containers in the store'))
    .option('--store <dir>', STORE_HELP)
    .action(async (flags: RecipeFlags) => {
      await runVerb(flags, setExit, async (options) => {
        const { listContainers } = await import('../api/runtime.js');
        const containers = await listContainers(options);
        if (flags.json) {
          printJson(containers);
          return;
        }
        for (const c of containers) {
          const what =
            c.state === 'damaged'
              ? `${c.problem ?? 'unusable record'} (rootcast rm --force ${c.name})`
              : c.template;
          process.stdout.write(
            `${c.name.padEnd(24)} ${c.state.padEnd(8)} ${(c.driver || '-').padEnd(8)} ${what}\n`,
          );
        }
      });
    });

  addGlobalFlags(program.command('rm').description('remove containers'))
    .argument('<names...>', 'container names')
    .option('-f, --force', 'also remove a container a command is running in (kills that rootcast run)')
    .option('--store <dir>', STORE_HELP)
    .action(async (names: string[], flags: RecipeFlags & { force?: boolean }) => {
      await runVerb(flags, setExit, async (options) => {
        const { removeContainers } = await import('../api/runtime.js');
        const result = await removeContainers(names, { ...options, force: Boolean(flags.force) });
        if (flags.json) printJson(result);
        else if (!flags.quiet) for (const n of result.removed) process.stdout.write(`removed ${n}\n`);
      });
    });

  addGlobalFlags(
    program
      .command('run')
      .description('run a command in a container (or, with --rm, in a disposable clone of a template)')
      .usage('[options] <template|container> [-- command...]'),
  )
    .argument('<target>', 'container name, or name:version / sha256:digest with --rm')
    .argument('[command...]', "command and arguments (default: the template's Cmd)")
    .option('--rm', 'remove the container afterwards (a template gets a disposable clone)')
    .option('--network <mode>', 'host (default): the host network; none: an empty network namespace', network)
    .option('-e, --env <key=value>', 'set an environment variable (repeatable)', envPair, {})
    .option('-w, --workdir <dir>', 'working directory inside the container (absolute)')
    .option('--driver <driver>', `${DRIVER_HELP} (only with --rm TEMPLATE)`)
    .option('--store <dir>', STORE_HELP)
    .action(
      async (
        target: string,
        command: string[],
        flags: RecipeFlags & {
          rm?: boolean;
          network?: 'host' | 'none';
          env: Record<string, string>;
          workdir?: string;
          driver?: string;
        },
      ) => {
        await runVerb(
          flags,
          setExit,
          async (options) => {
            const { run } = await import('../api/runtime.js');
            const { parseDriverName } = flags.driver
              ? await import('../runtime/drivers.js')
              : { parseDriverName: undefined };
            const result = await run(target, {
              ...options,
              argv: command,
              env: flags.env,
              forwardSignals: true,
              ...(flags.rm ? { rm: true } : {}),
              ...(flags.network ? { network: flags.network } : {}),
              ...(flags.workdir !== undefined ? { workdir: flags.workdir } : {}),
              ...(parseDriverName && flags.driver ? { driver: parseDriverName(flags.driver) } : {}),
            });
            // After the command's own output, which shares stdout: for `--rm`-style scripting.
            if (flags.json) printJson(result);
            setExit(result.exitCode);
          },
          'own',
        );
      },
    );
}

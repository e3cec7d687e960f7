import type { Command } from './commander.js';
import { addGlobalFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';
import { formatBytes } from './terminal-reporter.js';

const STORE_HELP = 'store directory (default: $ROOTCAST_STORE or ./cache)';

interface RegistryFlags extends RecipeFlags {
  insecure?: boolean;
  caFile?: string;
  tag?: string;
}

function addRegistryFlags(command: Command): Command {
  return command
    .option('--insecure', 'use plain HTTP (only to localhost, 127.0.0.1 or ::1)')
    .option('--ca-file <pem>', 'trust these CA certificates too (default: $ROOTCAST_REGISTRY_CA_FILE)')
    .option('--store <dir>', STORE_HELP);
}

/** `push` and `pull`: templates to and from OCI registries (docs/registry.md). */
export function registerRegistryVerbs(program: Command, setExit: (code: number) => void): void {
  addRegistryFlags(
    addGlobalFlags(program.command('push').description('push a template to an OCI registry'))
      .argument('<template>', 'name:version or sha256:digest')
      .argument('<ref>', 'host[:port]/repository[:tag] (tag defaults to the version)'),
  ).action(async (template: string, ref: string, flags: RegistryFlags) => {
    await runVerb(flags, setExit, async (options) => {
      const { push } = await import('../api/registry.js');
      const summary = await push(template, ref, {
        ...options,
        ...(flags.insecure ? { insecure: true } : {}),
        ...(flags.caFile ? { caFile: flags.caFile } : {}),
      });
      if (flags.json) {
        printJson(summary);
        return;
      }
      if (flags.quiet) return;
      process.stdout.write(
        `${summary.ref} ${summary.digest}: ${summary.pushed} pushed, ${summary.mounted} mounted, ` +
          `${summary.skipped} already there, ${formatBytes(summary.bytes)} sent\n`,
      );
    });
  });

  addRegistryFlags(
    addGlobalFlags(program.command('pull').description('pull a template from an OCI registry into the store'))
      .argument('<ref>', 'host[:port]/repository[:tag|@sha256:digest]')
      .option('--tag <name:version>', "name the template (default: the image's title and version)"),
  ).action(async (ref: string, flags: RegistryFlags) => {
    await runVerb(flags, setExit, async (options) => {
      const { pull } = await import('../api/registry.js');
      const summary = await pull(ref, {
        ...options,
        ...(flags.insecure ? { insecure: true } : {}),
        ...(flags.caFile ? { caFile: flags.caFile } : {}),
        ...(flags.tag ? { tag: flags.tag } : {}),
      });
      if (flags.json) {
        printJson(summary);
        return;
      }
      if (flags.quiet) return;
      process.stdout.write(
        `${summary.template} ${summary.digest}: ${summary.pulled} pulled, ${summary.skipped} already there, ` +
          `${formatBytes(summary.bytes)} received\n`,
      );
    });
  });
}

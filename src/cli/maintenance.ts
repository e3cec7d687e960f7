import type { FileChange, FileFacts, TemplateDiff } from '../api/diff.js';
import type { FsckLayerTree } from '../api/maintenance.js';
import { RootcastError } from '../core/errors.js';
import { type Command, Option } from './commander.js';
import { addGlobalFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';
import { formatBytes } from './terminal-reporter.js';

const STORE_FLAG = ['--store <dir>', 'store directory (default: $ROOTCAST_STORE or ./cache)'] as const;

/** `diff`, `gc` and `fsck`: comparing templates and keeping the store small and sound. */
export function registerMaintenanceVerbs(program: Command, setExit: (code: number) => void): void {
  addGlobalFlags(
    program.command('diff').description('show packages and files that differ between two templates'),
  )
    .argument('<a>', 'name:version or sha256:digest (the old one)')
    .argument('<b>', 'name:version or sha256:digest (the new one)')
    .option(...STORE_FLAG)
    .action(async (a: string, b: string, flags: RecipeFlags) => {
      await runVerb(flags, setExit, async (options) => {
        const { diffTemplates } = await import('../api/diff.js');
        const diff = await diffTemplates(a, b, options);
        if (flags.json) printJson(diff);
        else process.stdout.write(formatDiff(diff));
      });
    });

  addGlobalFlags(program.command('gc').description('remove blobs, layers, packages and indexes nothing uses'))
    .option('--dry-run', 'list what would be removed, remove nothing')
    // Too far from --dry-run for commander's suggestions (3 edits at most): caught here instead.
    .addOption(new Option('--dry').hideHelp())
    .option('--keep-packages', 'keep every cached package')
    .option('--indexes', 'also empty the repository index cache (re-fetched by the next lock)')
    .option(...STORE_FLAG)
    .action(
      async (
        flags: RecipeFlags & { dry?: boolean; dryRun?: boolean; keepPackages?: boolean; indexes?: boolean },
      ) => {
        await runVerb(flags, setExit, async (options) => {
          if (flags.dry)
            throw new RootcastError({
              code: 'USAGE_OPTION_UNKNOWN',
              message: "gc: unknown option '--dry'",
              hint: 'Did you mean --dry-run? See `rootcast gc --help`.',
              exitCode: 2,
              details: { verb: 'gc', suggestion: '--dry-run' },
            });
          const { collectGarbage } = await import('../api/maintenance.js');
          const report = await collectGarbage({
            ...options,
            ...(flags.dryRun ? { dryRun: true } : {}),
            ...(flags.keepPackages ? { keepPackages: true } : {}),
            ...(flags.indexes ? { indexes: true } : {}),
          });
          if (flags.json) {
            printJson(report);
            return;
          }
          if (flags.quiet) return;
          const verb = report.dryRun ? 'would remove' : 'removed';
          if (flags.verbose || report.dryRun) {
            for (const item of report.removed)
              process.stdout.write(
                `${verb} ${item.kind.padEnd(9)} ${item.path} (${formatBytes(item.bytes)})\n`,
              );
          }
          process.stdout.write(
            `${verb} ${report.removed.length} items, ${formatBytes(report.bytesFreed)}; kept ${report.kept.blobs} blobs, ` +
              `${report.kept.layers} layers, ${report.kept.packages} packages\n`,
          );
        });
      },
    );

  addGlobalFlags(program.command('fsck').description('verify every blob, reference, package and temporary'))
    .option('--repair', 'remove what is corrupt and list the templates to rebuild')
    .option(...STORE_FLAG)
    .action(async (flags: RecipeFlags & { repair?: boolean }) => {
      await runVerb(flags, setExit, async (options) => {
        const { checkStoreIntegrity } = await import('../api/maintenance.js');
        const result = await checkStoreIntegrity({ ...options, ...(flags.repair ? { repair: true } : {}) });
        if (!result.healthy) setExit(1);
        if (flags.json) {
          printJson(result);
          return;
        }
        for (const p of result.problems) {
          const where = p.templates.length > 0 ? ` [${p.templates.join(', ')}]` : '';
          const users = p.containers ? ` {containers: ${p.containers.join(', ')}}` : '';
          const fixed = p.repaired ? ' (removed)' : '';
          process.stdout.write(`${p.code} ${p.subject}${where}${users}${fixed}\n`);
        }
        for (const l of result.layers) {
          const why =
            l.check === 'intact'
              ? 'intact: it still archives to its diff_id'
              : l.removed
                ? 'not verifiable against its diff_id'
                : `not verifiable against its diff_id, but ${keptReason(l)}`;
          const users = l.containers.length > 0 ? ` {containers: ${l.containers.join(', ')}}` : '';
          process.stdout.write(
            `${l.removed ? 'removed' : 'kept'} unpacked layer ${l.diffId}${users} (${why})\n`,
          );
        }
        for (const ref of result.rebuild) process.stdout.write(`needs rebuild: ${ref}\n`);
        if (!flags.quiet) {
          const c = result.checked;
          process.stdout.write(
            `checked ${c.templates} templates, ${c.blobs} blobs, ${c.packages} packages, ${c.indexes} indexes: ` +
              `${result.problems.length} problems${result.healthy ? '' : ' remain'}\n`,
          );
        }
      });
    });
}

/** Why `fsck --repair` kept an unpacked layer it could not verify (`keptBecause`). */
function keptReason(l: FsckLayerTree): string {
  if (l.keptBecause === 'intact-blob') {
    const templates = l.templates ?? [];
    return `${templates.join(', ')} ${templates.length === 1 ? 'has' : 'have'} an intact blob of it`;
  }
  if (l.keptBecause === 'containers') return 'containers use it';
  return "a container record is unreadable (any layer may be a container's)";
}

function facts(f: FileFacts): string {
  return `${f.type} ${f.mode} ${f.uid}:${f.gid}`;
}

function describeChange(c: FileChange): string {
  const parts = c.changed.map((what) => {
    if (what === 'type') return `type ${c.from.type}→${c.to.type}`;
    if (what === 'mode') return `mode ${c.from.mode}→${c.to.mode}`;
    if (what === 'owner') return `owner ${c.from.uid}:${c.from.gid}→${c.to.uid}:${c.to.gid}`;
    if (what === 'size') return `size ${c.from.size}→${c.to.size}`;
    if (what === 'target') return `target ${c.from.target ?? ''}→${c.to.target ?? ''}`;
    return what;
  });
  return parts.join(', ');
}

/** The human form of a diff: packages, then files, each group sorted. */
export function formatDiff(diff: TemplateDiff): string {
  // A template named by an untagged digest is that digest: shown once.
  const label = (t: { template: string; digest: string }) =>
    t.template === t.digest ? t.digest : `${t.template} ${t.digest}`;
  const lines: string[] = [`--- ${label(diff.from)}`, `+++ ${label(diff.to)}`];
  const p = diff.packages;
  lines.push(`packages: ${p.added.length} added, ${p.removed.length} removed, ${p.changed.length} changed`);
  for (const x of p.added) lines.push(`  + ${x.name}:${x.arch} ${x.to ?? ''}`);
  for (const x of p.removed) lines.push(`  - ${x.name}:${x.arch} ${x.from ?? ''}`);
  for (const x of p.changed) lines.push(`  ~ ${x.name}:${x.arch} ${x.from ?? ''} → ${x.to ?? ''}`);
  const f = diff.files;
  lines.push(`files: ${f.added.length} added, ${f.removed.length} removed, ${f.changed.length} changed`);
  for (const x of f.added) lines.push(`  + ${x.path} (${facts(x.facts)})`);
  for (const x of f.removed) lines.push(`  - ${x.path} (${facts(x.facts)})`);
  for (const x of f.changed) lines.push(`  ~ ${x.path} (${describeChange(x)})`);
  return `${lines.join('\n')}\n`;
}

import { inputError } from '../core/errors.js';
import type { Command } from './commander.js';
import { addGlobalFlags, type RecipeFlags, runVerb } from './common.js';
import { printJson } from './output.js';
import { formatBytes } from './terminal-reporter.js';

/** `ls`, `inspect` and `export`: read-only views of the store's templates. */
export function registerTemplateVerbs(program: Command, setExit: (code: number) => void): void {
  addGlobalFlags(program.command('ls').description('list the templates in the store'))
    .option('--store <dir>', 'store directory (default: $ROOTCAST_STORE or ./cache)')
    .option('--all', 'also list history entries (manifests a tag named before it moved)')
    .action(async (flags: RecipeFlags & { all?: boolean }) => {
      await runVerb(flags, setExit, async (options) => {
        if (flags.all) {
          const { listAllTemplates } = await import('../api/tags.js');
          const rows = await listAllTemplates(options);
          if (flags.json) {
            printJson(rows);
            return;
          }
          for (const r of rows) {
            const label = r.current ? r.template : `(${r.template})`;
            process.stdout.write(`${label.padEnd(34)} ${r.digest} ${r.sequence}\n`);
          }
          return;
        }
        const { listTemplates } = await import('../store/template-query.js');
        const { createContext } = await import('../core/context.js');
        const templates = await listTemplates(createContext(options).store);
        if (flags.json) {
          printJson(templates.map((t) => ({ template: t.ref, digest: t.manifestDigest })));
          return;
        }
        for (const t of templates) process.stdout.write(`${t.ref.padEnd(32)} ${t.manifestDigest}\n`);
      });
    });

  addGlobalFlags(
    program.command('inspect').description('show a template: digest, layers, sizes, packages, recipe'),
  )
    .argument('<template>', 'name:version or sha256:digest')
    .option('--sbom', "print the template's SPDX 2.3 SBOM (JSON)")
    .option('--store <dir>', 'store directory (default: $ROOTCAST_STORE or ./cache)')
    .action(async (ref: string, flags: RecipeFlags & { sbom?: boolean }) => {
      await runVerb(flags, setExit, async (options) => {
        if (flags.sbom) {
          const { templateSbom } = await import('../api/inspect.js');
          printJson(await templateSbom(ref, options));
          return;
        }
        const { inspectTemplate } = await import('../api/inspect.js');
        const info = await inspectTemplate(ref, options);
        if (flags.json) {
          printJson(info);
          return;
        }
        const lines = [
          `template  ${info.template}`,
          `digest    ${info.digest}`,
          `created   ${info.created}`,
          `arch      ${info.architecture}`,
          `recipe    ${info.recipe.name}:${info.recipe.version} (${info.recipe.digest})`,
          `packages  ${info.packages.length}${info.parent ? ` (${info.added} added over the parent)` : ''}`,
          ...(info.parent ? [`parent    ${info.parent}`] : []),
          ...info.layers.map(
            (l, i) => `layer ${i}   ${l.digest} ${formatBytes(l.size)} (diff_id ${l.diffId.slice(0, 19)}…)`,
          ),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      });
    });

  addGlobalFlags(program.command('export').description('write a template in a format other runtimes read'))
    .argument('<template>', 'name:version or sha256:digest')
    .requiredOption('--format <format>', 'tar, oci, oci-archive, lxc, incus or openvz (see docs/export.md)')
    .requiredOption('-o, --output <path>', 'file or directory to write (atomically)')
    .option('--compression <kind>', 'oci: zstd (default) or gzip; tarballs: gzip, xz, zstd or none')
    .option('--level <n>', 'compression level (gzip 1-9, xz 0-9, zstd 1-19)', parseLevel)
    .option('--split', 'incus: metadata tarball + squashfs rootfs (needs mksquashfs)')
    .option('--store <dir>', 'store directory (default: $ROOTCAST_STORE or ./cache)')
    .action(
      async (
        ref: string,
        flags: RecipeFlags & {
          format: string;
          output: string;
          compression?: string;
          level?: number;
          split?: boolean;
        },
      ) => {
        await runVerb(flags, setExit, async (options) => {
          const { exportTemplate } = await import('../api/export.js');
          if (flags.level !== undefined && flags.compression !== undefined) {
            // A level the named compressor cannot take fails before the template is read.
            const { COMPRESSIONS, compressionLevel } = await import('../export/compression.js');
            const kind = COMPRESSIONS.find((c) => c === flags.compression);
            if (kind) compressionLevel(kind, flags.level);
          }
          const result = await exportTemplate(ref, flags.format, flags.output, {
            ...options,
            ...(flags.compression ? { compression: flags.compression } : {}),
            ...(flags.level !== undefined ? { level: flags.level } : {}),
            ...(flags.split ? { split: true } : {}),
          });
          if (flags.json) printJson(result);
          else if (!flags.quiet) process.stdout.write(`${result.output}: ${formatBytes(result.bytes)}\n`);
        });
      },
    );
}

/** `--level`: any level some compressor takes; the one in use checks its own range. */
function parseLevel(value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n > 19) {
    throw inputError(
      'EXPORT_LEVEL_INVALID',
      `--level ${value} is not a compression level`,
      'Use an integer: gzip 1–9, xz 0–9, zstd 1–19 (see docs/export.md), or leave it out.',
    );
  }
  return n;
}

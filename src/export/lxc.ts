import { join } from 'node:path';
import { compressChunks, compressionLevel, oneChunk } from './compression.js';
import type { Exporter, ExportRequest } from './exporter.js';
import { kernelArch, type TemplateFacts } from './facts.js';
import { atomicDirectory, writeChunksToFile } from './output.js';
import { type SmallEntry, smallTar } from './small-tar.js';
import { templateTar } from './template-tar.js';

/**
 * `--format lxc`: a directory with `rootfs.tar.xz` (the flattened tree) and `meta.tar.xz`,
 * the pair LXC's `local` template installs (`lxc-create -t local -- --metadata meta.tar.xz
 * --fstree rootfs.tar.xz`) and the `download` template's image server serves.
 *
 * meta.tar.xz follows the files those templates read: `config` (system containers) and
 * `config-user` (unprivileged ones), appended to the container's config with `LXC_*`
 * placeholders substituted; `excludes-user`, the device nodes an unprivileged unpack must
 * skip; `templates`, files in the rootfs whose `LXC_NAME` placeholders are substituted; and
 * `create-message`. xz is fixed: the `local` template unpacks with `tar -J`.
 */

/** Pure: the `config` (or, for `user`, `config-user`) LXC appends to a container's config. */
export function lxcConfig(facts: TemplateFacts, mode: 'system' | 'user'): string {
  const lines = [
    `# rootcast template ${facts.ref} (${facts.manifestDigest})`,
    'lxc.include = LXC_TEMPLATE_CONFIG/common.conf',
    ...(mode === 'user' ? ['lxc.include = LXC_TEMPLATE_CONFIG/userns.conf'] : []),
    `lxc.arch = ${kernelArch(facts.debArch)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Pure: the meta.tar.xz members, sorted by name. */
export function lxcMetaEntries(facts: TemplateFacts, devices: readonly string[]): SmallEntry[] {
  const what = [facts.distro, facts.release, facts.debArch, facts.variant].filter(Boolean).join(' ');
  return [
    { path: 'config', content: lxcConfig(facts, 'system') },
    { path: 'config-user', content: lxcConfig(facts, 'user') },
    {
      path: 'create-message',
      content: `Container made from the rootcast template ${facts.ref}${what ? ` (${what})` : ''}.\n`,
    },
    { path: 'excludes-user', content: devices.map((d) => `${d}\n`).join('') },
    { path: 'templates', content: '/etc/hostname\n/etc/hosts\n' },
  ];
}

async function writeLxc(request: ExportRequest, dir: string): Promise<{ path: string; bytes: number }[]> {
  const level = compressionLevel('xz', request.level);
  const { stream, stats } = templateTar(request.store, request.details, {
    sourceDateEpoch: request.facts.clampEpoch,
    walk: true,
    reporter: request.reporter,
  });
  const rootfs = join(dir, 'rootfs.tar.xz');
  const rootfsBytes = await writeChunksToFile(
    rootfs,
    compressChunks(stream, 'xz', level, request.signal),
    request.signal,
  );
  const meta = smallTar(lxcMetaEntries(request.facts, stats?.devices ?? []), request.facts.epoch);
  const metaPath = join(dir, 'meta.tar.xz');
  const metaBytes = await writeChunksToFile(
    metaPath,
    compressChunks(oneChunk(meta), 'xz', level, request.signal),
    request.signal,
  );
  return [
    { path: 'meta.tar.xz', bytes: metaBytes },
    { path: 'rootfs.tar.xz', bytes: rootfsBytes },
  ];
}

export const lxcExporter: Exporter = {
  format: 'lxc',
  compressions: ['xz'],
  writes: () => 'directory',
  exampleName: 'lxc',
  async export(request) {
    const files = await atomicDirectory(request.output, (dir) => writeLxc(request, dir));
    return {
      output: request.output,
      files: files.map((f) => ({ path: join(request.output, f.path), bytes: f.bytes })),
      compression: 'xz',
    };
  },
};

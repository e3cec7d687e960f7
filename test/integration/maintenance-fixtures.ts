import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../../src/core/digest.js';
import { createStagingDir } from '../../src/store/layers.js';
import { type CommitTemplateResult, commitTemplate } from '../../src/store/templates.js';

/** Small committed templates for the gc, fsck and diff tests: no Debian build, no root. */
export const EPOCH = 1_700_000_000;

/** A lock text in the real schema listing `packages` (name → content of its .deb). */
export function lockText(
  name: string,
  packages: Record<string, { version: string; content: string }>,
): string {
  return `${JSON.stringify(
    {
      arch: 'amd64',
      distro: 'debian',
      lockVersion: 1,
      packages: Object.entries(packages).map(([pkg, p]) => ({
        arch: 'amd64',
        name: pkg,
        path: `pool/main/${pkg}.deb`,
        repository: 'debian',
        sha256: sha256Hex(p.content),
        size: p.content.length,
        version: p.version,
      })),
      recipe: { digest: `sha256:${'1'.repeat(64)}`, name, version: '1.0' },
      release: '12',
      repositories: [],
      variant: 'minbase',
    },
    null,
    2,
  )}\n`;
}

/** Commits a tree of small files as `name:1.0` with its own cache key. */
export async function commitSmall(
  store: string,
  name: string,
  files: Record<string, string>,
  lock: string,
): Promise<CommitTemplateResult> {
  const tree = await createStagingDir(store);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(tree, path, '..'), { recursive: true });
    await writeFile(join(tree, path), content);
  }
  return commitTemplate({
    store,
    name,
    version: '1.0',
    tree,
    sourceDateEpoch: EPOCH,
    clampTree: true,
    arch: 'amd64',
    lock,
    recipeDigest: `sha256:${'1'.repeat(64)}`,
    cacheKey: `sha256:${sha256Hex(name)}`,
  });
}

/**
 * Writes a container record on `template` (copy driver, no tree): what gc and fsck read to
 * know which templates and layers containers use.
 */
export function writeContainerSync(
  store: string,
  name: string,
  template: CommitTemplateResult,
  ref?: string,
): void {
  const dir = join(store, 'containers', name);
  mkdirSync(dir, { recursive: true });
  const record = {
    schema: 1,
    name,
    template: { ...(ref ? { ref } : {}), digest: template.manifestDigest },
    layers: template.layers.map((l) => l.diffId),
    driver: 'copy',
    created: '2024-01-01T00:00:00.000Z',
    hostname: name,
    values: {},
    config: { env: [], cmd: ['/bin/sh'] },
  };
  writeFileSync(join(dir, 'container.json'), `${JSON.stringify(record, null, 2)}\n`);
}

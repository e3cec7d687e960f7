import { readFile } from 'node:fs/promises';
import { resolveInRoot } from '../assemble/resolve-in-root.js';
import { parseDeb822 } from '../distro/deb/deb822.js';
import { declaredLicense } from './debian-licenses.js';
import type { SbomPackage } from './spdx.js';

/**
 * Reads what is installed in a finished tree: every `installed` package of the tree's dpkg
 * status (so the SBOM lists exactly what `dpkg-query -W` lists), with the license from its
 * `/usr/share/doc/<pkg>/copyright`. Every path is resolved inside the tree, so a doc
 * directory that is an absolute symlink never reads the host.
 */
export async function collectInstalledPackages(tree: string): Promise<SbomPackage[]> {
  const statusPath = resolveInRoot(tree, '/var/lib/dpkg/status', undefined, { followFinal: true });
  const status = await readFile(statusPath, 'latin1');
  const packages: SbomPackage[] = [];
  for (const stanza of parseDeb822(status, statusPath)) {
    const state = stanza.get('status') ?? '';
    if (!/\binstalled$/.test(state)) continue;
    const name = stanza.get('package');
    const version = stanza.get('version');
    const arch = stanza.get('architecture');
    if (!name || !version || !arch) continue;
    const sourceField = stanza.get('source');
    const match = sourceField ? /^(\S+)(?:\s+\((\S+)\))?$/.exec(sourceField.trim()) : null;
    const license = await readLicense(tree, name);
    packages.push({
      name,
      version,
      arch,
      source: match?.[1] ?? name,
      ...(match?.[2] ? { sourceVersion: match[2] } : {}),
      ...(license ? { license } : {}),
    });
  }
  return packages;
}

async function readLicense(tree: string, name: string): Promise<string | undefined> {
  try {
    const path = resolveInRoot(tree, `/usr/share/doc/${name}/copyright`, undefined, { followFinal: true });
    return declaredLicense(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

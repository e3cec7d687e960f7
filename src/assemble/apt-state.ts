import { readFile, writeFile } from 'node:fs/promises';
import type { Variant } from '../recipe/types.js';
import { VARIANT_PRIORITIES } from '../resolve/variants.js';
import { installPhases } from './configure.js';
import { parseControl } from './dpkg-db.js';
import { resolveInRoot } from './resolve-in-root.js';
import type { UnpackedPackage } from './types.js';

/**
 * apt's record of which packages were installed only as dependencies
 * (`/var/lib/apt/extended_states`), so `apt-mark showauto` and `apt autoremove` behave in
 * a rootcast tree as in one mmdebstrap made. mmdebstrap installs the Essential set with
 * dpkg (nothing marked), then asks apt for the variant's packages: what apt pulls in
 * besides those is marked automatic. rootcast runs no apt, so it writes the same marks.
 */

/**
 * Pure: the packages apt would have marked `Auto-Installed: 1`, sorted by name. Priorities
 * come from the lock (the archive's, as apt sees them), not from each .deb's control file,
 * which can differ (apt is `required` in bookworm's archive but `important` in its .deb).
 */
export function autoInstalledPackages(
  packages: readonly UnpackedPackage[],
  variant: Variant,
  requested: readonly string[],
  archivePriority: ReadonlyMap<string, string>,
): UnpackedPackage[] {
  const [, secondPhase] = installPhases(packages);
  const asked = new Set(requested.map((r) => r.replace(/[=/].*$/, '')));
  if (variant === 'apt') asked.add('apt');
  const priorities = new Set(VARIANT_PRIORITIES[variant]);
  return secondPhase
    .filter((pkg) => {
      if (asked.has(pkg.name)) return false;
      const control = () => new Map(parseControl(pkg.control).map(([k, v]) => [k.toLowerCase(), v]));
      const priority = archivePriority.get(pkg.name) ?? control().get('priority') ?? 'optional';
      return !priorities.has(priority.toLowerCase());
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The file's text: one stanza per package, architecture `all` recorded as the native one (as apt does). */
export function extendedStates(auto: readonly UnpackedPackage[], nativeArch: string): string {
  return auto
    .map((pkg) => {
      const arch = pkg.architecture === 'all' ? nativeArch : pkg.architecture;
      return `Package: ${pkg.name}\nArchitecture: ${arch}\nAuto-Installed: 1\n\n`;
    })
    .join('');
}

export async function writeExtendedStates(
  root: string,
  packages: readonly UnpackedPackage[],
  options: {
    variant: Variant;
    requested: readonly string[];
    arch: string;
    archivePriority: ReadonlyMap<string, string>;
  },
): Promise<number> {
  const auto = autoInstalledPackages(packages, options.variant, options.requested, options.archivePriority);
  if (auto.length === 0) return 0;
  const path = resolveInRoot(root, '/var/lib/apt/extended_states');
  // A child layer adds its marks to its parent's: the file stays one stanza per package, by name.
  const existing = await readFile(path, 'utf8').catch(() => '');
  await writeFile(path, mergeExtendedStates(existing, extendedStates(auto, options.arch)), { mode: 0o644 });
  return auto.length;
}

/** Pure: the stanzas of both texts, sorted by package name (then architecture); `added` wins. */
export function mergeExtendedStates(existing: string, added: string): string {
  const stanzas = new Map<string, string>();
  for (const text of [existing, added]) {
    for (const block of text.split(/\n\n+/)) {
      const trimmed = block.trim();
      if (trimmed === '') continue;
      const name = /^Package: (.+)$/m.exec(trimmed)?.[1] ?? '';
      const arch = /^Architecture: (.+)$/m.exec(trimmed)?.[1] ?? '';
      stanzas.set(`${name}\0${arch}`, `${trimmed}\n\n`);
    }
  }
  return [...stanzas.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, stanza]) => stanza)
    .join('');
}

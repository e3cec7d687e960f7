import { describe, expect, it } from 'vitest';
import { autoInstalledPackages, extendedStates } from '../../src/assemble/apt-state.js';
import type { UnpackedPackage } from '../../src/assemble/types.js';

function pkg(name: string, fields: string, architecture = 'amd64'): UnpackedPackage {
  return {
    name,
    version: '1',
    architecture,
    multiArch: 'no',
    control: `Package: ${name}\nVersion: 1\nArchitecture: ${architecture}\n${fields}`,
    controlFiles: new Map(),
    paths: [],
  };
}

describe('apt extended_states', () => {
  const packages = [
    pkg('base', 'Essential: yes\nPriority: required\nDepends: libbase\n'),
    pkg('libbase', 'Priority: optional\n'),
    pkg('apt', 'Priority: important\nDepends: libapt\n'),
    pkg('libapt', 'Priority: optional\n', 'all'),
    pkg('tool', 'Priority: required\nDepends: libtool\n'),
    pkg('libtool', 'Priority: optional\n'),
  ];

  it('marks the second phase packages the variant did not ask for, using the archive priority', () => {
    // The archive says apt is required even though its .deb says important (as in bookworm).
    const archive = new Map([['apt', 'required']]);
    expect(autoInstalledPackages(packages, 'minbase', [], archive).map((p) => p.name)).toEqual([
      'libapt',
      'libtool',
    ]);
    // Without the archive's word, the .deb's own priority decides.
    expect(autoInstalledPackages(packages, 'minbase', [], new Map()).map((p) => p.name)).toEqual([
      'apt',
      'libapt',
      'libtool',
    ]);
    // A package the recipe asks for by name is manual.
    expect(autoInstalledPackages(packages, 'minbase', ['libtool'], archive).map((p) => p.name)).toEqual([
      'libapt',
    ]);
    // The essential set is installed by dpkg: never marked.
    expect(autoInstalledPackages(packages, 'essential', [], archive).map((p) => p.name)).not.toContain(
      'libbase',
    );
  });

  it('writes apt stanzas, with arch all recorded as the native architecture', () => {
    expect(extendedStates([pkg('libapt', '', 'all')], 'amd64')).toBe(
      'Package: libapt\nArchitecture: amd64\nAuto-Installed: 1\n\n',
    );
  });
});

import { describe, expect, it } from 'vitest';
import { declaredLicense, spdxExpression, spdxLicenseId } from '../../src/sbom/debian-licenses.js';
import { debPurl, spdxDocument } from '../../src/sbom/spdx.js';

describe('Debian licenses as SPDX', () => {
  it('maps Debian short names to SPDX ids, and the rest to LicenseRefs', () => {
    expect(spdxLicenseId('GPL-2+')).toBe('GPL-2.0-or-later');
    expect(spdxLicenseId('GPL-2.0+')).toBe('GPL-2.0-or-later');
    expect(spdxLicenseId('Expat')).toBe('MIT');
    expect(spdxLicenseId('BSD-3-clause')).toBe('BSD-3-Clause');
    expect(spdxLicenseId('GPL-2+ with OpenSSL exception')).toBe('GPL-2.0-or-later');
    expect(spdxLicenseId('Some Odd/License')).toBe('LicenseRef-Some-Odd-License');
  });
  it('keeps the structure of or/and expressions', () => {
    expect(spdxExpression('GPL-1+ or Artistic')).toBe('GPL-1.0-or-later OR Artistic-1.0');
    expect(spdxExpression('LGPL-2.1+ and BSD-3-clause')).toBe('LGPL-2.1-or-later AND BSD-3-Clause');
  });
  it('reads the Files: * paragraph of a machine-readable copyright file only', () => {
    const dep5 = [
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
      'Upstream-Name: demo',
      '',
      'Files: debian/*',
      'License: GPL-3+',
      '',
      'Files: *',
      'Copyright: someone',
      'License: GPL-2+',
      '',
      'License: GPL-2+',
      ' text',
    ].join('\n');
    expect(declaredLicense(dep5)).toBe('GPL-2.0-or-later');
    expect(declaredLicense('This package was debianized by someone.\nLicense: GPL\n')).toBeUndefined();
  });
});

describe('SPDX 2.3 documents', () => {
  const options = {
    name: 'demo',
    version: '1.0',
    distro: 'debian',
    release: 'bookworm',
    epoch: 1_700_000_000,
    namespaceDigest: `sha256:${'a'.repeat(64)}`,
    packages: [
      { name: 'zlib1g', version: '1:1.2.13.dfsg-1', arch: 'amd64', source: 'zlib', license: 'Zlib' },
      { name: 'bash', version: '5.2.15-2+b2', arch: 'amd64', source: 'bash', sourceVersion: '5.2.15-2' },
    ],
  };
  it('lists each package with purl, source and license, sorted, deterministically', () => {
    const doc = spdxDocument(options) as {
      spdxVersion: string;
      creationInfo: { created: string };
      packages: {
        name: string;
        licenseDeclared: string;
        sourceInfo?: string;
        externalRefs: { referenceLocator: string }[];
      }[];
    };
    expect(doc.spdxVersion).toBe('SPDX-2.3');
    expect(doc.creationInfo.created).toBe('2023-11-14T22:13:20Z');
    expect(doc.packages.map((p) => p.name)).toEqual(['bash', 'zlib1g']);
    expect(doc.packages[0]?.licenseDeclared).toBe('NOASSERTION');
    expect(doc.packages[0]?.sourceInfo).toBe('built from source package bash 5.2.15-2');
    expect(doc.packages[1]?.licenseDeclared).toBe('Zlib');
    expect(doc.packages[1]?.externalRefs[0]?.referenceLocator).toBe(
      'pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-bookworm',
    );
    expect(JSON.stringify(spdxDocument({ ...options, packages: [...options.packages].reverse() }))).toBe(
      JSON.stringify(doc),
    );
  });
  it('builds purls per the deb type', () => {
    expect(debPurl('debian', 'trixie', { name: 'libc6', version: '2.41-12', arch: 'amd64' })).toBe(
      'pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-trixie',
    );
  });
});

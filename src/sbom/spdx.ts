/**
 * The SPDX 2.3 document a template carries: one package per installed Debian package, with
 * its version, architecture, `pkg:deb` purl, source package and the license its copyright
 * file declares. Pure and deterministic: the same installed set, epoch and name give the
 * same bytes, so the SBOM never changes a reproducible build's digest by itself.
 */
export interface SbomPackage {
  name: string;
  version: string;
  arch: string;
  /** Source package name, when it differs from the binary's or is recorded. */
  source?: string;
  /** Source version, when the status file records one different from `version`. */
  sourceVersion?: string;
  /** An SPDX license expression, or undefined when the copyright file states none we can read. */
  license?: string;
}

export interface SbomOptions {
  /** Template name and version: the document's subject. */
  name: string;
  version: string;
  /** `debian` (purl namespace) and its release, for the purl's `distro` qualifier. */
  distro: string;
  release: string;
  /** SOURCE_DATE_EPOCH in seconds: the document's creation time. */
  epoch: number;
  /** A digest that identifies this build's inputs, for the unique document namespace. */
  namespaceDigest: string;
  packages: readonly SbomPackage[];
}

export const SPDX_MEDIA_TYPE = 'application/spdx+json';

/** SPDX ids allow letters, digits, `.` and `-` only. */
function spdxId(pkg: SbomPackage): string {
  return `SPDXRef-Package-deb-${`${pkg.name}-${pkg.arch}`.replace(/[^A-Za-z0-9.-]/g, '-')}`;
}

/** Package URL per the purl spec's `deb` type. */
export function debPurl(distro: string, release: string, pkg: SbomPackage): string {
  const qualifiers = [
    `arch=${encodeURIComponent(pkg.arch)}`,
    `distro=${encodeURIComponent(`${distro}-${release}`)}`,
  ];
  return `pkg:deb/${distro}/${encodeURIComponent(pkg.name)}@${encodeURIComponent(pkg.version)}?${qualifiers.join('&')}`;
}

export function spdxDocument(options: SbomOptions): Record<string, unknown> {
  const packages = [...options.packages].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : a.arch < b.arch ? -1 : a.arch > b.arch ? 1 : 0,
  );
  const hex = options.namespaceDigest.replace(/^sha256:/, '');
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${options.name}:${options.version}`,
    documentNamespace: `urn:rootcast:spdx:${options.name}:${options.version}:${hex}`,
    creationInfo: {
      created: new Date(options.epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      creators: ['Tool: rootcast'],
    },
    documentDescribes: packages.map(spdxId),
    packages: packages.map((pkg) => ({
      SPDXID: spdxId(pkg),
      name: pkg.name,
      versionInfo: pkg.version,
      supplier: 'NOASSERTION',
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: pkg.license ?? 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      ...(pkg.source
        ? { sourceInfo: `built from source package ${pkg.source} ${pkg.sourceVersion ?? pkg.version}` }
        : {}),
      externalRefs: [
        {
          referenceCategory: 'PACKAGE-MANAGER',
          referenceType: 'purl',
          referenceLocator: debPurl(options.distro, options.release, pkg),
        },
      ],
    })),
  };
}

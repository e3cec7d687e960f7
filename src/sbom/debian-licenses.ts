/**
 * Debian copyright files (DEP-5, "copyright-format/1.0") name licenses with Debian short
 * names (`GPL-2+`, `Expat`, `BSD-3-clause`); SPDX wants its own identifiers. This maps the
 * common ones and turns the rest into `LicenseRef-…`, so every value is a valid SPDX
 * expression. Pure.
 */
const KNOWN: Record<string, string> = {
  'gpl-1': 'GPL-1.0-only',
  'gpl-1+': 'GPL-1.0-or-later',
  'gpl-2': 'GPL-2.0-only',
  'gpl-2+': 'GPL-2.0-or-later',
  'gpl-3': 'GPL-3.0-only',
  'gpl-3+': 'GPL-3.0-or-later',
  'lgpl-2': 'LGPL-2.0-only',
  'lgpl-2+': 'LGPL-2.0-or-later',
  'lgpl-2.1': 'LGPL-2.1-only',
  'lgpl-2.1+': 'LGPL-2.1-or-later',
  'lgpl-3': 'LGPL-3.0-only',
  'lgpl-3+': 'LGPL-3.0-or-later',
  'agpl-3': 'AGPL-3.0-only',
  'agpl-3+': 'AGPL-3.0-or-later',
  'gfdl-1.3': 'GFDL-1.3-only',
  'gfdl-1.3+': 'GFDL-1.3-or-later',
  expat: 'MIT',
  mit: 'MIT',
  'bsd-2-clause': 'BSD-2-Clause',
  'bsd-3-clause': 'BSD-3-Clause',
  'bsd-4-clause': 'BSD-4-Clause',
  isc: 'ISC',
  zlib: 'Zlib',
  'apache-2.0': 'Apache-2.0',
  'artistic-1.0': 'Artistic-1.0',
  artistic: 'Artistic-1.0',
  'artistic-2.0': 'Artistic-2.0',
  'mpl-1.1': 'MPL-1.1',
  'mpl-2.0': 'MPL-2.0',
  'cc0-1.0': 'CC0-1.0',
  'public-domain': 'LicenseRef-public-domain',
  'bsl-1.0': 'BSL-1.0',
  openssl: 'OpenSSL',
  'psf-2': 'PSF-2.0',
  curl: 'curl',
};

function licenseRef(name: string): string {
  return `LicenseRef-${name.replace(/[^A-Za-z0-9.-]/g, '-')}`;
}

/** One Debian short name (`GPL-2+`, `GPL-2.0+ with OpenSSL exception`) as an SPDX id. */
export function spdxLicenseId(debianName: string): string {
  const name = debianName.trim();
  const plain = name.replace(/\s+with\s+.*$/i, '');
  return (
    KNOWN[plain.toLowerCase()] ?? KNOWN[plain.toLowerCase().replace(/\.0(\+?)$/, '$1')] ?? licenseRef(plain)
  );
}

/** A DEP-5 `License:` first line (`GPL-2+ or Artistic`, `MIT and BSD-3-clause`) as an SPDX expression. */
export function spdxExpression(licenseLine: string): string | undefined {
  const line = licenseLine.trim();
  if (!line) return undefined;
  const terms = line.split(/\s+(or|and)\s+|,\s*(or|and)\s+/i).filter((t) => t !== undefined && t !== '');
  const out: string[] = [];
  for (const term of terms) {
    const lower = term.toLowerCase();
    if (lower === 'or' || lower === 'and') out.push(lower.toUpperCase());
    else out.push(spdxLicenseId(term.replace(/,$/, '')));
  }
  return out.join(' ');
}

/**
 * The license a DEP-5 copyright file declares for the package as a whole: the `License:` of
 * the `Files: *` paragraph. `undefined` when the file is not machine-readable or has none.
 */
export function declaredLicense(copyright: string): string | undefined {
  if (!/^Format:\s*\S*copyright-format\/1\.0/im.test(copyright)) return undefined;
  for (const paragraph of copyright.split(/\n\s*\n/)) {
    if (!/^Files:\s*\*\s*$/m.test(paragraph)) continue;
    const license = /^License:[ \t]*(.*)$/m.exec(paragraph)?.[1];
    return license ? spdxExpression(license) : undefined;
  }
  return undefined;
}

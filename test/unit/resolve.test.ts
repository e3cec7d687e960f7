import { describe, expect, it } from 'vitest';
import { RootcastError } from '../../src/core/errors.js';
import { parseProvides, parseRelationGroups, parseRelationList } from '../../src/distro/deb/relations.js';
import type { BinaryPackage, MultiArch, RepoIndex } from '../../src/distro/deb/types.js';
import { resolve } from '../../src/resolve/index.js';
import type { ResolveRequest, Variant } from '../../src/resolve/types.js';

// Synthetic packages and indexes, with relation fields written as in a Packages file.
interface PkgSpec {
  version?: string;
  arch?: string;
  essential?: boolean;
  priority?: string;
  multiArch?: MultiArch;
  preDepends?: string;
  depends?: string;
  recommends?: string;
  conflicts?: string;
  breaks?: string;
  provides?: string;
}

function pkg(name: string, spec: PkgSpec = {}, repository = 'bookworm/main'): BinaryPackage {
  const version = spec.version ?? '1.0-1';
  return {
    name,
    version,
    architecture: spec.arch ?? 'amd64',
    multiArch: spec.multiArch ?? 'no',
    essential: spec.essential ?? false,
    priority: spec.priority ?? 'optional',
    preDepends: spec.preDepends ? parseRelationGroups(spec.preDepends) : [],
    depends: spec.depends ? parseRelationGroups(spec.depends) : [],
    recommends: spec.recommends ? parseRelationGroups(spec.recommends) : [],
    conflicts: spec.conflicts ? parseRelationList(spec.conflicts) : [],
    breaks: spec.breaks ? parseRelationList(spec.breaks) : [],
    provides: spec.provides ? parseProvides(spec.provides) : [],
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_${spec.arch ?? 'amd64'}.deb`,
    size: 1000,
    sha256: '0'.repeat(64),
    repository,
  };
}

function repo(
  suite: string,
  packages: Record<string, PkgSpec>,
  options: { pin?: number; codename?: string } = {},
): RepoIndex {
  const id = `${suite}/main`;
  return {
    id,
    repository: {
      id,
      uriTemplate: '{{mirror.debian}}',
      uri: 'http://mirror.test/debian',
      suite,
      component: 'main',
      arch: 'amd64',
    },
    release: {
      sha256: '1'.repeat(64),
      date: '2025-01-01T00:00:00.000Z',
      suite,
      codename: options.codename ?? suite,
      notAutomatic: false,
      butAutomaticUpgrades: false,
      acquireByHash: true,
      architectures: ['amd64'],
      components: ['main'],
      files: new Map(),
    },
    pin: options.pin ?? 500,
    packages: Object.entries(packages).map(([name, spec]) => pkg(name.replace(/#.*$/, ''), spec, id)),
  };
}

/** A tiny distribution with an essential set, apt and the priority tiers. */
function miniDistro(): Record<string, PkgSpec> {
  return {
    'base-files': { essential: true, priority: 'required' },
    bash: { essential: true, priority: 'required', preDepends: 'libc6 (>= 2.36)', depends: 'base-files' },
    libc6: { version: '2.36-9', priority: 'optional', multiArch: 'same', depends: 'libgcc-s1' },
    'libgcc-s1': { priority: 'optional', multiArch: 'same' },
    dpkg: { essential: true, priority: 'required', preDepends: 'libc6, tar (>= 1.28)' },
    tar: { version: '1.34+dfsg-1', essential: true, priority: 'required' },
    mawk: { priority: 'required', provides: 'awk' },
    gawk: { priority: 'optional', provides: 'awk' },
    apt: { priority: 'required', depends: 'libapt-pkg6.0, gpgv | gpgv2' },
    'libapt-pkg6.0': { priority: 'optional', depends: 'libc6' },
    gpgv: { priority: 'important' },
    gpgv2: { priority: 'optional' },
    'init-system-helpers': { priority: 'optional', depends: 'usrmerge | usr-is-merged' },
    usrmerge: { priority: 'optional', depends: 'perl:any' },
    perl: { priority: 'standard', multiArch: 'allowed' },
    'usr-is-merged': { priority: 'optional' },
    cron: { priority: 'important', depends: 'init-system-helpers' },
    less: { priority: 'standard', recommends: 'gawk' },
    tool: { priority: 'optional', depends: 'awk' },
  };
}

function names(indexes: RepoIndex[], request: Partial<ResolveRequest> = {}): string[] {
  const req: ResolveRequest = { arch: 'amd64', variant: 'essential', install: [], exclude: [], ...request };
  return resolve(req, indexes).packages.map((p) => p.name);
}

function failure(indexes: RepoIndex[], request: Partial<ResolveRequest>): RootcastError {
  try {
    names(indexes, request);
  } catch (error) {
    if (error instanceof RootcastError) return error;
    throw error;
  }
  throw new Error('resolve() did not fail');
}

const distro = () => [repo('bookworm', miniDistro())];

describe('variants', () => {
  const essentialSet = ['base-files', 'bash', 'dpkg', 'libc6', 'libgcc-s1', 'tar'];
  const cases: [Variant, string[]][] = [
    ['essential', essentialSet],
    ['apt', [...essentialSet, 'apt', 'gpgv', 'libapt-pkg6.0']],
    ['minbase', [...essentialSet, 'apt', 'gpgv', 'libapt-pkg6.0', 'mawk']],
    ['required', [...essentialSet, 'apt', 'gpgv', 'libapt-pkg6.0', 'mawk']],
    [
      'important',
      [
        ...essentialSet,
        'apt',
        'cron',
        'gpgv',
        'init-system-helpers',
        'libapt-pkg6.0',
        'mawk',
        'perl',
        'usrmerge',
      ],
    ],
    [
      'standard',
      [
        ...essentialSet,
        ...[
          'apt',
          'cron',
          'gpgv',
          'init-system-helpers',
          'less',
          'libapt-pkg6.0',
          'mawk',
          'perl',
          'usrmerge',
        ],
      ],
    ],
  ];
  it.each(cases)(
    '%s selects its roots and their Pre-Depends/Depends, not Recommends',
    (variant, expected) => {
      expect(names(distro(), { variant })).toEqual([...expected].sort());
    },
  );

  it('takes priority roots only from the release, but candidates from every suite', () => {
    const indexes = [
      repo('bookworm', miniDistro()),
      repo('bookworm-updates', {
        tar: { essential: true, priority: 'required', version: '1.34+dfsg-1.2' },
        extra: { priority: 'required' },
      }),
    ];
    const result = resolve(
      { arch: 'amd64', variant: 'minbase', install: [], exclude: [], release: 'bookworm' },
      indexes,
    );
    expect(result.packages.map((p) => p.name)).not.toContain('extra');
    expect(result.packages.find((p) => p.name === 'tar')?.version).toBe('1.34+dfsg-1.2');
    expect(names(indexes, { variant: 'minbase' })).toContain('extra');
  });

  it('returns one package per name, sorted, and is deterministic', () => {
    const indexes = distro();
    const first = resolve({ arch: 'amd64', variant: 'standard', install: [], exclude: [] }, indexes);
    const second = resolve({ arch: 'amd64', variant: 'standard', install: [], exclude: [] }, indexes);
    const list = first.packages.map((p) => p.name);
    expect(list).toEqual([...new Set(list)].sort());
    expect(second.packages).toEqual(first.packages);
  });
});

describe('candidates', () => {
  const indexes = () => [
    repo('bookworm', { foo: { version: '1.0-1' } }),
    repo('bookworm-updates', { foo: { version: '1.0-2' } }),
    repo('bookworm-backports', { foo: { version: '2.0-1' } }, { pin: 100 }),
  ];
  const versionOf = (install: string[]) =>
    resolve({ arch: 'amd64', variant: 'essential', install, exclude: [] }, indexes()).packages.find(
      (p) => p.name === 'foo',
    )?.version;

  it('prefers the higher pin, then the higher version', () => {
    expect(versionOf(['foo'])).toBe('1.0-2');
  });

  it('honours name=version and name/suite', () => {
    expect(versionOf(['foo=2.0-1'])).toBe('2.0-1');
    expect(versionOf(['foo/bookworm'])).toBe('1.0-1');
    expect(versionOf(['foo/bookworm-backports'])).toBe('2.0-1');
    expect(failure(indexes(), { install: ['foo=3'] }).message).toMatch(/no version 3 of foo/);
  });

  it('ignores other architectures and takes arch all', () => {
    const spec: Record<string, PkgSpec> = {
      tool: { depends: 'helper, data' },
      helper: { arch: 'arm64' },
      data: { arch: 'all' },
    };
    expect(failure([repo('bookworm', spec)], { install: ['tool'] }).message).toBe(
      'tool depends on helper but helper exists only for other architectures than amd64',
    );
    // Indexes are immutable (the resolver caches what it derives from them): build new ones.
    const both = [repo('bookworm', spec), repo('bookworm-updates', { helper: {} })];
    expect(names(both, { install: ['tool'] })).toEqual(['data', 'helper', 'tool']);
  });
});

describe('alternatives and virtual packages', () => {
  it('takes the first alternative that installs', () => {
    expect(names(distro(), { install: ['init-system-helpers'] })).toContain('usrmerge');
  });

  it('prefers an alternative that is already selected', () => {
    const result = names(distro(), { install: ['init-system-helpers', 'usr-is-merged'] });
    expect(result).toContain('usr-is-merged');
    expect(result).not.toContain('usrmerge');
  });

  it('falls back when the first alternative cannot be installed (perl:any needs Multi-Arch: allowed)', () => {
    const spec = miniDistro();
    spec.perl = { priority: 'standard', multiArch: 'no' };
    const result = names([repo('bookworm', spec)], { install: ['init-system-helpers'] });
    expect(result).toContain('usr-is-merged');
    expect(result).not.toContain('usrmerge');
    expect(result).not.toContain('perl');
  });

  it('chooses among providers by priority, and skips excluded ones', () => {
    expect(names(distro(), { install: ['tool'] })).toContain('mawk');
    const withoutMawk = names(distro(), { install: ['tool'], exclude: ['mawk'] });
    expect(withoutMawk).toContain('gawk');
    expect(withoutMawk).not.toContain('mawk');
  });

  it('prefers an Essential provider over a higher priority', () => {
    const spec = miniDistro();
    spec.gawk = { priority: 'optional', essential: true, provides: 'awk' };
    expect(names([repo('bookworm', spec)], { install: ['tool'] })).not.toContain('mawk');
  });

  it('satisfies versioned dependencies only with versioned provides', () => {
    const spec: Record<string, PkgSpec> = { ...miniDistro(), needy: { depends: 'awk (>= 5)' } };
    expect(failure([repo('bookworm', spec)], { install: ['needy'] }).message).toBe(
      'needy depends on awk (>= 5) but awk is a virtual package and no provider satisfies awk (>= 5) (provided by mawk, gawk)',
    );
    spec.gawk = { provides: 'awk (= 5.2)' };
    expect(names([repo('bookworm', spec)], { install: ['needy'] })).toContain('gawk');
  });

  it('installs the only provider of a virtual name, and refuses to guess between several', () => {
    const spec = { ...miniDistro(), exim: { provides: 'mail-transport-agent' } };
    expect(names([repo('bookworm', spec)], { install: ['mail-transport-agent'] })).toContain('exim');
    const error = failure([repo('bookworm', spec)], { install: ['awk'] });
    expect(error.code).toBe('RESOLVE_UNSATISFIABLE');
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe('packages.install[0]: awk is a virtual package provided by gawk, mawk');
  });
});

describe('conflicts', () => {
  it('skips an alternative that conflicts with a selected package', () => {
    const spec = {
      ...miniDistro(),
      x: { depends: 'mta-a | mta-b' },
      'mta-a': { conflicts: 'bash' },
      'mta-b': {},
    };
    const result = names([repo('bookworm', spec)], { install: ['x'] });
    expect(result).toContain('mta-b');
    expect(result).not.toContain('mta-a');
  });

  it('reports Conflicts between requested packages', () => {
    const spec = { ...miniDistro(), a: {}, b: { conflicts: 'a' } };
    const error = failure([repo('bookworm', spec)], { install: ['a', 'b'] });
    expect(error.code).toBe('RESOLVE_CONFLICT');
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe('b conflicts with a');
  });

  it('applies versioned Breaks only to matching versions', () => {
    const broken = { ...miniDistro(), a: { version: '1.0' }, b: { breaks: 'a (<< 2)' } };
    expect(failure([repo('bookworm', broken)], { install: ['a', 'b'] }).message).toBe('b breaks a (<< 2)');
    const fine = { ...miniDistro(), a: { version: '2.0' }, b: { breaks: 'a (<< 2)' } };
    expect(names([repo('bookworm', fine)], { install: ['a', 'b'] })).toEqual(
      expect.arrayContaining(['a', 'b']),
    );
  });
});

describe('errors', () => {
  it('names an unknown install entry, its position and close names', () => {
    const error = failure(distro(), { install: ['bash', 'gawkk'] });
    expect(error.code).toBe('RESOLVE_UNKNOWN_PACKAGE');
    expect(error.exitCode).toBe(2);
    expect(error.details).toMatchObject({ package: 'gawkk', field: 'install', index: 1 });
    expect(error.hint).toContain("'gawk'");
  });

  it('names an unknown exclude entry', () => {
    const error = failure(distro(), { exclude: ['nonesuch'] });
    expect(error.code).toBe('RESOLVE_UNKNOWN_PACKAGE');
    expect(error.details).toMatchObject({ package: 'nonesuch', field: 'exclude', index: 0 });
  });

  it('explains a dependency on a version the repositories do not have', () => {
    const spec = {
      ...miniDistro(),
      'ca-certificates': { depends: 'openssl (>= 3.0.9)' },
      openssl: { version: '3.0.8-1' },
    };
    const error = failure([repo('bookworm', spec)], { install: ['ca-certificates'] });
    expect(error.code).toBe('RESOLVE_UNSATISFIABLE');
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(
      'ca-certificates depends on openssl (>= 3.0.9) but the newest openssl is 3.0.8-1',
    );
    expect(error.details).toMatchObject({ field: 'install', index: 0 });
    expect(error.hint).toMatch(/newer openssl/);
  });

  it('gives the whole chain for a deep failure, with the rejected candidates', () => {
    const spec = {
      ...miniDistro(),
      web: { depends: 'ca-certificates' },
      'ca-certificates': { depends: 'openssl (>= 3.0.9)' },
      openssl: { version: '3.0.8-1' },
    };
    const error = failure([repo('bookworm', spec)], { install: ['web'] });
    expect(error.message).toBe(
      'web → ca-certificates: ca-certificates depends on openssl (>= 3.0.9) but the newest openssl is 3.0.8-1',
    );
    expect(error.details?.rejected).toEqual(
      expect.arrayContaining([expect.objectContaining({ package: 'openssl', version: '3.0.8-1' })]),
    );
  });

  it('blames the recipe when an excluded package is a hard dependency', () => {
    const error = failure(distro(), { exclude: ['tar'] });
    expect(error.code).toBe('RESOLVE_UNSATISFIABLE');
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe('dpkg pre-depends on tar (>= 1.28) but tar is excluded by packages.exclude');
    expect(error.hint).toMatch(/packages\.exclude/);
  });

  it('blames the repositories when the variant itself cannot be satisfied', () => {
    const spec = miniDistro();
    spec.dpkg = { essential: true, priority: 'required', depends: 'libmissing' };
    const error = failure([repo('bookworm', spec)], {});
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe(
      'dpkg depends on libmissing but no package libmissing exists in the configured repositories',
    );
  });

  it('refuses a package that is both installed and excluded', () => {
    const error = failure(distro(), { install: ['gawk'], exclude: ['gawk'] });
    expect(error.exitCode).toBe(2);
    expect(error.details).toMatchObject({ field: 'install', index: 0 });
  });
});

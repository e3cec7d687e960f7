import { describe, expect, it } from 'vitest';
import { memberRelativePath, resolveInRoot, type SymlinkReader } from '../../src/assemble/resolve-in-root.js';
import { isRootcastError } from '../../src/core/errors.js';

/** A tree of symlinks in memory: absolute in-root path → target. */
function links(map: Record<string, string>): SymlinkReader & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    readlink(path) {
      seen.push(path);
      return map[path];
    },
  };
}

const R = '/srv/root';

describe('resolveInRoot', () => {
  it('treats absolute paths as relative to the root and drops . and empty components', () => {
    expect(resolveInRoot(R, '/etc//passwd', links({}))).toBe(`${R}/etc/passwd`);
    expect(resolveInRoot(R, './usr/./bin/', links({}))).toBe(`${R}/usr/bin`);
    expect(resolveInRoot(R, '', links({}))).toBe(R);
    expect(resolveInRoot(R, '/', links({}))).toBe(R);
  });

  it('clamps .. at the root', () => {
    expect(resolveInRoot(R, '../../etc/shadow', links({}))).toBe(`${R}/etc/shadow`);
    expect(resolveInRoot(R, 'usr/../../..', links({}))).toBe(R);
    expect(resolveInRoot(R, 'a/b/../c', links({}))).toBe(`${R}/a/c`);
  });

  it('follows merged-/usr links relative to the link directory', () => {
    const fs = links({ [`${R}/bin`]: 'usr/bin' });
    expect(resolveInRoot(R, './bin/sh', fs)).toBe(`${R}/usr/bin/sh`);
  });

  it('keeps absolute and escaping link targets inside the root', () => {
    const fs = links({
      [`${R}/evil`]: '/',
      [`${R}/up`]: '../../../../..',
      [`${R}/usr/lib/abs`]: '/etc',
      [`${R}/etc/deep`]: '../../../../../../tmp',
    });
    expect(resolveInRoot(R, 'evil/etc/passwd', fs)).toBe(`${R}/etc/passwd`);
    expect(resolveInRoot(R, 'up/tmp/x', fs)).toBe(`${R}/tmp/x`);
    expect(resolveInRoot(R, 'usr/lib/abs/deep/y', fs)).toBe(`${R}/tmp/y`);
  });

  it('does not follow the final component unless asked', () => {
    const fs = links({ [`${R}/etc/link`]: '/target' });
    expect(resolveInRoot(R, 'etc/link', fs)).toBe(`${R}/etc/link`);
    expect(resolveInRoot(R, 'etc/link', fs, { followFinal: true })).toBe(`${R}/target`);
  });

  it('reports every link it follows', () => {
    const followed: string[] = [];
    const fs = links({ [`${R}/a`]: 'b', [`${R}/b`]: '/c' });
    expect(resolveInRoot(R, 'a/x', fs, { onSymlink: (p) => followed.push(p) })).toBe(`${R}/c/x`);
    expect(followed).toEqual([`${R}/a`, `${R}/b`]);
  });

  it('gives up on symlink loops with a clear error', () => {
    const fs = links({ [`${R}/a`]: 'b', [`${R}/b`]: 'a' });
    let error: unknown;
    try {
      resolveInRoot(R, 'a/x', fs);
    } catch (e) {
      error = e;
    }
    expect(isRootcastError(error) && error.code).toBe('RESOLVE_TOO_MANY_SYMLINKS');
  });
});

describe('memberRelativePath', () => {
  it('normalises package member names', () => {
    expect(memberRelativePath('./')).toBe('');
    expect(memberRelativePath('./usr/bin/')).toBe('usr/bin');
    expect(memberRelativePath('usr//share/./doc')).toBe('usr/share/doc');
  });

  it('rejects absolute names and .. components', () => {
    expect(memberRelativePath('/etc/passwd')).toBeUndefined();
    expect(memberRelativePath('./../x')).toBeUndefined();
    expect(memberRelativePath('./usr/../etc')).toBeUndefined();
    expect(memberRelativePath('./usr/..foo')).toBe('usr/..foo');
  });
});

import { describe, expect, it } from 'vitest';
import { mergeScopes, parseChallenge, tokenFromResponse, tokenUrl } from '../../src/registry/auth.js';
import { authsKeyMatches, credentialsFromDockerConfig } from '../../src/registry/credentials.js';
import { templateTag } from '../../src/registry/pull.js';
import { mountSources, withPushed } from '../../src/registry/pushed-record.js';
import { isLoopbackHost, parseRegistryRef } from '../../src/registry/reference.js';
import { type ImageManifest, MEDIA_TYPE_MANIFEST } from '../../src/store/oci.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('registry references', () => {
  it('parses host, port, nested repositories, tags and digests', () => {
    expect(parseRegistryRef('127.0.0.1:5000/lab/debian:12')).toEqual({
      registry: '127.0.0.1:5000',
      hostname: '127.0.0.1',
      repository: 'lab/debian',
      tag: '12',
    });
    expect(parseRegistryRef(`localhost/a/b/c@${DIGEST}`)).toMatchObject({
      registry: 'localhost',
      repository: 'a/b/c',
      digest: DIGEST,
    });
    expect(parseRegistryRef('[::1]:5000/x')).toMatchObject({ hostname: '::1', repository: 'x' });
    expect(parseRegistryRef('reg.example.test/a__b.c-d')).not.toHaveProperty('tag');
  });

  it.each([
    'debian:12', // no host
    'library/debian', // first component is not a host
    '127.0.0.1:5000/Upper/case',
    '127.0.0.1:5000/a//b',
    '127.0.0.1:5000/a:bad/tag',
    `127.0.0.1:5000/a@sha256:${'A'.repeat(64)}`,
    '127.0.0.1:5000/-a',
    '127.0.0.1:99999/lab/minbase', // port above 65535
    '127.0.0.1:0/lab/minbase', // port 0
    'localhost:65536/x:1',
    '[::1]:70000/x',
    '999.1.1.1:5000/x', // not an IPv4 address, and not a name either
    '[zz]:5000/x',
  ])('refuses %s with REGISTRY_REF_INVALID (exit 2)', (ref) => {
    expect(() => parseRegistryRef(ref)).toThrow(
      expect.objectContaining({ code: 'REGISTRY_REF_INVALID', exitCode: 2 }),
    );
  });

  it('accepts ports 1 to 65535 and says which port is wrong', () => {
    expect(parseRegistryRef('127.0.0.1:1/x').registry).toBe('127.0.0.1:1');
    expect(parseRegistryRef('localhost:65535/x').registry).toBe('localhost:65535');
    expect(parseRegistryRef('[::1]:65535/x').hostname).toBe('::1');
    expect(() => parseRegistryRef('127.0.0.1:99999/lab/minbase')).toThrow(/port 99999 .* 1 and 65535/);
  });

  it.each([
    ['1.2.3:5000/x', 'IPv4 address has four'], // a URL would take it for 1.2.0.3
    ['0:5000/x', 'IPv4 address has four'], // 0.0.0.0 to a URL
    ['127.1:5000/x', 'IPv4 address has four'], // 127.0.0.1 to a URL
    ['1.2.3.4.5:5000/x', 'IPv4 address has four'],
    ['1.2.3.256:5000/x', 'IPv4 address has four'],
    ['010.0.0.1:5000/x', 'IPv4 address has four'], // octal 8.0.0.1 to a URL
    ['0x7f.0.0.1:5000/x', 'IPv4 address has four'], // hex 127.0.0.1 to a URL
    ['reg.0x1:5000/x', 'IPv4 address has four'],
    ['reg.example.42/x', 'IPv4 address has four'],
    ['a..b:5000/x', 'host name is labels'],
    ['reg-.example.test/x', 'host name is labels'],
    ['a.-reg.example/x', 'host name is labels'],
    [`${'a'.repeat(64)}.example/x`, 'host name is labels'],
    ['[1.2.3.4]:5000/x', 'not an IPv6 address'],
  ])('refuses the host of %s before any URL reads it', (ref, why) => {
    expect(() => parseRegistryRef(ref)).toThrow(
      expect.objectContaining({
        code: 'REGISTRY_REF_INVALID',
        exitCode: 2,
        message: expect.stringContaining(why),
      }),
    );
  });

  it('accepts DNS names, full dotted quads and bracketed IPv6 as written', () => {
    expect(parseRegistryRef('0.0.0.0:5000/x').hostname).toBe('0.0.0.0');
    expect(parseRegistryRef('255.255.255.255:1/x').hostname).toBe('255.255.255.255');
    expect(parseRegistryRef('10.0.0.1/x').registry).toBe('10.0.0.1');
    expect(parseRegistryRef('registry:5000/x').hostname).toBe('registry');
    expect(parseRegistryRef('1reg.example-host.test/x').hostname).toBe('1reg.example-host.test');
    expect(parseRegistryRef('reg.42.example/x').hostname).toBe('reg.42.example');
    expect(parseRegistryRef(`${'a'.repeat(63)}.example/x`).repository).toBe('x');
    expect(parseRegistryRef('[::ffff:1.2.3.4]:5000/x').hostname).toBe('::ffff:1.2.3.4');
    expect(parseRegistryRef('[2001:db8::1]/x').hostname).toBe('2001:db8::1');
  });

  it('knows the loopback hosts --insecure may reach', () => {
    expect(['localhost', '127.0.0.1', '::1'].every(isLoopbackHost)).toBe(true);
    expect(['127.0.0.2', 'localhost.example', '0.0.0.0'].some(isLoopbackHost)).toBe(false);
  });
});

describe('WWW-Authenticate challenges and tokens', () => {
  it('reads Bearer and Basic challenges with quoted values', () => {
    expect(
      parseChallenge('Bearer realm="https://auth.test/token",service="reg, one",scope="repository:a/b:pull"'),
    ).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.test/token', service: 'reg, one', scope: 'repository:a/b:pull' },
    });
    expect(parseChallenge('Basic realm="x \\"y\\""')).toEqual({
      scheme: 'basic',
      params: { realm: 'x "y"' },
    });
    expect(parseChallenge(undefined)).toBeUndefined();
  });

  it('merges scopes per repository and builds the token URL', () => {
    expect(mergeScopes(['repository:a:pull,push', 'repository:b:pull', 'repository:a:pull', ''])).toEqual([
      'repository:a:pull,push',
      'repository:b:pull',
    ]);
    const url = tokenUrl({ scheme: 'bearer', params: { realm: 'https://t.test/tok?x=1', service: 's' } }, [
      'repository:a:pull',
    ]);
    expect(url.href).toBe('https://t.test/tok?x=1&service=s&scope=repository%3Aa%3Apull');
    expect(tokenFromResponse({ access_token: 'abc' })).toBe('abc');
    expect(tokenFromResponse({ token: '' })).toBeUndefined();
  });
});

describe('Docker config credentials', () => {
  it('matches auths keys written with or without scheme and path', () => {
    expect(authsKeyMatches('https://127.0.0.1:5000/v1/', '127.0.0.1:5000')).toBe(true);
    expect(authsKeyMatches('127.0.0.1:5000', '127.0.0.1:5000')).toBe(true);
    expect(authsKeyMatches('127.0.0.1:5001', '127.0.0.1:5000')).toBe(false);
  });

  it('decodes base64 auth, splitting at the first colon', () => {
    const auth = Buffer.from('me:pa:ss').toString('base64');
    expect(
      credentialsFromDockerConfig({ auths: { 'localhost:5000': { auth } } }, 'localhost:5000', 'f'),
    ).toEqual({
      username: 'me',
      password: 'pa:ss',
      source: 'f',
    });
    expect(credentialsFromDockerConfig({ credsStore: 'desktop' }, 'localhost:5000', 'f')).toBeUndefined();
  });
});

describe('the push record', () => {
  it('offers other repositories of the same registry as mount sources, newest first', () => {
    let record = withPushed({ version: 1, blobs: {} }, [DIGEST], { registry: 'r:1', repository: 'a' });
    record = withPushed(record, [DIGEST], { registry: 'r:2', repository: 'x' });
    record = withPushed(record, [DIGEST], { registry: 'r:1', repository: 'b' });
    expect(mountSources(record, DIGEST, 'r:1', 'c')).toEqual(['b', 'a']);
    expect(mountSources(record, DIGEST, 'r:1', 'b')).toEqual(['a']);
    expect(mountSources(record, `sha256:${'b'.repeat(64)}`, 'r:1', 'c')).toEqual([]);
  });
});

describe('the tag of a pulled template', () => {
  const manifest = (annotations: Record<string, string>): ImageManifest => ({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: { mediaType: 'x', digest: DIGEST, size: 1 },
    layers: [],
    annotations,
  });
  it('comes from --tag, else from the title and version annotations', () => {
    const m = manifest({
      'org.opencontainers.image.title': 'web',
      'org.opencontainers.image.version': '1.3',
    });
    expect(templateTag(undefined, m, 'r')).toEqual({ name: 'web', version: '1.3' });
    expect(templateTag('lab:7', m, 'r')).toEqual({ name: 'lab', version: '7' });
    expect(() => templateTag(undefined, manifest({}), 'r')).toThrow(
      expect.objectContaining({ code: 'REGISTRY_TAG_REQUIRED' }),
    );
    expect(() => templateTag('noversion', m, 'r')).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_REF_INVALID' }),
    );
  });
});

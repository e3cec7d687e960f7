import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { compress, decompress } from 'zstd-napi';
import { type Context, createContext } from '../../src/core/context.js';
import { sha256Hex } from '../../src/core/digest.js';
import { RootcastError } from '../../src/core/errors.js';
import { type Reporter, silentReporter } from '../../src/core/reporter.js';
import { readKeyring } from '../../src/distro/deb/keyring.js';
import { type DebSource, type LoadIndexesOptions, loadIndexes } from '../../src/distro/deb/repository.js';
import { HttpClient } from '../../src/fetch/http.js';
import { startFileServer, type TestServer } from '../helpers/http-server.js';
import { createSignedRepo, publicKeyOf, type RepoOptions, type SignedRepo } from '../helpers/signed-repo.js';

let repo: SignedRepo;
let server: TestServer;
let store: string;
let http: HttpClient;

beforeAll(async () => {
  repo = await createSignedRepo({ components: ['main', 'contrib'] });
  server = await startFileServer(repo.root);
});

afterAll(async () => {
  await server.close();
  await repo.cleanup();
});

beforeEach(async () => {
  store = await mkdtemp(join(tmpdir(), 'rootcast-'));
  http = new HttpClient({ backoffMs: 2, maxBackoffMs: 20 });
  server.resetCounts();
  server.setFaults(undefined);
});

afterEach(async () => {
  await http.close();
  await rm(store, { recursive: true, force: true });
});

/** Republishes the shared repository with `changes`, resetting everything else. */
async function publish(changes: RepoOptions = {}): Promise<void> {
  await repo.publish({
    components: ['main', 'contrib'],
    date: new Date(Date.now() - 3600 * 1000),
    validUntil: undefined,
    compressions: ['xz', 'gz'],
    plainEntry: 'listed',
    byHash: false,
    signers: ['good'],
    inRelease: true,
    releaseGpg: true,
    notAutomatic: false,
    butAutomaticUpgrades: false,
    brokenXz: false,
    packagesPerComponent: 3,
    fillerBytes: undefined,
    ...changes,
  } as RepoOptions);
}

function source(overrides: Partial<DebSource> = {}): DebSource {
  return {
    uri: `${server.url}/`,
    uriTemplate: '{{mirror.test}}',
    suites: [repo.options.suite],
    components: ['main', 'contrib'],
    keyring: repo.keyringBinary,
    ...overrides,
  };
}

const context = (): Context => createContext({ store });

/** A context whose reporter appends `level: message` lines to `logs`. */
function recordingContext(logs: string[]): Context {
  const reporter: Reporter = {
    log: (level, message) => logs.push(`${level}: ${message}`),
    task: () => silentReporter.task(''),
  };
  return createContext({ store, reporter });
}

/** Decompressed copies of indexes in the store (relative paths). */
async function plainCopies(): Promise<string[]> {
  return (await storeFiles()).filter((f) => f.startsWith(join('indexes', 'plain', 'sha256')));
}

async function storeFiles(): Promise<string[]> {
  const entries = await readdir(store, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(store.length + 1));
}

/** Asserts the load fails with `code` and a hint, and that it left nothing in the store. */
async function expectRejected(
  code: string,
  sources: DebSource[] = [source()],
  options: Omit<LoadIndexesOptions, 'http'> = {},
): Promise<RootcastError> {
  const error = await loadIndexes(sources, 'amd64', context(), { http, ...options }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RootcastError);
  const rootcast = error as RootcastError;
  expect(rootcast.code).toBe(code);
  expect(rootcast.hint.trim().length).toBeGreaterThan(0);
  expect(await storeFiles()).toEqual([]);
  return rootcast;
}

describe('loadIndexes against a good repository', () => {
  beforeAll(() => publish());

  it('verifies and parses every component', async () => {
    const indexes = await loadIndexes([source()], 'amd64', context(), { http });
    expect(indexes.map((i) => i.id)).toEqual(['stable/main', 'stable/contrib']);
    const main = indexes[0]!;
    expect(main.pin).toBe(500);
    expect(main.repository).toEqual({
      id: 'stable/main',
      uriTemplate: '{{mirror.test}}',
      uri: `${server.url}/`,
      suite: 'stable',
      component: 'main',
      arch: 'amd64',
    });
    const inRelease = await readFile(repo.file(repo.dist('InRelease')));
    expect(main.release.sha256).toBe(sha256Hex(inRelease));
    const expected = repo.packages.filter((p) => p.component === 'main');
    expect(main.packages.map((p) => [p.name, p.version, p.filename, p.size, p.sha256, p.repository])).toEqual(
      expected.map((p) => [p.name, p.version, p.path, p.size, p.sha256, 'stable/main']),
    );
    // xz preferred over gz; the InRelease kept for offline use.
    expect(server.count(`/${repo.dist('main/binary-amd64/Packages.xz')}`)).toBe(1);
    expect(server.count(`/${repo.dist('main/binary-amd64/Packages.gz')}`)).toBe(0);
    const files = await storeFiles();
    expect(files).toContain(join('indexes', 'releases', 'sha256', sha256Hex(inRelease)));
    expect(files.filter((f) => f.startsWith(join('indexes', 'sha256')))).toHaveLength(2);
    // …and each index decompressed, named by the plain Packages hash the Release lists.
    const plain = await plainCopies();
    expect(plain).toHaveLength(2);
    let texts = '';
    for (const name of plain) {
      const text = decompress(await readFile(join(store, name)));
      expect(`${sha256Hex(text)}.zst`).toBe(name.split('/').at(-1));
      texts += text.toString('utf8');
    }
    for (const p of repo.packages) expect(texts).toContain(`Package: ${p.name}\n`);
  });

  it('costs exactly one request on a second load of an unchanged Release', async () => {
    const first = await loadIndexes([source()], 'amd64', context(), { http });
    server.resetCounts();
    const second = await loadIndexes([source()], 'amd64', context(), { http });
    expect(server.log).toEqual([`/${repo.dist('InRelease')}`]);
    expect(second.map((i) => i.packages.length)).toEqual(first.map((i) => i.packages.length));
  });

  it('needs only the decompressed copy when warm: one request, no compressed index read', async () => {
    const first = await loadIndexes([source()], 'amd64', context(), { http });
    await rm(join(store, 'indexes', 'sha256'), { recursive: true });
    server.resetCounts();
    const second = await loadIndexes([source()], 'amd64', context(), { http });
    expect(server.log).toEqual([`/${repo.dist('InRelease')}`]);
    expect(second.map((i) => i.packages.map((p) => p.sha256))).toEqual(
      first.map((i) => i.packages.map((p) => p.sha256)),
    );
    expect(await storeFiles()).not.toContainEqual(expect.stringMatching(/^indexes\/sha256\//));
  });

  it.each([
    ['not zstd at all', () => Buffer.from('garbage')],
    [
      'a zstd text one byte off',
      (text: Buffer) => compress(Buffer.concat([text.subarray(1), Buffer.from('x')])),
    ],
    ['a zstd text longer than signed', (text: Buffer) => compress(Buffer.concat([text, Buffer.from('\n')]))],
    ['a zstd text shorter than signed', (text: Buffer) => compress(text.subarray(1))],
    [
      'trailing bytes after the zstd frame',
      (text: Buffer) => Buffer.concat([compress(text), Buffer.from('x')]),
    ],
  ])(
    'rebuilds a decompressed copy holding %s from the compressed cache, without downloading',
    async (_, damage) => {
      await loadIndexes([source({ components: ['main'] })], 'amd64', context(), { http });
      const [name] = await plainCopies();
      const path = join(store, name!);
      const good = await readFile(path);
      await writeFile(path, damage(decompress(good)));
      server.resetCounts();
      const logs: string[] = [];
      const indexes = await loadIndexes([source({ components: ['main'] })], 'amd64', recordingContext(logs), {
        http,
      });
      expect(indexes[0]!.packages).toHaveLength(3);
      expect(server.log).toEqual([`/${repo.dist('InRelease')}`]);
      expect(logs.filter((l) => l.startsWith('warn') && l.includes(name!))).toHaveLength(1);
      expect(sha256Hex(decompress(await readFile(path)))).toBe(sha256Hex(decompress(good)));
    },
  );

  it('re-downloads when both cached copies of an index are damaged', async () => {
    await loadIndexes([source({ components: ['main'] })], 'amd64', context(), { http });
    const name = (await storeFiles()).find((f) => f.startsWith(join('indexes', 'sha256')))!;
    await writeFile(join(store, name), 'garbage');
    const [plain] = await plainCopies();
    await writeFile(join(store, plain!), 'garbage');
    server.resetCounts();
    await loadIndexes([source({ components: ['main'] })], 'amd64', context(), { http });
    expect(server.total()).toBe(2);
    expect(sha256Hex(await readFile(join(store, name)))).toBe(name.split('/').at(-1));
    expect(`${sha256Hex(decompress(await readFile(join(store, plain!))))}.zst`).toBe(
      plain!.split('/').at(-1),
    );
  });

  it('reads an armored keyring as well as a binary one', async () => {
    const indexes = await loadIndexes([source({ keyring: repo.keyringArmored })], 'amd64', context(), {
      http,
    });
    expect(indexes).toHaveLength(2);
    expect(await readKeyring(repo.keyringArmored)).toHaveLength(2);
    expect(await readKeyring(repo.keyringBinary)).toHaveLength(2);
  });

  it('survives dropped connections and truncated bodies', async () => {
    server.setFaults({ dropEvery: 2, truncateEvery: 3 });
    const indexes = await loadIndexes([source()], 'amd64', context(), { http });
    expect(indexes).toHaveLength(2);
    expect(server.faultsInjected()).toBeGreaterThan(0);
  });

  it('names a component the Release does not list: INDEX_MISSING', async () => {
    const error = await expectRejected('INDEX_MISSING', [source({ components: ['main', 'non-free'] })]);
    expect(error.message).toContain('non-free');
  });

  it('rejects a keyring that is missing or not a keyring', async () => {
    await expectRejected('KEYRING_MISSING', [source({ keyring: join(repo.dir, 'nope.gpg') })]);
    const bogus = join(repo.dir, 'bogus.gpg');
    await writeFile(bogus, 'not a key');
    const error = await expectRejected('KEYRING_INVALID', [source({ keyring: bogus })]);
    expect(error.exitCode).toBe(2);
  });
});

describe('loadIndexes against hostile or broken repositories', () => {
  afterEach(() => publish());

  it('one changed byte in InRelease: RELEASE_SIGNATURE_INVALID', async () => {
    await publish();
    const inRelease = repo.dist('InRelease');
    const text = await readFile(repo.file(inRelease), 'latin1');
    await repo.tamper(inRelease, text.indexOf('Rootcast Test'));
    const error = await expectRejected('RELEASE_SIGNATURE_INVALID');
    expect(error.message).toContain('InRelease');
  });

  it('a Packages file that differs from the Release: INDEX_HASH_MISMATCH', async () => {
    await publish();
    await repo.tamper(repo.dist('contrib/binary-amd64/Packages.xz'));
    const error = await expectRejected('INDEX_HASH_MISMATCH');
    expect(error.message).toContain('contrib/binary-amd64/Packages.xz');
  });

  it('a Packages file of another size than the Release says: INDEX_SIZE_MISMATCH', async () => {
    await publish();
    const path = repo.file(repo.dist('main/binary-amd64/Packages.xz'));
    await writeFile(path, Buffer.concat([await readFile(path), Buffer.from('extra')]));
    await expectRejected('INDEX_SIZE_MISMATCH');
  });

  it('signed only by an expired key: RELEASE_KEY_EXPIRED', async () => {
    await publish({ signers: ['expired'], date: new Date(Date.now() - 30 * 24 * 3600 * 1000) });
    await expectRejected('RELEASE_KEY_EXPIRED');
  });

  it('signed only by a key outside the keyring: RELEASE_KEY_UNKNOWN', async () => {
    await publish({ signers: ['unknown'] });
    await expectRejected('RELEASE_KEY_UNKNOWN');
  });

  it('accepts a Release signed by an unknown key and a keyring key', async () => {
    await publish({ signers: ['unknown', 'good'] });
    expect(await loadIndexes([source()], 'amd64', context(), { http })).toHaveLength(2);
  });

  it('rejects a keyring holding only a key that did not sign', async () => {
    await publish();
    const onlyUnknown = join(repo.dir, 'unknown.asc');
    await writeFile(onlyUnknown, await publicKeyOf('unknown'));
    await expectRejected('RELEASE_KEY_UNKNOWN', [source({ keyring: onlyUnknown })]);
  });

  it('a Release dated in the future: RELEASE_DATE_FUTURE', async () => {
    await publish({ date: new Date(Date.now() + 3 * 3600 * 1000) });
    await expectRejected('RELEASE_DATE_FUTURE');
  });

  it('a Release past its Valid-Until: RELEASE_EXPIRED', async () => {
    await publish({
      date: new Date(Date.now() - 10 * 24 * 3600 * 1000),
      validUntil: new Date(Date.now() - 24 * 3600 * 1000),
    });
    await expectRejected('RELEASE_EXPIRED');
  });

  it('a Release for another suite: RELEASE_SUITE_MISMATCH', async () => {
    await publish();
    // A validly signed InRelease of `stable`, served as `oldstable`.
    await repo.write('dists/oldstable/InRelease', await readFile(repo.file(repo.dist('InRelease'))));
    await expectRejected('RELEASE_SUITE_MISMATCH', [source({ suites: ['oldstable'] })]);
  });

  it('neither InRelease nor Release.gpg: RELEASE_UNSIGNED', async () => {
    await publish({ inRelease: false, releaseGpg: false });
    await expectRejected('RELEASE_UNSIGNED');
  });

  it('a Release.gpg that does not match the Release: RELEASE_SIGNATURE_INVALID', async () => {
    await publish({ inRelease: false });
    const release = repo.dist('Release');
    const text = await readFile(repo.file(release), 'latin1');
    await repo.tamper(release, text.indexOf('Rootcast Test'));
    await expectRejected('RELEASE_SIGNATURE_INVALID');
  });
});

describe('loadIndexes repository variants', () => {
  afterAll(() => publish());

  it('falls back to Release + Release.gpg when there is no InRelease', async () => {
    await publish({ inRelease: false });
    const indexes = await loadIndexes([source()], 'amd64', context(), { http });
    expect(indexes).toHaveLength(2);
    expect(server.count(`/${repo.dist('InRelease')}`)).toBe(1);
    expect(server.count(`/${repo.dist('Release.gpg')}`)).toBe(1);
    const release = await readFile(repo.file(repo.dist('Release')));
    expect(indexes[0]!.release.sha256).toBe(sha256Hex(release));
    const files = await storeFiles();
    expect(files).toContain(join('indexes', 'releases', 'sha256', sha256Hex(release)));
    expect(files).toContain(join('indexes', 'releases', 'sha256', `${sha256Hex(release)}.gpg`));
  });

  it('fetches indexes by hash when the Release says Acquire-By-Hash', async () => {
    await publish({ byHash: true });
    const indexes = await loadIndexes([source()], 'amd64', context(), { http });
    expect(indexes).toHaveLength(2);
    const byHash = server.log.filter((p) => p.includes('/by-hash/SHA256/'));
    expect(byHash).toHaveLength(2);
    expect(server.count(`/${repo.dist('main/binary-amd64/Packages.xz')}`)).toBe(0);
  });

  it('reads gzip-only repositories', async () => {
    await publish({ compressions: ['gz'] });
    const indexes = await loadIndexes([source()], 'amd64', context(), { http });
    expect(indexes.map((i) => i.packages.length)).toEqual([3, 3]);
    expect(server.count(`/${repo.dist('main/binary-amd64/Packages.gz')}`)).toBe(1);
  });

  it('decompresses every time when the Release does not list the plain Packages file', async () => {
    await publish({ plainEntry: 'absent' });
    const first = await loadIndexes([source()], 'amd64', context(), { http });
    server.resetCounts();
    const second = await loadIndexes([source()], 'amd64', context(), { http });
    expect(server.log).toEqual([`/${repo.dist('InRelease')}`]);
    expect(second.map((i) => i.packages.length)).toEqual(first.map((i) => i.packages.length));
    expect(await plainCopies()).toEqual([]);
  });

  it('keeps no decompressed copy that does not match the Release, and still loads', async () => {
    await publish({ plainEntry: 'mismatched' });
    const logs: string[] = [];
    const indexes = await loadIndexes([source()], 'amd64', recordingContext(logs), { http });
    expect(indexes.map((i) => i.packages.length)).toEqual([3, 3]);
    expect(await plainCopies()).toEqual([]);
    expect(logs.filter((l) => l.startsWith('warn') && l.includes('does not match'))).toHaveLength(2);
  });

  it('gives NotAutomatic suites their apt pin', async () => {
    await publish({ notAutomatic: true });
    expect((await loadIndexes([source()], 'amd64', context(), { http }))[0]!.pin).toBe(1);
    await publish({ notAutomatic: true, butAutomaticUpgrades: true });
    expect((await loadIndexes([source()], 'amd64', context(), { http }))[0]!.pin).toBe(100);
  });
});

describe('loadIndexes decoding xz in a process while the index downloads', () => {
  // Every xz index takes the streaming path (by default only those of 1 MiB and more do).
  const streaming = { xzProcessMinBytes: 0 };
  const rows = (indexes: Awaited<ReturnType<typeof loadIndexes>>) =>
    indexes.map((i) => i.packages.map((p) => [i.id, p.name, p.version, p.sha256]));

  beforeAll(() => {
    // Without xz the loader decodes in-process, and these tests would not test the stream.
    expect(spawnSync('xz', ['--version']).status).toBe(0);
  });
  afterEach(() => publish());

  it('parses exactly what the in-process decoder parses', async () => {
    await publish();
    const inProcess = await loadIndexes([source()], 'amd64', context(), { http });
    await rm(store, { recursive: true, force: true });
    const streamed = await loadIndexes([source()], 'amd64', context(), { http, ...streaming });
    expect(rows(streamed)).toEqual(rows(inProcess));
    expect(await plainCopies()).toHaveLength(2);
  });

  it('starts the parse over when a download is cut and retried: no package twice', async () => {
    // Enough packages that xz has decoded and handed on part of the index when the cut comes.
    await publish({ packagesPerComponent: 600, fillerBytes: 16 });
    server.setFaults({ truncateEvery: 1, maxFaults: 2, only: (path) => path.endsWith('Packages.xz') });
    const indexes = await loadIndexes([source()], 'amd64', context(), { http, ...streaming });
    expect(server.faultsInjected()).toBe(2);
    const expected = repo.packages.map((p) => [`stable/${p.component}`, p.name, p.version, p.sha256]);
    expect(rows(indexes).flat()).toEqual(expected);
  });

  it('a tampered Packages.xz is a hash mismatch, not a decoding error: INDEX_HASH_MISMATCH', async () => {
    await publish();
    await repo.tamper(repo.dist('main/binary-amd64/Packages.xz'));
    const error = await expectRejected('INDEX_HASH_MISMATCH', [source()], streaming);
    expect(error.message).toContain('main/binary-amd64/Packages.xz');
  });

  it('a signed Packages.xz that does not decode: INDEX_MALFORMED, not retried', async () => {
    await publish({ brokenXz: true });
    const error = await expectRejected('INDEX_MALFORMED', [source()], streaming);
    expect(error.message).toMatch(/Packages\.xz matches its signed hash but cannot be decompressed/);
    expect(server.count(`/${repo.dist('main/binary-amd64/Packages.xz')}`)).toBe(1);
  });
});

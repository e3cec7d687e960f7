import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { xz } from '@napi-rs/lzma';
import {
  createCleartextMessage,
  createMessage,
  generateKey,
  type PrivateKey,
  readKey,
  readPrivateKey,
  sign,
} from 'openpgp';

/**
 * A tiny but real signed Debian repository in a temp dir, for integration tests.
 *
 * Lifecycle: `createSignedRepo()` generates keys (ed25519, fast), package files, Packages
 * indexes (.xz and/or .gz), Release, InRelease (cleartext-signed) and Release.gpg
 * (detached), and two keyrings (binary and armored) holding the `good` and `expired`
 * keys but never the `unknown` one. Tests then tamper with files on disk (`tamper`,
 * `write`) and call `publish()` to re-sign after changing options, or leave the
 * signature stale to test rejection. `cleanup()` removes everything.
 *
 * Layout under `root`: `dists/<suite>/…`, `pool/main/…`; `keyring.gpg`, `keyring.asc`
 * beside it in `dir` (outside the served root).
 */
export type SignerName = 'good' | 'expired' | 'unknown';

export interface FakePackage {
  name: string;
  version: string;
  component: string;
  /** Path relative to the repository root. */
  path: string;
  bytes: Buffer;
  size: number;
  sha256: string;
}

export interface RepoOptions {
  suite?: string;
  codename?: string;
  components?: string[];
  arch?: string;
  /** Packages per component (default 3). */
  packagesPerComponent?: number;
  /** Filler bytes in each package (default 20,000 + 1,000 × its number); small for many packages. */
  fillerBytes?: number;
  date?: Date;
  validUntil?: Date;
  compressions?: ('xz' | 'gz')[];
  /**
   * How the Release lists the uncompressed `Packages` file, which is never served (as on
   * Debian's mirrors): `listed` with its real size and sha256 (default), `absent`, or
   * `mismatched` (a hash that no decompressed index matches).
   */
  plainEntry?: 'listed' | 'absent' | 'mismatched';
  byHash?: boolean;
  /** Keys that sign InRelease and Release.gpg, in order (default `['good']`). */
  signers?: SignerName[];
  inRelease?: boolean;
  releaseGpg?: boolean;
  notAutomatic?: boolean;
  butAutomaticUpgrades?: boolean;
  /** Publish (and sign) each Packages.xz cut in half: listed correctly, but not valid xz. */
  brokenXz?: boolean;
}

export interface SignedRepo {
  /** Temp dir holding everything; `root` is the part to serve. */
  dir: string;
  root: string;
  keyringBinary: string;
  keyringArmored: string;
  options: Required<Omit<RepoOptions, 'validUntil' | 'fillerBytes'>> & {
    validUntil?: Date;
    fillerBytes?: number;
  };
  packages: FakePackage[];
  /** Absolute path of a file in the served tree, from a repository-relative path. */
  file(relative: string): string;
  /** Repository-relative path of a suite file: `dists/<suite>/<name>`. */
  dist(name: string): string;
  /** Rewrites indexes, Release and signatures from the current options and packages. */
  publish(changes?: RepoOptions): Promise<void>;
  /** XORs one byte of a served file (default: the middle one). */
  tamper(relative: string, offset?: number): Promise<void>;
  write(relative: string, data: string | Uint8Array): Promise<void>;
  cleanup(): Promise<void>;
}

interface Keys {
  good: PrivateKey;
  expired: PrivateKey;
  unknown: PrivateKey;
  /** When the expired key was valid, to sign with it. */
  expiredSigningDate: Date;
}

let cachedKeys: Promise<Keys> | undefined;

/** Keys are generated once per test file: generation is the slow part. */
function testKeys(): Promise<Keys> {
  cachedKeys ??= (async () => {
    const make = async (name: string, date?: Date, keyExpirationTime?: number) => {
      const { privateKey } = await generateKey({
        type: 'ecc',
        curve: 'curve25519Legacy',
        userIDs: [{ name, email: `${name}@rootcast.test` }],
        format: 'armored',
        ...(date ? { date } : {}),
        ...(keyExpirationTime ? { keyExpirationTime } : {}),
      });
      return readPrivateKey({ armoredKey: privateKey });
    };
    const past = new Date(Date.now() - 30 * 24 * 3600 * 1000);
    const [good, expired, unknown] = await Promise.all([
      make('good'),
      make('expired', past, 24 * 3600),
      make('unknown'),
    ]);
    return { good, expired, unknown, expiredSigningDate: new Date(past.getTime() + 3600 * 1000) };
  })();
  return cachedKeys;
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

function debianDate(date: Date): string {
  return date.toUTCString().replace('GMT', 'UTC');
}

function fakePackages(component: string, count: number, arch: string, fillerBytes?: number): FakePackage[] {
  const out: FakePackage[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${component}-pkg${i}`;
    const version = `1.${i}-1`;
    const path = `pool/${component}/${name[0]}/${name}/${name}_${version}_${arch}.deb`;
    // Deterministic and distinct filler, so each package has its own hash.
    const filler = Buffer.alloc(fillerBytes ?? 20_000 + i * 1000);
    for (let j = 0; j < filler.length; j++) filler[j] = (j * 31 + i * 7 + name.length) & 0xff;
    const control = [
      `Package: ${name}`,
      `Version: ${version}`,
      `Architecture: ${arch}`,
      'Maintainer: Test <test@rootcast.test>',
      `Description: test package ${i}`,
      '',
    ].join('\n');
    const bytes = debArchive(
      [{ path: './control', data: Buffer.from(control) }],
      [{ path: `./usr/share/doc/${name}/filler`, data: filler }],
    );
    out.push({ name, version, component, path, bytes, size: bytes.length, sha256: sha256(bytes) });
  }
  return out;
}

/**
 * A real `.deb`: an ar archive of `debian-binary`, `control.tar.gz` and `data.tar.gz`,
 * byte-for-byte deterministic (zero mtimes, root ownership), so dpkg-deb can read it.
 */
export function debArchive(
  control: { path: string; data: Buffer }[],
  data: { path: string; data: Buffer }[],
): Buffer {
  return arArchive([
    ['debian-binary', Buffer.from('2.0\n')],
    ['control.tar.gz', gzipSync(tarArchive(control))],
    ['data.tar.gz', gzipSync(tarArchive(data))],
  ]);
}

function arArchive(members: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [Buffer.from('!<arch>\n')];
  for (const [name, data] of members) {
    const header = `${`${name}/`.padEnd(16)}${'0'.padEnd(12)}${'0'.padEnd(6)}${'0'.padEnd(6)}${'100644'.padEnd(8)}${String(data.length).padEnd(10)}\x60\n`;
    parts.push(Buffer.from(header, 'latin1'), data);
    if (data.length % 2 === 1) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** A ustar archive of regular files, with their parent directories. */
function tarArchive(files: { path: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  const dirs = new Set<string>(['./']);
  const entry = (path: string, type: '0' | '5', data: Buffer) => {
    const header = Buffer.alloc(512);
    const octal = (value: number, width: number) => value.toString(8).padStart(width - 1, '0');
    header.write(path, 0, 100, 'utf8');
    header.write(octal(type === '5' ? 0o755 : 0o644, 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(data.length, 12), 124);
    header.write(octal(0, 12), 136);
    header.fill(' ', 148, 156);
    header.write(type, 156);
    header.write('ustar\u000000', 257, 'latin1');
    header.write('root', 265);
    header.write('root', 297);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${octal(sum, 7)}\u0000 `, 148, 'latin1');
    parts.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  };
  entry('./', '5', Buffer.alloc(0));
  for (const file of files) {
    const segments = file.path.split('/').slice(0, -1);
    for (let n = 1; n <= segments.length; n++) {
      const dir = `${segments.slice(0, n).join('/')}/`;
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entry(dir, '5', Buffer.alloc(0));
      }
    }
    entry(file.path, '0', file.data);
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

function packagesText(packages: readonly FakePackage[], arch: string): string {
  return packages
    .map((p, i) =>
      [
        `Package: ${p.name}`,
        `Version: ${p.version}`,
        `Architecture: ${arch}`,
        `Priority: optional`,
        `Section: misc`,
        `Maintainer: Test <test@rootcast.test>`,
        ...(i > 0 ? [`Depends: ${packages[0]!.name} (>= 1.0)`] : []),
        `Filename: ${p.path}`,
        `Size: ${p.size}`,
        `SHA256: ${p.sha256}`,
        `Description: test package ${i}`,
        ` A package made by the rootcast tests.`,
      ].join('\n'),
    )
    .join('\n\n')
    .concat('\n');
}

export async function createSignedRepo(initial: RepoOptions = {}): Promise<SignedRepo> {
  const keys = await testKeys();
  const dir = await mkdtemp(join(tmpdir(), 'rootcast-repo-'));
  const root = join(dir, 'repo');
  const options: SignedRepo['options'] = {
    suite: 'stable',
    codename: 'testy',
    components: ['main'],
    arch: 'amd64',
    packagesPerComponent: 3,
    date: new Date(Date.now() - 3600 * 1000),
    compressions: ['xz', 'gz'],
    plainEntry: 'listed',
    byHash: false,
    signers: ['good'],
    inRelease: true,
    releaseGpg: true,
    notAutomatic: false,
    butAutomaticUpgrades: false,
    brokenXz: false,
  };
  const keyringBinary = join(dir, 'keyring.gpg');
  const keyringArmored = join(dir, 'keyring.asc');
  const publicKeys = [keys.good.toPublic(), keys.expired.toPublic()];
  await writeFile(keyringBinary, Buffer.concat(publicKeys.map((k) => Buffer.from(k.write()))));
  await writeFile(keyringArmored, publicKeys.map((k) => k.armor()).join('\n'));

  const file = (relative: string) => join(root, relative);
  const write = async (relative: string, data: string | Uint8Array) => {
    await mkdir(dirname(file(relative)), { recursive: true });
    await writeFile(file(relative), data);
  };

  const repo: SignedRepo = {
    dir,
    root,
    keyringBinary,
    keyringArmored,
    options,
    packages: [],
    file,
    dist: (name) => `dists/${options.suite}/${name}`,
    async publish(changes = {}) {
      Object.assign(options, changes);
      await rm(join(root, 'dists'), { recursive: true, force: true });
      repo.packages = options.components.flatMap((c) =>
        fakePackages(c, options.packagesPerComponent, options.arch, options.fillerBytes),
      );
      for (const p of repo.packages) await write(p.path, p.bytes);
      const listed: { path: string; size: number; sha256: string }[] = [];
      for (const component of options.components) {
        const base = `${component}/binary-${options.arch}`;
        const text = Buffer.from(
          packagesText(
            repo.packages.filter((p) => p.component === component),
            options.arch,
          ),
        );
        const variants: [string, Buffer][] = [];
        if (options.compressions.includes('xz')) {
          const packed = await xz.compress(text);
          variants.push(['Packages.xz', options.brokenXz ? packed.subarray(0, packed.length >> 1) : packed]);
        }
        if (options.compressions.includes('gz')) variants.push(['Packages.gz', gzipSync(text)]);
        for (const [name, data] of variants) {
          const digest = sha256(data);
          await write(repo.dist(`${base}/${name}`), data);
          if (options.byHash) await write(repo.dist(`${base}/by-hash/SHA256/${digest}`), data);
          listed.push({ path: `${base}/${name}`, size: data.length, sha256: digest });
        }
        if (options.plainEntry !== 'absent') {
          const digest = options.plainEntry === 'mismatched' ? sha256(Buffer.from('other')) : sha256(text);
          listed.push({ path: `${base}/Packages`, size: text.length, sha256: digest });
        }
      }
      const release = [
        'Origin: Rootcast Test',
        'Label: Rootcast Test',
        `Suite: ${options.suite}`,
        `Codename: ${options.codename}`,
        `Date: ${debianDate(options.date)}`,
        ...(options.validUntil ? [`Valid-Until: ${debianDate(options.validUntil)}`] : []),
        ...(options.notAutomatic ? ['NotAutomatic: yes'] : []),
        ...(options.butAutomaticUpgrades ? ['ButAutomaticUpgrades: yes'] : []),
        ...(options.byHash ? ['Acquire-By-Hash: yes'] : []),
        `Architectures: ${options.arch}`,
        `Components: ${options.components.join(' ')}`,
        'Description: rootcast test repository',
        'SHA256:',
        ...listed.map((f) => ` ${f.sha256} ${String(f.size).padStart(8)} ${f.path}`),
        '',
      ].join('\n');
      await write(repo.dist('Release'), release);
      const signingKeys = options.signers.map((s) => keys[s]);
      const date = options.signers.includes('expired') ? keys.expiredSigningDate : new Date();
      if (options.inRelease) {
        const message = await createCleartextMessage({ text: release });
        await write(repo.dist('InRelease'), await sign({ message, signingKeys, date }));
      }
      if (options.releaseGpg) {
        const message = await createMessage({ binary: Buffer.from(release) });
        await write(repo.dist('Release.gpg'), await sign({ message, signingKeys, detached: true, date }));
      }
    },
    async tamper(relative, offset) {
      const data = await readFile(file(relative));
      const at = offset ?? Math.floor(data.length / 2);
      data[at] = (data[at]! ^ 0x01) & 0xff;
      await writeFile(file(relative), data);
    },
    write,
    async cleanup() {
      await rm(dir, { recursive: true, force: true });
    },
  };
  await repo.publish(initial);
  return repo;
}

/** The armored public key of a test signer, e.g. to build a keyring with only that key. */
export async function publicKeyOf(signer: SignerName): Promise<string> {
  const keys = await testKeys();
  return (await readKey({ armoredKey: keys[signer].toPublic().armor() })).armor();
}

/**
 * Pure: a recipe for the test repository (suite `stable`, component `main`, codename `testy`),
 * served at `uri` and signed by the key in `keyring`. Fields default to a bookworm-like base of
 * variant `essential`, which resolves to nothing but `install` in these repositories.
 */
export function testRecipeText(recipe: {
  name: string;
  uri: string;
  keyring: string;
  install: readonly string[];
  release?: string;
  arch?: string;
  variant?: string;
  from?: string;
}): string {
  return [
    `name: ${recipe.name}`,
    'version: "1.0"',
    'distro: debian',
    `release: ${recipe.release ?? 'testy'}`,
    `arch: ${recipe.arch ?? 'amd64'}`,
    `variant: ${recipe.variant ?? 'essential'}`,
    ...(recipe.from ? [`from: ${recipe.from}`] : []),
    'sources:',
    `  - uri: ${recipe.uri}`,
    '    suites: [stable]',
    '    components: [main]',
    `    keyring: ${recipe.keyring}`,
    'packages:',
    `  install: [${recipe.install.join(', ')}]`,
    '',
  ].join('\n');
}

import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RootcastError } from '../core/errors.js';
import { resolveInRoot } from './resolve-in-root.js';
import type { UnpackedPackage } from './types.js';

/**
 * The dpkg database of a tree, written as `dpkg --unpack` leaves it.
 *
 * Lifecycle: after `unpackPackages` has put every package's files in place and before
 * anything runs in the tree, `registerUnpacked` records each package in
 * `/var/lib/dpkg` with `Status: install ok unpacked`: its status stanza, `info/<pkg>.list`,
 * every control file but `control` (maintainer scripts keep their shipped mode), the
 * `md5sums` dpkg computes itself when a package ships none, conffiles and trigger
 * interests. From there the tree's own dpkg takes over
 * (`dpkg --configure -a`), exactly as after an unpack.
 *
 * One deliberate difference from dpkg's unpack: conffiles are already at their final path
 * (no `.dpkg-new`), so the status `Conffiles:` field carries the md5 of each conffile as
 * unpacked instead of dpkg's `newconffile` placeholder. dpkg's configure only replaces the
 * placeholder when it finds a `.dpkg-new`; with the real hash in place the configured
 * status is byte-for-byte what dpkg writes after a normal install.
 *
 * Packages already in the database (a parent layer) are kept; a package registered again
 * replaces its stanza. Stanzas are written sorted by name then architecture, as dpkg does.
 */

/** A control paragraph with field names as written and raw values (continuations kept). */
export type ControlFields = Array<[name: string, value: string]>;

/** dpkg's status field order (lib/dpkg/parse.c `fieldinfos`); other fields follow in control order. */
const STATUS_FIELD_ORDER = [
  'Package',
  'Essential',
  'Protected',
  'Status',
  'Priority',
  'Section',
  'Installed-Size',
  'Origin',
  'Maintainer',
  'Bugs',
  'Architecture',
  'Multi-Arch',
  'Source',
  'Version',
  'Config-Version',
  'Replaces',
  'Provides',
  'Depends',
  'Pre-Depends',
  'Recommends',
  'Suggests',
  'Breaks',
  'Conflicts',
  'Enhances',
  'Conffiles',
  'Description',
  'Triggers-Pending',
  'Triggers-Awaited',
] as const;

const KNOWN_FIELDS = new Map(STATUS_FIELD_ORDER.map((name) => [name.toLowerCase(), name]));
/** Fields of a Packages index that dpkg never keeps in status. */
const DROPPED_FIELDS = new Set([
  'filename',
  'size',
  'md5sum',
  'msdos-filename',
  'status',
  'config-version',
  'conffiles',
]);

/** Parses the first paragraph of a control file, keeping names and values as written (CR-free text). */
export function parseControl(text: string): ControlFields {
  const fields: ControlFields = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (fields.length > 0) break;
      continue;
    }
    if (line.startsWith('#')) continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      const last = fields.at(-1);
      if (!last) throw controlError(`continuation line before any field: ${line}`);
      last[1] += `\n${line}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw controlError(`not a field: ${line}`);
    fields.push([line.slice(0, colon), line.slice(colon + 1).trimStart()]);
  }
  // Like dpkg, blanks are trimmed at the end of a whole value, not of each line.
  for (const field of fields) field[1] = field[1].trimEnd();
  return fields;
}

function controlError(reason: string): RootcastError {
  return new RootcastError({
    code: 'DPKG_CONTROL_INVALID',
    message: `malformed control file: ${reason}`,
    hint: 'The package is broken; check the package cache entry against the lock.',
  });
}

/** One `Conffiles:` line: path, md5 (or `newconffile`), and dpkg's optional flags. */
export interface ConffileEntry {
  path: string;
  hash: string;
  flags: string[];
}

/** The `conffiles` control file: one path per line, optionally prefixed with flags such as `remove-on-upgrade`. */
export function parseConffiles(text: string): Array<{ path: string; flags: string[] }> {
  const out: Array<{ path: string; flags: string[] }> = [];
  for (const raw of text.split('\n')) {
    const words = raw.trim().split(/\s+/).filter(Boolean);
    const path = words.at(-1);
    if (path === undefined) continue;
    out.push({ path, flags: words.slice(0, -1) });
  }
  return out;
}

/**
 * The status stanza dpkg writes for a freshly unpacked package (without the trailing blank
 * line). `conffiles` are written in the order given.
 */
export function statusStanza(control: ControlFields, conffiles: readonly ConffileEntry[]): string {
  const known = new Map<string, string>();
  const extra: ControlFields = [];
  for (const [name, value] of control) {
    const lower = name.toLowerCase();
    if (DROPPED_FIELDS.has(lower)) continue;
    const canonical = KNOWN_FIELDS.get(lower);
    if (canonical) known.set(canonical, value);
    else extra.push([name, value]);
  }
  known.set('Status', 'install ok unpacked');
  if (conffiles.length > 0) {
    known.set('Conffiles', conffiles.map((c) => `\n ${[c.path, c.hash, ...c.flags].join(' ')}`).join(''));
  }
  // dpkg writes booleans only when true, and Multi-Arch only when it is not the default.
  for (const flag of ['Essential', 'Protected'] as const) {
    if (known.get(flag)?.toLowerCase() !== 'yes') known.delete(flag);
    else known.set(flag, 'yes');
  }
  if (known.get('Multi-Arch') === 'no') known.delete('Multi-Arch');
  const lines: string[] = [];
  for (const name of STATUS_FIELD_ORDER) {
    const value = known.get(name);
    if (value !== undefined) lines.push(value.startsWith('\n') ? `${name}:${value}` : `${name}: ${value}`);
  }
  for (const [name, value] of extra)
    lines.push(value.startsWith('\n') ? `${name}:${value}` : `${name}: ${value}`);
  return lines.join('\n');
}

/** The name dpkg files a package's info under: `pkg:arch` for Multi-Arch: same, else `pkg`. */
export function infoName(pkg: Pick<UnpackedPackage, 'name' | 'architecture' | 'multiArch'>): string {
  return pkg.multiArch === 'same' ? `${pkg.name}:${pkg.architecture}` : pkg.name;
}

/** Trigger interests declared by a `triggers` control file. */
export interface TriggerInterest {
  trigger: string;
  noawait: boolean;
}

export function parseTriggerInterests(text: string): TriggerInterest[] {
  const out: TriggerInterest[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const [directive, trigger] = line.split(/\s+/);
    if (!directive || !trigger) continue;
    if (directive === 'interest' || directive === 'interest-await') out.push({ trigger, noawait: false });
    else if (directive === 'interest-noawait') out.push({ trigger, noawait: true });
  }
  return out;
}

/** Appends `line` to a dpkg line list unless it is already there (dpkg's interest files hold each once). */
function addLine(lines: string[], line: string): void {
  if (!lines.includes(line)) lines.push(line);
}

/** Splits a status file into stanzas keyed by `name:arch` (arch as the stanza says). */
export function splitStatus(text: string): Map<string, string> {
  const stanzas = new Map<string, string>();
  for (const block of text.split(/\n[ \t]*\n/)) {
    const trimmed = block.replace(/^\n+/, '').replace(/\n+$/, '');
    if (trimmed === '') continue;
    const fields = parseControl(trimmed);
    const get = (n: string) => fields.find(([k]) => k.toLowerCase() === n)?.[1] ?? '';
    stanzas.set(`${get('package')}:${get('architecture')}`, trimmed);
  }
  return stanzas;
}

function sortKey(key: string): [string, string] {
  const colon = key.indexOf(':');
  return [key.slice(0, colon), key.slice(colon + 1)];
}

/** Status text with stanzas in dpkg's order: by package name, then architecture. */
export function joinStatus(stanzas: Map<string, string>): string {
  const keys = [...stanzas.keys()].sort((a, b) => {
    const [an, aa] = sortKey(a);
    const [bn, ba] = sortKey(b);
    return an < bn ? -1 : an > bn ? 1 : aa < ba ? -1 : aa > ba ? 1 : 0;
  });
  return keys.map((k) => `${stanzas.get(k)}\n\n`).join('');
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}

function toLines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** md5 of a conffile as unpacked, or dpkg's `newconffile` when it is not a regular file in the tree. */
async function conffileHash(root: string, path: string): Promise<string> {
  const host = resolveInRoot(root, path, undefined, { followFinal: true });
  const stat = await lstat(host).catch(() => undefined);
  if (!stat?.isFile()) return 'newconffile';
  return createHash('md5')
    .update(await readFile(host))
    .digest('hex');
}

/**
 * The `md5sums` dpkg generates for a package that ships none: every regular file of the
 * package (conffiles and hard links included, symlinks not), in archive order.
 */
async function generatedMd5sums(root: string, paths: readonly string[]): Promise<string> {
  const lines: string[] = [];
  for (const path of paths) {
    if (path === '/.') continue;
    const host = resolveInRoot(root, path);
    const stat = await lstat(host).catch(() => undefined);
    if (!stat?.isFile()) continue;
    lines.push(
      `${createHash('md5')
        .update(await readFile(host))
        .digest('hex')}  ${path.slice(1)}\n`,
    );
  }
  return lines.join('');
}

/** Whether `path` is at or below a file-trigger interest path. */
function triggeredBy(interest: string, path: string): boolean {
  return path === interest || path.startsWith(interest.endsWith('/') ? interest : `${interest}/`);
}

/**
 * Records `packages` as unpacked in `root`'s dpkg database. `arch` is dpkg's native
 * architecture, written to `/var/lib/dpkg/arch` when that file does not exist yet.
 * Installed packages from a parent layer whose file triggers the new files match get the
 * activation queued in `triggers/Unincorp`, as dpkg's unpack would.
 */
export async function registerUnpacked(
  root: string,
  packages: readonly UnpackedPackage[],
  arch: string,
): Promise<void> {
  const admin = resolveInRoot(root, '/var/lib/dpkg', undefined, { followFinal: true });
  const info = join(admin, 'info');
  const triggers = join(admin, 'triggers');
  for (const dir of [admin, info, triggers, join(admin, 'updates'), join(admin, 'alternatives')]) {
    await mkdir(dir, { recursive: true, mode: 0o755 });
  }
  if ((await readOptional(join(admin, 'info', 'format'))) === '')
    await writeFile(join(info, 'format'), '1\n');
  if ((await readOptional(join(admin, 'arch'))) === '') await writeFile(join(admin, 'arch'), `${arch}\n`);

  const stanzas = splitStatus(await readOptional(join(admin, 'status')));
  const fileInterests = toLines(await readOptional(join(triggers, 'File')));
  const inherited = fileInterests.map((line) => line.split(' ')[0] ?? '').filter(Boolean);
  const unincorp = toLines(await readOptional(join(triggers, 'Unincorp')));
  const explicit = new Map<string, string[]>();

  for (const pkg of packages) {
    const name = infoName(pkg);
    const control = parseControl(pkg.control);
    const conffiles: ConffileEntry[] = [];
    const conffilesFile = pkg.controlFiles.get('conffiles');
    if (conffilesFile) {
      for (const c of parseConffiles(conffilesFile.data.toString('utf8'))) {
        // A remove-on-upgrade conffile is not shipped; dpkg keeps its placeholder.
        const hash = c.flags.includes('remove-on-upgrade') ? 'newconffile' : await conffileHash(root, c.path);
        conffiles.push({ path: c.path, hash, flags: c.flags });
      }
    }
    stanzas.set(`${pkg.name}:${pkg.architecture}`, statusStanza(control, conffiles));

    const writes: Promise<void>[] = [
      writeFile(join(info, `${name}.list`), pkg.paths.map((p) => `${p}\n`).join(''), { mode: 0o644 }),
    ];
    for (const [file, { data, mode, mtime }] of pkg.controlFiles) {
      if (file === 'control' || file.includes('/') || file.startsWith('.')) continue;
      const target = join(info, `${name}.${file}`);
      // dpkg moves control files into info/ as extracted: with the package's mode and mtime.
      writes.push(
        writeFile(target, data, { mode: mode & 0o7777 })
          .then(() => chmod(target, mode & 0o7777))
          .then(() => utimes(target, mtime, mtime)),
      );
    }
    if (!pkg.controlFiles.has('md5sums')) {
      const sums = await generatedMd5sums(root, pkg.paths);
      if (sums !== '') writes.push(writeFile(join(info, `${name}.md5sums`), sums, { mode: 0o644 }));
    }
    await Promise.all(writes);

    const triggersFile = pkg.controlFiles.get('triggers');
    if (triggersFile) {
      for (const interest of parseTriggerInterests(triggersFile.data.toString('utf8'))) {
        const ref = `${name}${interest.noawait ? '/noawait' : ''}`;
        if (interest.trigger.startsWith('/')) addLine(fileInterests, `${interest.trigger} ${ref}`);
        else {
          const list =
            explicit.get(interest.trigger) ?? toLines(await readOptional(join(triggers, interest.trigger)));
          addLine(list, ref);
          explicit.set(interest.trigger, list);
        }
      }
    }
    for (const interest of inherited) {
      if (pkg.paths.some((p) => triggeredBy(interest, p))) addLine(unincorp, `${interest} -`);
    }
  }

  await writeFile(join(admin, 'status'), joinStatus(stanzas), { mode: 0o644 });
  await writeFile(join(triggers, 'File'), fileInterests.map((l) => `${l}\n`).join(''), { mode: 0o644 });
  await writeFile(join(triggers, 'Unincorp'), unincorp.map((l) => `${l}\n`).join(''), { mode: 0o644 });
  for (const [trigger, list] of explicit) {
    await writeFile(join(triggers, trigger), list.map((l) => `${l}\n`).join(''), { mode: 0o644 });
  }
}

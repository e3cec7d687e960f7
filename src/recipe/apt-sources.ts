import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Reads the host's apt sources (one-line `sources.list` and deb822 `.sources`), so that a
 * recipe's default mirror is whatever this machine already uses. Nothing here decides a
 * mirror; `mirrorsFromAptSources` only names what it found.
 */
export interface AptSourceEntry {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  enabled: boolean;
  /** File the entry came from, for messages. */
  file: string;
}

/** Parses one-line format: `deb [opt=val ...] URI suite [component ...]`. */
export function parseOneLineSources(text: string, file: string): AptSourceEntry[] {
  const entries: AptSourceEntry[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/#.*$/, '').trim();
    if (!line) continue;
    const withoutOptions = line.replace(/\[[^\]]*\]/, ' ');
    const [type, uri, suite, ...components] = withoutOptions.split(/\s+/).filter(Boolean);
    if (!type || !uri || !suite || (type !== 'deb' && type !== 'deb-src')) continue;
    entries.push({ types: [type], uris: [uri], suites: [suite], components, enabled: true, file });
  }
  return entries;
}

/** Parses deb822 format: stanzas separated by blank lines, `Field: value` with continuations. */
export function parseDeb822Sources(text: string, file: string): AptSourceEntry[] {
  const entries: AptSourceEntry[] = [];
  const stanzas = text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n')
    .split(/\n\s*\n/);
  for (const stanza of stanzas) {
    const fields = new Map<string, string>();
    let current: string | undefined;
    for (const line of stanza.split('\n')) {
      if (/^\s/.test(line) && current) {
        fields.set(current, `${fields.get(current) ?? ''} ${line.trim()}`);
        continue;
      }
      const match = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (!match) continue;
      current = match[1]!.toLowerCase();
      fields.set(current, match[2]!.trim());
    }
    const words = (key: string) => (fields.get(key) ?? '').split(/\s+/).filter(Boolean);
    const types = words('types');
    const uris = words('uris');
    if (types.length === 0 || uris.length === 0) continue;
    const enabled = (fields.get('enabled') ?? 'yes').toLowerCase() !== 'no';
    entries.push({ types, uris, suites: words('suites'), components: words('components'), enabled, file });
  }
  return entries;
}

/** Reads `/etc/apt/sources.list` and `sources.list.d/*.{list,sources}` (missing files are fine). */
export async function readHostAptSources(root = '/etc/apt'): Promise<AptSourceEntry[]> {
  const entries: AptSourceEntry[] = [];
  const tryRead = async (path: string) => readFile(path, 'utf8').catch(() => undefined);
  const main = await tryRead(join(root, 'sources.list'));
  if (main !== undefined) entries.push(...parseOneLineSources(main, join(root, 'sources.list')));
  const dir = join(root, 'sources.list.d');
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.sort()) {
    const path = join(dir, name);
    if (name.endsWith('.list')) {
      const text = await tryRead(path);
      if (text !== undefined) entries.push(...parseOneLineSources(text, path));
    } else if (name.endsWith('.sources')) {
      const text = await tryRead(path);
      if (text !== undefined) entries.push(...parseDeb822Sources(text, path));
    }
  }
  return entries;
}

/**
 * Names each binary (`deb`) mirror by the last segment of its path: a URI ending in
 * `/debian` becomes `mirror.debian`, one ending in `/debian-security` becomes
 * `mirror.debian-security`. The first entry wins for each name, as apt reads files in order.
 */
export function mirrorsFromAptSources(entries: readonly AptSourceEntry[]): Map<string, string> {
  return new Map([...aptMirrorsWithOrigin(entries)].map(([name, { uri }]) => [name, uri]));
}

/** As `mirrorsFromAptSources`, also naming the file each mirror was found in (for messages). */
export function aptMirrorsWithOrigin(
  entries: readonly AptSourceEntry[],
): Map<string, { uri: string; file: string }> {
  const mirrors = new Map<string, { uri: string; file: string }>();
  for (const entry of entries) {
    if (!entry.enabled || !entry.types.includes('deb')) continue;
    for (const uri of entry.uris) {
      const name = mirrorNameOf(uri);
      if (name && !mirrors.has(name)) mirrors.set(name, { uri: uri.replace(/\/+$/, ''), file: entry.file });
    }
  }
  return mirrors;
}

export function mirrorNameOf(uri: string): string | undefined {
  let path: string;
  try {
    path = new URL(uri).pathname;
  } catch {
    return undefined;
  }
  const segments = path.split('/').filter(Boolean);
  return segments.at(-1)?.toLowerCase();
}

/** `debian-security` → `ROOTCAST_MIRROR_DEBIAN_SECURITY`. */
export function mirrorEnvName(name: string): string {
  return `ROOTCAST_MIRROR_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

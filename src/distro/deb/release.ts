import { describeError, RootcastError } from '../../core/errors.js';
import { type Deb822Paragraph, parseDeb822Single } from './deb822.js';
import type { ReleaseInfo } from './types.js';

/**
 * Reads the facts rootcast needs from a suite's Release file. `text` must already be the
 * verified cleartext (signature checking and PGP armour stripping happen before this), and
 * `sha256` is the digest of the exact bytes that were verified, carried into the lock.
 *
 * A Release file without a parseable Date or without a SHA256 list cannot anchor anything
 * (no freshness, no index digests), so both are `RELEASE_MALFORMED`. Optional fields that
 * are absent stay undefined; yes/no flags are true only for `yes`, as apt reads them.
 */
export function parseRelease(text: string, sha256: string): ReleaseInfo {
  let fields: Deb822Paragraph;
  try {
    fields = parseDeb822Single(text, 'Release');
  } catch (error) {
    throw malformed(`is not one control paragraph (${describeError(error)})`, error);
  }
  const dateText = fields.get('date');
  if (!dateText) throw malformed('has no Date field');
  const date = parseReleaseDate(dateText);
  if (date === undefined) throw malformed(`has an unreadable Date '${dateText}'`);

  const info: ReleaseInfo = {
    sha256,
    date,
    notAutomatic: isYes(fields.get('notautomatic')),
    butAutomaticUpgrades: isYes(fields.get('butautomaticupgrades')),
    acquireByHash: isYes(fields.get('acquire-by-hash')),
    architectures: words(fields.get('architectures')),
    components: words(fields.get('components')),
    files: parseSha256List(fields.get('sha256')),
  };
  const validUntilText = fields.get('valid-until');
  if (validUntilText) {
    const validUntil = parseReleaseDate(validUntilText);
    if (validUntil === undefined) throw malformed(`has an unreadable Valid-Until '${validUntilText}'`);
    info.validUntil = validUntil;
  }
  const optional = ['suite', 'codename', 'origin', 'label'] as const;
  for (const key of optional) {
    const value = fields.get(key);
    if (value) info[key] = value;
  }
  return info;
}

function parseSha256List(value: string | undefined): Map<string, { size: number; sha256: string }> {
  if (value === undefined) throw malformed('has no SHA256 file list');
  const files = new Map<string, { size: number; sha256: string }>();
  for (const line of value.split('\n')) {
    const parts = words(line);
    if (parts.length === 0) continue;
    const [digest, sizeText, path] = parts;
    if (parts.length !== 3 || !/^[0-9a-fA-F]{64}$/.test(digest!) || !/^[0-9]{1,15}$/.test(sizeText!)) {
      throw malformed(`has an unreadable SHA256 line '${line.trim()}'`);
    }
    files.set(path!, { size: Number(sizeText), sha256: digest!.toLowerCase() });
  }
  if (files.size === 0) throw malformed('has an empty SHA256 file list');
  return files;
}

const MONTHS: Record<string, number> = {
  jan: 0,
  feb: 1,
  mar: 2,
  apr: 3,
  may: 4,
  jun: 5,
  jul: 6,
  aug: 7,
  sep: 8,
  oct: 9,
  nov: 10,
  dec: 11,
};

const ZONES: Record<string, number> = { UTC: 0, GMT: 0, UT: 0, Z: 0 };

// `[Day, ]DD Mon YYYY HH:MM[:SS] ZONE` with ZONE a name above or ±HHMM: what Release files
// carry (RFC 2822, as apt's RFC1123StrToTime accepts). Date.parse is not used because its
// leniency differs between engines and would accept garbage.
const RFC2822 =
  /^(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?\s+(?:([A-Za-z]{1,3})|([+-])(\d{2})(\d{2}))$/;

/**
 * Parses an RFC 2822 date as Release files write it (`Sat, 10 May 2025 08:30:41 UTC`) to an
 * ISO 8601 string in UTC (`2025-05-10T08:30:41.000Z`); undefined when it is not one.
 */
export function parseReleaseDate(text: string): string | undefined {
  const m = RFC2822.exec(text.trim());
  if (!m) return undefined;
  const [, day, mon, year, hh, mm, ss, zoneName, sign, offH, offM] = m;
  const month = MONTHS[mon!.toLowerCase()];
  if (month === undefined) return undefined;
  let offsetMinutes = 0;
  if (zoneName !== undefined) {
    const zone = ZONES[zoneName.toUpperCase()];
    if (zone === undefined) return undefined;
    offsetMinutes = zone;
  } else {
    offsetMinutes = (Number(offH) * 60 + Number(offM)) * (sign === '-' ? -1 : 1);
  }
  const d = Number(day);
  const h = Number(hh);
  const min = Number(mm);
  const s = ss === undefined ? 0 : Number(ss);
  // Reject rollover (31 Feb, 25:00): Date.UTC would silently normalise it.
  const utc = Date.UTC(Number(year), month, d, h, min, s);
  const check = new Date(utc);
  if (check.getUTCDate() !== d || check.getUTCMonth() !== month || h > 23 || min > 59 || s > 59) {
    return undefined;
  }
  return new Date(utc - offsetMinutes * 60_000).toISOString();
}

function words(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value.split(/\s+/).filter((w) => w.length > 0);
}

function isYes(value: string | undefined): boolean {
  return value !== undefined && value.toLowerCase() === 'yes';
}

function malformed(reason: string, cause?: unknown): RootcastError {
  return new RootcastError({
    cause,
    code: 'RELEASE_MALFORMED',
    message: `Release file ${reason}`,
    hint: 'The repository serves a broken Release file; try another mirror or report it to the repository owner.',
    details: { reason },
  });
}

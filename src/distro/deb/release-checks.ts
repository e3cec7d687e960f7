import { RootcastError } from '../../core/errors.js';
import type { ReleaseInfo } from './types.js';

/**
 * Checks a verified Release must pass before its indexes are used, and the pin apt gives
 * its suite. Pure: the caller supplies the clock (`now`) and the URL for messages.
 */

/** apt's default pin: 500, 1 for NotAutomatic suites, 100 when ButAutomaticUpgrades too. */
export function pinPriority(release: ReleaseInfo): number {
  if (!release.notAutomatic) return 500;
  return release.butAutomaticUpgrades ? 100 : 1;
}

/**
 * Rejects a Release dated in the future (beyond `maxFutureSkewMs` of clock skew) or past
 * its Valid-Until: a mirror replaying old metadata, or a clock that is wrong, must not
 * pass silently.
 */
export function checkReleaseDates(
  release: ReleaseInfo,
  now: Date,
  url: string,
  maxFutureSkewMs: number,
): void {
  const date = Date.parse(release.date);
  if (Number.isNaN(date)) {
    throw new RootcastError({
      code: 'RELEASE_MALFORMED',
      message: `${url} has an unreadable Date (${release.date})`,
      hint: 'The repository metadata is broken; use another mirror or report it to the repository.',
    });
  }
  if (date - now.getTime() > maxFutureSkewMs) {
    throw new RootcastError({
      code: 'RELEASE_DATE_FUTURE',
      message: `${url} is dated ${release.date}, after now (${now.toISOString()})`,
      hint: 'Check the system clock; if it is right, the mirror is misconfigured: use another one.',
      details: { date: release.date, now: now.toISOString() },
    });
  }
  if (release.validUntil !== undefined) {
    const until = Date.parse(release.validUntil);
    if (Number.isNaN(until) || until <= now.getTime()) {
      throw new RootcastError({
        code: 'RELEASE_EXPIRED',
        message: `${url} expired at ${release.validUntil} (now ${now.toISOString()})`,
        hint: 'The mirror serves stale metadata (out of sync or replayed); use another mirror or check the system clock.',
        details: { validUntil: release.validUntil, now: now.toISOString() },
      });
    }
  }
}

/**
 * The suite asked for must be the Release's Suite or Codename, as apt insists, so a
 * mirror cannot answer for one suite with another suite's validly signed metadata.
 */
export function checkReleaseSuite(release: ReleaseInfo, suite: string, url: string): void {
  const names = [release.suite, release.codename].filter((n): n is string => n !== undefined);
  if (names.length === 0 || names.includes(suite)) return;
  throw new RootcastError({
    code: 'RELEASE_SUITE_MISMATCH',
    message: `${url} is for ${names.join(' / ')}, not ${suite}`,
    hint: 'The mirror serves another suite under this name (misconfigured or a replay); use another mirror.',
    details: { requested: suite, suite: release.suite, codename: release.codename },
  });
}

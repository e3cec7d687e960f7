import { RootcastError } from '../../core/errors.js';
import type { VersionOp } from './types.js';

/**
 * Debian version strings, `[epoch:]upstream[-revision]`, ordered exactly as dpkg orders them
 * (lib/dpkg/version.c `dpkg_version_compare` and its `verrevcmp`).
 *
 * Two entry points with deliberately different strictness, mirroring dpkg itself:
 * - `parseVersion` is for versions a user wrote (pins in a recipe): it rejects everything
 *   dpkg reports as an error *or* a warning, so a typo never becomes a silent pin.
 * - `compareVersions` is the solver's hot path over repository indexes: it rejects only
 *   what dpkg refuses outright (empty, embedded blanks, bad epoch, empty revision), and
 *   compares anything dpkg would merely warn about the way `dpkg --compare-versions` does,
 *   so one odd stanza in a third-party repository cannot stop a resolve. It allocates
 *   nothing: both strings are compared in place by index ranges.
 */
export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

const INT_MAX = 2147483647;

// Character codes used by the scanner; kept as constants so the hot loop is plain integer work.
const ZERO = 48;
const NINE = 57;
const COLON = 58;
const HYPHEN = 45;
const TILDE = 126;
const SPACE = 32;
const TAB = 9;

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

function isAlpha(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB;
}

/** dpkg's `order()`: `~` sorts before the end of a part, letters before everything else. */
function order(c: number): number {
  if (isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === TILDE) return -1;
  if (c !== 0) return c + 256;
  return 0;
}

/**
 * dpkg's `verrevcmp` over `a[ai, aEnd)` and `b[bi, bEnd)`; a position at or past its end
 * reads as NUL, exactly like the C string terminator.
 */
function verrevcmp(a: string, ai: number, aEnd: number, b: string, bi: number, bEnd: number): number {
  while (ai < aEnd || bi < bEnd) {
    let firstDiff = 0;
    let ac = ai < aEnd ? a.charCodeAt(ai) : 0;
    let bc = bi < bEnd ? b.charCodeAt(bi) : 0;
    while ((ac !== 0 && !isDigit(ac)) || (bc !== 0 && !isDigit(bc))) {
      const ao = order(ac);
      const bo = order(bc);
      if (ao !== bo) return ao - bo;
      ai++;
      bi++;
      ac = ai < aEnd ? a.charCodeAt(ai) : 0;
      bc = bi < bEnd ? b.charCodeAt(bi) : 0;
    }
    while (ac === ZERO) {
      ai++;
      ac = ai < aEnd ? a.charCodeAt(ai) : 0;
    }
    while (bc === ZERO) {
      bi++;
      bc = bi < bEnd ? b.charCodeAt(bi) : 0;
    }
    while (isDigit(ac) && isDigit(bc)) {
      if (firstDiff === 0) firstDiff = ac - bc;
      ai++;
      bi++;
      ac = ai < aEnd ? a.charCodeAt(ai) : 0;
      bc = bi < bEnd ? b.charCodeAt(bi) : 0;
    }
    if (isDigit(ac)) return 1;
    if (isDigit(bc)) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

// Scratch layout for one split version: [epoch, upstreamStart, upstreamEnd, revisionStart, revisionEnd].
// Module-level and reused: compareVersions runs to completion without yielding, so no caller can
// observe it half-written, and the solver's millions of comparisons allocate nothing.
const scratchA = new Int32Array(5);
const scratchB = new Int32Array(5);

/**
 * Splits `v` as dpkg's `parseversion` does and returns undefined on success, or the dpkg
 * error message. With `strict`, dpkg's warnings (upstream not starting with a digit, invalid
 * characters) are errors too.
 */
function splitVersion(v: string, out: Int32Array, strict: boolean): string | undefined {
  let start = 0;
  let end = v.length;
  while (start < end && isBlank(v.charCodeAt(start))) start++;
  if (start === end) return 'version string is empty';
  while (end > start && isBlank(v.charCodeAt(end - 1))) end--;

  let colon = -1;
  let hyphen = -1;
  for (let i = start; i < end; i++) {
    const c = v.charCodeAt(i);
    if (isBlank(c)) return 'version string has embedded spaces';
    if (c === COLON && colon < 0) colon = i;
    else if (c === HYPHEN) hyphen = i;
  }

  let epoch = 0;
  let upstreamStart = start;
  if (colon >= 0) {
    // strtol(3) semantics: an optional sign, then digits that must run up to the colon.
    let i = start;
    let negative = false;
    const sign = v.charCodeAt(i);
    if (sign === 43 || sign === HYPHEN) {
      negative = sign === HYPHEN;
      i++;
    }
    if (!isDigit(v.charCodeAt(i))) return 'epoch in version is empty';
    for (; i < colon; i++) {
      const c = v.charCodeAt(i);
      if (!isDigit(c)) return 'epoch in version is not number';
      epoch = epoch * 10 + (c - ZERO);
      if (epoch > INT_MAX) return 'epoch in version is too big';
    }
    if (negative && epoch !== 0) return 'epoch in version is negative';
    if (colon + 1 === end) return 'nothing after colon in version number';
    upstreamStart = colon + 1;
  }

  let upstreamEnd = end;
  let revisionStart = end;
  if (hyphen >= upstreamStart) {
    if (hyphen + 1 === end) return 'revision number is empty';
    upstreamEnd = hyphen;
    revisionStart = hyphen + 1;
  }
  if (upstreamStart === upstreamEnd) return 'version number is empty';

  if (strict) {
    if (!isDigit(v.charCodeAt(upstreamStart))) return 'version number does not start with digit';
    for (let i = upstreamStart + 1; i < upstreamEnd; i++) {
      const c = v.charCodeAt(i);
      if (!isDigit(c) && !isAlpha(c) && c !== 46 && c !== HYPHEN && c !== 43 && c !== TILDE && c !== COLON) {
        return 'invalid character in version number';
      }
    }
    for (let i = revisionStart; i < end; i++) {
      const c = v.charCodeAt(i);
      if (!isDigit(c) && !isAlpha(c) && c !== 46 && c !== 43 && c !== TILDE) {
        return 'invalid character in revision number';
      }
    }
  }

  out[0] = epoch;
  out[1] = upstreamStart;
  out[2] = upstreamEnd;
  out[3] = revisionStart;
  out[4] = end;
  return undefined;
}

function invalidVersion(v: string, reason: string): RootcastError {
  return new RootcastError({
    code: 'VERSION_INVALID',
    message: `invalid Debian version '${v}': ${reason}`,
    hint: 'Write versions as [epoch:]upstream[-revision], e.g. 1:2.36-9+deb12u1.',
    exitCode: 2,
    details: { version: v, reason },
  });
}

/** Splits a version into its parts; throws `VERSION_INVALID` where dpkg errors or warns. */
export function parseVersion(v: string): DebianVersion {
  const reason = splitVersion(v, scratchA, true);
  if (reason !== undefined) throw invalidVersion(v, reason);
  return {
    epoch: scratchA[0]!,
    upstream: v.slice(scratchA[1], scratchA[2]),
    revision: v.slice(scratchA[3], scratchA[4]),
  };
}

/** Whether `v` is a valid version by `parseVersion`'s strict rules. */
export function isValidVersion(v: string): boolean {
  return splitVersion(v, scratchA, true) === undefined;
}

/**
 * dpkg's ordering: negative when `a` sorts before `b`, 0 when equal (`1.0` equals `0:1.0-0`),
 * positive after. Throws `VERSION_INVALID` only for strings dpkg itself refuses to compare.
 */
export function compareVersions(a: string, b: string): number {
  if (a === b) {
    // Still reject garbage, but equal valid strings need no walk.
    const reason = splitVersion(a, scratchA, false);
    if (reason !== undefined) throw invalidVersion(a, reason);
    return 0;
  }
  const reasonA = splitVersion(a, scratchA, false);
  if (reasonA !== undefined) throw invalidVersion(a, reasonA);
  const reasonB = splitVersion(b, scratchB, false);
  if (reasonB !== undefined) throw invalidVersion(b, reasonB);
  const epochA = scratchA[0]!;
  const epochB = scratchB[0]!;
  if (epochA !== epochB) return epochA > epochB ? 1 : -1;
  const upstream = verrevcmp(a, scratchA[1]!, scratchA[2]!, b, scratchB[1]!, scratchB[2]!);
  if (upstream !== 0) return upstream;
  return verrevcmp(a, scratchA[3]!, scratchA[4]!, b, scratchB[3]!, scratchB[4]!);
}

/** Whether `candidate` satisfies the relation `(op required)`, as dpkg evaluates it. */
export function versionSatisfies(candidate: string, op: VersionOp, required: string): boolean {
  const c = compareVersions(candidate, required);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}

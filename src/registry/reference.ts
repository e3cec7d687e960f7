import { isIPv6 } from 'node:net';
import { isSha256Hex } from '../core/digest.js';
import { inputError } from '../core/errors.js';

/**
 * Registry references: `host[:port]/repository[:tag|@digest]`, as the distribution spec and
 * `docker pull` spell them, except that the host is never implied (rootcast knows no default
 * registry). The first component is the host: it must contain a `.` or a `:`, or be
 * `localhost`. A port is 1–65535, and the host is checked as written, before any URL is made
 * (`hostProblem`): a DNS name, an IPv4 address of exactly four decimal parts 0–255, or a
 * bracketed IPv6 address. A URL would take `1.2.3` as 1.2.0.3 and `0` as 0.0.0.0, so no host
 * is left to its guessing, and no bad host reaches the HTTP client. Repository components are
 * lowercase `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`; tags are
 * `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; digests are `sha256:<64 hex>`.
 *
 * Pure: no I/O. Every failure is `REGISTRY_REF_INVALID` (exit 2).
 */
export interface RegistryRef {
  /** `host` or `host:port` exactly as written (the key for credentials and the push record). */
  registry: string;
  /** Host name or address without port or brackets. */
  hostname: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** A registry tag. */
export const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$/;

function invalid(ref: string, why: string) {
  return inputError(
    'REGISTRY_REF_INVALID',
    `${JSON.stringify(ref)} is not a registry reference: ${why}`,
    'Write host[:port]/repository[:tag] or host[:port]/repository@sha256:…, e.g. 127.0.0.1:5000/lab/debian:12.',
  );
}

export function parseRegistryRef(ref: string): RegistryRef {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digest.startsWith('sha256:') || !isSha256Hex(digest.slice(7)))
      throw invalid(ref, 'the digest is not sha256:<64 lowercase hex>');
  }
  const slash = rest.indexOf('/');
  if (slash <= 0) throw invalid(ref, 'it names no registry host');
  const registry = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  if (!(registry.includes('.') || registry.includes(':') || registry === 'localhost') || !HOST.test(registry))
    throw invalid(ref, `${JSON.stringify(registry)} is not a registry host`);
  checkHost(ref, registry);
  let tag: string | undefined;
  const colon = path.lastIndexOf(':');
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(ref, `${JSON.stringify(tag)} is not a valid tag`);
  }
  if (path === '' || path.length > 255 || !path.split('/').every((c) => COMPONENT.test(c)))
    throw invalid(ref, `${JSON.stringify(path)} is not a valid repository name (lowercase, digits, . _ -)`);
  return {
    registry,
    hostname: hostnameOf(registry),
    repository: path,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** A DNS label: letters, digits and inner hyphens, 1–63 characters. */
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** A part of a dotted quad: decimal without leading zeros (`010` is octal to a URL); ≤ 255 is checked apart. */
const OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/**
 * Why `host` (without port) is not a host name or address, or `undefined` when it is one: a
 * dotted quad of four decimal parts 0–255, a bracketed IPv6 address, or a DNS name (labels of
 * letters, digits and inner hyphens, at most 63 each, 253 in all) whose last label is not a
 * number. The WHATWG URL parser reads any name ending in a number as IPv4 and fills in what is
 * missing (`1.2.3` is 1.2.0.3, `0` is 0.0.0.0, `0x7f.1` is 127.0.0.1), so those are checked
 * here, before any URL is made.
 */
export function hostProblem(host: string): string | undefined {
  if (host.startsWith('[')) {
    if (!host.endsWith(']') || !isIPv6(host.slice(1, -1))) return 'not an IPv6 address';
    return undefined;
  }
  const labels = host.split('.');
  const last = labels[labels.length - 1] ?? '';
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/i.test(last)) {
    // Read as an IPv4 address: it must be written out in full.
    if (labels.length !== 4 || !labels.every((p) => OCTET.test(p) && Number(p) <= 255))
      return 'an IPv4 address has four decimal parts of 0 to 255';
    return undefined;
  }
  if (host.length > 253 || !labels.every((l) => LABEL.test(l)))
    return 'a host name is labels of letters, digits and inner hyphens (at most 63 characters) joined by dots';
  return undefined;
}

/** The port (1–65535) and the host itself (see `hostProblem`), or `REGISTRY_REF_INVALID`. */
function checkHost(ref: string, registry: string): void {
  const bracketEnd = registry.startsWith('[') ? registry.indexOf(']') : -1;
  const portAt = registry.indexOf(':', bracketEnd + 1);
  const host = portAt >= 0 ? registry.slice(0, portAt) : registry;
  const port = portAt >= 0 ? registry.slice(portAt + 1) : undefined;
  if (port !== undefined && !(/^[0-9]+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535))
    throw invalid(ref, `port ${port} of ${JSON.stringify(registry)} is not between 1 and 65535`);
  const why = hostProblem(host);
  if (why !== undefined)
    throw invalid(ref, `${JSON.stringify(host)} is not a valid host name or address: ${why}`);
  try {
    new URL(`https://${registry}/`);
  } catch {
    throw invalid(ref, `${JSON.stringify(registry)} is not a valid host name or address`);
  }
}

/** `host:port` → `host`; `[::1]:5000` → `::1`. */
export function hostnameOf(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const colon = registry.lastIndexOf(':');
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/** The only hosts `--insecure` (plain HTTP) may reach: this machine's loopback names. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '::1';
}

/** `host[:port]/repo:tag` or `…@digest`, for messages and summaries. */
export function formatRegistryRef(ref: RegistryRef): string {
  const base = `${ref.registry}/${ref.repository}`;
  if (ref.digest) return `${base}@${ref.digest}`;
  return ref.tag ? `${base}:${ref.tag}` : base;
}

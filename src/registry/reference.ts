import { isSha256Hex } from '../core/digest.js';
import { inputError } from '../core/errors.js';

/**
 * Registry references: `host[:port]/repository[:tag|@digest]`, as the distribution spec and
 * `docker pull` spell them, except that the host is never implied (rootcast knows no default
 * registry). The first component is the host: it must contain a `.` or a `:`, or be
 * `localhost`. A port is 1–65535, and the host must be one a URL can hold (an IPv4 address has
 * four parts of at most 255, an IPv6 address is bracketed), so no bad host reaches the HTTP
 * client. Repository components are lowercase `[a-z0-9]+` joined by `.`, `_`, `__` or
 * runs of `-`; tags are `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; digests are `sha256:<64 hex>`.
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

/** The port (1–65535) and the host itself (what `new URL` accepts), or `REGISTRY_REF_INVALID`. */
function checkHost(ref: string, registry: string): void {
  const port = /:([0-9]+)$/.exec(
    registry.startsWith('[') ? registry.slice(registry.indexOf(']')) : registry,
  )?.[1];
  if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535))
    throw invalid(ref, `port ${port} of ${JSON.stringify(registry)} is not between 1 and 65535`);
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

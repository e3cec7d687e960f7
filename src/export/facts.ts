import { RootcastError } from '../core/errors.js';
import { lockFileSchema } from '../lock/lock-file.js';
import { openBlobStore } from '../store/blob-store.js';
import { ANNOTATION } from '../store/oci.js';
import type { TemplateDetails } from '../store/template-query.js';

/**
 * What the exporters say about a template besides its tree: names, dates, distribution and
 * architecture, in the spellings each runtime expects. Read once per export from the
 * manifest, config and lock (every blob verified); the naming functions are pure.
 */
export interface TemplateFacts {
  /** `name:version` (the tag it was named by, or the manifest's title and version). */
  ref: string;
  name: string;
  version: string;
  manifestDigest: string;
  /** The config's `created` as seconds (SOURCE_DATE_EPOCH of the build); 0 when it has none. */
  epoch: number;
  /** The epoch mtimes are clamped to when the tree is re-archived: `epoch`, or no clamping. */
  clampEpoch: number;
  /** From the lock; absent for templates that carry no lock. */
  distro?: string;
  release?: string;
  /** Debian architecture (`amd64`), from the lock, else guessed back from the OCI platform. */
  debArch: string;
  variant?: string;
}

const OCI_TO_DEBIAN: Record<string, string> = {
  amd64: 'amd64',
  arm64: 'arm64',
  '386': 'i386',
  ppc64le: 'ppc64el',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips64le: 'mips64el',
  loong64: 'loong64',
};

/** Pure: the kernel's name for a Debian architecture (`uname -m`), as LXC and Incus write it. */
export function kernelArch(debArch: string): string {
  const table: Record<string, string> = {
    amd64: 'x86_64',
    i386: 'i686',
    arm64: 'aarch64',
    armhf: 'armv7l',
    armel: 'armv6l',
    ppc64el: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
    mips64el: 'mips64',
    loong64: 'loongarch64',
  };
  return table[debArch] ?? debArch;
}

/** Pure: OpenVZ's architecture names in template cache file names (`x86_64`, `x86`). */
export function openvzArch(debArch: string): string {
  if (debArch === 'amd64') return 'x86_64';
  if (debArch === 'i386') return 'x86';
  return debArch;
}

/** Pure: seconds of an RFC 3339 date, or undefined when it does not parse. */
export function epochOfDate(date: string | undefined): number | undefined {
  if (!date) return undefined;
  const ms = Date.parse(date);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
}

/** The facts of `details`; the lock is read when the template records one. */
export async function readTemplateFacts(store: string, details: TemplateDetails): Promise<TemplateFacts> {
  const annotations = details.annotations;
  const title = annotations[ANNOTATION.title];
  const version = annotations[ANNOTATION.version];
  const tagged = details.ref;
  const ref = tagged ?? (title && version ? `${title}:${version}` : details.manifestDigest);
  const colon = ref.startsWith('sha256:') ? -1 : ref.lastIndexOf(':');
  const created = epochOfDate(details.config.created) ?? epochOfDate(annotations[ANNOTATION.created]);
  let lock: { distro: string; release: string; arch: string; variant: string } | undefined;
  if (details.lockDigest) {
    const text = (await openBlobStore(store).read(details.lockDigest)).toString('utf8');
    const parsed = lockFileSchema.safeParse(JSON.parse(text));
    if (parsed.success) lock = parsed.data;
  }
  const debArch = lock?.arch ?? guessDebianArch(details.config.architecture, details.config.variant);
  return {
    ref,
    name: colon > 0 ? ref.slice(0, colon) : (title ?? 'template'),
    version: colon > 0 ? ref.slice(colon + 1) : (version ?? details.manifestDigest.slice(7, 19)),
    manifestDigest: details.manifestDigest,
    epoch: created ?? 0,
    clampEpoch: created ?? Number.MAX_SAFE_INTEGER,
    debArch,
    ...(lock ? { distro: lock.distro, release: lock.release, variant: lock.variant } : {}),
  };
}

function guessDebianArch(architecture: string, variant: string | undefined): string {
  if (architecture === 'arm') return variant === 'v5' ? 'armel' : 'armhf';
  return OCI_TO_DEBIAN[architecture] ?? architecture;
}

/**
 * Pure: the OpenVZ template cache name `<distro>-<release>-<arch>[-<variant>]` (without the
 * `.tar.*` suffix), as vzctl parses OSTEMPLATE. Throws `EXPORT_NAME_UNKNOWN` when the
 * template records no distribution (it was not built from a recipe).
 */
export function openvzTemplateName(facts: TemplateFacts): string {
  if (!facts.distro || !facts.release) {
    throw new RootcastError({
      code: 'EXPORT_NAME_UNKNOWN',
      message: `template ${facts.ref} records no distribution or release to name an OpenVZ template after`,
      hint: 'Give -o a file name (e.g. debian-12-x86_64.tar.gz) instead of a directory.',
      exitCode: 2,
    });
  }
  const parts = [facts.distro, facts.release, openvzArch(facts.debArch)];
  if (facts.variant) parts.push(facts.variant);
  return parts.join('-');
}

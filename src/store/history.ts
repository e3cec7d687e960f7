import { inputError, RootcastError } from '../core/errors.js';
import { readIndex, updateIndex } from './layout.js';
import { ANNOTATION, type Descriptor, type ImageIndex, MEDIA_TYPE_MANIFEST } from './oci.js';
import { parseTemplateRef, resolveTemplate, type TemplateRef, validateName } from './template-query.js';

/**
 * Template versions in `index.json`. A tag (`org.opencontainers.image.ref.name`) names one
 * manifest; when a tag moves, the manifest it named stays in the index as an untagged history
 * entry (`org.rootcast.previous-ref` = the tag), so it stays addressable by digest and gc keeps
 * it. `name:latest` is a plain pointer that moves without history.
 *
 * Invariants: every entry written here carries `org.rootcast.sequence`, the index's largest
 * sequence + 1 at the tag or commit that wrote it (a history entry keeps the sequence it had
 * while tagged), so history is ordered without clocks; there is at most one history entry per
 * (previous-ref, digest) and none for a manifest its tag names again; entries are sorted by
 * (ref, previous-ref, digest), so equal histories are equal bytes. Everything here is pure
 * except `listIndexEntries`, `readTemplateHistory` and `removeTemplate` (the last writes through
 * `updateIndex`, under the store lock).
 */

export const LATEST = 'latest';

/** One index entry as `ls --all` shows it: a tag or a history entry. */
export interface IndexEntry {
  /** `name:version` when tagged. */
  ref?: string;
  /** The tag a history entry used to be. */
  previousRef?: string;
  name?: string;
  digest: string;
  size: number;
  /** 0 for entries written before sequences existed. */
  sequence: number;
  /** True when tagged (a history entry is not current). */
  current: boolean;
  annotations: Record<string, string>;
}

/** One manifest in a name's history, newest first by `sequence`. */
export interface HistoryItem {
  digest: string;
  sequence: number;
  /** Tags naming it now (`latest` included). */
  tags: string[];
  /** Tags that named it before moving on. */
  previousTags: string[];
  current: boolean;
}

export function templateExists(ref: string, existing: string, digest: string): RootcastError {
  return new RootcastError({
    code: 'TEMPLATE_EXISTS',
    message: `template ${ref} already exists as ${existing} (the new one would be ${digest})`,
    hint: 'Templates are immutable: use another version, or move the tag on purpose with `rootcast tag SOURCE NAME:VERSION --force`.',
    exitCode: 2,
    details: { ref, existing, digest },
  });
}

function templateNotFound(ref: string, when = ''): RootcastError {
  return inputError(
    'TEMPLATE_NOT_FOUND',
    `no template ${ref} in the store${when}`,
    'List templates and their history with `rootcast ls --all`.',
  );
}

const refOf = (d: Descriptor) => d.annotations?.[ANNOTATION.refName];
const previousRefOf = (d: Descriptor) => d.annotations?.[ANNOTATION.previousRef];

function nameOfRef(ref: string | undefined): string | undefined {
  if (!ref) return undefined;
  const colon = ref.lastIndexOf(':');
  return colon > 0 ? ref.slice(0, colon) : undefined;
}

function isLatest(ref: string): boolean {
  return ref.slice(ref.lastIndexOf(':') + 1) === LATEST;
}

export function sequenceOf(d: Descriptor): number {
  const n = Number(d.annotations?.[ANNOTATION.sequence]);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** The sequence the next tag or commit gets: the index's largest + 1. */
export function nextSequence(index: ImageIndex): number {
  return index.manifests.reduce((max, d) => Math.max(max, sequenceOf(d)), 0) + 1;
}

/** Deterministic order: tags by ref (history entries, with no ref, first), then previous-ref, digest. */
export function sortManifests(manifests: Descriptor[]): Descriptor[] {
  const key = (d: Descriptor) => `${refOf(d) ?? ''}\0${previousRefOf(d) ?? ''}\0${d.digest}`;
  return [...manifests].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

export interface TagOptions {
  /** Move the tag when it names another manifest (else `TEMPLATE_EXISTS`). */
  replace: boolean;
  /** Keep the manifest a moved tag named as a history entry (never for `latest`). */
  keepHistory: boolean;
  /** Defaults to `nextSequence(index)`; a commit gives its tag and `latest` the same one. */
  sequence?: number;
}

/**
 * Pure: `index` with `manifest` tagged `ref`. Returns the same object when the tag already
 * names this manifest.
 */
export function tagInIndex(
  index: ImageIndex,
  ref: string,
  manifest: Descriptor,
  extra: Record<string, string>,
  options: TagOptions,
): ImageIndex {
  const current = index.manifests.find((d) => refOf(d) === ref);
  if (current?.digest === manifest.digest) return index;
  if (current && !options.replace) throw templateExists(ref, current.digest, manifest.digest);
  const sequence = options.sequence ?? nextSequence(index);
  const kept = index.manifests.filter(
    (d) =>
      d !== current &&
      // The manifest becomes current again, or its history entry is about to be rewritten.
      !(previousRefOf(d) === ref && (d.digest === manifest.digest || d.digest === current?.digest)),
  );
  if (current && options.keepHistory && !isLatest(ref)) {
    const annotations: Record<string, string> = { ...current.annotations, [ANNOTATION.previousRef]: ref };
    delete annotations[ANNOTATION.refName];
    kept.push({
      mediaType: current.mediaType,
      digest: current.digest,
      size: current.size,
      annotations,
    });
  }
  kept.push({
    mediaType: MEDIA_TYPE_MANIFEST,
    digest: manifest.digest,
    size: manifest.size,
    annotations: { ...extra, [ANNOTATION.refName]: ref, [ANNOTATION.sequence]: String(sequence) },
  });
  return { ...index, manifests: sortManifests(kept) };
}

/** Pure: every manifest entry of the index, tagged or history. */
export function indexEntries(index: ImageIndex): IndexEntry[] {
  const out: IndexEntry[] = [];
  for (const d of index.manifests) {
    if (d.mediaType !== MEDIA_TYPE_MANIFEST) continue;
    const ref = refOf(d);
    const previousRef = previousRefOf(d);
    const name = d.annotations?.[ANNOTATION.name] ?? nameOfRef(ref ?? previousRef);
    out.push({
      ...(ref ? { ref } : {}),
      ...(previousRef && !ref ? { previousRef } : {}),
      ...(name ? { name } : {}),
      digest: d.digest,
      size: d.size,
      sequence: sequenceOf(d),
      current: ref !== undefined,
      annotations: d.annotations ?? {},
    });
  }
  return out;
}

/** Pure: the manifests the tags of `name` (or of any of `names`) have named, newest first. */
export function historyOf(index: ImageIndex, names: string | readonly string[]): HistoryItem[] {
  const wanted = new Set(typeof names === 'string' ? [names] : names);
  const byDigest = new Map<string, HistoryItem>();
  for (const e of indexEntries(index)) {
    const name = nameOfRef(e.ref ?? e.previousRef);
    if (name === undefined || !wanted.has(name)) continue;
    const item = byDigest.get(e.digest) ?? {
      digest: e.digest,
      sequence: 0,
      tags: [],
      previousTags: [],
      current: false,
    };
    item.sequence = Math.max(item.sequence, e.sequence);
    if (e.ref) {
      item.tags.push(e.ref);
      item.current = true;
    } else if (e.previousRef && !item.previousTags.includes(e.previousRef)) {
      item.previousTags.push(e.previousRef);
    }
    byDigest.set(e.digest, item);
  }
  return [...byDigest.values()]
    .map((i) => ({ ...i, tags: i.tags.sort(), previousTags: i.previousTags.sort() }))
    .sort((a, b) => b.sequence - a.sequence || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
}

/** What `rmi` did. */
export interface RemoveResult {
  removed: IndexEntry[];
  /** `name:latest` pointers moved to the newest remaining version (`digest`), or removed. */
  latest: { ref: string; digest?: string }[];
}

/**
 * Pure: `index` without `target`. A tag removes that tag; a digest removes every entry naming
 * the manifest. Either way the history entries of every removed tag go too (so gc can reclaim
 * them), and a `name:latest` that pointed at a removed version moves to the newest remaining
 * version of that name (or goes when none is left). Removing nothing is `TEMPLATE_NOT_FOUND`.
 */
export function withoutTemplate(
  index: ImageIndex,
  target: TemplateRef,
): { index: ImageIndex; result: RemoveResult } {
  const label = target.kind === 'tag' ? `${target.name}:${target.version}` : target.digest;
  const hit = (d: Descriptor) =>
    d.mediaType === MEDIA_TYPE_MANIFEST && (target.kind === 'tag' ? refOf(d) === label : d.digest === label);
  const direct = index.manifests.filter(hit);
  if (direct.length === 0) throw templateNotFound(label);
  const removedTags = new Set(direct.map(refOf).filter((r): r is string => r !== undefined));
  const gone = new Set<Descriptor>(direct);
  for (const d of index.manifests) {
    const previous = previousRefOf(d);
    if (!refOf(d) && previous && removedTags.has(previous)) gone.add(d);
  }
  let manifests = index.manifests.filter((d) => !gone.has(d));
  const latest: RemoveResult['latest'] = [];
  const removedDigests = new Set(direct.filter((d) => refOf(d) !== undefined).map((d) => d.digest));
  const names = new Set([...removedTags].filter((r) => !isLatest(r)).map((r) => nameOfRef(r)!));
  for (const name of names) {
    const latestRef = `${name}:${LATEST}`;
    if (target.kind === 'tag' && label === latestRef) continue;
    const pointer = index.manifests.find((d) => refOf(d) === latestRef);
    if (!pointer) continue;
    const versions = manifests.filter((d) => {
      const ref = refOf(d);
      return ref !== undefined && !isLatest(ref) && nameOfRef(ref) === name;
    });
    // Only a pointer at a removed version moves: a `latest` set by hand elsewhere stays.
    const stale = gone.has(pointer) || removedDigests.has(pointer.digest);
    if (!stale || (!gone.has(pointer) && versions.some((d) => d.digest === pointer.digest))) continue;
    manifests = manifests.filter((d) => d !== pointer);
    const newest = versions.sort((a, b) => sequenceOf(b) - sequenceOf(a))[0];
    if (newest) {
      manifests.push({
        ...newest,
        annotations: { ...newest.annotations, [ANNOTATION.refName]: latestRef },
      });
      latest.push({ ref: latestRef, digest: newest.digest });
    } else {
      latest.push({ ref: latestRef });
    }
    gone.add(pointer);
  }
  const removed = indexEntries({ ...index, manifests: index.manifests.filter((d) => gone.has(d)) });
  return { index: { ...index, manifests: sortManifests(manifests) }, result: { removed, latest } };
}

/** Every entry of the store's index, tagged and history, sorted by ref or previous-ref then sequence. */
export async function listIndexEntries(store: string): Promise<IndexEntry[]> {
  const key = (e: IndexEntry) => e.ref ?? e.previousRef ?? '';
  return indexEntries(await readIndex(store)).sort(
    (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) || b.sequence - a.sequence,
  );
}

/** Pure: the names whose tags name or named manifest `digest`, sorted. */
export function namesOfDigest(index: ImageIndex, digest: string): string[] {
  const names = new Set<string>();
  for (const e of indexEntries(index)) {
    const name = e.digest === digest ? nameOfRef(e.ref ?? e.previousRef) : undefined;
    if (name !== undefined) names.add(name);
  }
  return [...names].sort();
}

/**
 * `rootcast history REF`. REF is a template name (the manifests its tags named), a
 * `name:version` (the history of its name; that tag must exist or have existed), or a manifest
 * digest (the history of every name whose tags name or named it). A bad name is
 * `TEMPLATE_NAME_INVALID`, a bad digest `DIGEST_INVALID`; nothing to show is
 * `TEMPLATE_NOT_FOUND`, saying which of these it was.
 */
export async function readTemplateHistory(store: string, ref: string): Promise<HistoryItem[]> {
  const index = await readIndex(store);
  if (!ref.includes(':')) {
    validateName(ref);
    const items = historyOf(index, ref);
    if (items.length === 0)
      throw inputError(
        'TEMPLATE_NOT_FOUND',
        `no template named ${ref} in the store: no tag of that name exists or existed`,
        'List templates and their history with `rootcast ls --all`.',
      );
    return items;
  }
  const target = parseTemplateRef(ref);
  if (target.kind === 'tag') {
    const items = historyOf(index, target.name);
    if (!items.some((i) => i.tags.includes(ref) || i.previousTags.includes(ref)))
      throw templateNotFound(ref, ', now or in its history');
    return items;
  }
  const names = namesOfDigest(index, target.digest);
  if (names.length === 0) {
    // Not in the store, or not a manifest: resolveTemplate says which. Else it was never tagged.
    await resolveTemplate(store, target.digest);
    throw inputError(
      'TEMPLATE_NOT_FOUND',
      `manifest ${target.digest} has no history: no tag names it or has named it`,
      `Give it a tag with \`rootcast tag ${target.digest} NAME:VERSION\`, or see \`rootcast ls --all\`.`,
    );
  }
  return historyOf(index, names);
}

/**
 * `rmi`: removes `target` from the index under the store lock (see `withoutTemplate`). A target
 * the index does not hold is `TEMPLATE_NOT_FOUND` without taking the lock (nothing is created).
 */
export async function removeTemplate(store: string, target: TemplateRef): Promise<RemoveResult> {
  // Removing nothing fails before the lock is taken, so a mistyped --store is not created.
  withoutTemplate(await readIndex(store), target);
  let result: RemoveResult = { removed: [], latest: [] };
  await updateIndex(store, (index) => {
    const out = withoutTemplate(index, target);
    result = out.result;
    return out.index;
  });
  return result;
}

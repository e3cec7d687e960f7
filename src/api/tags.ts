import { type ContextOptions, createContext } from '../core/context.js';
import { inputError, RootcastError } from '../core/errors.js';
import {
  type HistoryItem,
  listIndexEntries,
  type RemoveResult,
  readTemplateHistory,
  removeTemplate as removeFromIndex,
  withoutTemplate,
} from '../store/history.js';
import { readIndex } from '../store/layout.js';
import {
  assertTemplateComplete,
  parseTemplateRef,
  readTemplate,
  resolveTemplate,
} from '../store/template-query.js';
import { tagTemplate as tagInStore } from '../store/templates.js';

/**
 * Versions of templates: `ls --all`, `history`, `tag` and `rmi`. Reads take no lock; `tag`
 * and `rmi` rewrite `index.json` through `updateIndex` (atomic, under the store lock). `rmi`
 * only drops index entries: the blobs stay until `rootcast gc`.
 */

/** A row of `rootcast ls --all`: a tag, or a history entry (the tag it held before). */
export interface IndexRow {
  /** `name:version` of a tag; for a history entry the tag it held. */
  template: string;
  digest: string;
  sequence: number;
  /** False for history entries. */
  current: boolean;
}

export async function listAllTemplates(options: ContextOptions = {}): Promise<IndexRow[]> {
  const { store } = createContext(options);
  return (await listIndexEntries(store)).map((e) => ({
    template: e.ref ?? e.previousRef ?? '',
    digest: e.digest,
    sequence: e.sequence,
    current: e.current,
  }));
}

/**
 * Every manifest a name's tags have named, newest first. `ref` is the name, a `name:version`
 * of it (current or past), or a manifest digest (the history of each name that tagged it).
 */
export async function templateHistory(ref: string, options: ContextOptions = {}): Promise<HistoryItem[]> {
  const { store } = createContext(options);
  return readTemplateHistory(store, ref);
}

export interface TagResult {
  template: string;
  digest: string;
  /** The manifest `template` named before it moved (kept as a history entry). */
  previous?: string;
}

/**
 * `rootcast tag SRC DST`: SRC is `name:version` or a digest (history entries included), DST a
 * `name:version`. An existing DST naming another manifest is `TEMPLATE_EXISTS` unless `force`.
 * A SRC that misses a blob it names (config, layer, lock, SBOM) is `TEMPLATE_INCOMPLETE`.
 */
export async function tagTemplate(
  source: string,
  target: string,
  flags: { force?: boolean } = {},
  options: ContextOptions = {},
): Promise<TagResult> {
  const { store } = createContext(options);
  const dst = parseTemplateRef(target);
  if (dst.kind !== 'tag') {
    throw inputError(
      'TEMPLATE_REF_INVALID',
      `${target} is a digest, not a tag`,
      'Name the new tag as name:version.',
    );
  }
  // A manifest whose config or layers are gone (an interrupted gc) must not get a tag: checked
  // before reading the config, and again under the store lock as the tag is written.
  await assertTemplateComplete(store, source, (await resolveTemplate(store, source)).manifestDigest);
  const details = await readTemplate(store, source);
  const moved = await tagInStore(store, details.manifestDigest, dst.name, dst.version, {
    replace: Boolean(flags.force),
    requireComplete: true,
    ...(details.cacheKey ? { cacheKey: details.cacheKey } : {}),
  }).catch((error: unknown) => {
    if (!(error instanceof RootcastError) || error.code !== 'TEMPLATE_EXISTS') throw error;
    throw new RootcastError({
      code: error.code,
      message: error.message,
      hint: `Pass --force to move ${target} (the manifest it names now stays in \`rootcast history\`), or tag another version.`,
      exitCode: 2,
      ...(error.details ? { details: error.details } : {}),
    });
  });
  return {
    template: target,
    digest: details.manifestDigest,
    ...(moved.previous ? { previous: moved.previous } : {}),
  };
}

/** `rootcast rmi TEMPLATE`: see `withoutTemplate` in store/history.ts. */
export async function removeTemplate(ref: string, options: ContextOptions = {}): Promise<RemoveResult> {
  const { store } = createContext(options);
  const target = parseTemplateRef(ref);
  // A manifest that would leave the index while containers use it is refused (gc keeps it anyway).
  const { templatesInUse } = await import('../runtime/record.js');
  const inUse = templatesInUse(store).digests;
  if (inUse.size > 0) {
    const preview = withoutTemplate(await readIndex(store), target);
    const left = new Set(preview.index.manifests.map((d) => d.digest));
    // The target's own manifest first, then the history that would go with it.
    const direct = (e: { digest: string; ref?: string }) => e.digest === ref || e.ref === ref;
    const removed = [...preview.result.removed].sort((x, y) => Number(direct(y)) - Number(direct(x)));
    for (const e of removed) {
      const users = left.has(e.digest) ? undefined : inUse.get(e.digest);
      if (!users) continue;
      const who = `container(s) ${users.join(', ')}`;
      throw inputError(
        'TEMPLATE_IN_USE',
        e.digest === ref
          ? `${ref} is used by ${who}`
          : e.ref === ref
            ? `${ref} (${e.digest}) is used by ${who}`
            : `removing ${ref} would also remove ${e.digest} (${e.ref ?? `was ${e.previousRef ?? '?'}`}), which ${who} use`,
        `Remove them first: rootcast rm ${users.join(' ')}`,
      );
    }
  }
  return removeFromIndex(store, target);
}

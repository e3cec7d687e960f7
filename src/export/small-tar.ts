import { contentPadding, END_OF_ARCHIVE, encodeEntryHeader } from '../store/tar-header.js';

/**
 * Small archives made in memory (LXC's meta.tar.xz, Incus's metadata), with the store's tar
 * header encoding so they are as deterministic as layers: root-owned, fixed modes, the given
 * mtime, entries in the order given (callers pass them sorted, directories first).
 */
export type SmallEntry = { path: string; mode?: number } & (
  | { directory: true }
  | { content: string | Buffer }
);

/** The header and content blocks of `entries`, without the end-of-archive marker. */
export function smallTarEntries(entries: readonly SmallEntry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const base = { uid: 0, gid: 0, mtime };
    if ('directory' in entry) {
      const path = entry.path.endsWith('/') ? entry.path : `${entry.path}/`;
      parts.push(encodeEntryHeader({ ...base, path, type: 'directory', mode: entry.mode ?? 0o755, size: 0 }));
      continue;
    }
    const content = typeof entry.content === 'string' ? Buffer.from(entry.content, 'utf8') : entry.content;
    parts.push(
      encodeEntryHeader({
        ...base,
        path: entry.path,
        type: 'file',
        mode: entry.mode ?? 0o644,
        size: content.length,
      }),
      content,
      Buffer.alloc(contentPadding(content.length)),
    );
  }
  return Buffer.concat(parts);
}

/** A whole archive of `entries`. */
export function smallTar(entries: readonly SmallEntry[], mtime: number): Buffer {
  return Buffer.concat([smallTarEntries(entries, mtime), END_OF_ARCHIVE]);
}

import type { NameSink } from '../distro/deb/relations.js';

/**
 * apt's package IDs: every name numbered in the order apt's cache generator first meets it
 * while reading the indexes (see `IndexData.order`). apt breaks ties between providers with
 * these numbers and resolves requested packages in their order, so they must come out
 * exactly as apt's, which means meeting every relation atom of every package: ~370k atoms
 * for Debian's main index, of which ~100k distinct names.
 *
 * This is an insert-only open-addressing table keyed by the characters of a span of text,
 * so the atoms are counted straight from the relation fields' text: no string is made for
 * a name already met (the common case), and none is hashed twice. Lifecycle: built once per
 * `IndexData` by `add`ing names in reading order, then only read (`get`).
 */
export class NameOrder implements NameSink {
  private slots: Int32Array;
  private readonly hashes: number[] = [];
  private readonly names: string[] = [];

  constructor(expectedNames = 1 << 16) {
    let size = 1024;
    while (size < expectedNames * 2) size *= 2;
    this.slots = new Int32Array(size);
  }

  /** How many distinct names have been met. */
  get size(): number {
    return this.names.length;
  }

  /** Meets the name `text[start, end)`: numbered now if it is new, left alone otherwise. */
  add(text: string, start: number, end: number): void {
    if (end <= start) return;
    const hash = hashSpan(text, start, end);
    const mask = this.slots.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = this.slots[i]!;
      if (entry === 0) {
        this.slots[i] = this.names.push(text.slice(start, end));
        this.hashes.push(hash);
        if (this.names.length * 2 > this.slots.length) this.grow();
        return;
      }
      if (this.hashes[entry - 1] === hash && sameSpan(this.names[entry - 1]!, text, start, end)) return;
    }
  }

  /** The number of `name` (0 for the first name met), or undefined if it was never met. */
  get(name: string): number | undefined {
    const hash = hashSpan(name, 0, name.length);
    const mask = this.slots.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = this.slots[i]!;
      if (entry === 0) return undefined;
      if (this.hashes[entry - 1] === hash && this.names[entry - 1] === name) return entry - 1;
    }
  }

  private grow(): void {
    const slots = new Int32Array(this.slots.length * 2);
    const mask = slots.length - 1;
    for (let entry = 1; entry <= this.names.length; entry++) {
      let i = this.hashes[entry - 1]! & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = entry;
    }
    this.slots = slots;
  }
}

/** FNV-1a over UTF-16 code units. */
function hashSpan(text: string, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

function sameSpan(name: string, text: string, start: number, end: number): boolean {
  if (name.length !== end - start) return false;
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) !== text.charCodeAt(start + i)) return false;
  return true;
}

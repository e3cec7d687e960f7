/**
 * Canonical JSON: object keys sorted by code point, no `undefined`, integers only as they
 * are, arrays in their given order. Two equal values always serialise to the same bytes,
 * so the text can be hashed (lock digests, cache keys) and diffed.
 *
 * `canonicalJson` is compact (for hashing); `canonicalJsonPretty` is the same order with
 * two-space indentation and a final newline (for files people read, such as locks).
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

function normalise(value: unknown, path: string): JsonValue {
  if (value === null) return null;
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot hold ${value} at ${path}`);
      return value;
    case 'object': {
      if (Array.isArray(value)) return value.map((v, i) => normalise(v, `${path}[${i}]`));
      const out: { [key: string]: JsonValue } = {};
      for (const key of Object.keys(value as object).sort()) {
        const v = (value as Record<string, unknown>)[key];
        if (v === undefined) continue;
        out[key] = normalise(v, `${path}.${key}`);
      }
      return out;
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value} at ${path}`);
  }
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalise(value, '$'));
}

export function canonicalJsonPretty(value: unknown): string {
  return `${JSON.stringify(normalise(value, '$'), null, 2)}\n`;
}

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Upper-snake literals in src that are not ours: errno names, undici's and yaml's codes. */
const FOREIGN =
  /^(E[A-Z]+|EAI_[A-Z]+|UND_ERR_.*|DUPLICATE_KEY|TAB_AS_INDENT|BAD_[A-Z_]+|ROOTCAST_.*|SOURCE_DATE_EPOCH|[A-Z]+_(PATH|DIR|HOME|FRONTEND|SEEN|ALL))$/;

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

describe('docs/errors.md', () => {
  it('documents every error code the source can throw', async () => {
    const docs = await readFile(join(ROOT, 'docs/errors.md'), 'utf8');
    const codes = new Set<string>(['ABORTED', 'INTERNAL']);
    for (const file of await sourceFiles(join(ROOT, 'src'))) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g))
        if (!FOREIGN.test(m[1]!)) codes.add(m[1]!);
    }
    expect(codes.size).toBeGreaterThan(30);
    const missing = [...codes].filter((code) => !docs.includes(`\`${code}\``)).sort();
    expect(missing).toEqual([]);
  });
});

import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

/**
 * The fields docs/json.md documents for a verb's `--json` output: the `table`-th table under
 * the heading "## `rootcast VERB …`", split into required fields and those marked _optional_.
 */
export function documentedFields(verb: string, table = 0): { required: string[]; optional: string[] } {
  const text = readFileSync(new URL('../../docs/json.md', import.meta.url), 'utf8');
  const section = text.split(/^## /m).find((s) => s.startsWith(`\`rootcast ${verb} `));
  if (section === undefined) throw new Error(`docs/json.md has no section for ${verb}`);
  const tables: string[][] = [];
  let current: string[] | undefined;
  for (const line of section.split('\n')) {
    if (line.startsWith('| `')) {
      if (current === undefined) {
        current = [];
        tables.push(current);
      }
      current.push(line);
    } else if (!line.startsWith('|')) current = undefined;
  }
  const rows = tables[table];
  if (rows === undefined) throw new Error(`docs/json.md: ${verb} has no table ${table}`);
  const required: string[] = [];
  const optional: string[] = [];
  for (const row of rows) {
    const [, name, type] = row.split('|').map((cell) => cell.trim());
    const field = /^`([^`]+)`$/.exec(name ?? '')?.[1];
    if (field === undefined) throw new Error(`docs/json.md: bad row ${row}`);
    (/[*_]optional[*_]/.test(type ?? '') ? optional : required).push(field);
  }
  return { required, optional };
}

/** Checks an object's keys against the documented fields: all required, nothing undocumented. */
export function expectDocumented(value: object, fields: { required: string[]; optional: string[] }): void {
  const keys = Object.keys(value);
  expect(
    fields.required.filter((f) => !keys.includes(f)),
    'documented fields missing',
  ).toEqual([]);
  const known = [...fields.required, ...fields.optional];
  expect(
    keys.filter((k) => !known.includes(k)),
    'fields docs/json.md does not describe',
  ).toEqual([]);
}

import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { describeError, inputError } from '../core/errors.js';
import type { UserSpec } from './etc-files.js';

/**
 * The values each container of a clone is customized with, and the name patterns they fill.
 *
 * Sources, later ones winning key by key: the `--values` file's row for this container (a CSV
 * row, a JSON/YAML object or one element of a JSON/YAML list), then `--set key=value`, then
 * `index` (1-based position in the batch) and `name` (the container's name).
 *
 * Patterns (`--name 'lab-{{index}}'`, a `motd` value) are handlebars templates. Plain
 * `{{key}}`/`{{a.b}}` substitutions are filled here without loading handlebars (which alone
 * takes ~60 ms to load, the whole budget of a single clone); anything else (`{{#if}}`,
 * helpers, `{{{…}}}`) is rendered by handlebars itself, loaded on first need. Both are
 * strict: a key the values lack is `CLONE_VALUE_MISSING`, and nothing is HTML-escaped.
 */
export type Values = Record<string, unknown>;

/** `key=value` pairs; dotted keys make nested objects (`a.b=1` → `{a: {b: '1'}}`). */
export function parseSetValues(pairs: readonly string[]): Values {
  const out: Values = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw inputError(
        'CLONE_SET_INVALID',
        `--set ${JSON.stringify(pair)} is not key=value`,
        'Write --set hostname=web1.',
      );
    const path = pair.slice(0, eq).split('.');
    let node: Values = out;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      const child = (typeof next === 'object' && next !== null ? next : {}) as Values;
      node[key] = child;
      node = child;
    }
    node[path[path.length - 1]!] = pair.slice(eq + 1);
  }
  return out;
}

/**
 * RFC 4180 CSV: a header row, then one object per row (quotes, doubled quotes, CRLF; blank
 * lines skipped). Every row has exactly the header's number of fields, and header names are
 * distinct: anything else is `VALUES_FILE_INVALID` naming the line.
 */
export function parseCsv(text: string, file = 'values'): Values[] {
  const rows: { fields: string[]; line: number }[] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const endRow = () => {
    row.push(field);
    field = '';
    if (row.some((f) => f !== '')) rows.push({ fields: row, line: rowLine });
    row = [];
  };
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else {
        if (c === '\n' || (c === '\r' && text[i + 1] !== '\n')) line++;
        field += c;
      }
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else field += c;
  }
  if (quoted)
    throw inputError(
      'VALUES_FILE_INVALID',
      `${file}: line ${rowLine}: a quoted CSV field is not closed`,
      'Close every " in the file.',
    );
  endRow();
  const [header, ...data] = rows;
  if (!header) return [];
  const keys = header.fields.map((h) => h.trim());
  for (const [k, key] of keys.entries())
    if (key !== '' && keys.indexOf(key) !== k)
      throw inputError(
        'VALUES_FILE_INVALID',
        `${file}: line ${header.line}: the header names column ${JSON.stringify(key)} twice`,
        'Give every column its own name.',
      );
  return data.map(({ fields, line: at }) => {
    if (fields.length !== keys.length)
      throw inputError(
        'VALUES_FILE_INVALID',
        `${file}: line ${at} has ${fields.length} field(s), the header ${keys.length}`,
        fields.length > keys.length
          ? 'Quote fields that contain commas.'
          : 'Give every row all the columns (an empty field is written as nothing between two commas).',
      );
    const out: Values = {};
    for (const [k, key] of keys.entries())
      if (key !== '' && fields[k] !== undefined && fields[k] !== '') out[key] = fields[k];
    return out;
  });
}

/** Reads a values file: `.csv` rows, or a JSON/YAML object (one row) or list (rows). */
export async function readValuesFile(file: string): Promise<Values[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw inputError(
      'VALUES_FILE_INVALID',
      `cannot read ${file}: ${describeError(error)}`,
      'Check the --values path.',
      error,
    );
  }
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return parseCsv(text, file);
  let parsed: unknown;
  try {
    parsed = ext === '.json' ? JSON.parse(text) : (await import('yaml')).parse(text);
  } catch (error) {
    throw inputError(
      'VALUES_FILE_INVALID',
      `${file} is not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${describeError(error)}`,
      'Fix the syntax.',
      error,
    );
  }
  const rows = Array.isArray(parsed) ? parsed : [parsed];
  if (!rows.every((r) => typeof r === 'object' && r !== null && !Array.isArray(r)))
    throw inputError(
      'VALUES_FILE_INVALID',
      `${file}: expected an object or a list of objects`,
      'Write key: value pairs, or a list of them.',
    );
  return rows as Values[];
}

const SIMPLE = /\{\{\s*([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}/g;

function missing(key: string, pattern: string): Error {
  return inputError(
    'CLONE_VALUE_MISSING',
    `${JSON.stringify(pattern)} uses {{${key}}}, which the values do not set`,
    'Add the column to the --values file or pass --set KEY=VALUE.',
  );
}

/** Fills a handlebars pattern with `values` (see the module comment). */
export async function renderPattern(pattern: string, values: Values): Promise<string> {
  if (!pattern.includes('{{')) return pattern;
  if (pattern.replace(SIMPLE, '').includes('{{')) {
    const handlebars = (await import('handlebars')).default;
    try {
      return handlebars.compile(pattern, { noEscape: true, strict: true })(values);
    } catch (error) {
      const key = /"([^"]+)" not defined/.exec(describeError(error))?.[1];
      if (key) throw missing(key, pattern);
      throw inputError(
        'CLONE_VALUE_INVALID',
        `cannot render ${JSON.stringify(pattern)}: ${describeError(error)}`,
        'Check the handlebars syntax.',
        error,
      );
    }
  }
  return pattern.replace(SIMPLE, (_, key: string) => {
    let node: unknown = values;
    for (const part of key.split('.'))
      node = typeof node === 'object' && node !== null ? (node as Values)[part] : undefined;
    if (node === undefined || node === null) throw missing(key, pattern);
    return String(node);
  });
}

function text(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return String(value);
}

function list(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String).filter((v) => v !== '');
  const t = text(value);
  return t ? t.split(/[\s,]+/).filter((v) => v !== '') : [];
}

function userOf(v: Values): UserSpec {
  const uid = text(v.uid);
  const shell = text(v.shell);
  const hash = text(v.password_hash);
  return {
    name: String(v.name ?? v.user ?? ''),
    ...(hash ? { passwordHash: hash } : {}),
    sshKeys: (Array.isArray(v.ssh_keys) ? v.ssh_keys.map(String) : [])
      .concat(text(v.ssh_key)?.split('\n') ?? [])
      .map((k) => k.trim())
      .filter((k) => k !== ''),
    groups: list(v.groups),
    ...(uid ? { uid: Number(uid) } : {}),
    ...(shell ? { shell } : {}),
  };
}

/** The flat columns that describe the account named by `user`. */
const ACCOUNT_KEYS = ['password_hash', 'ssh_key', 'ssh_keys', 'groups', 'uid', 'shell'] as const;

/**
 * The accounts a container's values ask for: a `users` list of objects, and/or the flat
 * columns `user`, `password_hash`, `ssh_key`, `groups`, `uid`, `shell` (one user per CSV row).
 * An account column without `user` is refused (`CLONE_VALUE_INVALID`), not dropped.
 */
export function usersOf(values: Values): UserSpec[] {
  const out: UserSpec[] = [];
  if (Array.isArray(values.users)) {
    for (const u of values.users) {
      if (typeof u !== 'object' || u === null)
        throw inputError(
          'CLONE_VALUE_INVALID',
          'users must be a list of objects',
          'Write users: [{name: alice, ssh_key: …}].',
        );
      out.push(userOf(u as Values));
    }
  }
  if (text(values.user)) out.push(userOf({ ...values, name: values.user }));
  else {
    const orphans = ACCOUNT_KEYS.filter((k) => {
      const v = values[k];
      return Array.isArray(v) ? v.length > 0 : text(v) !== undefined;
    });
    if (orphans.length > 0)
      throw inputError(
        'CLONE_VALUE_INVALID',
        `the values set ${orphans.join(', ')} but no user, so they would apply to nobody`,
        'Add the user they are for (a user column, or --set user=NAME; user=root for root).',
      );
  }
  return out;
}

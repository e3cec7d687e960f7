import Handlebars from 'handlebars';
import { inputError } from '../core/errors.js';
import type { RecipeDocument } from './parse.js';
import type { RecipePath } from './types.js';
import { formatPath, showValue } from './validate.js';
import { isMirrorVariable } from './variables.js';

/**
 * Handlebars rendering of the strings of a parsed recipe.
 *
 * Every string value that contains `{{` is a template, compiled once with `strict` (a
 * missing variable is an error, never an empty string) and `noEscape` (recipes are not
 * HTML). Each template is rendered twice: with the real values (the recipe rootcast works
 * with) and with every `mirror.*` variable replaced by its own placeholder text
 * (`{{mirror.debian}}`), which makes the recipe digest and the lock independent of the
 * mirror a machine happens to use.
 *
 * Variable names may hold hyphens: `{{mirror.debian-security}}` and
 * `{{mirror.[debian-security]}}` are the same variable. Write `\{{` for literal braces.
 */

/** One `{{name}}` use in a string: the variable and the text as written, to point at it. */
export interface VariableReference {
  name: string;
  source: string;
}

/** A template string of the recipe, compiled, with the variables it refers to outside blocks. */
export interface RecipeTemplate {
  path: (string | number)[];
  text: string;
  references: VariableReference[];
  render: Handlebars.TemplateDelegate;
}

/** Variable values as a flat map (`mirror.debian` → URI). */
export type FlatVariables = ReadonlyMap<string, string>;

const handlebars = Handlebars.create();
/** Handlebars' own helpers; rootcast registers none, so any other name is a mistake. */
const BUILTIN_HELPERS = new Set(['if', 'unless', 'each', 'with', 'lookup', 'log']);

/** Finds and compiles every template string under `value`, in document order; throws `RECIPE_TEMPLATE`. */
export function compileTemplates(document: RecipeDocument, value: unknown): RecipeTemplate[] {
  const templates: RecipeTemplate[] = [];
  walkStrings(value, [], (text, path) => {
    if (!text.includes('{{')) return;
    let program: hbs.AST.Program;
    try {
      program = handlebars.parse(text);
    } catch (error) {
      throw templateError(document, path, text, error);
    }
    const references: VariableReference[] = [];
    const helpers: string[] = [];
    collectReferences(program, text, references, helpers);
    const unknown = helpers.find((h) => !BUILTIN_HELPERS.has(h));
    if (unknown !== undefined) {
      throw document.errorAt(
        path,
        'RECIPE_TEMPLATE',
        `${formatPath(path)}: unknown handlebars helper \`${unknown}\``,
        'Recipes can use variables and the built-in helpers (if, unless, each, with, lookup) only.',
        document.locateWithin(path, unknown),
      );
    }
    const render = handlebars.compile(text, { strict: true, noEscape: true });
    templates.push({ path, text, references, render });
  });
  return templates;
}

/** The distinct variable names the templates refer to, in order of first use. */
export function referencedNames(templates: readonly RecipeTemplate[]): string[] {
  return [...new Set(templates.flatMap((t) => t.references.map((r) => r.name)))];
}

/**
 * Throws `RECIPE_VARIABLE_UNDEFINED` at the first reference, in document order, that
 * `isDefined` rejects for its template.
 */
export function checkDefined(
  document: RecipeDocument,
  templates: readonly RecipeTemplate[],
  isDefined: (name: string, template: RecipeTemplate) => boolean,
  hint: (name: string) => string,
): void {
  for (const template of templates) {
    for (const ref of template.references) {
      if (isDefined(ref.name, template)) continue;
      throw document.errorAt(
        template.path,
        'RECIPE_VARIABLE_UNDEFINED',
        `${formatPath(template.path)}: variable \`${ref.name}\` is not defined`,
        hint(ref.name),
        document.locateWithin(template.path, ref.source),
      );
    }
  }
}

/**
 * A copy of `value` with the given templates rendered in `variables` (other strings and
 * all non-strings are kept as they are).
 */
export function renderValue(
  document: RecipeDocument,
  value: unknown,
  templates: readonly RecipeTemplate[],
  variables: FlatVariables,
): unknown {
  const context = contextOf(variables);
  const byPath = new Map(templates.map((t) => [pathKey(t.path), t]));
  return mapStrings(value, [], (text, path) => {
    const template = byPath.get(pathKey(path));
    if (!template) return text;
    try {
      return template.render(context);
    } catch (error) {
      throw runtimeError(document, template, error);
    }
  });
}

/** The same variables with each `mirror.*` value replaced by its own placeholder (`{{mirror.debian}}`). */
export function symbolicVariables(variables: FlatVariables): Map<string, string> {
  return new Map(
    [...variables].map(([name, value]) => [name, isMirrorVariable(name) ? `{{${name}}}` : value]),
  );
}

/** Renders one template string on its own (recipe fields, before the rest). */
export function renderTemplate(
  document: RecipeDocument,
  template: RecipeTemplate,
  variables: FlatVariables,
): string {
  try {
    return template.render(contextOf(variables));
  } catch (error) {
    throw runtimeError(document, template, error);
  }
}

// ---------------------------------------------------------------------------------------

/**
 * Collects the variables a template reads from the recipe's context. Bodies of blocks that
 * change the context (`each`, `with`) are left to strict mode at render time, since their
 * names are relative to the block.
 */
function collectReferences(
  program: hbs.AST.Program,
  text: string,
  out: VariableReference[],
  helpers: string[],
): void {
  for (const statement of program.body) {
    if (statement.type === 'MustacheStatement') {
      const m = statement as hbs.AST.MustacheStatement;
      const isHelperCall = m.params.length > 0 || m.hash?.pairs.length > 0;
      if (isHelperCall && m.path.type === 'PathExpression')
        helpers.push((m.path as hbs.AST.PathExpression).original);
      else addPath(m.path, text, out);
      collectExpressions(argumentsOf(m), text, out, helpers);
    } else if (statement.type === 'BlockStatement') {
      const b = statement as hbs.AST.BlockStatement;
      helpers.push(b.path.original);
      collectExpressions(argumentsOf(b), text, out, helpers);
      if (b.path.original === 'if' || b.path.original === 'unless') {
        if (b.program) collectReferences(b.program, text, out, helpers);
        if (b.inverse) collectReferences(b.inverse, text, out, helpers);
      }
    }
  }
}

function argumentsOf(call: { params: hbs.AST.Expression[]; hash?: hbs.AST.Hash }): hbs.AST.Expression[] {
  return [...call.params, ...(call.hash?.pairs.map((p) => p.value) ?? [])];
}

function collectExpressions(
  expressions: readonly hbs.AST.Expression[],
  text: string,
  out: VariableReference[],
  helpers: string[],
): void {
  for (const expression of expressions) {
    if (expression.type === 'PathExpression') addPath(expression, text, out);
    else if (expression.type === 'SubExpression') {
      const sub = expression as hbs.AST.SubExpression;
      helpers.push(sub.path.original);
      collectExpressions(argumentsOf(sub), text, out, helpers);
    }
  }
}

function addPath(expression: hbs.AST.Expression, text: string, out: VariableReference[]): void {
  if (expression.type !== 'PathExpression') return;
  const path = expression as hbs.AST.PathExpression;
  if (path.data || path.depth > 0 || path.parts.length === 0) return;
  out.push({ name: path.parts.join('.'), source: sliceLoc(text, path.loc) ?? path.original });
}

/** The text a handlebars location covers (lines 1-based, columns 0-based). */
function sliceLoc(text: string, loc: hbs.AST.SourceLocation | undefined): string | undefined {
  if (!loc) return undefined;
  const lines = text.split('\n');
  const offset = (p: hbs.AST.Position) =>
    lines.slice(0, p.line - 1).reduce((sum, line) => sum + line.length + 1, 0) + p.column;
  return text.slice(offset(loc.start), offset(loc.end)) || undefined;
}

/** Nested handlebars context from flat dotted names; prototype-free so names cannot reach Object. */
function contextOf(variables: FlatVariables): Record<string, unknown> {
  const root: Record<string, unknown> = Object.create(null);
  for (const [name, value] of [...variables].sort(([a], [b]) => a.length - b.length)) {
    const parts = name.split('.');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (typeof next === 'string') {
        throw inputError(
          'USAGE_SET',
          `variables \`${parts.slice(0, parts.indexOf(part) + 1).join('.')}\` and \`${name}\` cannot both be set`,
          'A variable cannot be both a value and a group of values; rename one of them.',
        );
      }
      if (next === undefined) node[part] = Object.create(null);
      node = node[part] as Record<string, unknown>;
    }
    node[parts.at(-1)!] = value;
  }
  return root;
}

function templateError(document: RecipeDocument, path: RecipePath, text: string, error: unknown) {
  // Handlebars parse errors are four lines: position, the line, a caret, what it expected.
  const message = error instanceof Error ? error.message : String(error);
  const lines = message.split('\n');
  const expected = lines.find((l) => /^Expecting|^Lexical|^Parse/.test(l) && !/on line \d+:$/.test(l));
  const what = expected ?? lines[0] ?? 'cannot parse';
  return document.errorAt(
    path,
    'RECIPE_TEMPLATE',
    `${formatPath(path)}: invalid handlebars template ${showValue(text)}: ${what}`,
    'Fix the {{…}} expression (e.g. {{mirror.debian}}); write \\{{ for literal braces.',
  );
}

function runtimeError(document: RecipeDocument, template: RecipeTemplate, error: unknown) {
  const message = error instanceof Error ? error.message : String(error);
  const missing = /^"([^"]+)" not defined in/.exec(message);
  if (missing) {
    return document.errorAt(
      template.path,
      'RECIPE_VARIABLE_UNDEFINED',
      `${formatPath(template.path)}: variable \`${missing[1]}\` is not defined inside a block`,
      'Define the variable (--set NAME=VALUE), or refer to it from the top level of the template.',
    );
  }
  return document.errorAt(
    template.path,
    'RECIPE_TEMPLATE',
    `${formatPath(template.path)}: cannot render template: ${message.split('\n')[0]}`,
    'Recipes can use variables and the built-in helpers (if, unless, each, with, lookup) only; see docs/recipes.md.',
  );
}

function walkStrings(
  value: unknown,
  path: (string | number)[],
  visit: (text: string, path: (string | number)[]) => void,
) {
  mapStrings(value, path, (text, p) => {
    visit(text, p);
    return text;
  });
}

function mapStrings(
  value: unknown,
  path: (string | number)[],
  fn: (text: string, path: (string | number)[]) => string,
): unknown {
  if (typeof value === 'string') return fn(value, path);
  if (Array.isArray(value)) return value.map((item, i) => mapStrings(item, [...path, i], fn));
  if (value !== null && typeof value === 'object') {
    // fromEntries defines own properties, so a `__proto__` key stays a (rejected) field.
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, mapStrings(item, [...path, key], fn)]),
    );
  }
  return value;
}

function pathKey(path: RecipePath): string {
  return JSON.stringify(path);
}

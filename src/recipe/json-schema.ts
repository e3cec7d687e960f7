import { z } from 'zod';
import { recipeSchema } from './schema.js';

/**
 * The JSON Schema (draft 2020-12) of a recipe as written, generated from `recipeSchema`
 * so the two cannot disagree. Fields with defaults are optional here. Editors use it for
 * completion and inline checks (`# yaml-language-server: $schema=…/docs/recipe.schema.json`);
 * docs/recipe.schema.json is this output, and a unit test keeps it current.
 *
 * Two rules zod expresses as code are added by hand: a file takes exactly one of
 * `template` and `content`. Patterns apply to rendered values, so a `{{variable}}` in a
 * patterned field may be flagged by an editor although rootcast accepts it.
 */
export function recipeJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(recipeSchema, {
    target: 'draft-2020-12',
    io: 'input',
    override: (ctx) => {
      const json = ctx.jsonSchema as Record<string, unknown>;
      if (json.title === 'File') {
        json.oneOf = [
          { required: ['template'], not: { required: ['content'] } },
          { required: ['content'], not: { required: ['template'] } },
        ];
      }
    },
  }) as Record<string, unknown>;
}

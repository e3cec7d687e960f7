import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { recipeJsonSchema } from '../../src/recipe/json-schema.js';

/**
 * docs/recipe.schema.json is generated: `npm run schema` after a build, or
 * `ROOTCAST_UPDATE_SCHEMA=1 npx vitest run test/unit/json-schema.test.ts`.
 */
const FILE = 'docs/recipe.schema.json';

describe('recipe JSON Schema', () => {
  it('is the committed docs/recipe.schema.json', async () => {
    const generated = `${JSON.stringify(recipeJsonSchema(), null, 2)}\n`;
    if (process.env.ROOTCAST_UPDATE_SCHEMA === '1') await writeFile(FILE, generated);
    expect(await readFile(FILE, 'utf8')).toBe(generated);
  });

  it('documents every field and forbids unknown ones', () => {
    const schema = recipeJsonSchema() as {
      $id: string;
      title: string;
      additionalProperties: boolean;
      required: string[];
      properties: Record<string, { description?: string }>;
    };
    expect(schema.$id).toMatch(/^urn:rootcast:recipe/);
    expect(schema.title).toBe('rootcast recipe');
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required.sort()).toEqual([
      'arch',
      'distro',
      'name',
      'release',
      'sources',
      'variant',
      'version',
    ]);
    for (const [field, property] of Object.entries(schema.properties)) {
      expect(property.description, field).toBeTruthy();
    }
  });
});

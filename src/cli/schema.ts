import type { Command } from 'commander';
import { recipeJsonSchema } from '../recipe/json-schema.js';

export function registerSchema(program: Command, _setExit: (code: number) => void): void {
  program
    .command('schema')
    .description('print the JSON Schema of recipes (for editors and validators)')
    .action(() => {
      process.stdout.write(`${JSON.stringify(recipeJsonSchema(), null, 2)}\n`);
    });
}

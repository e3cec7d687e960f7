import type { Command } from './commander.js';

export function registerSchema(program: Command, _setExit: (code: number) => void): void {
  program
    .command('schema')
    .description('print the JSON Schema of recipes (for editors and validators)')
    .action(async () => {
      const { recipeJsonSchema } = await import('../recipe/json-schema.js');
      process.stdout.write(`${JSON.stringify(recipeJsonSchema(), null, 2)}\n`);
    });
}

import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { VERB_MODULES, VERB_OWNERS } from '../../src/cli/verbs.js';

/** The lazy verb table must name exactly the commands each module registers. */
describe('verb modules', () => {
  it('maps every registered command to the module that registers it', async () => {
    const seen: Record<string, string> = {};
    for (const [name, load] of Object.entries(VERB_MODULES)) {
      const program = new Command('rootcast');
      (await load())(program, () => {});
      for (const command of program.commands) seen[command.name()] = name;
    }
    expect(seen).toEqual(VERB_OWNERS);
  });
});

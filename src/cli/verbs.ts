import type { Command } from './commander.js';

type SetExit = (code: number) => void;
type Registrar = (program: Command, setExit: SetExit) => void;

/**
 * Each verb's module, loaded on demand: a command line naming a verb loads only that verb's
 * module (a dozen fewer modules to resolve and compile: `rootcast clone` and `run` are meant
 * to cost little more than Node's own start-up); anything else (help, a typo) loads them all.
 */
export const VERB_MODULES: Record<string, () => Promise<Registrar>> = {
  lock: async () => (await import('./lock.js')).registerLock,
  fetch: async () => (await import('./fetch.js')).registerFetch,
  build: async () => (await import('./build.js')).registerBuild,
  templates: async () => (await import('./templates.js')).registerTemplateVerbs,
  maintenance: async () => (await import('./maintenance.js')).registerMaintenanceVerbs,
  tags: async () => (await import('./tags.js')).registerTagVerbs,
  registry: async () => (await import('./registry.js')).registerRegistryVerbs,
  schema: async () => (await import('./schema.js')).registerSchema,
  runtime: async () => (await import('./runtime.js')).registerRuntimeVerbs,
};

/** Which module registers each verb (a test checks this against the registered commands). */
export const VERB_OWNERS: Record<string, keyof typeof VERB_MODULES> = {
  lock: 'lock',
  fetch: 'fetch',
  build: 'build',
  ls: 'templates',
  inspect: 'templates',
  export: 'templates',
  diff: 'maintenance',
  gc: 'maintenance',
  fsck: 'maintenance',
  history: 'tags',
  tag: 'tags',
  rmi: 'tags',
  push: 'registry',
  pull: 'registry',
  schema: 'schema',
  clone: 'runtime',
  containers: 'runtime',
  rm: 'runtime',
  run: 'runtime',
};

export async function registerVerbs(program: Command, setExit: SetExit, argv: string[]): Promise<void> {
  const verb = argv.slice(2).find((arg) => !arg.startsWith('-'));
  const owner = verb === undefined ? undefined : VERB_OWNERS[verb];
  const modules = owner ? [owner] : Object.keys(VERB_MODULES);
  const registrars = await Promise.all(modules.map((name) => VERB_MODULES[name]!()));
  for (const register of registrars) register(program, setExit);
}

import { type ContextOptions, createContext } from '../core/context.js';
import { loadCredentials } from '../registry/credentials.js';
import { type PullSummary, pullTemplate } from '../registry/pull.js';
import { type PushSummary, pushTemplate } from '../registry/push.js';
import { parseRegistryRef } from '../registry/reference.js';

/**
 * The library API of `rootcast push` and `rootcast pull` (docs/registry.md). Credentials are
 * looked up for the reference's registry (environment, then Docker's config.json); the CA
 * file comes from `caFile` or `ROOTCAST_REGISTRY_CA_FILE`; plain HTTP only with `insecure`
 * (never from the environment), and only to loopback hosts.
 */
export interface RegistryOptions extends ContextOptions {
  /** Plain HTTP to localhost / 127.0.0.1 / ::1 (refused for any other host). */
  insecure?: boolean;
  /** PEM file of extra CA certificates to trust. */
  caFile?: string;
  /** Where credentials and `ROOTCAST_REGISTRY_CA_FILE` are read from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

export type { PullSummary, PushSummary };

async function connection(ref: string, options: RegistryOptions) {
  const env = options.env ?? process.env;
  const credentials = await loadCredentials(parseRegistryRef(ref).registry, env);
  const caFile = options.caFile ?? env.ROOTCAST_REGISTRY_CA_FILE;
  return {
    insecure: options.insecure ?? false,
    ...(caFile ? { caFile } : {}),
    ...(credentials ? { credentials } : {}),
  };
}

/** Pushes template `template` (`name:version` or `sha256:…`) to `ref` (`host[:port]/repo[:tag]`). */
export async function push(
  template: string,
  ref: string,
  options: RegistryOptions = {},
): Promise<PushSummary> {
  const ctx = createContext(options);
  parseRegistryRef(ref);
  return pushTemplate({
    store: ctx.store,
    template,
    ref,
    reporter: ctx.reporter,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(await connection(ref, options)),
  });
}

/** Pulls `ref` into the store, tagged `tag` or by the manifest's title/version annotations. */
export async function pull(
  ref: string,
  options: RegistryOptions & { tag?: string } = {},
): Promise<PullSummary> {
  const ctx = createContext(options);
  parseRegistryRef(ref);
  return pullTemplate({
    store: ctx.store,
    ref,
    ...(options.tag ? { tag: options.tag } : {}),
    reporter: ctx.reporter,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(await connection(ref, options)),
  });
}

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describeError, RootcastError } from '../core/errors.js';

/**
 * Where registry credentials come from, first match wins:
 *
 * 1. the environment: `ROOTCAST_REGISTRY_USERNAME` and `ROOTCAST_REGISTRY_PASSWORD` (both set),
 *    for every registry the command talks to;
 * 2. Docker's client configuration, `$DOCKER_CONFIG/config.json` or else
 *    `~/.docker/config.json`: the `auths` entry whose key names the registry (`host:port`,
 *    with or without `https://` and a path, as `docker login` writes it), holding a base64
 *    `user:password` in `auth` (or plain `username`/`password`).
 *
 * Credential helpers (`credsStore`, `credHelpers`) are not run: rootcast never executes a
 * program named by a configuration file. Credentials are only ever sent to the registry
 * itself and to the token realm it names, never along redirects.
 */
export interface Credentials {
  username: string;
  password: string;
  /** Where they came from, for messages (never the secret). */
  source: string;
}

/** Pure: the `auths` key → registry match, ignoring scheme, trailing path and case of the host. */
export function authsKeyMatches(key: string, registry: string): boolean {
  const bare = key
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
  return bare === registry.toLowerCase();
}

/** Pure: credentials for `registry` in a parsed Docker config, if any. */
export function credentialsFromDockerConfig(
  config: unknown,
  registry: string,
  source: string,
): Credentials | undefined {
  const auths = (config as { auths?: unknown } | null)?.auths;
  if (typeof auths !== 'object' || auths === null) return undefined;
  for (const [key, value] of Object.entries(auths as Record<string, unknown>)) {
    if (!authsKeyMatches(key, registry) || typeof value !== 'object' || value === null) continue;
    const entry = value as { auth?: unknown; username?: unknown; password?: unknown };
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source };
    }
    if (typeof entry.username === 'string' && typeof entry.password === 'string')
      return { username: entry.username, password: entry.password, source };
  }
  return undefined;
}

/** The Docker client configuration file this environment names. */
export function dockerConfigPath(env: NodeJS.ProcessEnv): string {
  const dir = env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker');
  return join(dir, 'config.json');
}

export async function loadCredentials(
  registry: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials | undefined> {
  const username = env.ROOTCAST_REGISTRY_USERNAME;
  const password = env.ROOTCAST_REGISTRY_PASSWORD;
  if (username && password !== undefined)
    return { username, password, source: 'ROOTCAST_REGISTRY_USERNAME/PASSWORD' };
  const path = dockerConfigPath(env);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw configUnreadable(path, describeError(error), error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw configUnreadable(path, 'it is not JSON', error);
  }
  return credentialsFromDockerConfig(parsed, registry, path);
}

function configUnreadable(path: string, why: string, cause: unknown): RootcastError {
  return new RootcastError({
    code: 'REGISTRY_CONFIG_INVALID',
    message: `cannot read registry credentials from ${path}: ${why}`,
    hint: 'Fix or remove that file, point DOCKER_CONFIG elsewhere, or set ROOTCAST_REGISTRY_USERNAME/PASSWORD.',
    cause,
  });
}

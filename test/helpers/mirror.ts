import { mirrorEnvName, mirrorsFromAptSources, readHostAptSources } from '../../src/recipe/apt-sources.js';

/**
 * The mirror a test talks to: `ROOTCAST_MIRROR_<NAME>` when set, else the one this machine's
 * apt uses (so no host name is ever written into the tests).
 */
export async function mirror(name: 'debian' | 'debian-security'): Promise<string> {
  const fromEnv = process.env[mirrorEnvName(name)];
  if (fromEnv) return fromEnv;
  const found = mirrorsFromAptSources(await readHostAptSources()).get(name);
  if (!found) throw new Error(`no ${name} mirror in the host's apt sources; set ${mirrorEnvName(name)}`);
  return found;
}

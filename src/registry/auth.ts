/**
 * The authentication decisions of the distribution spec's token flow, as pure functions.
 *
 * A registry answers an unauthenticated request with 401 and a `WWW-Authenticate` challenge:
 * `Basic realm="…"` means "send `Authorization: Basic`", `Bearer realm="<url>",service="…",
 * scope="…"` means "get a token from <url> (with Basic credentials if you have them) for
 * these scopes, then send `Authorization: Bearer <token>`". The client (client.ts) does the
 * I/O; this file only reads challenges and builds the token URL.
 */
export interface Challenge {
  /** Lower-case scheme: `basic`, `bearer`, … */
  scheme: string;
  params: Record<string, string>;
}

/** Parses one `WWW-Authenticate` value (the first challenge in it); undefined when empty. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const text = header.trim();
  const space = text.search(/\s/);
  const scheme = (space < 0 ? text : text.slice(0, space)).toLowerCase();
  if (scheme === '') return undefined;
  const params: Record<string, string> = {};
  const rest = space < 0 ? '' : text.slice(space + 1);
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/gy;
  for (let m = re.exec(rest); m !== null && m[0] !== ''; m = re.exec(rest)) {
    const key = (m[1] ?? '').toLowerCase();
    params[key] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
  }
  return { scheme, params };
}

/** `repository:<name>:<actions>` scopes, merged so each repository appears once. */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byRepo = new Map<string, Set<string>>();
  const other: string[] = [];
  for (const scope of scopes) {
    for (const one of scope.split(' ')) {
      const m = /^repository:([^:]+):(.+)$/.exec(one);
      if (!m) {
        if (one !== '' && !other.includes(one)) other.push(one);
        continue;
      }
      const actions = byRepo.get(m[1]!) ?? new Set<string>();
      for (const a of m[2]!.split(',')) actions.add(a);
      byRepo.set(m[1]!, actions);
    }
  }
  const merged = [...byRepo].map(([repo, actions]) => `repository:${repo}:${[...actions].sort().join(',')}`);
  return [...merged.sort(), ...other];
}

/** The token endpoint URL for a Bearer challenge and the scopes wanted. */
export function tokenUrl(challenge: Challenge, scopes: readonly string[]): URL {
  const url = new URL(challenge.params.realm ?? '');
  if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
  for (const scope of scopes) url.searchParams.append('scope', scope);
  return url;
}

/** The token in a token endpoint's JSON answer (`token`, or OAuth2's `access_token`). */
export function tokenFromResponse(body: unknown): string | undefined {
  const record = body as { token?: unknown; access_token?: unknown } | null;
  if (typeof record?.token === 'string' && record.token !== '') return record.token;
  if (typeof record?.access_token === 'string' && record.access_token !== '') return record.access_token;
  return undefined;
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

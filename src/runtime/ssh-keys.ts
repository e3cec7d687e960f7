import { generateKeyPairSync, randomBytes } from 'node:crypto';

/**
 * Fresh SSH host keys, made in-process with node:crypto and written in OpenSSH's own formats
 * (PROTOCOL.key for the private key, RFC 4253/5656 blobs for the public one), so cloning does
 * not spawn ssh-keygen and works whether or not the host has OpenSSH.
 *
 * Only ed25519 and ECDSA P-256 keys are made: they take well under a millisecond each, while
 * RSA generation takes 50-500 ms, a whole lab's clone budget. sshd loads whichever of its
 * default host keys exist and is silent about the missing RSA one (OpenSSH logs missing
 * default keys at debug level only).
 */
export type HostKeyType = 'ed25519' | 'ecdsa';

export interface HostKey {
  type: HostKeyType;
  /** File name in /etc/ssh, e.g. `ssh_host_ed25519_key` (the public key adds `.pub`). */
  file: string;
  /** `-----BEGIN OPENSSH PRIVATE KEY-----` … (mode 0600). */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment` + newline (mode 0644). */
  publicKey: string;
}

function sshString(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

function uint32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

/** An SSH mpint: big-endian, minimal, with a zero byte in front when the top bit is set. */
function mpint(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return sshString((trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function fromJwk(value: string | undefined): Buffer {
  if (value === undefined) throw new Error('key export lacks a JWK field');
  return Buffer.from(value, 'base64url');
}

/** PROTOCOL.key: an unencrypted `openssh-key-v1` container holding one key. */
function opensshPrivateKey(publicBlob: Buffer, privateFields: Buffer, comment: string): string {
  const check = randomBytes(4);
  let section = Buffer.concat([check, check, privateFields, sshString(comment)]);
  const padding: number[] = [];
  for (let i = 1; (section.length + padding.length) % 8 !== 0; i++) padding.push(i);
  section = Buffer.concat([section, Buffer.from(padding)]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    uint32(1),
    sshString(publicBlob),
    sshString(section),
  ]);
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

export function generateHostKey(type: HostKeyType, comment: string): HostKey {
  if (type === 'ed25519') {
    const { privateKey } = generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    const seed = fromJwk(jwk.d);
    const pub = fromJwk(jwk.x);
    const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
    const fields = Buffer.concat([
      sshString('ssh-ed25519'),
      sshString(pub),
      sshString(Buffer.concat([seed, pub])),
    ]);
    return {
      type,
      file: 'ssh_host_ed25519_key',
      privateKey: opensshPrivateKey(blob, fields, comment),
      publicKey: `ssh-ed25519 ${blob.toString('base64')} ${comment}\n`,
    };
  }
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), fromJwk(jwk.x), fromJwk(jwk.y)]);
  const name = 'ecdsa-sha2-nistp256';
  const blob = Buffer.concat([sshString(name), sshString('nistp256'), sshString(point)]);
  const fields = Buffer.concat([
    sshString(name),
    sshString('nistp256'),
    sshString(point),
    mpint(fromJwk(jwk.d)),
  ]);
  return {
    type,
    file: 'ssh_host_ecdsa_key',
    privateKey: opensshPrivateKey(blob, fields, comment),
    publicKey: `${name} ${blob.toString('base64')} ${comment}\n`,
  };
}

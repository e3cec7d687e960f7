import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Digests are written `sha256:<64 hex>` wherever they name content (OCI style). */
export const SHA256_PREFIX = 'sha256:';
const HEX64 = /^[0-9a-f]{64}$/;

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256Digest(data: string | Uint8Array): string {
  return SHA256_PREFIX + sha256Hex(data);
}

export function isSha256Hex(value: string): boolean {
  return HEX64.test(value);
}

/** `sha256:abc…` → `abc…`; accepts a bare hex digest unchanged. Throws on anything else. */
export function digestHex(digest: string): string {
  const hex = digest.startsWith(SHA256_PREFIX) ? digest.slice(SHA256_PREFIX.length) : digest;
  if (!HEX64.test(hex)) throw new Error(`not a sha256 digest: ${digest}`);
  return hex;
}

export async function sha256File(path: string): Promise<{ hex: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    const buf = chunk as Buffer;
    size += buf.length;
    hash.update(buf);
  }
  return { hex: hash.digest('hex'), size };
}

/** An incremental hasher that also counts bytes, for streaming downloads. */
export class CountingHash {
  private readonly hash: Hash = createHash('sha256');
  size = 0;
  update(chunk: Uint8Array): void {
    this.size += chunk.length;
    this.hash.update(chunk);
  }
  hex(): string {
    return this.hash.digest('hex');
  }
}

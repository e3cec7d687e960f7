import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compress, decompress } from 'zstd-napi';
import { sha256Hex } from '../../src/core/digest.js';
import type { Reporter } from '../../src/core/reporter.js';
import { silentReporter } from '../../src/core/reporter.js';
import {
  PlainIndexCopy,
  plainIndexPath,
  readPlainIndex,
  type SignedFile,
} from '../../src/distro/deb/index-cache.js';

// Over three of the reader's 1 MiB chunks, and not a multiple of them.
const TEXT = Buffer.alloc(3 * (1 << 20) + 12_345);
for (let i = 0; i < TEXT.length; i++) TEXT[i] = (i * 7 + (i >> 11)) & 0xff;
const ENTRY: SignedFile = { path: 'main/binary-amd64/Packages', size: TEXT.length, sha256: sha256Hex(TEXT) };

let store: string;

beforeEach(async () => {
  store = await mkdtemp(join(tmpdir(), 'rootcast-'));
});

afterEach(async () => {
  await rm(store, { recursive: true, force: true });
});

async function cache(bytes: Buffer): Promise<string> {
  const path = plainIndexPath(store, ENTRY);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return path;
}

/** A sink that copies what it receives (the reader reuses its chunk buffer). */
function collector(): { write(chunk: Buffer): void; bytes(): Buffer; chunks: number } {
  const parts: Buffer[] = [];
  return {
    chunks: 0,
    write(chunk) {
      parts.push(Buffer.from(chunk));
      this.chunks++;
    },
    bytes: () => Buffer.concat(parts),
  };
}

function recording(logs: string[]): Reporter {
  return { log: (level, message) => logs.push(`${level}: ${message}`), task: silentReporter.task };
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

describe('PlainIndexCopy', () => {
  it('compresses what it is written, in any chunks, when it matches the signed file', () => {
    const copy = new PlainIndexCopy(ENTRY);
    for (let i = 0; i < TEXT.length; i += 100_003) copy.write(TEXT.subarray(i, i + 100_003));
    const data = copy.finish();
    expect(data).toBeInstanceOf(Buffer);
    expect(data!.length).toBeLessThan(TEXT.length);
    expect(decompress(data!).equals(TEXT)).toBe(true);
  });

  it.each([
    ['a changed byte', Buffer.concat([TEXT.subarray(0, 10), Buffer.from('!'), TEXT.subarray(11)])],
    ['one byte less', TEXT.subarray(1)],
    ['one byte more', Buffer.concat([TEXT, Buffer.from('\n')])],
  ])('gives nothing to store for bytes with %s', (_, bytes) => {
    const copy = new PlainIndexCopy(ENTRY);
    copy.write(bytes);
    expect(copy.finish()).toBeUndefined();
  });
});

describe('readPlainIndex', () => {
  it('streams a good copy to the sink in chunks and reports it found', async () => {
    await cache(compress(TEXT));
    const sink = collector();
    expect(await readPlainIndex(store, ENTRY, silentReporter, sink)).toBe(true);
    expect(sink.bytes().equals(TEXT)).toBe(true);
    expect(sink.chunks).toBeGreaterThan(3);
  });

  it('reads a copy written by PlainIndexCopy', async () => {
    const copy = new PlainIndexCopy(ENTRY);
    copy.write(TEXT);
    await cache(copy.finish()!);
    const sink = collector();
    expect(await readPlainIndex(store, ENTRY, silentReporter, sink)).toBe(true);
    expect(sink.bytes().equals(TEXT)).toBe(true);
  });

  it('reports an absent copy as not found, without a warning', async () => {
    const logs: string[] = [];
    expect(await readPlainIndex(store, ENTRY, recording(logs), collector())).toBe(false);
    expect(logs).toEqual([]);
  });

  it.each([
    ['not zstd', () => Buffer.from('garbage')],
    ['another text', () => compress(Buffer.concat([TEXT.subarray(1), Buffer.from('x')]))],
    ['a longer text', () => compress(Buffer.concat([TEXT, TEXT]))],
    ['a truncated frame', () => compress(TEXT).subarray(0, 1000)],
  ])('deletes a copy that is %s and reports it not found', async (_, bytes) => {
    const path = await cache(bytes());
    const logs: string[] = [];
    const sink = collector();
    expect(await readPlainIndex(store, ENTRY, recording(logs), sink)).toBe(false);
    expect(await exists(path)).toBe(false);
    expect(logs.filter((l) => l.startsWith('warn'))).toHaveLength(1);
    // Decoding stops once past the signed size.
    expect(sink.bytes().length).toBeLessThanOrEqual(ENTRY.size + (1 << 20));
  });

  it('rethrows what the sink threw when the copy is genuine', async () => {
    await cache(compress(TEXT));
    let calls = 0;
    const sink = {
      write() {
        calls++;
        throw new Error('bad index');
      },
    };
    await expect(readPlainIndex(store, ENTRY, silentReporter, sink)).rejects.toThrow('bad index');
    expect(calls).toBe(1);
  });

  it('takes a copy that fails to parse and fails its hash for a cache miss', async () => {
    const path = await cache(compress(Buffer.concat([Buffer.from('x'), TEXT.subarray(1)])));
    const sink = {
      write() {
        throw new Error('bad index');
      },
    };
    expect(await readPlainIndex(store, ENTRY, silentReporter, sink)).toBe(false);
    expect(await exists(path)).toBe(false);
  });
});

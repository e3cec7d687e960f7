import { xz } from '@napi-rs/lzma';
import { describe, expect, it } from 'vitest';
import { indexConsumer } from '../../src/distro/deb/index-download.js';

describe('indexConsumer', () => {
  it('stops decoding unverified bytes past the signed plain size (an xz bomb never reaches the parser whole)', async () => {
    const stanza = Buffer.from('Package: bomb\nVersion: 1\nArchitecture: all\n\n');
    const text = Buffer.concat(Array.from({ length: (16 << 20) / stanza.length }, () => stanza));
    const packed = await xz.compress(text);
    const entry = { path: 'main/binary-amd64/Packages.xz', size: packed.length, sha256: '0'.repeat(64) };
    let received = 0;
    const consumer = await indexConsumer(entry, 'http://mirror', (c) => (received += c.length), 0, 1 << 20);
    for (let i = 0; i < packed.length; i += 4096) await consumer.write(packed.subarray(i, i + 4096));
    await expect(consumer.end(packed)).rejects.toMatchObject({
      code: 'INDEX_MALFORMED',
      message: expect.stringMatching(/decodes to more than 1048576 bytes/),
    });
    expect(received).toBeLessThanOrEqual(1 << 20);

    // Within the signed size, the same bytes decode whole.
    let whole = 0;
    const fits = await indexConsumer(entry, 'http://mirror', (c) => (whole += c.length), 0, text.length);
    await fits.write(packed);
    await fits.end(packed);
    expect(whole).toBe(text.length);
  });
});

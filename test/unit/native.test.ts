import { describe, expect, it } from 'vitest';
import { nativeCalls, returnLargeBlocksPromptly } from '../../src/assemble/native.js';

// What the fixed threshold does to a build's peak memory is measured by bench/build.sh (peak
// RSS); here, that the addon sets it and refuses what is not a byte count.
describe('native malloc controls', () => {
  it('sets glibc’s mmap threshold, and the build helper calls it without throwing', () => {
    expect(nativeCalls().mallocMmapThreshold?.(128 * 1024)).toBe(true);
    expect(() => returnLargeBlocksPromptly()).not.toThrow();
    expect(() => (nativeCalls().mallocMmapThreshold as (x: unknown) => boolean)('many')).toThrow(
      /byte count/,
    );
  });
});

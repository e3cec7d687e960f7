import { describe, expect, it } from 'vitest';
import { NameOrder } from '../../src/resolve/name-order.js';

describe('NameOrder', () => {
  it('numbers names in the order they are first met, from spans of any text', () => {
    const order = new NameOrder();
    order.add('libc6', 0, 5);
    order.add('Depends: zlib1g (>= 1), libc6', 9, 15);
    order.add('x libc6 y', 2, 7);
    order.add('perl-base', 0, 9);
    expect(order.size).toBe(3);
    expect([order.get('libc6'), order.get('zlib1g'), order.get('perl-base')]).toEqual([0, 1, 2]);
    expect(order.get('libc')).toBeUndefined();
    expect(order.get('zlib1g ')).toBeUndefined();
  });

  it('ignores empty spans', () => {
    const order = new NameOrder();
    order.add('abc', 1, 1);
    expect(order.size).toBe(0);
  });

  it('agrees with a Map over many names, across growth and hash collisions', () => {
    const order = new NameOrder(4);
    const reference = new Map<string, number>();
    // Short names over a small alphabet collide in the low bits of the table.
    for (let i = 0; i < 20_000; i++) {
      const name = `p${(i * 7919) % 6007}-${i % 3}`;
      const text = `, ${name} (>= 1)`;
      order.add(text, 2, 2 + name.length);
      if (!reference.has(name)) reference.set(name, reference.size);
    }
    expect(order.size).toBe(reference.size);
    for (const [name, n] of reference) expect(order.get(name)).toBe(n);
    expect(order.get('p6007-0')).toBeUndefined();
  });
});

// ResidentSet: the partition's customers in memory. Eviction drops least recently used clean
// customers only; a dirty customer (changes not yet checkpointed) is never dropped. Checked on
// examples and against a model under random touches, writes and evictions.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ResidentSet, type Resident } from '../../src/fleet/resident-set.js';

const r = (customerId: string): Resident<number> => ({
  snapshot: { customerId, lastSeq: 0, state: 0 },
  revision: 0,
});

describe('ResidentSet', () => {
  it('evicts least recently used first, never a dirty customer', () => {
    const set = new ResidentSet<number>();
    for (const id of ['a', 'b', 'c', 'd']) set.add(id, r(id));
    set.touch('a'); // order now b, c, d, a
    set.markDirty('b');
    expect(set.evict(2)).toBe(2); // c and d go; b is dirty, a is recent
    expect(['a', 'b', 'c', 'd'].filter((id) => set.has(id))).toEqual(['a', 'b']);
    expect(set.evict(0)).toBe(1); // a goes, dirty b stays above capacity
    expect(set.has('b')).toBe(true);
    set.markClean('b');
    expect(set.evict(0)).toBe(1);
    expect(set.size).toBe(0);
  });

  it('keeps the customer already resident when the same one is loaded again', () => {
    const set = new ResidentSet<number>();
    const first = r('a');
    expect(set.add('a', first)).toBe(true);
    expect(set.add('a', r('a'))).toBe(false);
    expect(set.get('a')).toBe(first);
    expect(() => set.touch('zz')).toThrow(/not loaded/u);
  });

  it('matches a model: what is evicted is clean, and at most capacity remain unless dirty', () => {
    const id = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
    const op = fc.oneof(
      fc.record({ kind: fc.constant('load' as const), id }),
      fc.record({ kind: fc.constant('touch' as const), id }),
      fc.record({ kind: fc.constant('dirty' as const), id }),
      fc.record({ kind: fc.constant('clean' as const), id }),
      fc.record({ kind: fc.constant('evict' as const), capacity: fc.integer({ min: 0, max: 6 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const set = new ResidentSet<number>();
        let order: string[] = []; // least recently used first
        const dirty = new Set<string>();
        for (const o of ops) {
          if (o.kind === 'load') {
            if (set.add(o.id, r(o.id))) order.push(o.id);
          } else if (o.kind === 'touch') {
            if (!order.includes(o.id)) continue;
            set.touch(o.id);
            order = [...order.filter((x) => x !== o.id), o.id];
          } else if (o.kind === 'dirty') {
            if (!order.includes(o.id)) continue;
            set.markDirty(o.id);
            dirty.add(o.id);
          } else if (o.kind === 'clean') {
            set.markClean(o.id);
            dirty.delete(o.id);
          } else {
            const kept: string[] = [];
            let size = order.length;
            for (const x of order) {
              if (size > o.capacity && !dirty.has(x)) size--;
              else kept.push(x);
            }
            expect(set.evict(o.capacity)).toBe(order.length - kept.length);
            order = kept;
          }
          expect(order.filter((x) => set.has(x))).toEqual(order);
          expect(set.size).toBe(order.length);
          expect(set.dirtyIds().sort()).toEqual([...dirty].sort());
        }
      }),
    );
  });
});

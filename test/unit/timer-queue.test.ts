// TimerQueue: the owner's heap of deadlines. Checked against a plain sorted-list model under random
// interleavings of push / pop / popDue, which is how the heap invariant shows from outside: the
// top is always the earliest timer, and popping yields non-decreasing due times.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimerQueue, type QueuedTimer } from '../../src/fleet/timer-queue.js';

const timerArb: fc.Arbitrary<QueuedTimer> = fc.record({
  dueAtMs: fc.integer({ min: 0, max: 200 }),
  customerId: fc.string({ minLength: 1, maxLength: 4 }),
});

type Op =
  | { readonly kind: 'push'; readonly timer: QueuedTimer }
  | { readonly kind: 'pop' }
  | { readonly kind: 'popDue'; readonly now: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: timerArb.map((timer) => ({ kind: 'push' as const, timer })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'pop' as const }) },
  {
    weight: 2,
    arbitrary: fc.integer({ min: -1, max: 220 }).map((now) => ({ kind: 'popDue' as const, now })),
  },
);

const byDue = (a: QueuedTimer, b: QueuedTimer): number => a.dueAtMs - b.dueAtMs;
const dues = (ts: readonly QueuedTimer[]): number[] => ts.map((t) => t.dueAtMs);
const key = (t: QueuedTimer): string => `${t.dueAtMs}|${t.customerId}`;

describe('TimerQueue', () => {
  it('is empty at first', () => {
    const q = new TimerQueue();
    expect(q.size).toBe(0);
    expect(q.peek()).toBeUndefined();
    expect(q.pop()).toBeUndefined();
    expect(q.popDue(Number.MAX_SAFE_INTEGER)).toEqual([]);
  });

  it('pops due timers earliest first and leaves later ones', () => {
    const q = new TimerQueue();
    for (const [due, id] of [
      [50, 'x'],
      [10, 'y'],
      [30, 'z'],
      [10, 'w'],
      [70, 'v'],
    ] as const)
      q.push({ dueAtMs: due, customerId: id });
    const due = q.popDue(30);
    expect(dues(due)).toEqual([10, 10, 30]);
    expect(due.map((t) => t.customerId).sort()).toEqual(['w', 'y', 'z']);
    expect(q.size).toBe(2);
    expect(q.peek()?.dueAtMs).toBe(50);
    expect(q.popDue(49)).toEqual([]);
    expect(dues(q.popDue(100))).toEqual([50, 70]);
    expect(q.size).toBe(0);
  });

  it('keeps several entries of one customer (the caller decides which is current)', () => {
    const q = new TimerQueue();
    q.push({ dueAtMs: 20, customerId: 'c' });
    q.push({ dueAtMs: 10, customerId: 'c' });
    expect(dues(q.popDue(25))).toEqual([10, 20]);
  });

  it('PROPERTY: any interleaving of push/pop/popDue behaves like a sorted list', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
        const q = new TimerQueue();
        let model: QueuedTimer[] = [];
        for (const op of ops) {
          if (op.kind === 'push') {
            q.push(op.timer);
            model.push(op.timer);
          } else if (op.kind === 'pop') {
            const got = q.pop();
            model.sort(byDue);
            const min = model[0];
            expect(got?.dueAtMs).toBe(min?.dueAtMs);
            if (got !== undefined) {
              // Remove exactly the element returned (ties may come out in any order).
              const at = model.findIndex((t) => key(t) === key(got));
              expect(at).toBeGreaterThanOrEqual(0);
              model.splice(at, 1);
            }
          } else {
            const got = q.popDue(op.now);
            const due = model.filter((t) => t.dueAtMs <= op.now);
            // Every due timer, none that is not, earliest first.
            expect(dues(got)).toEqual(dues([...due].sort(byDue)));
            expect(got.map(key).sort()).toEqual(due.map(key).sort());
            model = model.filter((t) => t.dueAtMs > op.now);
          }
          // Heap invariant seen from outside: size matches, the top is a minimum.
          expect(q.size).toBe(model.length);
          const min = model.reduce<number | undefined>(
            (m, t) => (m === undefined || t.dueAtMs < m ? t.dueAtMs : m),
            undefined,
          );
          expect(q.peek()?.dueAtMs).toBe(min);
        }
        // Draining yields everything left, in non-decreasing order.
        const rest: QueuedTimer[] = [];
        for (let t = q.pop(); t !== undefined; t = q.pop()) rest.push(t);
        expect(dues(rest)).toEqual(dues([...model].sort(byDue)));
        expect(rest.map(key).sort()).toEqual(model.map(key).sort());
      }),
      { numRuns: 500 },
    );
  });

  it('PROPERTY: popDue(now) returns exactly the due timers, in order, for large random heaps', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 0, maxLength: 2000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        (times, now) => {
          const q = new TimerQueue();
          times.forEach((dueAtMs, i) => q.push({ dueAtMs, customerId: `c${i}` }));
          const got = q.popDue(now);
          expect(dues(got)).toEqual(times.filter((t) => t <= now).sort((a, b) => a - b));
          expect(q.size).toBe(times.filter((t) => t > now).length);
          const next = q.peek();
          if (next !== undefined) expect(next.dueAtMs).toBeGreaterThan(now);
        },
      ),
      { numRuns: 100 },
    );
  });
});

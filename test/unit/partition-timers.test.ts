// PartitionTimers: the partition's timer bookkeeping without I/O. Scenario tests for each rule,
// and a property test of the heap shortcut (one live heap entry per customer, deadlines that move
// later cost nothing) against a plain model: whatever happened before, due(t) returns exactly the
// current timers due by t that are not already being appended, each once.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PartitionTimers } from '../../src/fleet/partition-timers.js';
import type { PendingTimer } from '../../src/orders/aggregator.js';

const t = (series: string, dueAtMs: number): PendingTimer<string> => ({
  id: `${series}@${dueAtMs}`,
  series,
  dueAtMs,
  entry: `close ${series}`,
});

describe('PartitionTimers', () => {
  it('indexes a window when it opens and closes, not when its deadline moves', () => {
    const timers = new PartitionTimers<string>();
    timers.sync('a', t('w1', 100));
    expect(timers.takeDirty()).toEqual([['a', t('w1', 100)]]);
    timers.sync('a', t('w1', 150)); // the quiet deadline moved: same series
    expect(timers.dirtySize).toBe(0);
    expect(timers.get('a')).toEqual(t('w1', 150));
    timers.sync('a', undefined); // closed
    expect(timers.takeDirty()).toEqual([['a', undefined]]);
    expect(timers.size).toBe(0);
  });

  it('without an index (the state layout) records no changes but schedules as before', () => {
    const timers = new PartitionTimers<string>();
    timers.sync('a', t('w1', 100));
    timers.stopIndexing(); // pending changes go too
    expect(timers.dirtySize).toBe(0);
    timers.sync('b', t('w2', 50));
    timers.sync('a', undefined);
    timers.restore('c', t('w3', 70));
    timers.drop('c');
    timers.forgetIndexed('d');
    expect(timers.dirtySize).toBe(0);
    expect(timers.due(100)).toEqual([{ customerId: 'b', timer: t('w2', 50) }]);
  });

  it('returns a due timer once, again after a failed append, and follows moved deadlines', () => {
    const timers = new PartitionTimers<string>();
    timers.sync('a', t('w1', 100));
    timers.sync('a', t('w1', 200));
    expect(timers.due(150)).toEqual([]); // the heap entry at 100 pops and is pushed for 200
    expect(timers.due(200)).toEqual([{ customerId: 'a', timer: t('w1', 200) }]);
    expect(timers.due(300)).toEqual([]); // being appended
    timers.appendFailed('a', t('w1', 200).id, 400);
    expect(timers.due(399)).toEqual([]);
    expect(timers.due(400)).toEqual([{ customerId: 'a', timer: t('w1', 200) }]);
  });

  it('restored timers are scheduled but not indexed again', () => {
    const timers = new PartitionTimers<string>();
    timers.restore('a', t('w1', 10));
    expect(timers.dirtySize).toBe(0);
    expect(timers.due(10).map((d) => d.customerId)).toEqual(['a']);
  });

  it('drop removes the timer and deletes its index entry', () => {
    const timers = new PartitionTimers<string>();
    timers.restore('a', t('w1', 10));
    timers.drop('a');
    expect(timers.takeDirty()).toEqual([['a', undefined]]);
    expect(timers.due(10)).toEqual([]);
    timers.drop('nobody');
    expect(timers.dirtySize).toBe(0);
  });

  it('forgetIndexed deletes an index entry only when nothing gave the customer a timer', () => {
    const timers = new PartitionTimers<string>();
    timers.sync('a', t('w1', 10));
    timers.takeDirty();
    timers.forgetIndexed('a');
    timers.forgetIndexed('b');
    expect(timers.takeDirty()).toEqual([['b', undefined]]);
  });

  it('a timer found behind the runner is handed to the state, unless it changed meanwhile', () => {
    const timers = new PartitionTimers<string>();
    timers.restore('a', t('w1', 10));
    timers.restore('b', t('w2', 10));
    expect(timers.due(10)).toHaveLength(2);
    timers.appendedBehind('a', t('w1', 10).id);
    timers.appendedBehind('b', t('w2', 10).id);
    timers.sync('b', t('w3', 50)); // b's state moved on before the stale check ran
    expect([...timers.takeStale()]).toEqual([['a', t('w1', 10).id]]);
    expect(timers.staleSize).toBe(0);
    // No longer firing: if the state still holds it, a recheck fires it again.
    timers.recheck('a', 20);
    expect(timers.due(20).map((d) => d.customerId)).toEqual(['a']);
  });
});

type Op =
  | {
      readonly kind: 'sync';
      readonly c: string;
      readonly series: string;
      readonly due: number | undefined;
    }
  | { readonly kind: 'due'; readonly now: number }
  | { readonly kind: 'fail'; readonly c: string; readonly retry: number };

const customer = fc.constantFrom('a', 'b', 'c', 'd');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('sync' as const),
    c: customer,
    series: fc.constantFrom('s1', 's2'),
    due: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
  }),
  fc.record({ kind: fc.constant('due' as const), now: fc.integer({ min: 0, max: 120 }) }),
  fc.record({
    kind: fc.constant('fail' as const),
    c: customer,
    retry: fc.integer({ min: 0, max: 120 }),
  }),
);

describe('PartitionTimers against a model', () => {
  it('due(t) is exactly the current, not firing timers due by t', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const timers = new PartitionTimers<string>();
        const current = new Map<string, PendingTimer<string>>();
        const firing = new Set<string>();
        /** Earliest time each customer's timer may be returned (a failed append's retry). */
        const notBefore = new Map<string, number>();
        for (const o of ops) {
          if (o.kind === 'sync') {
            const next = o.due === undefined ? undefined : t(`${o.c}-${o.series}`, o.due);
            const before = current.get(o.c);
            if (next?.id !== before?.id) {
              if (before !== undefined) firing.delete(before.id);
              if (next === undefined) current.delete(o.c);
              else current.set(o.c, next);
              notBefore.delete(o.c);
            }
            timers.sync(o.c, next);
          } else if (o.kind === 'fail') {
            const timer = current.get(o.c);
            if (timer === undefined || !firing.has(timer.id)) continue;
            firing.delete(timer.id);
            notBefore.set(o.c, o.retry);
            timers.appendFailed(o.c, timer.id, o.retry);
          } else {
            const expected = [...current]
              .filter(
                ([c, timer]) =>
                  timer.dueAtMs <= o.now &&
                  !firing.has(timer.id) &&
                  (notBefore.get(c) ?? 0) <= o.now,
              )
              .map(([c]) => c)
              .sort();
            const got = timers.due(o.now).map((d) => d.customerId);
            expect([...got].sort()).toEqual(expected);
            for (const c of got) {
              const timer = current.get(c);
              if (timer !== undefined) firing.add(timer.id);
            }
          }
        }
      }),
    );
  });
});

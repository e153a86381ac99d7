import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PendingTimer } from '../../src/orders/aggregator.js';
import {
  orderTimer,
  orderTimerCodec,
  type OrderEntry,
  type OrderState,
} from '../../src/orders/order-aggregator.js';
import { DEFAULT_SUMMARY_POLICY } from '../../src/orders/summary.js';
import {
  decodeTimerSnapshot,
  encodeTimerSnapshot,
  type TimerSnapshotTag,
} from '../../src/state/timer-snapshot.js';

// The timer snapshot of a clean checkpoint must give the next owner exactly the timers the
// leaver held, and must never be taken for a snapshot of another watermark.

const seq = fc.integer({ min: 1, max: 2 ** 40 });
const windowState = fc
  .record({
    openedSeq: seq,
    extra: fc.integer({ min: 0, max: 1000 }),
    openedAtMs: fc.integer({ min: 0, max: 2 ** 42 }),
    quietFor: fc.integer({ min: 0, max: 10 * 60_000 }),
  })
  .map(({ openedSeq, extra, openedAtMs, quietFor }): OrderState => ({
    items: [],
    created: false,
    absentRemovals: 0,
    events: 1,
    window: {
      openedSeq,
      openedAtMs,
      lastChangeSeq: openedSeq + extra,
      lastChangeAtMs: openedAtMs + quietFor,
      itemsAtOpen: [],
    },
    summaries: 0,
  }));
const customerId = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
  fc.constantFrom('John', 'Karan', 'ü', '😀', 'a"b', 'a\\b'),
);
const timers = fc
  .uniqueArray(fc.tuple(customerId, windowState), { selector: ([id]) => id, maxLength: 300 })
  .map((rows) =>
    rows.map(([id, state]): [string, PendingTimer<OrderEntry>] => {
      const timer = orderTimer(state, DEFAULT_SUMMARY_POLICY);
      if (timer === undefined) throw new Error('an open window has a timer');
      return [id, timer];
    }),
  );
const tag = fc.record({
  epoch: fc.integer({ min: 0, max: 1e6 }),
  seq: fc.integer({ min: 0, max: 2 ** 45 }),
});

describe('timer snapshot', () => {
  it('PROPERTY: decode(encode(timers)) gives back every timer, equal, in any chunk size', () => {
    fc.assert(
      fc.property(timers, tag, fc.integer({ min: 300, max: 20_000 }), (rows, t, maxBytes) => {
        const chunks = encodeTimerSnapshot(t, rows, orderTimerCodec, maxBytes);
        for (const chunk of chunks) expect(Buffer.byteLength(chunk)).toBeLessThanOrEqual(maxBytes);
        // chunks may come back in any order (KV history order is by last write)
        const decoded = decodeTimerSnapshot(t, [...chunks].reverse(), orderTimerCodec);
        expect(decoded).toEqual(new Map(rows));
      }),
      { numRuns: 200 },
    );
  });

  it('PROPERTY: a snapshot of another watermark, or with a chunk missing, is not used', () => {
    fc.assert(
      fc.property(timers, tag, tag, (rows, t, other) => {
        const chunks = encodeTimerSnapshot(t, rows, orderTimerCodec, 1000);
        if (other.epoch !== t.epoch || other.seq !== t.seq) {
          expect(decodeTimerSnapshot(other, chunks, orderTimerCodec)).toBeUndefined();
        }
        if (chunks.length > 1) {
          expect(decodeTimerSnapshot(t, chunks.slice(1), orderTimerCodec)).toBeUndefined();
        }
        expect(decodeTimerSnapshot(t, [], orderTimerCodec)).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('ignores leftover chunks of an earlier snapshot next to a complete one', () => {
    const one: TimerSnapshotTag = { epoch: 3, seq: 100 };
    const two: TimerSnapshotTag = { epoch: 4, seq: 250 };
    const state: OrderState = {
      items: [1],
      created: true,
      absentRemovals: 0,
      events: 2,
      window: {
        openedSeq: 7,
        openedAtMs: 1000,
        lastChangeSeq: 9,
        lastChangeAtMs: 2000,
        itemsAtOpen: [],
      },
      summaries: 0,
    };
    const timer = orderTimer(state, DEFAULT_SUMMARY_POLICY);
    if (timer === undefined) throw new Error('an open window has a timer');
    const old = encodeTimerSnapshot(
      one,
      Array.from({ length: 50 }, (_, i) => [`c${i}`, timer] as const),
      orderTimerCodec,
      400,
    );
    const current = encodeTimerSnapshot(two, [['John', timer]], orderTimerCodec, 400);
    expect(old.length).toBeGreaterThan(1);
    expect(decodeTimerSnapshot(two, [...old, ...current], orderTimerCodec)).toEqual(
      new Map([['John', timer]]),
    );
    // an empty partition still writes one chunk, so "no timers" is told apart from "no snapshot"
    const empty = encodeTimerSnapshot(two, [], orderTimerCodec);
    expect(empty).toHaveLength(1);
    expect(decodeTimerSnapshot(two, empty, orderTimerCodec)).toEqual(new Map());
  });

  it('rejects a snapshot with an unreadable timer (the caller falls back to the index)', () => {
    const t = { epoch: 1, seq: 1 };
    const bad = `{"v":1,"epoch":1,"seq":1,"chunk":0,"chunks":1,"timers":[["John",0,1,0,5]]}`;
    expect(() => decodeTimerSnapshot(t, [bad], orderTimerCodec)).toThrow(/timer snapshot/u);
    const badFlag = `{"v":1,"epoch":1,"seq":1,"chunk":0,"chunks":1,"timers":[["John",1,1,2,5]]}`;
    expect(() => decodeTimerSnapshot(t, [badFlag], orderTimerCodec)).toThrow(/timer snapshot/u);
  });
});

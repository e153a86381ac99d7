import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { OrderEvent } from '../../src/contract/event.js';
import { ErrorCode, isOrderFleetError, OrderFleetError } from '../../src/errors.js';
import type { LogEntry } from '../../src/orders/aggregator.js';
import {
  applyOrderEvent,
  createOrderAggregator,
  orderAggregator,
  type OrderEntry,
  type OrderState,
  removeItems,
  renderOrder,
} from '../../src/orders/order-aggregator.js';
import { DEFAULT_SUMMARY_POLICY, type TimerEntry } from '../../src/orders/summary.js';
import { deepFreeze, thrownBy } from './helpers.js';

// --- helpers ---------------------------------------------------------------------------------

let nextId = 0;
const created = (): OrderEvent => ({ id: `e${nextId++}`, type: 'order.created' });
const added = (...items: number[]): OrderEvent => ({
  id: `e${nextId++}`,
  type: 'items.added',
  items,
});
const removed = (...items: number[]): OrderEvent => ({
  id: `e${nextId++}`,
  type: 'items.removed',
  items,
});
const cleared = (): OrderEvent => ({ id: `e${nextId++}`, type: 'order.cleared' });

const BASE_MS = 1_700_000_000_000;
const entry = (payload: OrderEntry, seq = 1): LogEntry<OrderEntry> => ({
  seq,
  timeMs: BASE_MS + seq,
  payload,
});

/** The contents fields of a state: what the original GenServer held (no summary windows). */
type Contents = Pick<OrderState, 'items' | 'created' | 'absentRemovals' | 'events'>;
const contentsOf = (state: Contents): Contents => ({
  items: state.items,
  created: state.created,
  absentRemovals: state.absentRemovals,
  events: state.events,
});

/** The runtime's fold: state = entries.reduce(apply, initial()), entry i at seq i + 1. */
function fold(events: readonly OrderEvent[]): OrderState {
  return events.reduce(
    (state, event, i) => orderAggregator.apply(state, entry(event, i + 1)),
    orderAggregator.initial(),
  );
}

/**
 * A step of a generated log: an order event, or a timer entry the owner appends. `max` and
 * `quiet` timers are built for the window open at that point (so they close it); a `stale` timer
 * names a window that is not open (a duplicate or late entry) and changes nothing.
 */
type Step = OrderEvent | { readonly timer: 'max' | 'quiet' | 'stale' };

function timerFor(state: OrderState, kind: 'max' | 'quiet' | 'stale', seq: number): TimerEntry {
  const window = state.window;
  const reason = kind === 'quiet' ? 'quiet' : 'max';
  if (window === null || kind === 'stale') {
    const stale = (window?.openedSeq ?? 0) + 1000 + seq;
    return { type: 'summary.timer', window: stale, lastChangeSeq: stale, reason, dueAtMs: 0 };
  }
  return {
    type: 'summary.timer',
    window: window.openedSeq,
    lastChangeSeq: window.lastChangeSeq,
    reason,
    dueAtMs: BASE_MS + seq,
  };
}

function stepEntry(state: OrderState, step: Step, seq: number): LogEntry<OrderEntry> {
  return entry('timer' in step ? timerFor(state, step.timer, seq) : step, seq);
}

/** Folds generated steps, numbering them from `from + 1`. */
function foldSteps(
  steps: readonly Step[],
  state: OrderState = orderAggregator.initial(),
  from = 0,
): OrderState {
  return steps.reduce(
    (s, step, i) => orderAggregator.apply(s, stepEntry(s, step, from + i + 1)),
    state,
  );
}

/**
 * An independent model of an order: a mutable list, written without the production helpers.
 * Removal deletes the first occurrence of each listed item, in the order listed. Every change
 * (anything but order.created) opens a window or extends the open one; a timer closes it.
 */
interface ModelWindow {
  openedSeq: number;
  openedAtMs: number;
  lastChangeSeq: number;
  lastChangeAtMs: number;
  itemsAtOpen: number[];
}
interface Model {
  items: number[];
  created: boolean;
  absentRemovals: number;
  events: number;
  window: ModelWindow | null;
  summaries: number;
}

function model(steps: readonly Step[]): Model {
  const m: Model = {
    items: [],
    created: false,
    absentRemovals: 0,
    events: 0,
    window: null,
    summaries: 0,
  };
  steps.forEach((step, i) => {
    const seq = i + 1;
    if ('timer' in step) {
      if (step.timer !== 'stale' && m.window !== null) {
        m.window = null;
        m.summaries += 1;
      }
      return;
    }
    m.events += 1;
    if (step.type === 'order.created') {
      m.created = true;
      return;
    }
    const before = [...m.items];
    if (step.type === 'items.added') {
      for (const item of step.items) m.items.push(item);
    } else if (step.type === 'items.removed') {
      for (const target of step.items) {
        let found = false;
        const kept: number[] = [];
        for (const item of m.items) {
          if (!found && item === target) found = true;
          else kept.push(item);
        }
        if (found) m.items = kept;
        else m.absentRemovals += 1;
      }
    } else {
      m.items = [];
    }
    if (m.window === null) {
      m.window = {
        openedSeq: seq,
        openedAtMs: BASE_MS + seq,
        lastChangeSeq: seq,
        lastChangeAtMs: BASE_MS + seq,
        itemsAtOpen: before,
      };
    } else {
      m.window.lastChangeSeq = seq;
      m.window.lastChangeAtMs = BASE_MS + seq;
    }
  });
  return m;
}

// Small item values make collisions (and therefore interesting removals) likely.
const smallItems = fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 6 });
const eventArb: fc.Arbitrary<OrderEvent> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null).map(() => created()) },
  { weight: 4, arbitrary: smallItems.map((items) => added(...items)) },
  { weight: 3, arbitrary: smallItems.map((items) => removed(...items)) },
  { weight: 1, arbitrary: fc.constant(null).map(() => cleared()) },
);
const eventsArb = fc.array(eventArb, { maxLength: 40 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: eventArb },
  {
    weight: 1,
    arbitrary: fc.constantFrom('max', 'quiet', 'stale').map((timer) => ({ timer }) as const),
  },
);
const stepsArb = fc.array(stepArb, { maxLength: 40 });
/** States with and without an open window, and with summaries already sent. */
const stateArb: fc.Arbitrary<OrderState> = stepsArb.map((steps) => foldSteps(steps));
const eventsOnly = (steps: readonly Step[]): OrderEvent[] =>
  steps.filter((step): step is OrderEvent => !('timer' in step));

// --- tests -----------------------------------------------------------------------------------

describe('orderAggregator metadata', () => {
  it('has a stable name and version', () => {
    expect(orderAggregator.name).toBe('orders');
    expect(orderAggregator.version).toBe(2);
  });

  it('starts empty, with no window and no summaries, and the initial state cannot be mutated', () => {
    const initial = orderAggregator.initial();
    expect(initial).toEqual({
      items: [],
      created: false,
      absentRemovals: 0,
      events: 0,
      window: null,
      summaries: 0,
    });
    expect(Object.isFrozen(initial)).toBe(true);
    expect(Object.isFrozen(initial.items)).toBe(true);
  });

  it('is the default-policy instance of createOrderAggregator, with outputs and a timer', () => {
    const custom = createOrderAggregator({ quietMs: 1_000, maxMs: 5_000 });
    expect(custom.name).toBe(orderAggregator.name);
    expect(custom.version).toBe(orderAggregator.version);
    expect(custom.initial()).toEqual(orderAggregator.initial());
    expect(typeof orderAggregator.outputs).toBe('function');
    expect(typeof orderAggregator.timer).toBe('function');

    const state = fold([added(1)]); // window opened at seq 1, time BASE_MS + 1
    expect(orderAggregator.timer?.('john', state)?.dueAtMs).toBe(
      BASE_MS + 1 + DEFAULT_SUMMARY_POLICY.quietMs,
    );
    expect(custom.timer?.('john', state)?.dueAtMs).toBe(BASE_MS + 1 + 1_000);
    expect(orderAggregator.timer?.('john', orderAggregator.initial())).toBeUndefined();
    expect(orderAggregator.timer?.('john', fold([created()]))).toBeUndefined();
  });
});

describe('the article scenario (John and Karan)', () => {
  it('keeps each customer’s plan separately and answers contents', () => {
    // Order.new("John"); Order.add("John", [1, 2, 3]); Order.new("Karan"); Order.add("Karan", [4, 5]);
    // Order.remove("John", [2]); Order.add("Karan", [6]); Order.contents(...)
    const log: [customer: string, event: OrderEvent][] = [
      ['John', created()],
      ['John', added(1, 2, 3)],
      ['Karan', created()],
      ['Karan', added(4, 5)],
      ['John', removed(2)],
      ['Karan', added(6)],
      ['John', added(7)],
    ];
    const states = new Map<string, { lastSeq: number; state: OrderState }>();
    log.forEach(([customer, event], i) => {
      const seq = i + 1;
      const prev = states.get(customer)?.state ?? orderAggregator.initial();
      states.set(customer, { lastSeq: seq, state: orderAggregator.apply(prev, entry(event, seq)) });
    });

    const john = states.get('John');
    const karan = states.get('Karan');
    if (john === undefined || karan === undefined) throw new Error('unreachable');
    expect(contentsOf(john.state)).toEqual({
      items: [1, 3, 7],
      created: true,
      absentRemovals: 0,
      events: 4,
    });
    expect(contentsOf(karan.state)).toEqual({
      items: [4, 5, 6],
      created: true,
      absentRemovals: 0,
      events: 3,
    });
    // Each customer's window opened with their first change and was extended by the later ones.
    expect(john.state.window).toEqual({
      openedSeq: 2,
      openedAtMs: BASE_MS + 2,
      lastChangeSeq: 7,
      lastChangeAtMs: BASE_MS + 7,
      itemsAtOpen: [],
    });
    expect(karan.state.window).toEqual({
      openedSeq: 4,
      openedAtMs: BASE_MS + 4,
      lastChangeSeq: 6,
      lastChangeAtMs: BASE_MS + 6,
      itemsAtOpen: [],
    });
    expect(john.state.summaries).toBe(0);
    expect(karan.state.summaries).toBe(0);
    expect(renderOrder({ customerId: 'John', ...john })).toEqual({
      customerId: 'John',
      items: [1, 3, 7],
      lastSeq: 7,
    });
    expect(renderOrder({ customerId: 'Karan', ...karan })).toEqual({
      customerId: 'Karan',
      items: [4, 5, 6],
      lastSeq: 6,
    });
  });
});

describe('applying order events', () => {
  it('order.created is idempotent apart from the event count, and opens no window', () => {
    const once = fold([created()]);
    const twice = fold([created(), created()]);
    expect(once).toEqual({
      items: [],
      created: true,
      absentRemovals: 0,
      events: 1,
      window: null,
      summaries: 0,
    });
    expect(twice).toEqual({ ...once, events: 2 });
    const withItems = fold([created(), added(1, 2), created()]);
    expect(withItems.items).toEqual([1, 2]);
    expect(withItems.created).toBe(true);
    // The second order.created neither closes nor extends the window opened at seq 2.
    expect(withItems.window).toMatchObject({ openedSeq: 2, lastChangeSeq: 2, itemsAtOpen: [] });
  });

  it('items can be added without a prior order.created, and that opens a window', () => {
    const state = fold([added(1)]);
    expect(contentsOf(state)).toEqual({ items: [1], created: false, absentRemovals: 0, events: 1 });
    expect(state.window).toEqual({
      openedSeq: 1,
      openedAtMs: BASE_MS + 1,
      lastChangeSeq: 1,
      lastChangeAtMs: BASE_MS + 1,
      itemsAtOpen: [],
    });
    expect(state.summaries).toBe(0);
  });

  it('items.added opens the window at its own seq with the contents from before', () => {
    const before = fold([created(), added(4, 5)]);
    const closed = orderAggregator.apply(before, entry(timerFor(before, 'max', 3), 3));
    expect(closed.window).toBeNull();
    expect(closed.summaries).toBe(1);
    const after = orderAggregator.apply(closed, entry(added(6), 4));
    expect(after.items).toEqual([4, 5, 6]);
    expect(after.window).toEqual({
      openedSeq: 4,
      openedAtMs: BASE_MS + 4,
      lastChangeSeq: 4,
      lastChangeAtMs: BASE_MS + 4,
      itemsAtOpen: [4, 5],
    });
    expect(after.summaries).toBe(1);
  });

  it('later changes extend the open window and keep its identity and starting contents', () => {
    const state = fold([created(), added(1, 2), removed(1), added(3)]);
    expect(state.items).toEqual([2, 3]);
    expect(state.window).toEqual({
      openedSeq: 2,
      openedAtMs: BASE_MS + 2,
      lastChangeSeq: 4,
      lastChangeAtMs: BASE_MS + 4,
      itemsAtOpen: [],
    });
  });

  it('appends items in order, keeping duplicates', () => {
    expect(fold([added(3, 1), added(1, 2)]).items).toEqual([3, 1, 1, 2]);
  });

  it('removes one occurrence per listed item', () => {
    expect(fold([added(1, 2, 2, 3, 2)]).items).toEqual([1, 2, 2, 3, 2]);
    expect(fold([added(1, 2, 2, 3, 2), removed(2)]).items).toEqual([1, 2, 3, 2]);
    expect(fold([added(1, 2, 2, 3, 2), removed(2, 2)]).items).toEqual([1, 3, 2]);
    expect(fold([added(1, 2, 2, 3, 2), removed(2, 2, 2)]).items).toEqual([1, 3]);
  });

  it('removes the first occurrence, preserving the order of the rest', () => {
    expect(fold([added(5, 1, 5, 2), removed(5)]).items).toEqual([1, 5, 2]);
  });

  it('counts removals of absent items and otherwise ignores them', () => {
    const state = fold([added(1, 2), removed(9, 2, 2, 8)]);
    expect(state.items).toEqual([1]);
    expect(state.absentRemovals).toBe(3); // 9, the second 2, and 8
    const absent = fold([removed(1)]);
    expect(contentsOf(absent)).toEqual({ items: [], created: false, absentRemovals: 1, events: 1 });
    // A removal is a change even when nothing was there: it opens a window.
    expect(absent.window).toMatchObject({ openedSeq: 1, lastChangeSeq: 1, itemsAtOpen: [] });
  });

  it('items.removed opens a window with the contents from before the removal', () => {
    const before = fold([added(1, 2, 3)]);
    const closed = orderAggregator.apply(before, entry(timerFor(before, 'quiet', 2), 2));
    expect(closed.window).toBeNull();
    const after = orderAggregator.apply(closed, entry(removed(2), 3));
    expect(after.items).toEqual([1, 3]);
    expect(after.window).toMatchObject({ openedSeq: 3, lastChangeSeq: 3, itemsAtOpen: [1, 2, 3] });
  });

  it('order.cleared empties the items but keeps created and absentRemovals', () => {
    const state = fold([created(), added(1, 2, 3), removed(7), cleared()]);
    expect(contentsOf(state)).toEqual({ items: [], created: true, absentRemovals: 1, events: 4 });
    expect(state.window).toMatchObject({ openedSeq: 2, lastChangeSeq: 4, itemsAtOpen: [] });
    const clearedOnly = fold([cleared()]);
    expect(contentsOf(clearedOnly)).toEqual({
      items: [],
      created: false,
      absentRemovals: 0,
      events: 1,
    });
    expect(clearedOnly.window).toMatchObject({ openedSeq: 1, lastChangeSeq: 1, itemsAtOpen: [] });
    expect(fold([added(1), cleared(), added(2)]).items).toEqual([2]);
  });

  it('order.cleared opens a window with the contents from before the clear', () => {
    const before = fold([added(1, 2)]);
    const closed = orderAggregator.apply(before, entry(timerFor(before, 'max', 2), 2));
    const after = orderAggregator.apply(closed, entry(cleared(), 3));
    expect(after.items).toEqual([]);
    expect(after.window).toMatchObject({ openedSeq: 3, lastChangeSeq: 3, itemsAtOpen: [1, 2] });
  });

  it('counts every applied event, but not timer entries', () => {
    expect(fold([created(), added(1), removed(1), removed(1), cleared()]).events).toBe(5);
    expect(
      foldSteps([created(), added(1), { timer: 'max' }, { timer: 'stale' }, cleared()]).events,
    ).toBe(3);
  });

  it('timer entries close the window but never change the contents', () => {
    const open = fold([created(), added(1, 2), removed(9)]);
    const closed = orderAggregator.apply(open, entry(timerFor(open, 'quiet', 4), 4));
    expect(contentsOf(closed)).toEqual(contentsOf(open));
    expect(closed.window).toBeNull();
    expect(closed.summaries).toBe(1);
    // A duplicate of that timer finds no window: nothing changes.
    const again = orderAggregator.apply(closed, entry(timerFor(open, 'quiet', 4), 5));
    expect(again).toEqual(closed);
  });

  it('agrees with applyOrderEvent on the contents; the window comes from seq and time', () => {
    const state = fold([added(1, 2)]);
    const closed = orderAggregator.apply(state, entry(timerFor(state, 'max', 2), 2));
    const event = removed(1);
    const a = orderAggregator.apply(closed, { seq: 99, timeMs: 0, payload: event });
    const b = orderAggregator.apply(closed, { seq: 3, timeMs: 5e12, payload: event });
    expect(contentsOf(a)).toEqual(contentsOf(applyOrderEvent(closed, event)));
    expect(contentsOf(b)).toEqual(contentsOf(applyOrderEvent(closed, event)));
    expect(a.window).toEqual({
      openedSeq: 99,
      openedAtMs: 0,
      lastChangeSeq: 99,
      lastChangeAtMs: 0,
      itemsAtOpen: [1, 2], // the contents before the removal
    });
    expect(b.window).toEqual({
      openedSeq: 3,
      openedAtMs: 5e12,
      lastChangeSeq: 3,
      lastChangeAtMs: 5e12,
      itemsAtOpen: [1, 2],
    });
    // applyOrderEvent is the contents alone: it leaves the window as it was.
    expect(applyOrderEvent(closed, event).window).toBeNull();
    expect(applyOrderEvent(state, event).window).toBe(state.window);
    // order.created touches no window, so apply and applyOrderEvent agree exactly.
    const create = created();
    expect(orderAggregator.apply(state, { seq: 7, timeMs: 7, payload: create })).toEqual(
      applyOrderEvent(state, create),
    );
  });
});

describe('removeItems', () => {
  it('returns the remaining items and the number absent without touching its input', () => {
    const items = deepFreeze([1, 2, 3, 2]);
    expect(removeItems(items, [2, 4])).toEqual({ items: [1, 3, 2], absent: 1 });
    expect(removeItems(items, [])).toEqual({ items: [1, 2, 3, 2], absent: 0 });
    expect(removeItems([], [1, 1])).toEqual({ items: [], absent: 2 });
    expect(items).toEqual([1, 2, 3, 2]);
  });

  it('PROPERTY: removed + remaining is a permutation of the original (as multisets)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5 })),
        fc.array(fc.integer({ min: 0, max: 5 })),
        (items, remove) => {
          const { items: rest, absent } = removeItems(items, remove);
          expect(rest.length).toBe(items.length - (remove.length - absent));
          expect(absent).toBeGreaterThanOrEqual(0);
          expect(absent).toBeLessThanOrEqual(remove.length);
          // Every remaining item occurs at most as often as originally.
          for (const v of new Set(rest)) {
            expect(rest.filter((x) => x === v).length).toBeLessThanOrEqual(
              items.filter((x) => x === v).length,
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('properties of the fold', () => {
  it('PROPERTY: folding events equals the independent model (contents and window)', () => {
    fc.assert(
      fc.property(eventsArb, (events) => {
        const state = fold(events);
        const m = model(events);
        expect(contentsOf(state)).toEqual(contentsOf(m));
        expect(state.window).toEqual(m.window);
        expect(state.summaries).toBe(0);
        // Without timers, a window is open exactly when some change was applied.
        expect(state.window === null).toBe(events.every((e) => e.type === 'order.created'));
      }),
      { numRuns: 300 },
    );
  });

  it('PROPERTY: with timer entries mixed in, the fold still equals the model', () => {
    fc.assert(
      fc.property(stepsArb, (steps) => {
        const state = foldSteps(steps);
        const m = model(steps);
        expect(contentsOf(state)).toEqual(contentsOf(m));
        expect(state.window).toEqual(m.window);
        expect(state.summaries).toBe(m.summaries);
        // Timer entries never touch the contents: they are those of the events alone.
        expect(contentsOf(state)).toEqual(contentsOf(fold(eventsOnly(steps))));
      }),
      { numRuns: 300 },
    );
  });

  it('PROPERTY: folding is associative over splits (prefix then suffix = whole)', () => {
    fc.assert(
      fc.property(stepsArb, fc.nat(), (steps, k) => {
        const cut = k % (steps.length + 1);
        const prefix = foldSteps(steps.slice(0, cut));
        const resumed = foldSteps(steps.slice(cut), prefix, cut);
        expect(resumed).toEqual(foldSteps(steps));
      }),
      { numRuns: 100 },
    );
  });

  it('PROPERTY: apply never mutates its input state', () => {
    fc.assert(
      fc.property(stateArb, stepArb, (state, step) => {
        const snapshot = structuredClone(state);
        const frozen = deepFreeze(structuredClone(state));
        const e = stepEntry(state, step, 1);
        // With a deeply frozen input, any write would throw (ES modules are strict).
        const next = orderAggregator.apply(frozen, deepFreeze(structuredClone(e)));
        expect(frozen).toEqual(snapshot);
        if ('timer' in step) {
          expect(contentsOf(next)).toEqual(contentsOf(snapshot));
          const closes = step.timer !== 'stale' && snapshot.window !== null;
          expect(next.window).toEqual(closes ? null : snapshot.window);
          expect(next.summaries).toBe(snapshot.summaries + (closes ? 1 : 0));
        } else {
          expect(next.events).toBe(snapshot.events + 1);
        }
        // Unfrozen input too: the result never aliases a mutable array we could then corrupt.
        const live = structuredClone(state);
        const after = orderAggregator.apply(live, e);
        expect(live).toEqual(snapshot);
        if (!('timer' in step) && step.type !== 'order.created') {
          expect(after.items).not.toBe(live.items);
          expect(after.window).not.toBe(live.window);
          expect(after.window).not.toBeNull();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('PROPERTY: the entry payload is never mutated', () => {
    fc.assert(
      fc.property(stateArb, stepArb, (state, step) => {
        const e = stepEntry(state, step, 1);
        const snapshot = structuredClone(e);
        orderAggregator.apply(state, deepFreeze(e));
        expect(e).toEqual(snapshot);
      }),
      { numRuns: 100 },
    );
  });
});

describe('serialize / deserialize', () => {
  const roundTrip = (state: OrderState): OrderState =>
    orderAggregator.deserialize(
      orderAggregator.version,
      JSON.parse(JSON.stringify(orderAggregator.serialize(state))) as unknown,
    );
  const v1 = (state: OrderState): unknown => contentsOf(state);

  it('round trips a known state with an open window through JSON', () => {
    const state = fold([created(), added(1, 2, 2), removed(2, 9)]);
    expect(roundTrip(state)).toEqual({
      items: [1, 2],
      created: true,
      absentRemovals: 1,
      events: 3,
      window: {
        openedSeq: 2,
        openedAtMs: BASE_MS + 2,
        lastChangeSeq: 3,
        lastChangeAtMs: BASE_MS + 3,
        itemsAtOpen: [],
      },
      summaries: 0,
    });
  });

  it('round trips a known state with no window and summaries sent through JSON', () => {
    const state = foldSteps([added(1), { timer: 'max' }, added(2), { timer: 'quiet' }]);
    expect(roundTrip(state)).toEqual({
      items: [1, 2],
      created: false,
      absentRemovals: 0,
      events: 2,
      window: null,
      summaries: 2,
    });
  });

  it('PROPERTY: deserialize(serialize(s)) equals s, through JSON', () => {
    fc.assert(
      fc.property(stateArb, (state) => {
        expect(roundTrip(state)).toEqual(state);
      }),
      { numRuns: 200 },
    );
  });

  it('a deserialized state folds on exactly like the original', () => {
    fc.assert(
      fc.property(stepsArb, stepsArb, (before, after) => {
        const restored = roundTrip(foldSteps(before));
        const continued = foldSteps(after, restored, before.length);
        expect(continued).toEqual(foldSteps([...before, ...after]));
      }),
      { numRuns: 100 },
    );
  });

  it('upgrades a stored version 1 state: no window open, no summaries sent', () => {
    const stored = { items: [1, 2], created: true, absentRemovals: 1, events: 3 };
    const upgraded = orderAggregator.deserialize(1, stored);
    expect(upgraded).toEqual({ ...stored, window: null, summaries: 0 });
    // It folds on as version 2: the next change opens a window from the stored contents.
    const next = orderAggregator.apply(upgraded, entry(added(3), 10));
    expect(next.items).toEqual([1, 2, 3]);
    expect(next.window).toMatchObject({ openedSeq: 10, lastChangeSeq: 10, itemsAtOpen: [1, 2] });
    // And it round trips at the current version.
    expect(roundTrip(upgraded)).toEqual(upgraded);
  });

  it('PROPERTY: any state stored as version 1 comes back with its contents and no window', () => {
    fc.assert(
      fc.property(stateArb, (state) => {
        const stored = JSON.parse(JSON.stringify(v1(state))) as unknown;
        const upgraded = orderAggregator.deserialize(1, stored);
        expect(contentsOf(upgraded)).toEqual(contentsOf(state));
        expect(upgraded.window).toBeNull();
        expect(upgraded.summaries).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it('drops unknown extra fields of a stored v1 state (even window-like ones)', () => {
    expect(
      orderAggregator.deserialize(1, {
        items: [1],
        created: false,
        absentRemovals: 0,
        events: 1,
        extra: 'x',
        window: { openedSeq: 1 },
        summaries: 5,
      }),
    ).toEqual({
      items: [1],
      created: false,
      absentRemovals: 0,
      events: 1,
      window: null,
      summaries: 0,
    });
  });

  it('drops unknown extra fields of a stored v2 state', () => {
    const state = fold([added(1)]);
    const stored = { ...(orderAggregator.serialize(state) as object), extra: 'x' };
    expect(orderAggregator.deserialize(2, stored)).toEqual(state);
  });

  it.each([0, 3, -1, 1.5, Number.NaN, 100])(
    'rejects unknown version %s with STATE_CORRUPT',
    (version) => {
      const good = orderAggregator.serialize(fold([added(1)]));
      const err = thrownBy(() => orderAggregator.deserialize(version, good), OrderFleetError);
      expect(err.code).toBe(ErrorCode.StateCorrupt);
      expect(isOrderFleetError(err, ErrorCode.StateCorrupt)).toBe(true);
      expect(err.message).toContain(`version ${version}`);
    },
  );

  const corruptContents: [string, unknown][] = [
    ['null', null],
    ['undefined', undefined],
    ['a string', '{"items":[]}'],
    ['an array', []],
    ['an empty object', {}],
    ['missing items', { created: false, absentRemovals: 0, events: 0 }],
    ['items not an array', { items: 'abc', created: false, absentRemovals: 0, events: 0 }],
    ['non-integer item', { items: [1.5], created: false, absentRemovals: 0, events: 0 }],
    ['string item', { items: ['1'], created: false, absentRemovals: 0, events: 0 }],
    ['created not boolean', { items: [], created: 'yes', absentRemovals: 0, events: 0 }],
    ['negative absentRemovals', { items: [], created: false, absentRemovals: -1, events: 0 }],
    ['non-integer events', { items: [], created: false, absentRemovals: 0, events: 0.5 }],
    ['negative events', { items: [], created: false, absentRemovals: 0, events: -3 }],
    ['missing events', { items: [], created: false, absentRemovals: 0 }],
  ];

  it.each(corruptContents)(
    'rejects corrupt v1 data (%s) with STATE_CORRUPT and keeps the cause',
    (_name, data) => {
      const err = thrownBy(() => orderAggregator.deserialize(1, data), OrderFleetError);
      expect(err.code).toBe(ErrorCode.StateCorrupt);
      expect(err.message).toMatch(/version 1/);
      expect(err.cause).toBeInstanceOf(Error);
    },
  );

  const goodWindow = {
    openedSeq: 2,
    openedAtMs: BASE_MS + 2,
    lastChangeSeq: 3,
    lastChangeAtMs: BASE_MS + 3,
    itemsAtOpen: [1],
  };
  const v2 = (fields: object): unknown => ({
    items: [1, 2],
    created: true,
    absentRemovals: 0,
    events: 3,
    window: goodWindow,
    summaries: 0,
    ...fields,
  });

  it.each<[string, unknown]>([
    ...corruptContents.map(([name, data]): [string, unknown] => [
      name,
      typeof data === 'object' && data !== null && !Array.isArray(data)
        ? { ...data, window: null, summaries: 0 }
        : data,
    ]),
    [
      'a version 1 state (no window, no summaries)',
      { items: [], created: false, absentRemovals: 0, events: 0 },
    ],
    ['missing window', v2({ window: undefined })],
    ['missing summaries', v2({ summaries: undefined })],
    ['negative summaries', v2({ summaries: -1 })],
    ['non-integer summaries', v2({ summaries: 0.5 })],
    ['window not an object', v2({ window: 'open' })],
    ['window missing itemsAtOpen', v2({ window: { ...goodWindow, itemsAtOpen: undefined } })],
    ['window with a non-integer item', v2({ window: { ...goodWindow, itemsAtOpen: [1.5] } })],
    ['window openedSeq 0', v2({ window: { ...goodWindow, openedSeq: 0 } })],
    ['window lastChangeSeq not a number', v2({ window: { ...goodWindow, lastChangeSeq: '3' } })],
    ['window non-integer openedAtMs', v2({ window: { ...goodWindow, openedAtMs: 1.5 } })],
  ])('rejects corrupt v2 data (%s) with STATE_CORRUPT and keeps the cause', (_name, data) => {
    const err = thrownBy(() => orderAggregator.deserialize(2, data), OrderFleetError);
    expect(err.code).toBe(ErrorCode.StateCorrupt);
    expect(err.message).toMatch(/version 2/);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('accepts the good v2 data the corrupt cases are built from', () => {
    expect(orderAggregator.deserialize(2, v2({}))).toEqual(v2({}));
    expect(orderAggregator.deserialize(2, v2({ window: null, summaries: 4 }))).toMatchObject({
      window: null,
      summaries: 4,
    });
  });
});

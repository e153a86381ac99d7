import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { OrderEvent } from '../../src/contract/event.js';
import { ErrorCode, isOrderFleetError, OrderFleetError } from '../../src/errors.js';
import type { LogEntry } from '../../src/orders/aggregator.js';
import {
  applyOrderEvent,
  orderAggregator,
  type OrderState,
  removeItems,
  renderOrder,
} from '../../src/orders/order-aggregator.js';
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

const entry = (payload: OrderEvent, seq = 1): LogEntry<OrderEvent> => ({
  seq,
  timeMs: 1_700_000_000_000 + seq,
  payload,
});

/** The runtime's fold: state = entries.reduce(apply, initial()). */
function fold(events: readonly OrderEvent[]): OrderState {
  return events.reduce(
    (state, event, i) => orderAggregator.apply(state, entry(event, i + 1)),
    orderAggregator.initial(),
  );
}

/**
 * An independent model of an order: a mutable list, written without the production helpers.
 * Removal deletes the first occurrence of each listed item, in the order listed.
 */
interface Model {
  items: number[];
  created: boolean;
  absentRemovals: number;
  events: number;
}

function model(events: readonly OrderEvent[]): Model {
  const m: Model = { items: [], created: false, absentRemovals: 0, events: 0 };
  for (const event of events) {
    m.events += 1;
    if (event.type === 'order.created') {
      m.created = true;
    } else if (event.type === 'items.added') {
      for (const item of event.items) m.items.push(item);
    } else if (event.type === 'items.removed') {
      for (const target of event.items) {
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
  }
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
const stateArb: fc.Arbitrary<OrderState> = eventsArb.map(fold);

// --- tests -----------------------------------------------------------------------------------

describe('orderAggregator metadata', () => {
  it('has a stable name and version', () => {
    expect(orderAggregator.name).toBe('orders');
    expect(orderAggregator.version).toBe(1);
  });

  it('starts empty and the initial state cannot be mutated', () => {
    const initial = orderAggregator.initial();
    expect(initial).toEqual({ items: [], created: false, absentRemovals: 0, events: 0 });
    expect(Object.isFrozen(initial)).toBe(true);
    expect(Object.isFrozen(initial.items)).toBe(true);
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
    expect(john?.state).toEqual({ items: [1, 3, 7], created: true, absentRemovals: 0, events: 4 });
    expect(karan?.state).toEqual({ items: [4, 5, 6], created: true, absentRemovals: 0, events: 3 });
    if (john === undefined || karan === undefined) throw new Error('unreachable');
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

describe('applyOrderEvent', () => {
  it('order.created is idempotent apart from the event count', () => {
    const once = fold([created()]);
    const twice = fold([created(), created()]);
    expect(once).toEqual({ items: [], created: true, absentRemovals: 0, events: 1 });
    expect(twice).toEqual({ ...once, events: 2 });
    const withItems = fold([created(), added(1, 2), created()]);
    expect(withItems.items).toEqual([1, 2]);
    expect(withItems.created).toBe(true);
  });

  it('items can be added without a prior order.created', () => {
    expect(fold([added(1)])).toEqual({ items: [1], created: false, absentRemovals: 0, events: 1 });
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
    expect(fold([removed(1)])).toEqual({ items: [], created: false, absentRemovals: 1, events: 1 });
  });

  it('order.cleared empties the items but keeps created and absentRemovals', () => {
    const state = fold([created(), added(1, 2, 3), removed(7), cleared()]);
    expect(state).toEqual({ items: [], created: true, absentRemovals: 1, events: 4 });
    expect(fold([cleared()])).toEqual({ items: [], created: false, absentRemovals: 0, events: 1 });
    expect(fold([added(1), cleared(), added(2)]).items).toEqual([2]);
  });

  it('counts every applied event', () => {
    expect(fold([created(), added(1), removed(1), removed(1), cleared()]).events).toBe(5);
  });

  it('agrees with orderAggregator.apply (apply ignores seq and time)', () => {
    const state = fold([added(1, 2)]);
    const event = removed(1);
    expect(orderAggregator.apply(state, { seq: 99, timeMs: 0, payload: event })).toEqual(
      applyOrderEvent(state, event),
    );
    expect(orderAggregator.apply(state, { seq: 1, timeMs: 5e12, payload: event })).toEqual(
      applyOrderEvent(state, event),
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
  it('PROPERTY: folding events equals the independent model', () => {
    fc.assert(
      fc.property(eventsArb, (events) => {
        expect(fold(events)).toEqual(model(events));
      }),
      { numRuns: 300 },
    );
  });

  it('PROPERTY: folding is associative over splits (prefix then suffix = whole)', () => {
    fc.assert(
      fc.property(eventsArb, fc.nat(), (events, k) => {
        const cut = k % (events.length + 1);
        const prefix = fold(events.slice(0, cut));
        const resumed = events
          .slice(cut)
          .reduce(
            (state, event, i) => orderAggregator.apply(state, entry(event, cut + i + 1)),
            prefix,
          );
        expect(resumed).toEqual(fold(events));
      }),
      { numRuns: 100 },
    );
  });

  it('PROPERTY: apply never mutates its input state', () => {
    fc.assert(
      fc.property(stateArb, eventArb, (state, event) => {
        const snapshot = structuredClone(state);
        const frozen = deepFreeze(structuredClone(state));
        // With a deeply frozen input, any write would throw (ES modules are strict).
        const next = orderAggregator.apply(frozen, entry(deepFreeze(structuredClone(event))));
        expect(frozen).toEqual(snapshot);
        expect(next.events).toBe(snapshot.events + 1);
        // Unfrozen input too: the result never aliases a mutable array we could then corrupt.
        const live = structuredClone(state);
        const after = orderAggregator.apply(live, entry(event));
        expect(live).toEqual(snapshot);
        if (
          event.type === 'items.added' ||
          event.type === 'items.removed' ||
          event.type === 'order.cleared'
        ) {
          expect(after.items).not.toBe(live.items);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('PROPERTY: the event payload is never mutated', () => {
    fc.assert(
      fc.property(stateArb, eventArb, (state, event) => {
        const snapshot = structuredClone(event);
        orderAggregator.apply(state, entry(deepFreeze(event)));
        expect(event).toEqual(snapshot);
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

  it('round trips a known state through JSON', () => {
    const state = fold([created(), added(1, 2, 2), removed(2, 9)]);
    expect(roundTrip(state)).toEqual({
      items: [1, 2],
      created: true,
      absentRemovals: 1,
      events: 3,
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
      fc.property(eventsArb, eventsArb, (before, after) => {
        const restored = roundTrip(fold(before));
        const continued = after.reduce((s, e) => orderAggregator.apply(s, entry(e)), restored);
        expect(continued).toEqual(fold([...before, ...after]));
      }),
      { numRuns: 100 },
    );
  });

  it('drops unknown extra fields of a stored v1 state', () => {
    expect(
      orderAggregator.deserialize(1, {
        items: [1],
        created: false,
        absentRemovals: 0,
        events: 1,
        extra: 'x',
      }),
    ).toEqual({
      items: [1],
      created: false,
      absentRemovals: 0,
      events: 1,
    });
  });

  it.each([0, 2, -1, 1.5, Number.NaN, 100])(
    'rejects unknown version %s with STATE_CORRUPT',
    (version) => {
      const good = orderAggregator.serialize(fold([added(1)]));
      const err = thrownBy(() => orderAggregator.deserialize(version, good), OrderFleetError);
      expect(err.code).toBe(ErrorCode.StateCorrupt);
      expect(isOrderFleetError(err, ErrorCode.StateCorrupt)).toBe(true);
      expect(err.message).toContain(`version ${version}`);
    },
  );

  it.each<[string, unknown]>([
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
  ])('rejects corrupt data (%s) with STATE_CORRUPT and keeps the cause', (_name, data) => {
    const err = thrownBy(() => orderAggregator.deserialize(1, data), OrderFleetError);
    expect(err.code).toBe(ErrorCode.StateCorrupt);
    expect(err.message).toMatch(/version 1/);
    expect(err.cause).toBeInstanceOf(Error);
  });
});

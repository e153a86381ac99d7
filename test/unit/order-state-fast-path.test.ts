import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OrderFleetError } from '../../src/errors.js';
import {
  deserializeWithSchema,
  fastOrderStateV2,
  orderAggregator,
} from '../../src/orders/order-aggregator.js';

// Stored states are read with a hand-written fast path in front of the schema. It must be
// invisible: for any stored value, deserialize returns what the schema path returns (same
// fields, same key order) or throws the same error.

function outcome(run: () => unknown): unknown {
  try {
    const value = run();
    return { ok: true, json: JSON.stringify(value), value };
  } catch (err) {
    if (!(err instanceof OrderFleetError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

const int = fc.oneof(
  fc.integer({ min: -5, max: 1e6 }),
  fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER),
);
const bad = fc.constantFrom(-1, 0.5, 2 ** 53, '1', null, true, [], {}, -0);
const maybe = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 8, arbitrary: good }, { weight: 1, arbitrary: bad });
const ints = fc.array(maybe(int), { maxLength: 12 });
const window = fc.oneof(
  fc.constant(null),
  fc.record(
    {
      openedSeq: maybe(fc.integer({ min: 0, max: 1e9 })),
      openedAtMs: maybe(fc.integer()),
      lastChangeSeq: maybe(fc.integer({ min: 0, max: 1e9 })),
      lastChangeAtMs: maybe(fc.integer()),
      itemsAtOpen: maybe(ints),
      extra: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: ['openedSeq', 'openedAtMs', 'lastChangeSeq', 'lastChangeAtMs', 'itemsAtOpen'] },
  ),
  bad,
);
const state = fc.record(
  {
    items: maybe(ints),
    created: maybe(fc.boolean()),
    absentRemovals: maybe(fc.integer({ min: 0, max: 1e6 })),
    events: maybe(fc.integer({ min: 0, max: 1e6 })),
    window,
    summaries: maybe(fc.integer({ min: 0, max: 1e6 })),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  {
    requiredKeys: ['items', 'created', 'absentRemovals', 'events', 'window', 'summaries'],
  },
);

describe('stored order state fast path ≡ schema', () => {
  it(
    'PROPERTY: deserialize(2, …) equals the schema path for generated and mutated states',
    { timeout: 120_000 },
    () => {
      let taken = 0;
      fc.assert(
        fc.property(fc.oneof(state, fc.jsonValue({ maxDepth: 2 })), (raw) => {
          const json = JSON.parse(JSON.stringify(raw)) as unknown;
          if (fastOrderStateV2(json) !== undefined) taken++;
          expect(outcome(() => orderAggregator.deserialize(2, json))).toEqual(
            outcome(() => deserializeWithSchema(2, json)),
          );
        }),
        { numRuns: 2000 },
      );
      expect(taken).toBeGreaterThan(50);
    },
  );
});

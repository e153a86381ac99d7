import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeEvent,
  decodeEventWithSchema,
  DEFAULT_EVENT_LIMITS,
  fastEvent,
  OrderEventSchema,
  RESERVED_ID_PREFIX,
  type EventLimits,
} from '../../src/contract/event.js';
import { OrderFleetError } from '../../src/errors.js';

// The fast path in front of zod must be invisible: for every payload, decodeEvent (fast path,
// then schema) and decodeEventWithSchema (schema only) return the same event or throw the same
// error. These properties generate well-formed events, near misses of every rule, edge lengths,
// Unicode and arbitrary JSON.

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

type Outcome =
  | { ok: true; json: string; value: unknown }
  | { ok: false; name: string; code: string; message: string; rule: unknown; details: unknown };

function outcome(run: () => unknown): Outcome {
  try {
    const value = run();
    return { ok: true, json: JSON.stringify(value), value };
  } catch (err) {
    if (!(err instanceof OrderFleetError)) throw err;
    return {
      ok: false,
      name: err.name,
      code: err.code,
      message: err.message,
      rule: 'rule' in err ? err.rule : undefined,
      details: err.details,
    };
  }
}

/** Same result, same key order (JSON text), same values including -0 (Object.is via toEqual). */
function expectSameDecoding(data: Uint8Array, limits: EventLimits): void {
  const fast = outcome(() => decodeEvent(data, limits));
  const slow = outcome(() => decodeEventWithSchema(data, limits));
  expect(fast).toEqual(slow);
}

/** fastEvent either declines or agrees with the schema exactly. */
function expectFastAgrees(value: unknown, limits: EventLimits): boolean {
  const fast = fastEvent(value, limits);
  if (fast === undefined) return false;
  const parsed = OrderEventSchema.safeParse(value);
  expect(parsed.success).toBe(true);
  if (parsed.success) {
    expect(JSON.stringify(fast)).toBe(JSON.stringify(parsed.data));
    expect(fast).toEqual(parsed.data);
  }
  return true;
}

// --- arbitraries -------------------------------------------------------------------------

const printable = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const validId = fc
  .string({ unit: printable, minLength: 1, maxLength: 128 })
  .filter((id) => !id.startsWith(RESERVED_ID_PREFIX));
const edgeId = fc.oneof(
  fc.constantFrom('a', 'x'.repeat(127), 'x'.repeat(128), 'x'.repeat(129), '', '~', '~a', 'a~'),
  fc.constantFrom(' ', 'a b', '\u007f', '\u0000', 'é', '日本', '😀', '\ud800', 'a\u00a0b'),
  fc.string({ unit: 'grapheme', minLength: 0, maxLength: 130 }),
  fc.string({ unit: 'binary', minLength: 0, maxLength: 8 }),
  fc.string({ unit: printable, minLength: 120, maxLength: 136 }),
);
const anyId = fc.oneof({ weight: 3, arbitrary: validId }, { weight: 2, arbitrary: edgeId });

const safeItem = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.maxSafeInteger(),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 0),
);
const badItem = fc.oneof(
  fc.constantFrom(
    2 ** 53,
    -(2 ** 53),
    2 ** 60,
    1.5,
    -0.25,
    1e21,
    '1',
    null,
    true,
    [],
    {},
    Number.MAX_SAFE_INTEGER + 2,
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const anyItem = fc.oneof({ weight: 5, arbitrary: safeItem }, { weight: 1, arbitrary: badItem });

const isoAt = fc
  .date({
    min: new Date('0001-01-01T00:00:00Z'),
    max: new Date('9999-12-31T23:59:59Z'),
    noInvalidDate: true,
  })
  .map((d) => d.toISOString());
const offsetAt = fc
  .tuple(
    isoAt,
    fc.constantFrom('Z', '+00:00', '-05:30', '+23:59', '+24:00', '+0530', '+05', '', 'z'),
  )
  .map(([iso, offset]) => iso.slice(0, 19) + offset);
/** Date-time-looking strings with random characters: leap days, bad months, precision. */
const mangledAt = fc
  .tuple(
    fc.integer({ min: 0, max: 9999 }),
    fc.integer({ min: 0, max: 13 }),
    fc.integer({ min: 0, max: 32 }),
    fc.integer({ min: 0, max: 25 }),
    fc.integer({ min: 0, max: 61 }),
    fc.constantFrom('', '.1', '.123456789', '.', '.123456789012'),
    fc.constantFrom('Z', '+01:00', '-12:00', '+1:00', ''),
  )
  .map(
    ([y, mo, d, h, mi, frac, off]) =>
      `${String(y).padStart(4, '0')}-${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}` +
      `T${String(h).padStart(2, '0')}:${String(mi).padStart(2, '0')}:00${frac}${off}`,
  );
const anyAt = fc.oneof(
  isoAt,
  offsetAt,
  mangledAt,
  fc.constantFrom('2024-02-29T00:00:00Z', '2023-02-29T00:00:00Z', '2000-02-29T00:00:00Z'),
  fc.constantFrom('1900-02-29T00:00:00Z', 'yesterday', '', '2024-01-01', 1700000000000, null),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
);

const eventType = fc.constantFrom('order.created', 'items.added', 'items.removed', 'order.cleared');
const anyType = fc.oneof(
  { weight: 6, arbitrary: eventType },
  {
    weight: 1,
    arbitrary: fc.constantFrom('order.shipped', 'Items.added', 'summary.timer', '', null, 1),
  },
);

const limitsArb = fc.oneof(
  fc.constant(DEFAULT_EVENT_LIMITS),
  fc.record({
    maxPayloadBytes: fc.integer({ min: 16, max: 4096 }),
    maxItemsPerEvent: fc.integer({ min: 1, max: 12 }),
  }),
);

/** Events built from field values that are each mostly valid; keys added, dropped or extra. */
const candidate = fc
  .record(
    {
      id: anyId,
      type: anyType,
      items: fc.oneof(
        { weight: 6, arbitrary: fc.array(anyItem, { minLength: 0, maxLength: 14 }) },
        { weight: 1, arbitrary: fc.constantFrom(5, 'x', null, {}) },
      ),
      at: anyAt,
      extra: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  )
  .chain((event) =>
    fc.constantFrom(
      event,
      // keys with meaning only for some types: drop what a type does not take
      Object.fromEntries(
        Object.entries(event).filter(
          ([k]) =>
            k !== 'extra' &&
            (k !== 'items' || event.type === 'items.added' || event.type === 'items.removed'),
        ),
      ),
    ),
  )
  .map((event) => {
    const { extra, ...rest } = event as Record<string, unknown>;
    return 'extra' in event ? { ...rest, extra } : rest;
  });

/** Well-formed events, in canonical or shuffled key order, with and without `at`. */
const validEvent = fc
  .tuple(
    validId,
    eventType,
    fc.array(safeItem, { minLength: 1, maxLength: 12 }),
    fc.option(isoAt, { nil: undefined }),
    fc.boolean(),
  )
  .map(([id, type, items, at, reversed]) => {
    const entries: [string, unknown][] = [
      ['id', id],
      ['type', type],
    ];
    if (type === 'items.added' || type === 'items.removed') entries.push(['items', items]);
    if (at !== undefined) entries.push(['at', at]);
    return Object.fromEntries(reversed ? entries.reverse() : entries);
  });

// --- properties ----------------------------------------------------------------------------

// Generated inputs are many; on a loaded 2-core machine they take seconds (not a timing check).
const SLOW = { timeout: 120_000 };

describe('event fast path ≡ schema', () => {
  it(
    'PROPERTY: well-formed events are taken by the fast path and equal the schema result',
    SLOW,
    () => {
      fc.assert(
        fc.property(validEvent, (event) => {
          const limits = { maxPayloadBytes: 1 << 20, maxItemsPerEvent: 1000 };
          expect(expectFastAgrees(event, limits)).toBe(true);
          expectSameDecoding(bytes(JSON.stringify(event)), limits);
        }),
        { numRuns: 1000 },
      );
    },
  );

  it(
    'PROPERTY: near misses of every rule decode (or fail) exactly as with the schema alone',
    SLOW,
    () => {
      let taken = 0;
      let declined = 0;
      fc.assert(
        fc.property(candidate, limitsArb, (event, limits) => {
          if (expectFastAgrees(event, limits)) taken++;
          else declined++;
          expectSameDecoding(bytes(JSON.stringify(event)), limits);
        }),
        { numRuns: 2000 },
      );
      // The generator must exercise both sides of the fast path, or the property proves little.
      expect(taken).toBeGreaterThan(20);
      expect(declined).toBeGreaterThan(200);
    },
  );

  it('PROPERTY: arbitrary JSON decodes (or fails) exactly as with the schema alone', SLOW, () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), limitsArb, (value, limits) => {
        expectFastAgrees(value, limits);
        expectSameDecoding(bytes(JSON.stringify(value)), limits);
      }),
      { numRuns: 1000 },
    );
  });

  it(
    'PROPERTY: raw text (whitespace, duplicate keys, __proto__, -0, exponents) agrees',
    SLOW,
    () => {
      const fragment = fc.constantFrom(
        '{"id":"a","type":"items.added","items":[1]}',
        '{"id":"a","type":"items.added","items":[-0]}',
        '{"id":"a","type":"items.added","items":[1e3, 2.0, 1E0]}',
        '{"id":"a","type":"items.added","items":[9007199254740993]}',
        '{"id":"a","id":"b","type":"order.created"}',
        '{"id":"a","type":"order.created","type":"items.added"}',
        '{"id":"a","type":"order.created","__proto__":{"items":[1]}}',
        '{"__proto__":null,"id":"a","type":"order.created"}',
        ' \n{ "type" : "order.cleared" , "id" : "z" }\t',
        '{"id":"\\u0041","type":"order.created"}',
        '{"id":"\\u00e9","type":"order.created"}',
        '{"id":"a","type":"order.created","at":"2024-01-01T00:00:00.000000001+14:00"}',
        '[]',
        'null',
        '"order.created"',
        '{"id":"a","type":"order.created"',
      );
      fc.assert(
        fc.property(fragment, limitsArb, (text, limits) => {
          expectSameDecoding(bytes(text), limits);
        }),
        { numRuns: 300 },
      );
    },
  );

  it('PROPERTY: item-count and payload-size limits at their edges agree', SLOW, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 22 }),
        fc.integer({ min: -3, max: 3 }),
        (max, length, slack) => {
          const event = {
            id: 'e',
            type: 'items.removed',
            items: Array.from({ length }, (_, i) => i),
          };
          const data = bytes(JSON.stringify(event));
          const limits = { maxPayloadBytes: data.byteLength + slack, maxItemsPerEvent: max };
          expectFastAgrees(event, limits);
          expectSameDecoding(data, limits);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('keeps the parsed items array (no copy) and returns only the schema fields', () => {
    const event = fastEvent(
      { type: 'items.added', at: '2024-01-01T00:00:00Z', items: [3, -0], id: 'k' },
      DEFAULT_EVENT_LIMITS,
    );
    expect(JSON.stringify(event)).toBe(
      '{"id":"k","type":"items.added","items":[3,0],"at":"2024-01-01T00:00:00Z"}',
    );
    expect(Object.is(event?.type === 'items.added' ? event.items[1] : 1, -0)).toBe(true);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OrderFleetError } from '../../src/errors.js';
import { decodeTimerEntry, decodeTimerEntryWithSchema } from '../../src/orders/order-log.js';
import { fastTimerEntry, TimerEntrySchema } from '../../src/orders/summary.js';

// Timer entries are decoded with a hand-written fast path in front of the schema. It must be
// invisible: same entry (same fields, same key order) or, through the schema, the same error.

function outcome(run: () => unknown): unknown {
  try {
    const value = run();
    return { ok: true, json: JSON.stringify(value), value };
  } catch (err) {
    if (!(err instanceof OrderFleetError)) throw err;
    return { ok: false, code: err.code, message: err.message, details: err.details };
  }
}

function expectEquivalent(raw: unknown): boolean {
  expect(outcome(() => decodeTimerEntry(raw))).toEqual(
    outcome(() => decodeTimerEntryWithSchema(raw)),
  );
  const fast = fastTimerEntry(raw);
  if (fast === undefined) return false;
  const parsed = TimerEntrySchema.safeParse(raw);
  expect(parsed.success).toBe(true);
  if (parsed.success) expect(JSON.stringify(fast)).toBe(JSON.stringify(parsed.data));
  return true;
}

const seq = fc.oneof(
  fc.integer({ min: 1, max: 1_000_000 }),
  fc.constantFrom(1, Number.MAX_SAFE_INTEGER),
);
const badNumber = fc.constantFrom(0, -1, 1.5, 2 ** 53, -0, '1', null, true, [], {});
const valid = fc.record({
  type: fc.constant('summary.timer'),
  window: seq,
  lastChangeSeq: seq,
  reason: fc.constantFrom('quiet', 'max'),
  dueAtMs: fc.oneof(fc.integer(), fc.constantFrom(0, -1, Number.MIN_SAFE_INTEGER)),
});

// Generated inputs take seconds on a loaded 2-core machine (a deadline, not a timing check).
const SLOW = { timeout: 120_000 };

describe('timer entry fast path ≡ schema', () => {
  it(
    'PROPERTY: valid entries (any key order) are taken by the fast path, equal to the schema',
    SLOW,
    () => {
      fc.assert(
        fc.property(valid, fc.boolean(), (entry, reversed) => {
          const raw = reversed ? Object.fromEntries(Object.entries(entry).reverse()) : entry;
          const json = JSON.parse(JSON.stringify(raw)) as unknown;
          expect(expectEquivalent(json)).toBe(true);
        }),
        { numRuns: 500 },
      );
    },
  );

  it(
    'PROPERTY: any field changed, dropped or added decodes exactly as the schema says',
    SLOW,
    () => {
      const field = fc.constantFrom(
        'type',
        'window',
        'lastChangeSeq',
        'reason',
        'dueAtMs',
        'extra',
      );
      const value = fc.oneof(
        badNumber,
        fc.constantFrom('quiet', 'max', 'Quiet', 'summary.timer', 'items.added', ''),
        fc.jsonValue({ maxDepth: 1 }),
      );
      fc.assert(
        fc.property(valid, field, fc.option(value, { nil: undefined }), (entry, key, v) => {
          const raw: Record<string, unknown> = { ...entry };
          if (v === undefined) delete raw[key];
          else raw[key] = v;
          expectEquivalent(JSON.parse(JSON.stringify(raw)) as unknown);
        }),
        { numRuns: 2000 },
      );
    },
  );

  it('PROPERTY: arbitrary JSON agrees', SLOW, () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 2 }), (raw) => {
        expectEquivalent(raw);
      }),
      { numRuns: 500 },
    );
  });
});

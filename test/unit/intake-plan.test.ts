// Planning a batch: redeliveries and superseded entries are passed over, a hole in delivery ends
// the plan (the runner restarts from its watermark rather than apply past it), and an entry's
// fate follows the customer's stored position and quarantine.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideEntry, planIntake } from '../../src/fleet/intake-plan.js';

describe('planIntake', () => {
  it('classifies each message and ends at a gap', () => {
    const plan = planIntake(
      [
        { seq: 10, deliverySequence: 1 }, // already applied (a redelivery after reconnect)
        { seq: 11, deliverySequence: 2 },
        { seq: 12, deliverySequence: 3 }, // superseded by a redriven copy
        { seq: 13, deliverySequence: 5 }, // 4 was lost in flight
        { seq: 14, deliverySequence: 6 },
      ],
      { appliedSeq: 10, expectedDelivery: 1 },
      new Set([12]),
    );
    expect(plan).toEqual({
      kinds: ['redelivered', 'handle', 'superseded'],
      gap: { expected: 4, got: 5 },
      expectedDelivery: 4,
    });
  });

  it('a delivery sequence seen again (a redelivery) is no gap', () => {
    const plan = planIntake(
      [
        { seq: 5, deliverySequence: 3 },
        { seq: 5, deliverySequence: 3 },
        { seq: 6, deliverySequence: 4 },
      ],
      { appliedSeq: 4, expectedDelivery: 3 },
      new Set(),
    );
    expect(plan.gap).toBeUndefined();
    expect(plan.expectedDelivery).toBe(5);
  });

  it('plans exactly the prefix before the first hole', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 40 }),
        fc.integer({ min: 0, max: 50 }),
        (steps, appliedSeq) => {
          // steps: 0 repeats the last delivery sequence, 1 the next, 2 skips one (a hole).
          let d = 0;
          const batch = steps.map((step, i) => {
            d += step;
            return { seq: i + 1, deliverySequence: Math.max(1, d) };
          });
          const plan = planIntake(batch, { appliedSeq, expectedDelivery: 1 }, new Set());
          let expected = 1;
          let prefix = batch.length;
          for (const [i, m] of batch.entries()) {
            if (m.deliverySequence > expected) {
              prefix = i;
              break;
            }
            expected = Math.max(expected, m.deliverySequence + 1);
          }
          expect(plan.kinds).toHaveLength(prefix);
          expect(plan.gap !== undefined).toBe(prefix < batch.length);
          plan.kinds.forEach((k, i) =>
            expect(k).toBe((batch[i]?.seq ?? 0) <= appliedSeq ? 'redelivered' : 'handle'),
          );
        },
      ),
    );
  });
});

describe('decideEntry', () => {
  it('skips what the customer already applied, files what comes after a quarantine', () => {
    expect(decideEntry(5, { lastSeq: 5 })).toBe('skip');
    expect(decideEntry(6, { lastSeq: 5 })).toBe('apply');
    expect(decideEntry(6, { lastSeq: 5, quarantine: { seq: 4 } })).toBe('quarantined');
    expect(decideEntry(3, { lastSeq: 5, quarantine: { seq: 4 } })).toBe('skip');
  });
});

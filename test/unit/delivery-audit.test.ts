// The delivery audit's rule: a whole interval after the server said it had made D deliveries,
// the runner must have received delivery D; anything less means deliveries were lost in flight.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  auditDelivery,
  consumerUnreadable,
  UNREADABLE_AFTER_FAILED_SAMPLES,
} from '../../src/fleet/delivery-audit.js';

describe('auditDelivery', () => {
  it('has nothing to compare on the first sample, or after a failed one', () => {
    expect(auditDelivery(undefined, 0)).toEqual({ kind: 'ok' });
  });

  it('passes when what was delivered an interval ago has arrived', () => {
    expect(auditDelivery({ delivered: 120 }, 120)).toEqual({ kind: 'ok' });
    expect(auditDelivery({ delivered: 120 }, 400)).toEqual({ kind: 'ok' });
  });

  it('reports deliveries the runner never received (lost in flight)', () => {
    expect(auditDelivery({ delivered: 812 }, 809)).toEqual({
      kind: 'behind',
      delivered: 812,
      received: 809,
    });
  });

  it('is behind exactly when the received sequence is below the earlier delivered one', () => {
    fc.assert(
      fc.property(fc.nat(), fc.nat(), (delivered, received) => {
        const verdict = auditDelivery({ delivered: delivered }, received);
        expect(verdict.kind === 'behind').toBe(received < delivered);
      }),
    );
  });
});

describe('consumerUnreadable', () => {
  it('only after several failed samples in a row', () => {
    expect(consumerUnreadable(0)).toBe(false);
    expect(consumerUnreadable(UNREADABLE_AFTER_FAILED_SAMPLES - 1)).toBe(false);
    expect(consumerUnreadable(UNREADABLE_AFTER_FAILED_SAMPLES)).toBe(true);
  });
});

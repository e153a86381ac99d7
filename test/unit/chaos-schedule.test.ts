import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FAULT_KINDS,
  parseFaultKinds,
  pickTarget,
  planFaults,
  type ScheduleOptions,
} from '../../scripts/chaos/schedule.js';

const options = fc.record({
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
  durationMs: fc.integer({ min: 1_000, max: 180_000 }),
  rate: fc.double({ min: 0.5, max: 60, noNaN: true }),
  kinds: fc.subarray([...FAULT_KINDS], { minLength: 1 }),
  leaseTtlMs: fc.integer({ min: 500, max: 20_000 }),
  workers: fc.integer({ min: 1, max: 6 }),
});

const toSchedule = (o: {
  seed: number;
  durationMs: number;
  rate: number;
  kinds: (typeof FAULT_KINDS)[number][];
  leaseTtlMs: number;
  workers: number;
}): ScheduleOptions => ({
  ...o,
  minWorkers: Math.max(1, o.workers - 1),
  maxWorkers: o.workers + 2,
});

describe('chaos schedule', () => {
  it('is a pure function of the seed and the options', () => {
    fc.assert(
      fc.property(
        options,
        (o) =>
          JSON.stringify(planFaults(toSchedule(o))) === JSON.stringify(planFaults(toSchedule(o))),
      ),
    );
  });

  it('draws only the asked kinds, in time order, inside the fault phase, numbered from 1', () => {
    fc.assert(
      fc.property(options, (o) =>
        // Plain booleans rather than an expect per fault: thousands of faults per property.
        planFaults(toSchedule(o)).every(
          (f, i, plan) =>
            o.kinds.includes(f.kind) &&
            f.n === i + 1 &&
            f.atMs >= 0 &&
            f.atMs < o.durationMs &&
            f.pick >= 0 &&
            f.pick < 1 &&
            (i === 0 || f.atMs >= (plan[i - 1]?.atMs ?? 0)),
        ),
      ),
    );
  });

  it('keeps the fleet size within its bounds', () => {
    fc.assert(
      fc.property(options, (o) => {
        const s = toSchedule(o);
        let size = s.workers;
        return planFaults(s).every((f) => {
          if (f.kind === 'scale-up') size++;
          if (f.kind === 'scale-down') size--;
          return size >= s.minWorkers && size <= s.maxWorkers;
        });
      }),
    );
  });

  it('makes stops, stalls and cuts outlast the lease TTL', () => {
    fc.assert(
      fc.property(options, (o) =>
        planFaults(toSchedule(o)).every(
          (f) =>
            !(f.kind === 'worker-stop' || f.kind === 'nats-stall' || f.kind === 'net-cut') ||
            f.durationMs > o.leaseTtlMs,
        ),
      ),
    );
  });

  it('differs between seeds', () => {
    const base = { durationMs: 120_000, rate: 12, kinds: [...FAULT_KINDS], leaseTtlMs: 4000 };
    const a = planFaults(toSchedule({ ...base, seed: 1, workers: 3 }));
    const b = planFaults(toSchedule({ ...base, seed: 2, workers: 3 }));
    expect(a).not.toEqual(b);
    expect(a.length).toBeGreaterThan(10);
  });

  it('plans nothing for no kinds or a zero rate', () => {
    const base = { seed: 1, durationMs: 60_000, leaseTtlMs: 4000, workers: 3 };
    expect(planFaults(toSchedule({ ...base, rate: 12, kinds: [] }))).toEqual([]);
    expect(planFaults(toSchedule({ ...base, rate: 0, kinds: ['worker-kill'] }))).toEqual([]);
  });

  it('parses --faults: all, none, a list; unknown kinds are an error naming them', () => {
    expect(parseFaultKinds('all')).toEqual([...FAULT_KINDS]);
    expect(parseFaultKinds('none')).toEqual([]);
    expect(parseFaultKinds('nats-kill, worker-kill,nats-kill')).toEqual([
      'nats-kill',
      'worker-kill',
    ]);
    expect(() => parseFaultKinds('worker-kill,oops')).toThrow(/oops/u);
  });

  it('picks a target by position, never out of range', () => {
    expect(pickTarget([], 0.5)).toBeUndefined();
    expect(pickTarget(['a', 'b', 'c'], 0)).toBe('a');
    expect(pickTarget(['a', 'b', 'c'], 0.5)).toBe('b');
    expect(pickTarget(['a', 'b', 'c'], 0.999999)).toBe('c');
  });
});

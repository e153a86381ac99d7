import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkpointDue,
  idleWaitMs,
  type CheckpointRules,
  type CheckpointView,
} from '../../src/fleet/checkpoint-policy.js';

const rules: CheckpointRules = { everyEvents: 5000, intervalMs: 1000, idleMs: 100 };
const quiet: CheckpointView = {
  now: 10_000,
  lastCheckpointAt: 10_000,
  lastActivityAt: 10_000,
  sinceCheckpoint: 0,
  unacked: false,
  timersDirty: false,
  queued: false,
  rebuildPending: false,
};

describe('checkpointDue', () => {
  it('never checkpoints a partition with nothing to write, however long it waits', () => {
    expect(checkpointDue(rules, { ...quiet, now: 1e9 })).toBe(false);
  });

  it('checkpoints after the event count even when busy and recent', () => {
    expect(checkpointDue(rules, { ...quiet, sinceCheckpoint: 5000, unacked: true })).toBe(true);
  });

  it('checkpoints a quiet partition once the idle time has passed, not before', () => {
    const applied = { ...quiet, sinceCheckpoint: 10, unacked: true };
    expect(checkpointDue(rules, { ...applied, now: 10_099 })).toBe(false);
    expect(checkpointDue(rules, { ...applied, now: 10_100 })).toBe(true);
  });

  it('waits for the interval while entries keep arriving (the queue is not empty)', () => {
    const busy = { ...quiet, sinceCheckpoint: 10, unacked: true, queued: true, now: 10_500 };
    expect(checkpointDue(rules, busy)).toBe(false);
    expect(checkpointDue(rules, { ...busy, now: 11_000 })).toBe(true);
  });

  it('with the idle rule off, only the interval and the count apply', () => {
    const off = { ...rules, idleMs: 0 };
    const applied = { ...quiet, sinceCheckpoint: 10, unacked: true };
    expect(checkpointDue(off, { ...applied, now: 10_999 })).toBe(false);
    expect(checkpointDue(off, { ...applied, now: 11_000 })).toBe(true);
  });

  it('writes index repairs on the interval, and a finished rebuild at once', () => {
    expect(checkpointDue(rules, { ...quiet, timersDirty: true, now: 10_500 })).toBe(false);
    expect(checkpointDue(rules, { ...quiet, timersDirty: true, now: 11_000 })).toBe(true);
    expect(checkpointDue(rules, { ...quiet, rebuildPending: true })).toBe(true);
  });
});

describe('idleWaitMs', () => {
  const view = fc.record({
    now: fc.integer({ min: 0, max: 10_000 }),
    lastCheckpointAt: fc.integer({ min: 0, max: 10_000 }),
    lastActivityAt: fc.integer({ min: 0, max: 10_000 }),
    sinceCheckpoint: fc.integer({ min: 0, max: 100 }),
    unacked: fc.boolean(),
    timersDirty: fc.boolean(),
    queued: fc.constant(false),
    rebuildPending: fc.constant(false),
  });
  const ruleSet = fc.record({
    everyEvents: fc.integer({ min: 101, max: 10_000 }),
    intervalMs: fc.integer({ min: 10, max: 5000 }),
    idleMs: fc.integer({ min: 0, max: 1000 }),
  });

  it('never sleeps past the moment a checkpoint becomes due, and never spins', () => {
    fc.assert(
      fc.property(ruleSet, view, (r, v) => {
        if (checkpointDue(r, v)) return true;
        const wait = idleWaitMs(r, v);
        if (wait < 10) return false;
        // Nothing arrives while it sleeps: due at most at the end of the wait, never earlier
        // than the floor allows.
        for (let t = v.now; t < v.now + wait; t++) {
          if (t - v.now >= 10 && checkpointDue(r, { ...v, now: t })) return false;
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});

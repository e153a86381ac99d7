import { describe, expect, it } from 'vitest';
import { ErrorCode, OrderFleetError } from '../../src/errors.js';
import { decideRestart, DEFAULT_RESTART_POLICY } from '../../src/fleet/restart-policy.js';

const policy = { initialMs: 100, maxMs: 1000, jitter: 0 };

describe('decideRestart', () => {
  it('parks on a terminal failure (corrupt state), with its code and reason', () => {
    const err = new OrderFleetError(ErrorCode.StateCorrupt, 'stored state of customer x is bad');
    expect(decideRestart({ error: err, ranHealthy: true }, 0, policy)).toEqual({
      action: 'park',
      code: 'STATE_CORRUPT',
      reason: 'OrderFleetError: stored state of customer x is bad',
    });
  });

  it('restarts a retriable failure with exponential backoff while it keeps failing', () => {
    const err = new OrderFleetError(ErrorCode.Fenced, 'lease lost');
    let failures = 0;
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const d = decideRestart({ error: err, ranHealthy: false }, failures, policy);
      if (d.action !== 'restart') throw new Error('expected a restart');
      failures = d.failures;
      delays.push(d.delayMs);
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('starts the backoff over after a run that got healthy', () => {
    const d = decideRestart({ error: new Error('timeout'), ranHealthy: true }, 7, policy);
    expect(d).toEqual({ action: 'restart', delayMs: 100, failures: 1 });
  });

  it('restarts unknown errors and self-requested restarts (a delivery gap): never gives up', () => {
    for (const error of [new TypeError('bug'), 'a string', undefined]) {
      expect(decideRestart({ error, ranHealthy: false }, 3, policy).action).toBe('restart');
    }
  });

  it('jitters the default policy within [base/2, base]', () => {
    const low = decideRestart(
      { error: undefined, ranHealthy: false },
      0,
      DEFAULT_RESTART_POLICY,
      () => 0,
    );
    const high = decideRestart(
      { error: undefined, ranHealthy: false },
      0,
      DEFAULT_RESTART_POLICY,
      () => 1,
    );
    expect(low).toMatchObject({ delayMs: 125 });
    expect(high).toMatchObject({ delayMs: 250 });
  });
});

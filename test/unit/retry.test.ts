import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isOrderFleetError, OrderFleetError } from '../../src/errors.js';
import { backoffDelay, retry } from '../../src/lifecycle/retry.js';

describe('backoffDelay', () => {
  it('PROPERTY: stays within [base × (1 − jitter), base], base = min(max, initial × factor^(n−1))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (attempt, initialMs, maxMs, jitter, r) => {
          const base = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
          const d = backoffDelay(attempt, { initialMs, maxMs, jitter }, () => r);
          expect(d).toBeGreaterThanOrEqual(Math.floor(base * (1 - jitter)));
          expect(d).toBeLessThanOrEqual(Math.ceil(base));
        },
      ),
    );
  });

  it('grows exponentially until the cap', () => {
    const policy = { initialMs: 100, maxMs: 1000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });
});

const transient = (): OrderFleetError => new OrderFleetError(ErrorCode.PublishFailed, 'transient');

describe('retry', () => {
  it('retries retriable failures and returns the first success', async () => {
    let calls = 0;
    const retried: number[] = [];
    const value = await retry(
      () => {
        calls++;
        return calls < 3 ? Promise.reject(transient()) : Promise.resolve('ok');
      },
      { initialMs: 1, maxMs: 2, onRetry: (_err, attempt) => retried.push(attempt) },
    );
    expect(value).toBe('ok');
    expect(calls).toBe(3);
    expect(retried).toEqual([1, 2]);
  });

  it('does not retry a terminal failure', async () => {
    let calls = 0;
    const terminal = new OrderFleetError(ErrorCode.StateCorrupt, 'corrupt');
    await expect(
      retry(
        () => {
          calls++;
          return Promise.reject(terminal);
        },
        { initialMs: 1, maxMs: 1 },
      ),
    ).rejects.toBe(terminal);
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts with the last failure', async () => {
    let calls = 0;
    await expect(
      retry(
        () => {
          calls++;
          return Promise.reject(transient());
        },
        { initialMs: 1, maxMs: 1, maxAttempts: 4 },
      ),
    ).rejects.toMatchObject({ code: ErrorCode.PublishFailed });
    expect(calls).toBe(4);
  });

  it('continues after attempts the caller made itself: numbered after them, within maxAttempts', async () => {
    const seen: number[] = [];
    await expect(
      retry(
        (attempt) => {
          seen.push(attempt);
          return Promise.reject(transient());
        },
        { initialMs: 1, maxMs: 1, maxAttempts: 4, failedAttempts: 1 },
      ),
    ).rejects.toMatchObject({ code: ErrorCode.PublishFailed });
    // Attempt 1 was the caller's; three more make four in all.
    expect(seen).toEqual([2, 3, 4]);
    await expect(
      retry(() => Promise.resolve('never'), {
        initialMs: 1,
        maxMs: 1,
        maxAttempts: 2,
        failedAttempts: 2,
      }),
    ).rejects.toBeInstanceOf(RangeError);
  });

  it('stops waiting at once when aborted, with ABORTED carrying the last failure', async () => {
    const ac = new AbortController();
    let calls = 0;
    const running = retry(
      () => {
        calls++;
        if (calls === 1) setTimeout(() => ac.abort(), 5);
        return Promise.reject(transient());
      },
      // A long backoff: the abort must cut it short.
      { initialMs: 60_000, maxMs: 60_000, signal: ac.signal },
    );
    const err: unknown = await running.catch((e: unknown) => e);
    expect(isOrderFleetError(err, ErrorCode.Aborted)).toBe(true);
    expect((err as Error).cause).toMatchObject({ code: ErrorCode.PublishFailed });
    expect(calls).toBe(1);
  });

  it('abandons an attempt in flight when aborted', async () => {
    const ac = new AbortController();
    const never = new Promise<string>(() => undefined);
    setTimeout(() => ac.abort(), 5);
    const err: unknown = await retry(() => never, {
      initialMs: 1,
      maxMs: 1,
      signal: ac.signal,
    }).catch((e: unknown) => e);
    expect(isOrderFleetError(err, ErrorCode.Aborted)).toBe(true);
  });
});

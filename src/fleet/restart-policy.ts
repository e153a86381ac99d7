import { describeError, errorCode, isTerminal } from '../errors.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/retry.js';

/**
 * What a partition's supervisor does after its runner failed. Pure, so it is unit-tested on its
 * own: a terminal failure (corrupt state, an unreadable watermark: retrying reads the same bytes)
 * parks the partition with its reason; anything else (a fenced write, a delivery gap, NATS
 * unavailable, an error we do not know) restarts it after an exponential backoff with jitter.
 * A runner that got healthy (caught up) before failing starts the backoff from the beginning.
 */
export const DEFAULT_RESTART_POLICY: BackoffPolicy = {
  initialMs: 250,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.5,
};

export interface RunOutcome {
  /** Why the runner ended; undefined when it stopped itself to start over (a delivery gap). */
  readonly error: unknown;
  /** True when the runner had caught up (served normally) before it ended. */
  readonly ranHealthy: boolean;
}

export type RestartDecision =
  | {
      readonly action: 'restart';
      readonly delayMs: number;
      /** Consecutive failed runs so far, this one included. */
      readonly failures: number;
    }
  | { readonly action: 'park'; readonly code: string; readonly reason: string };

export function decideRestart(
  outcome: RunOutcome,
  previousFailures: number,
  policy: BackoffPolicy = DEFAULT_RESTART_POLICY,
  random: () => number = Math.random,
): RestartDecision {
  if (outcome.error !== undefined && isTerminal(outcome.error)) {
    return {
      action: 'park',
      code: errorCode(outcome.error),
      reason: describeError(outcome.error),
    };
  }
  const failures = outcome.ranHealthy ? 1 : previousFailures + 1;
  return { action: 'restart', delayMs: backoffDelay(failures, policy, random), failures };
}

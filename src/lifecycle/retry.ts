import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, isRetriable, OrderFleetError } from '../errors.js';

/**
 * The one backoff of the code base: exponential, capped, with jitter so that workers that failed
 * together (a NATS node restart) do not retry in lockstep. Pure: `random` is injectable.
 */
export interface BackoffPolicy {
  /** Delay before the second attempt. */
  readonly initialMs: number;
  /** Upper bound of any delay. */
  readonly maxMs: number;
  /** Growth per attempt (default 2). */
  readonly factor?: number;
  /**
   * Fraction of each delay that is random (default 0.5): the delay is drawn uniformly from
   * `[base × (1 − jitter), base]`, so it never exceeds the exponential base.
   */
  readonly jitter?: number;
}

/** Delay after failed attempt number `attempt` (1-based). */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const factor = policy.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0.5));
  const exponent = Math.max(0, attempt - 1);
  const base = Math.min(policy.maxMs, policy.initialMs * factor ** exponent);
  return Math.round(base * (1 - jitter) + base * jitter * random());
}

export interface RetryOptions extends BackoffPolicy {
  /** Attempts in all, the first included (default: unlimited until aborted). */
  readonly maxAttempts?: number;
  /** Aborting stops at once: no further attempt, no wait; the attempt in flight is abandoned. */
  readonly signal?: AbortSignal;
  /**
   * False: an attempt in flight when the signal fires is awaited, not abandoned (its result is
   * still returned), for attempts that acquire something the caller must then release.
   */
  readonly abandonOnAbort?: boolean;
  /**
   * Attempts the caller already made and saw fail (default 0), for a hot path that tries once
   * on its own before paying for the retrier: the first attempt here waits the backoff after
   * them and is numbered after them, so the schedule and `maxAttempts` are as if all were here.
   */
  readonly failedAttempts?: number;
  /** Whether a failure is worth another attempt (default {@link isRetriable}). */
  readonly shouldRetry?: (err: unknown, attempt: number) => boolean;
  /** Called before waiting for the next attempt (logging). */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  readonly random?: () => number;
}

/** The error thrown when a retry (or a wait) is given up because its signal fired. */
export function abortError(signal: AbortSignal, cause?: unknown): OrderFleetError {
  return new OrderFleetError(ErrorCode.Aborted, 'aborted', {
    cause: cause ?? (signal.reason as unknown),
  });
}

/**
 * Runs `fn` until it succeeds, the failure is not worth retrying, attempts run out, or `signal`
 * fires. Throws the last failure, or ABORTED (with the last failure as cause) when aborted.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { signal, maxAttempts = Number.POSITIVE_INFINITY } = options;
  const shouldRetry = options.shouldRetry ?? ((err: unknown) => isRetriable(err));
  let last: unknown;
  const before = options.failedAttempts ?? 0;
  if (before > 0) {
    if (before >= maxAttempts) throw new RangeError('failedAttempts must be below maxAttempts');
    await delay(backoffDelay(before, options, options.random), signal);
  }
  for (let attempt = before + 1; ; attempt++) {
    if (signal !== undefined && aborted(signal)) throw abortError(signal, last);
    try {
      return await (options.abandonOnAbort === false
        ? fn(attempt)
        : abortable(fn(attempt), signal));
    } catch (err) {
      if (signal !== undefined && aborted(signal)) throw abortError(signal, last ?? err);
      last = err;
      if (attempt >= maxAttempts || !shouldRetry(err, attempt)) throw err;
      const delayMs = backoffDelay(attempt, options, options.random);
      options.onRetry?.(err, attempt, delayMs);
      await delay(delayMs, signal);
    }
  }
}

/** Waits `ms`; resolves early (without throwing) when `signal` fires. */
export async function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return;
  try {
    await sleep(ms, undefined, signal === undefined ? {} : { signal });
  } catch (err) {
    if (!(err instanceof Error && err.name === 'AbortError')) throw err;
  }
}

/** `promise`, or ABORTED as soon as `signal` fires (the promise's own outcome is then ignored). */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined); // abandoned: its failure is of no interest any more
    return Promise.reject(abortError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      promise.catch(() => undefined); // abandoned, see above
      reject(abortError(signal));
    };
    const listeners = abortListeners(signal);
    listeners.add(onAbort);
    promise.then(
      (value) => {
        listeners.delete(onAbort);
        resolve(value);
      },
      (err: unknown) => {
        listeners.delete(onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * The callbacks waiting on one signal, behind a single 'abort' listener. Every summary publish
 * and dead letter of a partition runs under its runner's signal: an `addEventListener` and
 * `removeEventListener` per call (EventTarget's bookkeeping) cost more CPU than the publish
 * itself in a burst of closing windows; a Set's add and delete do not.
 */
const listenersBySignal = new WeakMap<AbortSignal, Set<() => void>>();

function abortListeners(signal: AbortSignal): Set<() => void> {
  let listeners = listenersBySignal.get(signal);
  if (listeners === undefined) {
    const set = new Set<() => void>();
    listeners = set;
    listenersBySignal.set(signal, set);
    signal.addEventListener(
      'abort',
      () => {
        for (const listener of [...set]) listener();
        set.clear();
      },
      { once: true },
    );
  }
  return listeners;
}

/** Read through a call: TypeScript would otherwise narrow `aborted` across awaits. */
function aborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

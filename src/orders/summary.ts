import { z } from 'zod';

/**
 * Summary windows: the business reason order-fleet exists. A customer's window opens with the
 * first change (items added, removed, or cleared) after the last summary and closes when the
 * customer has been quiet for `quietMs`, or `maxMs` after it opened, whichever comes first.
 * Deadlines are computed from JetStream timestamps in the log; the *decision* to close is a timer
 * entry appended to the log, so replay closes exactly the same windows with the same contents.
 */
export interface SummaryPolicy {
  readonly quietMs: number;
  readonly maxMs: number;
}

export const DEFAULT_SUMMARY_POLICY: SummaryPolicy = { quietMs: 30_000, maxMs: 5 * 60_000 };

/** An open window, kept in the customer's state. */
export interface SummaryWindow {
  /** Sequence of the change that opened the window: the window's identity. */
  readonly openedSeq: number;
  readonly openedAtMs: number;
  readonly lastChangeSeq: number;
  readonly lastChangeAtMs: number;
  /** Contents when the window opened; the summary reports the net change from here. */
  readonly itemsAtOpen: readonly number[];
}

export const SummaryWindowSchema = z.object({
  openedSeq: z.number().int().min(1),
  openedAtMs: z.number().int(),
  lastChangeSeq: z.number().int().min(1),
  lastChangeAtMs: z.number().int(),
  itemsAtOpen: z.array(z.number().int()),
});

/** The log entry a window's owner appends when a deadline passes. */
export const TimerEntrySchema = z.strictObject({
  type: z.literal('summary.timer'),
  /** openedSeq of the window this timer is for. */
  window: z.number().int().min(1),
  /** For a quiet timer: the last change it saw; a later change voids it. */
  lastChangeSeq: z.number().int().min(1),
  reason: z.enum(['quiet', 'max']),
  dueAtMs: z.number().int(),
});
export type TimerEntry = z.infer<typeof TimerEntrySchema>;

/**
 * Hand-written check in front of {@link TimerEntrySchema} for a parsed JSON value: returns the
 * entry the schema would return (same fields, same order) when sure, else `undefined` and the
 * caller asks the schema, which stays the authority and makes every error. Proved equivalent
 * by property tests (test/unit/timer-entry-fast-path.test.ts).
 */
export function fastTimerEntry(raw: unknown): TimerEntry | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const record = raw as Record<string, unknown>;
  let keys = 0;
  for (const key in record) {
    keys++;
    if (
      key !== 'type' &&
      key !== 'window' &&
      key !== 'lastChangeSeq' &&
      key !== 'reason' &&
      key !== 'dueAtMs'
    )
      return undefined;
  }
  const { type, window, lastChangeSeq, reason, dueAtMs } = record;
  if (
    keys !== 5 ||
    type !== 'summary.timer' ||
    !isPositiveSafeInteger(window) ||
    !isPositiveSafeInteger(lastChangeSeq) ||
    (reason !== 'quiet' && reason !== 'max') ||
    !Number.isSafeInteger(dueAtMs)
  )
    return undefined;
  return { type, window, lastChangeSeq, reason, dueAtMs: dueAtMs as number };
}

function isPositiveSafeInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1;
}

/** What is published on `notifications.<customerId>` when a window closes. */
export interface SummaryNotification {
  /** Derived from the window, the same on every replay: use it as an idempotency key. */
  readonly summaryId: string;
  readonly customerId: string;
  readonly added: readonly number[];
  readonly removed: readonly number[];
  readonly contents: readonly number[];
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly openedAt: string;
  readonly closedAt: string;
  readonly reason: 'quiet' | 'max';
}

export function summaryId(window: Pick<SummaryWindow, 'openedSeq'>): string {
  return `sum-${window.openedSeq}`;
}

/** When the window must close, and why. */
export function windowDeadline(
  window: SummaryWindow,
  policy: SummaryPolicy,
): { dueAtMs: number; reason: 'quiet' | 'max' } {
  const quiet = window.lastChangeAtMs + policy.quietMs;
  const max = window.openedAtMs + policy.maxMs;
  return quiet <= max ? { dueAtMs: quiet, reason: 'quiet' } : { dueAtMs: max, reason: 'max' };
}

/** Multiset difference `a - b`, keeping a's order. */
export function multisetMinus(a: readonly number[], b: readonly number[]): number[] {
  const counts = new Map<number, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  const out: number[] = [];
  for (const x of a) {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

/** Does a timer entry close this window? Pure: depends only on the log. */
export function timerCloses(
  window: SummaryWindow | null,
  timer: TimerEntry,
): window is SummaryWindow {
  if (window === null || window.openedSeq !== timer.window) return false; // stale or duplicate
  // A quiet timer is void if the customer changed something after the owner decided: a new
  // timer follows. The max-duration cutoff closes the window whatever came in meanwhile.
  return timer.reason === 'max' || window.lastChangeSeq === timer.lastChangeSeq;
}

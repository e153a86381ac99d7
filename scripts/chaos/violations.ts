// What the harness reports when an invariant breaks. `name` is a stable code (the exit message and
// the JSON report use it); `detail` says what happened in words, `data` carries the facts.

export const VIOLATION_NAMES = {
  /** A customer's stored state differs from the model (events lost or applied twice). */
  contentsMismatch: 'CONTENTS_MISMATCH',
  /**
   * The orders stream holds one publish (one Nats-Msg-Id) at more than one sequence: the server's
   * deduplication let a retried publish in twice. The fleet is then judged against what the stream
   * holds (it applies both, as it must); this names the duplicate at its source.
   */
  streamDuplicate: 'STREAM_DUPLICATE',
  /** A customer's events as acknowledged to the publisher differ from those in the log. */
  publishedNotLog: 'PUBLISHED_NOT_LOG',
  /** A customer in the model has no stored state, or the reverse. */
  customerMissing: 'CUSTOMER_MISSING',
  /** Consecutive summaries of a customer do not chain: the next one does not start where the last ended. */
  summaryGap: 'SUMMARY_CHAIN_GAP',
  /** Two summaries of a customer cover overlapping ranges of the log. */
  summaryOverlap: 'SUMMARY_OVERLAP',
  /** Two deliveries under one idempotency key carried different bodies. */
  repeatDiffers: 'SUMMARY_REPEAT_DIFFERS',
  /** A customer's last delivered summary does not equal its final contents. */
  lastSummaryNotFinal: 'SUMMARY_LAST_NOT_FINAL',
  /** One window was delivered under more than one key, or a key does not name its window. */
  windowKeys: 'WINDOW_KEYS',
  /** A summary the log implies was never delivered, or one was delivered that the log does not imply. */
  summaryMissing: 'SUMMARY_MISSING',
  summaryUnexpected: 'SUMMARY_UNEXPECTED',
  /** A customer's lastSeq in the state bucket went down. */
  lastSeqBackwards: 'LASTSEQ_BACKWARDS',
  /**
   * A customer's final value in the bucket is older than a write the watch saw (a lower lastSeq):
   * an acknowledged KV write is gone (the server lost it), which the fleet cannot see either.
   */
  kvWriteLost: 'KV_WRITE_LOST',
  /** Two different runners wrote a partition's watermark under the same epoch. */
  epochShared: 'EPOCH_SHARED',
  /** A partition's watermark epoch or sequence went down. */
  watermarkBackwards: 'WATERMARK_BACKWARDS',
  /** A process exited without the schedule stopping it. */
  workerExited: 'WORKER_EXITED',
  notifierExited: 'NOTIFIER_EXITED',
  /** A SIGTERMed worker did not exit within its shutdown grace (plus a margin). */
  shutdownHung: 'SHUTDOWN_HUNG',
  /** After the faults stopped, the fleet did not reach a settled state in time. */
  notSettled: 'NOT_SETTLED',
  /** The KV watches could not vouch for the whole run (they fell behind or failed). */
  watchIncomplete: 'WATCH_INCOMPLETE',
} as const;
export type ViolationName = (typeof VIOLATION_NAMES)[keyof typeof VIOLATION_NAMES];

export interface Violation {
  readonly name: ViolationName | (string & {});
  readonly detail: string;
  /** Milliseconds since the start of the run, when it was seen during the run. */
  readonly atMs?: number;
  readonly data?: Readonly<Record<string, unknown>>;
}

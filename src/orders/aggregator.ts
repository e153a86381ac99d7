/**
 * The generic aggregator contract. A customer's state is a deterministic fold of that
 * customer's log entries in stream order: `state = entries.reduce(apply, initial())`. The runtime
 * (not the aggregator) tracks `lastSeq` and skips entries at or below it, so replaying any suffix
 * of the log never applies an entry twice.
 *
 * Entries carry the stream sequence and the JetStream timestamp, so an aggregator can keep
 * time-based facts (such as a quiet-period deadline) that come out the same on every replay:
 * they depend on the log, never on the clock of whichever worker is replaying.
 */
export interface LogEntry<E> {
  /** Stream sequence of the entry. */
  readonly seq: number;
  /** The entry's JetStream timestamp, in epoch milliseconds. */
  readonly timeMs: number;
  readonly payload: E;
}

/**
 * A durable timer an aggregator state is waiting for. When `dueAtMs` passes (by the owner's
 * clock), the owner appends `entry` to the customer's log with message id `id`; the timer takes
 * effect when that entry is *applied*, in log order, so replay reaches the same decision.
 */
export interface PendingTimer<E> {
  readonly dueAtMs: number;
  /** Deterministic: two owners, or a retry, produce the same id and JetStream stores one entry. */
  readonly id: string;
  /**
   * Timers of one series replace each other (a window's quiet deadline moving with each change).
   * The durable index is rewritten only when the series changes, not on every change: an index
   * entry may therefore hold an earlier timer of the series, which fires early after a restart,
   * is void when applied, and is then replaced from the customer's state.
   */
  readonly series: string;
  readonly entry: E;
}

export interface Aggregator<S, E, O = never> {
  /** Stable name, stored with every snapshot. */
  readonly name: string;
  /** Version of the serialized form written by {@link serialize}. */
  readonly version: number;
  initial(): S;
  /** Pure: must not mutate `state`, read clocks, or do I/O. */
  apply(state: S, entry: LogEntry<E>): S;
  serialize(state: S): unknown;
  /** Reads any version this aggregator ever wrote; throws STATE_CORRUPT otherwise. */
  deserialize(version: number, data: unknown): S;
  /**
   * Outputs for the outside world caused by applying `entry` (e.g. a summary notification).
   * Pure, so a replay produces the same outputs, with the same ids, again.
   */
  outputs?(customerId: string, before: S, after: S, entry: LogEntry<E>): readonly O[];
  /** The timer this state waits for, if any. Pure. */
  timer?(customerId: string, state: S): PendingTimer<E> | undefined;
}

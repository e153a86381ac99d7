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

export interface Aggregator<S, E> {
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
}

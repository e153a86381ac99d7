/**
 * Is the partition consumer delivering what it says it delivered? The server counts every
 * delivery it makes (`delivered.consumer_seq`); the runner sees each one's delivery sequence.
 * Once a whole interval has passed, every delivery the server had made at the first of two
 * samples must have arrived. One that did not was lost in flight (a pull answered into a
 * connection that then broke), and nothing else would notice while no later message arrives to
 * show the gap: its entry would wait for ack_wait (a minute or more) to be redelivered. A false
 * alarm costs one restart from the watermark, which replays nothing twice.
 *
 * Delivery sequences, not stream sequences: a filtered consumer's `delivered.stream_seq` moves
 * past other partitions' entries it skips, so it runs ahead of what this partition received.
 *
 * A consumer whose info cannot be read at all for several samples in a row is recreated the same
 * way: 2.10.27 was seen leaving partition consumers that answered every request with "JetStream
 * system temporarily unavailable" for minutes after node faults, blocking `status` for the whole
 * fleet, while a recreated consumer worked at once.
 */

/** Failed samples in a row (one per interval) after which the consumer counts as broken. */
export const UNREADABLE_AFTER_FAILED_SAMPLES = 4;

/** One reading of the consumer's info. */
export interface DeliverySample {
  /** Deliveries the server has made so far (`delivered.consumer_seq`). */
  readonly delivered: number;
}

export type AuditVerdict =
  | { readonly kind: 'ok' }
  | {
      readonly kind: 'behind';
      /** Deliveries the server had made an interval ago. */
      readonly delivered: number;
      /** The highest delivery sequence the runner has received since. */
      readonly received: number;
    };

/**
 * `previous` is the sample taken one interval ago (undefined on the first check, or after a
 * sample could not be taken); `received` the highest delivery sequence received since the
 * consumer was created (0 before anything arrived).
 */
export function auditDelivery(
  previous: DeliverySample | undefined,
  received: number,
): AuditVerdict {
  if (previous === undefined || received >= previous.delivered) return { kind: 'ok' };
  return { kind: 'behind', delivered: previous.delivered, received };
}

/** After `failedInARow` samples failed in a row: is the consumer to be recreated? */
export function consumerUnreadable(failedInARow: number): boolean {
  return failedInARow >= UNREADABLE_AFTER_FAILED_SAMPLES;
}

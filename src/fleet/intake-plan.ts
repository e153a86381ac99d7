/** What the runner needs to know of a delivered message to plan a batch. */
export interface Delivered {
  /** Stream sequence. */
  readonly seq: number;
  /** The consumer's delivery sequence: consecutive unless a message was lost in flight. */
  readonly deliverySequence: number;
}

/**
 * - `handle`: decode it, then apply (or dead-letter) it;
 * - `redelivered`: at or below what this runner already handled;
 * - `superseded`: replaced by its redriven copy (`dlq redrive`), which is applied instead.
 */
export type Intake = 'handle' | 'redelivered' | 'superseded';

export interface IntakePlan {
  /** One per message of the batch up to (not including) a gap. */
  readonly kinds: readonly Intake[];
  /** A hole in delivery: the runner must stop and start over from its watermark. */
  readonly gap?: { readonly expected: number; readonly got: number };
  /** The delivery sequence expected next. */
  readonly expectedDelivery: number;
}

/**
 * Plans a batch in delivery order. A delivery sequence beyond the expected one means a message
 * was lost in flight (a reconnect): applying past the hole could let a later entry of a customer
 * overtake an earlier one, so the plan ends there.
 */
export function planIntake(
  batch: readonly Delivered[],
  cursor: { readonly appliedSeq: number; readonly expectedDelivery: number },
  superseded: ReadonlySet<number>,
): IntakePlan {
  const kinds: Intake[] = [];
  let expectedDelivery = cursor.expectedDelivery;
  for (const msg of batch) {
    if (msg.deliverySequence > expectedDelivery)
      return {
        kinds,
        gap: { expected: expectedDelivery, got: msg.deliverySequence },
        expectedDelivery,
      };
    expectedDelivery = Math.max(expectedDelivery, msg.deliverySequence + 1);
    kinds.push(
      msg.seq <= cursor.appliedSeq
        ? 'redelivered'
        : superseded.has(msg.seq)
          ? 'superseded'
          : 'handle',
    );
  }
  return { kinds, expectedDelivery };
}

/**
 * What to do with a decoded entry of a customer, given the customer's stored position:
 * - `skip`: at or below its `lastSeq` (applied before: a replay);
 * - `quarantined`: the customer's apply() threw earlier; applying later entries over that gap
 *   would make its state something that is not a fold of its log, so they are dead-lettered;
 * - `apply`.
 */
export type EntryDecision = 'apply' | 'skip' | 'quarantined';

export function decideEntry(
  seq: number,
  customer: { readonly lastSeq: number; readonly quarantine?: unknown },
): EntryDecision {
  if (seq <= customer.lastSeq) return 'skip';
  if (customer.quarantine !== undefined) return 'quarantined';
  return 'apply';
}

import type { JetStreamManager, PubAck } from '@nats-io/jetstream';
import { publishHeaders, type JetStreamWriter } from '../nats/js-writer.js';

const encoder = new TextEncoder();
import type { ResourceNames } from '../contract/names.js';
import type { PendingTimer } from './aggregator.js';
import type { OrderEntry } from './order-aggregator.js';
import { sequenced } from '../nats/pub-ack.js';
import { timerSubject } from './order-log.js';

/**
 * What an append did: stored a new entry, or found this very timer entry already in the log at
 * `seq` (a retry, another owner, or a timer read from a stale index after its window closed).
 */
export type TimerAppendOutcome =
  | { readonly kind: 'appended'; readonly seq: number }
  | { readonly kind: 'duplicate'; readonly seq: number };

/**
 * Appends a due timer to the customer's log. The message id is the timer's deterministic id, so
 * two owners or a retry store one entry. If the server answers "duplicate" but the stored message
 * is not this timer entry (an id taken by a publisher that ignored the reserved prefix), the
 * entry is appended again under an id derived from the colliding sequence: the window must close.
 */
export function timerAppender(
  /** Pipelined: a burst of due timers appends without a nats.js request each. */
  writer: JetStreamWriter,
  jsm: JetStreamManager,
  names: ResourceNames,
): (
  partition: number,
  customerId: string,
  timer: PendingTimer<OrderEntry>,
) => Promise<TimerAppendOutcome> {
  return async (partition, customerId, timer) => {
    const subject = timerSubject(names, partition, customerId);
    const data = encoder.encode(JSON.stringify(timer.entry));
    const stream = names.ordersStream;
    const publish = (msgID: string): Promise<PubAck> =>
      writer.publish(subject, data, publishHeaders({ msgID, expectStream: stream }));
    const ack = sequenced(await publish(timer.id), timer.id);
    if (!ack.duplicate) return { kind: 'appended', seq: ack.seq };
    const stored = await jsm.streams.getMessage(stream, { seq: ack.seq });
    if (stored !== null && stored.subject === subject) return { kind: 'duplicate', seq: ack.seq };
    const again = sequenced(await publish(`${timer.id}-${ack.seq}`), timer.id);
    return { kind: again.duplicate ? 'duplicate' : 'appended', seq: again.seq };
  };
}

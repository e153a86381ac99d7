import type { PubAck } from '@nats-io/jetstream';
import { ErrorCode, OrderFleetError } from '../errors.js';

/**
 * The ack of a publish whose sequence the caller relies on. A clustered stream answers a repeat of
 * a message id whose first publish is still being replicated as a duplicate with `seq: 0` (the
 * chaos harness saw hundreds of these while a stream leader was stalled): the message is there,
 * or soon will be, but 0 is not its sequence. That is a retriable error here, so the caller's
 * retry asks again with the same id and gets the real sequence.
 */
export function sequenced(ack: PubAck, what: string): PubAck {
  if (ack.seq > 0) return ack;
  throw unsequencedError(ack, what);
}

/** The error of {@link sequenced}, for a hot path that checks `ack.seq > 0` itself. */
export function unsequencedError(ack: PubAck, what: string): OrderFleetError {
  return new OrderFleetError(
    ErrorCode.PublishUnsequenced,
    `${what}: answered as a duplicate of a publish still being replicated (no sequence yet)`,
    { details: { stream: ack.stream, duplicate: ack.duplicate } },
  );
}

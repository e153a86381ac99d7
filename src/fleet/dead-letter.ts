import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { sequenced } from '../nats/pub-ack.js';
import { headers } from '@nats-io/transport-node';
import type { ResourceNames } from '../contract/names.js';
import { describeError, ErrorCode, isOrderFleetError, isValidationError } from '../errors.js';
import { retry, type RetryOptions } from '../lifecycle/retry.js';
import type { Logger } from '../logging/logger.js';
import { deadLetterSubject } from '../contract/internal-names.js';

/** Headers on every dead letter; the body is the original message, byte for byte. */
export const DeadLetterHeader = {
  Reason: 'Order-Fleet-Reason',
  Detail: 'Order-Fleet-Reason-Detail',
  Rule: 'Order-Fleet-Rule',
  SourceStream: 'Order-Fleet-Source-Stream',
  SourceSubject: 'Order-Fleet-Source-Subject',
  SourceSeq: 'Order-Fleet-Source-Seq',
  Partition: 'Order-Fleet-Partition',
  /** The source message's own Nats-Msg-Id (the event id), when it had one. */
  SourceMsgId: 'Order-Fleet-Source-Msg-Id',
} as const;

/** Reason code for an entry that decoded but could not be applied (an aggregator bug). */
export const APPLY_FAILED = ErrorCode.ApplyFailed;

/**
 * About 30 s of attempts, then the runner fails and its supervisor restarts it from the
 * watermark; a shutdown deadline cuts it short (the signal).
 */
const PUBLISH_RETRY: RetryOptions = {
  maxAttempts: 20,
  initialMs: 100,
  maxMs: 2000,
  shouldRetry: () => true,
};

/**
 * Files bad messages in the dead-letter stream. The message id is derived from the source stream
 * and sequence, so a replay that meets the same bad message again files it once. A bad message
 * therefore never blocks its partition and is never lost: it is in the dead-letter stream before
 * the partition's watermark moves past it.
 */
export class DeadLetterSink {
  constructor(
    private readonly js: JetStreamClient,
    private readonly names: ResourceNames,
    private readonly log: Logger,
  ) {}

  async file(partition: number, msg: JsMsg, err: unknown, signal?: AbortSignal): Promise<void> {
    const reason = isOrderFleetError(err) ? err.code : APPLY_FAILED;
    const h = headers();
    h.set(DeadLetterHeader.Reason, reason);
    h.set(DeadLetterHeader.Detail, headerSafe(describeError(err)));
    if (isValidationError(err)) h.set(DeadLetterHeader.Rule, headerSafe(err.rule));
    h.set(DeadLetterHeader.SourceStream, msg.info.stream);
    h.set(DeadLetterHeader.SourceSubject, headerSafe(msg.subject));
    h.set(DeadLetterHeader.SourceSeq, String(msg.seq));
    h.set(DeadLetterHeader.Partition, String(partition));
    const sourceMsgId = msg.headers?.get('Nats-Msg-Id') ?? '';
    if (sourceMsgId !== '') h.set(DeadLetterHeader.SourceMsgId, headerSafe(sourceMsgId));
    const subject = deadLetterSubject(this.names, partition);
    const msgID = `dlq-${msg.info.stream}-${msg.seq}`;
    // The partition must not move past a bad message that is not safely filed: every failure is
    // retried (same message id, so a retry after a lost ack is stored once) until the budget or
    // the signal runs out, and then the runner fails rather than skip it.
    await retry(
      async () =>
        // A sequence-0 duplicate means the first attempt is still being replicated and may yet
        // be lost with its leader: only a real sequence says the dead letter is filed.
        sequenced(
          await this.js.publish(subject, msg.data, {
            msgID,
            headers: h,
            expect: { streamName: this.names.deadLetterStream },
          }),
          `dead letter ${msgID}`,
        ),
      {
        ...PUBLISH_RETRY,
        ...(signal === undefined ? {} : { signal }),
        onRetry: (publishErr, attempt, delayMs) =>
          this.log.warn(
            { partition, seq: msg.seq, attempt, delayMs, err: describeError(publishErr) },
            'dead-letter publish retry',
          ),
      },
    );
    this.log.warn(
      { partition, seq: msg.seq, subject: msg.subject, reason },
      'dead-lettered message',
    );
  }
}

/** Header values cannot hold CR/LF and should stay short. */
function headerSafe(value: string): string {
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  return value.replace(/[\u0000-\u001f\u007f]/gu, ' ').slice(0, 512);
}

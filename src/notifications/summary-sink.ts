import type { JetStreamManager } from '@nats-io/jetstream';
import { sequenced } from '../nats/pub-ack.js';
import type { ResourceNames } from '../contract/names.js';
import { describeError } from '../errors.js';
import { retry, type RetryOptions } from '../lifecycle/retry.js';
import type { OutputSink } from '../fleet/partition-runner.js';
import type { Logger } from '../logging/logger.js';
import { isMessageNotFound } from '../nats/errors.js';
import { publishHeaders, type JetStreamWriter } from '../nats/js-writer.js';
import type { SummaryNotification } from '../orders/summary.js';

const encoder = new TextEncoder();

export const SUMMARY_ID_HEADER = 'Order-Fleet-Summary-Id';
/** About 30 s; then the checkpoint fails and the restarted runner replays the entry. */
const PUBLISH_RETRY: RetryOptions = {
  maxAttempts: 20,
  initialMs: 100,
  maxMs: 2000,
  shouldRetry: () => true,
};

export function notificationSubject(names: ResourceNames, customerId: string): string {
  return `${names.notificationsPrefix}.${customerId}`;
}

/**
 * Publishes summaries to the NOTIFICATIONS stream with `Nats-Msg-Id = summaryId`: a replay that
 * closes the same window publishes the same id, and JetStream stores it once. During a replay
 * the sink also looks at the customer's last notification first, which covers a replay that
 * happens after the duplicate window has passed (e.g. the whole fleet was down for a long time):
 * windows of one customer close in log order, so a last notification at or past this window
 * means this one was sent.
 */
export class SummarySink implements OutputSink<SummaryNotification> {
  constructor(
    /** Pipelined: a burst of closing windows publishes its summaries without a request each. */
    private readonly writer: JetStreamWriter,
    private readonly jsm: JetStreamManager,
    private readonly names: ResourceNames,
    private readonly log: Logger,
  ) {}

  async emit(
    partition: number,
    summary: SummaryNotification,
    replay: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const subject = notificationSubject(this.names, summary.customerId);
    if (replay && (await this.alreadySent(subject, summary))) {
      this.log.debug({ partition, summaryId: summary.summaryId }, 'summary already sent');
      return;
    }
    const h = publishHeaders({
      msgID: summary.summaryId,
      expectStream: this.names.notificationsStream,
      extra: { [SUMMARY_ID_HEADER]: summary.summaryId },
    });
    const data = encoder.encode(JSON.stringify(summary));
    const ack = await retry(
      async () =>
        // A sequence-0 duplicate means the first attempt is still being replicated and may yet
        // be lost with its leader: only a real sequence says the summary is stored, and the
        // watermark must not pass its entry before that.
        sequenced(await this.writer.publish(subject, data, h), `summary ${summary.summaryId}`),
      {
        ...PUBLISH_RETRY,
        ...(signal === undefined ? {} : { signal }),
        onRetry: (err, attempt, delayMs) =>
          this.log.warn(
            { partition, summaryId: summary.summaryId, attempt, delayMs, err: describeError(err) },
            'summary publish retry',
          ),
      },
    );
    this.log.info(
      {
        partition,
        summaryId: summary.summaryId,
        customerId: summary.customerId,
        seq: ack.seq,
        duplicate: ack.duplicate,
      },
      'summary published',
    );
  }

  private async alreadySent(subject: string, summary: SummaryNotification): Promise<boolean> {
    try {
      const last = await this.jsm.streams.getMessage(this.names.notificationsStream, {
        last_by_subj: subject,
      });
      if (last === null) return false;
      const sent = last.json<{ firstSeq?: unknown }>();
      return typeof sent.firstSeq === 'number' && sent.firstSeq >= summary.firstSeq;
    } catch (err) {
      if (isMessageNotFound(err)) return false;
      throw err;
    }
  }
}

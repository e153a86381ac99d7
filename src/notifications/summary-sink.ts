import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import type { ResourceNames } from '../contract/names.js';
import { describeError } from '../errors.js';
import type { OutputSink } from '../fleet/partition-runner.js';
import type { Logger } from '../logging/logger.js';
import { isMessageNotFound } from '../nats/errors.js';
import type { SummaryNotification } from '../orders/summary.js';

export const SUMMARY_ID_HEADER = 'Order-Fleet-Summary-Id';
const MAX_ATTEMPTS = 20;

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
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly names: ResourceNames,
    private readonly log: Logger,
  ) {}

  async emit(partition: number, summary: SummaryNotification, replay: boolean): Promise<void> {
    const subject = notificationSubject(this.names, summary.customerId);
    if (replay && (await this.alreadySent(subject, summary))) {
      this.log.debug({ partition, summaryId: summary.summaryId }, 'summary already sent');
      return;
    }
    const h = headers();
    h.set(SUMMARY_ID_HEADER, summary.summaryId);
    for (let attempt = 1; ; attempt++) {
      try {
        const ack = await this.js.publish(subject, JSON.stringify(summary), {
          msgID: summary.summaryId,
          headers: h,
          expect: { streamName: this.names.notificationsStream },
        });
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
        return;
      } catch (err) {
        // Give up eventually: the checkpoint fails, and the restarted runner replays the entry.
        if (attempt >= MAX_ATTEMPTS) throw err;
        this.log.warn(
          { partition, summaryId: summary.summaryId, attempt, err: describeError(err) },
          'summary publish retry',
        );
        await sleep(Math.min(2000, 50 * 2 ** attempt));
      }
    }
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

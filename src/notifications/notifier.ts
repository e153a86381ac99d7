import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream';
import { headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { ResourceNames } from '../contract/names.js';
import { describeError, errorCode } from '../errors.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/retry.js';
import { DeadLetterHeader } from '../fleet/dead-letter.js';
import type { Logger } from '../logging/logger.js';
import type { SummaryNotification } from '../orders/summary.js';
import type { NotificationSink } from './sinks.js';
import { NOTIFIER_CONSUMER } from '../contract/internal-names.js';

export { NOTIFIER_CONSUMER };

const SummarySchema = z.object({
  summaryId: z.string().min(1),
  customerId: z.string().min(1),
  added: z.array(z.number()),
  removed: z.array(z.number()),
  contents: z.array(z.number()),
  firstSeq: z.number(),
  lastSeq: z.number(),
  openedAt: z.string(),
  closedAt: z.string(),
  reason: z.enum(['quiet', 'max']),
});

/** Redelivery delay of a failed delivery, by delivery count (the server waits it out, not us). */
const REDELIVERY: BackoffPolicy = { initialMs: 250, maxMs: 30_000, jitter: 0.5 };

export interface NotifierOptions {
  readonly names: ResourceNames;
  readonly sink: NotificationSink;
  readonly maxInFlight: number;
  /** How long a delivery may take before the server redelivers it elsewhere. */
  readonly ackWaitMs: number;
  readonly log: Logger;
}

export interface NotifierStats {
  delivered: number;
  retried: number;
  deadLettered: number;
}

/**
 * Delivers summaries from the NOTIFICATIONS stream to a sink, at least once, acknowledging only
 * after the sink accepted. Transient failures are negatively acknowledged with a growing delay
 * (the server redelivers, possibly to another notifier); a permanent refusal goes to the
 * dead-letter stream with the response status, then is acknowledged.
 */
export class Notifier {
  readonly stats: NotifierStats = { delivered: 0, retried: 0, deadLettered: 0 };
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: NotifierOptions,
  ) {}

  async start(): Promise<void> {
    const { names, maxInFlight, ackWaitMs } = this.options;
    const jsm = await jetstreamManager(this.nc);
    // Idempotent: adding a durable with the same config returns the existing one.
    await jsm.consumers.add(names.notificationsStream, {
      durable_name: NOTIFIER_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: `${names.notificationsPrefix}.>`,
      ack_wait: nanos(ackWaitMs),
      max_ack_pending: Math.max(maxInFlight * 4, 256),
      max_deliver: -1,
    });
    const consumer = await jetstream(this.nc).consumers.get(
      names.notificationsStream,
      NOTIFIER_CONSUMER,
    );
    this.#messages = await consumer.consume({ max_messages: maxInFlight });
    // Owned: consume() rides out server restarts itself; should the loop still fail, it is logged
    // here (not left to become an unhandled rejection) and close() still completes.
    this.#loop = this.#run(this.#messages).catch((err: unknown) => {
      this.options.log.error(
        { code: errorCode(err), err: describeError(err) },
        'notifier consume loop failed',
      );
    });
    this.options.log.info({ sink: this.options.sink.name }, 'notifier started');
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      while (this.#inFlight.size >= this.options.maxInFlight) await Promise.race(this.#inFlight);
      const task = this.#handle(msg)
        .catch((err: unknown) => {
          // E.g. the dead-letter publish failed: leave the message unacked, the server
          // redelivers it after ack_wait; nothing is lost.
          this.options.log.warn(
            { code: errorCode(err), err: describeError(err), seq: msg.seq },
            'summary handling failed, will be redelivered',
          );
          msg.nak(backoffDelay(msg.info.deliveryCount, REDELIVERY));
        })
        .finally(() => this.#inFlight.delete(task));
      this.#inFlight.add(task);
    }
  }

  async #handle(msg: JsMsg): Promise<void> {
    const { log, sink } = this.options;
    let summary: SummaryNotification;
    try {
      summary = SummarySchema.parse(msg.json());
    } catch (err) {
      await this.#deadLetter(msg, 'INVALID_NOTIFICATION', describeError(err), undefined);
      return;
    }
    try {
      const result = await sink.deliver(summary);
      switch (result.kind) {
        case 'delivered':
          msg.ack();
          this.stats.delivered++;
          log.debug({ summaryId: summary.summaryId }, 'summary delivered');
          return;
        case 'retry': {
          // Exponential backoff by delivery count, capped; the server redelivers after the delay.
          const delay = backoffDelay(msg.info.deliveryCount, REDELIVERY);
          this.stats.retried++;
          log.warn(
            {
              summaryId: summary.summaryId,
              attempt: msg.info.deliveryCount,
              delayMs: delay,
              reason: result.reason,
            },
            'summary delivery failed, will retry',
          );
          msg.nak(delay);
          return;
        }
        case 'rejected':
          log.warn(
            { summaryId: summary.summaryId, status: result.status },
            'summary rejected by sink',
          );
          await this.#deadLetter(msg, 'DELIVERY_REJECTED', result.reason, result.status);
          return;
      }
    } catch (err) {
      // An unexpected sink failure (e.g. disk full for the file sink): retry later.
      log.error(
        { summaryId: summary.summaryId, err: describeError(err) },
        'summary delivery error',
      );
      msg.nak(5000);
    }
  }

  async #deadLetter(
    msg: JsMsg,
    reason: string,
    detail: string,
    status: number | undefined,
  ): Promise<void> {
    const h = headers();
    h.set(DeadLetterHeader.Reason, reason);
    h.set(DeadLetterHeader.Detail, detail.replace(/[\r\n]+/gu, ' ').slice(0, 512));
    h.set(DeadLetterHeader.SourceStream, msg.info.stream);
    h.set(DeadLetterHeader.SourceSubject, msg.subject);
    h.set(DeadLetterHeader.SourceSeq, String(msg.seq));
    if (status !== undefined) h.set('Order-Fleet-Response-Status', String(status));
    await jetstream(this.nc).publish(this.options.names.deadLetterNotifications, msg.data, {
      headers: h,
      msgID: `dlq-${msg.info.stream}-${msg.seq}`,
      expect: { streamName: this.options.names.deadLetterStream },
    });
    this.stats.deadLettered++;
    // Only after the dead letter is stored: it is never lost.
    msg.ack();
  }

  /** Stops taking messages, waits for deliveries under way. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#messages?.close();
      await this.#loop;
      await Promise.allSettled([...this.#inFlight]);
      this.options.log.info({ ...this.stats }, 'notifier stopped');
    })();
    return this.#closing;
  }
}

import {
  AckPolicy,
  DeliverPolicy,
  ReplayPolicy,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { partitionConsumerName } from '../contract/internal-names.js';
import type { ResourceNames } from '../contract/names.js';
import { partitionFilter } from '../contract/subjects.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { isConsumerNotFound } from '../nats/errors.js';

/** Messages asked for per pull. */
export const PULL_BATCH = 1000;
/**
 * How long a pull waits; the server sends idle heartbeats every half of it, and the client
 * reports them missed after two. Shorter than nats.js's 30 s so a stalled consumer is noticed in
 * seconds rather than a minute.
 */
const PULL_EXPIRES_MS = 10_000;
/** Missed-heartbeat reports in a row after which the consumer counts as stalled. */
const STALLED_AFTER_MISSED = 2;

export interface PartitionConsumerDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: ResourceNames;
  readonly partition: number;
  /** Entries per checkpoint and the checkpoint interval: they size the ack window. */
  readonly checkpointEveryEvents: number;
  readonly checkpointIntervalMs: number;
  readonly log: Logger;
}

/**
 * The partition's durable pull consumer, as its runner uses it: recreated at the runner's start
 * from the watermark (deleting it also fences the previous runner's delivery), delivering through
 * a callback that only queues, and reporting its deletion by another runner.
 */
export class PartitionConsumer {
  readonly #deps: PartitionConsumerDeps;
  readonly #name: string;
  #messages: ConsumerMessages | undefined;
  /** Status watch of the consumer; owned here, awaited by close(). */
  #watching: Promise<void> = Promise.resolve();

  constructor(deps: PartitionConsumerDeps) {
    this.#deps = deps;
    this.#name = partitionConsumerName(deps.partition);
  }

  /**
   * Deletes and recreates the consumer at `startSeq`, then starts delivery to `onMessage`.
   * `onDeleted` is called if the consumer is deleted later (another runner took over);
   * `onStalled` if it stops delivering while the connection is up: its server-side group can be
   * left without a leader after node failures (a 2.10 server was seen answering "JetStream system
   * temporarily unavailable" for minutes), and recreating it is the way out. Returns how many
   * entries were waiting in the log when the consumer was created.
   */
  async open(
    startSeq: number,
    onMessage: (msg: JsMsg) => void,
    events: { readonly onDeleted: () => void; readonly onStalled: (why: string) => void },
  ): Promise<number> {
    const { jsm, js, names, partition, checkpointEveryEvents, checkpointIntervalMs } = this.#deps;
    try {
      await jsm.consumers.delete(names.ordersStream, this.#name);
    } catch (err) {
      if (!isConsumerNotFound(err)) throw err;
    }
    const created = await jsm.consumers.add(names.ordersStream, {
      durable_name: this.#name,
      filter_subject: partitionFilter(names, partition),
      ack_policy: AckPolicy.All,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: startSeq,
      replay_policy: ReplayPolicy.Instant,
      // Acks only come after a checkpoint, so room for two checkpoints' worth of entries plus a
      // pull batch keeps delivery flowing, and ack_wait far above the checkpoint interval means
      // nothing is redelivered while a healthy runner holds it.
      max_ack_pending: 2 * checkpointEveryEvents + 2 * PULL_BATCH,
      ack_wait: nanos(Math.max(60_000, 20 * checkpointIntervalMs)),
      max_deliver: -1,
    });
    const consumer = await js.consumers.get(names.ordersStream, this.#name);
    const messages = await consumer.consume({
      max_messages: PULL_BATCH,
      expires: PULL_EXPIRES_MS,
      // The callback only queues; the runner's loop does the async work in order.
      callback: onMessage,
    });
    this.#messages = messages;
    this.#watching = this.#watch(messages, events).catch((err: unknown) => {
      // The status iterator only ends with the consumer; a failure here is logged, not fatal.
      this.#deps.log.warn({ err: describeError(err) }, 'consumer status watch failed');
    });
    return created.num_pending;
  }

  /** Stops delivery at once; messages already delivered stay with the runner. */
  stop(): void {
    this.#messages?.stop();
  }

  /** Releases the subscription and waits for the status watch. Idempotent. */
  async close(): Promise<void> {
    try {
      await this.#messages?.close();
    } finally {
      await this.#watching;
    }
  }

  async #watch(
    messages: ConsumerMessages,
    events: { readonly onDeleted: () => void; readonly onStalled: (why: string) => void },
  ): Promise<void> {
    for await (const status of messages.status()) {
      if (status.type === 'consumer_deleted') events.onDeleted();
      else if (status.type === 'consumer_not_found') events.onStalled('consumer not found');
      else if (status.type === 'heartbeats_missed') {
        this.#deps.log.warn({ count: status.count }, 'partition consumer missed heartbeats');
        if (status.count >= STALLED_AFTER_MISSED)
          events.onStalled(`${status.count} heartbeats missed`);
      }
    }
  }
}

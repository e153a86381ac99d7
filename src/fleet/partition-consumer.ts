import {
  AckPolicy,
  DeliverPolicy,
  ReplayPolicy,
  type Consumer,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { setTimeout as sleep } from 'node:timers/promises';
import { nanos } from '@nats-io/transport-node';
import { partitionConsumerName } from '../contract/internal-names.js';
import type { ResourceNames } from '../contract/names.js';
import { partitionFilter } from '../contract/subjects.js';
import { describeError, ErrorCode, OrderFleetError } from '../errors.js';
import { auditDelivery, consumerUnreadable, type DeliverySample } from './delivery-audit.js';
import type { Logger } from '../logging/logger.js';
import { isConsumerNotFound } from '../nats/errors.js';
import type { PreparedConsumer } from '../state/watermark-store.js';

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
/**
 * How often the consumer's position is compared with what arrived (see delivery-audit.ts). One
 * consumer info per partition per interval: rare enough that filtered consumers' pending counts
 * (computed by the server on every info) cost nothing noticeable.
 */
const AUDIT_INTERVAL_MS = 15_000;

export interface PartitionConsumerDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: ResourceNames;
  readonly partition: number;
  /** Entries per checkpoint and the checkpoint interval: they size the ack window. */
  readonly checkpointEveryEvents: number;
  readonly checkpointIntervalMs: number;
  /**
   * Runs the consumer's (re)creation; the worker passes one limiter shared by its partitions.
   * The server creates a stream's consumers one at a time, each in time that grows with the
   * stream's subjects (about 0.7 s each over a million customers' subjects), so 32 sent at once
   * queued past the API timeout and were retried on top of the queue. Sent a few at a time,
   * each request's timeout measures its own creation.
   */
  readonly setup?: <T>(create: () => Promise<T>) => Promise<T>;
  /**
   * Asked when a set-up's turn comes (it may have waited behind other partitions): false when
   * the lease was lost meanwhile, so the consumer, perhaps already the new owner's, is left alone.
   */
  readonly stillOwner?: () => boolean;
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
  /** Delivery audit loop; owned here, stopped by stop() and awaited by close(). */
  #auditing: Promise<void> = Promise.resolve();
  readonly #auditStop = new AbortController();
  /** Highest delivery sequence handed to the callback. */
  #received = 0;
  #closing: Promise<void> | undefined;

  constructor(deps: PartitionConsumerDeps) {
    this.#deps = deps;
    this.#name = partitionConsumerName(deps.partition);
  }

  /**
   * Deletes and recreates the consumer at `startSeq`, then starts delivery to `onMessage`; or,
   * given `prepared`, binds the consumer the previous owner left at `startSeq` for us (see
   * {@link prepareNext}) without a request.
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
    prepared?: PreparedConsumer,
  ): Promise<number> {
    const { pending, consumer } =
      prepared === undefined
        ? await this.#setUp(startSeq)
        : { pending: prepared.pending, consumer: this.#bind(prepared) };
    const messages = await consumer.consume({
      max_messages: PULL_BATCH,
      expires: PULL_EXPIRES_MS,
      // The callback only queues; the runner's loop does the async work in order.
      callback: (msg) => {
        const delivery = msg.info.deliverySequence;
        if (delivery > this.#received) this.#received = delivery;
        onMessage(msg);
      },
    });
    this.#messages = messages;
    this.#watching = this.#watch(messages, events).catch((err: unknown) => {
      // The status iterator only ends with the consumer; a failure here is logged, not fatal.
      this.#deps.log.warn({ err: describeError(err) }, 'consumer status watch failed');
    });
    this.#auditing = this.#audit(events.onStalled).catch((err: unknown) => {
      this.#deps.log.warn({ err: describeError(err) }, 'consumer delivery audit failed');
    });
    return pending;
  }

  /**
   * For the next owner, after this runner's delivery has ended: replaces the consumer with a
   * fresh one at `startSeq` (the entry after the final watermark) and returns how many entries
   * wait in it. The leaver does this alongside its final checkpoint's writes, so the next owner,
   * reading a clean watermark that names it, binds it at once instead of creating one on its own
   * start (a creation costs time that grows with the stream's subjects: most of a handoff).
   * Nothing can have been delivered from it: this runner's pulls went to the consumer it just
   * deleted, and nobody else pulls from a partition's consumer without its lease.
   */
  async prepareNext(
    startSeq: number,
    /**
     * True once the caller no longer waits for a set-up that has not started: one queued behind
     * other partitions' would only delay the leaver's release (and once it is sent, it must be
     * awaited, or it could replace the next owner's own consumer).
     */
    abandoned: () => boolean,
  ): Promise<number> {
    await this.close();
    return (await this.#setUp(startSeq, abandoned)).pending;
  }

  #setUp(
    startSeq: number,
    abandoned: () => boolean = () => false,
  ): Promise<{ pending: number; consumer: Consumer }> {
    const { partition, setup = (create) => create(), stillOwner } = this.#deps;
    return setup(() => {
      if (abandoned())
        throw new OrderFleetError(
          ErrorCode.Aborted,
          `partition ${partition}: the next owner's consumer was not prepared in time`,
        );
      if (stillOwner?.() === false)
        throw new OrderFleetError(
          ErrorCode.Fenced,
          `partition ${partition}: lease lost before its consumer was created`,
        );
      return this.#recreate(startSeq);
    });
  }

  async #recreate(startSeq: number): Promise<{ pending: number; consumer: Consumer }> {
    const { jsm, js, names } = this.#deps;
    try {
      await jsm.consumers.delete(names.ordersStream, this.#name);
    } catch (err) {
      if (!isConsumerNotFound(err)) throw err;
    }
    const created = await jsm.consumers.add(names.ordersStream, this.#config(startSeq));
    // Built from the creation's answer: `consumers.get` would ask for the info again, which on a
    // 2.9 server costs as much as the creation (it counts the filter's matches over every
    // subject): half of a handoff's consumer set-up, measured.
    const consumer = js.consumers.getConsumerFromInfo(created);
    return { pending: created.num_pending, consumer };
  }

  /**
   * The prepared consumer, built from what we know of it: nats.js only uses the names to pull.
   * If it is not there after all, the pulls find no consumer and the status watch reports the
   * runner stalled, which recreates it from the watermark.
   */
  #bind(prepared: PreparedConsumer): Consumer {
    const { js, names } = this.#deps;
    const none = { consumer_seq: 0, stream_seq: 0, last_active: 0 };
    return js.consumers.getConsumerFromInfo({
      stream_name: names.ordersStream,
      name: this.#name,
      created: new Date(0).toISOString(),
      config: this.#config(prepared.startSeq),
      delivered: none,
      ack_floor: none,
      num_ack_pending: 0,
      num_redelivered: 0,
      num_waiting: 0,
      num_pending: prepared.pending,
      push_bound: false,
      pause_remaining: 0,
    });
  }

  #config(startSeq: number): ConsumerConfig {
    const { names, partition, checkpointEveryEvents, checkpointIntervalMs } = this.#deps;
    return {
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
    };
  }

  /** Stops delivery at once; messages already delivered stay with the runner. */
  stop(): void {
    this.#auditStop.abort();
    this.#messages?.stop();
  }

  /** Releases the subscription and waits for the status watch and the audit. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#auditStop.abort();
      try {
        await this.#messages?.close();
      } finally {
        await this.#watching;
        await this.#auditing;
      }
    })();
    return this.#closing;
  }

  /**
   * Every interval, the consumer's deliveries against what arrived: deliveries lost in flight,
   * or a consumer that cannot be read for a minute, are reported stalled, and the runner starts
   * over from its watermark. A sample that cannot be taken (NATS unavailable) just starts the comparison over.
   */
  async #audit(onStalled: (why: string) => void): Promise<void> {
    const { jsm, names, partition } = this.#deps;
    const signal = this.#auditStop.signal;
    let previous: DeliverySample | undefined;
    let failedInARow = 0;
    while (!signal.aborted) {
      try {
        await sleep(AUDIT_INTERVAL_MS, undefined, { signal });
      } catch (err) {
        if (signal.aborted) return; // stopped
        throw err;
      }
      const verdict = auditDelivery(previous, this.#received);
      if (verdict.kind === 'behind') {
        this.#deps.log.warn(
          { partition, delivered: verdict.delivered, received: verdict.received },
          'partition consumer deliveries lost in flight',
        );
        onStalled(
          `consumer made ${verdict.delivered} deliveries, received only up to ${verdict.received}`,
        );
        return;
      }
      try {
        const info = await jsm.consumers.info(names.ordersStream, this.#name);
        previous = { delivered: info.delivered.consumer_seq };
        failedInARow = 0;
      } catch (err) {
        // Usually transient (a leader election, a node down): the next sample starts a new
        // comparison. Failing for a minute in a row is a broken consumer, not an election.
        previous = undefined;
        failedInARow++;
        this.#deps.log.debug(
          { err: describeError(err), failedInARow },
          'consumer delivery audit sample failed',
        );
        if (consumerUnreadable(failedInARow)) {
          this.#deps.log.warn(
            { partition, failedInARow, err: describeError(err) },
            'partition consumer unreadable, recreating it',
          );
          onStalled(`consumer info failed ${failedInARow} times in a row`);
          return;
        }
      }
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

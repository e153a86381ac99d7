import { unsequencedError } from '../nats/pub-ack.js';
import { randomUUID } from 'node:crypto';
import { JetStreamApiError } from '@nats-io/jetstream';
import { JetStreamWriter, publishHeaders } from '../nats/js-writer.js';
import {
  ClosedConnectionError,
  DrainingConnectionError,
  type NatsConnection,
} from '@nats-io/transport-node';
import { LRUCache } from 'lru-cache';
import { assertCustomerId } from '../contract/customer-id.js';
import { encodeEvent, type EventLimits, type OrderEvent } from '../contract/event.js';
import type { ResourceNames } from '../contract/names.js';
import { eventSubject } from '../contract/subjects.js';
import { ErrorCode, OrderFleetError, describeError } from '../errors.js';
import { retry } from '../lifecycle/retry.js';
import type { Logger } from '../logging/logger.js';
import { loadDeployment } from '../nats/deployment.js';
import { isPermissionViolation, isStreamNotFound } from '../nats/errors.js';

/** An event to publish; `id` defaults to a random UUID (pass your own to make re-sends safe). */
export type OrderEventInput = OrderEvent extends infer T
  ? T extends OrderEvent
    ? Omit<T, 'id'> & { readonly id?: string }
    : never
  : never;

export interface PublishResult {
  readonly customerId: string;
  readonly subject: string;
  readonly id: string;
  /** Stream sequence of the stored event (the original one when this was a duplicate). */
  readonly seq: number;
  /** True when JetStream had already stored an event with this id (inside its duplicate window). */
  readonly duplicate: boolean;
  /** How many publish attempts it took (1 when nothing went wrong). */
  readonly attempts: number;
}

export interface OrderPublisherOptions {
  readonly names: ResourceNames;
  /** The deployment's partition count (read it with {@link OrderPublisher.connect}). */
  readonly partitions: number;
  readonly limits: EventLimits;
  /** Publishes awaiting their ack at once; more calls wait their turn. */
  readonly maxInFlight: number;
  /** Attempts per event before giving up with PUBLISH_FAILED (each retry reuses the event id). */
  readonly maxAttempts: number;
  /** How long one attempt waits for JetStream's ack. */
  readonly timeoutMs: number;
  readonly log?: Logger;
}

const BACKOFF_BASE_MS = 50;
const BACKOFF_MAX_MS = 2000;

/**
 * Typed client for the subject contract: validates, computes the partition, sets `Nats-Msg-Id`,
 * pipelines up to `maxInFlight` publishes, and retries a failed publish with the same id so that,
 * thanks to JetStream's duplicate window, a retried event is stored exactly once — across
 * disconnects and server restarts alike.
 */
export class OrderPublisher {
  /** Pipelined acks (see js-writer.ts): no nats.js request, timer and Error per event. */
  readonly #writer: JetStreamWriter;
  readonly #options: OrderPublisherOptions;
  // In-flight bound: a counter and a FIFO of waiters. This is the hot path of every publish, and a
  // general-purpose limiter (p-limit) cost more per call than the JetStream publish itself here.
  #active = 0;
  // FIFO of callers waiting for a slot; a head index instead of shift(), which is O(n) and made
  // a burst of 100k publish calls quadratic.
  #waiting: (() => void)[] = [];
  #waitingHead = 0;
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Validated customer id → subject: ids repeat, and validation + hashing is per-id work. */
  readonly #subjects = new LRUCache<string, string>({ max: 100_000 });
  #closed = false;

  constructor(nc: NatsConnection, options: OrderPublisherOptions) {
    this.#writer = new JetStreamWriter(nc, {
      timeoutMs: options.timeoutMs,
      maxInFlight: options.maxInFlight,
    });
    this.#options = options;
  }

  /** Builds a publisher for a provisioned deployment, reading the partition count from it. */
  static async connect(
    nc: NatsConnection,
    options: Omit<OrderPublisherOptions, 'partitions'>,
  ): Promise<OrderPublisher> {
    const deployment = await loadDeployment(nc, options.names);
    return new OrderPublisher(nc, { ...options, partitions: deployment.partitions });
  }

  get partitions(): number {
    return this.#options.partitions;
  }

  /**
   * Publishes one event. Rejects with a ValidationError (nothing is published) for a bad
   * customer id or payload, and with PUBLISH_FAILED when every attempt failed.
   */
  async publish(customerId: string, input: OrderEventInput): Promise<PublishResult> {
    if (this.#closed)
      throw new OrderFleetError(ErrorCode.PublisherClosed, 'the publisher is closed');
    // Validate before queueing: bad input fails fast and never reaches the stream.
    const subject = this.#subjectOf(customerId);
    // The caller's object as it is when it has its id (no copy per event).
    const { event, data } = encodeEvent(
      input.id === undefined ? { ...input, id: randomUUID() } : input,
      this.#options.limits,
    );
    if (this.#active >= this.#options.maxInFlight) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#active++;
    try {
      return await this.#publishWithRetry(customerId, subject, event.id, data);
    } finally {
      this.#active--;
      const next = this.#nextWaiting();
      if (next !== undefined) next();
      else if (this.#active === 0) this.#idle?.resolve();
    }
  }

  #nextWaiting(): (() => void) | undefined {
    if (this.#waitingHead >= this.#waiting.length) return undefined;
    const next = this.#waiting[this.#waitingHead++];
    if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
    return next;
  }

  #subjectOf(customerId: string): string {
    let subject = this.#subjects.get(customerId);
    if (subject === undefined) {
      assertCustomerId(customerId);
      subject = eventSubject(this.#options.names, this.#options.partitions, customerId);
      this.#subjects.set(customerId, subject);
    }
    return subject;
  }

  /** Waits for every publish under way. Safe to call more than once. */
  async flush(): Promise<void> {
    while (this.#active > 0 || this.#waitingHead < this.#waiting.length) {
      if (this.#idle === undefined) {
        let resolve: () => void = () => undefined;
        const promise = new Promise<void>((r) => (resolve = r));
        this.#idle = { promise, resolve };
      }
      await this.#idle.promise;
      this.#idle = undefined;
    }
  }

  /** Refuses new publishes and waits for those under way. Idempotent; the connection is the caller's. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    this.#writer.close(); // its reply subscription; the connection stays the caller's
  }

  async #publishWithRetry(
    customerId: string,
    subject: string,
    id: string,
    data: Uint8Array,
  ): Promise<PublishResult> {
    // Same id on every attempt: if an earlier attempt was stored and only its ack was lost,
    // JetStream answers this one as a duplicate instead of storing it twice.
    const h = publishHeaders({ msgID: id, expectStream: this.#options.names.ordersStream });
    // The first attempt is made here, outside the retrier: it is the one that nearly always
    // succeeds, and the retrier's closures and frames were a measurable share of the SDK's own
    // cost per event. A failure worth retrying continues in the one retrier, as attempt 2.
    let first: unknown;
    try {
      const ack = await this.#writer.publish(subject, data, h);
      if (ack.seq > 0)
        return { customerId, subject, id, seq: ack.seq, duplicate: ack.duplicate, attempts: 1 };
      first = unsequencedError(ack, `event ${id}`);
    } catch (err) {
      first = err;
    }
    const { maxAttempts } = this.#options;
    if (maxAttempts <= 1 || !isRetryable(first)) throw this.#failed(subject, id, first);
    this.#options.log?.warn(
      { subject, id, attempt: 1, err: describeError(first) },
      'publish retry',
    );
    let attempts = 1;
    try {
      const ack = await retry(
        async (attempt) => {
          attempts = attempt;
          const sent = await this.#writer.publish(subject, data, h);
          return sent.seq > 0 ? sent : Promise.reject(unsequencedError(sent, `event ${id}`));
        },
        {
          maxAttempts,
          failedAttempts: 1,
          initialMs: BACKOFF_BASE_MS,
          maxMs: BACKOFF_MAX_MS,
          jitter: 0.5,
          shouldRetry: isRetryable,
          onRetry: (err, attempt, delayMs) =>
            this.#options.log?.warn(
              { subject, id, attempt, delayMs, err: describeError(err) },
              'publish retry',
            ),
        },
      );
      return { customerId, subject, id, seq: ack.seq, duplicate: ack.duplicate, attempts };
    } catch (err) {
      throw this.#failed(subject, id, err);
    }
  }

  #failed(subject: string, id: string, cause: unknown): OrderFleetError {
    return new OrderFleetError(
      ErrorCode.PublishFailed,
      `publishing event ${id} to ${subject} failed: ${describeError(cause)}`,
      { cause, details: { subject, id } },
    );
  }
}

/**
 * Transient failures (timeouts, no responders while a server restarts, a stream that is still
 * recovering) are retried. Server rejections such as "message too large", a permission
 * violation (credentials of another role) and a closed connection are not: retrying cannot help.
 */
function isRetryable(err: unknown): boolean {
  if (err instanceof ClosedConnectionError || err instanceof DrainingConnectionError) return false;
  if (isPermissionViolation(err)) return false;
  if (err instanceof JetStreamApiError) return isStreamNotFound(err) || err.status === 503;
  return true;
}

import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { querySubject } from '../contract/internal-names.js';
import type { ResourceNames } from '../contract/names.js';
import { describeError, ErrorCode, isOrderFleetError, OrderFleetError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { CustomerSnapshot } from '../state/customer-store.js';
import { answerQuery, type ContentsAnswer } from './queries.js';

export interface QueryResponderDeps<S> {
  readonly nc: NatsConnection;
  readonly names: ResourceNames;
  readonly partition: number;
  readonly workerId: string;
  /** False once the runner's lease may have passed on: then it stays silent. */
  readonly canWrite: () => boolean;
  /** True once the runner has applied everything that was in the log at its start. */
  readonly caughtUp: () => boolean;
  /** The customer's current snapshot: from memory, or from KV when not resident. */
  readonly lookup: (customerId: string) => Promise<CustomerSnapshot<S>>;
  readonly render: (snapshot: CustomerSnapshot<S>) => ContentsAnswer;
  readonly log: Logger;
}

/**
 * Answers `contents` questions on the partition's query subject, for as long as its runner holds
 * the partition. A runner that may have lost its lease does not answer, so the real owner (or the
 * KV fallback of the asking side, marked stale) does.
 */
export class QueryResponder<S> {
  readonly #deps: QueryResponderDeps<S>;
  #sub: Subscription | undefined;

  constructor(deps: QueryResponderDeps<S>) {
    this.#deps = deps;
  }

  start(): void {
    const { nc, names, partition, log } = this.#deps;
    this.#sub = nc.subscribe(querySubject(names, partition), {
      callback: (err, msg) => {
        if (err !== null) {
          log.warn({ err: describeError(err) }, 'query subscription error');
          return;
        }
        this.#answer(msg).catch((answerErr: unknown) => {
          log.warn({ err: describeError(answerErr) }, 'query answer failed');
        });
      },
    });
  }

  /** Idempotent. */
  stop(): void {
    const sub = this.#sub;
    this.#sub = undefined;
    sub?.unsubscribe();
  }

  async #answer(msg: Msg): Promise<void> {
    const { canWrite, caughtUp, lookup, render, workerId, partition, log } = this.#deps;
    if (!canWrite()) return;
    try {
      const customerId = (msg.json<{ customerId?: unknown }>().customerId ?? '') as unknown;
      if (typeof customerId !== 'string')
        throw new OrderFleetError(ErrorCode.QueryFailed, 'customerId must be a string');
      msg.respond(
        JSON.stringify(
          answerQuery(render(await lookup(customerId)), workerId, partition, caughtUp()),
        ),
      );
    } catch (err) {
      log.warn({ err: describeError(err) }, 'query failed');
      msg.respond(
        JSON.stringify({
          error: {
            code: isOrderFleetError(err) ? err.code : ErrorCode.QueryFailed,
            message: describeError(err),
          },
        }),
      );
    }
  }
}

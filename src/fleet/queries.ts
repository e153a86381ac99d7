import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { assertCustomerId } from '../contract/customer-id.js';
import type { ResourceNames } from '../contract/names.js';
import { partitionOf } from '../contract/partition.js';
import { describeError, ErrorCode, OrderFleetError } from '../errors.js';
import { isNoResponders, isTimeout } from '../nats/errors.js';
import type { CustomerStore } from '../state/customer-store.js';
import { querySubject } from '../contract/internal-names.js';

/** What a `contents` question returns. */
export interface ContentsAnswer {
  readonly customerId: string;
  readonly items: readonly number[];
  readonly lastSeq: number;
}

export interface ContentsReply extends ContentsAnswer {
  /**
   * False when the partition's runner answered with everything in the log applied; true when read
   * from KV while nobody owns it, or answered by an owner still replaying its backlog (a new
   * owner after a crash, which has not yet re-applied what the old one had not checkpointed).
   */
  readonly stale: boolean;
  readonly partition: number;
  /** The worker that answered, when a runner did. */
  readonly owner?: string;
}

export function answerQuery(
  answer: ContentsAnswer,
  owner: string,
  partition: number,
  caughtUp: boolean,
): ContentsReply {
  return { ...answer, stale: !caughtUp, partition, owner };
}

const ReplySchema = z.union([
  z.object({
    customerId: z.string(),
    items: z.array(z.number()),
    lastSeq: z.number(),
    stale: z.boolean(),
    partition: z.number(),
    owner: z.string().optional(),
  }),
  z.object({ error: z.object({ code: z.string(), message: z.string() }) }),
]);

export interface AskOptions<S> {
  readonly names: ResourceNames;
  readonly partitions: number;
  readonly timeoutMs: number;
  readonly store: CustomerStore<S>;
  readonly render: (snapshot: { customerId: string; lastSeq: number; state: S }) => ContentsAnswer;
}

/**
 * Asks a customer's contents like the original `Order.contents("John")`: a request on the
 * customer's partition subject, which only that partition's runner subscribes to, so NATS routes
 * the question to the owner with no registry of our own. When nobody answers in time (the
 * partition is moving, or no worker runs) the answer comes from KV, marked stale.
 */
export async function askContents<S>(
  nc: NatsConnection,
  customerId: string,
  opts: AskOptions<S>,
): Promise<ContentsReply> {
  assertCustomerId(customerId);
  const partition = partitionOf(customerId, opts.partitions);
  try {
    const msg = await nc.request(
      querySubject(opts.names, partition),
      JSON.stringify({ customerId }),
      { timeout: opts.timeoutMs },
    );
    const reply = ReplySchema.parse(msg.json());
    if ('error' in reply) {
      throw new OrderFleetError(
        ErrorCode.QueryFailed,
        `the owner could not answer: ${reply.error.message}`,
        { details: { code: reply.error.code } },
      );
    }
    const { owner, ...rest } = reply;
    return owner === undefined ? rest : { ...rest, owner };
  } catch (err) {
    if (!isNoResponders(err) && !isTimeout(err)) {
      if (err instanceof OrderFleetError) throw err;
      throw new OrderFleetError(
        ErrorCode.QueryFailed,
        `asking contents of ${customerId} failed: ${describeError(err)}`,
        { cause: err },
      );
    }
  }
  const { snapshot } = await opts.store.load(partition, customerId);
  return { ...opts.render(snapshot), stale: true, partition };
}

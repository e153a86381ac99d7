import {
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type OrderedConsumerOptions,
} from '@nats-io/jetstream';
import { isMessageNotFound } from './errors.js';

export interface OrderedReadOptions {
  /** One subject filter (NATS 2.9 takes one per consumer); the whole stream when absent. */
  readonly filter?: string;
  readonly startSeq?: number;
  /** ISO time: start at the first message stored at or after it. */
  readonly startTime?: string;
  /** Only headers (the body's size is in `Nats-Msg-Size`): for listings. */
  readonly headersOnly?: boolean;
}

/**
 * Reads a range of a stream in order through an ordered consumer (ephemeral, ack-none, recreated
 * by the client on a gap), from the start options up to the last message that matched when the
 * read began. Cheap for the server: no durable state, no acks, and nothing left behind.
 */
export async function* readOrdered(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  opts: OrderedReadOptions = {},
): AsyncGenerator<JsMsg> {
  const last = await lastSeqOf(jsm, stream, opts.filter);
  if (last === 0 || (opts.startSeq !== undefined && opts.startSeq > last)) return;
  const consumerOpts: Partial<OrderedConsumerOptions> = {
    ...(opts.filter === undefined ? {} : { filter_subjects: opts.filter }),
    ...(opts.headersOnly === true ? { headers_only: true } : {}),
    ...(opts.startSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.startSeq }
      : opts.startTime !== undefined
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.startTime }
        : { deliver_policy: DeliverPolicy.All }),
  };
  const consumer = await js.consumers.get(stream, consumerOpts);
  const messages = await consumer.consume({ max_messages: 1000 });
  try {
    for await (const m of messages) {
      yield m;
      // `pending` counts what is left for this filter; `last` guards against a stream that
      // keeps growing while we read (we stop where it stood when we began).
      if (m.seq >= last || m.info.pending === 0) break;
    }
  } finally {
    await messages.close();
  }
}

/** The last sequence matching `filter` (or the stream's last), 0 when nothing matches. */
async function lastSeqOf(
  jsm: JetStreamManager,
  stream: string,
  filter: string | undefined,
): Promise<number> {
  if (filter === undefined) {
    const info = await jsm.streams.info(stream);
    return info.state.messages === 0 ? 0 : info.state.last_seq;
  }
  try {
    const msg = await jsm.streams.getMessage(stream, { last_by_subj: filter });
    return msg?.seq ?? 0;
  } catch (err) {
    if (isMessageNotFound(err)) return 0;
    throw err;
  }
}

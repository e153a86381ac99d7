// Reads a whole stream through an ordered consumer (ephemeral, recreates itself on gaps), for the
// final checks. Only used after the fleet settled, when nothing is being written.

import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

export interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  readonly timeMs: number;
  readonly msgId: string | undefined;
  readonly data: string;
}

export async function readStream(nc: NatsConnection, stream: string): Promise<StoredMessage[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  const last = info.state.last_seq;
  if (info.state.messages === 0) return [];
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume();
  const out: StoredMessage[] = [];
  try {
    for await (const m of messages) {
      out.push({
        seq: m.seq,
        subject: m.subject,
        timeMs: Math.floor(m.info.timestampNanos / 1e6),
        msgId: m.headers?.get('Nats-Msg-Id') || undefined,
        data: m.string(),
      });
      if (m.seq >= last || m.info.pending === 0) break;
    }
  } finally {
    await messages.close();
  }
  return out;
}

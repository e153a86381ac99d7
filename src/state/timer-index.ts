import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import type { PendingTimer } from '../orders/aggregator.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { customerIdFromTimerKey, timerKey, timerKeyFilter } from './keys.js';
import type { KvWrites } from '../nats/js-writer.js';

const encoder = new TextEncoder();

const StoredTimer = z.object({
  dueAtMs: z.number(),
  id: z.string(),
  series: z.string().optional(),
  entry: z.unknown(),
});

/**
 * Open timers per partition, in the state bucket under `t.<p>.<customer>`. It lets a new owner
 * find every open window of its partitions — including customers that are not in anybody's
 * memory — by reading one small entry each, without loading every customer's state. Entries are
 * written at checkpoints (before the watermark) and deleted when the window closes.
 */
export class TimerIndex<E> {
  /** Where writes go: the bucket itself, or the worker's pipelined writer (js-writer.ts). */
  private readonly writes: KvWrites;

  constructor(
    private readonly kv: KV,
    private readonly decodeEntry: (raw: unknown) => E,
    private readonly log: Logger,
    writes?: KvWrites,
  ) {
    this.writes = writes ?? kv;
  }

  async load(partition: number): Promise<Map<string, PendingTimer<E>>> {
    const out = new Map<string, PendingTimer<E>>();
    // history() on a bucket with history 1 yields each key's current entry once, then ends.
    for await (const entry of await this.kv.history({ key: timerKeyFilter(partition) })) {
      const customerId = customerIdFromTimerKey(entry.key);
      if (customerId === undefined) continue;
      if (entry.operation !== 'PUT') {
        out.delete(customerId);
        continue;
      }
      // An entry this version cannot read (corrupt, or written by a newer version) is skipped,
      // never fatal: the customer's own state re-creates its timer when the customer is touched.
      try {
        const stored = StoredTimer.parse(entry.json());
        out.set(customerId, {
          dueAtMs: stored.dueAtMs,
          id: stored.id,
          series: stored.series ?? stored.id,
          entry: this.decodeEntry(stored.entry),
        });
      } catch (err) {
        this.log.warn(
          { partition, key: entry.key, err: describeError(err) },
          'unreadable timer index entry skipped',
        );
      }
    }
    return out;
  }

  async save(
    partition: number,
    customerId: string,
    timer: PendingTimer<E> | undefined,
  ): Promise<void> {
    const key = timerKey(partition, customerId);
    if (timer === undefined) await this.writes.delete(key);
    else await this.writes.put(key, encoder.encode(JSON.stringify(timer)));
  }
}

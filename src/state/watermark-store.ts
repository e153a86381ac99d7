import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { ErrorCode, OrderFleetError } from '../errors.js';
import { isWrongLastSequence } from '../nats/errors.js';
import { watermarkKey } from './keys.js';

/**
 * A partition's watermark: every entry of the partition with `seq <= seq` is reflected in the
 * state bucket. `epoch` goes up each time a runner takes the partition, which fences the previous
 * runner: its next conditional write of the watermark fails. `clean` records that the last runner
 * stopped gracefully, i.e. it applied nothing beyond `seq`.
 */
export const WatermarkSchema = z.object({
  seq: z.number().int().min(0),
  epoch: z.number().int().min(0),
  owner: z.string(),
  clean: z.boolean(),
  at: z.string(),
});
export type Watermark = z.infer<typeof WatermarkSchema>;

export interface StoredWatermark {
  readonly watermark: Watermark;
  readonly revision: number;
}

const INITIAL: Watermark = {
  seq: 0,
  epoch: 0,
  owner: '',
  clean: true,
  at: new Date(0).toISOString(),
};

export class WatermarkStore {
  constructor(private readonly kv: KV) {}

  async load(partition: number): Promise<StoredWatermark> {
    const entry = await this.kv.get(watermarkKey(partition));
    if (entry === null) return { watermark: INITIAL, revision: 0 };
    if (entry.operation !== 'PUT') return { watermark: INITIAL, revision: entry.revision };
    // Unreadable bytes stay unreadable on every retry: STATE_CORRUPT is terminal (parks the
    // partition) rather than a restart loop.
    let json: unknown;
    try {
      json = entry.json();
    } catch (err) {
      throw corrupt(partition, err);
    }
    const parsed = WatermarkSchema.safeParse(json);
    if (!parsed.success) throw corrupt(partition, parsed.error);
    return { watermark: parsed.data, revision: entry.revision };
  }

  /** Conditional write; WRITE_CONFLICT means another runner took the partition. */
  async save(partition: number, watermark: Watermark, revision: number): Promise<number> {
    const key = watermarkKey(partition);
    const data = JSON.stringify(watermark);
    try {
      return revision === 0
        ? await this.kv.create(key, data)
        : await this.kv.update(key, data, revision);
    } catch (err) {
      if (isWrongLastSequence(err)) {
        throw new OrderFleetError(
          ErrorCode.WriteConflict,
          `watermark of partition ${partition} was written by another runner`,
          {
            cause: err,
            details: { partition, revision },
          },
        );
      }
      throw err;
    }
  }
}

function corrupt(partition: number, cause: unknown): OrderFleetError {
  return new OrderFleetError(
    ErrorCode.StateCorrupt,
    `watermark of partition ${partition} is unreadable`,
    { cause, details: { partition } },
  );
}

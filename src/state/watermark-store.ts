import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { ErrorCode, OrderFleetError } from '../errors.js';
import { isWrongLastSequence } from '../nats/errors.js';
import { rebuildKey, supersededKey, supersededKeyFilter, watermarkKey } from './keys.js';

/**
 * A partition's watermark: every entry of the partition with `seq <= seq` is reflected in the
 * state bucket. `epoch` goes up each time a runner takes the partition, which fences the previous
 * runner: its next conditional write of the watermark fails. `clean` records that the last runner
 * stopped gracefully, i.e. it applied nothing beyond `seq`.
 */
/**
 * A consumer a clean leaver made for the next owner: it starts at `startSeq` (= the watermark's
 * `seq + 1`) and held `pending` entries when made (see PartitionConsumer.prepareNext).
 */
export const PreparedConsumerSchema = z.object({
  startSeq: z.number().int().min(1),
  pending: z.number().int().min(0),
});
export type PreparedConsumer = z.infer<typeof PreparedConsumerSchema>;

export const WatermarkSchema = z.object({
  seq: z.number().int().min(0),
  epoch: z.number().int().min(0),
  owner: z.string(),
  clean: z.boolean(),
  at: z.string(),
  /**
   * The last rebuild generation this partition completed (see {@link RebuildRequestSchema}):
   * written once a rebuilding runner has caught up, so a rebuild interrupted by a crash or a
   * handoff starts over from the beginning of the log instead of resuming on half-rebuilt state.
   */
  rebuild: z.number().int().min(0).default(0),
  /**
   * Written only with `clean`: the leaver replaced the partition's consumer with this one, for
   * the next owner to bind instead of creating its own. Workers that predate it drop the field
   * and recreate, as before.
   */
  preparedConsumer: PreparedConsumerSchema.optional(),
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
  rebuild: 0,
};

/** `order-fleet rebuild` asks for a partition to be recomputed from the start of the log. */
export const RebuildRequestSchema = z.object({
  generation: z.number().int().min(1),
  requestedAt: z.string(),
});
export type RebuildRequest = z.infer<typeof RebuildRequestSchema>;

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

  /** The rebuild generation requested for the partition (0: none ever). */
  async rebuildRequested(partition: number): Promise<number> {
    return (await this.loadRebuildRequest(partition)).request?.generation ?? 0;
  }

  async loadRebuildRequest(
    partition: number,
  ): Promise<{ request: RebuildRequest | undefined; revision: number }> {
    const entry = await this.kv.get(rebuildKey(partition));
    if (entry === null) return { request: undefined, revision: 0 };
    if (entry.operation !== 'PUT') return { request: undefined, revision: entry.revision };
    return { request: RebuildRequestSchema.parse(entry.json()), revision: entry.revision };
  }

  /** Conditional write of a rebuild request; WRITE_CONFLICT when another request came first. */
  async requestRebuild(
    partition: number,
    request: RebuildRequest,
    revision: number,
  ): Promise<void> {
    const key = rebuildKey(partition);
    try {
      if (revision === 0) await this.kv.create(key, JSON.stringify(request));
      else await this.kv.update(key, JSON.stringify(request), revision);
    } catch (err) {
      if (isWrongLastSequence(err)) {
        throw new OrderFleetError(
          ErrorCode.WriteConflict,
          `rebuild of partition ${partition} was requested by someone else meanwhile`,
          { cause: err, details: { partition } },
        );
      }
      throw err;
    }
  }

  /** Stream sequences of the partition's entries superseded by a redriven copy. */
  async superseded(partition: number): Promise<Set<number>> {
    const out = new Set<number>();
    // history() on a bucket with history 1 yields each key's current entry once, then ends.
    for await (const entry of await this.kv.history({ key: supersededKeyFilter(partition) })) {
      const seq = Number(entry.key.slice(entry.key.lastIndexOf('.') + 1));
      if (entry.operation === 'PUT') out.add(seq);
      else out.delete(seq);
    }
    return out;
  }

  async markSuperseded(
    partition: number,
    sourceSeq: number,
    by: { readonly deadLetterSeq: number },
  ): Promise<void> {
    await this.kv.put(supersededKey(partition, sourceSeq), JSON.stringify(by));
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

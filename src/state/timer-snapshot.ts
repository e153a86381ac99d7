import type { KV } from '@nats-io/kv';
import type { PendingTimer } from '../orders/aggregator.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { timerSnapshotKey } from './keys.js';

/**
 * Every open timer of a partition, written by a runner's final (clean) checkpoint in a few large
 * KV entries `ts.<p>.<chunk>`, so that the next owner after a graceful handoff reads its open
 * windows in one pass over a handful of entries instead of one timer-index entry per customer.
 *
 * A snapshot is only true at the watermark it was written with: it is tagged with that
 * watermark's `epoch` and `seq` and the runner writes it after the customers and the timer index
 * and before the clean watermark. A reader uses it only when the watermark it read is clean and
 * has the same epoch and seq, and every chunk of that tag is present and readable; anything else
 * (a crash, an older runner that writes no snapshot, a torn or corrupt write) falls back to the
 * per-customer timer index, which stays complete and is always written as before. So the snapshot
 * is an optimisation of the clean path only and can never make a reader miss a timer.
 */
export interface TimerSnapshotTag {
  readonly epoch: number;
  readonly seq: number;
}

/** Turns a timer into a small JSON tuple and back (the aggregator knows what is derivable). */
export interface TimerCodec<E> {
  encode(timer: PendingTimer<E>): readonly (string | number)[];
  /** Throws on anything it did not write: the whole snapshot is then ignored. */
  decode(tuple: readonly unknown[]): PendingTimer<E>;
}

/** Stays well below the server's default max_payload (1 MiB), headers included. */
export const DEFAULT_CHUNK_BYTES = 512 * 1024;

interface Chunk {
  readonly v: 1;
  readonly epoch: number;
  readonly seq: number;
  readonly chunk: number;
  readonly chunks: number;
  /** `[customerId, ...codec tuple]` per timer. */
  readonly timers: readonly (readonly unknown[])[];
}

/** Encodes the timers into chunks of at most about `maxBytes` each (always at least one). */
export function encodeTimerSnapshot<E>(
  tag: TimerSnapshotTag,
  timers: Iterable<readonly [string, PendingTimer<E>]>,
  codec: TimerCodec<E>,
  maxBytes = DEFAULT_CHUNK_BYTES,
): string[] {
  const rows: string[][] = [[]];
  let size = 0;
  for (const [customerId, timer] of timers) {
    const row = JSON.stringify([customerId, ...codec.encode(timer)]);
    const bytes = Buffer.byteLength(row) + 1;
    const current = rows[rows.length - 1] ?? [];
    if (size + bytes > maxBytes - 200 && current.length > 0) {
      rows.push([row]);
      size = bytes;
    } else {
      current.push(row);
      size += bytes;
    }
  }
  // Written by hand around pre-encoded rows: one JSON.stringify per timer, not two.
  return rows.map(
    (chunkRows, chunk) =>
      `{"v":1,"epoch":${tag.epoch},"seq":${tag.seq},"chunk":${chunk},"chunks":${rows.length},` +
      `"timers":[${chunkRows.join(',')}]}`,
  );
}

/**
 * The timers of a complete snapshot with this tag, or `undefined` when the chunks do not make
 * one (missing, from another tag, unreadable): the caller then reads the timer index.
 */
export function decodeTimerSnapshot<E>(
  tag: TimerSnapshotTag,
  values: readonly string[],
  codec: TimerCodec<E>,
): Map<string, PendingTimer<E>> | undefined {
  const chunks = new Map<number, Chunk>();
  let total: number | undefined;
  for (const value of values) {
    const chunk = JSON.parse(value) as Chunk;
    if (
      typeof chunk !== 'object' ||
      chunk === null ||
      chunk.v !== 1 ||
      chunk.epoch !== tag.epoch ||
      chunk.seq !== tag.seq
    )
      continue; // a leftover of an earlier snapshot
    if (!Number.isSafeInteger(chunk.chunks) || chunk.chunks < 1) return undefined;
    if (total !== undefined && total !== chunk.chunks) return undefined;
    total = chunk.chunks;
    if (!Array.isArray(chunk.timers)) return undefined;
    chunks.set(chunk.chunk, chunk);
  }
  if (total === undefined || chunks.size !== total) return undefined;
  const out = new Map<string, PendingTimer<E>>();
  for (let i = 0; i < total; i++) {
    const chunk = chunks.get(i);
    if (chunk === undefined) return undefined;
    for (const row of chunk.timers) {
      if (!Array.isArray(row) || typeof row[0] !== 'string') return undefined;
      out.set(row[0], codec.decode(row.slice(1)));
    }
  }
  return out;
}

/** Reads and writes a partition's timer snapshot in the state bucket. */
export class TimerSnapshotStore<E> {
  constructor(
    private readonly kv: KV,
    private readonly codec: TimerCodec<E>,
    private readonly log: Logger,
    private readonly maxChunkBytes = DEFAULT_CHUNK_BYTES,
  ) {}

  /**
   * Writes the chunks, then deletes chunks of an earlier, larger snapshot. Not conditional: the
   * caller checks its lease first, and a stray write is harmless (it carries a tag no clean
   * watermark will have unless the same runner writes that watermark next).
   */
  async save(
    partition: number,
    tag: TimerSnapshotTag,
    timers: Iterable<readonly [string, PendingTimer<E>]>,
    previousChunks: number,
  ): Promise<number> {
    const chunks = encodeTimerSnapshot(tag, timers, this.codec, this.maxChunkBytes);
    await Promise.all(chunks.map((value, i) => this.kv.put(timerSnapshotKey(partition, i), value)));
    // From the last one down: a save interrupted here leaves the surplus contiguous with the
    // new chunks, where the next load counts it (a load counts up to the first missing key).
    for (let i = previousChunks - 1; i >= chunks.length; i--) {
      await this.kv.delete(timerSnapshotKey(partition, i));
    }
    return chunks.length;
  }

  /**
   * The partition's open timers if a complete snapshot with this tag exists, else `undefined`;
   * also returns how many chunk keys exist (`ts.<p>.0` up to the first missing one), so the next
   * save can delete the surplus.
   *
   * Read key by key, not with a filtered read of `ts.<p>.>`: such a read is a consumer, and
   * creating a filtered consumer makes the server count its matches over the subjects of the
   * whole state bucket (every customer and timer-index key), in the middle of a handoff that is
   * creating the partitions' own consumers. A snapshot has a handful of chunks, so a get per chunk
   * costs a few round trips and no scan.
   */
  async load(
    partition: number,
    tag: TimerSnapshotTag,
  ): Promise<{ timers: Map<string, PendingTimer<E>> | undefined; chunkKeys: number }> {
    const values: string[] = [];
    for (;;) {
      const entry = await this.kv.get(timerSnapshotKey(partition, values.length));
      if (entry === null || entry.operation !== 'PUT') break;
      values.push(entry.string());
    }
    const chunkKeys = values.length;
    try {
      return { timers: decodeTimerSnapshot(tag, values, this.codec), chunkKeys };
    } catch (err) {
      this.log.warn(
        { partition, err: describeError(err) },
        'unreadable timer snapshot ignored, reading the timer index',
      );
      return { timers: undefined, chunkKeys };
    }
  }
}

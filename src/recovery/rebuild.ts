import type { JetStreamManager } from '@nats-io/jetstream';
import type { ResourceNames } from '../contract/names.js';
import { ErrorCode, OrderFleetError, isOrderFleetError } from '../errors.js';
import type { LeaseManager } from '../fleet/leases.js';
import { isConsumerNotFound } from '../nats/errors.js';
import type { WatermarkStore } from '../state/watermark-store.js';

/**
 * `order-fleet rebuild`: recompute customer state from the log while the fleet keeps running,
 * through ownership and fencing like everything else.
 *
 * 1. For each partition, a rebuild request `rebuild.<p> = {generation}` is written to the meta
 *    bucket (a conditional write; a request still pending is reused, so re-running does not
 *    stack rebuilds).
 * 2. The partition's current runner is fenced by deleting its durable consumer: it stops as it
 *    does when another runner takes over, and its supervisor starts a new runner (a new epoch).
 *    A partition without an owner is rebuilt when a worker takes it.
 * 3. A runner that finds a request newer than its watermark's `rebuild` generation starts from
 *    sequence 1 with every customer empty (the stored snapshots are overwritten, conditionally),
 *    rebuilds the timer index, publishes summaries in replay mode (the summary sink skips what
 *    was already sent), and writes the generation into the watermark once caught up. A rebuild
 *    interrupted by a crash or a handoff starts over: the next runner sees the request pending.
 */
export interface RebuildTarget {
  readonly partition: number;
  readonly generation: number;
  /** Watermark epoch when requested: a higher one means a runner took the request. */
  readonly epochAtRequest: number;
  readonly owner: string | null;
}

export interface PartitionProgress {
  readonly partition: number;
  readonly generation: number;
  readonly owner: string | null;
  readonly state: 'waiting for owner' | 'requested' | 'rebuilding' | 'done';
  readonly watermark: number;
}

export interface RebuildProgress {
  readonly at: string;
  readonly head: number;
  readonly partitions: readonly PartitionProgress[];
  readonly done: number;
  /** Sum over partitions of entries re-applied so far (done partitions count as the head). */
  readonly applied: number;
  readonly total: number;
}

export interface RebuildDeps {
  readonly jsm: JetStreamManager;
  readonly names: ResourceNames;
  readonly watermarks: WatermarkStore;
  readonly leases: LeaseManager;
  readonly partitions: number;
}

/**
 * Refuses when the stream no longer holds the whole history: a fold of what is left would be
 * wrong state, silently. Nothing is changed.
 */
export async function checkWholeHistory(
  jsm: JetStreamManager,
  names: ResourceNames,
): Promise<number> {
  const info = await jsm.streams.info(names.ordersStream);
  const { first_seq: first, last_seq: last, num_deleted: deleted = 0, messages } = info.state;
  const removedHead = last > 0 && (first > 1 || messages === 0);
  if (removedHead || deleted > 0) {
    const maxAgeMs = Math.round(info.config.max_age / 1e6);
    throw new OrderFleetError(
      ErrorCode.HistoryTruncated,
      `refusing to rebuild: stream ${names.ordersStream} no longer holds the whole history ` +
        `(${removedHead ? `it starts at seq ${first}, entries 1-${first - 1} were removed` : `${deleted} entries were deleted`}` +
        `${maxAgeMs > 0 ? `; retention max_age is ${Math.round(maxAgeMs / 3_600_000)} h` : ''}). ` +
        'A rebuild from what is left would produce wrong state, so nothing was changed. ' +
        'The state bucket is the only record of the removed entries: keep it (or restore it from a backup), ' +
        'and to make rebuilds possible in future keep events longer (ORDERS_MAX_AGE_MS=0 keeps them forever, then run setup).',
      { details: { stream: names.ordersStream, firstSeq: first, lastSeq: last, deleted } },
    );
  }
  return last;
}

/** Writes (or reuses) a rebuild request for each partition and fences its current runner. */
export async function requestRebuild(
  deps: RebuildDeps,
  partitions: readonly number[],
): Promise<RebuildTarget[]> {
  const holders = await deps.leases.holders(deps.partitions);
  const targets: RebuildTarget[] = [];
  for (const partition of partitions) {
    targets.push(await requestOne(deps, partition, holders.get(partition) ?? null));
  }
  for (const t of targets) if (t.owner !== null) await fence(deps, t.partition);
  return targets;
}

async function requestOne(
  deps: RebuildDeps,
  partition: number,
  owner: string | null,
): Promise<RebuildTarget> {
  for (;;) {
    const { watermark } = await deps.watermarks.load(partition);
    const { request, revision } = await deps.watermarks.loadRebuildRequest(partition);
    const pending = request !== undefined && request.generation > watermark.rebuild;
    if (pending) {
      return { partition, generation: request.generation, epochAtRequest: watermark.epoch, owner };
    }
    const generation = Math.max(request?.generation ?? 0, watermark.rebuild) + 1;
    try {
      await deps.watermarks.requestRebuild(
        partition,
        { generation, requestedAt: new Date().toISOString() },
        revision,
      );
      return { partition, generation, epochAtRequest: watermark.epoch, owner };
    } catch (err) {
      // Another rebuild asked at the same moment: read again and join it.
      if (!isOrderFleetError(err, ErrorCode.WriteConflict)) throw err;
    }
  }
}

/** Stops the partition's runner the way a new owner does: its consumer goes away. */
export async function fence(deps: RebuildDeps, partition: number): Promise<void> {
  try {
    await deps.jsm.consumers.delete(deps.names.ordersStream, `partition-${partition}`);
  } catch (err) {
    if (!isConsumerNotFound(err)) throw err;
  }
}

export async function rebuildProgress(
  deps: RebuildDeps,
  targets: readonly RebuildTarget[],
  head: number,
): Promise<RebuildProgress> {
  const holders = await deps.leases.holders(deps.partitions);
  const partitions = await Promise.all(
    targets.map(async (t): Promise<PartitionProgress> => {
      const { watermark } = await deps.watermarks.load(t.partition);
      const owner = holders.get(t.partition) ?? null;
      const state =
        watermark.rebuild >= t.generation
          ? 'done'
          : watermark.epoch > t.epochAtRequest
            ? 'rebuilding'
            : owner === null
              ? 'waiting for owner'
              : 'requested';
      return {
        partition: t.partition,
        generation: t.generation,
        owner,
        state,
        watermark: state === 'rebuilding' || state === 'done' ? watermark.seq : 0,
      };
    }),
  );
  const done = partitions.filter((p) => p.state === 'done').length;
  return {
    at: new Date().toISOString(),
    head,
    partitions,
    done,
    // Progress by stream position: each partition's watermark walks from 0 to (at most) the
    // head, so this is an estimate of the work left, exact at both ends.
    applied: partitions.reduce(
      (n, p) => n + (p.state === 'done' ? head : Math.min(head, p.watermark)),
      0,
    ),
    total: head * partitions.length,
  };
}

/** `[#####.....] 12/32 partitions  48% 1,234 entries/s  ETA 0:42`, for a person. */
export function renderProgressBar(p: RebuildProgress, ratePerSec: number, width = 30): string {
  const fraction = p.total === 0 ? 1 : p.applied / p.total;
  const filled = Math.round(fraction * width);
  const left = ratePerSec >= 1 ? (p.total - p.applied) / ratePerSec : undefined;
  const eta = left === undefined || left > 359_999 ? '--:--' : clock(left);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.partitions.length} partitions  ${Math.floor(fraction * 100)}%  ${Math.round(ratePerSec).toLocaleString('en-US')} entries/s  ETA ${eta}`;
}

function clock(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

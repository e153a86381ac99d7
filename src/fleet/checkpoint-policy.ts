/**
 * When a partition runner checkpoints: group commit. Under load the count and the interval
 * bound how much a crash replays; once the partition goes quiet (nothing new for `idleMs`) what
 * it applied is written at once instead of waiting out the interval. A quiet partition then
 * holds nothing unsaved (its crash replays nothing, its handoff flushes nothing) and the end of
 * a burst is durable within `idleMs` plus the writes, while a busy one still writes each
 * customer once per interval however many events it gets. Pure, so it is unit-tested alone.
 */
export interface CheckpointRules {
  /** Checkpoint after this many entries since the last one... */
  readonly everyEvents: number;
  /** ...or this long after the last one... */
  readonly intervalMs: number;
  /** ...or when nothing new arrived for this long (0: off, the interval only). */
  readonly idleMs: number;
}

export interface CheckpointView {
  readonly now: number;
  readonly lastCheckpointAt: number;
  /** When the last batch of entries was handled. */
  readonly lastActivityAt: number;
  readonly sinceCheckpoint: number;
  /** Entries handled but not acknowledged yet (their watermark is not written). */
  readonly unacked: boolean;
  /** Timer index repairs waiting to be written. */
  readonly timersDirty: boolean;
  /** Entries received and not handled yet. */
  readonly queued: boolean;
  /** A rebuild is caught up and not yet recorded in the watermark. */
  readonly rebuildPending: boolean;
}

export function checkpointDue(rules: CheckpointRules, v: CheckpointView): boolean {
  if (v.sinceCheckpoint >= rules.everyEvents) return true;
  // A rebuild of a partition with nothing in its log still has to be recorded as done.
  if (v.rebuildPending) return true;
  // Index repairs (stale entries found at start or by a due timer) are written even when no
  // new entry arrives, so the index does not keep a closed window open.
  const work = v.unacked || v.timersDirty;
  if (!work) return false;
  if (v.now - v.lastCheckpointAt >= rules.intervalMs) return true;
  return rules.idleMs > 0 && !v.queued && v.unacked && v.now - v.lastActivityAt >= rules.idleMs;
}

/**
 * How long an idle runner may sleep before {@link checkpointDue} can change its answer with no
 * new entry (new entries wake it anyway). At least `floorMs`, so a runner never spins.
 */
export function idleWaitMs(rules: CheckpointRules, v: CheckpointView, floorMs = 10): number {
  const untilInterval = rules.intervalMs - (v.now - v.lastCheckpointAt);
  const untilIdle =
    rules.idleMs > 0 && v.unacked ? rules.idleMs - (v.now - v.lastActivityAt) : Infinity;
  return Math.max(floorMs, Math.min(untilInterval, untilIdle));
}

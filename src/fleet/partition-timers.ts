import type { PendingTimer } from '../orders/aggregator.js';
import { TimerQueue } from './timer-queue.js';

/** A timer now due, to be appended to the log. */
export interface DueTimer<E> {
  readonly customerId: string;
  readonly timer: PendingTimer<E>;
}

/**
 * The durable timers of one partition, without any I/O: the current timer of every customer of
 * the partition that has one (resident or not), a heap by due time, the index changes to write at
 * the next checkpoint, and the timers whose entry is being appended to the log.
 *
 * The runner tells it what happened (a state changed, an append failed, an append found its entry
 * already behind the runner) and asks it what to do (which timers are due, which index entries to
 * write, which customers' state must decide a stale timer). A timer takes effect only when its
 * log entry is applied, in log order: until then it stays here, marked as firing.
 */
export class PartitionTimers<E> {
  readonly #timers = new Map<string, PendingTimer<E>>();
  readonly #queue = new TimerQueue();
  /** Due time of each customer's earliest entry in the heap. */
  readonly #queuedDue = new Map<string, number>();
  /** Index entries to write at the next checkpoint (undefined: delete the entry). */
  readonly #dirty = new Map<string, PendingTimer<E> | undefined>();
  /** Ids of timers whose entry is being (or has been) appended. */
  readonly #firing = new Set<string>();
  /** customer → id of a timer whose entry was found behind the runner (see {@link appendedBehind}). */
  readonly #stale = new Map<string, string>();
  /** Whether index changes are recorded (the `index` timer layout); see {@link stopIndexing}. */
  #indexed = true;

  /** Customers with an open timer. */
  get size(): number {
    return this.#timers.size;
  }

  /** Index changes waiting for a checkpoint. */
  get dirtySize(): number {
    return this.#dirty.size;
  }

  /** Customers waiting for their state to decide a stale timer. */
  get staleSize(): number {
    return this.#stale.size;
  }

  get(customerId: string): PendingTimer<E> | undefined {
    return this.#timers.get(customerId);
  }

  has(customerId: string): boolean {
    return this.#timers.has(customerId);
  }

  /**
   * The deployment's timer layout is `state`: no index is kept, so no change is recorded from now
   * on (and none pending is kept). Open timers are scheduled exactly as before.
   */
  stopIndexing(): void {
    this.#indexed = false;
    this.#dirty.clear();
  }

  /** Every open timer (for the clean checkpoint's snapshot). */
  all(): ReadonlyMap<string, PendingTimer<E>> {
    return this.#timers;
  }

  /**
   * The customer's state now waits for `next` (or for nothing). Schedules it, and records an
   * index change when a window opened or closed: the index follows series changes only, not
   * every moved deadline, which keeps it at two writes per window instead of one per checkpoint.
   */
  sync(customerId: string, next: PendingTimer<E> | undefined): void {
    const current = this.#timers.get(customerId);
    if (next?.id === current?.id) return;
    if (current !== undefined) this.#firing.delete(current.id);
    if (next === undefined) this.#timers.delete(customerId);
    else this.#schedule(customerId, next);
    if (this.#indexed && next?.series !== current?.series) this.#dirty.set(customerId, next);
  }

  /** A timer read from the index or the snapshot at start: scheduled, already indexed. */
  restore(customerId: string, timer: PendingTimer<E>): void {
    this.#schedule(customerId, timer);
  }

  /** The customer waits for nothing any more (quarantined): its timer and index entry go. */
  drop(customerId: string): void {
    const current = this.#timers.get(customerId);
    if (current === undefined) return;
    this.#firing.delete(current.id);
    this.#timers.delete(customerId);
    if (this.#indexed) this.#dirty.set(customerId, undefined);
  }

  /**
   * An index entry whose customer has no timer here (yet): deleted at the next checkpoint unless
   * something gives the customer a timer before then.
   */
  forgetIndexed(customerId: string): void {
    if (this.#indexed && !this.#timers.has(customerId) && !this.#dirty.has(customerId))
      this.#dirty.set(customerId, undefined);
  }

  /**
   * Timers due at `nowMs` that are not already being appended; each is marked as firing. A
   * deadline that moved later is pushed back for its new time.
   */
  due(nowMs: number): DueTimer<E>[] {
    const out: DueTimer<E>[] = [];
    for (const due of this.#queue.popDue(nowMs)) {
      if (this.#queuedDue.get(due.customerId) === due.dueAtMs)
        this.#queuedDue.delete(due.customerId);
      const timer = this.#timers.get(due.customerId);
      if (timer === undefined || this.#firing.has(timer.id)) continue; // closed, or appended
      if (timer.dueAtMs > nowMs) {
        this.#enqueue(due.customerId, timer.dueAtMs); // the deadline moved: come back then
        continue;
      }
      this.#firing.add(timer.id);
      out.push({ customerId: due.customerId, timer });
    }
    return out;
  }

  /** The append failed: try again at `retryAtMs`. */
  appendFailed(customerId: string, timerId: string, retryAtMs: number): void {
    this.#firing.delete(timerId);
    this.#enqueue(customerId, retryAtMs);
  }

  /**
   * The append found the timer's entry already in the log, behind what the runner has handled:
   * it will never be delivered again, so the timer came from an index entry older than the
   * customer's state (a crash between the state write and the index write). The customer's
   * state must decide instead: see {@link takeStale}.
   */
  appendedBehind(customerId: string, timerId: string): void {
    this.#stale.set(customerId, timerId);
  }

  /**
   * Customers whose stale timer is still their current one (anything else changed it since),
   * each unmarked as firing, so that syncing from their state replaces or removes it.
   */
  takeStale(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [customerId, timerId] of this.#stale) {
      if (this.#timers.get(customerId)?.id !== timerId) continue;
      this.#firing.delete(timerId);
      out.set(customerId, timerId);
    }
    this.#stale.clear();
    return out;
  }

  /** Looks at a customer's timer again at `atMs` (e.g. a stale one its state still holds). */
  recheck(customerId: string, atMs: number): void {
    this.#enqueue(customerId, atMs);
  }

  /** The index changes to write now; cleared (a failed checkpoint fails its runner). */
  takeDirty(): [string, PendingTimer<E> | undefined][] {
    const changes = [...this.#dirty];
    this.#dirty.clear();
    return changes;
  }

  #schedule(customerId: string, timer: PendingTimer<E>): void {
    this.#timers.set(customerId, timer);
    this.#enqueue(customerId, timer.dueAtMs);
  }

  /**
   * Keeps at most one live heap entry per customer, at or before its timer's due time: a deadline
   * that moves later (every change of an open window) costs nothing here; the entry pops at the
   * old time and is pushed again for the new one. Without this the heap would grow by one entry
   * per event.
   */
  #enqueue(customerId: string, dueAtMs: number): void {
    const queued = this.#queuedDue.get(customerId);
    if (queued !== undefined && queued <= dueAtMs) return;
    this.#queuedDue.set(customerId, dueAtMs);
    this.#queue.push({ dueAtMs, customerId });
  }
}
